"""Registering a set of frames: measure every frame, pick the reference, select, align, warp.

Two passes over the files, one frame in memory at a time: the first detects stars and
measures quality (only the star lists are kept), the second matches each selected frame to
the reference and yields it warped onto the reference grid. :func:`register_files` writes the
warped frames and ``registration.json`` into an output folder built as ``OUT_DIR.partial``;
``stack`` consumes :func:`registered_frames` directly.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skystack._typing import Image, ProgressCallback
from skystack.config import RegistrationConfig
from skystack.detect import FrameQuality, StarTable, find_stars, luminance, measure_quality
from skystack.detect.quality import quality_scores, select_frames
from skystack.errors import (
    FrameSkippedWarning,
    GeometryError,
    MissingFileError,
    OutputExistsError,
    RegistrationError,
    SkystackError,
)
from skystack.frame import Frame
from skystack.io import read, write
from skystack.io._atomic import atomic_path
from skystack.pipeline._partial import finish_partial, open_partial
from skystack.pipeline._workers import process_pool, worker_count
from skystack.pipeline.calibration import output_names
from skystack.register.match import match_stars
from skystack.register.transform import Match, Transform
from skystack.register.warp import Warped, warp_image
from skystack.stack.normalize import FrameStats, frame_stats

__all__ = [
    "FrameAnalysis",
    "FrameRow",
    "RegistrationPlan",
    "RegistrationRun",
    "prepare_image",
    "analyse_frame",
    "plan_registration",
    "align_frame",
    "registered_frames",
    "register_files",
    "load_registration",
]

_log = logging.getLogger(__name__)

_QUALITY_STARS = 4
"""Stars measured per frame, as a multiple of ``max_stars`` (the count reported is capped)."""


def prepare_image(frame: Frame, config: RegistrationConfig) -> Image:
    """The frame's data as registration sees it: CFA mosaics debayered, float32."""
    data = frame.data
    cfa = config.cfa or frame.meta.cfa
    if data.ndim == 2 and cfa is not None and config.debayer != "none":
        from skystack.color.debayer import debayer

        data = debayer(data, pattern=cfa, method=config.debayer)
    return np.asarray(data, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class FrameAnalysis:
    """What the first pass learns about one frame (no pixels kept)."""

    path: Path
    shape: tuple[int, ...]
    stars: StarTable
    quality: FrameQuality
    exposure: float | None
    stats: FrameStats | None = None
    """Background location and scale per channel, for normalisation (before warping, which
    smooths the noise differently in every frame)."""


@dataclass
class FrameRow:
    """One frame's line of the registration report (the sidecar JSON's frame row)."""

    path: Path
    accepted: bool = False
    reason: str | None = None
    quality: FrameQuality | None = None
    score: float | None = None
    match: Match | None = None
    stats: FrameStats | None = None
    exposure: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: path, accepted, reason, quality figures, transform and match figures."""
        quality = self.quality.to_dict() if self.quality is not None else {}
        match = self.match
        return {
            "path": str(self.path),
            "accepted": self.accepted,
            "reason": self.reason,
            "stars": quality.get("n_stars"),
            "fwhm": quality.get("fwhm"),
            "eccentricity": quality.get("eccentricity"),
            "background": quality.get("background"),
            "noise": quality.get("noise"),
            "score": self.score,
            "method": match.method if match is not None else None,
            "transform": match.transform.to_list() if match is not None else None,
            "matched_stars": match.n_inliers if match is not None else None,
            "rms_px": _finite_or_none(match.rms_px) if match is not None else None,
            "mirrored": match.mirrored if match is not None else None,
            "stats": self.stats.to_dict() if self.stats is not None else None,
            "exposure": self.exposure,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameRow:
        """Rebuild a row from :meth:`to_dict` output (a finished run's ``registration.json``)."""

        def number(key: str) -> float:
            value = data.get(key)
            return float("nan") if value is None else float(value)

        quality = None
        if data.get("stars") is not None:
            quality = FrameQuality(
                n_stars=int(data["stars"]),
                fwhm=number("fwhm"),
                eccentricity=number("eccentricity"),
                background=number("background"),
                noise=number("noise"),
            )
        match = None
        if data.get("transform") is not None:
            match = Match(
                transform=Transform.from_list(data["transform"]),
                n_inliers=int(data.get("matched_stars") or 0),
                rms_px=number("rms_px"),
                method=data.get("method") or "stars",
            )
        stats = None
        if data.get("stats") is not None:
            stats = FrameStats(
                location=np.asarray(data["stats"]["location"], dtype=np.float64),
                scale=np.asarray(data["stats"]["scale"], dtype=np.float64),
            )
        return cls(
            path=Path(data["path"]),
            accepted=bool(data["accepted"]),
            reason=data.get("reason"),
            quality=quality,
            score=data.get("score"),
            match=match,
            stats=stats,
            exposure=data.get("exposure"),
        )


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def analyse_frame(
    path: Path, image: Image, config: RegistrationConfig, exposure: float | None
) -> FrameAnalysis:
    """Detect the stars of one prepared image and measure its quality."""
    lum = luminance(image)
    # Quality statistics saturate long before a few thousand stars; matching uses max_stars.
    stars = find_stars(
        lum,
        threshold=config.threshold,
        min_stars=config.min_stars,
        max_stars=_QUALITY_STARS * config.max_stars,
    )
    quality = measure_quality(lum, stars=stars)
    return FrameAnalysis(
        path=path,
        shape=image.shape,
        stars=stars,
        quality=quality,
        exposure=exposure,
        stats=frame_stats(image),
    )


@dataclass(frozen=True, eq=False)
class RegistrationPlan:
    """The reference and the frames to align, decided from the first pass."""

    reference: int
    analyses: tuple[FrameAnalysis | None, ...]
    rows: tuple[FrameRow, ...]
    selected: tuple[int, ...]
    star_field: bool
    """Whether the reference has enough stars for star matching."""


def _measure_path(
    path: Path, config: RegistrationConfig
) -> tuple[FrameAnalysis | None, str | None, list[tuple[type[Warning], str]]]:
    """Read, prepare and measure one frame (in a worker process or in-process)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = read(path)
            image = prepare_image(frame, config)
            if not np.isfinite(image).any() or not np.nanmax(image) > np.nanmin(image):
                raise GeometryError(f"{path}: the frame is empty (constant, NaN or zero)")
            analysis = analyse_frame(path, image, config, frame.meta.exposure)
            error = None
        except SkystackError as err:
            analysis, error = None, str(err)
    return analysis, error, [(w.category, str(w.message)) for w in caught]


def _reemit(caught: list[tuple[type[Warning], str]]) -> None:
    for category, message in caught:
        warnings.warn(message, category, stacklevel=3)


def plan_registration(
    paths: Sequence[Path],
    config: RegistrationConfig,
    *,
    progress: ProgressCallback | None = None,
    executor: Executor | None = None,
) -> RegistrationPlan:
    """First pass: read and measure every frame, choose the reference, select frames.

    Unreadable frames and frames whose shape differs from the first readable one's are
    rejected with the reason (and a warning). With an ``executor`` (a process pool) frames
    are measured in parallel.
    """
    rows = [FrameRow(path=Path(p)) for p in paths]
    analyses: list[FrameAnalysis | None] = []
    shape: tuple[int, ...] | None = None
    mapper = executor.map if executor is not None else map
    results = mapper(_measure_path, [row.path for row in rows], [config] * len(rows))
    for index, (row, (analysis, error, caught)) in enumerate(zip(rows, results, strict=True)):
        _reemit(caught)
        if analysis is not None and shape is not None and analysis.shape != shape:
            analysis, error = (
                None,
                (f"{row.path}: shape {analysis.shape} differs from the first frame's {shape}"),
            )
        if analysis is None:
            _skip(row, str(error))
        else:
            shape = shape or analysis.shape
            row.quality = analysis.quality
            row.stats = analysis.stats
            row.exposure = analysis.exposure
        analyses.append(analysis)
        if progress is not None:
            progress(index + 1, len(rows), "measure")
    usable = [i for i, a in enumerate(analyses) if a is not None]
    if len(usable) == 0:
        raise MissingFileError(f"none of the {len(rows)} frames could be read")
    qualities = [analyses[i].quality for i in usable]  # type: ignore[union-attr]
    scores = quality_scores(qualities)
    for i, score in zip(usable, scores, strict=True):
        rows[i].score = float(score)
    reference = _reference_index(rows, usable, scores, config)
    keep = select_frames(qualities, percent=config.select_percent, max_fwhm=config.max_fwhm)
    selected: list[int] = []
    for i, kept in zip(usable, keep, strict=True):
        if kept or i == reference:
            selected.append(i)
        else:
            rows[i].reason = _selection_reason(analyses[i].quality, config)  # type: ignore[union-attr]
    ref_stars = len(analyses[reference].stars)  # type: ignore[union-attr]
    return RegistrationPlan(
        reference=reference,
        analyses=tuple(analyses),
        rows=tuple(rows),
        selected=tuple(selected),
        star_field=ref_stars >= config.min_stars,
    )


def _skip(row: FrameRow, reason: str) -> None:
    row.accepted = False
    row.reason = reason
    warnings.warn(f"skipping frame: {reason}", FrameSkippedWarning, stacklevel=3)


def _reference_index(
    rows: list[FrameRow], usable: list[int], scores: np.ndarray, config: RegistrationConfig
) -> int:
    if config.reference is not None:
        wanted = Path(config.reference).resolve()
        for i in usable:
            if rows[i].path.resolve() == wanted:
                return i
        from skystack.errors import ConfigError

        raise ConfigError(f"--reference {config.reference}: not among the readable input frames")
    if not np.any(scores > 0):
        return usable[0]
    return usable[int(np.argmax(scores))]


def _selection_reason(quality: FrameQuality, config: RegistrationConfig) -> str:
    if config.max_fwhm is not None and not quality.fwhm <= config.max_fwhm:
        return f"not selected: FWHM {quality.fwhm:.2f} px above --max-fwhm {config.max_fwhm:g}"
    return f"not selected: quality score outside the best {config.select_percent:g}%"


def align_frame(
    image: Image,
    analysis: FrameAnalysis,
    reference: FrameAnalysis,
    reference_image: Image | None,
    config: RegistrationConfig,
    *,
    star_field: bool,
    rng: np.random.Generator,
) -> Match:
    """The transform of one frame onto the reference, by the configured method.

    With ``stars`` on a star field a failed match is final (a frame through clouds or of
    noise is rejected, never aligned by a less certain method); when the reference is not a
    star field, phase correlation and then ORB features are tried.

    Raises
    ------
    RegistrationError
        With the reason the frame could not be aligned.
    """
    method = config.method
    if method == "none":
        return Match(Transform.identity(), 0, float("nan"), "none")
    if method == "stars" and star_field:
        try:
            return match_stars(
                analysis.stars.brightest(config.max_stars).xy,
                reference.stars.brightest(config.max_stars).xy,
                model=config.transform,
                control_points=config.control_points,
                allow_mirror=config.allow_mirror,
                rng=rng,
            )
        except RegistrationError as err:
            n = len(analysis.stars)
            raise RegistrationError(f"{analysis.path}: {err} ({n} stars detected)") from err
    if reference_image is None:
        raise RegistrationError(f"{analysis.path}: no reference image for {method} registration")
    from skystack.register.features import orb_match
    from skystack.register.phase import phase_correlate

    lum, ref_lum = luminance(image), luminance(reference_image)
    if method == "phase":
        attempts = ("phase",)
    elif method == "orb":
        attempts = ("orb",)
    else:
        attempts = ("phase", "orb")
    reasons = []
    for attempt in attempts:
        try:
            if attempt == "phase":
                return phase_correlate(lum, ref_lum)
            return orb_match(lum, ref_lum, model=config.transform, rng=rng)
        except RegistrationError as err:
            reasons.append(f"{attempt}: {err}")
    raise RegistrationError(f"{analysis.path}: " + "; ".join(reasons))


@dataclass(frozen=True, eq=False)
class RegisteredFrame:
    """A frame warped onto the reference grid, with its report row."""

    index: int
    frame: Frame
    warped: Warped
    row: FrameRow


@dataclass(frozen=True, eq=False)
class _AlignJob:
    """Everything one frame's second pass needs (small enough to send to a worker)."""

    index: int
    path: Path
    analysis: FrameAnalysis
    reference: FrameAnalysis
    is_reference: bool
    star_field: bool
    config: RegistrationConfig


def _needs_reference_image(config: RegistrationConfig, star_field: bool) -> bool:
    return config.method in ("phase", "orb") or (config.method == "stars" and not star_field)


@functools.lru_cache(maxsize=1)
def _reference_image(path: Path, config: RegistrationConfig) -> Image:
    """The prepared reference image, read once per process for the image-based methods."""
    return prepare_image(read(path), config)


def _align_and_warp(job: _AlignJob) -> tuple[Frame, Match, Warped]:
    config = job.config
    frame = read(job.path)
    image = prepare_image(frame, config)
    if job.is_reference:
        match = Match(Transform.identity(), len(job.reference.stars), 0.0, config.method)
    else:
        reference_image = (
            _reference_image(job.reference.path, config)
            if _needs_reference_image(config, job.star_field)
            else None
        )
        match = align_frame(
            image, job.analysis, job.reference, reference_image, config,
            star_field=job.star_field, rng=np.random.default_rng([config.seed, job.index]),
        )  # fmt: skip
    if config.drizzle != 1.0:
        warped = _drizzle_frame(frame, image, match.transform, job.reference.shape[:2], config)
    else:
        warped = warp_image(
            image,
            match.transform,
            shape=job.reference.shape[:2],
            interpolation=config.interpolation,
            clamp=config.clamp,
        )
    return frame, match, warped


def _drizzle_frame(
    frame: Frame,
    image: Image,
    transform: Transform,
    reference_shape: tuple[int, ...],
    config: RegistrationConfig,
) -> Warped:
    """One frame drizzled onto the reference grid scaled by ``config.drizzle``.

    Bayer frames are drizzled straight from the mosaic (each sensor pixel into its own colour),
    without debayering; pixels no drop reached are NaN, filled by the other frames' drops.
    """
    from skystack.stack.accumulate import DrizzleAccumulator

    cfa = config.cfa or frame.meta.cfa
    mosaic = frame.data.ndim == 2 and cfa is not None
    channels = 3 if mosaic or image.ndim == 3 else 1
    accumulator = DrizzleAccumulator(
        (int(reference_shape[0]), int(reference_shape[1])),
        scale=config.drizzle,
        pixfrac=config.pixfrac,
        channels=channels,
    )
    if mosaic:
        accumulator.add_cfa(frame.data, transform, pattern=cfa)
    else:
        accumulator.add(image, transform)
    result = accumulator.result()
    weight = result.weight if result.weight.ndim == 2 else result.weight.min(axis=-1)
    return Warped(image=result.image, footprint=weight > 0)


def _jobs(
    plan: RegistrationPlan, config: RegistrationConfig, skip: Iterable[int]
) -> list[_AlignJob]:
    reference = plan.analyses[plan.reference]
    assert reference is not None
    skipped = set(skip)
    order = [plan.reference] + [i for i in plan.selected if i != plan.reference]
    return [
        _AlignJob(
            index=i,
            path=plan.rows[i].path,
            analysis=plan.analyses[i],  # type: ignore[arg-type]
            reference=reference,
            is_reference=i == plan.reference,
            star_field=plan.star_field,
            config=config,
        )
        for i in order
        if i not in skipped and plan.analyses[i] is not None
    ]


def _accept(row: FrameRow, match: Match) -> None:
    row.match = match
    row.accepted = True
    row.reason = None
    if match.mirrored:
        _log.warning("%s is mirrored relative to the reference", row.path)


def registered_frames(
    plan: RegistrationPlan,
    config: RegistrationConfig,
    *,
    skip: Iterable[int] = (),
    progress: ProgressCallback | None = None,
) -> Iterator[RegisteredFrame]:
    """Second pass: align and warp each selected frame (reference first), one at a time.

    Frames that fail are marked rejected in ``plan.rows`` with the reason (and a warning);
    indices in ``skip`` are passed over (already done by an interrupted run).
    """
    jobs = _jobs(plan, config, skip)
    for done, job in enumerate(jobs, start=1):
        row = plan.rows[job.index]
        try:
            frame, match, warped = _align_and_warp(job)
        except SkystackError as err:
            row.match = None
            _skip(row, str(err))
        else:
            _accept(row, match)
            yield RegisteredFrame(index=job.index, frame=frame, warped=warped, row=row)
        if progress is not None:
            progress(done, len(jobs), "register")


def _history(reference: Path, match: Match, config: RegistrationConfig) -> list[str]:
    return [
        f"skystack register: reference {reference.name}",
        f"skystack register: method {match.method}, transform {config.transform}, "
        f"{config.interpolation} warp",
    ]


def _write_registered(frame: Frame, warped: Warped, target: Path, history: list[str]) -> None:
    write(Frame(warped.image, frame.meta.replace(cfa=None)), target, history=history,
          overwrite=True)  # fmt: skip


def _register_and_write(
    job: _AlignJob, target: Path
) -> tuple[dict[str, Any] | None, str | None, list[tuple[type[Warning], str]]]:
    """Worker task: align, warp and write one frame; returns its match state or the error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame, match, warped = _align_and_warp(job)
            _write_registered(
                frame, warped, target, _history(job.reference.path, match, job.config)
            )
            state, error = _match_state(match), None
        except SkystackError as err:
            state, error = None, str(err)
    return state, error, [(w.category, str(w.message)) for w in caught]


@dataclass(frozen=True)
class RegistrationRun:
    """What :func:`register_files` wrote."""

    out_dir: Path
    reference: Path
    outputs: tuple[Path, ...]
    rows: tuple[FrameRow, ...]
    report: Path = field(default=Path())

    @property
    def rejected(self) -> tuple[FrameRow, ...]:
        """Rows of the frames not registered."""
        return tuple(r for r in self.rows if not r.accepted)


def register_files(
    paths: Sequence[Path],
    out_dir: Path,
    config: RegistrationConfig,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> RegistrationRun:
    """Register frames into ``out_dir``: ``<stem>.fits`` per accepted frame (float32, on the
    reference grid, NaN outside its footprint) and ``registration.json``.

    Large sets are processed by one worker process per CPU (``config.jobs``). The folder is
    built as ``OUT_DIR.partial`` and renamed when complete; a re-run of the same command
    resumes from it.

    Raises
    ------
    OutputExistsError
        When ``out_dir`` exists and ``overwrite`` is False.
    MissingFileError
        When no frame can be read.
    """
    out_dir = Path(out_dir)
    paths = [Path(p) for p in paths]
    if out_dir.exists() and not overwrite:
        raise OutputExistsError(f"{out_dir}: output exists already; pass --overwrite to replace it")
    settings = _settings(config)
    stamp = json.dumps({"frames": [str(p) for p in paths], "settings": settings}, sort_keys=True)
    partial = open_partial(out_dir, stamp)
    names = output_names(paths)
    rows_dir = partial / ".rows"
    rows_dir.mkdir(exist_ok=True)
    with process_pool(worker_count(config.jobs, paths)) as executor:
        plan = plan_registration(paths, config, progress=progress, executor=executor)
        done: set[int] = set()
        for index, name in enumerate(names):
            saved = rows_dir / f"{name}.json"
            if (partial / name).exists() and saved.exists():
                _accept(plan.rows[index], _match_from_state(json.loads(saved.read_text())))
                done.add(index)
        if executor is None:
            for item in registered_frames(plan, config, skip=done, progress=progress):
                history = _history(plan.rows[plan.reference].path, item.row.match, config)  # type: ignore[arg-type]
                _write_registered(item.frame, item.warped, partial / names[item.index], history)
                saved = rows_dir / f"{names[item.index]}.json"
                saved.write_text(json.dumps(_match_state(item.row.match)))  # type: ignore[arg-type]
        else:
            _register_in_pool(executor, plan, config, partial, names, done, progress)
    report = {
        "reference": str(plan.rows[plan.reference].path),
        "settings": settings,
        "frames": [row.to_dict() for row in plan.rows],
    }
    with atomic_path(partial / "registration.json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(rows_dir)
    finish_partial(partial, out_dir)
    outputs = tuple(out_dir / names[i] for i, r in enumerate(plan.rows) if r.accepted)
    return RegistrationRun(
        out_dir=out_dir,
        reference=plan.rows[plan.reference].path,
        outputs=outputs,
        rows=plan.rows,
        report=out_dir / "registration.json",
    )


def load_registration(
    out_dir: Path, paths: Sequence[Path], config: RegistrationConfig
) -> RegistrationRun | None:
    """A finished :func:`register_files` run in ``out_dir`` made from ``paths`` with ``config``,
    or None if there is none (or it was made differently, or an output is missing)."""
    report_path = Path(out_dir) / "registration.json"
    if not report_path.is_file():
        return None
    try:
        report = json.loads(report_path.read_text())
        if report.get("settings") != _settings(config):
            return None
        rows = tuple(FrameRow.from_dict(row) for row in report["frames"])
    except (ValueError, KeyError, TypeError):
        return None
    if [row.path for row in rows] != [Path(p) for p in paths]:
        return None
    names = output_names([row.path for row in rows])
    outputs = tuple(Path(out_dir) / n for n, r in zip(names, rows, strict=True) if r.accepted)
    if not all(path.is_file() for path in outputs):
        return None
    return RegistrationRun(
        out_dir=Path(out_dir),
        reference=Path(report["reference"]),
        outputs=outputs,
        rows=rows,
        report=report_path,
    )


def _register_in_pool(
    executor: Executor,
    plan: RegistrationPlan,
    config: RegistrationConfig,
    partial: Path,
    names: list[str],
    done: set[int],
    progress: ProgressCallback | None,
) -> None:
    jobs = _jobs(plan, config, done)
    futures = {
        executor.submit(_register_and_write, job, partial / names[job.index]): job for job in jobs
    }
    for count, future in enumerate(as_completed(futures), start=1):
        job = futures[future]
        row = plan.rows[job.index]
        state, error, caught = future.result()
        _reemit(caught)
        if state is None:
            row.match = None
            _skip(row, str(error))
        else:
            _accept(row, _match_from_state(state))
            (partial / ".rows" / f"{names[job.index]}.json").write_text(json.dumps(state))
        if progress is not None:
            progress(count, len(jobs), "register")


def _settings(config: RegistrationConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}


def _match_state(match: Match) -> dict[str, Any]:
    return {
        "transform": match.transform.to_list(),
        "n_inliers": match.n_inliers,
        "rms_px": match.rms_px,
        "method": match.method,
    }


def _match_from_state(state: dict[str, Any]) -> Match:
    return Match(
        transform=Transform.from_list(state["transform"]),
        n_inliers=int(state["n_inliers"]),
        rms_px=float(state["rms_px"]),
        method=state["method"],
    )
