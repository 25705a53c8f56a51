"""Pixel rejection and combination along the frame axis of a cube of frames.

Each function takes a cube ``(N, ...)`` of frames (NaN = missing) and works on each pixel's
column of ``N`` values. :func:`combine` is the stacking engine's per-strip workhorse: outlier
rejection as Siril and PixInsight's ImageIntegration offer it (percentile, kappa-sigma, MAD,
winsorized sigma, linear fit, min/max, generalized ESD), then a mean, median, sum, maximum or
minimum of the values that are kept, in numba kernels that release the GIL
(:mod:`skystack._kernels`). Calibration masters use :func:`sigma_clipped_mean` and
:func:`nan_median`.

References
----------
* Siril documentation, "Stacking", rejection algorithms (free-astro.org; siril.readthedocs.io).
* J. Conejero, PixInsight ImageIntegration reference documentation (pixinsight.com).
* P. J. Huber and E. M. Ronchetti, *Robust Statistics*, 2nd ed., Wiley, 2009 (winsorization).
* B. Rosner, "Percentage points for a generalized ESD many-outlier procedure",
  *Technometrics* 25 (2), 165-172, 1983; NIST/SEMATECH e-Handbook of Statistical Methods,
  section 1.3.5.17.3 "Generalized ESD Test for Outliers".
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, TypeAlias, cast, get_args

import numpy as np
import numpy.typing as npt

from skystack._kernels import combine_columns, sigma_clip_mean_columns
from skystack._typing import Cube, Image, Mask
from skystack.errors import ConfigError, GeometryError

__all__ = [
    "CombineMethod",
    "RejectMethod",
    "COMBINE_METHODS",
    "REJECT_METHODS",
    "REJECT_DEFAULTS",
    "Combined",
    "combine",
    "reject_mask",
    "sigma_clipped_mean",
    "nan_median",
]

CombineMethod: TypeAlias = Literal["mean", "median", "sum", "max", "min"]
"""How the kept values of a pixel are combined."""
RejectMethod: TypeAlias = Literal[
    "none", "percentile", "sigma", "mad", "winsorized", "linear-fit", "minmax", "gesd"
]
"""How outliers are rejected before combining."""
COMBINE_METHODS: tuple[CombineMethod, ...] = get_args(CombineMethod)
REJECT_METHODS: tuple[RejectMethod, ...] = get_args(RejectMethod)

REJECT_DEFAULTS: Mapping[RejectMethod, tuple[float, float]] = MappingProxyType(
    {
        "none": (3.0, 3.0),
        "percentile": (0.2, 0.1),
        "sigma": (3.0, 3.0),
        "mad": (3.0, 3.0),
        "winsorized": (3.0, 3.0),
        "linear-fit": (5.0, 4.0),
        "minmax": (1.0, 1.0),
        "gesd": (0.3, 0.05),
    }
)
"""Suggested ``(low, high)`` per rejection method (Siril's and PixInsight's usual values).

