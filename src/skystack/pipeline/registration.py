"""Registering a set of frames: measure every frame, pick the reference, select, align, warp.

Two passes over the files, one frame in memory at a time: the first detects stars and
measures quality (only the star lists are kept), the second matches each selected frame to
the reference and yields it warped onto the reference grid. :func:`register_files` writes the
warped frames and ``registration.json`` into an output folder built as ``OUT_DIR.partial``;
``stack`` consumes :func:`registered_frames` directly.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Iterator, Sequence
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
from skystack.pipeline.calibration import output_names
from skystack.register.match import match_stars
from skystack.register.transform import Match, Transform
from skystack.register.warp import Warped, warp_image

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
]

_log = logging.getLogger(__name__)


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


@dataclass
class FrameRow:
    """One frame's line of the registration report (the sidecar JSON's frame row)."""

    path: Path
    accepted: bool = False
    reason: str | None = None
    quality: FrameQuality | None = None
    score: float | None = None
    match: Match | None = None

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
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def analyse_frame(
    path: Path, image: Image, config: RegistrationConfig, exposure: float | None
) -> FrameAnalysis:
    """Detect the stars of one prepared image and measure its quality."""
    lum = luminance(image)
    stars = find_stars(lum, threshold=config.threshold, min_stars=config.min_stars)
    quality = measure_quality(lum, stars=stars)
    return FrameAnalysis(
        path=path, shape=image.shape, stars=stars, quality=quality, exposure=exposure
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


def plan_registration(
    paths: Sequence[Path],
    config: RegistrationConfig,
    *,
    progress: ProgressCallback | None = None,
) -> RegistrationPlan:
    """First pass: read and measure every frame, choose the reference, select frames.

    Unreadable frames and frames whose shape differs from the first readable one's are
    rejected with the reason (and a warning).
    """
    rows = [FrameRow(path=Path(p)) for p in paths]
    analyses: list[FrameAnalysis | None] = []
    shape: tuple[int, ...] | None = None
    for index, row in enumerate(rows):
        try:
            frame = read(row.path)
            image = prepare_image(frame, config)
            if shape is not None and image.shape != shape:
                raise GeometryError(
                    f"{row.path}: shape {image.shape} differs from the first frame's {shape}"
                )
            if not np.isfinite(image).any() or not np.nanmax(image) > np.nanmin(image):
                raise GeometryError(f"{row.path}: the frame is empty (constant, NaN or zero)")
            analysis = analyse_frame(row.path, image, config, frame.meta.exposure)
            shape = shape or image.shape
            row.quality = analysis.quality
            analyses.append(analysis)
        except SkystackError as err:
            _skip(row, str(err))
            analyses.append(None)
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


def registered_frames(
    plan: RegistrationPlan,
    config: RegistrationConfig,
    *,
    skip: set[int] | frozenset[int] = frozenset(),
    progress: ProgressCallback | None = None,
) -> Iterator[RegisteredFrame]:
    """Second pass: align and warp each selected frame (reference first), one at a time.

    Frames that fail are marked rejected in ``plan.rows`` with the reason (and a warning);
    indices in ``skip`` are passed over (already done by an interrupted run).
    """
    reference = plan.analyses[plan.reference]
    assert reference is not None
    needs_image = config.method in ("phase", "orb") or (
        config.method == "stars" and not plan.star_field
    )
    reference_image = prepare_image(read(reference.path), config) if needs_image else None
    rng = np.random.default_rng(config.seed)
    order = [plan.reference] + [i for i in plan.selected if i != plan.reference]
    for done, index in enumerate(order, start=1):
        row = plan.rows[index]
        analysis = plan.analyses[index]
        if index in skip or analysis is None:
            continue
        try:
            frame = read(row.path)
            image = prepare_image(frame, config)
            if index == plan.reference:
                match = Match(Transform.identity(), len(reference.stars), 0.0, config.method)
            else:
                match = align_frame(
                    image, analysis, reference, reference_image, config,
                    star_field=plan.star_field, rng=rng,
                )  # fmt: skip
            warped = warp_image(
                image,
                match.transform,
                shape=reference.shape[:2],
                interpolation=config.interpolation,
                clamp=config.clamp,
            )
        except SkystackError as err:
            row.match = None
            _skip(row, str(err))
        else:
            row.match = match
            row.accepted = True
            row.reason = None
            if match.mirrored:
                _log.warning("%s is mirrored relative to the reference", row.path)
            yield RegisteredFrame(index=index, frame=frame, warped=warped, row=row)
        if progress is not None:
            progress(done, len(order), "register")


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

    The folder is built as ``OUT_DIR.partial`` and renamed when complete; a re-run of the same
    command resumes from it.

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
    partial = out_dir.with_name(out_dir.name + ".partial")
    settings = _settings(config)
    _prepare_partial(partial, paths, settings)
    plan = plan_registration(paths, config, progress=progress)
    names = output_names(paths)
    done: set[int] = set()
    rows_dir = partial / ".rows"
    rows_dir.mkdir(exist_ok=True)
    for index, name in enumerate(names):
        saved = rows_dir / f"{name}.json"
        if (partial / name).exists() and saved.exists():
            _restore_row(plan.rows[index], json.loads(saved.read_text()))
            done.add(index)
    for item in registered_frames(plan, config, skip=done, progress=progress):
        name = names[item.index]
        history = [
            "skystack register: " + line
            for line in (
                f"reference {plan.rows[plan.reference].path.name}",
                f"method {item.row.match.method}, transform {config.transform}"  # type: ignore[union-attr]
                f", {config.interpolation} warp",
            )
        ]
        write(Frame(item.warped.image, item.frame.meta.replace(cfa=None)), partial / name,
              history=history, overwrite=True)  # fmt: skip
        (rows_dir / f"{name}.json").write_text(json.dumps(_row_state(item.row)))
    report = {
        "reference": str(plan.rows[plan.reference].path),
        "settings": settings,
        "frames": [row.to_dict() for row in plan.rows],
    }
    from skystack.io._atomic import atomic_path

    with atomic_path(partial / "registration.json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(rows_dir)
    (partial / ".settings.json").unlink(missing_ok=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
    outputs = tuple(out_dir / names[i] for i, r in enumerate(plan.rows) if r.accepted)
    return RegistrationRun(
        out_dir=out_dir,
        reference=plan.rows[plan.reference].path,
        outputs=outputs,
        rows=plan.rows,
        report=out_dir / "registration.json",
    )


def _settings(config: RegistrationConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}


def _prepare_partial(partial: Path, paths: list[Path], settings: dict[str, Any]) -> None:
    stamp_text = json.dumps(
        {"frames": [str(p) for p in paths], "settings": settings}, sort_keys=True
    )
    stamp = partial / ".settings.json"
    if partial.exists() and (not stamp.exists() or stamp.read_text() != stamp_text):
        _log.info("discarding %s: made with other settings", partial)
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    stamp.write_text(stamp_text)


def _row_state(row: FrameRow) -> dict[str, Any]:
    match = row.match
    assert match is not None
    return {
        "transform": match.transform.to_list(),
        "n_inliers": match.n_inliers,
        "rms_px": match.rms_px,
        "method": match.method,
    }


def _restore_row(row: FrameRow, state: dict[str, Any]) -> None:
    row.match = Match(
        transform=Transform.from_list(state["transform"]),
        n_inliers=int(state["n_inliers"]),
        rms_px=float(state["rms_px"]),
        method=state["method"],
    )
    row.accepted = True
    row.reason = None
