"""Calibrating lights: masters applied in CFA space, cosmetic correction, white balance, debayer.

Frames are streamed one at a time (memory does not grow with their number). ``calibrate_files``
builds its output folder as ``OUT_DIR.partial/`` and renames it when complete; re-running the
same command after an interruption reuses the masters and frames already written there.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skystack._typing import CfaPattern, ProgressCallback
from skystack.calibrate.apply import (
    calibrate_light,
    dark_scale_for_exposure,
    optimize_dark_scale,
)
from skystack.config import CalibrationConfig
from skystack.errors import (
    FrameSkippedWarning,
    GeometryError,
    MetadataWarning,
    MissingFileError,
    OutputExistsError,
    SkystackError,
)
from skystack.frame import Frame
from skystack.io import read, write
from skystack.pipeline._partial import finish_partial, open_partial
from skystack.pipeline._workers import process_pool, worker_count
from skystack.pipeline.masters import MasterSet, check_master, prepare_masters

__all__ = [
    "CalibratedFrame",
    "CalibrationRun",
    "calibrate_frame",
    "calibrate_files",
    "output_names",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibratedFrame:
    """A calibrated frame and what was done to it, one line each."""

    frame: Frame
    history: tuple[str, ...]


def calibrate_frame(frame: Frame, masters: MasterSet, config: CalibrationConfig) -> CalibratedFrame:
    """Calibrate, correct and (optionally) debayer one light.

    Steps: ``(light - bias - k * dark) / flat`` in CFA space (without a bias, the file's black
    level is the offset); hot/cold pixels from the masters, a bad-pixel map and (optionally)
    single-pixel outliers of the light replaced from same-colour neighbours; cosmic rays (mono);
    white balance; debayering; background neutralisation.
    """
    from skystack.calibrate import cosmetic

    meta = frame.meta
    cfa: CfaPattern | None = config.cfa or meta.cfa
    if frame.data.ndim == 3:
        cfa = None
    history: list[str] = []
    bias = masters.bias.data if masters.bias is not None else None
    offset = 0.0
    if bias is None and meta.black_level is not None:
        offset = float(meta.black_level)
        history.append(f"offset: black level {offset * 65535:.1f} ADU (no bias frames)")
    dark = masters.dark
    scale = 1.0
    if dark is not None:
        if not dark.thermal_only:
            scale = 1.0
            history.append("dark: includes the bias, subtracted unscaled")
        elif config.dark_optimize:
            scale = optimize_dark_scale(
                frame.data, dark=dark.data, bias=bias, offset=offset, step=2 if cfa else 1
            )
            history.append(f"dark: optimised scale k = {scale:.4f}")
        else:
            scale = dark_scale_for_exposure(meta.exposure, dark.meta.exposure)
            history.append(f"dark: scale k = {scale:.4f} (exposure ratio)")
    data = calibrate_light(
        frame.data,
        bias=bias,
        dark=dark.data if dark is not None else None,
        flat=masters.flat.data if masters.flat is not None else None,
        dark_scale=scale,
        offset=offset if bias is None else 0.0,
    )
    if masters.bias is not None:
        history.append(f"bias: {masters.bias.n_frames or '?'} frames")
    if masters.flat is not None:
        history.append(f"flat: {masters.flat.n_frames or '?'} frames, normalised per channel")

    mask = masters.bad_pixels.copy() if masters.bad_pixels is not None else None
    if config.light_outliers:
        found = _per_plane(
            data, lambda p: cosmetic.find_outlier_pixels(p, sigma=config.cosmetic_sigma, cfa=cfa)
        )
        mask = found if mask is None else mask | found
    if mask is not None and mask.any():
        data = _repair(data, mask, cfa)
        history.append(f"cosmetic: {int(mask.sum())} pixels replaced from same-colour neighbours")
    if config.cosmic_rays:
        if data.ndim == 2 and cfa is None:
            data, hits = cosmetic.remove_cosmic_rays(data)
            history.append(f"cosmic rays: {int(hits.sum())} pixels replaced (L.A.Cosmic)")
        else:
            warnings.warn(
                f"{meta.path}: cosmic-ray removal is for mono data; skipped",
                MetadataWarning,
                stacklevel=2,
            )

    multipliers = _white_balance(config, meta)
    if multipliers is not None:
        from skystack.color.balance import white_balance, white_balance_cfa

        data = (
            white_balance_cfa(data, cfa, multipliers) if cfa else white_balance(data, multipliers)
        )
        history.append("white balance: " + ", ".join(f"{m:.4f}" for m in multipliers))

    new_meta = meta.replace(black_level=None if (bias is not None or offset) else meta.black_level)
    if config.debayer != "none" and cfa is not None and data.ndim == 2:
        from skystack.color.debayer import debayer

        data = debayer(data, pattern=cfa, method=config.debayer)
        new_meta = new_meta.replace(cfa=None)
        history.append(f"debayer: {config.debayer}, pattern {cfa}")
    elif config.debayer != "none" and cfa is None and frame.data.ndim == 2:
        warnings.warn(
            f"{meta.path}: no Bayer pattern (give --cfa); written undebayered",
            MetadataWarning,
            stacklevel=2,
        )
    elif cfa is not None:
        new_meta = new_meta.replace(cfa=cfa)
    if config.neutralize_background and data.ndim == 3:
        from skystack.color.balance import neutralize_background

        data = neutralize_background(data)
        history.append("background neutralised")
    return CalibratedFrame(Frame(np.asarray(data, np.float32), new_meta), tuple(history))


def _per_plane(data, finder):  # noqa: ANN001, ANN202
    if data.ndim == 3:
        return np.any([finder(data[..., c]) for c in range(3)], axis=0)
    return finder(data)


def _repair(data, mask, cfa):  # noqa: ANN001, ANN202
    from skystack.calibrate.cosmetic import repair_pixels

    if data.ndim == 3:
        return np.stack([repair_pixels(data[..., c], mask) for c in range(3)], axis=-1)
    return repair_pixels(data, mask, cfa=cfa)


def _white_balance(config: CalibrationConfig, meta) -> tuple[float, float, float] | None:  # noqa: ANN001
    if config.white_balance == "none":
        return None
    if config.white_balance == "camera":
        if meta.white_balance is None:
            warnings.warn(
                f"{meta.path}: no camera white balance in the file; none applied",
                MetadataWarning,
                stacklevel=3,
            )
            return None
        r, g, b = meta.white_balance
        return (r / g, 1.0, b / g)
    return tuple(float(m) for m in config.white_balance)  # type: ignore[return-value]


@dataclass(frozen=True)
class CalibrationRun:
    """What ``calibrate_files`` wrote and skipped."""

    out_dir: Path
    outputs: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...]
    masters: tuple[Path, ...]


def output_names(lights: Sequence[Path]) -> list[str]:
    """One ``<stem>.fits`` name per input, numbered where stems repeat."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for path in lights:
        stem = path.name.split(".")[0] if path.suffix.lower() in (".gz", ".bz2") else path.stem
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(f"{stem}.fits" if count == 0 else f"{stem}_{count + 1}.fits")
    return names


