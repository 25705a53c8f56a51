"""Colour calibration and saturation of a stacked colour image.

* :func:`neutralize_background` and :func:`white_balance` are those of
  :mod:`skystack.color.balance`, re-exported: a grey sky by per-channel offsets, and per-channel
  multipliers.
* :func:`star_white_balance` measures the white balance on the stars themselves, as Siril's
  photometric colour calibration does without its catalogue [1]_: aperture photometry of many
  unsaturated stars in each channel, each above its own local background, and multipliers that
  make the median star colour neutral (G = 1). The median star of a field is a G-K dwarf, close to
  the Sun's colour, which is what "white" means in a daylight-balanced picture.
* :func:`saturation` boosts chroma without changing hue: every pixel moves away from its grey
  value (the mean of its channels) along its own chroma direction, as far as the [0, 1] range
  allows, and less in the dark background, where chroma is mostly noise (Siril's *Saturation*
  with its background factor [2]_).

Hue is the angle in the opponent plane, ``atan2(sqrt(3) (G - B), 2R - G - B)``, whose origin is
the grey axis; moving along ``x - mean(x)`` keeps it.

References
----------
.. [1] C. Richard et al., Siril documentation, "Photometric Color Calibration",
   https://siril.readthedocs.io/en/stable/processing/colors.html
.. [2] Siril documentation, "Color Saturation" (``satu amount [background_factor]``).
"""

from __future__ import annotations

import math
import warnings
from typing import TypeAlias

import numba
import numpy as np
import numpy.typing as npt

from skystack._typing import Image
from skystack.color.balance import neutralize_background, white_balance
from skystack.detect.stars import StarTable, find_stars, luminance
from skystack.enhance.stretch import map_row_strips
from skystack.errors import ColorCalibrationError, ConfigError, GeometryError

__all__ = [
    "neutralize_background",
    "white_balance",
    "star_white_balance",
    "saturation",
    "neutralize_clipped",
    "smooth_star_colour",
    "desaturate_highlights",
]

_Floats: TypeAlias = npt.NDArray[np.float64]
_Bools: TypeAlias = npt.NDArray[np.bool_]

_MAD_TO_SIGMA = 1.4826
_SAMPLE_PIXELS = 1_000_000
_TILED_DETECTION_PIXELS = 4_000_000
"""Larger images are searched for stars in a grid of tiles only."""
_DETECTION_GRID = 3
_DETECTION_TILE = 512
_DEFAULT_FWHM = 3.0
_APERTURE_FWHM = 1.5  # aperture radius in FWHM: most of the flux, little background noise
_ANNULUS_GAP = 2.0  # px between the aperture and the background annulus
_ANNULUS_WIDTH = 5.0
_PLATEAU = 0.999  # pixels within 0.1% of a channel's maximum form a clipped plateau
_SATURATION_MARGIN = 0.98  # stars peaking above this fraction of the clip level are left out


