"""Applying masters to a light: ``(light - bias - k * dark) / flat``, in CFA space.

The dark here is a thermal-only master (see :mod:`skystack.calibrate.masters`); ``k`` scales it
to the light's exposure, or is fitted to the light (dark optimisation).
"""

from __future__ import annotations

import numpy as np

from skystack._typing import Image
from skystack.errors import GeometryError

__all__ = ["calibrate_light", "dark_scale_for_exposure", "optimize_dark_scale", "MIN_FLAT"]

MIN_FLAT = 0.05
"""Flat values below this (relative to the channel median 1) mark pixels without usable signal:
the calibrated value there is NaN instead of an amplified noise spike."""


def _check(image: Image | None, light: Image, what: str) -> None:
    if image is not None and image.shape != light.shape:
        raise GeometryError(f"master {what} has shape {image.shape}, the light has {light.shape}")


def calibrate_light(
    light: Image,
    *,
    bias: Image | None = None,
    dark: Image | None = None,
    flat: Image | None = None,
    dark_scale: float = 1.0,
    offset: float = 0.0,
) -> Image:
    """Calibrate a light frame: ``(light - bias - dark_scale * dark) / flat``.

    Parameters
    ----------
    light : ndarray
        The raw light (mosaic, mono or RGB), full scale 1.0.
    bias : ndarray, optional
        Master bias; without it ``offset`` is subtracted instead.
    dark : ndarray, optional
        Thermal-only master dark.
    flat : ndarray, optional
        Master flat normalised to 1 per channel. Pixels where it is below :data:`MIN_FLAT`
        become NaN.
    dark_scale : float
        Factor on the dark: 1 at matching exposure, the exposure ratio otherwise, or a fitted
        value (:func:`optimize_dark_scale`).
    offset : float
        Constant offset (a raw file's black level) used when there is no bias.

    Returns
    -------
    ndarray
        float32, same shape; linear and unclipped (may be negative).
    """
    for image, what in ((bias, "bias"), (dark, "dark"), (flat, "flat")):
        _check(image, light, what)
    result = np.asarray(light, dtype=np.float32) - (
        bias if bias is not None else np.float32(offset)
    )
    if dark is not None:
        result -= np.float32(dark_scale) * dark
    if flat is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            result = np.where(flat >= MIN_FLAT, result / flat, np.float32(np.nan))
    return result.astype(np.float32, copy=False)


def dark_scale_for_exposure(light_exposure: float | None, dark_exposure: float | None) -> float:
    """Scale of a thermal dark for a light: the exposure ratio (1 when either is unknown)."""
    if not light_exposure or not dark_exposure:
        return 1.0
    return float(light_exposure) / float(dark_exposure)


def optimize_dark_scale(
    light: Image,
    *,
    dark: Image,
    bias: Image | None = None,
    offset: float = 0.0,
    step: int = 1,
    max_pixels: int = 4_000_000,
) -> float:
    """Dark scale that minimises the pixel-to-pixel noise of the calibrated light.

    Dark optimisation as in Siril and PixInsight, for uncooled cameras whose dark current
    follows the temperature rather than the exposure. The noise is measured on differences of
    pixels ``step`` apart (2 on a Bayer mosaic), which cancel the sky, gradients and most of the
    object and keep hot pixels and the dark's fixed pattern; the variance of
    ``d(light - bias) - k d(dark)`` is quadratic in ``k``, so the best ``k`` is the least-squares
    solution ``<dL dD> / <dD dD>``.

    Parameters
    ----------
    light, dark : ndarray
        Light and thermal-only master dark.
    bias : ndarray, optional
        Master bias (or ``offset``).
    step : int
        Distance of the compared pixels (2 for mosaics).
    max_pixels : int
        A central crop of at most this many pixels is used.

    Returns
    -------
    float
        The scale ``k >= 0``.
    """
    _check(dark, light, "dark")
    _check(bias, light, "bias")
    rows, cols = light.shape[:2]
    side = int(np.sqrt(max_pixels))
    y0 = max(0, (rows - side) // 2) & ~1  # keep the Bayer parity
    x0 = max(0, (cols - side) // 2) & ~1
    window = (slice(y0, y0 + side), slice(x0, x0 + side))
    base = light[window] - (bias[window] if bias is not None else np.float32(offset))
    thermal = dark[window]
    d_light = (base[:, step:] - base[:, :-step]).astype(np.float64)
    d_dark = (thermal[:, step:] - thermal[:, :-step]).astype(np.float64)
    good = np.isfinite(d_light) & np.isfinite(d_dark)
    denominator = float(np.sum(d_dark[good] ** 2))
    if denominator == 0.0:
        return 1.0
    return max(0.0, float(np.sum(d_light[good] * d_dark[good])) / denominator)
