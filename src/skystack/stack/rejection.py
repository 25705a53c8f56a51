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
    left is returned. With fewer than 3 valid values the plain mean is used.

    Parameters
    ----------
    cube : ndarray
        ``(N, ...)`` frames; NaN marks missing values.
    kappa_low, kappa_high : float
        Rejection thresholds in standard deviations.
    max_iterations : int
        Upper bound on the number of clipping passes.

    Returns
    -------
    ndarray
        float32 image of shape ``cube.shape[1:]`` (NaN where no value remains).
    """
    data = np.array(cube, dtype=np.float32, copy=True)
    for _ in range(max_iterations):
        valid = np.isfinite(data)
        count = valid.sum(axis=0)
        center = nan_median(data)
        with _ignore_empty_slices():
            spread = np.nanstd(data, axis=0)
        clip = (count >= 3) & (spread > 0)
        low = data < center - np.float32(kappa_low) * spread
        high = data > center + np.float32(kappa_high) * spread
        reject = (low | high) & clip
        if not reject.any():
            break
        data[reject] = np.nan
    with _ignore_empty_slices():
        return np.nanmean(data, axis=0).astype(np.float32)


@contextlib.contextmanager
def _ignore_empty_slices() -> Iterator[None]:
    """Silence numpy's 'All-NaN slice' and 'Mean of empty slice' warnings: NaN is the answer."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
