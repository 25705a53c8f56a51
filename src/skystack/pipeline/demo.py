"""The built-in sample session, end to end: what ``skystack demo`` and ``make demo`` run.

It simulates a night with a one-shot-colour camera (lights, darks, flats, bias with ground
truth), builds master frames and calibrates every light (bias, dark, flat, hot pixels,
debayering), then registers the calibrated lights to the best one (checked against the
simulator's true transforms) and stacks them (winsorized rejection, trail masking). It writes
one calibrated light and the stack as 32-bit FITS and display-stretched PNGs. Enhancement
joins these steps when it lands.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skystack._typing import ProgressCallback
from skystack.config import CalibrationConfig, MasterSources, RegistrationConfig, StackConfig
from skystack.detect.background import ImageStatistics, image_statistics
from skystack.errors import OutputExistsError
from skystack.frame import Frame, FrameMeta
from skystack.io import read, write
from skystack.pipeline.calibration import calibrate_files
from skystack.pipeline.stacking import stack_files
from skystack.register.transform import Transform

__all__ = ["DemoResult", "run_demo", "DEMO_SESSION"]

_log = logging.getLogger(__name__)


def _demo_config():  # noqa: ANN202 - imported lazily: the simulator pulls in numba
    from skystack.sim import SessionConfig

    return SessionConfig(width=1024, height=768, n_lights=12, star_count=1500, bayer="RGGB")


DEMO_SESSION = "session"
"""Sub-folder of the demo directory holding the simulated session."""


@dataclass(frozen=True)
class DemoResult:
    """Paths the demo wrote and what it measured."""

    session: Path
    outputs: tuple[Path, ...]
    light_statistics: tuple[ImageStatistics, ...]
    registration_errors_px: tuple[float, ...]
    """Per registered light: RMS distance (px) between where the recovered and the true
    transforms put its stars."""


def run_demo(
    directory: str | os.PathLike[str],
    *,
    seed: int = 1,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> DemoResult:
    """Simulate the sample session under ``directory`` and process it.

    A session already simulated there with the same settings is reused, so a re-run (or a run
    after an interruption) does not simulate again.

    Parameters
    ----------
    directory : path-like
        Output folder, created if missing.
    seed : int
        Seed of the simulated session.
    overwrite : bool
        Replace the results of an earlier demo run.
    progress : callable, optional
        ``progress(done, total, step)``.

    Returns
    -------
    DemoResult
    """
    from skystack.sim import SessionTruth, write_session

    root = Path(directory)
    fits_path = root / "demo_light.fits"
    png_path = root / "demo_light.png"
    for path in (fits_path, png_path):
        if path.exists() and not overwrite:
            raise OutputExistsError(
                f"{path}: output exists already; pass --overwrite to replace it"
            )
    root.mkdir(parents=True, exist_ok=True)
    session_dir = root / DEMO_SESSION
    session_config = _demo_config()
    truth = _existing_session(session_dir, session_config, seed, SessionTruth)
    if truth is None:
        _log.info("simulating the sample session in %s", session_dir)
        truth = write_session(session_dir, session_config, seed=seed, progress=progress)
    else:
        _log.info("reusing the sample session in %s", session_dir)

    calibrated_dir = root / "calibrated"
    config = CalibrationConfig(
        masters=MasterSources(bias=truth.bias, darks=truth.darks, flats=truth.flats),
        debayer="bilinear",
        neutralize_background=True,
    )
    run = calibrate_files(
        list(truth.lights), calibrated_dir, config, overwrite=True, progress=progress
    )
    statistics = []
    for path in run.outputs:
        frame = read(path)
        statistics.append(image_statistics(frame.data[..., 1]))
        _log.info(
            "%s: background %.5f, noise %.5f (green, full scale 1.0)",
            path.name,
            statistics[-1].median,
            statistics[-1].noise,
        )

    stack_path = root / "demo_stack.fits"
    stacked = stack_files(
        list(run.outputs), stack_path, calibration=None, registration=RegistrationConfig(),
        stack=StackConfig(), overwrite=True, progress=progress,
    )  # fmt: skip
    errors = _registration_errors(truth, stacked)
    _log.info(
        "stacked %d of %d lights; registration error against the true transforms: median "
        "%.3f px, max %.3f px",
        stacked.n_stacked, len(run.outputs), float(np.median(errors)), max(errors),
    )  # fmt: skip
    stack_png = root / "demo_stack.png"
    write(Frame(stacked.result.image, FrameMeta(path=stack_png)), stack_png, bit_depth=8,
          stretch="stf", overwrite=True)  # fmt: skip

    from skystack.pipeline.enhance import enhance_file

    enhanced = enhance_file(
        stack_path, root / "demo_enhanced.tif", jpeg=root / "demo_enhanced.jpg",
        overwrite=True, progress=progress,
    )  # fmt: skip
    _log.info("enhanced the stack: %s", enhanced.summary[-1])

    reference = read(run.outputs[0])
    history = (
        f"skystack demo: simulated session, seed {seed}",
        f"skystack demo: calibrated reference light {truth.lights[0].name}",
    )
    write(reference, fits_path, history=history, overwrite=True)
    write(reference, png_path, bit_depth=8, stretch="stf", overwrite=True)
    return DemoResult(
        session=session_dir,
        outputs=(
            fits_path, png_path, stack_path, stacked.sidecar, stack_png, *enhanced.written,
            *run.masters,
        ),  # fmt: skip
        light_statistics=tuple(statistics),
        registration_errors_px=tuple(errors),
    )


def _registration_errors(truth, stacked) -> list[float]:  # noqa: ANN001
    """RMS px between where the recovered and the true transforms put each light's stars."""
    names = [path.stem for path in truth.lights]
    reference = names.index(Path(stacked.reference).stem)
    errors = []
    for row in stacked.frames:
        if row["transform"] is None:
            continue
        index = names.index(Path(row["path"]).stem)
        stars = truth.star_positions(index)
        true = np.linalg.inv(truth.transforms[reference]) @ truth.transforms[index]
        expected = Transform(true).apply(stars)
        found = Transform.from_list(row["transform"]).apply(stars)
        errors.append(float(np.sqrt(np.mean(np.sum((found - expected) ** 2, axis=1)))))
    return errors


def _existing_session(session_dir, config, seed, truth_type):  # noqa: ANN001, ANN202
    if not (session_dir / "truth" / "truth.json").exists():
        return None
    try:
        truth = truth_type.load(session_dir)
    except (OSError, ValueError, KeyError):
        return None
    if truth.config != config or truth.seed != seed:
        return None
    if not all(path.exists() for path in truth.lights):
        return None
    return truth