def calibrate_files(
    lights: list[Path],
    out_dir: Path,
    config: CalibrationConfig,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> CalibrationRun:
    """Calibrate light files into ``out_dir`` (one float32 FITS per light, masters under
    ``out_dir/masters/``).

    A light that cannot be read, or whose size differs from the first light's, is skipped with
    a warning and listed in the result. The folder is built as ``OUT_DIR.partial`` and renamed
    when complete; a re-run resumes from it.

    Raises
    ------
    OutputExistsError
        When ``out_dir`` exists and ``overwrite`` is False.
    MissingFileError
        When no light can be read.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise OutputExistsError(f"{out_dir}: output exists already; pass --overwrite to replace it")
    partial = open_partial(out_dir, _settings_text(lights, config))
    first, first_index, skipped = _first_readable(lights)
    masters = prepare_masters(
        config, first_light=first, masters_dir=partial / "masters", progress=progress
    )
    names = output_names(lights)
    done: dict[int, Path] = {}
    todo: list[int] = []
    for index, name in enumerate(names):
        if index < first_index:
            continue
        if (partial / name).exists():
            done[index] = partial / name  # written by an interrupted earlier run
        else:
            todo.append(index)
    warned: set[str] = set()
    shape = first.data.shape
    args = [(lights[i], partial / names[i], shape) for i in todo]
    with process_pool(
        worker_count(config.jobs, [lights[i] for i in todo]),
        initializer=_set_worker_masters,
        initargs=(masters, config),
    ) as pool:
        if pool is None:
            _set_worker_masters(masters, config)
            results = (_calibrate_path(*a) for a in args)
        else:
            results = pool.map(_calibrate_path, *zip(*args, strict=True)) if args else iter(())
        for count, (index, (error, problems, caught)) in enumerate(
            zip(todo, results, strict=True), start=1
        ):
            for category, message in caught:
                warnings.warn(message, category, stacklevel=2)
            _warn_once(problems, warned)
            if error is not None:
                warnings.warn(f"skipping light: {error}", FrameSkippedWarning, stacklevel=2)
                skipped.append((lights[index], error))
            else:
                done[index] = partial / names[index]
            if progress is not None:
                progress(first_index + count, len(lights), "calibrate")
    _WORKER_MASTERS.clear()
    outputs = [done[i] for i in sorted(done)]
    master_paths = tuple(sorted((partial / "masters").glob("master_*.fits")))
    if not any((partial / "masters").iterdir()):
        (partial / "masters").rmdir()
    finish_partial(partial, out_dir)
    rename = lambda p: out_dir / p.relative_to(partial)  # noqa: E731
    return CalibrationRun(
        out_dir=out_dir,
        outputs=tuple(rename(p) for p in outputs),
        skipped=tuple(skipped),
        masters=tuple(rename(p) for p in master_paths),
    )


def _settings_text(lights: list[Path], config: CalibrationConfig) -> str:
    return json.dumps({"lights": [str(p) for p in lights], "config": repr(config)}, sort_keys=True)


def _first_readable(lights: list[Path]) -> tuple[Frame, int, list[tuple[Path, str]]]:
    skipped: list[tuple[Path, str]] = []
    for index, path in enumerate(lights):
        try:
            return read(path), index, skipped
        except SkystackError as err:
            warnings.warn(f"skipping light: {err}", FrameSkippedWarning, stacklevel=3)
            skipped.append((path, str(err)))
    raise MissingFileError(f"none of the {len(lights)} lights could be read")


_WORKER_MASTERS: dict[str, Any] = {}
"""The masters and settings of this worker process (set once per worker, not per frame)."""


def _set_worker_masters(masters: MasterSet, config: CalibrationConfig) -> None:
    _WORKER_MASTERS.update(masters=masters, config=config)


def _calibrate_path(
    path: Path, target: Path, shape: tuple[int, ...]
) -> tuple[str | None, list[tuple[str, str]], list[tuple[type[Warning], str]]]:
    """Calibrate one light into ``target``; returns the error, master mismatches, warnings."""
    masters: MasterSet = _WORKER_MASTERS["masters"]
    config: CalibrationConfig = _WORKER_MASTERS["config"]
    problems: list[tuple[str, str]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            frame = read(path)
            if frame.data.shape != shape:
                raise GeometryError(
                    f"{path}: size {frame.data.shape} differs from the first light's {shape}"
                )
            for master in (masters.bias, masters.dark, masters.flat):
                if master is not None:
                    problems.extend(
                        (master.kind, problem)
                        for problem in check_master(master, frame.meta, frame.meta.path)
                    )
            result = calibrate_frame(frame, masters, config)
            history = [f"skystack calibrate: {line}" for line in result.history]
            write(result.frame, target, history=history, overwrite=True)
            error = None
        except SkystackError as err:
            error = str(err)
    return error, problems, [(w.category, str(w.message)) for w in caught]


def _warn_once(problems: list[tuple[str, str]], warned: set[str]) -> None:
    """One warning per master and kind of mismatch (not one per light)."""
    for kind, problem in problems:
        key = f"{kind}:{problem.split(':', 1)[1].split()[0]}" if ":" in problem else problem
        if key not in warned:
            warned.add(key)
            warnings.warn(problem, MetadataWarning, stacklevel=3)