def star_white_balance(
    image: Image,
    stars: StarTable | None = None,
    *,
    max_stars: int = 500,
    aperture: float | None = None,
    saturation: float | None = None,
    min_snr: float = 20.0,
    min_stars: int = 10,
) -> tuple[float, float, float]:
    """White-balance multipliers that make the median star colour neutral.

    Each star is measured in every channel with the same circular aperture, minus the median of
    a surrounding annulus (its local background) times the aperture area. Stars are left out
    when they are saturated in any channel, too close to the border, hit missing (NaN) pixels,
    or are fainter than ``min_snr`` in any channel. The multipliers are ``1 / median(R/G)``,
    1 and ``1 / median(B/G)``; apply them with :func:`white_balance` (after
    :func:`neutralize_background`, or the offsets of a coloured sky are multiplied too).

    Parameters
    ----------
    image : ndarray, (H, W, 3)
        Linear RGB data (a coloured background does not matter: it is subtracted locally).
    stars : StarTable, optional
        Stars to measure (``x``, ``y``, ``fwhm``, ``saturated`` are used). When None they are
        found with :func:`skystack.detect.find_stars` on the luminance (for images above 4
        megapixels, in nine 512 x 512 tiles spread over the field).
    max_stars : int
        At most this many stars are measured: the brightest unsaturated ones.
    aperture : float, optional
        Aperture radius in pixels; default 1.5 times the median FWHM (3 px when unknown).
    saturation : float, optional
        Clip level in the image's units: stars reaching 98% of it in a channel are left out.
        When None, per channel: the highest star peak if at least 3 stars reach within 0.1% of
        it (clipped cores), otherwise none. In any case a star is left out when its core is
        flat in some channel (3 aperture pixels within 0.1% of its peak).
    min_snr : float
        Smallest signal-to-noise ratio of a star's flux in each channel (noise from the
        annulus scatter).
    min_stars : int
        Fewer usable stars than this raise an error.

    Returns
    -------
    (r, 1.0, b)
        Multipliers for R, G, B.

    Raises
    ------
    GeometryError
        The image is not ``(H, W, 3)``.
    ConfigError
        An option is out of range, or fewer than ``min_stars`` stars could be measured.
    """
    data = _rgb(image, "star white balance")
    _check_options(
        max_stars=max_stars,
        aperture=aperture,
        saturation=saturation,
        min_snr=min_snr,
        min_stars=min_stars,
    )
    if stars is None:
        stars = _detect(data, max_stars)
    # The brightest unsaturated stars: enough for a median, and a bounded photometry cost.
    unsaturated = np.flatnonzero(~np.asarray(stars.saturated, dtype=bool))
    chosen = unsaturated[np.argsort(-np.asarray(stars.flux)[unsaturated], kind="stable")]
    chosen = chosen[:max_stars]
    xs = np.asarray(stars.x, dtype=np.float64)[chosen]
    ys = np.asarray(stars.y, dtype=np.float64)[chosen]
    usable = np.ones(chosen.size, dtype=bool)
    if aperture is None:
        widths = np.asarray(stars.fwhm, dtype=np.float64)[chosen]
        widths = widths[np.isfinite(widths) & (widths > 0)]
        fwhm = float(np.median(widths)) if widths.size else _DEFAULT_FWHM
        aperture = max(_APERTURE_FWHM * fwhm, 2.0)
    flux, noise, peak, flat_top, inside = _photometry(data, xs, ys, float(aperture))
    usable &= inside & ~flat_top
    levels = _clip_levels(peak[usable], saturation)
    usable &= np.all(peak < _SATURATION_MARGIN * levels, axis=1)
    usable &= np.all(flux > min_snr * noise, axis=1)
    usable &= np.all(np.isfinite(flux), axis=1)
    count = int(np.count_nonzero(usable))
    if count < min_stars:
        raise ColorCalibrationError(
            f"star white balance found {count} usable stars (unsaturated, clear of the border, "
            f"S/N >= {min_snr:g} in every channel); it needs at least {min_stars}"
        )
    good = flux[usable]
    red = float(np.median(good[:, 0] / good[:, 1]))
    blue = float(np.median(good[:, 2] / good[:, 1]))
    return (1.0 / red, 1.0, 1.0 / blue)


def saturation(
    image: Image,
    amount: float,
    *,
    background_factor: float = 1.0,
) -> Image:
    """Boost (or reduce) colour saturation without changing hue.

    Each pixel ``x`` with grey value ``g = mean(x)`` becomes ``g + s (x - g)`` with
    ``s = 1 + amount * w``: hue and grey value are unchanged, chroma is multiplied by ``s``.
    ``s`` is limited per pixel so that no channel leaves [0, 1]. The weight ``w`` (0 to 1)
    protects the dark background: 0 below ``background_factor * median`` of the grey values,
    1 above ``background_factor * (median + sigma)``, smooth in between.

    Parameters
    ----------
    image : ndarray, (H, W, 3)
        Stretched RGB data in [0, 1] (values outside are clipped first); NaN stays NaN.
    amount : float
        Relative change of chroma: 0.5 is +50%, -1 is grey; at least -1.
    background_factor : float
        Scale of the background threshold (Siril's "background factor"); 0 boosts every pixel
        alike.

    Returns
    -------
    ndarray float32, (H, W, 3)
        Values in [0, 1].
    """
    data = _rgb(image, "saturation")
    if isinstance(amount, bool) or not _finite(amount) or amount < -1.0:
        raise ConfigError(f"saturation amount {amount!r} is invalid; expected a number >= -1")
    if (
        isinstance(background_factor, bool)
        or not _finite(background_factor)
        or background_factor < 0.0
    ):
        raise ConfigError(
            f"saturation background_factor {background_factor!r} is invalid; expected >= 0"
        )
    low = high = 0.0
    if background_factor > 0.0:
        median, sigma = _grey_statistics(data)
        low, high = background_factor * median, background_factor * (median + sigma)
    out = np.empty_like(data)

    def work(rows: slice) -> None:
        _saturate_strip(data[rows], out[rows], float(amount), low, high)

    map_row_strips(work, data.shape)
    return out


