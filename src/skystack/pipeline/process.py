"""``skystack process``: a whole night's session, from its folder to finished pictures and a report.

The session is discovered (:mod:`skystack.pipeline.session`), then for every group of lights:
masters from the group's calibration frames, calibration, registration and stacking
(:func:`skystack.pipeline.stacking.stack_files`), and the finished picture
(:func:`skystack.pipeline.enhance.enhance_file`). Intermediates live under ``OUT_DIR/cache/``
keyed by the content of the input files and the settings of each step
(:mod:`skystack.pipeline.runner`): a second run with the same recipe redoes nothing, a changed
setting redoes only the steps from it on, and a killed run resumes. Last, ``report.html``.

Output layout (``OUT_DIR`` defaults to ``SESSION_DIR/skystack``)::

    OUT_DIR/report.html, OUT_DIR/recipe.toml
    OUT_DIR/<group>/<group>.fits (+ .json sidecar, coverage and rejection maps), .tif, .jpg
    OUT_DIR/cache/   hashes.json, masters/, work/<group>/, thumbs/, steps/<group>.json
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from skystack._typing import ProgressCallback
from skystack.config import CalibrationConfig, MasterSources, PipelineConfig
from skystack.errors import SkystackError
from skystack.io import read
from skystack.io._atomic import atomic_path
from skystack.pipeline.runner import ContentHashes, StepRecords
from skystack.pipeline.session import LightGroup, Session, discover_session
from skystack.recipe import dump_recipe, section_settings, settings_key

__all__ = ["GroupRun", "ProcessRun", "process_session", "default_output_dir", "recipe_history"]

_log = logging.getLogger(__name__)

_OUTPUT_FOLDER = "skystack"
_THUMB_SIZE = 160
_PREVIEW_SIZE = 720


@dataclass(frozen=True)
class GroupRun:
    """What ``process`` made of one group of lights."""

    group: LightGroup
    folder: Path
    outputs: dict[str, Path]
    """Label -> file: ``stack``, ``sidecar``, ``tiff``, ``jpeg`` (those written)."""
    reused: tuple[str, ...]
    """Steps skipped because the cache held their result."""
    stacked: int
    masters: Path | None = None
    """Folder of the group's calibration masters (None without calibration frames)."""
    error: str | None = None
    """Why the group could not be stacked (the other groups go on)."""


@dataclass(frozen=True)
class ProcessRun:
    """What one ``process`` run found, made and measured."""

    session: Session
    out_dir: Path
    recipe: Path
    report: Path
    groups: tuple[GroupRun, ...]
    timings: dict[str, float]


def default_output_dir(session_dir: Path) -> Path:
    """``SESSION_DIR/skystack``: the one folder ``process`` writes inside an input folder."""
    return Path(session_dir) / _OUTPUT_FOLDER


def recipe_history(config: PipelineConfig) -> list[str]:
    """The recipe as FITS HISTORY lines, one ``recipe [section] key = value`` per setting."""
    lines = []
    for section in ("calibration", "registration", "stack", "enhance"):
        for key, value in section_settings(config, section).items():
            if value is not None:
                lines.append(f"recipe [{section}] {key} = {json.dumps(value)}")
    return lines


