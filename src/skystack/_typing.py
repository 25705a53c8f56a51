"""Type aliases and the conventions every module follows.

Conventions
-----------
* Arrays are indexed ``[y, x]``; points are ``(x, y)`` with 0-based pixel centres.
* Images are float32, linear, scaled so that the sensor's full scale is 1.0. Mono and
  undebayered CFA images are ``(H, W)``, colour images ``(H, W, 3)`` in R, G, B order.
* Stacks of frames are ``(N, H, W)`` or ``(N, H, W, 3)``.
* Masks are bool with True meaning bad or missing; NaN marks missing float data.
* Choices are enums or ``Literal`` types; anything random takes ``rng=``.
* Functions return new arrays; in-place work only through an explicit ``out=``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "Image",
    "Cube",
    "Mask",
    "XY",
    "CfaPattern",
    "FrameKind",
    "CFA_PATTERNS",
    "FRAME_KINDS",
    "ProgressCallback",
]

Image: TypeAlias = npt.NDArray[np.float32]
"""A single image, ``(H, W)`` or ``(H, W, 3)``."""
Cube: TypeAlias = npt.NDArray[np.float32]
"""A stack of images, ``(N, H, W)`` or ``(N, H, W, 3)``."""
Mask: TypeAlias = npt.NDArray[np.bool_]
"""True where a pixel is bad or missing."""
XY: TypeAlias = npt.NDArray[np.float64]
"""Points as an ``(N, 2)`` array of ``(x, y)``."""

CfaPattern: TypeAlias = Literal["RGGB", "BGGR", "GRBG", "GBRG"]
"""Colour of the 2x2 Bayer cell, read row by row from array element ``[0, 0]``."""
CFA_PATTERNS: tuple[CfaPattern, ...] = ("RGGB", "BGGR", "GRBG", "GBRG")

FrameKind: TypeAlias = Literal["light", "dark", "flat", "bias", "dark-flat"]
FRAME_KINDS: tuple[FrameKind, ...] = ("light", "dark", "flat", "bias", "dark-flat")

ProgressCallback: TypeAlias = Callable[[int, int, str], None]
"""``progress(done, total, what)``: ``done`` of ``total`` units of step ``what`` are finished."""
