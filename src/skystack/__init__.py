"""skystack: from a night of astrophotography frames to a finished picture.

The public API is re-exported here and imported lazily, so ``import skystack`` (and the command
line's ``--help``) stays fast::

    import skystack
    frame = skystack.read("light_0001.fits")
    skystack.write(frame, "copy.tif")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "read",
    "write",
    "enhance_image",
    "Frame",
    "FrameMeta",
    "SkystackError",
]

_LAZY = {
    "read": "skystack.io",
    "write": "skystack.io",
    # skystack.enhance is the package of single steps, so the whole chain has its own name.
    "enhance_image": ("skystack.pipeline.enhance", "enhance"),
    "Frame": "skystack.frame",
    "FrameMeta": "skystack.frame",
    "SkystackError": "skystack.errors",
}

if TYPE_CHECKING:
    from skystack.errors import SkystackError
    from skystack.frame import Frame, FrameMeta
    from skystack.io import read, write
    from skystack.pipeline.enhance import enhance as enhance_image


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'skystack' has no attribute {name!r}")
    module, attribute = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value