def process_session(
    session_dir: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    config: PipelineConfig | None = None,
    session: Session | None = None,
    progress: ProgressCallback | None = None,
) -> ProcessRun:
    """Process every group of lights found in ``session_dir``.

    Parameters
    ----------
    session_dir : path-like
        The night's folder (never modified; only ``OUT_DIR`` is written).
    out_dir : path-like, optional
        Default ``SESSION_DIR/skystack``. Owned by ``process``: a re-run updates it.
    config : PipelineConfig, optional
        The recipe (default: every default).
    session : Session, optional
        An already discovered session (the command line discovers it to print it first).
    progress : callable, optional
        ``progress(done, total, step)``; steps are named ``GROUP: step``.

    Returns
    -------
    ProcessRun

    Raises
    ------
    SkystackError
        No group could be stacked (each group's reason is in the message).
    """
    config = config or PipelineConfig()
    root = Path(session_dir)
    out = Path(out_dir) if out_dir is not None else default_output_dir(root)
    session = session or discover_session(root, exclude=[out])
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    _clear_stale_work(out, session)
    hashes = ContentHashes(cache / "hashes.json")
    timings: dict[str, float] = {}
    recipe_text = dump_recipe(config)
    recipe_path = out / "recipe.toml"
    with atomic_path(recipe_path) as tmp:
        Path(tmp).write_text(recipe_text)
    runs = []
    try:
        for group in session.groups:
            runs.append(_process_group(group, out, cache, config, hashes, timings, progress))
    finally:
        hashes.save()
    start = time.perf_counter()
    report = _write_report(session, out, runs, config, recipe_text, timings, hashes)
    timings["report"] = time.perf_counter() - start
    if not any(run.error is None for run in runs):
        reasons = "; ".join(f"{run.group.name}: {run.error}" for run in runs)
        raise SkystackError(f"{root}: no group could be stacked ({reasons}); see {report}")
    return ProcessRun(
        session=session, out_dir=out, recipe=recipe_path, report=report,
        groups=tuple(runs), timings=timings,
    )  # fmt: skip


def _process_group(
    group: LightGroup,
    out: Path,
    cache: Path,
    config: PipelineConfig,
    hashes: ContentHashes,
    timings: dict[str, float],
    progress: ProgressCallback | None,
) -> GroupRun:
    from skystack.pipeline.enhance import enhance_file
    from skystack.pipeline.stacking import sidecar_path, stack_files

    def report(done: int, total: int, what: str) -> None:
        if progress is not None:
            progress(done, total, f"{group.name}: {what}")

    folder = out / group.name
    folder.mkdir(parents=True, exist_ok=True)
    records = StepRecords(cache / "steps" / f"{group.name}.json")
    lights = [f.path for f in group.lights]
    outputs = {"stack": folder / f"{group.name}.fits"}
    outputs["sidecar"] = sidecar_path(outputs["stack"])
    reused: list[str] = []
    clock = time.perf_counter()
    light_hashes = hashes.of_all(lights)
    try:
        calibration, masters_key = _masters(group, cache, config.calibration, hashes, report)
    except SkystackError as err:
        return GroupRun(group, folder, {}, (), 0, error=f"calibration masters: {err}")
    masters_dir = cache / "masters" / masters_key if masters_key else None
    timings[f"{group.name}: masters"] = time.perf_counter() - clock
    calibration_settings = section_settings(config, "calibration")
    work_key = settings_key(light_hashes, masters_key, calibration_settings)
    stack_key = settings_key(
        work_key, section_settings(config, "registration"), section_settings(config, "stack")
    )
    clock = time.perf_counter()
    if records.done("stack", stack_key):
        reused.append("stack")
    else:
        stack = dataclasses.replace(config.stack, keep_cache=True, maps=True)
        try:
            run = stack_files(
                lights, outputs["stack"], calibration=calibration,
                registration=config.registration, stack=stack, overwrite=True, progress=report,
                cache_dir=cache / "work" / group.name, cache_key=work_key,
                history=recipe_history(config),
            )  # fmt: skip
        except SkystackError as err:
            _log.warning("%s: not stacked: %s", group.name, err)
            return GroupRun(group, folder, {}, tuple(reused), 0, masters_dir, error=str(err))
        records.record("stack", stack_key, [outputs["stack"], outputs["sidecar"], *run.maps])
    timings[f"{group.name}: stack"] = time.perf_counter() - clock
    outputs["tiff"] = folder / f"{group.name}.tif"
    outputs["jpeg"] = folder / f"{group.name}.jpg"
    enhance_key = settings_key(stack_key, section_settings(config, "enhance"))
    clock = time.perf_counter()
    if records.done("enhance", enhance_key):
        reused.append("enhance")
    else:
        enhance_file(
            outputs["stack"], outputs["tiff"], config.enhance, jpeg=outputs["jpeg"],
            overwrite=True, progress=report,
        )  # fmt: skip
        records.record("enhance", enhance_key, [outputs["tiff"], outputs["jpeg"]])
    timings[f"{group.name}: enhance"] = time.perf_counter() - clock
    sidecar = json.loads(outputs["sidecar"].read_text())
    stacked = sum(1 for row in sidecar["frames"] if row["accepted"])
    return GroupRun(group, folder, outputs, tuple(reused), stacked, masters_dir)


