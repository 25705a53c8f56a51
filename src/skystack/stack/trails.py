"""Star-trail stacking: a streaming maximum, gap filling, comet fading and a quiet foreground.

A fixed camera records the sky turning about the celestial pole above a landscape. The
per-pixel maximum ("lighten" blending) of the frames draws every star's path as a trail,
where a mean would average the moving stars away (the seed 002 forum thread). The maximum
also keeps the brightest noise sample of every pixel, so the static foreground comes out
brighter and noisier than in any single frame; the mean of the frames is the better picture
of the landscape. :class:`StarTrailAccumulator` builds both in one pass over the frames,
one frame in memory at a time, and blends them.

Foreground blend
----------------
For every pixel and channel the excess of the maximum over the foreground estimate (the mean,
or the mean of medians of a few frames) is compared with the noise of one frame at that pixel's
level, ``z = (max - foreground) / sigma``. Where nothing moves, ``z`` is the maximum of ``N``
normal deviates, about ``E_N`` (0.56 for 2 frames, 1.87 for 20, 3.04 for 200); a star trail
gives far more. The sky weight rises linearly from 0 at ``z = E_N + threshold`` to 1 at ``z =
E_N + 2 threshold`` (``z`` averaged over the colour channels), is dilated by one pixel so the
faint wings of a trail follow their core, and feathered outwards (the maximum of itself and its
Gaussian blur of 1 px) so the seam does not show. The output is ``foreground + weight * (trails
- foreground)``: exactly the maximum (or comet image) on trails, exactly the noise-reduced
foreground where nothing moved. The frame noise ``sigma(level)`` is a noise model fitted to the
frames themselves: pixels are binned by their mean level, and in each bin a trimmed mean of the
per-pixel frame-to-frame variance (Welford's running variance), corrected for the trimming,
gives the variance at that level; levels in between are interpolated, and above the brightest
90% of the pixels (where stars dominate) the variance grows linearly, as shot noise does. Shot
noise of bright lamps and sky glow is thereby accounted for, and star trails, a minority of the
pixels of any trusted level, are trimmed away.

Gap filling
-----------
Between two exposures the sky keeps turning while the camera is not recording, so a star's
trail in frame ``k`` ends short of where it starts in frame ``k + 1``: the trails are dotted.
The sky's motion from frame ``k`` to ``k + 1`` is measured by matching their stars (a
similarity transform ``T``; for a rotation about the pole ``T`` is that rotation). The motion
part-way, ``T ** f``, is the matrix's fractional power: a rotation by ``f`` times the angle
about the same centre (and for a homography ``K R K^-1``, exactly ``K R^f K^-1``). For
fractions ``f`` in ``(0, 1)``, ``1 px`` of motion apart at the frame's far corner, frame ``k``
is warped forward by ``T ** f`` and frame ``k + 1`` back by ``T ** (f - 1)``; a star lands on
the same in-between position in both, while anything static (the landscape, a lit window)
lands in two different places. The per-pixel minimum of the two warps keeps the stars and
drops the static scene and its noise (the minimum of two noisy values lies below the
background), and its maximum over ``f`` is max-stacked with the frames. This closes the gaps
along the true arcs, as Star Tracer does by rotating the picture [1]_, without the blur of a
"lighten" dilation. Gaps are filled between every pair of frames (``gap_fill="all"``), only
after interruptions (``"auto"``: when the frames' start times are more than 1.5 times the
median interval so far apart) or never (``"none"``).

Comet mode
----------
With ``comet=L`` the trail image fades as it grows: before frame ``k`` is max-combined, the
excess of the trail image over the running mean is multiplied by ``exp(-1 / L)``, so a trail
segment recorded ``L`` frames ago keeps ``1 / e`` of its brightness above the sky and the
trails taper like comet tails towards their start. The sky weight of the blend still comes
from the plain maximum.

References
----------
.. [1] Tawbaware, Star Tracer: star-trail gap filler and path generator,
   http://www.tawbaware.com/startracer.htm
.. [2] B. P. Welford, "Note on a method for calculating corrected sums of squares and
   products", Technometrics 4, 419-420 (1962).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from skystack._typing import Image
from skystack.errors import ConfigError, GeometryError, RegistrationError
from skystack.register.transform import Transform

__all__ = [
    "ForegroundMethod",
    "GapFillMode",
    "FOREGROUND_METHODS",
    "GAP_FILL_MODES",
    "GapFill",
    "StarTrailResult",
    "StarTrailAccumulator",
    "expected_max_excess",
    "noise_model",
    "sky_weight",
    "blend_foreground",
    "estimate_sky_motion",
    "fractional_transform",
    "fill_gap",
]

_log = logging.getLogger(__name__)

ForegroundMethod: TypeAlias = Literal["mean", "median", "none"]
GapFillMode: TypeAlias = Literal["auto", "all", "none"]
FOREGROUND_METHODS: tuple[ForegroundMethod, ...] = ("mean", "median", "none")
GAP_FILL_MODES: tuple[GapFillMode, ...] = ("auto", "all", "none")

_GAP_FACTOR = 1.5
"""``auto`` gap filling: an interval longer than this times the median interval is a gap."""
_STATIC_PX = 0.35
"""Detections this close in two frames are static (landscape lights), not stars."""
_NOISE_BINS = 32
_NOISE_SAMPLES = 400_000
_TRUSTED = 0.9
"""Share of the level bins (from the darkest) whose variance the noise model trusts."""
_TRIM = 0.8
"""Share of each level bin's per-pixel variances kept by the noise model (the lowest)."""