# --------------------------------------------------------------------------------------------
# Saturation


def _saturate_strip(pixels: Image, out: Image, amount: float, low: float, high: float) -> None:
    np.clip(pixels, 0.0, 1.0, out=out)
    grey = out @ np.full(3, 1.0 / 3.0, dtype=np.float32)
    factor = np.full_like(grey, np.float32(1.0 + amount))
    if high > 0.0:
        weight = _smoothstep(grey, low, high)
        weight *= np.float32(amount)
        factor = np.add(weight, np.float32(1.0), out=weight)
    if amount > 0.0:
        # The largest factor that keeps the brightest channel <= 1 and the faintest >= 0.
        brightest = np.maximum(np.maximum(out[..., 0], out[..., 1]), out[..., 2])
        faintest = np.minimum(np.minimum(out[..., 0], out[..., 1]), out[..., 2])
        with np.errstate(divide="ignore", invalid="ignore"):  # grey pixels: 0 / 0
            brightest -= grey
            np.divide(np.float32(1.0) - grey, brightest, out=brightest)
            faintest -= grey
            np.divide(grey, faintest, out=faintest)
            faintest *= np.float32(-1.0)
        # fmin ignores the NaN of grey pixels, whose factor does not matter.
        np.fmin(factor, brightest, out=factor)
        np.fmin(factor, faintest, out=factor)
        np.fmax(factor, np.float32(1.0), out=factor)  # rounding never desaturates
    out -= grey[..., None]
    out *= factor[..., None]
    out += grey[..., None]
    np.clip(out, 0.0, 1.0, out=out)


def _smoothstep(x: npt.NDArray[np.float32], low: float, high: float) -> npt.NDArray[np.float32]:
    """0 below ``low``, 1 above ``high``, ``3t^2 - 2t^3`` in between (a step when equal)."""
    if high <= low:
        return (x >= np.float32(high)).astype(np.float32)
    t = np.subtract(x, np.float32(low))
    t *= np.float32(1.0 / (high - low))
    np.clip(t, 0.0, 1.0, out=t)
    smooth = np.multiply(t, np.float32(-2.0))
    smooth += np.float32(3.0)
    smooth *= t
    smooth *= t
    return smooth


def _grey_statistics(data: Image) -> tuple[float, float]:
    """Median and normalised MAD of the grey values (channel means) of a subsample."""
    step = max(1, int(math.sqrt(data.shape[0] * data.shape[1] / _SAMPLE_PIXELS)))
    grey = np.clip(data[::step, ::step], 0.0, 1.0).mean(axis=2).reshape(-1)
    grey = grey[np.isfinite(grey)]
    if grey.size == 0:
        return 0.0, 0.0
    median = float(np.median(grey))
    return median, _MAD_TO_SIGMA * float(np.median(np.abs(grey - np.float32(median))))


# --------------------------------------------------------------------------------------------
# Star photometry