def _masters(
    group: LightGroup,
    cache: Path,
    calibration: CalibrationConfig,
    hashes: ContentHashes,
    progress: ProgressCallback,
) -> tuple[CalibrationConfig | None, str | None]:
    """Masters built from the group's calibration frames (cached by their content and the
    master settings), and the calibration config that applies them to the lights."""
    from skystack.pipeline.masters import prepare_masters

    frames = {
        "bias": group.bias, "darks": group.darks, "flats": group.flats,
        "dark_flats": group.dark_flats,
    }  # fmt: skip
    if not any(frames.values()):
        return None, None
    sources = MasterSources(**{k: tuple(f.path for f in v) for k, v in frames.items()})
    key = settings_key(
        {k: hashes.of_all(f.path for f in v) for k, v in frames.items()},
        [calibration.master_method, calibration.master_kappa, calibration.cfa],
    )
    first_light = read(group.lights[0].path)
    built = prepare_masters(  # bad pixels are found later, when the lights are calibrated
        dataclasses.replace(calibration, masters=sources, cosmetic=False, bad_pixel_map=None),
        first_light=first_light, masters_dir=cache / "masters" / key, progress=progress,
    )  # fmt: skip
    ready = MasterSources(
        master_bias=built.bias.path if built.bias else None,
        master_dark=built.dark.path if built.dark else None,
        master_flat=built.flat.path if built.flat else None,
        master_dark_flat=built.dark_flat.path if built.dark_flat else None,
    )
    return dataclasses.replace(calibration, masters=ready), key


def _thumbnail_of(path: Path, hashes: ContentHashes, folder: Path) -> np.ndarray | None:
    """A small display image of a light (debayered if it is a mosaic), cached by content."""
    import cv2

    from skystack.color.debayer import debayer
    from skystack.pipeline.report import thumbnail

    target = folder / f"{hashes.of(path)}.png"
    if target.is_file():
        image = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
        if image is not None:
            return image[..., ::-1].copy() if image.ndim == 3 else image
    try:
        frame = read(path)
    except SkystackError:
        return None
    data = frame.data
    if data.ndim == 2 and frame.meta.cfa is not None:
        data = debayer(data, pattern=frame.meta.cfa, method="superpixel")
    small = thumbnail(data, size=_THUMB_SIZE)
    folder.mkdir(parents=True, exist_ok=True)
    _, encoded = cv2.imencode(".png", small[..., ::-1] if small.ndim == 3 else small)
    with atomic_path(target) as tmp:
        Path(tmp).write_bytes(encoded.tobytes())
    return small


def _preview(image: np.ndarray) -> np.ndarray:
    """A display-referred [0, 1] image as uint8, its longest side at most the preview size."""
    import cv2

    scale = _PREVIEW_SIZE / max(image.shape[:2])
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.clip(np.nan_to_num(image) * 255 + 0.5, 0, 255).astype(np.uint8)


def _rejection_map(stack: Path) -> np.ndarray | None:
    """Fraction of the frames rejected at each pixel, from the stack's maps."""
    maps = {}
    for name in ("coverage", "rejected_low", "rejected_high"):
        path = stack.with_name(f"{stack.stem}_{name}.fits")
        if not path.is_file():
            return None
        data = read(path).data
        maps[name] = data.mean(axis=2) if data.ndim == 3 else data
    rejected = maps["rejected_low"] + maps["rejected_high"]
    total = rejected + maps["coverage"]
    return np.divide(rejected, total, out=np.zeros_like(total), where=total > 0)


