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

__all__ = ["__version__", "read", "write", "enhance", "Frame", "FrameMeta", "SkystackError"]

_LAZY = {
    "read": "skystack.io",
    "write": "skystack.io",
    "enhance": "skystack.pipeline.enhance",
    "Frame": "skystack.frame",
    "FrameMeta": "skystack.frame",
    "SkystackError": "skystack.errors",
}

if TYPE_CHECKING:
    from skystack.errors import SkystackError
    from skystack.frame import Frame, FrameMeta
    from skystack.io import read, write
    from skystack.pipeline.enhance import enhance


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'skystack' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