def _detect(data: Image, max_stars: int) -> StarTable:
    """The brightest stars, found on the luminance; in a grid of tiles for large images.

    Star colours need a few hundred stars, not all of them: a 24-megapixel frame is searched in
    nine tiles of 512 x 512 pixels spread over the field, a tenth of its area.
    """
    weights = np.full(3, 1.0 / 3.0, dtype=np.float32)
    height, width = data.shape[:2]
    if height * width <= _TILED_DETECTION_PIXELS:
        return find_stars(data @ weights, max_stars=max_stars)
    size = min(_DETECTION_TILE, height // _DETECTION_GRID, width // _DETECTION_GRID)
    per_tile = max(1, math.ceil(max_stars / _DETECTION_GRID**2))
    tables = []
    for row in range(_DETECTION_GRID):
        for col in range(_DETECTION_GRID):
            # Tile centres at 1/6, 1/2 and 5/6 of each side.
            top = int((2 * row + 1) * height / (2 * _DETECTION_GRID)) - size // 2
            left = int((2 * col + 1) * width / (2 * _DETECTION_GRID)) - size // 2
            tile = data[top : top + size, left : left + size] @ weights
            found = find_stars(tile, max_stars=per_tile)
            tables.append((found, left, top))
    return StarTable(
        x=np.concatenate([t.x + left for t, left, _ in tables]),
        y=np.concatenate([t.y + top for t, _, top in tables]),
        flux=np.concatenate([t.flux for t, _, _ in tables]),
        peak=np.concatenate([t.peak for t, _, _ in tables]),
        fwhm=np.concatenate([t.fwhm for t, _, _ in tables]),
        eccentricity=np.concatenate([t.eccentricity for t, _, _ in tables]),
        saturated=np.concatenate([t.saturated for t, _, _ in tables]),
    )


def _photometry(
    data: Image, xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64], aperture: float
) -> tuple[_Floats, _Floats, _Floats, _Bools, _Bools]:
    """Aperture photometry of every star in every channel.

    Returns
    -------
    flux, noise, peak : ndarray (N, 3)
        Background-subtracted aperture sum, its noise from the annulus scatter, and the highest
        pixel in the aperture (before background subtraction).
    flat_top : ndarray bool (N,)
        In some channel, at least 3 aperture pixels lie within 0.1% of the star's peak: a core
        clipped at saturation.
    inside : ndarray bool (N,)
        The star's annulus lies inside the image.
    """
    outer = aperture + _ANNULUS_GAP + _ANNULUS_WIDTH
    half = int(math.ceil(outer))
    height, width = data.shape[:2]
    cx = np.floor(xs + 0.5).astype(np.intp)
    cy = np.floor(ys + 0.5).astype(np.intp)
    finite = np.isfinite(xs) & np.isfinite(ys)
    inside = finite & (cx - half >= 0) & (cx + half < width) & (cy - half >= 0)
    inside &= cy + half < height
    count = len(xs)
    flux = np.full((count, 3), np.nan)
    noise = np.full((count, 3), np.nan)
    peak = np.full((count, 3), np.nan)
    flat_top = np.zeros(count, dtype=bool)
    index = np.flatnonzero(inside)
    if index.size == 0:
        return flux, noise, peak, flat_top, inside
    offsets = np.arange(-half, half + 1)
    rows = cy[index, None, None] + offsets[None, :, None]
    cols = cx[index, None, None] + offsets[None, None, :]
    stamps = data[rows, cols].astype(np.float64)  # (n, size, size, 3)
    dy = rows - ys[index, None, None]
    dx = cols - xs[index, None, None]
    radius = np.hypot(dx, dy)
    in_aperture = radius <= aperture
    in_annulus = (radius >= aperture + _ANNULUS_GAP) & (radius <= outer)
    ring = np.where(in_annulus[..., None], stamps, np.nan).reshape(index.size, -1, 3)
    with warnings.catch_warnings():  # an annulus of NaN pixels only: NaN, the star is dropped
        warnings.simplefilter("ignore", RuntimeWarning)
        background = np.nanmedian(ring, axis=1)
        spread = _MAD_TO_SIGMA * np.nanmedian(np.abs(ring - background[:, None, :]), axis=1)
    area = in_aperture.reshape(index.size, -1).sum(axis=1)[:, None]
    disc = np.where(in_aperture[..., None], stamps, 0.0)
    flux[index] = disc.sum(axis=(1, 2)) - background * area
    noise[index] = spread * np.sqrt(area)
    top = np.where(in_aperture[..., None], stamps, -np.inf).max(axis=(1, 2))
    peak[index] = top
    near_top = in_aperture[..., None] & (stamps >= _PLATEAU * top[:, None, None, :])
    flat_top[index] = np.any(near_top.sum(axis=(1, 2)) >= 3, axis=1)
    return flux, noise, peak, flat_top, inside


def _clip_levels(peaks: npt.NDArray[np.float64], saturation: float | None) -> npt.NDArray:
    """Per channel clip level: given, or the plateau at the top of the stars' peaks."""
    if saturation is not None:
        return np.full(3, float(saturation))
    levels = np.full(3, np.inf)
    for c in range(3):
        values = peaks[:, c]
        values = values[np.isfinite(values)]
        if values.size:
            top = float(values.max())
            # A clipped channel leaves several stars (or pixels) at the very same top value.
            if np.count_nonzero(values >= _PLATEAU * top) >= 3:
                levels[c] = top
    return levels