def _group_report(run: GroupRun, cache: Path, hashes: ContentHashes, out: Path) -> Any:
    from skystack.pipeline.report import GroupReport, thumbnail

    group = run.group
    counts = {
        "lights": len(group.lights), "darks": len(group.darks), "flats": len(group.flats),
        "bias": len(group.bias), "dark-flats": len(group.dark_flats), "stacked": run.stacked,
    }  # fmt: skip
    summary = {
        "target": group.target, "filter": group.filter, "exposure": group.exposure,
        "gain": group.gain, **counts, "notes": list(group.notes),
        "reused from the cache": ", ".join(run.reused) or "nothing",
    }  # fmt: skip
    if run.error is not None:
        summary["error"] = run.error
    sidecar: dict[str, Any] = {"frames": [
        {"path": str(f.path), "accepted": False, "reason": run.error} for f in group.lights
    ]}  # fmt: skip
    if "sidecar" in run.outputs:
        sidecar = json.loads(run.outputs["sidecar"].read_text())
    thumbs = {}
    for light in group.lights:
        small = _thumbnail_of(light.path, hashes, cache / "thumbs")
        if small is not None:
            thumbs[str(light.path)] = small
    masters = {}
    if run.masters is not None:
        for path in sorted(run.masters.glob("master_*.fits")):
            kind = path.stem.removeprefix("master_").replace("_", "-")
            masters[kind] = thumbnail(read(path).data, size=_THUMB_SIZE)
    before = after = rejection = None
    if "stack" in run.outputs:
        before = thumbnail(read(run.outputs["stack"]).data, size=_PREVIEW_SIZE)
        after = _preview(read(run.outputs["jpeg"]).data)
        rejection = _rejection_map(run.outputs["stack"])
    labels = {"stack": "stack (32-bit FITS)", "sidecar": "frames (JSON)",
              "tiff": "picture (16-bit TIFF)", "jpeg": "picture (JPEG)"}  # fmt: skip
    return GroupReport(
        name=group.name,
        summary=summary,
        sidecar=sidecar,
        frame_times={str(f.path): f.time.isoformat() if f.time else None for f in group.lights},
        thumbnails=thumbs,
        masters=masters,
        rejection_map=rejection,
        before=before,
        after=after,
        outputs={labels[k]: str(p.relative_to(out)) for k, p in run.outputs.items()},
    )


def _write_report(
    session: Session,
    out: Path,
    runs: list[GroupRun],
    config: PipelineConfig,
    recipe_text: str,
    timings: dict[str, float],
    hashes: ContentHashes,
) -> Path:
    from skystack import __version__
    from skystack.pipeline.report import SessionReport, write_report

    cache = out / "cache"
    groups = tuple(_group_report(run, cache, hashes, out) for run in runs)
    hashes.save()
    report = SessionReport(
        session=str(session.root),
        recipe_toml=recipe_text,
        groups=groups,
        unused=tuple((str(p), reason) for p, reason in session.unused),
        timings=dict(timings),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        version=__version__,
    )
    return write_report(report, out / "report.html")


def _clear_stale_work(out: Path, session: Session) -> None:
    """Remove work caches of groups the session no longer has, and temporary files that a
    killed run left in the output folders (never a finished output)."""
    for leftover in [*out.glob(".*.partial*"), *out.glob("*/.*.partial*")]:
        leftover.unlink(missing_ok=True)
    work = out / "cache" / "work"
    if not work.is_dir():
        return
    names = {g.name for g in session.groups}
    for folder in work.iterdir():
        if folder.is_dir() and folder.name not in names:
            shutil.rmtree(folder, ignore_errors=True)