:func:`combine` defaults to ``(3, 3)``, right for the sigma methods; percentile, min/max and
GESD read ``low`` and ``high`` in other units (see :func:`combine`), so a caller switching
method should take its pair from here."""

_SIGMA_METHODS = ("sigma", "mad", "winsorized", "linear-fit")


@dataclass(frozen=True, eq=False)
class Combined:
    """The combination of a cube along its frame axis, with what rejection left out.

    Attributes
    ----------
    image : ndarray
        float32, ``cube.shape[1:]``: the combined value; NaN where no value remains.
    count : ndarray
        int32, ``cube.shape[1:]``: values combined per pixel (finite and not rejected).
    low : ndarray
        int32, ``cube.shape[1:]``: values rejected as low per pixel.
    high : ndarray
        int32, ``cube.shape[1:]``: values rejected as high per pixel.
    rejected_per_frame : ndarray
        int64, ``(N,)``: values of each frame rejected (low or high) over the whole cube, for
        per-frame rejected fractions (missing values are not counted).
    """

    image: Image
    count: npt.NDArray[np.int32]
    low: npt.NDArray[np.int32]
    high: npt.NDArray[np.int32]
    rejected_per_frame: npt.NDArray[np.int64]


def combine(
    cube: Cube,
    *,
    method: CombineMethod = "mean",
    reject: RejectMethod = "none",
    low: float = 3.0,
    high: float = 3.0,
    weights: npt.ArrayLike | None = None,
    max_iterations: int = 10,
) -> Combined:
    """Combine a cube along axis 0, pixel by pixel, after rejecting outliers.

    Each pixel's finite values (NaN and inf are missing: neither rejected nor counted) are
    sorted, outliers are rejected as ``reject`` says, and the kept values are combined as
    ``method`` says.

    Rejection (``low`` and ``high`` follow Siril's ``sig_low``/``sig_high``):

    ``"none"``
        Keep every value.
    ``"percentile"``
        One pass: reject ``x < m - low |m|`` and ``x > m + high |m|`` with ``m`` the median
        of the pixel: ``low`` and ``high`` are fractions of the median (Siril's percentile
        clipping, ``x < m (1 - low)`` or ``x > m (1 + high)`` for ``m > 0``; ``|m|`` keeps the
        bounds ordered for the negative backgrounds of calibrated data).
    ``"sigma"``
        Kappa-sigma: reject values more than ``low`` standard deviations below or ``high``
        above the median of the values kept so far (population standard deviation, as
        astropy's ``sigma_clip(cenfunc="median", stdfunc="std")``, where Siril divides by
        ``N - 1``); iterate.
    ``"mad"``
        The same with sigma = 1.4826 times the median absolute deviation from the median.
    ``"winsorized"``
        Winsorized sigma clipping (Siril, PixInsight): a robust sigma from Huber's iteration,
        ``sigma <- 1.134 std(clip(x, m - 1.5 sigma, m + 1.5 sigma))`` starting from the
        standard deviation (sample standard deviations, ``N - 1``, as Siril), until it
        changes by at most 0.05 %; then reject values more than
        ``low``/``high`` such sigmas below/above the median ``m``; iterate. (Siril clamps
        cumulatively; here each step winsorizes the kept values afresh, which is Huber's
        definition and the same fixed point on unimodal data.)
    ``"linear-fit"``
        Linear fit clipping (PixInsight, Siril): fit a least-squares line to the sorted kept
        values against their rank, take sigma as the mean absolute residual (as Siril), reject
        values more than ``low`` sigmas below or ``high`` above the line; iterate. Suited to
        large stacks; thresholds are in mean-absolute-deviation units, hence the larger
        suggested ``(5, 4)``.
    ``"minmax"``
        Drop the ``low`` lowest and ``high`` highest values (integers), alternately one low
        then one high, never leaving fewer than 2 values.
    ``"gesd"``
        Rosner's generalized extreme Studentized deviate test, in Siril's parameter order:
        ``low`` is the maximum fraction of outliers (0.3: up to ``floor(0.3 n)`` values are
        tested) and ``high`` the significance alpha (0.05). Test statistics use the mean and
        sample standard deviation; the critical values come from Student's t
        (:func:`skystack._kernels.gesd_critical_values`). One pass; each outlier counts as
        low or high by the end of the sorted sample it is taken from.

    ``sigma``, ``mad``, ``winsorized`` and ``linear-fit`` stop when a pass rejects nothing or
    after ``max_iterations`` passes; ``percentile``, ``minmax`` and ``gesd`` are single pass.
    Rejection never leaves fewer than 3 values in a pixel (2 for ``minmax``): a pixel with 3
    values or fewer keeps them all, and when a pass would go below 3, its candidates go in
    order of decreasing deviation over threshold until 3 remain.

    Combination of the kept values:

    ``"mean"``
        The mean, weighted by ``weights`` when given (NaN if the kept weights sum to 0).
    ``"sum"``
        ``N`` times the (weighted) mean of the kept values, with ``N`` the number of frames:
        the plain sum when nothing is rejected or missing, and otherwise the sum with every
        rejected or missing value replaced by the mean of the kept ones, so that neither a
        rejected satellite nor a frame's edge darkens the pixel.
    ``"median"``, ``"max"``, ``"min"``
        Plain median, maximum or minimum (weights are ignored).

    Parameters
    ----------
    cube : ndarray
        float32 ``(N, ...)``, for example ``(N, rows, W)`` or ``(N, rows, W, 3)``; NaN marks
        missing values. Other float types are converted. Strided views (a strip of a larger
        cube) are read without a copy when their trailing axes are contiguous.
    method : {"mean", "median", "sum", "max", "min"}
        How the kept values are combined.
    reject : {"none", "percentile", "sigma", "mad", "winsorized", "linear-fit", "minmax", \
"gesd"}
        How outliers are rejected.
    low, high : float
        Rejection thresholds, in the units of ``reject`` (see above; :data:`REJECT_DEFAULTS`
        has a suggested pair per method). ``inf`` turns one side off for the sigma methods.
    weights : array_like, optional
        ``(N,)`` non-negative per-frame weights for ``mean`` and ``sum``.
    max_iterations : int
        Upper bound on the passes of the iterative methods (at least 1).

    The work runs in a numba kernel, parallel over pixels and without the GIL, so strips
    may be combined from several threads at once (launches are serialised only when numba
    falls back to its ``workqueue`` threading layer).

    Returns
    -------
    Combined
        The image, the number of values combined and rejected low and high per pixel, and the
        number of rejected values per frame.

    Raises
    ------
    GeometryError
        If ``cube`` has no frame axis or ``weights`` is not one value per frame.
    ConfigError
        If a method is unknown or ``low``, ``high``, ``weights`` or ``max_iterations`` are
        out of range for it.
    """
    data = _check_cube(cube)
    _check_options(method=method, reject=reject, low=low, high=high, iterations=max_iterations)
    w = _check_weights(weights, data.shape[0])
    result = combine_columns(
        data,
        method=method,
        reject=reject,
        low=low,
        high=high,
        weights=w,
        max_iterations=max_iterations,
    )
    return Combined(
        image=result.image,
        count=result.count,
        low=result.low,
        high=result.high,
        rejected_per_frame=result.rejected_per_frame,
    )


def reject_mask(
    cube: Cube,
    *,
    reject: RejectMethod,
    low: float = 3.0,
    high: float = 3.0,
    max_iterations: int = 10,
) -> Mask:
    """Which values of a cube :func:`combine` rejects, for rejection maps.

    Parameters
    ----------
    cube : ndarray
        ``(N, ...)`` frames; NaN marks missing values (never marked as rejected).
    reject, low, high, max_iterations
        As for :func:`combine`.

    Returns
    -------
    ndarray
        bool, ``cube.shape``: True where a value is rejected (low or high).
    """
    data = _check_cube(cube)
    _check_options(method="mean", reject=reject, low=low, high=high, iterations=max_iterations)
    result = combine_columns(
        data,
        method="mean",
        reject=reject,
        low=low,
        high=high,
        weights=None,
        max_iterations=max_iterations,
        with_mask=True,
    )
    return cast(Mask, result.mask)


def _check_cube(cube: Cube) -> Cube:
    data = np.asarray(cube, dtype=np.float32)
    if data.ndim < 1 or data.shape[0] == 0:
        message = f"expected a cube of frames (N, ...) with N >= 1, got shape {data.shape}"
        raise GeometryError(message)
    return data


def _check_weights(weights: npt.ArrayLike | None, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        message = f"expected one weight per frame, shape ({n},), got shape {w.shape}"
        raise GeometryError(message)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        message = f"weights must be finite and >= 0, got {w.tolist()}"
        raise ConfigError(message)
    return w


def _check_options(*, method: str, reject: str, low: float, high: float, iterations: int) -> None:
    if method not in COMBINE_METHODS:
        message = f"unknown combine method {method!r}; expected one of {', '.join(COMBINE_METHODS)}"
        raise ConfigError(message)
    if reject not in REJECT_METHODS:
        message = f"unknown rejection {reject!r}; expected one of {', '.join(REJECT_METHODS)}"
        raise ConfigError(message)
    if isinstance(iterations, bool) or int(iterations) != iterations or iterations < 1:
        message = f"max_iterations must be an integer >= 1, got {iterations!r}"
        raise ConfigError(message)
    low = float(low)
    high = float(high)
    if math.isnan(low) or math.isnan(high):
        message = f"rejection thresholds must be numbers, got low={low}, high={high}"
        raise ConfigError(message)
    if reject in _SIGMA_METHODS and not (low > 0 and high > 0):
        message = (
            f"{reject} rejection takes low and high in sigmas, > 0 (inf turns a side off); "
            f"got low={low}, high={high}"
        )
        raise ConfigError(message)
    if reject == "percentile" and not (low >= 0 and high >= 0):
        message = (
            "percentile rejection takes low and high as fractions of the median, >= 0 "
            f"(e.g. 0.2 and 0.1); got low={low}, high={high}"
        )
        raise ConfigError(message)
    if reject == "minmax" and not all(
        v >= 0 and math.isfinite(v) and v == int(v) for v in (low, high)
    ):
        message = (
            "minmax rejection takes low and high as numbers of values to drop, integers "
            f">= 0; got low={low}, high={high}"
        )
        raise ConfigError(message)
    if reject == "gesd" and not (0 <= low < 1 and 0 < high < 1):
        message = (
            "gesd rejection takes low = maximum outlier fraction in [0, 1) (e.g. 0.3) and "
            f"high = significance alpha in (0, 1) (e.g. 0.05); got low={low}, high={high}"
        )
        raise ConfigError(message)


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

    :func:`combine` with ``reject="sigma"`` does the same clipping with a guard that keeps
    at least 3 values in a pass; this function keeps calibration's historical behaviour.

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
