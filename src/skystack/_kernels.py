"""numba kernels for hot loops, each with a plain numpy reference used in the tests.

The kernels release the GIL (``nogil``) and run in parallel over pixels, so stacking threads
over strips and numba's own threads both use every core.
"""

from __future__ import annotations

import numba
import numpy as np

from skystack._typing import Image

__all__ = ["sigma_clip_mean_columns", "sigma_clip_mean_reference"]

_CHUNK = 4096  # pixels per parallel work item: one scratch buffer each


@numba.njit(parallel=True, nogil=True, cache=True)
def _sigma_clip_mean_kernel(data, kappa_low, kappa_high, max_iterations, out):  # pragma: no cover
    n, pixels = data.shape
    chunks = (pixels + _CHUNK - 1) // _CHUNK
    for chunk in numba.prange(chunks):
        values = np.empty(n, dtype=np.float64)
        for j in range(chunk * _CHUNK, min(pixels, (chunk + 1) * _CHUNK)):
            m = 0
            for i in range(n):
                v = data[i, j]
                if np.isfinite(v):
                    # insertion into the sorted prefix: n is small (frames of a stack)
                    k = m
                    while k > 0 and values[k - 1] > v:
                        values[k] = values[k - 1]
                        k -= 1
                    values[k] = v
                    m += 1
            lo = 0
            hi = m
            for _ in range(max_iterations):
                count = hi - lo
                if count < 3:
                    break
                mid = lo + count // 2
                center = values[mid] if count % 2 == 1 else 0.5 * (values[mid - 1] + values[mid])
                total = 0.0
                for k in range(lo, hi):
                    total += values[k]
                mean = total / count
                squares = 0.0
                for k in range(lo, hi):
                    squares += (values[k] - mean) ** 2
                spread = np.sqrt(squares / count)
                new_lo = lo
                while new_lo < hi and values[new_lo] < center - kappa_low * spread:
                    new_lo += 1
                new_hi = hi
                while new_hi > new_lo and values[new_hi - 1] > center + kappa_high * spread:
                    new_hi -= 1
                if new_lo == lo and new_hi == hi:
                    break
                lo = new_lo
                hi = new_hi
            if hi > lo:
                total = 0.0
                for k in range(lo, hi):
                    total += values[k]
                out[j] = total / (hi - lo)
            else:
                out[j] = np.nan


def sigma_clip_mean_columns(
    data: np.ndarray, *, kappa_low: float, kappa_high: float, max_iterations: int
) -> Image:
    """Kappa-sigma clipped mean of each column of ``data`` ``(N, P)`` (NaN = missing).

    Each iteration rejects values beyond ``kappa`` population standard deviations from the
    median of the values left; at least 3 values are needed to clip. Returns ``(P,)`` float32.
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    out = np.empty(data.shape[1], dtype=np.float32)
    _sigma_clip_mean_kernel(data, float(kappa_low), float(kappa_high), int(max_iterations), out)
    return out


def sigma_clip_mean_reference(
    data: np.ndarray, *, kappa_low: float, kappa_high: float, max_iterations: int
) -> Image:
    """The same as :func:`sigma_clip_mean_columns` with plain numpy (slow; for tests)."""
    import warnings

    values = np.array(data, dtype=np.float64, copy=True)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for _ in range(max_iterations):
            count = np.isfinite(values).sum(axis=0)
            center = np.nanmedian(values, axis=0)
            spread = np.nanstd(values, axis=0)
            reject = (values < center - kappa_low * spread) | (
                values > center + kappa_high * spread
            )
            reject &= count >= 3
            if not reject.any():
                break
            values[reject] = np.nan
        return np.nanmean(values, axis=0).astype(np.float32)
