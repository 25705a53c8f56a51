"""Master calibration frames: bias, dark, dark-flat and flat, combined with outlier rejection.

Pure functions on cubes ``(N, H, W)`` (or ``(N, H, W, 3)``) of frames. The pipeline streams
large sets through them strip by strip: everything here works on any band of rows except the
final flat normalisation (:func:`normalize_flat`), which needs the whole master.

Conventions
-----------
* A master dark (and dark-flat) holds the thermal signal only: the bias is subtracted.
* A master flat is normalised per colour channel (R, G, B sites of a Bayer mosaic, or the
  channels of an RGB flat) to a median of 1, so dividing by it does not tint the image.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import numpy as np

from skystack._typing import CfaPattern, Cube, Image
from skystack.color.bayer import channel_map
from skystack.errors import GeometryError
from skystack.stack.rejection import nan_median, sigma_clipped_mean

__all__ = [
    "CombineMethod",
    "combine_frames",
    "make_master_bias",
    "make_master_dark",
    "make_master_dark_flat",
    "make_master_flat",
    "channel_levels",
    "scale_channels",
    "normalize_flat",
]

CombineMethod: TypeAlias = Literal["sigma-clip", "mean", "median"]


def combine_frames(
    cube: Cube, *, method: CombineMethod = "sigma-clip", kappa: float = 3.0
) -> Image:
    """Combine frames along axis 0: kappa-sigma clipped mean (default), mean or median."""
    if method == "sigma-clip":
        return sigma_clipped_mean(cube, kappa_low=kappa, kappa_high=kappa)
    if method == "median":
        return nan_median(cube)
    if method == "mean":
        return np.mean(cube, axis=0, dtype=np.float64).astype(np.float32)
    raise ValueError(f"unknown combine method {method!r}; expected sigma-clip, mean or median")


def _subtract(cube: Cube, image: Image | None, what: str) -> Cube:
    if image is None:
        return cube
    if image.shape != cube.shape[1:]:
        raise GeometryError(f"master {what} has shape {image.shape}, frames have {cube.shape[1:]}")
    return cube - image[np.newaxis]


def make_master_bias(
    cube: Cube, *, method: CombineMethod = "sigma-clip", kappa: float = 3.0
) -> Image:
    """Master bias: the rejected mean of bias frames (offset and its fixed pattern)."""
    return combine_frames(cube, method=method, kappa=kappa)


def make_master_dark(
    cube: Cube,
    *,
    master_bias: Image | None = None,
    offset: float | None = None,
    method: CombineMethod = "sigma-clip",
    kappa: float = 3.0,
) -> Image:
    """Master dark holding the thermal signal: darks minus the master bias, combined.

    Parameters
    ----------
    cube : ndarray
        Dark frames ``(N, H, W)``.
    master_bias : ndarray, optional
        Subtracted from every dark. Without it, ``offset`` (a raw file's black level) is
        subtracted; with neither, the master still contains the bias.
    offset : float, optional
        Constant offset subtracted when there is no master bias.
    method, kappa
        See :func:`combine_frames`.
    """
    darks = _subtract(cube, master_bias, "bias")
    if master_bias is None and offset is not None:
        darks = darks - np.float32(offset)
    return combine_frames(darks, method=method, kappa=kappa)


def make_master_dark_flat(
    cube: Cube,
    *,
    master_bias: Image | None = None,
    offset: float | None = None,
    method: CombineMethod = "sigma-clip",
    kappa: float = 3.0,
) -> Image:
    """Master dark-flat (darks at the flats' exposure), built like :func:`make_master_dark`."""
    return make_master_dark(
        cube, master_bias=master_bias, offset=offset, method=method, kappa=kappa
    )


def _channel_index(shape: tuple[int, ...], cfa: CfaPattern | None) -> np.ndarray | None:
    """Colour index (0 R, 1 G, 2 B) of every pixel of a mosaic; None for mono or RGB data."""
    if cfa is None or len(shape) != 2:
        return None
    return channel_map(shape, cfa)


def channel_levels(image: Image, *, cfa: CfaPattern | None = None) -> np.ndarray:
    """Median level of each colour channel: 3 values for a mosaic or RGB, 1 for mono.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` mono or mosaic, or ``(H, W, 3)``.
    cfa : str, optional
        Bayer pattern of a mosaic.
    """
    if image.ndim == 3:
        return np.array([np.nanmedian(image[..., c]) for c in range(3)], dtype=np.float64)
    index = _channel_index(image.shape, cfa)
    if index is None:
        return np.array([np.nanmedian(image)], dtype=np.float64)
    return np.array([np.nanmedian(image[index == c]) for c in range(3)], dtype=np.float64)


def scale_channels(
    image: Image, factors: np.ndarray, *, cfa: CfaPattern | None = None, row0: int = 0
) -> Image:
    """Multiply each colour channel by its factor (see :func:`channel_levels` for the layout).

    ``row0`` is the first row of ``image`` in the full frame, so that a band of rows of a
    mosaic keeps its colours (only its parity matters).
    """
    factors = np.asarray(factors, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] == 3:
        return image * factors.reshape(1, 1, 3)
    if factors.size == 1:
        return image * factors[0]
    index = _channel_index((image.shape[-2] + (row0 % 2), image.shape[-1]), cfa)
    if index is None:
        raise GeometryError("per-channel factors need a Bayer pattern for a 2-D image")
    return image * factors[index[row0 % 2 :]]


def normalize_flat(flat: Image, *, cfa: CfaPattern | None = None) -> Image:
    """Divide each colour channel of a flat by its median, so every channel's median is 1."""
    levels = channel_levels(flat, cfa=cfa)
    if not np.all(np.isfinite(levels)) or np.any(levels <= 0):
        raise GeometryError(f"flat has no positive signal in every channel (levels {levels})")
    return scale_channels(flat, 1.0 / levels, cfa=cfa)


def make_master_flat(
    cube: Cube,
    *,
    master_bias: Image | None = None,
    master_dark_flat: Image | None = None,
    offset: float | None = None,
    cfa: CfaPattern | None = None,
    method: CombineMethod = "sigma-clip",
    kappa: float = 3.0,
    frame_levels: np.ndarray | None = None,
    row0: int = 0,
    normalize: bool = True,
) -> Image:
    """Master flat: flats minus bias (and dark-flat), each scaled to a common level, combined.

    Each flat is first divided by its own per-channel median, so flats of different brightness
    combine without rejecting the fainter ones; the combined flat is then normalised per colour
    channel (:func:`normalize_flat`).

    Parameters
    ----------
    cube : ndarray
        Flat frames ``(N, H, W)`` (mosaics) or ``(N, H, W, 3)``.
    master_bias : ndarray, optional
        Subtracted from every flat (``offset`` when absent).
    master_dark_flat : ndarray, optional
        Thermal signal at the flats' exposure, subtracted too.
    offset : float, optional
        Constant offset (black level) used when there is no master bias.
    cfa : str, optional
        Bayer pattern of mosaic flats.
    frame_levels : ndarray, optional
        Per-frame channel levels ``(N, 1 or 3)`` measured on whole frames, for combining a band
        of rows at a time; measured on ``cube`` itself when absent.
    row0 : int
        First row of the band in the full frame (its parity places the Bayer pattern).
    normalize : bool
        Normalise the result per channel; off for bands, which the caller normalises at the end.
    """
    flats = _subtract(cube, master_bias, "bias")
    if master_bias is None and offset is not None:
        flats = flats - np.float32(offset)
    flats = _subtract(flats, master_dark_flat, "dark-flat")
    if frame_levels is None:
        frame_levels = np.array([channel_levels(flat, cfa=cfa) for flat in flats])
    scaled = np.stack(
        [
            scale_channels(flat, 1.0 / levels, cfa=cfa, row0=row0)
            for flat, levels in zip(flats, frame_levels, strict=True)
        ]
    )
    combined = combine_frames(scaled, method=method, kappa=kappa)
    return normalize_flat(combined, cfa=cfa) if normalize else combined
