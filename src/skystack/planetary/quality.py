"""Sharpness of planetary frames, globally and in small boxes, and selection of the best frames.

The measure is the mean squared gradient (Sobel) of the Gaussian-smoothed luminance, divided by
the squared mean brightness of the frame [1]_ [2]_. Smoothing by ``sigma`` pixels keeps the shot
and read noise from dominating the gradient energy; dividing by the squared mean brightness makes
the score a dimensionless contrast measure, so a passing cloud or a change of gain or exposure
(a brightness scale) leaves it unchanged. The mean brightness does not change with blur (blur
conserves flux), so blurrier frames always score lower.

References
----------
.. [1] S. Pertuz, D. Puig, M. A. Garcia, "Analysis of focus measure operators for
   shape-from-focus", Pattern Recognition 46, 1415 (2013) (the gradient-energy "GRA6" and
   Tenengrad operators).
.. [2] E. Kraaikamp, AutoStakkert! 3 manual (2019): local quality estimation on a grid of
   alignment points for lucky imaging.
"""

from __future__ import annotations

import math
import numbers

import cv2
import numpy as np
import numpy.typing as npt

from skystack._typing import Image, Mask
from skystack.errors import ConfigError, GeometryError

__all__ = [
    "luminance",
    "gradient_energy",
    "sharpness",
    "local_sharpness",
    "measure_sharpness",
    "select_best",
]

_TINY = 1e-30


