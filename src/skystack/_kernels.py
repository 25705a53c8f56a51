"""numba kernels for hot loops, each with a plain numpy reference used in the tests.

The kernels release the GIL (``nogil``) and run in parallel over pixels, so stacking threads
over strips and numba's own threads both use every core. :func:`combine_columns` is the
per-pixel rejection and combination behind :func:`skystack.stack.rejection.combine`;
:func:`combine_columns_reference` is its one-pixel-at-a-time numpy twin.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numba
import numpy as np

from skystack._typing import Image

__all__ = [
    "sigma_clip_mean_columns",
    "sigma_clip_mean_reference",
    "CombinedColumns",
    "COMBINE_CODES",
    "REJECT_CODES",
    "combine_columns",
    "combine_columns_reference",
    "gesd_critical_values",
]

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


# --------------------------------------------------------------------------------------------
# Per-pixel combination with outlier rejection (skystack.stack.rejection.combine)
# --------------------------------------------------------------------------------------------

COMBINE_CODES: dict[str, int] = {"mean": 0, "median": 1, "sum": 2, "max": 3, "min": 4}
"""Integer codes of the combine methods inside the kernels."""
REJECT_CODES: dict[str, int] = {
    "none": 0,
    "percentile": 1,
    "sigma": 2,
    "mad": 3,
    "winsorized": 4,
    "linear-fit": 5,
    "minmax": 6,
    "gesd": 7,
}
"""Integer codes of the rejection methods inside the kernels."""

MIN_KEPT = 3
"""Rejection never leaves fewer values than this in a pixel (2 for min/max trimming)."""
MIN_KEPT_MINMAX = 2
MAD_TO_SIGMA = 1.4826
"""Normal-consistency factor of the median absolute deviation."""
WINSOR_CLIP = 1.5
"""Winsorization bound in sigmas (Huber's c)."""
WINSOR_FACTOR = 1.134
"""Normal-consistency factor of the standard deviation winsorized at ±1.5 sigma."""
WINSOR_TOLERANCE = 5e-4
"""Relative change of the winsorized sigma at which its iteration stops."""
WINSOR_MAX_STEPS = 50


@dataclass(frozen=True, eq=False)
class CombinedColumns:
    """What :func:`combine_columns` returns (arrays of shape ``data.shape[1:]``)."""

    image: np.ndarray
    count: np.ndarray
    low: np.ndarray
    high: np.ndarray
    rejected_per_frame: np.ndarray
    mask: np.ndarray | None


def gesd_critical_values(n_max: int, alpha: float) -> np.ndarray:
    """Rosner's critical values ``lambda[n, i]`` of the generalized ESD test.

    ``lambda[n, i] = (n - i) t / sqrt((n - i - 1 + t**2) (n - i + 1))`` with ``t`` the
    ``1 - alpha / (2 (n - i + 1))`` quantile of Student's t with ``n - i - 1`` degrees of
    freedom, for a sample of ``n`` values and the ``i``-th (1-based) removed value; entries
    that would leave fewer than 3 values are ``inf`` (Rosner 1983, Technometrics 25, 165).

    Returns a float64 ``(n_max + 1, n_max + 1)`` table.
    """
    from scipy.stats import t as student_t

    table = np.full((n_max + 1, n_max + 1), np.inf)
    n, i = np.meshgrid(np.arange(n_max + 1), np.arange(n_max + 1), indexing="ij")
    valid = (i >= 1) & (i <= n - MIN_KEPT)
    nv = n[valid].astype(np.float64)
    iv = i[valid].astype(np.float64)
    p = 1.0 - alpha / (2.0 * (nv - iv + 1.0))
    t = student_t.ppf(p, nv - iv - 1.0)
    table[valid] = (nv - iv) * t / np.sqrt((nv - iv - 1.0 + t * t) * (nv - iv + 1.0))
    return table


@numba.njit(cache=True, nogil=True)
def _median_run(values, lo, hi):  # pragma: no cover
    count = hi - lo
    mid = lo + count // 2
    if count % 2 == 1:
        return values[mid]
    return 0.5 * (values[mid - 1] + values[mid])


@numba.njit(cache=True, nogil=True)
def _std_run(values, lo, hi, ddof):  # pragma: no cover
    count = hi - lo
    total = 0.0
    for k in range(lo, hi):
        total += values[k]
    mean = total / count
    squares = 0.0
    for k in range(lo, hi):
        squares += (values[k] - mean) ** 2
    return mean, np.sqrt(squares / (count - ddof))


@numba.njit(cache=True, nogil=True)
def _mad_run(values, lo, hi, center):  # pragma: no cover
    # The deviations of the sorted run from its median are two sorted sequences (walking
    # out from the median to either end): merge them until the middle one(s).
    count = hi - lo
    mid = lo + count // 2
    if count % 2 == 1:
        left = mid
        right = mid + 1
    else:
        left = mid - 1
        right = mid
    k1 = (count - 1) // 2
    k2 = count // 2
    d1 = 0.0
    d2 = 0.0
    for step in range(k2 + 1):
        if left >= lo and (right >= hi or center - values[left] <= values[right] - center):
            d = center - values[left]
            left -= 1
        else:
            d = values[right] - center
            right += 1
        if step == k1:
            d1 = d
        if step == k2:
            d2 = d
    if k1 == k2:
        return d1
    return 0.5 * (d1 + d2)


@numba.njit(cache=True, nogil=True)
def _winsorized_sigma_run(values, lo, hi, center):  # pragma: no cover
    count = hi - lo
    sigma = _std_run(values, lo, hi, 1)[1]
    for _ in range(WINSOR_MAX_STEPS):
        lower = center - WINSOR_CLIP * sigma
        upper = center + WINSOR_CLIP * sigma
        # one pass over the winsorized values, centred on the median for accuracy
        total = 0.0
        squares = 0.0
        for k in range(lo, hi):
            d = min(max(values[k], lower), upper) - center
            total += d
            squares += d * d
        mean = total / count
        new_sigma = WINSOR_FACTOR * np.sqrt(max(squares - count * mean * mean, 0.0) / (count - 1))
        done = abs(new_sigma - sigma) <= WINSOR_TOLERANCE * sigma
        sigma = new_sigma
        if done:
            break
    return sigma


@numba.njit(cache=True, nogil=True)
def _score(deviation, threshold):  # pragma: no cover
    if threshold > 0.0:
        return deviation / threshold
    return np.inf


@numba.njit(cache=True, nogil=True)
def _clip_ends(values, lo, hi, center, dist_low, dist_high):  # pragma: no cover
    """New ``(lo, hi)`` after rejecting values below ``center - dist_low`` or above
    ``center + dist_high``; if fewer than MIN_KEPT would remain, the most deviant candidates
    (deviation over threshold, low side first on ties) go first until MIN_KEPT remain."""
    lower = center - dist_low
    upper = center + dist_high
    new_lo = lo
    while new_lo < hi and values[new_lo] < lower:
        new_lo += 1
    new_hi = hi
    while new_hi > new_lo and values[new_hi - 1] > upper:
        new_hi -= 1
    if new_hi - new_lo >= MIN_KEPT:
        return new_lo, new_hi
    a = lo
    b = hi
    while b - a > MIN_KEPT:
        can_low = a < new_lo
        can_high = b > new_hi
        if can_low and can_high:
            if _score(center - values[a], dist_low) >= _score(values[b - 1] - center, dist_high):
                a += 1
            else:
                b -= 1
        elif can_low:
            a += 1
        elif can_high:
            b -= 1
        else:
            break
    return a, b


@numba.njit(cache=True, nogil=True)
def _linear_fit_reject(
    values, m, state, kept, resid, low, high, max_iterations
):  # pragma: no cover
    nk = m
    for k in range(m):
        kept[k] = k
    for _ in range(max_iterations):
        if nk <= MIN_KEPT:
            break
        # least-squares line through (rank, value) of the kept, sorted values
        x_mean = 0.5 * (nk - 1)
        y_total = 0.0
        for k in range(nk):
            y_total += values[kept[k]]
        y_mean = y_total / nk
        sxx = 0.0
        sxy = 0.0
        for k in range(nk):
            dx = k - x_mean
            sxx += dx * dx
            sxy += dx * (values[kept[k]] - y_mean)
        slope = sxy / sxx
        intercept = y_mean - slope * x_mean
        spread = 0.0
        for k in range(nk):
            resid[k] = values[kept[k]] - (intercept + slope * k)
            spread += abs(resid[k])
        spread /= nk
        dist_low = low * spread
        dist_high = high * spread
        candidates = 0
        for k in range(nk):
            if resid[k] < -dist_low or resid[k] > dist_high:
                candidates += 1
        if candidates == 0:
            break
        allowed = min(candidates, nk - MIN_KEPT)
        # reject the `allowed` most deviant candidates (all of them unless the guard bites)
        for _ in range(allowed):
            best = -1
            best_score = -1.0
            for k in range(nk):
                if state[kept[k]] != 0:
                    continue
                if resid[k] < -dist_low:
                    score = _score(-resid[k], dist_low)
                elif resid[k] > dist_high:
                    score = _score(resid[k], dist_high)
                else:
                    continue
                if score > best_score:
                    best = k
                    best_score = score
            state[kept[best]] = -1 if resid[best] < 0 else 1
        out = 0
        for k in range(nk):
            if state[kept[k]] == 0:
                kept[out] = kept[k]
                out += 1
        nk = out


@numba.njit(cache=True, nogil=True)
def _reject_sorted(
    values, m, state, kept, resid, reject, low, high, max_iterations, lam
):  # pragma: no cover
    """Label the sorted ``values[:m]``: ``state`` 0 kept, -1 rejected low, +1 rejected high."""
    for k in range(m):
        state[k] = 0
    if reject == 0 or m == 0:
        return
    if reject == 5:
        _linear_fit_reject(values, m, state, kept, resid, low, high, max_iterations)
        return
    lo = 0
    hi = m
    if reject == 1:  # percentile: one pass about the median, bounds a fraction of it
        if m > MIN_KEPT:
            center = _median_run(values, 0, m)
            lo, hi = _clip_ends(values, 0, m, center, low * abs(center), high * abs(center))
    elif reject == 6:  # minmax: trim counts, alternately low then high
        budget_low = int(low)
        budget_high = int(high)
        while hi - lo > MIN_KEPT_MINMAX and (budget_low > 0 or budget_high > 0):
            if budget_low > 0:
                lo += 1
                budget_low -= 1
            if hi - lo > MIN_KEPT_MINMAX and budget_high > 0:
                hi -= 1
                budget_high -= 1
    elif reject == 7:  # generalized ESD: low = max outlier fraction, lam from alpha
        steps = min(int(np.floor(low * m)), m - MIN_KEPT)
        outliers = 0
        a = 0
        b = m
        for i in range(steps):
            mean, sd = _std_run(values, a, b, 1)
            dev_low = mean - values[a]
            dev_high = values[b - 1] - mean
            if dev_high > dev_low:
                statistic = dev_high / sd if sd > 0.0 else 0.0
                resid[i] = 1.0
                b -= 1
            else:
                statistic = dev_low / sd if sd > 0.0 else 0.0
                resid[i] = -1.0
                a += 1
            if statistic > lam[m, i + 1]:
                outliers = i + 1
        for i in range(outliers):
            if resid[i] < 0.0:
                lo += 1
            else:
                hi -= 1
    else:  # iterative clipping about the median: sigma, mad, winsorized
        for _ in range(max_iterations):
            if hi - lo <= MIN_KEPT:
                break
            center = _median_run(values, lo, hi)
            if reject == 2:
                spread = _std_run(values, lo, hi, 0)[1]
            elif reject == 3:
                spread = MAD_TO_SIGMA * _mad_run(values, lo, hi, center)
            else:
                spread = _winsorized_sigma_run(values, lo, hi, center)
            new_lo, new_hi = _clip_ends(values, lo, hi, center, low * spread, high * spread)
            if new_lo == lo and new_hi == hi:
                break
            lo = new_lo
            hi = new_hi
    for k in range(lo):
        state[k] = -1
    for k in range(hi, m):
        state[k] = 1


@numba.njit(parallel=True, nogil=True, cache=True)
def _combine_kernel(
    data,
    weights,
    method,
    reject,
    low,
    high,
    max_iterations,
    lam,
    image,
    count,
    n_low,
    n_high,
    per_frame,
    mask,
    want_mask,
):  # pragma: no cover
    n, rows, cols = data.shape
    pixels = rows * cols
    chunks = (pixels + _CHUNK - 1) // _CHUNK
    for chunk in numba.prange(chunks):
        values = np.empty(n, dtype=np.float64)
        order = np.empty(n, dtype=np.int64)
        state = np.empty(n, dtype=np.int8)
        kept = np.empty(n, dtype=np.int64)
        resid = np.empty(n, dtype=np.float64)
        for p in range(chunk * _CHUNK, min(pixels, (chunk + 1) * _CHUNK)):
            r = p // cols
            c = p - r * cols
            m = 0
            for i in range(n):
                v = data[i, r, c]
                if np.isfinite(v):
                    # stable insertion sort: n is small (frames of a stack)
                    k = m
                    while k > 0 and values[k - 1] > v:
                        values[k] = values[k - 1]
                        order[k] = order[k - 1]
                        k -= 1
                    values[k] = v
                    order[k] = i
                    m += 1
            _reject_sorted(values, m, state, kept, resid, reject, low, high, max_iterations, lam)
            kept_count = 0
            rejected_low = 0
            rejected_high = 0
            first = -1
            last = -1
            total = 0.0
            weight_total = 0.0
            for k in range(m):
                s = state[k]
                if s == 0:
                    if first < 0:
                        first = k
                    last = k
                    kept[kept_count] = k
                    kept_count += 1
                    w = weights[order[k]]
                    total += w * values[k]
                    weight_total += w
                else:
                    per_frame[chunk, order[k]] += 1
                    if s < 0:
                        rejected_low += 1
                    else:
                        rejected_high += 1
            count[r, c] = kept_count
            n_low[r, c] = rejected_low
            n_high[r, c] = rejected_high
            if kept_count == 0:
                image[r, c] = np.nan
            elif method == 0 or method == 2:
                if weight_total > 0.0:
                    result = total / weight_total
                    image[r, c] = result * n if method == 2 else result
                else:
                    image[r, c] = np.nan
            elif method == 1:
                half = kept_count // 2
                if kept_count % 2 == 1:
                    image[r, c] = values[kept[half]]
                else:
                    image[r, c] = 0.5 * (values[kept[half - 1]] + values[kept[half]])
            elif method == 3:
                image[r, c] = values[last]
            else:
                image[r, c] = values[first]
            if want_mask:
                for i in range(n):
                    mask[i, r, c] = False
                for k in range(m):
                    if state[k] != 0:
                        mask[order[k], r, c] = True


_WORKQUEUE_LOCK = threading.Lock()


def _launch_guard() -> threading.Lock | contextlib.AbstractContextManager[None]:
    """A lock around parallel launches when numba runs on its ``workqueue`` layer, which
    aborts on concurrent launches from several Python threads (tbb and omp do not)."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return _WORKQUEUE_LOCK
    return contextlib.nullcontext() if layer in ("tbb", "omp") else _WORKQUEUE_LOCK


def _as_3d(data: np.ndarray) -> np.ndarray:
    """View ``(N, ...)`` as ``(N, A, B)`` (a copy only when the strides do not allow a view)."""
    n = data.shape[0]
    if data.ndim == 1:
        return data.reshape(n, 1, 1)
    if data.ndim == 2:
        return data.reshape(n, 1, data.shape[1])
    return data.reshape(n, data.shape[1], -1)


def combine_columns(
    data: np.ndarray,
    *,
    method: str,
    reject: str,
    low: float,
    high: float,
    weights: np.ndarray | None,
    max_iterations: int,
    with_mask: bool = False,
) -> CombinedColumns:
    """Combine ``data`` ``(N, ...)`` along axis 0 after rejecting outliers, per pixel.

    The numba kernel behind :func:`skystack.stack.rejection.combine`, which documents the
    methods and validates the options. NaN/inf values are missing. Each pixel's values are
    sorted once (stable, so equal values keep frame order); the clipping methods then only
    move the two ends of the kept run. Parallel over pixels, releases the GIL.
    """
    if method not in COMBINE_CODES or reject not in REJECT_CODES:
        message = f"unknown method {method!r} or rejection {reject!r}"
        raise ValueError(message)
    data = np.asarray(data, dtype=np.float32)
    n = data.shape[0]
    cube = _as_3d(data)
    _, rows, cols = cube.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    lam = gesd_critical_values(n, high) if reject == "gesd" else np.zeros((1, 1))
    image = np.empty((rows, cols), dtype=np.float32)
    count = np.empty((rows, cols), dtype=np.int32)
    n_low = np.empty((rows, cols), dtype=np.int32)
    n_high = np.empty((rows, cols), dtype=np.int32)
    chunks = max(1, (rows * cols + _CHUNK - 1) // _CHUNK)
    per_frame = np.zeros((chunks, n), dtype=np.int64)
    mask = np.empty(cube.shape if with_mask else (1, 1, 1), dtype=np.bool_)
    with _launch_guard():
        _combine_kernel(
            cube,
            w,
            COMBINE_CODES[method],
            REJECT_CODES[reject],
            float(low),
            float(high),
            int(max_iterations),
            lam,
            image,
            count,
            n_low,
            n_high,
            per_frame,
            mask,
            with_mask,
        )
    shape = data.shape[1:]
    return CombinedColumns(
        image=image.reshape(shape),
        count=count.reshape(shape),
        low=n_low.reshape(shape),
        high=n_high.reshape(shape),
        rejected_per_frame=per_frame.sum(axis=0),
        mask=mask.reshape(data.shape) if with_mask else None,
    )


# ---- the slow, obviously correct reference: one pixel at a time, plain numpy --------------


def _guarded(candidates: list[tuple[tuple[float, ...], int, int]], n_kept: int) -> list:
    """Keep the candidates ``(sort key, index, side)`` that may go without leaving fewer than
    MIN_KEPT values: all of them, or the first ones in key order."""
    allowed = max(0, n_kept - MIN_KEPT)
    return sorted(candidates)[:allowed]


def _reject_column_reference(
    x: np.ndarray, *, reject: str, low: float, high: float, max_iterations: int, alpha_table
) -> np.ndarray:
    """Labels of the sorted finite values ``x``: 0 kept, -1 rejected low, +1 rejected high."""
    m = x.size
    label = np.zeros(m, dtype=np.int8)
    if reject == "none" or m == 0:
        return label

    def clip_about(center: float, dist_low: float, dist_high: float) -> bool:
        idx = np.flatnonzero(label == 0)
        cands = []
        for k in idx:
            if x[k] < center - dist_low:
                score = (center - x[k]) / dist_low if dist_low > 0 else np.inf
                cands.append(((-score, 0, k), k, -1))
            elif x[k] > center + dist_high:
                score = (x[k] - center) / dist_high if dist_high > 0 else np.inf
                cands.append(((-score, 1, -k), k, 1))
        chosen = _guarded(cands, idx.size)
        for _, k, side in chosen:
            label[k] = side
        return bool(chosen)

    if reject == "percentile":
        if m > MIN_KEPT:
            center = float(np.median(x))
            clip_about(center, low * abs(center), high * abs(center))
    elif reject == "minmax":
        lo, hi = 0, m
        budget_low, budget_high = int(low), int(high)
        while hi - lo > MIN_KEPT_MINMAX and (budget_low > 0 or budget_high > 0):
            if budget_low > 0:
                label[lo] = -1
                lo, budget_low = lo + 1, budget_low - 1
            if hi - lo > MIN_KEPT_MINMAX and budget_high > 0:
                label[hi - 1] = 1
                hi, budget_high = hi - 1, budget_high - 1
    elif reject == "gesd":
        steps = min(int(np.floor(low * m)), m - MIN_KEPT)
        remaining = list(range(m))
        removed = []
        outliers = 0
        for i in range(1, steps + 1):
            sample = x[remaining]
            mean = sample.mean()
            sd = sample.std(ddof=1)
            deviation = np.abs(sample - mean)
            j = int(np.argmax(deviation))
            statistic = deviation[j] / sd if sd > 0 else 0.0
            removed.append((remaining[j], -1 if sample[j] < mean else 1))
            del remaining[j]
            if statistic > alpha_table[m, i]:
                outliers = i
        for k, side in removed[:outliers]:
            label[k] = side
    elif reject == "linear-fit":
        for _ in range(max_iterations):
            idx = np.flatnonzero(label == 0)
            if idx.size <= MIN_KEPT:
                break
            rank = np.arange(idx.size, dtype=np.float64)
            dx = rank - rank.mean()
            slope = np.sum(dx * (x[idx] - x[idx].mean())) / np.sum(dx * dx)
            intercept = x[idx].mean() - slope * rank.mean()
            resid = x[idx] - (intercept + slope * rank)
            spread = np.mean(np.abs(resid))
            cands = []
            for r, (k, e) in enumerate(zip(idx, resid, strict=True)):
                if e < -low * spread:
                    cands.append(((-(-e / (low * spread)), r), k, -1))
                elif e > high * spread:
                    cands.append(((-(e / (high * spread)), r), k, 1))
            if not cands:
                break
            for _, k, side in _guarded(cands, idx.size):
                label[k] = side
    else:
        for _ in range(max_iterations):
            kept = x[label == 0]
            if kept.size <= MIN_KEPT:
                break
            center = float(np.median(kept))
            if reject == "sigma":
                spread = float(np.std(kept))
            elif reject == "mad":
                spread = MAD_TO_SIGMA * float(np.median(np.abs(kept - center)))
            else:
                spread = float(np.std(kept, ddof=1))
                for _ in range(WINSOR_MAX_STEPS):
                    clipped = np.clip(
                        kept, center - WINSOR_CLIP * spread, center + WINSOR_CLIP * spread
                    )
                    new_spread = WINSOR_FACTOR * float(np.std(clipped, ddof=1))
                    done = abs(new_spread - spread) <= WINSOR_TOLERANCE * spread
                    spread = new_spread
                    if done:
                        break
            if not clip_about(center, low * spread, high * spread):
                break
    return label


def combine_columns_reference(
    data: np.ndarray,
    *,
    method: str,
    reject: str,
    low: float,
    high: float,
    weights: np.ndarray | None,
    max_iterations: int,
    with_mask: bool = False,
) -> CombinedColumns:
    """The same as :func:`combine_columns` with plain numpy, one pixel at a time (slow)."""
    data = np.asarray(data, dtype=np.float32)
    n = data.shape[0]
    flat = data.reshape(n, -1).astype(np.float64)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    table = gesd_critical_values(n, high) if reject == "gesd" else None
    pixels = flat.shape[1]
    image = np.full(pixels, np.nan, dtype=np.float32)
    count = np.zeros(pixels, dtype=np.int32)
    n_low = np.zeros(pixels, dtype=np.int32)
    n_high = np.zeros(pixels, dtype=np.int32)
    per_frame = np.zeros(n, dtype=np.int64)
    mask = np.zeros(flat.shape, dtype=bool)
    for j in range(pixels):
        frames = np.flatnonzero(np.isfinite(flat[:, j]))
        order = frames[np.argsort(flat[frames, j], kind="stable")]
        x = flat[order, j]
        label = _reject_column_reference(
            x,
            reject=reject,
            low=low,
            high=high,
            max_iterations=max_iterations,
            alpha_table=table,
        )
        mask[order[label != 0], j] = True
        per_frame[order[label != 0]] += 1
        n_low[j] = np.count_nonzero(label < 0)
        n_high[j] = np.count_nonzero(label > 0)
        keep = order[label == 0]
        count[j] = keep.size
        if keep.size == 0:
            continue
        values = flat[keep, j]
        if method in ("mean", "sum"):
            if w[keep].sum() > 0:
                mean = np.sum(w[keep] * values) / np.sum(w[keep])
                image[j] = mean * n if method == "sum" else mean
        elif method == "median":
            image[j] = np.median(values)
        elif method == "max":
            image[j] = values.max()
        else:
            image[j] = values.min()
    shape = data.shape[1:]
    return CombinedColumns(
        image=image.reshape(shape),
        count=count.reshape(shape),
        low=n_low.reshape(shape),
        high=n_high.reshape(shape),
        rejected_per_frame=per_frame,
        mask=mask.reshape(data.shape) if with_mask else None,
    )
