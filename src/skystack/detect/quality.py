"""Frame quality: sharpness, star count, sky and noise; scores, selection and stacking weights."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

import numpy as np
import numpy.typing as npt

from skystack.detect.background import estimate_noise
from skystack.detect.stars import StarTable, find_stars, luminance

__all__ = [
    "FrameQuality",
    "WeightMethod",
    "WEIGHT_METHODS",
    "measure_quality",
    "quality_scores",
    "select_frames",
    "frame_weights",
    "parse_percent",
]

WeightMethod: TypeAlias = Literal["none", "noise", "stars", "fwhm", "exposure"]
"""How frames are weighted in the stack (``--weights``)."""
WEIGHT_METHODS: tuple[WeightMethod, ...] = get_args(WeightMethod)

_SAMPLE_PIXELS = 500_000
"""Sky level and noise are measured on about this many pixels (whole rows, evenly spaced)."""

# Exponents of the score's factors (they sum to 1).
_W_FWHM, _W_STARS, _W_NOISE, _W_ROUND = 0.4, 0.3, 0.2, 0.1


@dataclass(frozen=True)
class FrameQuality:
    """Quality measurements of one frame.

    Attributes
    ----------
    n_stars : int
        Stars detected.
    fwhm : float
        Median fitted FWHM of the unsaturated stars (px); NaN if there are none.
    eccentricity : float
        Median eccentricity of the stars (0 round, towards 1 elongated); NaN if none.
    background : float
        Median sky level (image units).
    noise : float
        Pixel noise sigma (image units), from :func:`~skystack.detect.background.estimate_noise`.
    """

    n_stars: int
    fwhm: float
    eccentricity: float
    background: float
    noise: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary; NaN and infinite values become None."""

        def clean(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {
            "n_stars": int(self.n_stars),
            "fwhm": clean(self.fwhm),
            "eccentricity": clean(self.eccentricity),
            "background": clean(self.background),
            "noise": clean(self.noise),
        }


def measure_quality(
    image: npt.ArrayLike, *, stars: StarTable | None = None, **find_kwargs: Any
) -> FrameQuality:
    """Measure a frame's :class:`FrameQuality`.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, 3)
        Linear mono or debayered colour image (colour is reduced with
        :func:`~skystack.detect.stars.luminance`, so the noise is that of the channel mean).
    stars : StarTable, optional
        Stars already found in ``image``; otherwise :func:`~skystack.detect.stars.find_stars`
        runs with ``find_kwargs``.
    **find_kwargs
        Options of :func:`~skystack.detect.stars.find_stars`.

    Notes
    -----
    Sky level and noise of frames above 0.5 MP are measured on evenly spaced whole rows covering
    about half a million pixels (neighbouring pixels within a row are what the noise estimate
    compares).
    """
    lum = luminance(image)
    if stars is None:
        stars = find_stars(lum, **find_kwargs)
    elif find_kwargs:
        raise TypeError(
            f"measure_quality got stars and find_stars options {sorted(find_kwargs)}; give one"
        )
    row_step = max(1, int(lum.size // _SAMPLE_PIXELS))
    sample = lum[::row_step]
    finite = sample[np.isfinite(sample)]
    background = float(np.median(finite)) if finite.size else float("nan")
    noise = estimate_noise(sample)
    unsaturated = stars.fwhm[~stars.saturated]
    unsaturated = unsaturated[np.isfinite(unsaturated)]
    fwhm = float(np.median(unsaturated)) if unsaturated.size else float("nan")
    ecc = stars.eccentricity[np.isfinite(stars.eccentricity)]
    eccentricity = float(np.median(ecc)) if ecc.size else float("nan")
    return FrameQuality(
        n_stars=len(stars),
        fwhm=fwhm,
        eccentricity=eccentricity,
        background=background,
        noise=noise,
    )


def _column(qualities: Sequence[FrameQuality], name: str) -> npt.NDArray[np.float64]:
    return np.array([float(getattr(q, name)) for q in qualities], dtype=np.float64)


def quality_scores(qualities: Sequence[FrameQuality]) -> npt.NDArray[np.float64]:
    """Score each frame in [0, 1] relative to the set; higher is better.

    With the best value over the valid frames of the set as reference, each valid frame gets

    ``score = (fwhm_min / fwhm)^0.4 * (n / n_max)^0.3 * (noise_min / noise)^0.2
    * ((1 - e) / (1 - e_min))^0.1``

    a weighted geometric mean of sharpness, star count (clouds and haze lower it), noise and
    roundness (``e`` the median eccentricity); the best frame in every respect scores 1. A factor
    whose measurement is missing (NaN noise or eccentricity) counts as 1. Frames with no stars
    or a NaN FWHM score 0.
    """
    n = len(qualities)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    fwhm = _column(qualities, "fwhm")
    stars = _column(qualities, "n_stars")
    noise = _column(qualities, "noise")
    ecc = _column(qualities, "eccentricity")
    valid = (stars > 0) & np.isfinite(fwhm) & (fwhm > 0)
    scores = np.zeros(n, dtype=np.float64)
    if not valid.any():
        return scores

    def ratio(best: float, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        usable = np.isfinite(values) & (values > 0)
        out = np.ones_like(values)
        np.divide(best, values, out=out, where=usable)
        return np.clip(out, 0.0, 1.0)

    good_noise = noise[valid & np.isfinite(noise) & (noise > 0)]
    roundness = 1.0 - ecc
    good_round = roundness[valid & np.isfinite(roundness) & (roundness > 0)]
    s_fwhm = ratio(float(fwhm[valid].min()), fwhm)
    s_stars = stars / float(stars[valid].max())
    s_noise = ratio(float(good_noise.min()), noise) if good_noise.size else np.ones(n)
    if good_round.size:
        s_round = np.where(np.isfinite(roundness), roundness / float(good_round.max()), 1.0)
        s_round = np.clip(s_round, 0.0, 1.0)
    else:
        s_round = np.ones(n)
    combined = s_fwhm**_W_FWHM * s_stars**_W_STARS * s_noise**_W_NOISE * s_round**_W_ROUND
    scores[valid] = np.clip(combined[valid], 0.0, 1.0)
    return scores


def select_frames(
    qualities: Sequence[FrameQuality],
    *,
    percent: float = 100.0,
    max_fwhm: float | None = None,
    min_stars: int | None = None,
    max_eccentricity: float | None = None,
) -> npt.NDArray[np.bool_]:
    """Choose the frames to stack.

    Parameters
    ----------
    qualities : sequence of FrameQuality
    percent : float
        Keep the best ``percent`` % of the frames by :func:`quality_scores`: ``ceil(n percent /
        100)`` frames, at least 1 (ties go to the earlier frame). 100 keeps every frame.
    max_fwhm, min_stars, max_eccentricity : optional
        Thresholds applied as well; a frame whose measurement is missing (NaN) fails the
        threshold on it.

    Returns
    -------
    ndarray bool
        True for the frames to keep, in input order.
    """
    percent = parse_percent(percent)
    n = len(qualities)
    keep = np.zeros(n, dtype=np.bool_)
    if n == 0:
        return keep
    if percent >= 100.0:
        keep[:] = True
    else:
        count = max(1, math.ceil(n * percent / 100.0 - 1e-9))
        order = np.argsort(-quality_scores(qualities), kind="stable")
        keep[order[:count]] = True
    if max_fwhm is not None:
        keep &= _column(qualities, "fwhm") <= float(max_fwhm)
    if min_stars is not None:
        keep &= _column(qualities, "n_stars") >= int(min_stars)
    if max_eccentricity is not None:
        keep &= _column(qualities, "eccentricity") <= float(max_eccentricity)
    return keep


def frame_weights(
    qualities: Sequence[FrameQuality],
    *,
    method: WeightMethod,
    exposures: Sequence[float] | None = None,
) -> npt.NDArray[np.float64]:
    """Stacking weight of each frame, normalised to mean 1 over the frames with a valid weight.

    Parameters
    ----------
    qualities : sequence of FrameQuality
    method : {"none", "noise", "stars", "fwhm", "exposure"}
        ``noise``: inverse variance ``1 / sigma^2``; ``stars``: the star count; ``fwhm``:
        ``1 / fwhm^2``; ``exposure``: the exposure time; ``none``: all 1.
    exposures : sequence of float, optional
        Exposure of each frame in seconds; required by ``method="exposure"``.

    Returns
    -------
    ndarray float64
        Weights; 0 for frames whose measurement is missing or not positive.

    Raises
    ------
    ValueError
        For an unknown method, missing or mismatched exposures, or when no frame has a valid
        weight.
    """
    if method not in WEIGHT_METHODS:
        raise ValueError(f"unknown weighting method {method!r}; expected one of {WEIGHT_METHODS}")
    n = len(qualities)
    if method == "exposure":
        if exposures is None:
            raise ValueError("weighting by exposure needs the exposures of the frames")
        if len(exposures) != n:
            raise ValueError(f"{len(exposures)} exposures given for {n} frames")
        raw = np.array([float(e) for e in exposures], dtype=np.float64)
    elif method == "none":
        return np.ones(n, dtype=np.float64)
    else:
        column = {"noise": "noise", "stars": "n_stars", "fwhm": "fwhm"}[method]
        values = _column(qualities, column)
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = values if method == "stars" else 1.0 / values**2
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        valid = np.isfinite(raw) & (raw > 0)
    if not valid.any():
        raise ValueError(
            f"no frame has a valid measurement for weighting by {method!r} ({n} frames)"
        )
    weights = np.where(valid, raw, 0.0)
    return weights / float(weights[valid].mean())


def parse_percent(text: str | float) -> float:
    """Parse a percentage such as ``"80"``, ``"80%"`` or ``80.0``; must be in (0, 100].

    Raises
    ------
    ValueError
        Naming the value, when it is not a number in (0, 100].
    """
    value: float
    if isinstance(text, bool):
        raise ValueError(f"percent must be a number in (0, 100], got {text!r}")
    if isinstance(text, str):
        stripped = text.strip()
        if stripped.endswith("%"):
            stripped = stripped[:-1].strip()
        try:
            value = float(stripped)
        except ValueError as err:
            raise ValueError(
                f"percent must be a number in (0, 100] such as 80 or 80%, got {text!r}"
            ) from err
    else:
        try:
            value = float(text)
        except (TypeError, ValueError) as err:
            raise ValueError(f"percent must be a number in (0, 100], got {text!r}") from err
    if not (math.isfinite(value) and 0.0 < value <= 100.0):
        raise ValueError(f"percent must be a number in (0, 100], got {text!r}")
    return value
