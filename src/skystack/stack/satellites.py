"""Satellite and aircraft trail masking for small stacks.

With 3-10 frames, per-pixel rejection cannot remove a bright trail reliably: the trail drags
the mean and the spread of its pixels up with it, so a sigma clip keeps it. This module finds
trails as *straight lines of positive residuals* in one frame against the others and masks
them before the pixels are combined:

1. :func:`trail_residual_mask` (per strip of all frames): True where frame ``i`` is brighter
   than the median of the other frames by more than ``sigma`` times the noise of that
   difference.
2. :func:`downsample_mask` (optional): the residual mask at 1/``factor`` resolution, so the
   mask of a whole 24 MP frame takes 1.5 MB.
3. :func:`find_trails` (per frame, on its whole-image mask): a Hough transform [1]_ [2]_ on a
   coarse copy of the mask proposes lines; each is refined on the mask itself by an iteratively
   reweighted fit of the residual pixels near it, and kept only if residual pixels fill a band
   along it far more densely than the bands on either side, over most of its length across
   the frame. Stars (round residuals from seeing changes or slight misregistration), hot
   pixels, cosmic rays and noise give compact or sparse residuals and fail that test.
4. :func:`trail_mask` (per strip): the pixels within ``width / 2`` of each trail line.

References
----------
.. [1] R. O. Duda and P. E. Hart, "Use of the Hough transformation to detect lines and curves
   in pictures", *Communications of the ACM* 15, 11-15 (1972).
.. [2] OpenCV, ``cv2.HoughLines`` (standard Hough transform with accumulator).
.. [3] Siril documentation, "Stacking: rejection" -- why sigma clipping fails on few frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from skystack._typing import Mask

__all__ = [
    "SatelliteTrail",
    "trail_residual_mask",
    "downsample_mask",
    "find_trails",
    "trail_mask",
]

# Variance of the median of m independent unit-variance normal values (m = 1..4), then the
# asymptotic pi / (2 m).
_MEDIAN_VARIANCE = {1: 1.0, 2: 0.5, 3: 0.449, 4: 0.361}

_COARSE_SIZE = 1024  # long side of the grid the Hough transform runs on
_COARSE_FILL = 0.12  # a coarse cell is "on" when this fraction of its mask pixels is True
_HOUGH_THETA = math.pi / 1440.0  # 0.125 degree
_MAX_CANDIDATES = 12
_CHUNK = 16  # full-resolution pixels per chunk along a line when measuring coverage
_MIN_FILL = 0.12  # least fraction of the trail band that must be True, on average
_MIN_CONTRAST = 4.0  # band fill must exceed this many times the flanks' fill
_MIN_COVERAGE = 0.6  # least fraction of the line (within the frame) with the trail present


@dataclass(frozen=True)
class SatelliteTrail:
    """A straight trail across one frame, in the reference grid.

    Attributes
    ----------
    frame : int
        Index of the frame (in the order the caller uses).
    start, end : (x, y)
        Where the trail's line meets the image border, full-resolution reference-grid pixel
        coordinates (0-based pixel centres; the border is ``x = 0``, ``x = W - 1``, ``y = 0``,
        ``y = H - 1``).
    width : float
        Full width of the band masked around the line (px), wings included.
    """

    frame: int
    start: tuple[float, float]
    end: tuple[float, float]
    width: float

    def to_dict(self) -> dict[str, Any]:
        """``{"frame", "start": [x, y], "end": [x, y], "width"}`` with plain numbers (JSON)."""
        return {
            "frame": int(self.frame),
            "start": [float(self.start[0]), float(self.start[1])],
            "end": [float(self.end[0]), float(self.end[1])],
            "width": float(self.width),
        }

    def distance(self, x: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Perpendicular distance (px) of points ``(x, y)`` from the trail's (infinite) line."""
        (x0, y0), (x1, y1) = self.start, self.end
        length = math.hypot(x1 - x0, y1 - y0)
        if length == 0.0:
            return np.hypot(np.asarray(x, float) - x0, np.asarray(y, float) - y0)
        nx, ny = -(y1 - y0) / length, (x1 - x0) / length
        return np.abs((np.asarray(x, float) - x0) * nx + (np.asarray(y, float) - y0) * ny)


