"""A map of the noise level across an image.

A stack is not equally deep everywhere: where dithered or rotated frames overlap less (the
corners of a session with a meridian flip, the edges of a dithered set, a mosaic's seams) its
noise is higher, often twice as high. Star detection, noise reduction and sharpening protection
all compare the image with its noise; with one global noise figure they mistake noise for stars
in the shallow parts and leave them noisy. :func:`noise_map` measures the noise locally, and
:func:`relative_noise` turns it into a smooth factor to divide by, so those steps see an image of
even noise.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from skystack._typing import Image
from skystack.detect.stars import luminance
from skystack.errors import GeometryError

__all__ = ["noise_map", "relative_noise"]

_MAD_TO_SIGMA = 1.4826
_HIGHPASS_SIGMA = 1.0


def _highpass_gain() -> float:
    """Standard deviation of the high-pass of unit white noise (analytic, from the kernel)."""
    size = 2 * int(np.ceil(4 * _HIGHPASS_SIGMA)) + 1
    kernel = cv2.getGaussianKernel(size, _HIGHPASS_SIGMA).astype(np.float64)
    kernel2d = kernel @ kernel.T
    impulse = -kernel2d
    impulse[size // 2, size // 2] += 1.0
    return float(np.sqrt((impulse**2).sum()))


def noise_map(image: npt.ArrayLike, *, box: int = 64) -> Image:
    """Local standard deviation of the pixel noise, smooth over a few boxes.

    The image (the mean of the channels for colour) minus its Gaussian blur (sigma 1 px) keeps
    the pixel-to-pixel noise and little of stars or nebulae; in every ``box`` x ``box`` block
    the noise is 1.4826 times the median absolute deviation of that high-pass (robust to the
    stars in the block), divided by the high-pass's gain for white noise. The block values are
    median-filtered over 3 x 3 blocks (a bright star or an edge cannot raise one block alone)
    and interpolated bilinearly to every pixel.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, 3)
        Linear or stretched data; NaN pixels are ignored.
    box : int
        Block size (px).

    Returns
    -------
    ndarray float32, (H, W)
        Noise sigma of the channel mean at every pixel (0 where a whole neighbourhood is NaN
        or constant).
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim == 3 and data.shape[2] == 3:
        data = luminance(data)
    if data.ndim != 2 or min(data.shape) < 8:
        raise GeometryError(f"noise_map needs an (H, W) or (H, W, 3) image, not {data.shape}")
    if box < 8:
        raise GeometryError(f"noise_map box must be at least 8 px, not {box}")
    finite = np.isfinite(data)
    all_finite = bool(finite.all())
    filled = data
    if not all_finite:
        fill = np.median(data[finite]) if finite.any() else 0.0
        filled = np.where(finite, data, np.float32(fill))
    highpass = filled - cv2.GaussianBlur(filled, (0, 0), _HIGHPASS_SIGMA)
    if not all_finite:
        highpass[~finite] = np.nan
    height, width = data.shape
    rows, cols = max(1, height // box), max(1, width // box)
    # A sample of 16 x 16 pixels per block is plenty for a median and keeps 24 MP under 0.5 s.
    step = max(1, box // 16)
    span = box // step
    blocks = highpass[: rows * box : step, : cols * box : step]
    blocks = blocks[: rows * span, : cols * span].reshape(rows, span, cols, span)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    median = np.median if all_finite else np.nanmedian
    centre = median(blocks, axis=2, keepdims=True)
    sigma = _MAD_TO_SIGMA * median(np.abs(blocks - centre), axis=2) / _highpass_gain()
    sigma = np.nan_to_num(sigma, nan=0.0).astype(np.float32)
    if min(rows, cols) >= 3:
        sigma = cv2.medianBlur(sigma, 3)
    return cv2.resize(sigma, (width, height), interpolation=cv2.INTER_LINEAR)


def relative_noise(
    image: npt.ArrayLike, *, box: int = 64, min_ratio: float = 1.15
) -> Image | None:
    """The noise map divided by its median, or None when the noise is even enough.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, 3)
        The image.
    box : int
        Block size of :func:`noise_map`.
    min_ratio : float
        When the 99th percentile of the map is below ``min_ratio`` times its median the noise
        counts as even and None is returned (nothing to equalise).

    Returns
    -------
    ndarray float32, (H, W) or None
        A factor around 1 (floored at 0.25 so dividing by it stays safe).
    """
    sigma = noise_map(image, box=box)
    positive = sigma[sigma > 0]
    if positive.size == 0:
        return None
    median = float(np.median(positive))
    if float(np.percentile(positive, 99)) < min_ratio * median:
        return None
    return np.maximum(sigma / np.float32(median), np.float32(0.25))
