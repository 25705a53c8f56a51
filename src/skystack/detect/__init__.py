"""Star detection, background and noise statistics, frame quality.

The star and quality names load on first use, so importing :mod:`skystack.detect.background`
(the ``info`` command does) does not pull in SEP, numba and OpenCV.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from skystack.detect.background import (
    MAD_TO_SIGMA,
    ImageStatistics,
    estimate_noise,
    image_statistics,
)

if TYPE_CHECKING:
    from skystack.detect.quality import (
        WEIGHT_METHODS,
        FrameQuality,
        WeightMethod,
        frame_weights,
        measure_quality,
        parse_percent,
        quality_scores,
        select_frames,
    )
    from skystack.detect.stars import GAUSSIAN_FWHM, StarTable, find_stars, luminance

__all__ = [
    "ImageStatistics",
    "image_statistics",
    "estimate_noise",
    "MAD_TO_SIGMA",
    "StarTable",
    "find_stars",
    "luminance",
    "GAUSSIAN_FWHM",
    "FrameQuality",
    "WeightMethod",
    "WEIGHT_METHODS",
    "measure_quality",
    "quality_scores",
    "select_frames",
    "frame_weights",
    "parse_percent",
]

_LAZY = {
    "StarTable": "stars",
    "find_stars": "stars",
    "luminance": "stars",
    "GAUSSIAN_FWHM": "stars",
    "FrameQuality": "quality",
    "WeightMethod": "quality",
    "WEIGHT_METHODS": "quality",
    "measure_quality": "quality",
    "quality_scores": "quality",
    "select_frames": "quality",
    "frame_weights": "quality",
    "parse_percent": "quality",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
