"""The built-in sample session, end to end: what ``skystack demo`` and ``make demo`` run.

It simulates a night with a one-shot-colour camera (lights, darks, flats, bias with ground
truth), builds master frames and calibrates every light (bias, dark, flat, hot pixels,
debayering), and writes the calibrated reference light as a 32-bit FITS and a display-stretched
PNG. Each capability that lands (registration, stacking, enhancement) joins these steps.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from skystack._typing import ProgressCallback
from skystack.config import CalibrationConfig, MasterSources
from skystack.detect.background import ImageStatistics, image_statistics
from skystack.errors import OutputExistsError
from skystack.io import read, write
from skystack.pipeline.calibration import calibrate_files

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

    reference = read(run.outputs[0])
    history = (
        f"skystack demo: simulated session, seed {seed}",
        f"skystack demo: calibrated reference light {truth.lights[0].name}",
    )
    write(reference, fits_path, history=history, overwrite=True)
    write(reference, png_path, bit_depth=8, stretch="stf", overwrite=True)
    return DemoResult(
        session=session_dir,
        outputs=(fits_path, png_path, *run.masters),
        light_statistics=tuple(statistics),
    )


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
