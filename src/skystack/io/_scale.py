"""Conversions between stored integer samples and the float32 full-scale-1.0 data model."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from skystack._typing import Image

__all__ = ["integer_to_float", "float_to_integer"]


def integer_to_float(samples: npt.NDArray[np.integer], *, full_scale: float | None = None) -> Image:
    """Scale integer samples to float32 so that ``full_scale`` (default: the dtype's max) is 1.0.

    No gamma is decoded: an 8-bit value of 128 becomes 128/255.
    """
    if full_scale is None:
        full_scale = float(np.iinfo(samples.dtype).max)
    out = samples.astype(np.float32)
    out *= np.float32(1.0 / full_scale)
    return out


def float_to_integer(data: Image, bits: int) -> npt.NDArray[np.unsignedinteger]:
    """Quantise float data in [0, 1] to unsigned integers of ``bits`` (8 or 16), clipping.

    NaN becomes 0. Rounds to nearest so that ``integer_to_float`` followed by this is exact.
    """
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, not {bits}")
    dtype = np.uint8 if bits == 8 else np.uint16
    top = float(np.iinfo(dtype).max)
    scaled = np.nan_to_num(np.asarray(data, dtype=np.float64), nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 1.0) * top).astype(dtype)
