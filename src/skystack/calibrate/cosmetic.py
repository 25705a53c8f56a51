"""Cosmetic correction: hot, cold and outlier pixels, bad-pixel maps and cosmic rays.

Every detector compares a pixel with its **same-colour neighbours**: the 8 pixels at distance 1
(row, column and diagonals) of a mono image, or the 8 pixels at distance 2 of an undebayered
Bayer mosaic, where every pixel two rows or columns away has the same colour filter for all
four patterns. The comparison is ``excess = value - median(neighbours)``, which is exact on any
locally linear background (the neighbours are symmetric about the pixel), so smooth structure
-- sky gradients, vignetting, dust shadows, amp glow -- is not flagged. The excess is judged
against a *local* noise σ per colour plane, from second differences (a robust median
in 32 x 32 blocks, refined by a winsorised mean in a 15 x 15 sliding window), so brighter and
noisier regions (amp glow with its shot noise, a galaxy core) need a larger excess. At the frame
border, where neighbours are missing and a steep gradient would leave the median one-sided, a
flagged pixel must also stand out from the linear extrapolation of the pixels inside the frame.

Detection first selects candidates with cheap full-frame operations (the pixel against the mean
of each opposite pair of neighbours in 4 directions) and then evaluates the exact tests only at
those candidates, so a 24-megapixel frame takes 1-2 seconds (most of it the noise estimate).

Functions
---------
:func:`find_hot_pixels`
    hot pixels in a master dark (bias removed);
:func:`find_cold_pixels`
    dead and cold pixels in a master flat;
:func:`find_outlier_pixels`
    hot and cold pixels in a light itself (cameras without darks), sparing stars;
:func:`repair_pixels`
    replace masked pixels by the median of their valid same-colour neighbours;
:func:`bad_pixel_mask_from_array`, :func:`bad_pixel_mask_from_points`
    bad-pixel masks from an image or a list of ``(x, y)`` pixels;
:func:`remove_cosmic_rays`
    L.A.Cosmic through ``astroscrappy`` [1]_ for mono data.

All images are float data in full-scale units (see :mod:`skystack._typing`); masks are bool
with True meaning bad.

References
----------
.. [1] P. G. van Dokkum, "Cosmic-Ray Rejection by Laplacian Edge Detection", PASP 113, 1420
   (2001).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from skystack._typing import CFA_PATTERNS, CfaPattern, Image, Mask
from skystack.detect.background import MAD_TO_SIGMA, estimate_noise
from skystack.errors import ConfigError, GeometryError

__all__ = [
    "find_hot_pixels",
    "find_cold_pixels",
    "find_outlier_pixels",
    "repair_pixels",
    "bad_pixel_mask_from_array",
    "bad_pixel_mask_from_points",
    "remove_cosmic_rays",
    "FULL_SCALE_ADU",
]

FULL_SCALE_ADU = 65535.0
"""16-bit ADU per full-scale unit: the unit of ``gain`` in :func:`remove_cosmic_rays`."""

_RING = np.array(
    [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)], dtype=np.intp
)
"""The 8 unit offsets ``(dy, dx)`` around a pixel."""
_AXES = ((0, 1), (1, 0), (1, 1), (1, -1))
"""One offset per opposite pair of neighbours."""
_BLOCK = 32
"""Side (pixels of one colour plane) of the blocks of the coarse, robust noise estimate."""
_WINDOW = 15
"""Side (pixels of one colour plane) of the sliding window of the fine noise estimate."""
_WINSOR = 3.0
"""Second differences are winsorised at this many σ for the fine noise estimate..."""
_WINSOR_MEAN = 0.7971
"""... where the mean of ``min(|d|, 3σ)`` is 0.7971 σ for normal ``d``."""
_STRIP = 256
"""Rows per strip of the full-frame passes (keeps temporaries small and in cache)."""
_RESIDUAL_SCALE = 1.08
"""σ of ``pixel - median of 8 neighbours`` per σ of one pixel (var of the median of 8: 0.168)."""
_EXTRAPOLATION_SCALE = 1.6
"""σ of ``pixel - median of 5 linear extrapolations 2 v1 - v2`` per σ of one pixel."""
_PAIR_SCALE = math.sqrt(1.5)
"""σ of ``pixel - mean of two neighbours`` per σ of one pixel."""
_PREFILTER = 0.5
"""Candidates need at least half the final excess against 3 of the 4 neighbour pairs."""
_STAR_RING_FRACTION = 0.15
"""Fraction of a spike's excess its adjacent pixels must share for it to be a star (see
:func:`_extended`); stars with a FWHM of 1.8 px share 20-40%, single-pixel defects 0."""
_STAR_NOISE_MARGIN = 1.0
"""Noise allowance (in σ) of the star test, in favour of the star."""
_CR_MARGIN = 5
"""Mirrored margin (px) added around a frame for L.A.Cosmic, which skips the outer pixels."""

IntArray = npt.NDArray[np.intp]


# --------------------------------------------------------------------------- helpers


def _step(cfa: CfaPattern | None) -> int:
    """Distance between same-colour neighbours: 1 for mono, 2 for a Bayer mosaic."""
    if cfa is None:
        return 1
    if cfa not in CFA_PATTERNS:
        raise ConfigError(f"unknown CFA pattern {cfa!r}; expected None or one of {CFA_PATTERNS}")
    return 2


def _image_2d(image: npt.ArrayLike, what: str) -> Image:
    data = np.asarray(image)
    if data.ndim != 2:
        raise GeometryError(
            f"{what} must be a 2-D (H, W) mono image or Bayer mosaic, got shape {data.shape}"
        )
    return data.astype(np.float32, copy=False)


def _check_positive(value: float, name: str) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{name} = {value!r} is invalid; expected a positive number")
    return float(value)


def _parities(step: int) -> list[tuple[slice, slice]]:
    """Slices of the colour planes: the whole image for mono, the 4 Bayer sites for a mosaic."""
    if step == 1:
        return [(slice(None), slice(None))]
    return [(slice(py, None, 2), slice(px, None, 2)) for py in (0, 1) for px in (0, 1)]


def _take(data: Image, yy: IntArray, xx: IntArray, invalid: Mask | None = None) -> Image:
    """``data[yy, xx]`` for index arrays of any shape; NaN outside the image or where invalid."""
    height, width = data.shape
    inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
    yc = np.clip(yy, 0, height - 1)
    xc = np.clip(xx, 0, width - 1)
    values = data[yc, xc].astype(np.float32, copy=False)
    bad = ~inside | ~np.isfinite(values)
    if invalid is not None:
        bad |= invalid[yc, xc]
    return np.where(bad, np.float32(np.nan), values)


def _ring(data: Image, ys: IntArray, xs: IntArray, step: int) -> Image:
    """The 8 neighbours at distance ``step`` of each pixel ``(ys, xs)``, ``(n, 8)``."""
    return _take(data, ys[:, None] + step * _RING[:, 0], xs[:, None] + step * _RING[:, 1])


def _nanmedian_last(values: Image) -> Image:
    """Median over the last axis ignoring NaN (NaN where all are NaN); vectorised."""
    ordered = np.sort(values, axis=-1)  # NaN sorts last
    count = np.count_nonzero(~np.isnan(values), axis=-1)
    lo = np.maximum((count - 1) // 2, 0)[..., None]
    hi = np.maximum(count // 2, 0)[..., None]
    low = np.take_along_axis(ordered, lo, axis=-1)[..., 0]
    high = np.take_along_axis(ordered, hi, axis=-1)[..., 0]
    return (0.5 * (low + high)).astype(np.float32)


def _rows(height: int, strip: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Strips ``(r0, r1, a0, a1)``: rows ``r0:r1`` computed from rows ``a0:a1`` (with a halo)."""
    out = []
    for r0 in range(0, height, strip):
        r1 = min(height, r0 + strip)
        out.append((r0, r1, max(0, r0 - halo), min(height, r1 + halo)))
    return out


