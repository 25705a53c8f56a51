"""``skystack stack``: calibrate, register and combine a set of lights into one linear image.

The steps run through an on-disk cache next to the output (``.<name>.skystack-cache/``):
calibrated frames (when calibration frames are given), registered frames on the reference
grid, then the strip engine of :mod:`skystack.stack.combine` reads the same rows of every
registered frame, normalises, masks trails, rejects outliers and combines. Memory stays at a
few frames plus one strip of all frames. The cache is removed afterwards unless
``keep_cache``; an interrupted run resumes from it (calibration and registration resume their
own folders).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skystack._typing import ProgressCallback
from skystack.config import CalibrationConfig, RegistrationConfig, StackConfig
from skystack.detect.background import estimate_noise
from skystack.detect.quality import frame_weights
from skystack.errors import OutputExistsError, RegistrationError
from skystack.frame import Frame, FrameMeta
from skystack.io import read, write
from skystack.io._atomic import atomic_path
from skystack.io.fits import read_fits_rows
from skystack.pipeline.calibration import calibrate_files
from skystack.pipeline.registration import FrameRow, load_registration, register_files
from skystack.stack.cache import default_memory_budget
from skystack.stack.combine import StackResult, find_satellite_trails, stack_strips, strip_rows
from skystack.stack.distributed import (
    is_distributed,
    local_workers,
    stack_strips_distributed,
)
from skystack.stack.normalize import Normalization, normalization
from skystack.stack.satellites import trail_mask

__all__ = ["StackRun", "stack_files", "sidecar_path"]

_log = logging.getLogger(__name__)

_DEFAULT_BUDGET = 400 << 20
"""Default memory for strips and masters: with the frames being processed and the output
arrays, a whole 30 x 12 MP stack stays under 1 GB."""


@dataclass(frozen=True)
class StackRun:
    """What :func:`stack_files` wrote and measured."""

    output: Path
    sidecar: Path
    reference: Path
    frames: tuple[dict[str, Any], ...]
    result: StackResult
    maps: tuple[Path, ...] = ()

    @property
    def n_stacked(self) -> int:
        """Frames that went into the stack."""
        return sum(1 for row in self.frames if row["accepted"])


def sidecar_path(output: Path) -> Path:
    """``OUT.json`` beside ``OUT.ext``."""
    return output.with_suffix(".json")


def _cache_dir(output: Path) -> Path:
    return output.with_name(f".{output.stem}.skystack-cache")


def stack_files(
    lights: list[Path],
    output: Path,
    *,
    calibration: CalibrationConfig | None,
    registration: RegistrationConfig,
    stack: StackConfig,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cache_dir: Path | None = None,
    cache_key: str | None = None,
    history: Sequence[str] = (),
) -> StackRun:
    """Calibrate (if calibration sources are given), register and stack ``lights``.

    Parameters
    ----------
    cache_dir : Path, optional
        Where the calibrated and registered frames are kept (default: a hidden folder beside
        ``output``, removed at the end unless ``stack.keep_cache``).
    cache_key : str, optional
        What the lights and masters are (e.g. a hash of their content): a cache made for
        another key is emptied first. Without it, a cache is recognised by paths and settings.
    history : sequence of str
        More FITS HISTORY lines for the output (e.g. the recipe it was made with).

    Returns
    -------
    StackRun

    Raises
    ------
    OutputExistsError
        ``output`` (or its sidecar) exists and ``overwrite`` is False.
    RegistrationError
        Fewer than 2 frames could be registered.
    """
    output = Path(output)
    sidecar = sidecar_path(output)
    for path in (output, sidecar):
        if path.exists() and not overwrite:
            raise OutputExistsError(
                f"{path}: output exists already; pass --overwrite to replace it"
            )
    cache = Path(cache_dir) if cache_dir is not None else _cache_dir(output)
    _open_cache(cache, cache_key)
    inputs = [Path(p) for p in lights]
    calibrated: dict[Path, Path] = {p: p for p in inputs}
    reasons: dict[Path, str] = {}
    budget = stack.memory_bytes or default_memory_budget(ceiling=_DEFAULT_BUDGET)
    if calibration is not None and not calibration.masters.empty:
        if calibration.memory_bytes is None:
            calibration = dataclasses.replace(calibration, memory_bytes=budget)
        if calibration.jobs is None:
            calibration = dataclasses.replace(calibration, jobs=registration.jobs)
        calibrated, skipped_reasons = _calibrate(inputs, cache, calibration, progress)
        reasons.update(skipped_reasons)
    registered = load_registration(cache / "registered", list(calibrated.values()), registration)
    if registered is None:
        registered = register_files(
            list(calibrated.values()),
            cache / "registered",
            registration,
            overwrite=True,
            progress=progress,
        )
    else:
        _log.info("reusing the registered frames in %s", registered.out_dir)
    by_calibrated = {row.path: row for row in registered.rows}
    accepted = [row for row in registered.rows if row.accepted]
    if len(accepted) < 2:
        raise RegistrationError(
            f"only {len(accepted)} of {len(inputs)} lights could be registered; "
            "at least 2 are needed to stack"
        )
    registered_paths = _registered_paths(registered)
    outputs = dict(zip([r.path for r in registered.rows], registered_paths, strict=True))
    frame_paths = [outputs[row.path] for row in accepted]
    reference_row = next(r for r in registered.rows if r.path == registered.reference)
    weights = _weights(accepted, stack)
    stats = [row.stats for row in accepted]
    ref_stats = reference_row.stats
    norms = [normalization(s, ref_stats, method=stack.normalize) for s in stats]  # type: ignore[arg-type]
    weights = _noise_weights_after_gain(weights, norms, accepted, stack)
    shape = _frame_shape(frame_paths[0])
    rows = strip_rows(len(frame_paths), shape, memory_bytes=budget)
    _log.info(
        "stacking %d frames of %s in strips of %d rows (%d MB budget)",
        len(frame_paths), shape, rows, budget >> 20,
    )  # fmt: skip

    def read_rows(i: int, start: int, stop: int) -> np.ndarray:
        return read_fits_rows(frame_paths[i], start, stop)

    trails = []
    if stack.trail_mask:
        noise = _warped_noise(frame_paths)
        # Frames with holes (single drizzled frames) have no usable pixel-to-pixel noise;
        # their unresampled noise stands in.
        measured = np.array([row.quality.noise for row in accepted], dtype=np.float64)  # type: ignore[union-attr]
        noise = np.where(np.isfinite(noise) & (noise > 0), noise, measured[:, None])
        noise = noise * np.array([n.gain for n in norms])
        noise = noise[:, 0] if noise.shape[1] == 1 else noise
        trails = find_satellite_trails(
            read_rows, len(frame_paths), shape, noise=noise, normalizations=norms,
            rows_per_strip=rows, progress=progress,
        )  # fmt: skip
        for trail in trails:
            _log.info("trail in %s: %s", frame_paths[trail.frame].name, trail.to_dict())
    by_frame = {i: [t for t in trails if t.frame == i] for i in range(len(frame_paths))}

    def mask_rows(i: int, start: int, stop: int) -> np.ndarray | None:
        if not by_frame[i]:
            return None
        return trail_mask(shape, by_frame[i], rows=slice(start, stop))

    combine_budget = budget // local_workers() if stack.scheduler == "processes" else budget
    common = dict(
        method=stack.combine,
        reject=stack.reject,
        low=stack.low,
        high=stack.high,
        weights=weights if stack.combine == "mean" else None,
        normalizations=norms,
        rows_per_strip=strip_rows(len(frame_paths), shape, memory_bytes=combine_budget),
        progress=progress,
    )
    if is_distributed(stack.scheduler):
        result = stack_strips_distributed(
            frame_paths, shape, scheduler=stack.scheduler, trails=trails, **common
        )
    else:
        result = stack_strips(
            read_rows, len(frame_paths), shape, mask_rows=mask_rows if trails else None, **common
        )
    frames = _frame_rows(
        inputs, calibrated, by_calibrated, reasons, accepted, weights, result, reference_row
    )
    settings = _settings(calibration, registration, stack)
    history = [*_history(settings, len(accepted), len(inputs)), *history]
    meta = FrameMeta(path=output, kind="light", exposure=reference_row.exposure)
    write(Frame(result.image, meta), output, history=history, overwrite=True)
    maps = _write_maps(output, result, overwrite=True) if stack.maps else ()
    report = {
        "reference": str(_input_of(reference_row.path, calibrated)),
        "settings": settings,
        "frames": list(frames),
        "trails": [
            {**t.to_dict(), "path": str(_input_of(accepted[t.frame].path, calibrated))}
            for t in trails
        ],
    }
    with atomic_path(sidecar) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    if not stack.keep_cache:
        shutil.rmtree(cache, ignore_errors=True)
    return StackRun(
        output=output,
        sidecar=sidecar,
        reference=_input_of(reference_row.path, calibrated),
        frames=tuple(frames),
        result=result,
        maps=maps,
    )


def _open_cache(cache: Path, key: str | None) -> None:
    """Create the cache folder, emptied first when it was made for another ``key``."""
    stamp = cache / "key.txt"
    if key is not None and cache.is_dir() and (
        not stamp.is_file() or stamp.read_text() != key
    ):
        _log.info("discarding %s: made from other frames or masters", cache)
        shutil.rmtree(cache)
    cache.mkdir(parents=True, exist_ok=True)
    if key is not None:
        stamp.write_text(key)


def _calibrate(
    inputs: list[Path],
    cache: Path,
    calibration: CalibrationConfig,
    progress: ProgressCallback | None,
) -> tuple[dict[Path, Path], dict[Path, str]]:
    """Calibrated copies of ``inputs`` in the cache, reused when a finished earlier run made
    them from the same lights with the same settings."""
    done = cache / "calibrated.json"
    stamp = {"lights": [str(p) for p in inputs], "config": repr(calibration)}
    if done.is_file():
        record = json.loads(done.read_text())
        outputs = {Path(k): Path(v) for k, v in record["outputs"].items()}
        if record["stamp"] == stamp and all(p.is_file() for p in outputs.values()):
            _log.info("reusing the calibrated frames in %s", cache / "calibrated")
            return outputs, {Path(k): v for k, v in record["skipped"].items()}
    # Frames registered from earlier calibrated frames are stale now.
    shutil.rmtree(cache / "registered", ignore_errors=True)
    run = calibrate_files(
        inputs, cache / "calibrated", calibration, overwrite=True, progress=progress
    )
    produced = iter(run.outputs)
    skipped = {path: reason for path, reason in run.skipped}
    calibrated = {p: next(produced) for p in inputs if p not in skipped}
    record = {
        "stamp": stamp,
        "outputs": {str(k): str(v) for k, v in calibrated.items()},
        "skipped": {str(k): v for k, v in skipped.items()},
    }
    with atomic_path(done) as tmp:
        Path(tmp).write_text(json.dumps(record))
    return calibrated, skipped


def _warped_noise(paths: list[Path]) -> np.ndarray:
    """Pixel noise of each registered frame per channel, ``(N, C)``."""
    noise = []
    for path in paths:
        data = read(path).data
        # whole rows (the estimate compares neighbours along a row), about a million pixels
        rows = data[:: max(1, data.shape[0] * data.shape[1] // 1_000_000)]
        planes = [rows] if rows.ndim == 2 else [rows[..., c] for c in range(rows.shape[2])]
        noise.append([estimate_noise(plane) for plane in planes])
    return np.array(noise, dtype=np.float64)


def _registered_paths(registered) -> list[Path | None]:  # noqa: ANN001
    from skystack.pipeline.calibration import output_names

    names = output_names([row.path for row in registered.rows])
    return [
        registered.out_dir / name if row.accepted else None
        for row, name in zip(registered.rows, names, strict=True)
    ]


def _frame_shape(path: Path) -> tuple[int, ...]:
    first = read_fits_rows(path, 0, 1)
    from astropy.io import fits

    height = int(fits.getheader(path)["NAXIS2"])
    return (height, *first.shape[1:])


def _weights(accepted: list[FrameRow], stack: StackConfig) -> np.ndarray:
    qualities = [row.quality for row in accepted]
    if stack.weights == "none" or any(q is None for q in qualities):
        return np.ones(len(accepted))
    exposures = None
    if stack.weights == "exposure":
        exposures = [row.exposure or 1.0 for row in accepted]
    return frame_weights(qualities, method=stack.weights, exposures=exposures)  # type: ignore[arg-type]


def _noise_weights_after_gain(
    weights: np.ndarray, norms: list[Normalization], accepted: list[FrameRow], stack: StackConfig
) -> np.ndarray:
    # Noise weights are 1/σ² of the frame as normalised: a frame scaled by g has noise g·σ.
    if stack.weights != "noise":
        return weights
    gains = np.array([float(np.mean(n.gain)) for n in norms])
    adjusted = weights / np.maximum(gains, 1e-12) ** 2
    return adjusted / adjusted.mean()


def _input_of(path: Path, calibrated: dict[Path, Path]) -> Path:
    for source, produced in calibrated.items():
        if produced == path:
            return source
    return path


def _frame_rows(
    inputs: list[Path],
    calibrated: dict[Path, Path],
    by_calibrated: dict[Path, FrameRow],
    reasons: dict[Path, str],
    accepted: list[FrameRow],
    weights: np.ndarray,
    result: StackResult,
    reference: FrameRow,
) -> list[dict[str, Any]]:
    position = {row.path: i for i, row in enumerate(accepted)}
    rows = []
    for path in inputs:
        registered_row = by_calibrated.get(calibrated.get(path, path))
        if registered_row is None:
            rows.append(_empty_row(path, reasons.get(path, "not calibrated")))
            continue
        data = registered_row.to_dict()
        data["path"] = str(path)
        index = position.get(registered_row.path)
        data["weight"] = float(weights[index]) if index is not None else None
        data["rejected_fraction"] = (
            float(result.rejected_fraction[index]) if index is not None else None
        )
        data["reference"] = registered_row.path == reference.path
        rows.append(data)
    return rows


def _empty_row(path: Path, reason: str) -> dict[str, Any]:
    return {
        "path": str(path), "accepted": False, "reason": reason, "weight": None, "fwhm": None,
        "stars": None, "background": None, "noise": None, "transform": None,
        "rejected_fraction": None,
    }  # fmt: skip


def _settings(
    calibration: CalibrationConfig | None, registration: RegistrationConfig, stack: StackConfig
) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    settings = {"registration": plain(asdict(registration)), "stack": plain(asdict(stack))}
    if calibration is not None and not calibration.masters.empty:
        settings["calibration"] = plain(asdict(calibration))
    return settings


def _history(settings: dict[str, Any], stacked: int, total: int) -> list[str]:
    lines = [f"skystack stack: {stacked} of {total} lights combined"]
    stack = settings["stack"]
    lines.append(
        "skystack stack: combine {combine}, reject {reject} ({low}, {high}), normalize "
        "{normalize}, weights {weights}".format(**stack)
    )
    registration = settings["registration"]
    lines.append(
        "skystack stack: register {method}, transform {transform}, {interpolation} warp".format(
            **registration
        )
    )
    return lines


def _write_maps(output: Path, result: StackResult, *, overwrite: bool) -> tuple[Path, ...]:
    written = []
    for name, data in (("coverage", result.count), ("rejected_low", result.low),
                       ("rejected_high", result.high)):  # fmt: skip
        path = output.with_name(f"{output.stem}_{name}.fits")
        write(Frame(data.astype(np.float32), FrameMeta(path=path)), path, overwrite=overwrite)
        written.append(path)
    return tuple(written)