# --------------------------------------------------------------------------------------------
# Checks


def _rgb(image: Image, what: str) -> Image:
    data = np.asarray(image)
    if data.ndim != 3 or data.shape[2] != 3:
        raise GeometryError(f"{what} needs an RGB image (H, W, 3), got shape {data.shape}")
    return data.astype(np.float32, copy=False)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value)


def _check_options(
    *,
    max_stars: int,
    aperture: float | None,
    saturation: float | None,
    min_snr: float,
    min_stars: int,
) -> None:
    if not isinstance(max_stars, (int, np.integer)) or max_stars < 1:
        raise ConfigError(f"star white balance max_stars {max_stars!r} is invalid; expected >= 1")
    if aperture is not None and (not _finite(aperture) or aperture <= 0):
        raise ConfigError(
            f"star white balance aperture {aperture!r} is invalid; expected a radius > 0 px"
        )
    if saturation is not None and (not _finite(saturation) or saturation <= 0):
        raise ConfigError(
            f"star white balance saturation {saturation!r} is invalid; expected a level > 0"
        )
    if not _finite(min_snr) or min_snr < 0:
        raise ConfigError(f"star white balance min_snr {min_snr!r} is invalid; expected >= 0")
    if not isinstance(min_stars, (int, np.integer)) or min_stars < 1:
        raise ConfigError(f"star white balance min_stars {min_stars!r} is invalid; expected >= 1")


def neutralize_clipped(
    balanced: Image, original: Image, *, start: float = 0.8, end: float = 0.95
) -> Image:
    """Make pixels that were near clipping grey again after a white balance.

    Where a channel was clipped (the core of a saturated star), the channels' ratios say nothing
    about its colour; multiplying them by white-balance factors turns a white core pink or blue,
    and a hue-preserving stretch keeps that false colour. Pixels whose brightest channel (in
    units of that channel's maximum in ``original``) is above ``start`` are blended towards the
    mean of their channels, fully grey from ``end`` on (a smoothstep in between), as raw
    converters' highlight handling does.

    Parameters
    ----------
    balanced : ndarray, (H, W, 3)
        The white-balanced image.
    original : ndarray, (H, W, 3)
        The image before the white balance (its clipping levels are each channel's maximum).
    start, end : float
        Fractions of the clipping level where the blend begins and where it is complete.

    Returns
    -------
    ndarray float32, (H, W, 3)
    """
    if not 0.0 < start < end <= 1.0:
        raise ConfigError(f"neutralize_clipped needs 0 < start < end <= 1, not {start}, {end}")
    out = np.array(balanced, dtype=np.float32, copy=True, order="C")
    data = np.ascontiguousarray(original, dtype=np.float32)
    if out.shape != data.shape or out.ndim != 3 or out.shape[2] != 3:
        raise GeometryError(
            f"neutralize_clipped needs two (H, W, 3) images of one shape, not {out.shape} "
            f"and {data.shape}"
        )
    levels = _channel_maxima(data.reshape(-1, 3))
    if not np.all(levels > 0):
        return out
    _grey_near_clip(out.reshape(-1, 3), data.reshape(-1, 3), levels, start, end)
    return out


@numba.njit(cache=True, nogil=True)
def _channel_maxima(pixels):  # pragma: no cover - compiled
    # One pass over the interleaved channels; numpy's strided max takes 10x longer at 24 MP.
    top = np.full(3, -np.inf, dtype=np.float32)
    for p in range(pixels.shape[0]):
        for c in range(3):
            value = pixels[p, c]
            if value > top[c]:  # NaN compares False
                top[c] = value
    return top


@numba.njit(parallel=True, cache=True, nogil=True)
def _grey_near_clip(out, original, levels, start, end):  # pragma: no cover - compiled
    span = end - start
    for p in numba.prange(out.shape[0]):
        relative = max(
            original[p, 0] / levels[0], original[p, 1] / levels[1], original[p, 2] / levels[2]
        )
        if relative > start:
            t = min((relative - start) / span, 1.0)
            weight = t * t * (3.0 - 2.0 * t)
            grey = (out[p, 0] + out[p, 1] + out[p, 2]) / 3.0
            for c in range(3):
                out[p, c] += weight * (grey - out[p, c])


