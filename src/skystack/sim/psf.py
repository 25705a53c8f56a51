"""Moffat point-spread functions and fast rendering of many stars as small stamps.

The Moffat profile [1]_ describes seeing-limited stars better than a Gaussian because of its
extended wings::

    I(r) = F (beta - 1) / (pi alpha^2) * (1 + r^2 / alpha^2) ** -beta

normalised so that its integral over the plane is the total flux ``F``. Its full width at half
maximum is ``FWHM = 2 alpha sqrt(2 ** (1 / beta) - 1)``; ``beta`` of 2.5-4.5 fits real seeing
(Trujillo et al. [2]_ recommend 4.765 for pure Kolmogorov turbulence; 3 is a common compromise).

Stars are integrated over the pixel area by supersampling: each pixel is the mean of an
``oversample x oversample`` grid of sub-pixel samples placed symmetrically about its centre, so
a star's centroid is not biased. Far from the core, where the profile is nearly linear over a
pixel, one sample is used.

References
----------
.. [1] A. F. J. Moffat, "A theoretical investigation of focal stellar images in the photographic
   emulsion and application to photographic photometry", A&A 3, 455 (1969).
.. [2] I. Trujillo et al., "The effects of seeing on Sérsic profiles - II. The Moffat PSF",
   MNRAS 328, 977 (2001).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from skystack._typing import Image

__all__ = [
    "moffat_alpha",
    "moffat_fwhm",
    "moffat_peak_fraction",
    "moffat_pixel_fwhm",
    "moffat_kernel",
    "stamp_radii",
    "render_stars",
    "render_stars_reference",
    "MONO_LUT",
]

MONO_LUT = np.zeros((2, 2), dtype=np.int64)
"""Channel lookup of a mono sensor: every pixel uses weight column 0."""

_FLOOR_E = 0.02
"""Stamps extend until the profile falls below this many electrons per pixel."""


def moffat_alpha(fwhm: float, beta: float) -> float:
    """Return the Moffat core width ``alpha`` (px) for a full width at half maximum ``fwhm``."""
    return float(fwhm) / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def moffat_fwhm(alpha: float, beta: float) -> float:
    """Return the full width at half maximum (px) of a Moffat profile."""
    return 2.0 * float(alpha) * math.sqrt(2.0 ** (1.0 / beta) - 1.0)


def moffat_pixel_fwhm(fwhm: float, beta: float) -> float:
    """FWHM (px) of a Moffat star after integration over square pixels, as images show it.

    The profile through the centre along x of the Moffat convolved with the unit pixel box; its
    half-maximum width is what a fit of a point-sampled profile to pixel data measures (a
    little more than ``fwhm``: about 4% at 2.5 px, 1% at 5 px).
    """
    alpha = moffat_alpha(fwhm, beta)
    sub = (np.arange(48) + 0.5) / 48 - 0.5

    def profile(x: np.ndarray) -> np.ndarray:
        dx = x[:, None, None] + sub[None, :, None]
        dy = sub[None, None, :]
        return ((1.0 + (dx * dx + dy * dy) / alpha**2) ** -beta).mean(axis=(1, 2))

    peak = float(profile(np.zeros(1))[0])
    lo, hi = 0.0, 2.0 * fwhm + 2.0
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if profile(np.array([mid]))[0] > 0.5 * peak:
            lo = mid
        else:
            hi = mid
    return 2.0 * 0.5 * (lo + hi)


def moffat_peak_fraction(fwhm: float, beta: float) -> float:
    """Fraction of a star's flux falling on the central pixel when centred on it (approximate).

    Uses the profile's central surface density, ``(beta - 1) / (pi alpha^2)``, times one pixel;
    pixel integration makes the true value slightly smaller for sharp stars.
    """
    alpha = moffat_alpha(fwhm, beta)
    return (beta - 1.0) / (math.pi * alpha * alpha)


def moffat_kernel(
    fwhm: float, *, beta: float, radius: int | None = None, oversample: int = 3
) -> Image:
    """Return a pixel-integrated, centred Moffat kernel normalised to sum 1.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum in pixels.
    beta : float
        Moffat power index.
    radius : int, optional
        Half size; the kernel is ``(2 radius + 1)`` square. Default ``ceil(4 fwhm)``.
    oversample : int
        Sub-pixel samples per axis.
    """
    r = int(math.ceil(4.0 * fwhm)) if radius is None else int(radius)
    size = 2 * r + 1
    out = np.zeros((size, size), dtype=np.float32)
    render_stars(
        out,
        np.array([float(r)]),
        np.array([float(r)]),
        np.ones((1, 1)),
        fwhm=fwhm,
        beta=beta,
        radii=np.array([r + 1]),
        oversample=oversample,
        out=out,
    )
    out /= out.sum(dtype=np.float64)
    return out


def stamp_radii(
    peak_weight: npt.ArrayLike,
    *,
    fwhm: float,
    beta: float,
    floor: float = _FLOOR_E,
    max_radius: int = 96,
) -> npt.NDArray[np.int64]:
    """Half size (px) of each star's stamp: where its profile falls below ``floor`` electrons.

    Parameters
    ----------
    peak_weight : array_like
        The largest per-channel flux of each star (electrons).
    fwhm, beta : float
        The PSF.
    floor : float
        Surface density (electrons per pixel) at which the stamp is cut.
    max_radius : int
        Upper bound of the half size.
    """
    flux = np.maximum(np.asarray(peak_weight, dtype=np.float64), 1e-12)
    alpha = moffat_alpha(fwhm, beta)
    central = flux * (beta - 1.0) / (math.pi * alpha * alpha)
    ratio = np.maximum(central / floor, 1.0)
    radius = alpha * np.sqrt(np.maximum(ratio ** (1.0 / beta) - 1.0, 0.0))
    lower = math.ceil(1.5 * fwhm) + 1
    return np.clip(np.ceil(radius), lower, max(max_radius, lower)).astype(np.int64)


@numba.njit(cache=True, nogil=True, inline="always")
def _moffat(r2, inv_a2, beta):  # pragma: no cover - compiled
    base = 1.0 / (1.0 + r2 * inv_a2)
    if beta == 3.0:
        return base * base * base
    return base**beta


@numba.njit(cache=True, nogil=True)
def _stars_kernel(
    out, xs, ys, weights, lut, radii, alpha, beta, oversample, inner2
):  # pragma: no cover
    height, width = out.shape[0], out.shape[1]
    multi = out.ndim == 3
    n_channels = out.shape[2] if multi else 1
    norm = (beta - 1.0) / (math.pi * alpha * alpha)
    inv_a2 = 1.0 / (alpha * alpha)
    n_sub = oversample * oversample
    step = 1.0 / oversample
    first = 0.5 * step - 0.5
    flat = out.reshape(height, width * n_channels)
    for i in range(xs.shape[0]):
        x0 = xs[i]
        y0 = ys[i]
        rad = radii[i]
        ix0 = max(0, int(math.floor(x0 - rad)))
        ix1 = min(width - 1, int(math.ceil(x0 + rad)))
        iy0 = max(0, int(math.floor(y0 - rad)))
        iy1 = min(height - 1, int(math.ceil(y0 + rad)))
        for py in range(iy0, iy1 + 1):
            dyc = py - y0
            for px in range(ix0, ix1 + 1):
                dxc = px - x0
                r2c = dxc * dxc + dyc * dyc
                if r2c > inner2:
                    value = _moffat(r2c, inv_a2, beta)
                else:
                    acc = 0.0
                    for sy in range(oversample):
                        dy = dyc + first + sy * step
                        for sx in range(oversample):
                            dx = dxc + first + sx * step
                            acc += _moffat(dx * dx + dy * dy, inv_a2, beta)
                    value = acc / n_sub
                value *= norm
                if multi:
                    for c in range(n_channels):
                        flat[py, px * n_channels + c] += value * weights[i, c]
                else:
                    flat[py, px] += value * weights[i, lut[py & 1, px & 1]]


def _prepare(
    shape: tuple[int, int],
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    weights: npt.ArrayLike,
    fwhm: float,
    beta: float,
    radii: npt.ArrayLike | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xs = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    ys = np.ascontiguousarray(y, dtype=np.float64).reshape(-1)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = w[:, None]
    w = np.ascontiguousarray(w)
    if not (xs.shape[0] == ys.shape[0] == w.shape[0]):
        raise ValueError(
            f"star arrays differ in length: x {xs.shape[0]}, y {ys.shape[0]}, weights {w.shape[0]}"
        )
    if radii is None:
        rad = stamp_radii(np.abs(w).max(axis=1) if w.size else np.zeros(0), fwhm=fwhm, beta=beta)
    else:
        rad = np.ascontiguousarray(radii, dtype=np.int64).reshape(-1)
    height, width = shape
    keep = (
        (xs + rad >= -0.5)
        & (xs - rad <= width - 0.5)
        & (ys + rad >= -0.5)
        & (ys - rad <= height - 0.5)
        & np.isfinite(xs)
        & np.isfinite(ys)
    )
    return xs[keep], ys[keep], w[keep], rad[keep]


def render_stars(
    shape_or_image: tuple[int, int] | Image,
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    weights: npt.ArrayLike,
    *,
    fwhm: float,
    beta: float = 3.0,
    lut: npt.NDArray[np.integer] | None = None,
    radii: npt.ArrayLike | None = None,
    oversample: int = 3,
    out: Image | None = None,
) -> Image:
    """Render Moffat stars into a float32 image, integrating each over the pixel area.

    Parameters
    ----------
    shape_or_image : (H, W) or (H, W, C) tuple, or ndarray
        Output geometry (an array's shape is used when ``out`` is not given). With ``C``
        channels every pixel gets each star's ``weights[:, c]`` in channel ``c``.
    x, y : array_like
        Star centres in pixel coordinates (0-based pixel centres).
    weights : array_like, (N,) or (N, C)
        Total flux of each star in electrons. For a 2-D output with ``C`` columns, the column
        used at each pixel is chosen by ``lut`` (a Bayer mosaic: one column per colour); for a
        3-D output, column ``c`` goes to channel ``c``.
    fwhm : float
        Full width at half maximum in pixels.
    beta : float
        Moffat power index.
    lut : (2, 2) int array, optional
        2-D output: weight column for pixel ``[y, x]`` is ``lut[y % 2, x % 2]``. Default: column
        0 everywhere.
    radii : array_like of int, optional
        Half size of each star's square stamp; default from :func:`stamp_radii`.
    oversample : int
        Sub-pixel samples per axis for pixels within ``2 fwhm`` of the centre.
    out : ndarray, optional
        float32 image to add into (in place); otherwise a new zero image is made.

    Returns
    -------
    ndarray
        ``out`` or the new image, in electrons per pixel.
    """
    if out is None:
        shape = shape_or_image.shape if isinstance(shape_or_image, np.ndarray) else shape_or_image
        out = np.zeros(tuple(int(s) for s in shape), dtype=np.float32)
    if out.dtype != np.float32 or out.ndim not in (2, 3) or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be a C-contiguous 2-D or 3-D float32 array, not {out.dtype} {out.shape}"
        )
    xs, ys, w, rad = _prepare(out.shape[:2], x, y, weights, fwhm, beta, radii)
    lut_arr = MONO_LUT if lut is None else np.ascontiguousarray(lut, dtype=np.int64)
    if xs.size:
        if out.ndim == 3 and w.shape[1] != out.shape[2]:
            raise ValueError(f"{w.shape[1]} weight columns for {out.shape[2]} output channels")
        if out.ndim == 2 and int(lut_arr.max()) >= w.shape[1]:
            raise ValueError(f"lut refers to weight column {int(lut_arr.max())} of {w.shape[1]}")
        alpha = moffat_alpha(fwhm, beta)
        inner2 = (2.0 * fwhm) ** 2
        _stars_kernel(out, xs, ys, w, lut_arr, rad, alpha, float(beta), int(oversample), inner2)
    return out


def render_stars_reference(
    shape: tuple[int, ...],
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    weights: npt.ArrayLike,
    *,
    fwhm: float,
    beta: float = 3.0,
    lut: npt.NDArray[np.integer] | None = None,
    radii: npt.ArrayLike | None = None,
    oversample: int = 3,
) -> Image:
    """Plain numpy version of :func:`render_stars` (slow; used to test the numba kernel)."""
    out = np.zeros(shape, dtype=np.float64)
    xs, ys, w, rad = _prepare(tuple(shape[:2]), x, y, weights, fwhm, beta, radii)
    lut_arr = MONO_LUT if lut is None else np.asarray(lut, dtype=np.int64)
    alpha = moffat_alpha(fwhm, beta)
    norm = (beta - 1.0) / (math.pi * alpha * alpha)
    offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
    height, width = shape[:2]
    for x0, y0, wi, r in zip(xs, ys, w, rad, strict=True):
        ix = np.arange(max(0, math.floor(x0 - r)), min(width - 1, math.ceil(x0 + r)) + 1)
        iy = np.arange(max(0, math.floor(y0 - r)), min(height - 1, math.ceil(y0 + r)) + 1)
        dxc = ix[None, :] - x0
        dyc = iy[:, None] - y0
        r2c = dxc**2 + dyc**2
        dx = dxc[..., None, None] + offsets[None, None, None, :]
        dy = dyc[..., None, None] + offsets[None, None, :, None]
        sub = ((1.0 + (dx**2 + dy**2) / alpha**2) ** -beta).mean(axis=(2, 3))
        single = (1.0 + r2c / alpha**2) ** -beta
        value = np.where(r2c > (2.0 * fwhm) ** 2, single, sub) * norm
        if out.ndim == 3:
            out[np.ix_(iy, ix)] += value[..., None] * wi[None, None, :]
        else:
            column = lut_arr[(iy[:, None] & 1), (ix[None, :] & 1)]
            out[np.ix_(iy, ix)] += value * wi[column]
    return out.astype(np.float32)