def expected_max_excess(n: int) -> float:
    """Expected maximum of ``n`` independent standard normal deviates, ``E[max]``.

    It is also the expected excess of the per-pixel maximum of ``n`` frames over their mean,
    in units of the frame noise, where nothing moves.
    """
    if n < 1:
        raise ValueError(f"need at least 1 sample, not {n}")
    if n == 1:
        return 0.0
    from scipy.special import ndtr

    x = np.linspace(-10.0, 10.0, 20001)
    density = n * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi) * ndtr(x) ** (n - 1)
    return float(np.sum(x * density) * (x[1] - x[0]))


def _trimmed_chi2_factor(dof: float, keep: float) -> float:
    """Mean of the lowest ``keep`` share of ``chi2(dof) / dof``: the trimmed-mean bias."""
    from scipy.stats import chi2

    q = chi2.ppf(keep, dof)
    # E[X 1{X < q}] = dof * P(chi2(dof + 2) < q) for X ~ chi2(dof)
    return float(chi2.cdf(q, dof + 2) / keep)


def noise_model(mean: Image, variance: Image, *, dof: float) -> Image:
    """Per-pixel frame noise ``sigma`` from a noise-versus-level model fitted to the frames.

    Parameters
    ----------
    mean, variance : ndarray float32, (H, W) or (H, W, C)
        Per-pixel mean and unbiased frame-to-frame variance of the frames.
    dof : float
        Degrees of freedom of each variance (frames - 1), >= 1.

    Returns
    -------
    ndarray float32, same shape
        The noise σ of one frame at each pixel's mean level (full-scale units), per channel.

    Notes
    -----
    Pixels are binned by mean level into up to 32 bins of equal counts (from a regular
    subsample of at most 400 000 pixels per channel); in each bin the mean of the lowest 80%
    of the variances, divided by the same trimmed mean of a ``chi2(dof) / dof`` variable, is
    the variance at the bin's median level. Star trails, transient lights and the like sit in
    the discarded upper tail. The brightest 10% of the pixels are mostly stars, whose
    frame-to-frame variance is motion, not noise: above the trusted bins the variance grows
    linearly with the level (shot noise) with the slope of a straight-line fit to the trusted
    bins. The model is interpolated linearly between bins and held constant below them; it
    never goes below the 16-bit quantisation noise.
    """
    if dof < 1:
        raise ValueError(f"the noise model needs at least 2 frames (dof >= 1), not {dof}")
    m = mean if mean.ndim == 3 else mean[..., None]
    v = variance if variance.ndim == 3 else variance[..., None]
    factor = _trimmed_chi2_factor(dof, _TRIM)
    floor = (1.0 / 65535.0) ** 2 / 12.0
    out = np.empty(m.shape, dtype=np.float32)
    stride = max(1, int(math.ceil(m.shape[0] * m.shape[1] / _NOISE_SAMPLES)))
    for c in range(m.shape[2]):
        levels = m[..., c].reshape(-1)[::stride]
        spreads = v[..., c].reshape(-1)[::stride]
        good = np.isfinite(levels) & np.isfinite(spreads)
        levels, spreads = levels[good], spreads[good]
        if levels.size < 16:
            out[..., c] = np.nan
            continue
        order = np.argsort(levels, kind="stable")
        levels, spreads = levels[order], spreads[order]
        n_bins = int(min(_NOISE_BINS, max(1, levels.size // 200)))
        centres, values = [], []
        for chunk_l, chunk_v in zip(
            np.array_split(levels, n_bins), np.array_split(spreads, n_bins), strict=True
        ):
            cut = np.quantile(chunk_v, _TRIM)
            kept = chunk_v[chunk_v <= cut]
            centres.append(float(np.median(chunk_l)))
            values.append(max(float(np.mean(kept)) / factor, floor))
        xp, fp = np.asarray(centres), np.asarray(values)
        xp, unique = np.unique(xp, return_index=True)
        fp = fp[unique]
        # The brightest levels belong mostly to stars and trails, whose frame-to-frame
        # variance is not noise: above the trusted bins the variance grows linearly with the
        # level (shot noise), with the slope fitted to the trusted bins.
        trusted = max(1, int(round(_TRUSTED * len(xp))))
        xp, fp = xp[:trusted], fp[:trusted]
        slope = 0.0
        if len(xp) >= 3 and np.ptp(xp) > 0:
            slope = max(float(np.polyfit(xp, fp, 1)[0]), 0.0)
        top = max(float(np.nanmax(m[..., c])), float(xp[-1])) + 1.0
        xp = np.append(xp, top)
        fp = np.append(fp, fp[-1] + slope * (top - xp[-2]))
        out[..., c] = np.sqrt(np.interp(m[..., c], xp, fp)).astype(np.float32)
    return out if mean.ndim == 3 else out[..., 0]


def sky_weight(
    trails_max: Image,
    foreground: Image,
    sigma: Image,
    *,
    n_frames: int,
    threshold: float = 3.0,
) -> Image:
    """Where the blend takes the trails (1) and where the foreground (0).

    Parameters
    ----------
    trails_max : ndarray, (H, W) or (H, W, C)
        Per-pixel maximum of the frames.
    foreground : ndarray, same shape
        Per-pixel mean (or robust mean) of the frames.
    sigma : ndarray, same shape
        Noise of one frame at each pixel (:func:`noise_model`).
    n_frames : int
        Frames combined (sets the expected excess ``E_N`` of a static pixel).
    threshold : float
        Excess above ``E_N``, in units of ``sigma``, at which the weight starts to rise; it
        reaches 1 at twice that.

    Returns
    -------
    ndarray float32, (H, W)
        Weight in [0, 1], one for all channels.
    """
    import cv2

    if threshold <= 0:
        raise ConfigError(f"the sky threshold must be positive, not {threshold}")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (trails_max - foreground) / sigma
    if z.ndim == 3:
        z = np.nanmean(z, axis=2) if np.isnan(z).any() else z.mean(axis=2)
    z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
    start = expected_max_excess(n_frames) + threshold
    weight = np.clip((z - start) / threshold, 0.0, 1.0).astype(np.float32)
    weight = cv2.dilate(weight, np.ones((3, 3), np.uint8))
    # The blur only softens the edge outwards: the dilated core keeps its weight.
    np.maximum(weight, cv2.GaussianBlur(weight, (0, 0), 1.0), out=weight)
    return np.clip(weight, 0.0, 1.0)


def blend_foreground(trails: Image, foreground: Image, weight: Image) -> Image:
    """``foreground + weight * (trails - foreground)``, the weight broadcast over channels."""
    w = weight[..., None] if trails.ndim == 3 and weight.ndim == 2 else weight
    out = np.subtract(trails, foreground, dtype=np.float32)
    out *= w
    out += foreground
    return out


def _detection_image(image: Image) -> Image:
    from skystack.detect import luminance

    return np.nan_to_num(luminance(image), nan=0.0)


def estimate_sky_motion(
    previous: Image, current: Image, *, max_stars: int = 400, threshold: float = 5.0
) -> Transform:
    """The motion of the sky from one frame to the next, from their stars.

    Parameters
    ----------
    previous, current : ndarray, (H, W) or (H, W, 3)
        Two frames of a fixed camera.
    max_stars : int
        Brightest stars matched.
    threshold : float
        Detection threshold (σ).

    Returns
    -------
    Transform
        Similarity mapping star positions in ``previous`` to ``current``.

    Raises
    ------
    RegistrationError
        When the stars cannot be matched (too few, clouds, long trails).
    """
    from skystack.detect import find_stars
    from skystack.register.match import match_stars

    a = find_stars(_detection_image(previous), threshold=threshold, max_stars=max_stars).xy
    b = find_stars(_detection_image(current), threshold=threshold, max_stars=max_stars).xy
    # Lit windows, hot pixels and other static points would pin the fit to the identity.
    if len(a) and len(b):
        from scipy.spatial import cKDTree

        static_a = cKDTree(b).query(a)[0] < _STATIC_PX
        static_b = cKDTree(a).query(b)[0] < _STATIC_PX
        a, b = a[~static_a], b[~static_b]
    match = match_stars(a, b, model="similarity", allow_mirror=False, tolerance_px=1.5)
    _log.debug("sky motion: %s from %d stars, rms %.2f px", match.transform, match.n_inliers,
               match.rms_px)  # fmt: skip
    return match.transform


def fractional_transform(transform: Transform, fraction: float) -> Transform:
    """``transform ** fraction``: part of a rotation (about its fixed point) or of a shift.

    For a similarity this is the rotation by ``fraction`` times the angle, scaled by
    ``scale ** fraction``, about the same centre; for a homography ``K R K^-1`` it is
    ``K R^fraction K^-1``.
    """
    if fraction == 0.0:
        return Transform.identity()
    if fraction == 1.0:
        return transform
    matrix = transform.matrix
    if not transform.is_affine:
        return Transform(_matrix_power(matrix, fraction))
    linear, shift = matrix[:2, :2], matrix[:2, 2]
    out = np.eye(3)
    if np.allclose(linear, np.eye(2), rtol=0.0, atol=1e-12):
        out[:2, 2] = fraction * shift
        return Transform(out)
    # T(x) = A (x - c) + c about the fixed point c, so T**f(x) = A**f (x - c) + c.
    centre = np.linalg.solve(np.eye(2) - linear, shift)
    power = _matrix_power(linear, fraction)
    out[:2, :2] = power
    out[:2, 2] = centre - power @ centre
    return Transform(out)


def _matrix_power(matrix: npt.NDArray[np.float64], fraction: float) -> npt.NDArray[np.float64]:
    """Principal real power of a diagonalisable matrix (SciPy's Padé method otherwise)."""
    values, vectors = np.linalg.eig(matrix)
    if np.linalg.cond(vectors) < 1e8:
        power = vectors @ np.diag(values.astype(complex) ** fraction) @ np.linalg.inv(vectors)
        return np.real(power)
    from scipy.linalg import fractional_matrix_power

    return np.real(np.asarray(fractional_matrix_power(matrix, fraction)))


def _max_displacement(transform: Transform, shape: tuple[int, ...]) -> float:
    height, width = shape[:2]
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], float)
    return float(np.max(np.hypot(*(transform.apply(corners) - corners).T)))


def _warp(image: Image, transform: Transform, border: float) -> Image:
    import cv2

    height, width = image.shape[:2]
    matrix = transform.matrix
    flags = cv2.INTER_LINEAR
    if transform.is_affine:
        out = cv2.warpAffine(image, matrix[:2], (width, height), flags=flags,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=border)  # fmt: skip
    else:
        out = cv2.warpPerspective(image, matrix, (width, height), flags=flags,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=border)  # fmt: skip
    return out.reshape(image.shape)


def fill_gap(
    previous: Image,
    current: Image,
    motion: Transform,
    *,
    step_px: float = 1.0,
    max_steps: int = 512,
) -> tuple[Image, int]:
    """The stars between two frames: the maximum over in-between positions of the sky.

    Parameters
    ----------
    previous, current : ndarray, (H, W) or (H, W, C)
        Consecutive frames.
    motion : Transform
        Sky motion from ``previous`` to ``current`` (:func:`estimate_sky_motion`).
    step_px : float
        Largest motion between two in-between positions, at the frame's farthest corner (px).
    max_steps : int
        Cap on the number of in-between positions.

    Returns
    -------
    image : ndarray float32
        Per-pixel maximum over fractions ``f`` of ``min(previous warped by T**f, current
        warped by T**(f-1))``; pixels with no in-between data hold the frames' minimum.
    steps : int
        In-between positions used (0 when the motion is under ``step_px``).
    """
    if previous.shape != current.shape:
        raise GeometryError(f"frames of shapes {previous.shape} and {current.shape} differ")
    prev = np.asarray(previous, dtype=np.float32)
    cur = np.asarray(current, dtype=np.float32)
    good_prev, good_cur = np.isfinite(prev), np.isfinite(cur)
    if not good_prev.any() or not good_cur.any():
        return np.full(previous.shape, np.nan, np.float32), 0
    low = float(min(prev[good_prev].min(), cur[good_cur].min()))
    prev = np.where(good_prev, prev, np.float32(low))
    cur = np.where(good_cur, cur, np.float32(low))
    out = np.full(previous.shape, low, dtype=np.float32)
    steps = int(min(max_steps, math.ceil(_max_displacement(motion, previous.shape) / step_px)))
    for j in range(1, steps):
        f = j / steps
        forward = _warp(prev, fractional_transform(motion, f), low)
        backward = _warp(cur, fractional_transform(motion, f - 1.0), low)
        np.maximum(out, np.minimum(forward, backward), out=out)
    return out, max(steps - 1, 0)


@dataclass(frozen=True)
class GapFill:
    """What :meth:`StarTrailAccumulator.add` did between the previous frame and this one.

    Attributes
    ----------
    filled : bool
        Whether in-between positions were max-stacked.
    steps : int
        In-between positions used.
    motion : Transform or None
        Sky motion from the previous frame to this one, when measured.
    interval_s : float or None
        Time between the two frames' starts, when both are known.
    reason : str or None
        Why the gap was not filled, when filling was wanted.
    """

    filled: bool
    steps: int = 0
    motion: Transform | None = None
    interval_s: float | None = None
    reason: str | None = None


@dataclass(frozen=True, eq=False)
class StarTrailResult:
    """A star-trail stack.

    Attributes
    ----------
    image : ndarray float32, (H, W) or (H, W, C)
        The blend of trails and foreground (the trails alone with ``foreground="none"``).
    trails : ndarray float32
        The per-pixel maximum (gap-filled), or the comet image.
    maximum : ndarray float32
        The plain per-pixel maximum including the gap fills (no comet fading).
    foreground : ndarray float32 or None
        The mean (or mean of medians) of the frames.
    weight : ndarray float32 (H, W) or None
        Sky weight of the blend (1 = trails).
    sigma : ndarray float32 or None
        Modelled noise of one frame at each pixel.
    n_frames : int
        Frames combined.
    gaps_filled : int
        Pairs of frames whose gap was filled.
    """

    image: Image
    trails: Image
    maximum: Image
    foreground: Image | None
    weight: Image | None
    sigma: Image | None
    n_frames: int
    gaps_filled: int


class StarTrailAccumulator:
    """Build a star-trail image one frame at a time (see the module documentation).

    Parameters
    ----------
    foreground : {"mean", "median", "none"}
        Noise-reduced foreground blended under the trails: the running mean, the mean of
        medians of blocks of ``median_block`` frames (robust to passing lights), or none
        (the output is the plain maximum or comet image).
    gap_fill : {"auto", "all", "none"}
        Fill the gaps between consecutive frames: after interruptions found from the frames'
        times (``auto``), between all frames, or never.
    comet : float or None
        Comet length in frames: older trail segments fade by ``1/e`` per ``comet`` frames.
    threshold : float
        Sky-weight threshold of the blend, in frame-noise σ above the static expectation.
    median_block : int
        Frames per median block for ``foreground="median"`` (>= 3; memory holds that many).
    step_px : float
        Spacing of the in-between positions of gap filling at the farthest corner (px).

    Memory is about five frames (maximum, comet image, running mean and variance, previous
    frame), plus ``median_block`` frames for the median foreground.
    """

    def __init__(
        self,
        *,
        foreground: ForegroundMethod = "mean",
        gap_fill: GapFillMode = "auto",
        comet: float | None = None,
        threshold: float = 3.0,
        median_block: int = 5,
        step_px: float = 1.0,
    ) -> None:
        if foreground not in FOREGROUND_METHODS:
            raise ConfigError(f"foreground must be one of {FOREGROUND_METHODS}, not {foreground!r}")
        if gap_fill not in GAP_FILL_MODES:
            raise ConfigError(f"gap_fill must be one of {GAP_FILL_MODES}, not {gap_fill!r}")
        if comet is not None and not comet > 0:
            raise ConfigError(f"the comet length must be a positive number of frames, not {comet}")
        if not threshold > 0:
            raise ConfigError(f"threshold must be positive, not {threshold}")
        if median_block < 3:
            raise ConfigError(f"median_block must be at least 3 frames, not {median_block}")
        if not step_px > 0:
            raise ConfigError(f"step_px must be positive, not {step_px}")
        self.foreground = foreground
        self.gap_fill = gap_fill
        self.comet = comet
        self.threshold = threshold
        self.median_block = median_block
        self.step_px = step_px
        self._decay = math.exp(-1.0 / comet) if comet is not None else None
        self._n = 0
        self._shape: tuple[int, ...] | None = None
        self._max: Image | None = None
        self._comet: Image | None = None
        self._mean: Image | None = None
        self._m2: Image | None = None
        self._count: npt.NDArray[np.float32] | None = None
        self._previous: Image | None = None
        self._previous_time: float | None = None
        self._intervals: list[float] = []
        self._last_motion: Transform | None = None
        self._block: list[Image] = []
        self._median_sum: Image | None = None
        self._median_weight = 0
        self._gaps_filled = 0

    @property
    def n_frames(self) -> int:
        """Frames added so far."""
        return self._n

    def add(
        self, image: npt.ArrayLike, *, time: float | None = None, motion: Transform | None = None
    ) -> GapFill:
        """Add the next frame.

        Parameters
        ----------
        image : array_like, (H, W) or (H, W, C)
            The frame, linear; NaN marks missing pixels.
        time : float, optional
            Start of its exposure in seconds on any clock (for ``gap_fill="auto"``).
        motion : Transform, optional
            Sky motion from the previous frame to this one, if known; otherwise measured
            from the stars when a gap is to be filled.

        Returns
        -------
        GapFill
            What was done about the gap before this frame.

        Raises
        ------
        GeometryError
            When the frame's shape differs from the first frame's.
        """
        data = np.asarray(image, dtype=np.float32)
        if self._shape is None:
            if data.ndim not in (2, 3):
                raise GeometryError(f"a frame must be (H, W) or (H, W, C), not {data.shape}")
            self._shape = data.shape
        elif data.shape != self._shape:
            raise GeometryError(
                f"frame shape {data.shape} differs from the first frame's {self._shape}"
            )
        gap = self._fill_gap(data, time, motion)
        self._n += 1
        self._update_max(data)
        self._update_comet(data)
        self._update_moments(data)
        if self.foreground == "median":
            self._update_median(data)
        self._previous = data.copy() if self.gap_fill != "none" else None
        self._previous_time = time
        return gap

    def _fill_gap(self, data: Image, time: float | None, motion: Transform | None) -> GapFill:
        if self._previous is None:
            return GapFill(filled=False)
        interval = None
        if time is not None and self._previous_time is not None:
            interval = float(time - self._previous_time)
            self._intervals.append(interval)
        wanted = self.gap_fill == "all"
        if self.gap_fill == "auto" and interval is not None and len(self._intervals) >= 2:
            wanted = interval > _GAP_FACTOR * float(np.median(self._intervals[:-1]))
        if not wanted:
            return GapFill(filled=False, interval_s=interval)
        if motion is None:
            try:
                motion = estimate_sky_motion(self._previous, data)
                self._last_motion = motion
            except RegistrationError as err:
                if self._last_motion is None:
                    reason = f"sky motion not measured ({err})"
                    _log.warning("gap not filled: %s", reason)
                    return GapFill(filled=False, interval_s=interval, reason=reason)
                motion = self._last_motion
                _log.info("sky motion not measured (%s); using the previous pair's", err)
        fill, steps = fill_gap(self._previous, data, motion, step_px=self.step_px)
        if steps:
            self._gaps_filled += 1
            np.fmax(self._max, fill, out=self._max)  # type: ignore[arg-type]
            if self._comet is not None:
                np.fmax(self._comet, fill, out=self._comet)
        return GapFill(filled=steps > 0, steps=steps, motion=motion, interval_s=interval)

    def _update_max(self, data: Image) -> None:
        if self._max is None:
            self._max = data.copy()
        else:
            np.fmax(self._max, data, out=self._max)

    def _update_comet(self, data: Image) -> None:
        if self._decay is None:
            return
        if self._comet is None:
            self._comet = data.copy()
            return
        reference = self._mean
        assert reference is not None
        faded = reference + (self._comet - reference) * np.float32(self._decay)
        np.fmax(faded, data, out=self._comet)

    def _update_moments(self, data: Image) -> None:
        # Welford's running mean and sum of squared deviations, per pixel [2].
        finite = np.isfinite(data)
        if self._mean is None:
            self._mean = np.where(finite, data, np.float32(0.0)).astype(np.float32)
            self._m2 = np.zeros_like(self._mean)
            if not finite.all():
                self._count = finite.astype(np.float32)
            return
        assert self._m2 is not None
        if self._count is None and not finite.all():
            self._count = np.full(self._mean.shape, self._n - 1, dtype=np.float32)
        if self._count is None:
            delta = data - self._mean
            self._mean += delta / np.float32(self._n)
            self._m2 += delta * (data - self._mean)
            return
        self._count += finite
        safe = np.where(finite, data, self._mean)
        delta = safe - self._mean
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(finite, delta / np.maximum(self._count, 1.0), 0.0)
        self._mean += step.astype(np.float32)
        self._m2 += np.where(finite, delta * (safe - self._mean), 0.0).astype(np.float32)

    def _update_median(self, data: Image) -> None:
        self._block.append(data.copy())
        if len(self._block) == self.median_block:
            self._flush_block()

    def _flush_block(self) -> None:
        if not self._block:
            return
        stack = np.stack(self._block)
        median = np.nanmedian(stack, axis=0) if np.isnan(stack).any() else np.median(stack, 0)
        weight = len(self._block)
        median = np.asarray(median * np.float32(weight), dtype=np.float32)
        if self._median_sum is None:
            self._median_sum = median
        else:
            self._median_sum += median
        self._median_weight += weight
        self._block = []

    def result(self) -> StarTrailResult:
        """The star-trail image so far (the accumulator can take more frames afterwards).

        Raises
        ------
        GeometryError
            When no frame was added.
        """
        if self._n == 0 or self._max is None or self._mean is None:
            raise GeometryError("no frame was added to the star-trail stack")
        maximum = self._max.copy()
        trails = self._comet.copy() if self._comet is not None else maximum.copy()
        if self.foreground == "none" or self._n < 2:
            return StarTrailResult(
                image=trails.copy(), trails=trails, maximum=maximum, foreground=None,
                weight=None, sigma=None, n_frames=self._n, gaps_filled=self._gaps_filled,
            )  # fmt: skip
        foreground = self._foreground()
        count = self._count if self._count is not None else np.float32(self._n)
        with np.errstate(divide="ignore", invalid="ignore"):
            variance = (self._m2 / np.maximum(count - 1, 1)).astype(np.float32)  # type: ignore[operator]
        sigma = noise_model(self._mean, variance, dof=self._n - 1)
        weight = sky_weight(maximum, foreground, sigma, n_frames=self._n, threshold=self.threshold)
        image = blend_foreground(trails, foreground, weight)
        return StarTrailResult(
            image=image, trails=trails, maximum=maximum, foreground=foreground, weight=weight,
            sigma=sigma, n_frames=self._n, gaps_filled=self._gaps_filled,
        )  # fmt: skip

    def _foreground(self) -> Image:
        assert self._mean is not None
        if self.foreground == "mean":
            return self._mean.copy()
        block, total, weight = self._block, self._median_sum, self._median_weight
        if block:
            stack = np.stack(block)
            median = np.nanmedian(stack, 0) if np.isnan(stack).any() else np.median(stack, 0)
            part = np.asarray(median * np.float32(len(block)), dtype=np.float32)
            total = part if total is None else total + part
            weight += len(block)
        assert total is not None
        return (total / np.float32(weight)).astype(np.float32)
