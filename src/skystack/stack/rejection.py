"""Pixel rejection along the frame axis of a cube of frames.

Each function takes a cube ``(N, ...)`` of frames (NaN = missing) and combines along axis 0.
The stacking engine grows the full set (winsorized, linear fit, GESD, ...); calibration masters
use the iterative kappa-sigma clipped mean already.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np

from skystack._kernels import sigma_clip_mean_columns
from skystack._typing import Cube, Image

__all__ = ["sigma_clipped_mean", "nan_median"]


def nan_median(cube: Cube) -> Image:
    """Median along axis 0 ignoring NaN, float32 (all-NaN columns give NaN without warnings)."""
    with _ignore_empty_slices():
        return np.nanmedian(cube, axis=0).astype(np.float32)


def sigma_clipped_mean(
    cube: Cube,
    *,
    kappa_low: float = 3.0,
    kappa_high: float = 3.0,
    max_iterations: int = 5,
) -> Image:
    """Iterative kappa-sigma clipped mean along axis 0.

    In each iteration, values further than ``kappa_low`` standard deviations below or
    ``kappa_high`` above the median of the remaining values are rejected; the mean of what is
    left is returned. Pixels with fewer than 3 remaining values are not clipped further.

    Clipping about the median removes values from the two ends of the sorted sample only, so
    the numba kernel sorts each pixel's values once and each iteration only moves the two ends
    of the kept run (:func:`skystack._kernels.sigma_clip_mean_columns`).

    Parameters
    ----------
    cube : ndarray
        ``(N, ...)`` frames; NaN marks missing values.
    kappa_low, kappa_high : float
        Rejection thresholds in standard deviations (population standard deviation).
    max_iterations : int
        Upper bound on the number of clipping passes.

    Returns
    -------
    ndarray
        float32 image of shape ``cube.shape[1:]`` (NaN where no value remains).
    """
    cube = np.asarray(cube, dtype=np.float32)
    flat = cube.reshape(cube.shape[0], -1)
    result = sigma_clip_mean_columns(
        flat, kappa_low=kappa_low, kappa_high=kappa_high, max_iterations=max_iterations
    )
    return result.reshape(cube.shape[1:])


@contextlib.contextmanager
def _ignore_empty_slices() -> Iterator[None]:
    """Silence numpy's 'All-NaN slice' and 'Mean of empty slice' warnings: NaN is the answer."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
