"""Stretches: map linear data to display range [0, 1], as Siril and PixInsight do.

Every stretch is a tone curve ``f: [0, 1] -> [0, 1]`` applied after a black (and white) point:
``x' = (x - black) / (white - black)``. Colour images are stretched in one of two ways:

* ``color="luminance"`` (the default, colour preserving): the curve is applied to the luminance
  ``L`` of ``x'`` and every channel is multiplied by ``f(L) / L``, so the channel ratios, and with
  them the hue, are unchanged [1]_. A pixel that would exceed 1 in some channel is scaled down as
  a whole (Siril's "rescale" clip mode) instead of having one channel clipped.
* ``color="channels"``: the curve is applied to each channel on its own (Siril's "independent
  channels" and PixInsight's per-channel histogram transformation); stars lose colour.

Hue here is the angle in the opponent plane, ``atan2(sqrt(3) (G - B), 2R - G - B)``: a black point
subtracted from every channel and a common factor per pixel both leave it unchanged, so the
luminance mode preserves the hue of every pixel that is not clipped at 0.

The stretches:

* :func:`linear_stretch` -- black and white points, given or from percentiles.
* :func:`asinh_stretch` -- Lupton et al.'s arcsinh stretch [1]_, Siril's *Asinh transformation*.
* :func:`ghs` -- the generalised hyperbolic stretch of D. Payne and M. Cranfield [2]_, with its
  five parameters D, b, SP, LP and HP as in PixInsight's and Siril's GHS.
* :func:`auto_stretch` -- the midtones transfer function placed by the median and MAD, as
  PixInsight's automatic screen transfer function and Siril's autostretch [3]_.
* :func:`curves` -- a monotone cubic (PCHIP [4]_) through control points, applied by lookup table.

:func:`stretch` dispatches on a :data:`Stretch` name for the command line. Statistics (medians,
MADs, percentiles) come from a regular subsample of about a million pixels and ignore NaN; NaN
pixels stay NaN.

References
----------
.. [1] R. Lupton, M. R. Blanton, G. Fekete et al., "Preparing red-green-blue images from CCD
   data", PASP 116, 133-137 (2004).
.. [2] D. Payne, M. Cranfield, "Generalised Hyperbolic Stretch", https://ghsastro.co.uk (2021-2022);
   the same equations in Siril's ``src/filters/ght.c``.
.. [3] J. Conejero, PixInsight reference documentation, "ScreenTransferFunction" (automatic
   stretch: shadows clipping at -2.8 normalised MADs, target background 0.25).
.. [4] F. N. Fritsch, R. E. Carlson, "Monotone piecewise cubic interpolation", SIAM J. Numer.
   Anal. 17, 238-246 (1980).
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq

from skystack._typing import Image
from skystack.errors import ConfigError, GeometryError
from skystack.io.display import midtones_transfer

__all__ = [
    "Stretch",
    "STRETCHES",
    "ColorMode",
    "COLOR_MODES",
    "Luminance",
    "LUMINANCES",
    "linear_stretch",
    "asinh_stretch",
    "ghs",
    "ghs_transfer",
    "auto_stretch",
    "curves",
    "stretch",
]

Stretch: TypeAlias = Literal["auto", "asinh", "ghs", "linear", "curves", "none"]
STRETCHES: tuple[Stretch, ...] = ("auto", "asinh", "ghs", "linear", "curves", "none")

ColorMode: TypeAlias = Literal["luminance", "channels"]
"""``"luminance"``: stretch the luminance and scale the channels (hue kept); ``"channels"``:
stretch each channel on its own."""
COLOR_MODES: tuple[ColorMode, ...] = ("luminance", "channels")

Luminance: TypeAlias = Literal["mean", "rec709"]
"""Weights of the luminance: the plain mean of R, G, B, or Rec. 709 (0.2126, 0.7152, 0.0722)."""
LUMINANCES: tuple[Luminance, ...] = ("mean", "rec709")

_LUMINANCE_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "mean": (1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0),
    "rec709": (0.2126, 0.7152, 0.0722),
}

_MAD_TO_SIGMA = 1.4826
_SAMPLE_PIXELS = 1_000_000
_LUT_INTERVALS = 4096
_STRIP_PIXELS = 1 << 16
_MAX_GHS_D = 20.0
"""Largest stretch factor ln(D + 1): D = 4.9e8, far beyond any useful stretch."""
_FALLBACK_GHS_D = 5.0
_MAX_ASINH_STRETCH = 1e12

_Transfer: TypeAlias = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
"""A tone curve on values in [0, 1]; it may work in place on its argument."""


# --------------------------------------------------------------------------------------------
# Public stretches


def linear_stretch(
    image: Image,
    *,
    black: float | None = None,
    white: float | None = None,
    percentiles: tuple[float, float] = (0.1, 99.99),
    color: ColorMode = "luminance",
    luminance: Luminance = "mean",
) -> Image:
    """Map ``[black, white]`` linearly onto ``[0, 1]``.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        Linear data, full scale 1.0.
    black, white : float, optional
        Black and white points in the image's units. When None, the ``percentiles`` of the
        luminance (one pair of points for all channels, so no colour cast).
    percentiles : (float, float)
        Percentiles (0-100) of the automatic black and white points.
    color : {"luminance", "channels"}
        What happens above the white point: ``"luminance"`` scales such a pixel down as a whole
        (its hue is kept), ``"channels"`` clips each channel at 1.
    luminance : {"mean", "rec709"}
        Luminance weights of the automatic points.

    Returns
    -------
    ndarray float32
        Same shape, values in [0, 1].
    """
    data = _as_image(image, "linear stretch")
    _check_choices(color=color, luminance=luminance)
    low, high = _check_percentiles(percentiles)
    if black is None or white is None:
        sample = _luminance(_sample(data), luminance)
        auto_black, auto_white = (float(v) for v in np.percentile(sample, (low, high)))
        black = auto_black if black is None else black
        white = auto_white if white is None else white
    black = _check_finite("linear stretch black point", black)
    white = _check_finite("linear stretch white point", white)
    if not white > black:
        raise ConfigError(
            f"linear stretch white point {white:g} must be above the black point {black:g}"
        )
    return _apply_transfer(data, None, black=black, white=white, color=color, luminance=luminance)


def asinh_stretch(
    image: Image,
    *,
    stretch: float | None = None,
    black: float | None = None,
    target_background: float = 0.25,
    shadows_clip: float = -2.8,
    color: ColorMode = "luminance",
    luminance: Luminance = "mean",
) -> Image:
    """Arcsinh stretch, colour preserving by default (Lupton et al. 2004; Siril's *asinh*).

    With ``x' = max(0, (x - black) / (1 - black))`` and its luminance ``L``, every channel is
    multiplied by ``asinh(stretch * L) / (L * asinh(stretch))``: linear for faint signal,
    logarithmic for bright signal, hue unchanged. Siril's "RGB space" option off corresponds to
    ``color="luminance"`` with ``luminance="mean"``.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        Linear data, full scale 1.0.
    stretch : float, optional
        The softening parameter beta (Siril's "Stretch factor", typically 1-1000; 0 is the
        identity). When None, beta is chosen so that the median background lands at
        ``target_background``.
    black : float, optional
        Black point in the image's units (Siril's "Black point"). When None, the median of the
        luminance plus ``shadows_clip`` normalised MADs (1.4826 MAD), as the automatic stretch;
        it may be negative for data whose background was subtracted.
    target_background : float
        Output brightness of the median background when ``stretch`` is None.
    shadows_clip : float
        Automatic black point in normalised MADs from the median (<= 0).
    color : {"luminance", "channels"}
        Colour-preserving or per-channel stretch.
    luminance : {"mean", "rec709"}
        Luminance weights (Siril's "human luminance" is ``"rec709"``).

    Returns
    -------
    ndarray float32
        Same shape, values in [0, 1].
    """
    data = _as_image(image, "asinh stretch")
    _check_choices(color=color, luminance=luminance)
    target = _check_open_unit("asinh stretch target_background", target_background)
    clip = _check_shadows_clip("asinh stretch", shadows_clip)
    if black is None or stretch is None:
        median, sigma = _background(data, luminance)
    if black is None:
        black = _auto_black(median, sigma, clip)
    black = _check_black("asinh stretch", black)
    if stretch is None:
        level = (median - black) / (1.0 - black)
        beta = _asinh_beta_for(level, target)
    else:
        beta = _check_finite("asinh stretch factor", stretch)
        if not 0.0 <= beta <= _MAX_ASINH_STRETCH:
            raise ConfigError(
                f"asinh stretch factor {stretch!r} is invalid; expected 0 to {_MAX_ASINH_STRETCH:g}"
            )
    return _apply_transfer(
        data, _asinh_transfer(beta), black=black, white=1.0, color=color, luminance=luminance
    )


def ghs(
    image: Image,
    *,
    D: float | None = None,
    b: float = 2.0,
    SP: float | None = None,
    LP: float = 0.0,
    HP: float = 1.0,
    target_background: float = 0.25,
    color: ColorMode = "luminance",
    luminance: Luminance = "mean",
) -> Image:
    """Generalised hyperbolic stretch (D. Payne and M. Cranfield; PixInsight and Siril GHS).

    The curve is built from its slope, which is largest at the symmetry point ``SP`` and falls
    off with the distance ``u = |x - SP|`` as ``(1 + D b u) ** -(1 + 1/b)`` (hyperbolic,
    ``b > 0``; ``b = 1`` is harmonic), ``exp(-D u)`` (exponential, ``b = 0``),
    ``1 / (1 + D u)`` (logarithmic, ``b = -1``) or ``(1 - D b u) ** (1/b)`` (integral,
    ``b < 0``). Below ``LP`` and above ``HP`` the curve continues as the straight line of its
    slope there, which protects shadows and highlights; it is normalised so that 0 -> 0 and
    1 -> 1, continuous and non-decreasing. Data are clipped to [0, 1] first; see
    :func:`ghs_transfer` for the curve itself.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        Linear (or already stretched) data, full scale 1.0.
    D : float, optional
        Stretch factor as PixInsight and Siril show it, ``ln(D + 1)`` of the equations' D, in
        [0, 20]; 0 is the identity. When None, the D that brings the symmetry point to
        ``target_background`` (with the default SP, the sky background).
    b : float
        Local stretch intensity: how narrowly the stretch concentrates around ``SP``.
    SP : float, optional
        Symmetry point in [LP, HP]: the input level that gets the most contrast. When None, the
        median of the luminance (the sky background, which is what one usually picks).
    LP : float
        Protect shadows: the curve is linear below this level, in [0, SP].
    HP : float
        Protect highlights: the curve is linear above this level, in [SP, 1].
    target_background : float
        Output level of ``SP`` when ``D`` is None, in (0, 1).
    color : {"luminance", "channels"}
        Colour-preserving (the curve on the luminance, channels scaled) or per-channel stretch.
    luminance : {"mean", "rec709"}
        Luminance weights (GHS's "even weighted" or "human weighted" luminance).

    Returns
    -------
    ndarray float32
        Same shape, values in [0, 1].
    """
    data = _as_image(image, "ghs stretch")
    _check_choices(color=color, luminance=luminance)
    if SP is None:
        # The sky background, kept inside [LP, HP] (invalid LP or HP are reported below).
        SP, _ = _background(data, luminance)
        if _finite(LP) and _finite(HP):
            SP = min(max(SP, float(LP)), float(HP))
    if D is None:
        target = _check_open_unit("ghs target_background", target_background)
        _ghs_parameters(D=0.0, b=b, SP=SP, LP=LP, HP=HP)  # report bad values before solving
        D = _ghs_stretch_factor_for(target, b=b, SP=SP, LP=LP, HP=HP)
    params = _ghs_parameters(D=D, b=b, SP=SP, LP=LP, HP=HP)
    transfer = None if params.D == 0.0 else params.transfer
    return _apply_transfer(data, transfer, black=0.0, white=1.0, color=color, luminance=luminance)


def ghs_transfer(
    x: npt.ArrayLike, *, D: float, b: float, SP: float, LP: float = 0.0, HP: float = 1.0
) -> npt.NDArray[np.floating]:
    """The generalised hyperbolic stretch curve itself, on values in [0, 1].

    Parameters
    ----------
    x : array_like
        Input levels; clipped to [0, 1].
    D, b, SP, LP, HP
        As in :func:`ghs` (``SP`` is required here).

    Returns
    -------
    ndarray
        The stretched levels, same shape as ``x``: float64 for float64 input, else float32.
    """
    params = _ghs_parameters(D=D, b=b, SP=SP, LP=LP, HP=HP)
    values = np.asarray(x)
    dtype = np.float64 if values.dtype == np.float64 else np.float32
    values = np.clip(values.astype(dtype), 0.0, 1.0)
    if params.D == 0.0:
        return values
    return np.clip(params.transfer(values), 0.0, 1.0)


def auto_stretch(
    image: Image,
    *,
    target_background: float = 0.25,
    shadows_clip: float = -2.8,
    linked: bool = True,
    color: ColorMode = "luminance",
    luminance: Luminance = "mean",
) -> Image:
    """Automatic midtones stretch from the median and MAD (PixInsight STF auto, Siril autostretch).

    The black point is the median plus ``shadows_clip`` normalised MADs (1.4826 MAD); the
    midtones balance ``m`` of the midtones transfer function
    ``MTF(m, x) = (m - 1) x / ((2m - 1) x - m)`` is chosen so that the median lands at
    ``target_background``. No highlights are clipped.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        Linear data, full scale 1.0; it may be negative after background subtraction.
    target_background : float
        Output brightness of the median background, in (0, 1).
    shadows_clip : float
        Black point in normalised MADs from the median (<= 0).
    linked : bool
        One black point and midtones balance for all channels (a neutral background stays
        neutral): from the luminance statistics in ``"luminance"`` colour mode, from the average
        of the channels' medians and MADs in ``"channels"`` mode (PixInsight's linked STF).
        False: each channel gets its own parameters and is stretched on its own, which
        neutralises a coloured background but shifts star colours.
    color : {"luminance", "channels"}
        For ``linked``: colour-preserving or per-channel application of the one curve.
    luminance : {"mean", "rec709"}
        Luminance weights.

    Returns
    -------
    ndarray float32
        Same shape, values in [0, 1].
    """
    data = _as_image(image, "auto stretch")
    _check_choices(color=color, luminance=luminance)
    target = _check_open_unit("auto stretch target_background", target_background)
    clip = _check_shadows_clip("auto stretch", shadows_clip)
    if data.ndim == 2:
        median, sigma = _background(data, luminance)
    elif not linked:
        sample = _sample(data)
        channels = [_mtf_parameters(*_robust_stats(sample[..., c]), clip, target) for c in range(3)]
        return _apply_channel_transfers(data, channels)
    elif color == "luminance":
        median, sigma = _background(data, luminance)
    else:
        sample = _sample(data)
        stats = [_robust_stats(sample[..., c]) for c in range(3)]
        median = float(np.mean([s[0] for s in stats]))
        sigma = float(np.mean([s[1] for s in stats]))
    black, transfer = _mtf_parameters(median, sigma, clip, target)
    return _apply_transfer(data, transfer, black=black, white=1.0, color=color, luminance=luminance)


def curves(
    image: Image,
    points: npt.ArrayLike,
    *,
    color: ColorMode = "luminance",
    luminance: Luminance = "mean",
) -> Image:
    """Curves: a monotone cubic through control points (PCHIP), applied by lookup table.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        Data in [0, 1] (usually already stretched); clipped to [0, 1].
    points : sequence of (x, y)
        Control points in [0, 1]. ``(0, 0)`` and ``(1, 1)`` are added unless points with
        ``x = 0`` or ``x = 1`` are given. The x must be distinct and the y must not decrease with
        x (a curve that turns down would invert tones).
    color : {"luminance", "channels"}
        Colour-preserving or per-channel application.
    luminance : {"mean", "rec709"}
        Luminance weights.

    Returns
    -------
    ndarray float32
        Same shape, values in [0, 1].
    """
    data = _as_image(image, "curves")
    _check_choices(color=color, luminance=luminance)
    transfer = _lookup_transfer(_curve_table(points))
    return _apply_transfer(data, transfer, black=0.0, white=1.0, color=color, luminance=luminance)


_METHODS: dict[str, Callable[..., Image]] = {
    "auto": auto_stretch,
    "asinh": asinh_stretch,
    "ghs": ghs,
    "linear": linear_stretch,
    "curves": curves,
}


def stretch(image: Image, method: Stretch = "auto", **params: object) -> Image:
    """Apply the stretch named ``method`` with its keyword options.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        Linear data.
    method : {"auto", "asinh", "ghs", "linear", "curves", "none"}
        :func:`auto_stretch`, :func:`asinh_stretch`, :func:`ghs`, :func:`linear_stretch`,
        :func:`curves` (needs ``points``), or ``"none"``: a float32 copy, still linear.
    **params
        Options of that function.

    Returns
    -------
    ndarray float32
    """
    if method not in STRETCHES:
        raise ConfigError(f"unknown stretch {method!r}; expected one of {', '.join(STRETCHES)}")
    if method == "none":
        if params:
            raise ConfigError(f"stretch 'none' takes no options, got {', '.join(sorted(params))}")
        return np.array(_as_image(image, "stretch"), dtype=np.float32, copy=True)
    function = _METHODS[method]
    options = [name for name in inspect.signature(function).parameters if name != "image"]
    unknown = sorted(set(params) - set(options))
    if unknown:
        raise ConfigError(
            f"{method} stretch has no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(options)}"
        )
    if method == "curves" and "points" not in params:
        raise ConfigError("curves stretch needs points=[(x, y), ...] in [0, 1]")
    return function(image, **params)


# --------------------------------------------------------------------------------------------
# Applying a tone curve


def _apply_transfer(
    data: Image,
    transfer: _Transfer | None,
    *,
    black: float,
    white: float,
    color: ColorMode,
    luminance: Luminance,
) -> Image:
    """``transfer((data - black) / (white - black))`` per channel or through the luminance.

    ``transfer`` None is the identity. Values are clipped to [0, 1] (per channel, or by scaling
    the whole pixel in luminance mode). Strips of rows are processed by a pool of threads.
    """
    out = np.empty_like(data)
    scale = 1.0 / (white - black)
    weights = np.asarray(_LUMINANCE_WEIGHTS[luminance], dtype=np.float32)
    floor = 0.0 if transfer is None else float(transfer(np.zeros(1, dtype=np.float32))[0])
    by_luminance = data.ndim == 3 and color == "luminance"

    def work(rows: slice) -> None:
        strip = out[rows]
        np.subtract(data[rows], np.float32(black), out=strip)
        strip *= np.float32(scale)
        if by_luminance:
            _scale_by_luminance(strip, transfer, weights, floor)
        else:
            np.clip(strip, 0.0, 1.0, out=strip)
            if transfer is not None:
                np.clip(transfer(strip), 0.0, 1.0, out=strip)

    map_row_strips(work, data.shape)
    return out


def _apply_channel_transfers(
    data: Image, channels: Sequence[tuple[float, _Transfer | None]]
) -> Image:
    """Each channel ``c`` of ``data`` through its own black point and curve ``channels[c]``."""
    out = np.empty_like(data)

    def work(rows: slice) -> None:
        for c, (black, transfer) in enumerate(channels):
            plane = np.subtract(data[rows, :, c], np.float32(black))
            plane *= np.float32(1.0 / (1.0 - black))
            np.clip(plane, 0.0, 1.0, out=plane)
            if transfer is not None:
                plane = np.clip(transfer(plane), 0.0, 1.0, out=plane)
            out[rows, :, c] = plane

    map_row_strips(work, data.shape)
    return out


def _scale_by_luminance(
    strip: Image, transfer: _Transfer | None, weights: npt.NDArray[np.float32], floor: float
) -> None:
    """Multiply the pixels of ``strip`` (in place, >= 0 after) by ``transfer(L) / L``."""
    np.maximum(strip, 0.0, out=strip)
    lum = strip @ weights
    stretched = np.minimum(lum, 1.0)
    if transfer is not None:
        stretched = transfer(stretched)
    factor = np.divide(stretched, lum, out=np.zeros_like(lum), where=lum > 0)
    # Scale a pixel down as a whole when its brightest channel would pass 1.
    brightest = np.maximum(np.maximum(strip[..., 0], strip[..., 1]), strip[..., 2])
    brightest *= factor
    np.maximum(brightest, 1.0, out=brightest)
    factor /= brightest
    strip *= factor[..., None]
    if floor > 0.0:
        # A curve that lifts black: black pixels become grey at that level.
        strip[lum == 0] = floor
    np.clip(strip, 0.0, 1.0, out=strip)  # rounding may leave 1 + 1e-7


def map_row_strips(work: Callable[[slice], None], shape: tuple[int, ...]) -> None:
    """Call ``work(rows)`` for strips of rows of an image of ``shape``, on a pool of threads.

    numpy releases the GIL in its array loops, so the strips run in parallel; strips of about
    ``_STRIP_PIXELS`` pixels keep each step's temporaries in the processor's cache.
    """
    height = shape[0]
    width = shape[1] if len(shape) > 1 else 1
    rows = max(1, _STRIP_PIXELS // max(width, 1))
    strips = [slice(top, min(top + rows, height)) for top in range(0, height, rows)]
    workers = min(len(strips), os.cpu_count() or 1)
    if workers <= 1:
        for strip in strips:
            work(strip)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(work, strips):
            pass


def _mtf_parameters(
    median: float, sigma: float, shadows_clip: float, target: float
) -> tuple[float, _Transfer | None]:
    """Black point and midtones curve that put ``median`` at ``target`` (None: no solution)."""
    black = min(_auto_black(median, sigma, shadows_clip), 1.0 - 1e-6)
    level = (median - black) / (1.0 - black)
    if not 0.0 < level < 1.0:
        return black, None  # a flat image: the median is the black point
    # The midtones balance that maps `level` to `target` is MTF(target, level).
    return black, _midtones(float(midtones_transfer(np.float32(level), target)))


def _midtones(midtones: float) -> _Transfer:
    def transfer(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return midtones_transfer(x, midtones)

    return transfer


def _asinh_transfer(beta: float) -> _Transfer | None:
    if beta == 0.0:
        return None
    scale = 1.0 / math.asinh(beta)

    def transfer(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        x *= np.float32(beta)
        np.arcsinh(x, out=x)
        x *= np.float32(scale)
        return x

    return transfer


def _asinh_beta_for(level: float, target: float) -> float:
    """The beta that maps ``level`` to ``target``: asinh(beta level) / asinh(beta) = target."""
    if not 0.0 < level < target:
        return 0.0  # the background is at the black point, or already bright enough

    def excess(log_beta: float) -> float:
        beta = math.exp(log_beta)
        return math.asinh(beta * level) / math.asinh(beta) - target

    low, high = math.log(1e-3), math.log(_MAX_ASINH_STRETCH)
    if excess(high) <= 0.0:
        return _MAX_ASINH_STRETCH
    return math.exp(brentq(excess, low, high, xtol=1e-6))


# --------------------------------------------------------------------------------------------
# The generalised hyperbolic stretch


class _GhsParameters:
    """Validated GHS parameters, with the equations' D = exp(D_shown) - 1."""

    def __init__(self, *, D: float, b: float, SP: float, LP: float, HP: float) -> None:
        self.D = math.expm1(D)
        self.b, self.SP, self.LP, self.HP = b, SP, LP, HP
        if self.D > 0.0:
            ends = self._unnormalised(np.array([0.0, 1.0]))
            self.offset = float(ends[0])
            self.scale = 1.0 / float(ends[1] - ends[0])

    def slope(self, u: float) -> float:
        """Slope of the unnormalised curve at distance ``u >= 0`` from SP."""
        D, b = self.D, self.b
        if b > 0.0:
            return (1.0 + D * b * u) ** (-(1.0 + b) / b)
        if b == 0.0:
            return math.exp(-D * u)
        return (1.0 - D * b * u) ** (1.0 / b)

    def _integral(self, u: npt.NDArray) -> npt.NDArray:
        """Integral of the slope from 0 to ``u`` (in place), written with expm1/log1p."""
        D, b = self.D, self.b
        if b > 0.0:
            u *= D * b
            np.log1p(u, out=u)
            u *= -1.0 / b
            np.expm1(u, out=u)
            u *= -1.0 / D
        elif b == 0.0:
            u *= -D
            np.expm1(u, out=u)
            u *= -1.0 / D
        elif b == -1.0:
            u *= D
            np.log1p(u, out=u)
            u *= 1.0 / D
        else:
            u *= -D * b
            np.log1p(u, out=u)
            u *= 1.0 + 1.0 / b
            np.expm1(u, out=u)
            u *= 1.0 / (-D * (1.0 + b))
        return u

    def _unnormalised(self, x: npt.NDArray) -> npt.NDArray:
        """The curve before normalisation, zero at SP; may modify ``x``."""
        below = np.minimum(x - self.LP, 0.0) if self.LP > 0.0 else None
        above = np.maximum(x - self.HP, 0.0) if self.HP < 1.0 else None
        np.clip(x, self.LP, self.HP, out=x)
        x -= self.SP
        curve = self._integral(np.abs(x))
        np.copysign(curve, x, out=curve)
        if below is not None:
            below *= self.slope(self.SP - self.LP)
            curve += below
        if above is not None:
            above *= self.slope(self.HP - self.SP)
            curve += above
        return curve

    def transfer(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        curve = self._unnormalised(x)
        curve -= self.offset
        curve *= self.scale
        return curve


def _ghs_stretch_factor_for(target: float, *, b: float, SP: float, LP: float, HP: float) -> float:
    """The stretch factor ln(D + 1) that maps SP to ``target`` (SP's output grows with D)."""
    if SP <= 0.0:
        return _FALLBACK_GHS_D  # a background at zero stays at zero whatever D
    if SP >= target:
        return 0.0

    def excess(stretch_factor: float) -> float:
        params = _ghs_parameters(D=stretch_factor, b=b, SP=SP, LP=LP, HP=HP)
        return float(params.transfer(np.array([SP]))[0]) - target

    if excess(_MAX_GHS_D) <= 0.0:
        return _MAX_GHS_D
    return brentq(excess, 1e-6, _MAX_GHS_D, xtol=1e-4)


def _ghs_parameters(*, D: float, b: float, SP: float, LP: float, HP: float) -> _GhsParameters:
    values = {
        name: _check_finite(f"ghs {name}", value)
        for name, value in (("D", D), ("b", b), ("SP", SP), ("LP", LP), ("HP", HP))
    }
    if not 0.0 <= values["D"] <= _MAX_GHS_D:
        raise ConfigError(
            f"ghs stretch factor D={D!r} is invalid; expected ln(D+1) in 0 to {_MAX_GHS_D:g}"
        )
    if not 0.0 <= values["LP"] <= values["SP"] <= values["HP"] <= 1.0:
        raise ConfigError(
            f"ghs points LP={LP!r}, SP={SP!r}, HP={HP!r} are invalid; "
            "expected 0 <= LP <= SP <= HP <= 1"
        )
    return _GhsParameters(**values)


# --------------------------------------------------------------------------------------------
# Curves


def _curve_table(points: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The PCHIP curve through ``points`` sampled at ``_LUT_INTERVALS + 1`` levels."""
    try:
        nodes = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"curves points {points!r} are not (x, y) number pairs") from err
    if nodes.ndim != 2 or nodes.shape[1] != 2 or nodes.shape[0] == 0:
        raise ConfigError(f"curves points must be a sequence of (x, y) pairs, got {points!r}")
    if not np.all(np.isfinite(nodes)) or nodes.min() < 0.0 or nodes.max() > 1.0:
        raise ConfigError(f"curves points must lie in [0, 1], got {nodes.tolist()}")
    nodes = nodes[np.argsort(nodes[:, 0], kind="stable")]
    if nodes[0, 0] > 0.0:
        nodes = np.vstack([[0.0, 0.0], nodes])
    if nodes[-1, 0] < 1.0:
        nodes = np.vstack([nodes, [1.0, 1.0]])
    xs, ys = nodes[:, 0], nodes[:, 1]
    repeated = np.flatnonzero(np.diff(xs) == 0.0)
    if repeated.size:
        raise ConfigError(f"curves has two points at x = {xs[repeated[0]]:g}; x must be distinct")
    falling = np.flatnonzero(np.diff(ys) < 0.0)
    if falling.size:
        i = falling[0]
        raise ConfigError(
            f"curves points are not monotone: y falls from {ys[i]:g} at x = {xs[i]:g} to "
            f"{ys[i + 1]:g} at x = {xs[i + 1]:g}"
        )
    levels = np.linspace(0.0, 1.0, _LUT_INTERVALS + 1)
    table = PchipInterpolator(xs, ys)(levels)
    return np.clip(table, 0.0, 1.0).astype(np.float32)


def _lookup_transfer(table: npt.NDArray[np.float32]) -> _Transfer:
    """Linear interpolation in a table of the curve at equally spaced levels over [0, 1]."""
    intervals = table.size - 1
    # One extra entry so that x = 1 (index == intervals) needs no special case.
    values = np.append(table, table[-1])
    steps = np.diff(values)

    def transfer(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        x *= np.float32(intervals)
        index = np.floor(x)
        x -= index  # the fraction between table entries
        with np.errstate(invalid="ignore"):  # NaN: any index, the NaN fraction stays NaN
            cells = index.astype(np.intp)
        x *= steps.take(cells, mode="clip")
        x += values.take(cells, mode="clip")
        return x

    return transfer


# --------------------------------------------------------------------------------------------
# Statistics and checks


def _as_image(image: Image, what: str) -> Image:
    data = np.asarray(image)
    if not (data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 3)):
        raise GeometryError(f"{what} needs an image of shape (H, W) or (H, W, 3), got {data.shape}")
    return data.astype(np.float32, copy=False)


def _sample(data: Image) -> Image:
    """A regular subsample of about ``_SAMPLE_PIXELS`` pixels (a view)."""
    step = max(1, int(math.sqrt(data.shape[0] * data.shape[1] / _SAMPLE_PIXELS)))
    return data[::step, ::step]


def _luminance(data: Image, luminance: Luminance) -> npt.NDArray[np.float32]:
    """Finite luminance values of ``data`` (mono: the values), flattened."""
    if data.ndim == 3:
        data = data @ np.asarray(_LUMINANCE_WEIGHTS[luminance], dtype=np.float32)
    values = data.reshape(-1)
    return values[np.isfinite(values)]


def _robust_stats(values: npt.ArrayLike) -> tuple[float, float]:
    """Median and normalised MAD (1.4826 MAD) of the finite values; (0, 0) if there are none."""
    finite = np.asarray(values, dtype=np.float32).reshape(-1)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 0.0
    median = float(np.median(finite))
    return median, _MAD_TO_SIGMA * float(np.median(np.abs(finite - np.float32(median))))


def _background(data: Image, luminance: Luminance) -> tuple[float, float]:
    """Median and noise of the luminance: the sky background level and its spread."""
    return _robust_stats(_luminance(_sample(data), luminance))


def _auto_black(median: float, sigma: float, shadows_clip: float) -> float:
    return median + shadows_clip * sigma


def _finite(value: object) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)


def _check_finite(what: str, value: object) -> float:
    if isinstance(value, bool) or not _finite(value):
        raise ConfigError(f"{what} {value!r} is invalid; expected a finite number")
    return float(value)  # type: ignore[arg-type]


def _check_open_unit(what: str, value: object) -> float:
    number = _check_finite(what, value)
    if not 0.0 < number < 1.0:
        raise ConfigError(f"{what} {value!r} is invalid; expected a number between 0 and 1")
    return number


def _check_shadows_clip(what: str, value: object) -> float:
    number = _check_finite(f"{what} shadows_clip", value)
    if number > 0.0:
        raise ConfigError(
            f"{what} shadows_clip {value!r} is invalid; expected <= 0 (MADs below the median)"
        )
    return number


def _check_black(what: str, value: object) -> float:
    number = _check_finite(f"{what} black point", value)
    if number >= 1.0:
        raise ConfigError(f"{what} black point {value!r} is invalid; expected below 1")
    return number


def _check_percentiles(percentiles: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(p) for p in percentiles)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"linear stretch percentiles {percentiles!r} are invalid; expected two numbers"
        ) from err
    if not (0.0 <= low < high <= 100.0):
        raise ConfigError(
            f"linear stretch percentiles {percentiles!r} are invalid; "
            "expected 0 <= black < white <= 100"
        )
    return low, high


def _check_choices(*, color: str, luminance: str) -> None:
    if color not in COLOR_MODES:
        raise ConfigError(
            f"unknown colour mode {color!r}; expected one of {', '.join(COLOR_MODES)}"
        )
    if luminance not in LUMINANCES:
        raise ConfigError(
            f"unknown luminance weights {luminance!r}; expected one of {', '.join(LUMINANCES)}"
        )
