"""Background and gradient extraction: light-pollution gradients and vignetting.

The sky background of a stacked image is measured in boxes on a regular grid, boxes that fall on
stars, galaxies or nebulae are rejected, and a smooth model is fitted to the rest, as Siril's
*Background extraction* and PixInsight's *DBE* / *ABE* do [1]_ [2]_:

1. **Samples.** Each box gives a sigma-clipped median per channel (the stars in it are clipped),
   measured on a block-averaged copy of the image so that large boxes stay cheap. A box is
   rejected when too few of its pixels survive the user's mask, NaN and the clipping, or when
   its pixel scatter is far above the other boxes' (it sits on structure). Then objects are
   found against a robust polynomial fit of the sky (least trimmed squares; see
   :func:`_reject_objects`): samples far *above* it are rejected, with the faint samples that
   touch them (an object's outskirts). Objects only ever add light, so the rejection is
   asymmetric: ``rejection`` sigma above, twice that below.
2. **Model.** ``"poly"``: a 2-D polynomial of total degree 1-4, least squares on the accepted
   samples in coordinates normalised to [-1, 1]. ``"rbf"``: a thin-plate smoothing spline with a
   quadratic trend (:class:`scipy.interpolate.RBFInterpolator`). ``"tiles"``: large tiles (twice
   the grid spacing, so neighbours overlap by half), each giving a robust sky level; object tiles
   are filled in from their accepted neighbours and the levels blended with overlapping cubic
   B-spline windows, which sum to one (the overlapping-tile approach of phone-astrophotography
   scripts, with a smooth window), on top of a quadratic trend that carries the large scale to
   the edges. Every model is evaluated on a coarse grid and upsampled bicubically: it is smooth
   by construction.
3. **Apply.** ``"subtract"`` for additive gradients (light pollution, moon, airglow) or
   ``"divide"`` for multiplicative ones (vignetting). Subtraction adds back the model's median
   per channel, so the sky stays at its level and nothing is clipped at zero; division
   multiplies by it.

Limits: what tells sky from object is that sky samples scatter both ways about a smooth surface
while objects only add light. An object whose faint outskirts cover most of the frame at a
level comparable to the gradient's own deviations (a large faint nebula) cannot be told from the
gradient by any of the methods and is partly removed with it; mask it (``mask=``) or use a
stiffer model. Conversely, gradient features much sharper than a cubic (a glow in one corner)
look like objects to the rejection; raise ``rejection`` to keep them.

References
----------
.. [1] C. Richard et al., Siril documentation, "Background extraction",
   https://siril.readthedocs.io/en/stable/processing/background.html
.. [2] J. Conejero, "DynamicBackgroundExtraction", PixInsight reference documentation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

import cv2
import numpy as np
import numpy.typing as npt
from scipy.interpolate import RBFInterpolator
from scipy.ndimage import gaussian_filter, label

from skystack._typing import XY, Image, Mask
from skystack.errors import ConfigError, GeometryError

__all__ = [
    "BackgroundMethod",
    "BackgroundMode",
    "BACKGROUND_METHODS",
    "BACKGROUND_MODES",
    "BackgroundModel",
    "fit_background",
    "remove_background",
    "extract_background",
]

_log = logging.getLogger(__name__)

BackgroundMethod: TypeAlias = Literal["poly", "rbf", "tiles"]
BACKGROUND_METHODS: tuple[BackgroundMethod, ...] = ("poly", "rbf", "tiles")
BackgroundMode: TypeAlias = Literal["subtract", "divide"]
BACKGROUND_MODES: tuple[BackgroundMode, ...] = ("subtract", "divide")

_Float64: TypeAlias = npt.NDArray[np.float64]
# (xs, ys) pixel coordinates of the columns and rows of a grid -> values (rows, cols, channels).
_GridEvaluator: TypeAlias = Callable[[_Float64, _Float64], _Float64]

_DEFAULT_GRID = 24
_MIN_GRID = 3
_MAX_GRID = 200
_BINNED_BOX = 16  # boxes are measured on an image binned so that a box is about this many bins
_CLIP_SIGMA = 3.0  # sigma-clipping of the pixels inside a box (stars)
_CLIP_ITERATIONS = 5
_MIN_KEPT = 0.5  # a box needs this share of its pixels left after mask, NaN and clipping
_DISPERSION_SIGMA = 5.0  # dispersion outliers, in robust sigma of all boxes' dispersions
_DISPERSION_RATIO = 1.5  # ... and at least this many times the median dispersion
_REFERENCE_DEGREE = 3  # polynomial the rbf and tiles samples are judged against
_REFERENCE_TERMS = (_REFERENCE_DEGREE + 1) * (_REFERENCE_DEGREE + 2) // 2
_MAX_CONCENTRATION_STEPS = 50
_GROW_SIGMA = 2.0  # samples this far above the model are rejected if they touch rejected ones
_SIGMA_FLOOR = 1e-4  # smallest residual scatter, relative to the sky level (noise-free data)
_DEFAULT_RBF_SMOOTHING = 0.01
_DEFAULT_TILE_SMOOTHING = 1.0
_TREND_DEGREE = 2  # polynomial trend under the tiles
_MAD_TO_SIGMA = 1.4826
_IQR_TO_SIGMA = 1.0 / 1.349
_COARSE_CELLS = 128  # a model is evaluated on about this many cells along the longer side
_STRIP_ROWS = 512  # rows upsampled at a time


@dataclass(frozen=True)
class BackgroundModel:
    """A fitted sky background.

    Attributes
    ----------
    model : ndarray float32
        The background, same shape as the image it was fitted to.
    samples : ndarray float64 (N, 2)
        Sample (box or tile) centres ``(x, y)`` in pixels.
    values : ndarray float64 (N, C)
        Sigma-clipped median of each sample per channel (C = 1 for mono); NaN where a box had no
        usable pixels.
    accepted : ndarray bool (N,)
        Samples the model was fitted to; the others were judged not to be background.
    method : {"poly", "rbf", "tiles"}
        The model.
    """

    model: Image
    samples: XY
    values: _Float64
    accepted: npt.NDArray[np.bool_]
    method: BackgroundMethod


@dataclass(frozen=True)
class _Grid:
    """Boxes on a regular grid of a binned image.

    ``factor`` x ``factor`` full-resolution pixels make one binned pixel; box ``(i, j)``
    covers binned rows ``y0 + i * dy`` to ``+ box`` and columns ``x0 + j * dx`` to ``+ box``.
    """

    factor: int
    box: int
    x0: int
    y0: int
    dx: int
    dy: int
    nx: int
    ny: int

    def centres(self) -> tuple[_Float64, _Float64]:
        """Box centres in full-resolution pixels: x of the columns, y of the rows."""
        half = (self.box - 1) / 2.0
        cx = self.x0 + half + self.dx * np.arange(self.nx, dtype=np.float64)
        cy = self.y0 + half + self.dy * np.arange(self.ny, dtype=np.float64)
        return (cx + 0.5) * self.factor - 0.5, (cy + 0.5) * self.factor - 0.5


def fit_background(
    image: Image,
    *,
    method: BackgroundMethod = "poly",
    degree: int = 2,
    grid: int | None = None,
    box: int | None = None,
    mask: Mask | None = None,
    rejection: float = 3.0,
    smoothing: float | None = None,
) -> BackgroundModel:
    """Fit a smooth sky-background model to an image, avoiding stars and extended objects.

    Parameters
    ----------
    image : ndarray float32
        Linear image, ``(H, W)`` or ``(H, W, C)``; NaN marks missing pixels.
    method : {"poly", "rbf", "tiles"}
        ``"poly"``: 2-D polynomial of total degree ``degree``, for smooth gradients (the
        default). ``"rbf"``: thin-plate radial basis functions, for complex gradients.
        ``"tiles"``: blended overlapping tiles, the most local model.
    degree : int
        Polynomial degree, 1 (a plane) to 4; used by ``"poly"`` only.
    grid : int, optional
        Number of samples along the longer side (3 to 200); the shorter side gets the same
        spacing. Default 24.
    box : int, optional
        Side of each sample box in pixels. Default: half the grid spacing for ``"poly"`` and
        ``"rbf"``, twice the spacing for ``"tiles"`` (tiles that overlap their neighbours by
        half).
    mask : ndarray bool (H, W), optional
        True where a pixel is not background (an object mask); those pixels are never sampled.
    rejection : float
        A sample more than this many sigma (of the sky samples' scatter) above a robust
        polynomial fit of the sky, or twice as many below, is rejected as not background, and
        so are the samples more than 2 sigma above it that touch it on the grid. Smaller values
        reject more. Must be positive. Default 3.
    smoothing : float, optional
        ``"rbf"``: weight of the spline's bending energy against the mean squared misfit of
        the samples (coordinates in [-1, 1]); 0 interpolates the samples exactly, larger values
        stiffen the spline towards its quadratic trend. Default 0.01. ``"tiles"``: Gaussian
        smoothing of the tile levels, in tile spacings (0 for none). Default 1.0. Not used by
        ``"poly"``.

    Returns
    -------
    BackgroundModel

    Raises
    ------
    ConfigError
        A parameter is out of range (a ``ValueError``).
    GeometryError
        The image or the mask has an unusable shape (a ``ValueError``).
    """
    data = _as_channels(image)
    height, width, _ = data.shape
    _check_options(method, degree, grid, box, rejection, smoothing)
    bad = _check_mask(mask, (height, width))
    grid_geometry = _make_grid(height, width, method=method, grid=grid, box=box)
    binned, usable = _bin(data, bad, grid_geometry.factor)
    values, dispersion, kept = _measure_boxes(binned, usable, grid_geometry)
    candidates = (kept >= _MIN_KEPT) & np.all(np.isfinite(values), axis=1)
    if int(candidates.sum()) < _minimum_samples(method, degree):
        raise GeometryError(
            f"background extraction found only {int(candidates.sum())} usable samples of "
            f"{values.shape[0]}; use a smaller box, a finer grid or a smaller mask"
        )
    candidates &= ~_dispersion_outliers(dispersion, candidates)
    xs, ys = grid_geometry.centres()
    points = np.column_stack([np.tile(xs, ys.size), np.repeat(ys, xs.size)])
    unit = _Normaliser(height, width)
    fitter = _make_fitter(method, degree, smoothing, unit, grid_geometry)
    reference_degree = degree if method == "poly" else _REFERENCE_DEGREE
    accepted = _reject_objects(
        points,
        values,
        candidates,
        (grid_geometry.ny, grid_geometry.nx),
        reference_degree,
        unit,
        rejection,
    )
    if int(accepted.sum()) < _minimum_samples(method, degree):
        _log.warning(
            "background: only %d of %d samples looked like sky; fitting all %d usable ones",
            int(accepted.sum()),
            accepted.size,
            int(candidates.sum()),
        )
        accepted = candidates
    evaluate = fitter(points, values, accepted)
    model = _render(evaluate, (height, width))
    if np.ndim(image) == 2:
        model = model[..., 0]
    return BackgroundModel(
        model=model, samples=points, values=values, accepted=accepted, method=method
    )


def remove_background(
    image: Image, background: BackgroundModel | Image, *, mode: BackgroundMode = "subtract"
) -> Image:
    """Remove a background model from an image, keeping the sky at its level.

    Parameters
    ----------
    image : ndarray float32
        Linear image, ``(H, W)`` or ``(H, W, C)``.
    background : BackgroundModel or ndarray
        A model from :func:`fit_background`, or a background image of the same shape.
    mode : {"subtract", "divide"}
        ``"subtract"``: ``image - model + median(model)`` per channel, for additive gradients.
        ``"divide"``: ``image / model * median(model)`` per channel, for vignetting; the model
        must be positive everywhere.

    Returns
    -------
    ndarray float32
        A new image of the input's shape; NaN stays NaN.
    """
    if mode not in BACKGROUND_MODES:
        raise ConfigError(f"background mode must be one of {BACKGROUND_MODES}, got {mode!r}")
    model = background.model if isinstance(background, BackgroundModel) else background
    data = np.asarray(image, dtype=np.float32)
    model = np.asarray(model, dtype=np.float32)
    if model.shape != data.shape:
        raise GeometryError(
            f"background model shape {model.shape} does not match the image shape {data.shape}"
        )
    pedestal = _pedestal(model)
    out = np.empty(data.shape, dtype=np.float32)
    if mode == "subtract":
        np.subtract(data, model, out=out)
        out += pedestal
        return out
    lowest = float(model.min())
    if not lowest > 0.0:
        raise ConfigError(
            f"cannot divide by a background model that is not positive (minimum {lowest:.3g}); "
            "use mode='subtract'"
        )
    np.divide(data, model, out=out)
    out *= pedestal
    return out


def _pedestal(model: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Median of a background model per channel (from at most about a million pixels each;
    a background model is smooth, so a regular subsample gives the same median)."""
    stride = max(1, math.isqrt(model.shape[0] * model.shape[1] // 1_000_000))
    sample = model[::stride, ::stride]
    return np.median(sample.reshape(-1, *model.shape[2:]), axis=0).astype(np.float32)


def extract_background(
    image: Image,
    *,
    method: BackgroundMethod = "poly",
    mode: BackgroundMode = "subtract",
    degree: int = 2,
    grid: int | None = None,
    box: int | None = None,
    mask: Mask | None = None,
    rejection: float = 3.0,
    smoothing: float | None = None,
) -> tuple[Image, BackgroundModel]:
    """Fit a background model and remove it: :func:`fit_background` then
    :func:`remove_background`.

    Parameters are those of the two functions.

    Returns
    -------
    corrected : ndarray float32
        The image without its gradient, sky kept at its median level.
    background : BackgroundModel
        The fitted model.
    """
    if mode not in BACKGROUND_MODES:
        raise ConfigError(f"background mode must be one of {BACKGROUND_MODES}, got {mode!r}")
    background = fit_background(
        image,
        method=method,
        degree=degree,
        grid=grid,
        box=box,
        mask=mask,
        rejection=rejection,
        smoothing=smoothing,
    )
    return remove_background(image, background, mode=mode), background


# --- validation ------------------------------------------------------------------------------


def _as_channels(image: Image) -> npt.NDArray[np.float32]:
    data = np.asarray(image)
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3 or data.shape[2] < 1:
        raise GeometryError(
            f"background extraction needs an (H, W) or (H, W, C) image, got shape {data.shape}"
        )
    if min(data.shape[:2]) < 16:
        raise GeometryError(
            f"background extraction needs an image at least 16 x 16 pixels, got {data.shape[:2]}"
        )
    if not np.issubdtype(data.dtype, np.floating) and not np.issubdtype(data.dtype, np.integer):
        raise GeometryError(f"background extraction needs a numeric image, got {data.dtype}")
    return data.astype(np.float32, copy=False)


def _check_options(
    method: str,
    degree: int,
    grid: int | None,
    box: int | None,
    rejection: float,
    smoothing: float | None,
) -> None:
    if method not in BACKGROUND_METHODS:
        raise ConfigError(f"background method must be one of {BACKGROUND_METHODS}, got {method!r}")
    if isinstance(degree, bool) or not isinstance(degree, int | np.integer) or not 1 <= degree <= 4:
        raise ConfigError(f"polynomial degree must be an integer from 1 to 4, got {degree!r}")
    if grid is not None and (
        isinstance(grid, bool)
        or not isinstance(grid, int | np.integer)
        or not _MIN_GRID <= grid <= _MAX_GRID
    ):
        raise ConfigError(
            f"background grid must be an integer from {_MIN_GRID} to {_MAX_GRID} samples, "
            f"got {grid!r}"
        )
    if box is not None and (
        isinstance(box, bool) or not isinstance(box, int | np.integer) or box < 3
    ):
        raise ConfigError(f"background box must be an integer of at least 3 pixels, got {box!r}")
    if not (math.isfinite(rejection) and rejection > 0):
        raise ConfigError(f"background rejection must be a positive number, got {rejection!r}")
    if smoothing is not None and not (math.isfinite(smoothing) and smoothing >= 0):
        raise ConfigError(f"background smoothing must be a number >= 0, got {smoothing!r}")


def _check_mask(mask: Mask | None, shape: tuple[int, int]) -> npt.NDArray[np.bool_] | None:
    if mask is None:
        return None
    bad = np.asarray(mask)
    if bad.shape != shape:
        raise GeometryError(f"background mask shape {bad.shape} does not match the image's {shape}")
    return bad.astype(bool, copy=False)


def _minimum_samples(method: str, degree: int) -> int:
    """Samples needed to fit the model: one more than its polynomial terms."""
    terms = (degree + 1) * (degree + 2) // 2 if method == "poly" else _REFERENCE_TERMS
    return terms + 1


# --- samples ---------------------------------------------------------------------------------


def _make_grid(height: int, width: int, *, method: str, grid: int | None, box: int | None) -> _Grid:
    n_long = grid if grid is not None else _DEFAULT_GRID
    spacing = max(height, width) / n_long
    if box is None:
        box = round(2.0 * spacing) if method == "tiles" else round(0.5 * spacing)
        box = max(box, 3)
    if box > min(height, width):
        raise GeometryError(
            f"background box of {box} pixels does not fit in the {height} x {width} image"
        )
    factor = max(1, round(box / _BINNED_BOX))
    box_binned = max(3, round(box / factor))
    height_b, width_b = height // factor, width // factor
    box_binned = min(box_binned, height_b, width_b)

    step = max(1, round(spacing / factor))

    def axis(length_b: int) -> tuple[int, int, int]:
        room = length_b - box_binned
        count = room // step + 1
        start = (room - step * (count - 1)) // 2
        return start, step, count

    x0, dx, nx = axis(width_b)
    y0, dy, ny = axis(height_b)
    return _Grid(factor=factor, box=box_binned, x0=x0, y0=y0, dx=dx, dy=dy, nx=nx, ny=ny)


def _bin(
    data: npt.NDArray[np.float32], bad: npt.NDArray[np.bool_] | None, factor: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Mean of ``factor`` x ``factor`` blocks (the remainder rows and columns are dropped).

    Returns the binned image ``(h, w, C)`` and whether each bin is usable: bins with any masked
    pixel, or with fewer than half their pixels finite, are not.
    """
    height, width = data.shape[0] // factor, data.shape[1] // factor
    cropped = data[: height * factor, : width * factor]
    # A sum is finite only if every pixel is (cheaper than a full-size boolean array).
    all_finite = bool(np.isfinite(cropped.sum(dtype=np.float64)))

    def block_mean(array: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if factor == 1:
            return array.astype(np.float32, copy=True)
        # INTER_AREA with an integer factor is the block mean.
        binned = cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA)
        return binned.reshape(height, width, -1)

    if all_finite:
        binned = block_mean(cropped)
        usable = np.ones((height, width), dtype=bool)
    else:
        finite = np.isfinite(cropped)
        share = block_mean(finite.astype(np.float32))
        total = block_mean(np.where(finite, cropped, np.float32(0.0)))
        with np.errstate(invalid="ignore", divide="ignore"):
            binned = total / share
        usable = np.all(share >= 0.5, axis=-1)
    if bad is not None:
        masked = bad[: height * factor, : width * factor]
        if factor > 1:
            masked = (
                cv2.resize(masked.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
                > 0.0
            )
        usable &= ~masked
    binned[~usable] = np.nan
    return binned, usable


def _measure_boxes(
    binned: npt.NDArray[np.float32], usable: npt.NDArray[np.bool_], grid: _Grid
) -> tuple[_Float64, _Float64, _Float64]:
    """Sigma-clipped median, dispersion and kept share of every box.

    Returns ``values (N, C)``, ``dispersion (N, C)`` (robust sigma of the clipped pixels) and
    ``kept (N,)``: the smallest share over the channels of the box's pixels that were usable and
    survived clipping. Boxes are ordered row by row.
    """
    rows = (grid.y0 + grid.dy * np.arange(grid.ny))[:, None] + np.arange(grid.box)[None, :]
    cols = (grid.x0 + grid.dx * np.arange(grid.nx))[:, None] + np.arange(grid.box)[None, :]
    # (ny, nx, box, box, C) -> (N, C, box * box)
    boxes = binned[rows[:, None, :, None], cols[None, :, None, :]]
    n_boxes = grid.nx * grid.ny
    channels = binned.shape[2]
    pixels = boxes.reshape(n_boxes, grid.box * grid.box, channels).transpose(0, 2, 1)
    ordered = np.sort(pixels, axis=-1)  # NaN sort last
    size = ordered.shape[-1]
    finite = np.isfinite(ordered).sum(axis=-1)
    low = np.zeros(ordered.shape[:2], dtype=np.int64)
    high = finite
    for _ in range(_CLIP_ITERATIONS):
        median = _quantile(ordered, low, high, 0.5)
        sigma = (_quantile(ordered, low, high, 0.75) - _quantile(ordered, low, high, 0.25)) * (
            _IQR_TO_SIGMA
        )
        lower = (median - _CLIP_SIGMA * sigma)[..., None]
        upper = (median + _CLIP_SIGMA * sigma)[..., None]
        new_low = (ordered < lower).sum(axis=-1)
        new_high = (ordered <= upper).sum(axis=-1)
        new_high = np.minimum(np.maximum(new_high, new_low + 1), finite)
        if np.array_equal(new_low, low) and np.array_equal(new_high, high):
            break
        low, high = new_low, new_high
    empty = high <= low
    median = _quantile(ordered, low, high, 0.5)
    sigma = (_quantile(ordered, low, high, 0.75) - _quantile(ordered, low, high, 0.25)) * (
        _IQR_TO_SIGMA
    )
    median[empty] = np.nan
    sigma[empty] = np.nan
    kept = ((high - low) / size).min(axis=1)
    return median, sigma, kept


def _quantile(
    ordered: npt.NDArray[np.float32],
    low: npt.NDArray[np.int64],
    high: npt.NDArray[np.int64],
    q: float,
) -> _Float64:
    """Linear-interpolated quantile ``q`` of ``ordered[..., low:high]`` (sorted rows)."""
    count = np.maximum(high - low, 1)
    position = low + q * (count - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, ordered.shape[-1] - 1)
    fraction = position - below
    lo_value = np.take_along_axis(ordered, below[..., None], axis=-1)[..., 0].astype(np.float64)
    hi_value = np.take_along_axis(ordered, above[..., None], axis=-1)[..., 0].astype(np.float64)
    return np.where(fraction > 0, lo_value + fraction * (hi_value - lo_value), lo_value)


def _dispersion_outliers(dispersion: _Float64, candidates: npt.NDArray[np.bool_]) -> npt.NDArray:
    """Boxes whose pixel scatter is far above the typical box's in any channel (structure)."""
    out = np.zeros(candidates.shape, dtype=bool)
    if int(candidates.sum()) < 8:
        return out
    for channel in range(dispersion.shape[1]):
        spread = dispersion[candidates, channel]
        centre = float(np.median(spread))
        scatter = _MAD_TO_SIGMA * float(np.median(np.abs(spread - centre)))
        limit = max(centre + _DISPERSION_SIGMA * scatter, _DISPERSION_RATIO * centre)
        if limit > 0:
            out |= candidates & (dispersion[:, channel] > limit)
    return out


# --- rejection -------------------------------------------------------------------------------

# fitter(points, values, accepted) -> evaluator of the model on grids of pixel coordinates
_Fitter: TypeAlias = Callable[[_Float64, _Float64, npt.NDArray[np.bool_]], _GridEvaluator]


def _reject_objects(
    points: _Float64,
    values: _Float64,
    candidates: npt.NDArray[np.bool_],
    shape: tuple[int, int],
    degree: int,
    unit: _Normaliser,
    rejection: float,
) -> npt.NDArray[np.bool_]:
    """Reject samples that sit on objects: far above a robust polynomial fit of the sky.

    Objects only ever add light, and their faint outskirts can cover half the frame. A
    least-squares fit with iterative clipping then settles on a surface bent up under them,
    and a lower envelope (quantile regression) bulges up under them too, since nothing above
    holds it down. What does tell sky from object is that sky samples scatter *both ways*
    about a smooth surface, by the noise. So the reference is a least trimmed squares fit [3]_
    of the polynomial: the half of the samples that a polynomial fits best, found by
    concentration steps from deterministic starts (all samples, the frame's border, each half
    of the frame). Its noise is measured from the samples *below* it (objects cannot be there),
    and a sample more than ``rejection`` sigma above it (or ``2 * rejection`` below) is
    rejected, together with the samples more than ``_GROW_SIGMA`` above it that touch rejected
    ones on the grid (an object's outskirts). Colour channels are fitted separately; a sample
    rejected in one channel is rejected.

    References
    ----------
    .. [3] P. J. Rousseeuw and K. Van Driessen, "Computing LTS regression for large data
       sets", Data Mining and Knowledge Discovery 12, 29-45 (2006).
    """
    design = _poly_design(points, degree, unit)
    level = np.median(values[candidates], axis=0)
    floor = _SIGMA_FLOOR * np.maximum(np.abs(level), 1e-3)
    starts = _start_subsets(candidates, shape)
    highest = np.full(values.shape[0], -np.inf)
    lowest = np.full(values.shape[0], np.inf)
    for channel in range(values.shape[1]):
        coefficients = _least_trimmed_squares(design, values[:, channel], candidates, starts)
        residual = values[:, channel] - design @ coefficients
        below = residual[candidates & (residual < 0)]
        sigma = _MAD_TO_SIGMA * float(np.median(-below)) if below.size else 0.0
        scaled = residual / max(sigma, float(floor[channel]))
        highest = np.maximum(highest, scaled)
        lowest = np.minimum(lowest, scaled)
    above = _grow(candidates & (highest > rejection), highest > _GROW_SIGMA, shape)
    return candidates & ~above & (lowest >= -2.0 * rejection)


def _start_subsets(
    candidates: npt.NDArray[np.bool_], shape: tuple[int, int]
) -> list[npt.NDArray[np.bool_]]:
    """Deterministic starting subsets for the trimmed fit: places where the sky may show."""
    rows, cols = np.divmod(np.arange(candidates.size), shape[1])
    ny, nx = shape
    border = (rows < 2) | (rows >= ny - 2) | (cols < 2) | (cols >= nx - 2)
    halves = [cols < nx / 2, cols >= nx / 2, rows < ny / 2, rows >= ny / 2]
    return [candidates & subset for subset in [np.ones_like(border), border, *halves]]


def _least_trimmed_squares(
    design: _Float64,
    values: _Float64,
    candidates: npt.NDArray[np.bool_],
    starts: list[npt.NDArray[np.bool_]],
) -> _Float64:
    """Coefficients of the least trimmed squares fit of ``values`` over the candidates.

    From each start subset, concentration steps refit on the ``h`` candidates with the smallest
    absolute residuals (``h`` = half the candidates plus half the terms) until the subset no
    longer changes; the fit with the smallest trimmed sum of squares wins.
    """
    index = np.flatnonzero(candidates)
    terms = design.shape[1]
    keep = min(index.size, (index.size + terms + 1) // 2)
    best, best_cost = None, np.inf
    for start in starts:
        if int(start.sum()) < terms + 1:
            continue
        subset = np.flatnonzero(start)
        for _ in range(_MAX_CONCENTRATION_STEPS):
            coefficients, *_ = np.linalg.lstsq(design[subset], values[subset], rcond=None)
            residual = np.abs(values[index] - design[index] @ coefficients)
            new = np.sort(index[np.argpartition(residual, keep - 1)[:keep]])
            if np.array_equal(new, subset):
                break
            subset = new
        cost = float(np.sum(np.partition(residual, keep - 1)[:keep] ** 2))
        if cost < best_cost:
            best, best_cost = coefficients, cost
    if best is None:
        best, *_ = np.linalg.lstsq(design[index], values[index], rcond=None)
    return best


def _grow(
    seeds: npt.NDArray[np.bool_], faint: npt.NDArray[np.bool_], shape: tuple[int, int]
) -> npt.NDArray[np.bool_]:
    """Seeds plus the ``faint`` samples connected to them on the grid (hysteresis).

    An object's faint outskirts are contiguous with its bright parts, so they are rejected at
    a lower threshold than isolated samples, whose excess is more likely noise.
    """
    labels, _ = label((seeds | faint).reshape(shape), structure=np.ones((3, 3)))
    flat = labels.ravel()
    touched = np.unique(flat[seeds & (flat > 0)])
    return np.isin(flat, touched) & (flat > 0)


def _at_points(evaluate: _GridEvaluator, points: _Float64) -> _Float64:
    """Evaluate a grid evaluator at points that lie on a grid (the samples)."""
    xs = np.unique(points[:, 0])
    ys = np.unique(points[:, 1])
    values = evaluate(xs, ys)
    return values[np.searchsorted(ys, points[:, 1]), np.searchsorted(xs, points[:, 0])]


# --- models ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Normaliser:
    """Maps pixel coordinates to [-1, 1] over the image."""

    height: int
    width: int

    def x(self, xs: _Float64) -> _Float64:
        half = max(self.width - 1, 1) / 2.0
        return (xs - half) / half

    def y(self, ys: _Float64) -> _Float64:
        half = max(self.height - 1, 1) / 2.0
        return (ys - half) / half


def _make_fitter(
    method: str, degree: int, smoothing: float | None, unit: _Normaliser, grid: _Grid
) -> _Fitter:
    if method == "poly":
        return _poly_fitter(degree, unit)
    if method == "rbf":
        return _rbf_fitter(_DEFAULT_RBF_SMOOTHING if smoothing is None else smoothing, unit)
    return _tiles_fitter(_DEFAULT_TILE_SMOOTHING if smoothing is None else smoothing, unit, grid)


def _poly_terms(degree: int) -> list[tuple[int, int]]:
    """Exponents ``(i, j)`` of the monomials ``u**i * v**j`` of total degree <= ``degree``."""
    return [(i, total - i) for total in range(degree + 1) for i in range(total, -1, -1)]


def _poly_design(points: _Float64, degree: int, unit: _Normaliser) -> _Float64:
    u = unit.x(points[:, 0])
    v = unit.y(points[:, 1])
    return np.column_stack([u**i * v**j for i, j in _poly_terms(degree)])


def _poly_fitter(degree: int, unit: _Normaliser) -> _Fitter:
    terms = _poly_terms(degree)

    def fit(points: _Float64, values: _Float64, accepted: npt.NDArray[np.bool_]) -> _GridEvaluator:
        design = _poly_design(points[accepted], degree, unit)
        coefficients, *_ = np.linalg.lstsq(design, values[accepted], rcond=None)

        def evaluate(xs: _Float64, ys: _Float64) -> _Float64:
            u_grid = unit.x(xs)
            v_grid = unit.y(ys)
            out = np.zeros((ys.size, xs.size, values.shape[1]))
            for (i, j), c in zip(terms, coefficients, strict=True):
                out += (v_grid[:, None] ** j * u_grid[None, :] ** i)[..., None] * c
            return out

        return evaluate

    return fit


def _rbf_fitter(smoothing: float, unit: _Normaliser) -> _Fitter:
    def fit(points: _Float64, values: _Float64, accepted: npt.NDArray[np.bool_]) -> _GridEvaluator:
        interpolate = _fit_rbf(points, values, accepted, smoothing, unit)

        def evaluate(xs: _Float64, ys: _Float64) -> _Float64:
            u, v = np.meshgrid(unit.x(xs), unit.y(ys))
            flat = interpolate(np.column_stack([u.ravel(), v.ravel()]))
            return flat.reshape(ys.size, xs.size, values.shape[1])

        return evaluate

    return fit


def _fit_rbf(
    points: _Float64,
    values: _Float64,
    accepted: npt.NDArray[np.bool_],
    smoothing: float,
    unit: _Normaliser,
    *,
    drift: int = 2,
) -> Callable[[_Float64], _Float64]:
    """Thin-plate smoothing spline with a polynomial trend (``drift``) through the samples.

    Coordinates are in [-1, 1]. ``smoothing`` weighs the spline's bending energy against the
    *mean* squared misfit, so the stiffness does not change with the number of samples.
    """
    coords = np.column_stack([unit.x(points[accepted, 0]), unit.y(points[accepted, 1])])
    return RBFInterpolator(
        coords,
        values[accepted],
        kernel="thin_plate_spline",
        smoothing=smoothing * len(coords),
        degree=drift,
    )


def _tiles_fitter(smoothing: float, unit: _Normaliser, grid: _Grid) -> _Fitter:
    xs_nodes, ys_nodes = grid.centres()
    fit_trend = _poly_fitter(_TREND_DEGREE, unit)

    def fit(points: _Float64, values: _Float64, accepted: npt.NDArray[np.bool_]) -> _GridEvaluator:
        # The tiles carry what a quadratic trend misses; the trend carries the large scale, so
        # the blend needs no curved extrapolation at the image edges nor across big holes.
        trend = fit_trend(points, values, accepted)
        residual = values - _at_points(trend, points)
        missing = ~accepted
        if missing.any():
            fill = _fit_rbf(points, residual, accepted, _DEFAULT_RBF_SMOOTHING, unit, drift=1)
            query = np.column_stack([unit.x(points[missing, 0]), unit.y(points[missing, 1])])
            residual[missing] = fill(query)
        nodes = residual.reshape(grid.ny, grid.nx, values.shape[1])
        if smoothing > 0:
            # Unresolved faint stars make neighbouring tiles differ by ~0.1% of the sky.
            nodes = gaussian_filter(nodes, sigma=(smoothing, smoothing, 0.0), mode="nearest")

        def evaluate(xs: _Float64, ys: _Float64) -> _Float64:
            weights_x = _bspline_weights(xs, xs_nodes)
            weights_y = _bspline_weights(ys, ys_nodes)
            blend = np.einsum("yi,ijc,xj->yxc", weights_y, nodes, weights_x, optimize=True)
            return trend(xs, ys) + blend

        return evaluate

    return fit


def _bspline_weights(positions: _Float64, nodes: _Float64) -> _Float64:
    """Blending weights ``(len(positions), len(nodes))`` of overlapping cubic B-spline windows.

    The windows are centred on the regularly spaced ``nodes`` and span four node spacings; they
    sum to one everywhere and reproduce linear functions of position. Beyond the end nodes the
    end values continue (the blend is of residuals from a trend, so it levels off there).
    """
    count = nodes.size
    if count == 1:
        return np.ones((positions.size, 1))
    spacing = nodes[1] - nodes[0]
    t = (positions - nodes[0]) / spacing
    index = np.floor(t).astype(np.int64)
    f = t - index
    cubic = np.stack(
        [
            (1 - f) ** 3 / 6,
            (3 * f**3 - 6 * f**2 + 4) / 6,
            (-3 * f**3 + 3 * f**2 + 3 * f + 1) / 6,
            f**3 / 6,
        ],
        axis=1,
    )
    weights = np.zeros((positions.size, count))
    rows = np.arange(positions.size)
    for k in range(4):
        np.add.at(weights, (rows, np.clip(index - 1 + k, 0, count - 1)), cubic[:, k])
    return weights


# --- rendering -------------------------------------------------------------------------------


def _render(evaluate: _GridEvaluator, shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Evaluate a smooth model on a coarse grid and upsample it bicubically to ``shape``.

    The coarse grid reaches two cells beyond the image on every side, so bicubic interpolation
    never meets a border and the model's edges are as accurate as its interior. The upsampling
    goes strip by strip into the output, so no second full-size array is ever made.
    """
    height, width = shape
    step = max(1, max(height, width) // _COARSE_CELLS)
    pad = 2
    cells_y = -(-height // step) + 2 * pad
    cells_x = -(-width // step) + 2 * pad
    xs = (np.arange(cells_x) + 0.5) * step - 0.5 - pad * step
    ys = (np.arange(cells_y) + 0.5) * step - 0.5 - pad * step
    coarse = evaluate(xs, ys).astype(np.float32)
    channels = coarse.shape[2]
    if step == 1:
        return np.ascontiguousarray(coarse[pad : pad + height, pad : pad + width])
    out = np.empty((height, width, channels), dtype=np.float32)
    strip = max(1, _STRIP_ROWS // step)  # coarse rows per strip
    for first in range(pad, cells_y - pad, strip):
        last = min(first + strip, cells_y - pad)
        block = coarse[first - pad : last + pad]
        fine = cv2.resize(
            block, (cells_x * step, block.shape[0] * step), interpolation=cv2.INTER_CUBIC
        )
        # Fine row r of the block is image row r + (first - 2 * pad) * step; the rows kept
        # have two coarse rows of the block on either side.
        top = (first - pad) * step
        bottom = min((last - pad) * step, height)
        if fine.ndim == 2:
            fine = fine[..., None]
        out[top:bottom] = fine[
            pad * step : pad * step + bottom - top, pad * step : pad * step + width
        ]
    return out