def smooth_star_colour(image: Image, mask: Image, *, sigma: float = 1.5) -> Image:
    """Give each star one colour: the flux-weighted colour of its neighbourhood.

    A star's light falls on a few pixels, and the colour of each pixel alone is noisy; in
    saturated cores, debayered from a clipped mosaic, it is garbage (pink and green speckles
    after a stretch). Inside ``mask`` every pixel keeps its brightness (the mean of its channels)
    but takes the colour ratios of its Gaussian neighbourhood, ``blur(x_c) / blur(mean(x))``;
    outside the mask nothing changes.

    Parameters
    ----------
    image : ndarray, (H, W, 3)
        Linear RGB data with the sky subtracted or neutral.
    mask : ndarray float32, (H, W)
        Star mask in [0, 1] (:func:`skystack.enhance.stars.star_mask`).
    sigma : float
        Gaussian neighbourhood (px).

    Returns
    -------
    ndarray float32, (H, W, 3)
    """
    import cv2

    data = np.asarray(image, dtype=np.float32)
    weight = np.asarray(mask, dtype=np.float32)
    if data.ndim != 3 or data.shape[2] != 3 or weight.shape != data.shape[:2]:
        raise GeometryError(
            f"smooth_star_colour needs an (H, W, 3) image and an (H, W) mask, not {data.shape} "
            f"and {weight.shape}"
        )
    if not sigma > 0:
        raise ConfigError(f"smooth_star_colour sigma must be positive, not {sigma!r}")
    out = np.ascontiguousarray(data).copy()
    inside = np.flatnonzero(weight.reshape(-1) > 0)
    if inside.size == 0:
        return out
    # The blurs run on the whole image (threaded OpenCV); the per-pixel work only on the
    # masked pixels, a few per cent of a frame.
    positive = np.clip(out, 0.0, None)
    level = luminance(positive)
    blurred = cv2.GaussianBlur(positive, (0, 0), sigma).reshape(-1, 3)[inside]
    blurred_level = cv2.GaussianBlur(level, (0, 0), sigma).reshape(-1)[inside]
    pixels = out.reshape(-1, 3)
    original = pixels[inside]
    here = level.reshape(-1)[inside][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        recoloured = blurred / blurred_level[:, None] * here
    recoloured = np.where(np.isfinite(recoloured), recoloured, original)
    w = weight.reshape(-1)[inside][:, None]
    pixels[inside] = original + w * (recoloured - original)
    return out


def desaturate_highlights(image: Image, *, start: float = 0.5, end: float = 0.95) -> Image:
    """Roll the colour of the brightest parts of a stretched picture off towards white.

    A hue-preserving stretch scales a bright star's channels together until the largest
    reaches 1, so star cores come out as saturated discs of colour, never white -- unlike any
    photograph. Pixels whose brightness (the mean of their channels) lies above ``start`` are
    moved towards their brightest channel's level, fully white-balanced at ``end`` (a
    smoothstep in between). The hue angle does not change, only the saturation falls, and the
    brightness never decreases.

    Parameters
    ----------
    image : ndarray, (H, W, 3)
        A stretched picture in [0, 1].
    start, end : float
        Brightness where the roll-off begins and where it is complete.

    Returns
    -------
    ndarray float32, (H, W, 3)
    """
    if not 0.0 <= start < end <= 1.0:
        raise ConfigError(f"desaturate_highlights needs 0 <= start < end <= 1, not {start}, {end}")
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 3 or data.shape[2] != 3:
        raise GeometryError(f"desaturate_highlights needs an (H, W, 3) image, not {data.shape}")
    out = np.ascontiguousarray(data).copy()
    _roll_off_highlights(out.reshape(-1, 3), np.float32(start), np.float32(end))
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _roll_off_highlights(pixels, start, end):  # pragma: no cover - compiled
    span = end - start
    for p in numba.prange(pixels.shape[0]):
        mean = (pixels[p, 0] + pixels[p, 1] + pixels[p, 2]) / 3.0
        if mean > start:
            t = min((mean - start) / span, 1.0)
            weight = t * t * (3.0 - 2.0 * t)
            top = max(pixels[p, 0], pixels[p, 1], pixels[p, 2])
            for c in range(3):
                pixels[p, c] += weight * (top - pixels[p, c])