def _plane_noise(plane: Image) -> Image:
    """Local per-pixel noise σ of one colour plane (same-colour pixels 1 apart).

    From the second differences ``d = v(x) - (v(x - 1) + v(x + 1)) / 2`` along rows and
    columns, which cancel any locally linear signal and have σ√1.5 for independent noise: first
    the median of ``|d|`` along rows in blocks (robust, coarse, from every 8th row), then twice
    the local mean of ``|d|`` winsorised at 3σ in a sliding window (follows noise that changes
    over a few tens of pixels, such as the shot noise of amp glow, to about ±10%, while hot
    pixels and star cores move it by a few percent only). Computed in strips of rows, so
    temporaries stay small.
    """
    height, width = plane.shape
    rows = max(1, (height * width) // 500_000)
    overall = estimate_noise(plane[::rows]) if width >= 2 else float("nan")
    if width < 3 or not (math.isfinite(overall) and overall > 0):
        return np.full(plane.shape, overall, dtype=np.float32)
    floor = np.float32(0.25 * overall * _PAIR_SCALE)

    # Coarse: median |d| in blocks of _BLOCK x _BLOCK pixels, from every 8th row.
    inner = width - 2
    block = max(1, min(_BLOCK, height, inner))
    every = max(1, block // 4)
    sample = plane[::every]
    second = np.abs(sample[:, 1:-1] - np.float32(0.5) * (sample[:, :-2] + sample[:, 2:]))
    per_block = block // every
    nby, nbx = max(1, height // block), max(1, inner // block)
    nby = min(nby, max(1, second.shape[0] // per_block))
    tiles = (
        second[: nby * per_block, : nbx * block]
        .reshape(nby, per_block, nbx, block)
        .transpose(0, 2, 1, 3)
        .reshape(nby, nbx, per_block * block)
    )
    if not np.isfinite(tiles).all():
        tiles = np.where(np.isfinite(tiles), tiles, np.inf)  # an all-missing block gives inf
    coarse = np.median(tiles, axis=-1)
    coarse = coarse * np.float32(MAD_TO_SIGMA * _WINSOR)
    coarse = np.where(np.isfinite(coarse), np.maximum(coarse, _WINSOR * floor), _WINSOR * floor)
    coarse = coarse.astype(np.float32)
    block_of_row = np.minimum(np.arange(height) // block, nby - 1)
    finite = bool(np.isfinite(plane).all())

    out = np.empty(plane.shape, dtype=np.float32)
    halo = 2 * (_WINDOW // 2)
    renorm = np.float32(0.5 * _WINSOR / _WINSOR_MEAN)  # two differences per pixel
    winsor_floor = np.float32(_WINSOR) * floor
    for r0, r1, a0, a1 in _rows(height, _STRIP, halo):
        seg = plane[a0:a1]
        across = seg[:, :-2] + seg[:, 2:]  # |d| along rows
        across *= np.float32(-0.5)
        across += seg[:, 1:-1]
        np.abs(across, out=across)
        down = np.empty_like(across)  # |d| along columns (the first and last row: along rows)
        np.add(seg[:-2, 1:-1], seg[2:, 1:-1], out=down[1:-1])
        down[1:-1] *= np.float32(-0.5)
        down[1:-1] += seg[1:-1, 1:-1]
        np.abs(down, out=down)
        down[0], down[-1] = across[0], across[-1]
        if not finite:
            np.nan_to_num(across, copy=False, nan=np.inf, posinf=np.inf)  # winsorised below
            np.nan_to_num(down, copy=False, nan=np.inf, posinf=np.inf)
        clip = np.repeat(coarse[block_of_row[a0:a1]], block, axis=1)
        if clip.shape[1] < inner:
            clip = np.pad(clip, ((0, 0), (0, inner - clip.shape[1])), mode="edge")
        total = np.empty_like(clip)
        for _ in range(2):
            # clip holds 3σ of d: winsorise, average, rescale to 3σ again.
            np.minimum(across, clip, out=total)
            np.minimum(down, clip, out=clip)
            clip += total
            clip = cv2.blur(clip, (_WINDOW, _WINDOW), borderType=cv2.BORDER_REFLECT)
            clip *= renorm
            np.maximum(clip, winsor_floor, out=clip)
        np.multiply(
            clip[r0 - a0 : r1 - a0],
            np.float32(1.0 / (_WINSOR * _PAIR_SCALE)),
            out=out[r0:r1, 1:-1],
        )
    out[:, 0] = out[:, 1]
    out[:, -1] = out[:, -2]
    return out


def _noise_map(data: Image, step: int) -> Image:
    """Local per-pixel noise σ, per colour plane, as an image the size of ``data``."""
    if step == 1:
        return _plane_noise(data)
    out = np.empty(data.shape, dtype=np.float32)
    for sy, sx in _parities(step):
        out[sy, sx] = _plane_noise(np.ascontiguousarray(data[sy, sx]))
    return out


def _three_of_four(hits: list[Mask]) -> Mask:
    a, b, c, d = hits
    return (a & b & (c | d)) | (c & d & (a | b))


def _prefilter(
    data: Image,
    step: int,
    noise: Image,
    factor: float,
    *,
    high: bool,
    low: bool,
    relative: float = 0.0,
) -> tuple[tuple[IntArray, IntArray], tuple[IntArray, IntArray]]:
    """Candidate high and low outliers: beyond ``factor x noise`` against 3 of 4 neighbour pairs.

    A cheap full-frame pass in strips of rows. The threshold is in units of the pixel minus the
    mean of an opposite pair of same-colour neighbours; with ``relative`` > 0 a pixel below
    ``relative`` x the pair mean counts as low whatever the noise.
    """
    height, width = data.shape
    none: tuple[IntArray, IntArray] = (np.zeros(0, np.intp), np.zeros(0, np.intp))
    if height <= step or width <= step:
        every = np.nonzero(np.ones(data.shape, dtype=bool))
        return (every if high else none), (every if low else none)
    s = step
    found_high: list[tuple[IntArray, IntArray]] = []
    found_low: list[tuple[IntArray, IntArray]] = []
    for r0, r1, a0, a1 in _rows(height, _STRIP, s):
        top, bottom = s - (r0 - a0), s - (a1 - r1)
        padded = np.pad(data[a0:a1], ((top, bottom), (s, s)), mode="reflect")
        n = r1 - r0
        centre = data[r0:r1]
        twice = centre + centre
        margin = noise[r0:r1] * np.float32(2.0 * factor)
        upper = twice - margin  # high: forward + backward < 2 v - 2 t
        lower = np.add(twice, margin, out=margin)  # low: forward + backward > 2 v + 2 t
        hits_high: list[Mask] = []
        hits_low: list[Mask] = []
        pair = np.empty_like(centre)
        for dy, dx in _AXES:
            forward = padded[s + dy * s : s + dy * s + n, s + dx * s : s + dx * s + width]
            backward = padded[s - dy * s : s - dy * s + n, s - dx * s : s - dx * s + width]
            np.add(forward, backward, out=pair)
            if high:
                hits_high.append(pair < upper)
            if low:
                hit = pair > lower
                if relative > 0:
                    pair *= np.float32(relative)
                    hit |= twice < pair
                hits_low.append(hit)
        if high:
            ys, xs = np.nonzero(_three_of_four(hits_high))
            found_high.append((ys + r0, xs))
        if low:
            ys, xs = np.nonzero(_three_of_four(hits_low))
            found_low.append((ys + r0, xs))

    def join(parts: list[tuple[IntArray, IntArray]]) -> tuple[IntArray, IntArray]:
        if not parts:
            return none
        return (
            np.concatenate([p[0] for p in parts]).astype(np.intp),
            np.concatenate([p[1] for p in parts]).astype(np.intp),
        )

    return join(found_high), join(found_low)


def _mirror(index: IntArray, size: int) -> IntArray:
    """Indices mirrored into ``0..size-1`` about the edge pixels (numpy's "reflect" mode)."""
    index = np.abs(index)
    index = np.where(index >= size, 2 * (size - 1) - index, index)
    return np.clip(index, 0, size - 1)


def _predict(data: Image, ys: IntArray, xs: IntArray, step: int) -> Image:
    """Robust prediction of pixels from their same-colour neighbours at distance ``step``.

    The median of the 8 neighbours, exact on a linear background; closer than ``step`` to the
    border, where neighbours are missing and the median would be one-sided, the median of the
    linear extrapolations ``2 v(p + d) - v(p + 2d)`` from inside the frame instead.
    """
    predicted = _nanmedian_last(_ring(data, ys, xs, step))
    height, width = data.shape
    near = np.flatnonzero((ys < step) | (ys >= height - step) | (xs < step) | (xs >= width - step))
    if near.size:
        by, bx = ys[near], xs[near]
        extrapolated = _nanmedian_last(
            2.0 * _ring(data, by, bx, step) - _ring(data, by, bx, 2 * step)
        )
        predicted[near] = np.where(np.isnan(extrapolated), predicted[near], extrapolated)
    return predicted


def _border_confirms(
    data: Image, ys: IntArray, xs: IntArray, step: int, limit: Image, *, sign: int
) -> Mask:
    """Whether candidates also stand out from the linear extrapolation of the inner pixels.

    Only pixels closer than ``step`` to the border have neighbours missing; for them the
    median of the ``2 v(p + d) - v(p + 2d)`` over the directions ``d`` pointing inside must
    differ by more than ``limit`` x the extrapolation's noise factor. Others pass.
    """
    height, width = data.shape
    ok = np.ones(ys.shape, dtype=bool)
    near = np.flatnonzero((ys < step) | (ys >= height - step) | (xs < step) | (xs >= width - step))
    if near.size == 0:
        return ok
    by, bx = ys[near], xs[near]
    first = _ring(data, by, bx, step)
    second = _ring(data, by, bx, 2 * step)
    predicted = _nanmedian_last(2.0 * first - second)
    excess = sign * (data[by, bx] - predicted)
    scaled = limit[near] * np.float32(_EXTRAPOLATION_SCALE / _RESIDUAL_SCALE)
    ok[near] = np.isnan(predicted) | (excess > scaled)
    return ok


def _extended(
    data: Image,
    ys: IntArray,
    xs: IntArray,
    noise: Image,
    *,
    sign: int,
    exclude: Mask | None = None,
    margin: float = _STAR_NOISE_MARGIN,
) -> Mask:
    """Whether spikes (``sign`` 1) or dips (-1) are shared by the adjacent pixels: real structure.

    A star's point-spread function with a FWHM of 1.8 px or more raises its adjacent pixels
    (distance 1, any colour) by at least ~20% of the peak's excess in mono and Bayer data; a hot
    pixel or cosmic-ray hit raises none of them, or one or two. Each adjacent pixel's excess is
    measured against the median of its own same-colour neighbours at distance 2 (the same colour
    in mono and every Bayer pattern), the centre's likewise; near the border on the mirrored
    frame. ``S``, the mean of the 2nd to 5th highest adjacent excesses, ignores one or two
    other bad pixels next to the centre; the pixel is structure when ``S > f E - k σ`` with
    ``E`` the centre's excess, ``f`` = :data:`_STAR_RING_FRACTION`, ``k`` = ``margin`` and σ
    the local noise. The default :data:`_STAR_NOISE_MARGIN` gives the benefit of the doubt to
    the star, so that a faint star is not taken for a defect because of noise (a faint defect
    is kept instead). For dips, the same on the negated image: a pixel between two stars is
    lower than its same-colour neighbours that lie on the stars, but so are its adjacent
    pixels. Adjacent pixels where ``exclude`` is True (other pixels of the same defect) are
    left out; with fewer than two adjacent pixels left there is no evidence of structure.
    """
    sigma = noise[ys, xs]
    signed = data if sign > 0 else -data
    height, width = data.shape

    # Near the border the frame is mirrored (as numpy's "reflect" padding): a star cut by the
    # edge becomes whole again, and the edge pixel itself is not repeated, so a defect on it
    # stays single.
    def take(yy: IntArray, xx: IntArray) -> Image:
        return signed[_mirror(yy, height), _mirror(xx, width)]

    ring_y, ring_x = 2 * _RING[:, 0], 2 * _RING[:, 1]
    centre = signed[ys, xs] - _nanmedian_last(take(ys[:, None] + ring_y, xs[:, None] + ring_x))
    ry = ys[:, None] + _RING[:, 0]
    rx = xs[:, None] + _RING[:, 1]
    around = take(ry[..., None] + ring_y, rx[..., None] + ring_x)
    raised = take(ry, rx) - _nanmedian_last(around)
    if exclude is not None:
        raised[exclude[_mirror(ry, height), _mirror(rx, width)]] = np.nan
    # Descending, excluded pixels (NaN) last; average ranks 2-5 of the valid ones.
    valid = np.count_nonzero(~np.isnan(raised), axis=-1)
    ordered = np.sort(np.where(np.isnan(raised), -np.inf, raised), axis=-1)[:, ::-1]
    rank = np.arange(8)[None, :]
    use = (rank >= 1) & (rank < np.minimum(5, valid)[:, None])
    count = use.sum(axis=-1)
    total = np.where(use, ordered, 0.0).sum(axis=-1)
    shared = np.where(count > 0, total / np.maximum(count, 1), -np.inf)  # no evidence
    return shared > _STAR_RING_FRACTION * centre - margin * sigma


def _to_mask(shape: tuple[int, ...], ys: IntArray, xs: IntArray, keep: Mask) -> Mask:
    mask = np.zeros(shape, dtype=bool)
    mask[ys[keep], xs[keep]] = True
    return mask


# --------------------------------------------------------------------------- detectors


def find_hot_pixels(
    master_dark: Image, *, sigma: float = 5.0, cfa: CfaPattern | None = None
) -> Mask:
    """Find hot pixels in a master dark.

    A pixel is hot when its dark signal is above the robust level of its surroundings, the
    median of its 8 same-colour neighbours, by more than ``sigma`` times the local noise of
    that difference. Smooth structure such as amp glow (a bright corner of the dark) is not
    flagged however bright it is, and hot pixels inside it are still found (against the glow's
    larger shot noise). A whole-frame level (``median + sigma x MAD``) is deliberately not
    used: where glow covers much of the frame it hides the hot pixels of the darker parts.

    Parameters
    ----------
    master_dark : ndarray, (H, W)
        Master dark with the bias removed (or a dark-flat, or a single dark), full-scale units.
    sigma : float
        Detection threshold in standard deviations.
    cfa : {"RGGB", "BGGR", "GRBG", "GBRG"} or None
        Bayer pattern of an undebayered mosaic (same-colour neighbours 2 px apart); None for mono.

    Returns
    -------
    ndarray of bool, (H, W)
        True at hot pixels.

    Raises
    ------
    GeometryError
        If the dark is not 2-D.
    ConfigError
        If ``sigma`` is not positive or ``cfa`` is unknown.
    """
    data = _image_2d(master_dark, "master_dark")
    sigma = _check_positive(sigma, "sigma")
    step = _step(cfa)
    noise = _noise_map(data, step)
    (ys, xs), _ = _prefilter(
        data, step, noise, _PREFILTER * _PAIR_SCALE * sigma, high=True, low=False
    )
    limit = np.float32(sigma * _RESIDUAL_SCALE) * noise[ys, xs]
    excess = data[ys, xs] - _nanmedian_last(_ring(data, ys, xs, step))
    keep = excess > limit
    keep &= _border_confirms(data, ys, xs, step, limit, sign=1)
    return _to_mask(data.shape, ys, xs, keep)


def find_cold_pixels(
    image: Image,
    *,
    sigma: float = 5.0,
    cfa: CfaPattern | None = None,
    relative: float = 0.5,
) -> Mask:
    """Find dead and cold pixels in a master flat.

    A pixel is cold when it is below ``relative`` x the median of its 8 same-colour neighbours,
    or below that median by more than ``sigma`` times the local noise of the difference.
    Vignetting and dust shadows are smooth and are not flagged.

    Parameters
    ----------
    image : ndarray, (H, W)
        A master flat (any normalisation; its level must be positive), full-scale units.
    sigma : float
        Threshold in standard deviations on the low side.
    cfa : {"RGGB", "BGGR", "GRBG", "GBRG"} or None
        Bayer pattern of an undebayered mosaic; None for mono.
    relative : float
        Fraction of the local level below which a pixel is cold whatever the noise, in
        ``[0, 1)``; 0 turns this test off.

    Returns
    -------
    ndarray of bool, (H, W)
        True at cold pixels.
    """
    data = _image_2d(image, "image")
    sigma = _check_positive(sigma, "sigma")
    if not (math.isfinite(relative) and 0.0 <= relative < 1.0):
        raise ConfigError(f"relative = {relative!r} is invalid; expected a fraction in [0, 1)")
    step = _step(cfa)
    noise = _noise_map(data, step)
    _, (ys, xs) = _prefilter(
        data,
        step,
        noise,
        _PREFILTER * _PAIR_SCALE * sigma,
        high=False,
        low=True,
        relative=relative,
    )
    limit = np.float32(sigma * _RESIDUAL_SCALE) * noise[ys, xs]
    values = data[ys, xs]
    local = _nanmedian_last(_ring(data, ys, xs, step))
    significant = (local - values > limit) & _border_confirms(data, ys, xs, step, limit, sign=-1)
    fraction = (local > 0) & (values < np.float32(relative) * local) if relative > 0 else False
    return _to_mask(data.shape, ys, xs, significant | fraction)


def find_outlier_pixels(light: Image, *, sigma: float = 5.0, cfa: CfaPattern | None = None) -> Mask:
    """Find hot and cold pixels (and cosmic-ray hits) in a light frame itself.

    For cameras without darks. A pixel is an outlier when it differs from the median of its 8
    same-colour neighbours by more than ``sigma`` times the local noise of that difference. A
    high one is kept only if it is a single-pixel spike: a star's point-spread function (FWHM of
    1.5 px or more) also raises the adjacent pixels, a hot pixel does not. Star cores of stars
    with a FWHM of 1.8 px or more are left alone, in mono and Bayer data, as are saturated cores;
    when noise makes a faint spike ambiguous, the star gets the benefit of the doubt, so hot
    pixels below ~15σ are only partly found (a master dark finds them all). A low one must also
    be below all but one of its neighbours and not shared by its adjacent pixels, so a pixel
    between two stars, or in a star's wing at the frame edge, is not taken for a cold pixel.

    Parameters
    ----------
    light : ndarray, (H, W)
        A light frame (raw or calibrated; the sky background may be removed), full-scale units.
    sigma : float
        Threshold in standard deviations.
    cfa : {"RGGB", "BGGR", "GRBG", "GBRG"} or None
        Bayer pattern of an undebayered mosaic; None for mono.

    Returns
    -------
    ndarray of bool, (H, W)
        True at outlier pixels.
    """
    data = _image_2d(light, "light")
    sigma = _check_positive(sigma, "sigma")
    step = _step(cfa)
    noise = _noise_map(data, step)
    (hy, hx), (ly, lx) = _prefilter(
        data, step, noise, _PREFILTER * _PAIR_SCALE * sigma, high=True, low=True
    )
    factor = np.float32(sigma * _RESIDUAL_SCALE)
    mask = np.zeros(data.shape, dtype=bool)
    if hy.size:
        excess = data[hy, hx] - _nanmedian_last(_ring(data, hy, hx, step))
        limit = factor * noise[hy, hx]
        keep = excess > limit
        keep &= _border_confirms(data, hy, hx, step, limit, sign=1)
        spikes = np.flatnonzero(keep)
        keep[spikes] = ~_extended(data, hy[spikes], hx[spikes], noise, sign=1)
        mask[hy[keep], hx[keep]] = True
    if ly.size:
        around = _ring(data, ly, lx, step)
        values = data[ly, lx]
        limit = factor * noise[ly, lx]
        keep = _nanmedian_last(around) - values > limit
        # A defect is below (nearly) all of its neighbours; a pixel in a star's wing at the
        # border, or between two stars, is below their median but not below the lowest ones.
        keep &= values < np.sort(np.where(np.isnan(around), np.inf, around), axis=-1)[:, 1]
        keep &= _border_confirms(data, ly, lx, step, limit, sign=-1)
        dips = np.flatnonzero(keep)
        # Nothing in the sky makes single-pixel dips: the doubt goes to the defect here.
        keep[dips] = ~_extended(
            data, ly[dips], lx[dips], noise, sign=-1, margin=-_STAR_NOISE_MARGIN
        )
        mask[ly[keep], lx[keep]] = True
    return mask


# --------------------------------------------------------------------------- repair


def _repair_plane(plane: Image, mask: Mask, step: int) -> None:
    """Repair ``plane`` in place (it is the caller's own copy)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return
    invalid = mask.copy()  # non-finite neighbours are left out by _take
    dy, dx = step * _RING[:, 0], step * _RING[:, 1]
    while ys.size:
        values = _take(plane, ys[:, None] + dy, xs[:, None] + dx, invalid)
        median = _nanmedian_last(values)
        done = ~np.isnan(median)
        if not done.any():
            break
        plane[ys[done], xs[done]] = median[done]
        invalid[ys[done], xs[done]] = False
        ys, xs = ys[~done], xs[~done]
    plane[ys, xs] = np.nan


def repair_pixels(image: Image, mask: Mask, *, cfa: CfaPattern | None = None) -> Image:
    """Replace masked pixels with the median of their valid same-colour neighbours.

    The neighbours are the 8 pixels at distance 1 (mono, or each channel of colour data) or 2
    (Bayer mosaic); masked, NaN and out-of-frame ones are left out. Clusters are filled from the
    outside in: each pass repairs the masked pixels with at least one valid neighbour, which then
    count as valid for the next pass. Only the masked pixels are visited, so a 24-megapixel frame
    with 10 000 bad pixels takes a few tens of milliseconds, mostly copying the frame.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        The image; colour images are repaired channel by channel with the same mask.
    mask : ndarray of bool, (H, W)
        True at the pixels to replace.
    cfa : {"RGGB", "BGGR", "GRBG", "GBRG"} or None
        Bayer pattern of a 2-D mosaic; None for mono or colour data.

    Returns
    -------
    ndarray
        A new array (float input keeps its dtype, integer input becomes float32). A masked pixel
        with no valid pixel of its colour anywhere around it (a fully masked plane) becomes NaN.

    Raises
    ------
    GeometryError
        If the mask's shape is not the image's ``(H, W)``, or a colour image is given a ``cfa``.
    """
    data = np.asarray(image)
    bad = np.asarray(mask)
    step = _step(cfa)
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[2] not in (1, 3, 4)):
        raise GeometryError(f"image must be (H, W) or (H, W, 3), got shape {data.shape}")
    if data.ndim == 3 and cfa is not None:
        raise GeometryError(
            f"a Bayer pattern ({cfa}) was given for a colour image of shape {data.shape}; "
            "a mosaic must be 2-D"
        )
    if bad.shape != data.shape[:2]:
        raise GeometryError(
            f"mask shape {bad.shape} does not match the image's (H, W) = {data.shape[:2]}"
        )
    bad = bad.astype(bool, copy=False)
    dtype = data.dtype if np.issubdtype(data.dtype, np.floating) else np.dtype(np.float32)
    out = np.array(data, dtype=dtype, copy=True)
    if out.ndim == 2:
        _repair_plane(out, bad, step)
    else:
        for channel in range(out.shape[2]):
            _repair_plane(out[..., channel], bad, step)
    return out


# --------------------------------------------------------------------------- bad-pixel maps


def bad_pixel_mask_from_array(array: npt.ArrayLike) -> Mask:
    """A bad-pixel mask from an image of the sensor: nonzero (and NaN) means bad.

    Parameters
    ----------
    array : array_like, (H, W)
        For example a bad-pixel map read from a FITS or TIFF file.

    Returns
    -------
    ndarray of bool, (H, W)
        A new mask.
    """
    data = np.asarray(array)
    if data.ndim != 2:
        raise GeometryError(f"a bad-pixel map must be a 2-D (H, W) array, got shape {data.shape}")
    return np.asarray(data != 0, dtype=bool)


def bad_pixel_mask_from_points(
    points_xy: npt.ArrayLike | Sequence[tuple[float, float]], shape: tuple[int, int]
) -> Mask:
    """A bad-pixel mask from a list of ``(x, y)`` pixel positions.

    Parameters
    ----------
    points_xy : array_like, (N, 2)
        Column ``x`` and row ``y`` of each bad pixel, 0-based pixel centres; non-integer values
        are rounded to the nearest pixel. An empty list gives an empty mask.
    shape : (H, W)
        Shape of the frame.

    Returns
    -------
    ndarray of bool, (H, W)

    Raises
    ------
    GeometryError
        If the points are not ``(N, 2)`` or a point lies outside the frame.
    ConfigError
        If a coordinate is not finite or ``shape`` is not two positive sizes.
    """
    if len(shape) != 2 or any(int(size) != size or size <= 0 for size in shape):
        raise ConfigError(f"shape = {shape!r} is invalid; expected (H, W) with positive sizes")
    height, width = int(shape[0]), int(shape[1])
    mask = np.zeros((height, width), dtype=bool)
    points = np.asarray(points_xy, dtype=np.float64)
    if points.size == 0:
        return mask
    if points.ndim == 1 and points.shape[0] == 2:
        points = points[None, :]
    if points.ndim != 2 or points.shape[1] != 2:
        raise GeometryError(f"bad pixels must be (N, 2) (x, y) pairs, got shape {points.shape}")
    if not np.isfinite(points).all():
        row = int(np.flatnonzero(~np.isfinite(points).all(axis=1))[0])
        raise ConfigError(f"bad pixel {row} = {tuple(points[row])} is not a finite (x, y)")
    xs = np.rint(points[:, 0]).astype(np.intp)
    ys = np.rint(points[:, 1]).astype(np.intp)
    outside = (xs < 0) | (xs >= width) | (ys < 0) | (ys >= height)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise GeometryError(
            f"bad pixel (x, y) = ({points[row, 0]:g}, {points[row, 1]:g}) lies outside the "
            f"{width} x {height} frame (x in 0..{width - 1}, y in 0..{height - 1})"
        )
    mask[ys, xs] = True
    return mask


# --------------------------------------------------------------------------- cosmic rays


def remove_cosmic_rays(
    image: Image,
    *,
    sigclip: float = 4.5,
    sigfrac: float = 0.3,
    objlim: float = 10.0,
    gain: float = 1.0,
    readnoise: float = 6.5,
    satlevel: float = 1.0,
    niter: int = 4,
    mask: Mask | None = None,
    cfa: CfaPattern | None = None,
) -> tuple[Image, Mask]:
    """Detect and repair cosmic-ray hits in a mono frame with L.A.Cosmic [1]_.

    Detection is ``astroscrappy.detect_cosmics`` (Laplacian edge detection against a noise
    model, with a fine-structure test that protects stars), run on the frame with a mirrored
    5-pixel margin so that hits on the outer pixels, which it skips, are found too. Groups of
    flagged pixels that are pieces of stars (L.A.Cosmic can flag part of a bright star blended
    with another) are then dropped by the adjacent-pixel test of :func:`find_outlier_pixels`,
    and the hits replaced by :func:`repair_pixels`. The noise model needs the sky background in
    the data (remove bias and dark, not the sky) and the camera's gain and read noise.

    Units: the image is in full-scale units; it is passed to astroscrappy in 16-bit ADU
    (x :data:`FULL_SCALE_ADU`), so ``gain`` is in electrons per 16-bit ADU -- what most
    astronomy cameras report, and what :class:`skystack.sim.SessionConfig` calls ``gain`` --
    ``readnoise`` is in electrons and ``satlevel`` in full-scale units.

    Parameters
    ----------
    image : ndarray, (H, W)
        A mono light frame, full-scale units.
    sigclip : float
        Laplacian-to-noise detection limit.
    sigfrac : float
        Fraction of ``sigclip`` for growing detections into neighbouring pixels.
    objlim : float
        Minimum contrast between the Laplacian and the fine-structure image; higher protects
        stars better. The default is 10 rather than L.A.Cosmic's 5: on simulated frames 5
        cuts the cores of a few stars with a FWHM of 1.8 px (by up to half their flux), 10
        spares them and finds the same cosmic rays.
    gain : float
        Electrons per 16-bit ADU.
    readnoise : float
        Read noise in electrons.
    satlevel : float
        Level (full-scale units) from which pixels are saturated stars, which are protected; for
        calibrated frames pass the calibrated saturation level.
    niter : int
        Detection iterations.
    mask : ndarray of bool, (H, W), optional
        Known bad pixels, ignored by the detection (and not repaired).
    cfa : str or None
        Must be None: on a Bayer mosaic the same-colour pixels are 2 px apart and star cores
        look like single-pixel spikes to the Laplacian, so cosmic-ray removal is for mono data.
        Reject cosmic rays of colour data while stacking (sigma-clipping rejection).

    Returns
    -------
    image : ndarray float32, (H, W)
        A new, repaired image.
    mask : ndarray of bool, (H, W)
        True at the pixels found hit.

    Raises
    ------
    ConfigError
        For a Bayer mosaic, or invalid parameters.

    References
    ----------
    .. [1] P. G. van Dokkum, "Cosmic-Ray Rejection by Laplacian Edge Detection", PASP 113, 1420
       (2001).
    """
    _step(cfa)
    if cfa is not None:
        raise ConfigError(
            f"cosmic-ray removal is for mono data, but a {cfa} Bayer mosaic was given; debayer "
            "first or rely on rejection while stacking"
        )
    data = _image_2d(image, "image")
    for name, value in (("sigclip", sigclip), ("sigfrac", sigfrac), ("objlim", objlim)):
        _check_positive(value, name)
    _check_positive(gain, "gain")
    _check_positive(satlevel, "satlevel")
    if not (math.isfinite(readnoise) and readnoise >= 0):
        raise ConfigError(f"readnoise = {readnoise!r} is invalid; expected electrons >= 0")
    if int(niter) != niter or niter < 1:
        raise ConfigError(f"niter = {niter!r} is invalid; expected a whole number >= 1")
    known = np.zeros(data.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if known.shape != data.shape:
        raise GeometryError(f"mask shape {known.shape} does not match the image's {data.shape}")
    finite = np.isfinite(data)
    ignore = known | ~finite

    import astroscrappy  # a compiled extension, only needed here

    # astroscrappy never flags the outer 2-3 pixels of a frame; a mirrored margin lets it.
    pad = _CR_MARGIN
    counts = np.where(finite, data, np.float32(0.0)) * np.float32(FULL_SCALE_ADU)
    counts = np.pad(counts, pad, mode="reflect")
    crmask, _ = astroscrappy.detect_cosmics(
        np.ascontiguousarray(counts, dtype=np.float32),
        inmask=np.ascontiguousarray(np.pad(ignore, pad, mode="reflect")),
        sigclip=float(sigclip),
        sigfrac=float(sigfrac),
        objlim=float(objlim),
        gain=float(gain),
        readnoise=float(readnoise),
        satlevel=float(satlevel) * FULL_SCALE_ADU,
        niter=int(niter),
        verbose=False,
    )
    crmask = crmask[pad:-pad, pad:-pad]
    hits = np.asarray(crmask, dtype=bool) & ~ignore
    hits = _spare_stars(np.where(finite, data, np.float32(0.0)), hits)
    return repair_pixels(data, hits), hits


def _spare_stars(data: Image, hits: Mask) -> Mask:
    """Unflag the pixels that L.A.Cosmic took from stars.

    L.A.Cosmic's fine-structure test can fail where two bright stars blend, flagging part of
    one, or merge a star's pixel with a nearby hit. Pixels that stand out (by 5σ) and are
    clearly star-like by the test of :func:`_extended` (the benefit of the doubt goes to the
    cosmic ray here) are unflagged, and so are whole 8-connected groups of flagged pixels whose
    brightest pixel, or at least half of those that stand out, are star-like. The flagged
    pixels are left out of the adjacent ones: around a cosmic-ray track the unflagged pixels
    are not raised, around a piece of a star they are. A hit on a star whose excess dwarfs the
    star's profile is still kept.
    """
    ys, xs = np.nonzero(hits)
    if ys.size == 0:
        return hits
    noise = _noise_map(data, 1)
    # Only pixels that stand out are judged (grown neighbours at the noise level are not).
    excess = data[ys, xs] - _predict(data, ys, xs, 2)
    peaks = np.flatnonzero(excess > 5.0 * noise[ys, xs])
    ys, xs, excess = ys[peaks], xs[peaks], excess[peaks]
    star = _extended(data, ys, xs, noise, sign=1, exclude=hits, margin=-_STAR_NOISE_MARGIN)
    if not star.any():
        return hits
    count, labels = cv2.connectedComponents(hits.astype(np.uint8), connectivity=8)
    group = labels[ys, xs]
    peaks = np.bincount(group, minlength=count)
    starry = np.bincount(group[star], minlength=count)
    # The brightest standing-out pixel of each group (groups sorted, brightest first).
    order = np.lexsort((-excess, group))
    first = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    brightest_star = np.zeros(count, dtype=bool)
    brightest_star[group[first]] = star[first]
    stars = np.flatnonzero((2 * starry >= np.maximum(peaks, 1)) & (peaks > 0) | brightest_star)
    kept = hits & ~np.isin(labels, stars)
    kept[ys[star], xs[star]] = False
    return kept