def luminance(image: npt.ArrayLike) -> Image:
    """Return the luminance of a frame as float32 ``(H, W)``.

    Parameters
    ----------
    image : array_like (H, W) or (H, W, 3)
        Mono or colour frame, any numeric dtype (no rescaling is done).

    Returns
    -------
    ndarray float32 (H, W)
        The frame itself for mono, the mean of the three channels for colour. Non-finite
        values are replaced by 0.

    Raises
    ------
    GeometryError
        If the array is not ``(H, W)`` or ``(H, W, 3)``.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3:
        # Imported here: skystack.detect loads numba and sep, which mono videos never need.
        from skystack.detect.stars import luminance as channel_mean

        lum = channel_mean(arr)
    elif arr.ndim == 2:
        lum = np.ascontiguousarray(arr, dtype=np.float32)
    else:
        msg = f"expected a (H, W) or (H, W, 3) frame, got an array of shape {arr.shape}"
        raise GeometryError(msg)
    if lum.size and not math.isfinite(cv2.sumElems(lum)[0]):
        lum = np.nan_to_num(lum, nan=0.0, posinf=0.0, neginf=0.0)
    return lum


def _smooth(lum: Image, sigma: float) -> Image:
    if sigma < 0 or not math.isfinite(sigma):
        raise ConfigError(f"sigma must be a number >= 0 (px), got {sigma!r}")
    if sigma <= 0:
        return lum
    return cv2.GaussianBlur(lum, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def gradient_energy(image: npt.ArrayLike, *, sigma: float = 1.0) -> Image:
    """Return the squared gradient magnitude of the smoothed luminance, per pixel.

    Parameters
    ----------
    image : array_like (H, W) or (H, W, 3)
        Frame (colour is measured on the mean of the channels).
    sigma : float
        Gaussian smoothing before differentiation (px); 0 for none.

    Returns
    -------
    ndarray float32 (H, W)
        ``gx**2 + gy**2`` with 3x3 Sobel derivatives scaled to brightness units per pixel.
    """
    return _energy(luminance(image), float(sigma))


def _energy(lum: Image, sigma: float) -> Image:
    lum = _smooth(lum, sigma)
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    return cv2.add(cv2.multiply(gx, gx), cv2.multiply(gy, gy))


def sharpness(image: npt.ArrayLike, *, sigma: float = 1.0, mask: Mask | None = None) -> float:
    """Return the sharpness of a frame: normalised mean squared gradient.

    Parameters
    ----------
    image : array_like (H, W) or (H, W, 3)
        Frame in linear units (colour is measured on the mean of the channels).
    sigma : float
        Gaussian smoothing before the Sobel gradient (px); it suppresses noise. Use the same
        value for every frame that is compared.
    mask : ndarray of bool (H, W), optional
        True where a pixel is bad or missing; those pixels are left out of both the gradient
        energy and the mean brightness.

    Returns
    -------
    float
        ``mean(|grad L|**2) / mean(L)**2`` over the good pixels (1/px**2); higher is sharper.
        Invariant to a brightness scale of the frame. 0 for a frame with no light.

    Raises
    ------
    GeometryError
        If the frame is not 2-D or 3-channel, or the mask does not match it.
    """
    lum = luminance(image)
    energy = gradient_energy(lum, sigma=sigma)
    if lum.size == 0:
        return 0.0
    if mask is None:
        mean_e = cv2.mean(energy)[0]
        mean_l = cv2.mean(lum)[0]
    else:
        good = ~np.asarray(mask, dtype=bool)
        if good.shape != lum.shape:
            msg = f"mask of shape {good.shape} does not match the frame's {lum.shape}"
            raise GeometryError(msg)
        if not good.any():
            return 0.0
        good8 = good.view(np.uint8)
        mean_e = cv2.mean(energy, mask=good8)[0]
        mean_l = cv2.mean(lum, mask=good8)[0]
    if abs(mean_l) <= _TINY:
        return 0.0
    return mean_e / (mean_l * mean_l)


def _box_sums(
    integral: npt.NDArray[np.float64],
    x0: npt.NDArray[np.int64],
    y0: npt.NDArray[np.int64],
    x1: npt.NDArray[np.int64],
    y1: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]:
    return integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]


def local_sharpness(
    image: npt.ArrayLike,
    centres: npt.ArrayLike,
    size: int,
    *,
    sigma: float = 1.0,
) -> npt.NDArray[np.float64]:
    """Return the sharpness in square boxes of a frame.

    The gradient energy is summed in each box with an integral image, so many boxes cost
    little more than one. Each box's mean gradient energy is divided by the squared mean
    brightness of the *whole frame*: boxes of one frame are comparable with each other (an
    empty-sky box scores low rather than being blown up by its faint level), and a box is
    comparable across frames whatever their transparency.

    Parameters
    ----------
    image : array_like (H, W) or (H, W, 3)
        Frame (colour is measured on the mean of the channels).
    centres : array_like (n, 2)
        Box centres ``(x, y)`` (px); a box spans ``round(c) - size // 2`` to that plus
        ``size``, clipped to the frame.
    size : int
        Box side (px), at least 1.
    sigma : float
        Gaussian smoothing before the Sobel gradient (px).

    Returns
    -------
    ndarray float64 (n,)
        Sharpness per box, in the units of :func:`sharpness` (a box covering the whole frame
        gives the same value); NaN for a box entirely outside the frame.

    Raises
    ------
    ConfigError
        If ``size`` < 1 or ``centres`` is not ``(n, 2)``.
    """
    return measure_sharpness(image, centres, size, sigma=sigma)[1]


def measure_sharpness(
    image: npt.ArrayLike,
    centres: npt.ArrayLike,
    size: int,
    *,
    sigma: float = 1.0,
) -> tuple[float, npt.NDArray[np.float64]]:
    """Return the sharpness of a frame and of square boxes in it, from one gradient image.

    A lucky-imaging survey needs both numbers for every frame; computing the gradient energy
    once for the two costs half as much as :func:`sharpness` and :func:`local_sharpness`.

    Parameters
    ----------
    image, centres, size, sigma
        As in :func:`local_sharpness`.

    Returns
    -------
    whole : float
        :func:`sharpness` of the frame (no mask).
    boxes : ndarray float64 (n,)
        :func:`local_sharpness` of the boxes.

    Raises
    ------
    ConfigError
        If ``size`` < 1 or ``centres`` is not ``(n, 2)``.
    """
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ConfigError(f"box size must be an integer >= 1 (px), got {size!r}")
    pts = np.asarray(centres, dtype=np.float64)
    if pts.size == 0:
        pts = np.empty((0, 2), dtype=np.float64)
    if pts.ndim == 1 and pts.shape == (2,):
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ConfigError(f"centres must be an (n, 2) array of (x, y), got shape {pts.shape}")
    lum = luminance(image)
    height, width = lum.shape
    if lum.size == 0:
        return 0.0, np.full(len(pts), np.nan)
    energy = _energy(lum, float(sigma))
    integral = cv2.integral(energy, sdepth=cv2.CV_64F)
    mean_l = cv2.mean(lum)[0]
    norm = mean_l * mean_l
    whole = 0.0 if abs(mean_l) <= _TINY else float(integral[-1, -1]) / lum.size / norm
    half = int(size) // 2
    finite = np.isfinite(pts).all(axis=1)
    # Corners (x, y) of every box, clipped to the frame, both axes at once (few NumPy calls:
    # a survey measures every frame).
    start = np.rint(np.where(finite[:, None], np.clip(pts, -1e9, 1e9), -1e9)).astype(np.int64)
    start -= half
    limit = np.array([width, height], dtype=np.int64)
    low = np.minimum(np.maximum(start, 0), limit)
    high = np.minimum(np.maximum(start + int(size), 0), limit)
    extent = high - low
    area = extent[:, 0] * extent[:, 1]
    sums = _box_sums(integral, low[:, 0], low[:, 1], high[:, 0], high[:, 1])
    out = np.full(len(pts), np.nan)
    ok = (area > 0) & finite
    if abs(mean_l) <= _TINY:
        out[ok] = 0.0
        return whole, out
    out[ok] = sums[ok] / area[ok] / norm
    return whole, out


def select_best(scores: npt.ArrayLike, best: float | int) -> npt.NDArray[np.intp]:
    """Return the indices of the best-scoring frames, sorted ascending.

    Parameters
    ----------
    scores : array_like (N,)
        One score per frame, higher is better (for example :func:`sharpness`). NaN ranks
        below every number.
    best : float or int
        A fraction in (0, 1] of the frames (a float: ``0.25`` keeps 25 %, rounded up, at
        least one frame) or a count (an int >= 1; a count above N keeps all N frames).

    Returns
    -------
    ndarray of intp
        Indices of the kept frames in ascending order. Among equal scores the earlier frame
        wins, so the result is deterministic.

    Raises
    ------
    ConfigError
        If ``best`` is not a fraction in (0, 1] or an int >= 1 (a bool, 0, a negative number,
        a float above 1 such as 25.0 for 25 %, NaN), or ``scores`` is not 1-D.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ConfigError(f"scores must be a 1-D array (one per frame), got shape {values.shape}")
    n_frames = values.size
    if isinstance(best, bool) or not isinstance(best, numbers.Real):
        msg = f"best must be a fraction in (0, 1] or a frame count >= 1, got {best!r}"
        raise ConfigError(msg)
    if isinstance(best, numbers.Integral):
        if best < 1:
            raise ConfigError(f"best must be a frame count >= 1, got {best!r}")
        count = min(int(best), n_frames)
    else:
        fraction = float(best)
        if not (0.0 < fraction <= 1.0):
            msg = (
                f"best must be a fraction in (0, 1] (0.25 keeps 25 %) or an int count >= 1, "
                f"got {best!r}"
            )
            raise ConfigError(msg)
        count = min(n_frames, max(1, math.ceil(fraction * n_frames - 1e-9)))
    if count == 0:
        return np.empty(0, dtype=np.intp)
    key = np.where(np.isnan(values), -np.inf, values)
    order = np.argsort(-key, kind="stable")
    return np.sort(order[:count]).astype(np.intp)