# --------------------------------------------------------------------------------------------
# residuals


def _nan_median0(cube: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Median along axis 0 ignoring NaN (NaN where a column has no finite value), no warnings."""
    if cube.shape[0] == 1:
        return cube[0].copy()
    if cube.shape[0] == 2:
        a, b = cube[0], cube[1]
        mean = (a + b) * np.float32(0.5)
        return np.where(np.isnan(a), b, np.where(np.isnan(b), a, mean))
    if cube.shape[0] == 3 and not np.isnan(cube).any():
        a, b, c = cube[0], cube[1], cube[2]
        return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    ordered = np.sort(cube, axis=0)  # NaN sorts last
    count = np.isfinite(cube).sum(axis=0)
    lower = np.clip((count - 1) // 2, 0, None)[None]
    upper = np.clip(count // 2, 0, cube.shape[0] - 1)[None]
    low = np.take_along_axis(ordered, lower, axis=0)[0]
    high = np.take_along_axis(ordered, upper, axis=0)[0]
    median = (low + high) * np.float32(0.5)
    median[count == 0] = np.nan
    return median


def _median_variance(m: int) -> float:
    return _MEDIAN_VARIANCE.get(m, math.pi / (2.0 * max(m, 1)))


def trail_residual_mask(
    strip: npt.ArrayLike,
    *,
    noise: npt.ArrayLike,
    sigma: float = 3.0,
) -> Mask:
    """Where each frame is significantly brighter than the others: candidate trail pixels.

    For frame ``i`` the reference is the median of the other frames; from 5 frames on, the
    median of all frames (the frame's own value moves it by a fraction of the noise and it is
    computed once). A pixel is flagged when::

        value_i - reference > sigma * sqrt(noise_i**2 + var(reference))

    with ``var(reference)`` the variance of a median of the others' noise. For 3 frames the
    reference is the mean of the two others, not their lower value: only *positive* residuals
    are flagged, and a bright outlier in another frame can only raise the reference (hiding,
    never creating, a residual in frame ``i``), while the lower of two values would add a
    bias of +0.56 noise and a 30% wider spread to every residual (3% of sky pixels flagged at
    3 sigma instead of 0.7%).

    Parameters
    ----------
    strip : array_like
        ``(N, rows, W)`` or ``(N, rows, W, C)`` normalised, registered frames (a horizontal
        strip of all of them); NaN marks pixels without data, which are never flagged. Colour
        channels are summed before the comparison (a trail is bright in all of them).
    noise : array_like
        Per-frame background noise sigma, ``(N,)`` or ``(N, C)``, in the strip's units.
    sigma : float
        Threshold in noise sigmas.

    Returns
    -------
    ndarray bool, ``(N, rows, W)``
        True where a frame's value stands out; all False when ``N < 3`` (two frames cannot
        tell which one holds the trail).
    """
    data = np.asarray(strip, dtype=np.float32)
    if data.ndim not in (3, 4):
        raise ValueError(
            "trail_residual_mask needs an (N, rows, W) or (N, rows, W, C) strip, got shape "
            f"{data.shape}"
        )
    n = data.shape[0]
    sig = np.asarray(noise, dtype=np.float64)
    if data.ndim == 4:
        channels = data.shape[3]
        if sig.shape == (n,):
            sig = np.repeat(sig[:, None], channels, axis=1)
        if sig.shape != (n, channels):
            raise ValueError(
                f"trail_residual_mask: noise has shape {sig.shape}; expected ({n},) or "
                f"({n}, {channels}) for a strip of shape {data.shape}"
            )
        data = data.sum(axis=3, dtype=np.float32)
        sig = np.sqrt(np.sum(sig * sig, axis=1))
    elif sig.shape != (n,):
        raise ValueError(
            f"trail_residual_mask: noise has shape {sig.shape}; expected ({n},) for a strip "
            f"of shape {data.shape}"
        )
    if not np.all(np.isfinite(sig) & (sig > 0)):
        raise ValueError(f"trail_residual_mask: noise must be finite and positive, got {sig}")
    out = np.zeros(data.shape, dtype=bool)
    if n < 3:
        return out
    variance = sig * sig
    with np.errstate(invalid="ignore"):
        if n >= 5:
            reference = _nan_median0(data)
            ref_var = _median_variance(n) * float(variance.mean())
            for i in range(n):
                threshold = np.float32(sigma * math.sqrt(variance[i] + ref_var))
                np.greater(data[i] - reference, threshold, out=out[i])
        else:
            for i in range(n):
                others = np.delete(np.arange(n), i)
                reference = _nan_median0(data[others])
                ref_var = _median_variance(n - 1) * float(variance[others].mean())
                threshold = np.float32(sigma * math.sqrt(variance[i] + ref_var))
                np.greater(data[i] - reference, threshold, out=out[i])
    return out


def downsample_mask(mask: npt.ArrayLike, factor: int, *, min_fraction: float = 0.125) -> Mask:
    """A residual mask at ``1 / factor`` resolution, for :func:`find_trails` with ``scale``.

    Each ``factor x factor`` block becomes one pixel, True when at least ``min_fraction`` of
    its pixels are (2 of 16 for ``factor=4``): a faint trail, which flags a third of its
    pixels, survives, while isolated noise pixels (0.1-1% of the sky) do not. Blocks at the
    right and bottom edges may be partial (they count the pixels they have). Strips of rows
    can be reduced one at a time when their heights are multiples of ``factor``.

    Parameters
    ----------
    mask : array_like bool
        ``(..., rows, W)``.
    factor : int
        Reduction factor (1 returns a copy).
    min_fraction : float
        Fraction of a block's pixels that must be True.

    Returns
    -------
    ndarray bool, ``(..., ceil(rows / factor), ceil(W / factor))``
    """
    data = np.asarray(mask, dtype=bool)
    if factor < 1:
        raise ValueError(f"downsample_mask: factor must be at least 1, got {factor}")
    if factor == 1:
        return data.copy()
    rows, width = data.shape[-2:]
    out_rows, out_width = -(-rows // factor), -(-width // factor)
    pad = [(0, 0)] * (data.ndim - 2) + [
        (0, out_rows * factor - rows),
        (0, out_width * factor - width),
    ]
    padded = np.pad(data, pad).view(np.uint8) if (pad[-1][1] or pad[-2][1]) else data.view(np.uint8)
    blocks = padded.reshape(*data.shape[:-2], out_rows, factor, out_width, factor)
    counts = blocks.sum(axis=(-3, -1), dtype=np.uint16)
    # pixels per block, smaller at the right and bottom edges
    block_rows = np.minimum(factor, rows - np.arange(out_rows) * factor)
    block_cols = np.minimum(factor, width - np.arange(out_width) * factor)
    area = block_rows[:, None] * block_cols[None, :]
    return counts >= np.maximum(1, np.ceil(min_fraction * area - 1e-9)).astype(np.uint16)


# --------------------------------------------------------------------------------------------
# line finding


@dataclass
class _Line:
    """A line through ``point`` along unit ``direction`` (working-resolution pixels)."""

    point: npt.NDArray[np.float64]
    direction: npt.NDArray[np.float64]

    @property
    def normal(self) -> npt.NDArray[np.float64]:
        return np.array([-self.direction[1], self.direction[0]])

    def clip(self, width: float, height: float) -> tuple[float, float] | None:
        """Parameters ``t0 < t1`` where the line is inside ``[0, W-1] x [0, H-1]``."""
        t_lo, t_hi = -math.inf, math.inf
        for p, d, hi in (
            (self.point[0], self.direction[0], width - 1.0),
            (self.point[1], self.direction[1], height - 1.0),
        ):
            if abs(d) < 1e-12:
                if not 0.0 <= p <= hi:
                    return None
                continue
            a, b = (0.0 - p) / d, (hi - p) / d
            t_lo, t_hi = max(t_lo, min(a, b)), min(t_hi, max(a, b))
        if not t_hi > t_lo:
            return None
        return t_lo, t_hi


def _sample_band(
    mask_u8: npt.NDArray[np.uint8], line: _Line, offsets: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_], float] | None:
    """The mask along ``line``: ``values[offset, t]`` (nearest pixel) and where they exist.

    Returns ``(values, valid, t0)`` with ``t`` running in 1 px steps from ``t0`` across the
    frame, or None if the line misses the frame.
    """
    height, width = mask_u8.shape
    span = line.clip(width, height)
    if span is None:
        return None
    t0, t1 = span
    ts = t0 + np.arange(int(math.floor(t1 - t0)) + 1, dtype=np.float64)
    n = line.normal
    xs = line.point[0] + ts[None, :] * line.direction[0] + offsets[:, None] * n[0]
    ys = line.point[1] + ts[None, :] * line.direction[1] + offsets[:, None] * n[1]
    values = cv2.remap(
        mask_u8,
        xs.astype(np.float32),
        ys.astype(np.float32),
        interpolation=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=2,
    )
    valid = values != 2
    return np.where(valid, values, 0).astype(np.uint8), valid, t0


def _half_max_run(
    profile: npt.NDArray[np.float64], background: float, start: int
) -> tuple[int, int]:
    """Indices ``lo, hi`` of the run around ``start`` where ``profile`` is above half maximum."""
    peak = float(profile[start])
    half = background + 0.5 * (peak - background)
    lo = hi = start
    while lo > 0 and profile[lo - 1] >= half:
        lo -= 1
    while hi < profile.size - 1 and profile[hi + 1] >= half:
        hi += 1
    return lo, hi


def _refine(mask_u8: npt.NDArray[np.uint8], line: _Line, radius: float) -> _Line:
    """Fit the line to the True pixels near it (offset and angle).

    The band's centre and width come from the fill profile across the line; then a
    Tukey-biweight reweighted least-squares fit of the True pixels' offsets against their
    position along the line, with a window wider than the band (so the fit has one solution
    even for a flat-topped band), moves and turns the line. Three rounds.
    """
    offsets = np.arange(-radius, radius + 0.5, 1.0)
    flank = np.abs(offsets) >= radius * 0.5
    for _ in range(3):
        band = _sample_band(mask_u8, line, offsets)
        if band is None:
            return line
        values, valid, t0 = band
        profile = values.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
        smooth = np.convolve(profile, np.ones(3) / 3.0, mode="same")
        background = float(np.median(profile[flank]))
        top = int(np.argmax(smooth))
        lo, hi = _half_max_run(smooth, background, top)
        centre = 0.5 * (offsets[lo] + offsets[hi])
        window = max(3.0, 1.5 * 0.5 * (offsets[hi] - offsets[lo] + 1.0) + 2.0)
        di, ti = np.nonzero(values)
        if di.size < 10:
            return line
        d = offsets[di]
        t = t0 + ti.astype(np.float64)
        tm = float(np.mean(t))
        tc = t - tm
        a, b = centre, 0.0
        for _ in range(6):
            u = (d - (a + b * tc)) / window
            w = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
            sw = float(w.sum())
            if sw < 5.0:
                break
            mean_t = float(np.sum(w * tc)) / sw
            mean_d = float(np.sum(w * d)) / sw
            var = float(np.sum(w * (tc - mean_t) ** 2))
            b = float(np.sum(w * (tc - mean_t) * (d - mean_d))) / var if var > 0 else 0.0
            a = mean_d - b * mean_t
        normal = line.normal
        point = line.point + tm * line.direction + a * normal
        direction = line.direction + b * normal
        line = _Line(point=point, direction=direction / np.hypot(*direction))
    return line


@dataclass(frozen=True)
class _Verdict:
    accepted: bool
    width: float  # detected full width, working px
    fill: float
    contrast: float
    coverage: float
    covered_length: float


def _judge(
    mask_u8: npt.NDArray[np.uint8],
    line: _Line,
    *,
    min_length: float,
    radius: float,
    chunk: int,
) -> _Verdict:
    """Measure the band of residuals along ``line`` and decide whether it is a trail."""
    step = 0.5
    offsets = np.arange(-radius, radius + step / 2, step)
    band = _sample_band(mask_u8, line, offsets)
    reject = _Verdict(False, 0.0, 0.0, 0.0, 0.0, 0.0)
    if band is None:
        return reject
    values, valid, _ = band
    counts = valid.sum(axis=1)
    if counts.max() < 8:
        return reject
    profile = values.sum(axis=1) / np.maximum(counts, 1)
    flank_sel = np.abs(offsets) >= radius * 0.5
    background = float(np.median(profile[flank_sel]))
    centre_sel = np.abs(offsets) <= 1.0
    peak = float(profile[centre_sel].max())
    if peak - background <= 0.05:
        return reject
    # full width at half maximum of the fill profile, around the centre
    centre = int(np.argmax(np.where(centre_sel, profile, -1.0)))
    lo, hi = _half_max_run(profile, background, centre)
    width = (hi - lo + 1) * step
    band_sel = np.abs(offsets) <= max(1.0, width / 2.0)
    flank_b = np.abs(offsets) >= max(radius * 0.5, width)
    band_valid = valid[band_sel].sum(axis=0)
    band_hits = values[band_sel].sum(axis=0)
    flank_valid = valid[flank_b].sum(axis=0)
    flank_hits = values[flank_b].sum(axis=0)
    inside = np.nonzero(band_valid > 0)[0]
    if inside.size < 8:
        return reject
    fill = float(band_hits[inside].sum() / band_valid[inside].sum())
    flank_fill = float(flank_hits.sum() / max(int(flank_valid.sum()), 1))
    contrast = fill / max(flank_fill, 1e-3)
    # coverage: short chunks along the line where the band is clearly filled. Stars strung
    # along a line fill a few chunks completely and leave most empty; a trail fills most.
    n_chunks = max(1, inside.size // chunk)
    edges = np.linspace(0, inside.size, n_chunks + 1).astype(np.int64)
    positions = inside
    cum = np.concatenate(
        [
            np.zeros((4, 1)),
            np.cumsum(
                np.stack(
                    [
                        band_valid[positions],
                        band_hits[positions],
                        flank_valid[positions],
                        flank_hits[positions],
                    ]
                ).astype(np.float64),
                axis=1,
            ),
        ],
        axis=1,
    )
    sums = cum[:, edges[1:]] - cum[:, edges[:-1]]
    chunk_fill = sums[1] / np.maximum(sums[0], 1.0)
    chunk_flank = sums[3] / np.maximum(sums[2], 1.0)
    covered = (chunk_fill >= _MIN_FILL) & (chunk_fill >= 3.0 * chunk_flank + 0.02)
    coverage = float(covered.mean())
    covered_length = float(np.sum((edges[1:] - edges[:-1])[covered]))
    accepted = (
        fill >= _MIN_FILL
        and contrast >= _MIN_CONTRAST
        and coverage >= _MIN_COVERAGE
        and covered_length >= min_length
    )
    return _Verdict(accepted, width, fill, contrast, coverage, covered_length)


def _coarse(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.uint8], int]:
    """The mask on a grid of at most ``_COARSE_SIZE`` on the long side (cells on by fill)."""
    height, width = mask.shape
    k = max(1, math.ceil(max(height, width) / _COARSE_SIZE))
    if k == 1:
        return mask.view(np.uint8), 1
    return downsample_mask(mask, k, min_fraction=_COARSE_FILL).view(np.uint8), k


def _hough_candidates(coarse: npt.NDArray[np.uint8], k: int, *, min_votes: int) -> list[_Line]:
    """Distinct strongest Hough lines on the coarse grid, as working-resolution lines."""
    found = cv2.HoughLinesWithAccumulator(coarse, 1.0, _HOUGH_THETA, int(min_votes))
    if found is None:
        return []
    found = found.reshape(-1, 3)
    order = np.argsort(-found[:, 2], kind="stable")
    kept: list[tuple[float, float]] = []
    lines: list[_Line] = []
    for rho, theta, _votes in found[order]:
        duplicate = False
        for rho_k, theta_k in kept:
            dt = abs(theta - theta_k)
            if dt < math.radians(2.0) and abs(rho - rho_k) < 8.0:
                duplicate = True
            elif math.pi - dt < math.radians(2.0) and abs(rho + rho_k) < 8.0:
                duplicate = True
            if duplicate:
                break
        if duplicate:
            continue
        kept.append((float(rho), float(theta)))
        c, s = math.cos(theta), math.sin(theta)
        # coarse cell centre X maps to working pixel k X + (k - 1) / 2
        rho_w = k * rho + (k - 1) / 2.0 * (c + s)
        lines.append(_Line(point=np.array([rho_w * c, rho_w * s]), direction=np.array([-s, c])))
        if len(lines) >= _MAX_CANDIDATES:
            break
    return lines


def find_trails(
    mask: npt.ArrayLike,
    *,
    frame: int,
    scale: int = 1,
    shape: tuple[int, int] | None = None,
    min_length: float | None = None,
    margin: float = 1.5,
) -> list[SatelliteTrail]:
    """Find straight trails in one frame's residual mask (from :func:`trail_residual_mask`).

    1. The mask is reduced to at most 1024 px on the long side (a cell is on when 12% of its
       pixels are) and a standard Hough transform (0.125 degree, 1 cell) proposes the 12
       strongest distinct lines.
    2. Each line is refined on the mask itself: the True pixels within a window around it are
       fitted by Tukey-reweighted least squares (offset and angle) while the window narrows.
    3. The fill profile across the line gives the trail's detected width (full width at half
       maximum above the flanks' level). The line is accepted only if, along its whole
       crossing of the frame, at least 12% of the band is True on average, the band is at
       least 4x denser than the flanks beside it, and the band is clearly filled on at least
       half of the line and over ``min_length``. Compact residuals (stars that changed with
       seeing or moved by a fraction of a pixel, hot pixels, cosmic rays) and noise cannot
       line up that way; a diffuse residual region fills the flanks as much as the band.
    4. Lines that repeat an accepted one are dropped. The masked width is ``margin`` times the
       detected width plus one mask pixel (``scale``), covering the PSF wings.

    Parameters
    ----------
    mask : array_like bool, (h, w)
        The residual mask of one frame over the whole reference grid, at full resolution or
        reduced by :func:`downsample_mask` (then give ``scale``).
    frame : int
        Frame index, copied into the results.
    scale : int
        Full-resolution pixels per mask pixel.
    shape : (H, W), optional
        Full-resolution image shape; default ``(h * scale, w * scale)``.
    min_length : float, optional
        Least length (full-resolution px) along which the trail must be seen; default a
        quarter of the shorter image side. Trails cutting a corner shorter than that are
        missed.
    margin : float
        Masked width over detected width.

    Returns
    -------
    list of SatelliteTrail
        Strongest first; empty when nothing line-like is found.
    """
    data = np.asarray(mask, dtype=bool)
    if data.ndim != 2:
        raise ValueError(f"find_trails needs a 2-D mask, got shape {data.shape}")
    if scale < 1:
        raise ValueError(f"find_trails: scale must be at least 1, got {scale}")
    height_w, width_w = data.shape
    full_h, full_w = shape if shape is not None else (height_w * scale, width_w * scale)
    if min_length is None:
        min_length = 0.25 * min(full_h, full_w)
    min_length_w = max(8.0, float(min_length) / scale)
    if not data.any():
        return []
    mask_u8 = np.ascontiguousarray(data).view(np.uint8)
    coarse, k = _coarse(data)
    min_votes = max(8, int(0.25 * min_length_w / k))
    candidates = _hough_candidates(coarse, k, min_votes=min_votes)
    radius = float(max(12, 3 * k + 6))
    chunk = max(4, round(_CHUNK / scale))
    accepted: list[tuple[_Line, _Verdict]] = []
    for candidate in candidates:
        line = _refine(mask_u8, candidate, radius)
        if any(
            _same_line(line, other, max(2.0, v.width), width_w, height_w) for other, v in accepted
        ):
            continue
        verdict = _judge(mask_u8, line, min_length=min_length_w, radius=radius, chunk=chunk)
        if not verdict.accepted:
            continue
        accepted.append((line, verdict))
    trails = []
    for line, verdict in accepted:
        point = line.point * scale + (scale - 1) / 2.0
        full_line = _Line(point=point, direction=line.direction)
        span = full_line.clip(full_w, full_h)
        if span is None:
            continue
        t0, t1 = span
        start = point + t0 * line.direction
        end = point + t1 * line.direction
        width = margin * verdict.width * scale + scale
        trails.append(
            SatelliteTrail(
                frame=int(frame),
                start=(float(start[0]), float(start[1])),
                end=(float(end[0]), float(end[1])),
                width=float(width),
            )
        )
    return trails


def _same_line(a: _Line, b: _Line, tolerance: float, width: float, height: float) -> bool:
    """Whether line ``a`` stays within ``tolerance`` px of line ``b`` across the frame."""
    span = a.clip(width, height)
    if span is None:
        return False
    nb = b.normal
    for t in (span[0], 0.5 * (span[0] + span[1]), span[1]):
        p = a.point + t * a.direction
        if abs(float(np.dot(p - b.point, nb))) > tolerance:
            return False
    return True


# --------------------------------------------------------------------------------------------
# masking


def trail_mask(
    shape: tuple[int, ...],
    trails: list[SatelliteTrail] | tuple[SatelliteTrail, ...],
    *,
    rows: slice | None = None,
) -> Mask:
    """The pixels within ``width / 2`` of any of ``trails``' lines (True = masked).

    Parameters
    ----------
    shape : (H, W) or (H, W, C)
        Full image shape (the reference grid).
    trails : sequence of SatelliteTrail
        Usually the trails of one frame.
    rows : slice, optional
        The strip of rows wanted (step 1); default all rows.

    Returns
    -------
    ndarray bool, ``(rows, W)``
    """
    height, width = int(shape[0]), int(shape[1])
    start, stop, step = (rows or slice(None)).indices(height)
    if step != 1:
        raise ValueError(f"trail_mask: rows must be a slice with step 1, got {rows}")
    ys = np.arange(start, stop, dtype=np.float64)
    xs = np.arange(width, dtype=np.float64)
    out = np.zeros((ys.size, width), dtype=bool)
    for trail in trails:
        (x0, y0), (x1, y1) = trail.start, trail.end
        length = math.hypot(x1 - x0, y1 - y0)
        if length == 0.0 or trail.width <= 0:
            continue
        nx, ny = -(y1 - y0) / length, (x1 - x0) / length
        half = trail.width / 2.0
        distance = (xs[None, :] - x0) * nx + ((ys - y0) * ny)[:, None]
        out |= np.abs(distance) <= half
    return out
