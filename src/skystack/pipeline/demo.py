"""The built-in sample session, end to end: what ``skystack demo`` and ``make demo`` run.

It simulates a night with a one-shot-colour camera (lights, darks, flats, bias, with ground
truth) and runs ``skystack process`` on it: masters, calibration (bias, dark, flat, hot pixels),
debayering, registration to the best light (checked here against the simulator's true
transforms), stacking with winsorized rejection and trail masking, the finished picture and
``report.html``. A re-run reuses the simulated session and the process cache.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skystack._typing import ProgressCallback
from skystack.pipeline.process import process_session
from skystack.register.transform import Transform

__all__ = ["DemoResult", "run_demo", "DEMO_SESSION", "DEMO_RESULTS"]

_log = logging.getLogger(__name__)


def _demo_config():  # noqa: ANN202 - imported lazily: the simulator pulls in numba
    from skystack.sim import SessionConfig

    return SessionConfig(width=1024, height=768, n_lights=12, star_count=1500, bayer="RGGB")


DEMO_SESSION = "session"
"""Sub-folder of the demo directory holding the simulated session."""
DEMO_RESULTS = "results"
"""Sub-folder of the demo directory that ``process`` writes."""


@dataclass(frozen=True)
class DemoResult:
    """Paths the demo wrote and what it measured."""

    session: Path
    report: Path
    outputs: tuple[Path, ...]
    registration_errors_px: tuple[float, ...]
    """Per registered light: RMS distance (px) between where the recovered and the true
    transforms put its stars."""


def run_demo(
    directory: str | os.PathLike[str],
    *,
    seed: int = 1,
    progress: ProgressCallback | None = None,
) -> DemoResult:
    """Simulate the sample session under ``directory`` and process it.

    A session already simulated there with the same settings is reused, and ``process``
    reuses its cache, so a re-run (or a run after an interruption) redoes only what is missing.

    Parameters
    ----------
    directory : path-like
        Output folder, created if missing: ``DIR/session`` and ``DIR/results``.
    seed : int
        Seed of the simulated session.
    progress : callable, optional
        ``progress(done, total, step)``.

    Returns
    -------
    DemoResult
    """
    from skystack.sim import SessionTruth, write_session

    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    session_dir = root / DEMO_SESSION
    session_config = _demo_config()
    truth = _existing_session(session_dir, session_config, seed, SessionTruth)
    if truth is None:
        _log.info("simulating the sample session in %s", session_dir)
        truth = write_session(session_dir, session_config, seed=seed, progress=progress)
    else:
        _log.info("reusing the sample session in %s", session_dir)
    run = process_session(session_dir, out_dir=root / DEMO_RESULTS, progress=progress)
    group = run.groups[0]
    sidecar = json.loads(group.outputs["sidecar"].read_text())
    errors = _registration_errors(truth, sidecar)
    _log.info(
        "stacked %d of %d lights; registration error against the true transforms: median "
        "%.3f px, max %.3f px",
        group.stacked, len(group.group.lights), float(np.median(errors)), max(errors),
    )  # fmt: skip
    return DemoResult(
        session=session_dir,
        report=run.report,
        outputs=(*group.outputs.values(), run.recipe, run.report),
        registration_errors_px=tuple(errors),
    )


def _registration_errors(truth, sidecar: dict) -> list[float]:  # noqa: ANN001
    """RMS px between where the recovered and the true transforms put each light's stars."""
    names = [path.stem for path in truth.lights]
    reference = names.index(Path(sidecar["reference"]).stem)
    errors = []
    for row in sidecar["frames"]:
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
