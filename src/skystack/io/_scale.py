"""Conversions between stored integer samples and the float32 full-scale-1.0 data model."""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from skystack._typing import Image
from skystack.errors import FormatError

__all__ = ["integer_to_float", "float_to_integer", "stored_samples"]


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
    top = np.float32(np.iinfo(dtype).max)
    source = np.asarray(data, dtype=np.float32)
    out = np.empty(source.shape, dtype=dtype)
    flat_in, flat_out = source.reshape(-1), out.reshape(-1)
    # In float32 and in chunks of 1M samples: a 24 MP colour image in one float64 pass made
    # four 576 MB temporaries and took seconds. float32 is exact here: k / top * top rounds
    # back to k for every k <= 65535.
    chunk = 1 << 20
    for start in range(0, flat_in.size, chunk):
        part = np.nan_to_num(flat_in[start : start + chunk], nan=0.0, posinf=1.0, neginf=0.0)
        np.clip(part, 0.0, 1.0, out=part)
        part *= top
        np.rint(part, out=part)
        flat_out[start : start + chunk] = part
    return out


def stored_samples(
    data: Image,
    bit_depth: int,
    *,
    path: str | os.PathLike[str],
    format_name: str,
    any_shape: bool = False,
) -> np.ndarray:
    """The samples a writer stores for ``data``: float32 as it is, or quantised integers.

    Parameters
    ----------
    data : ndarray
        Image data, full scale 1.0 (cast to float32).
    bit_depth : {8, 16, 32}
        32 keeps float32 unchanged (no clipping); 8 and 16 go through :func:`float_to_integer`.
    path : path-like
        The output file, named in error messages.
    format_name : str
        The format as error messages name it (``"TIFF"``, ``"XISF"`` ...).
    any_shape : bool
        Accept any array shape (FITS stores cubes); otherwise only ``(H, W)`` and ``(H, W, 3)``.

    Raises
    ------
    FormatError
        For an image that is not ``(H, W)`` or ``(H, W, 3)`` (checked first), or another bit depth.
    """
    image = np.asarray(data, dtype=np.float32)
    if not any_shape and not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise FormatError(f"{path}: cannot write an image of shape {image.shape} as {format_name}")
    if bit_depth == 32:
        return image
    if bit_depth in (8, 16):
        return float_to_integer(image, bit_depth)
    raise FormatError(f"{path}: {format_name} bit depth must be 8, 16 or 32, not {bit_depth}")
