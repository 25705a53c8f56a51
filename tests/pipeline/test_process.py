"""``skystack process`` on a simulated night with two filters and two exposures.

One run is shared by the tests of this module: the groups and their calibration, the cache
(a second run redoes nothing, a new stretch reuses the stack), resuming after SIGKILL, and the
outputs and report.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skystack.cli.main import main
from skystack.config import PipelineConfig
from skystack.io import read
from skystack.pipeline.process import ProcessRun, process_session
from skystack.recipe import apply_overrides

FILTERS = {"Ha": 8.0, "OIII": 5.0}
"""Filter -> sky background rate (e-/s): each group's stack has its own known level."""
EXPOSURES = (30.0, 60.0)
SEED = 5


def _write_night(root: Path) -> Path:
    """One folder per filter and exposure, as a capture program sorts them; the same camera."""
    from skystack.sim import SessionConfig, write_session

    session = root / "night"
    for name, rate in FILTERS.items():
        for exposure in EXPOSURES:
            folder = session / f"{name}_{exposure:.0f}s"
            config = SessionConfig(
                width=160, height=120, n_lights=4, n_bias=3, n_darks=3, n_flats=3,
                star_count=60, exposure_s=exposure, sky_level_e=rate * exposure,
                sky_variation=0.0, sky_gradient=(0.0, 0.0), sky_gradient_quadratic=0.0,
                filter=name, target="M42", extended="none", trail_lights=(),
            )  # fmt: skip
            write_session(folder, config, seed=SEED)
            shutil.rmtree(folder / "truth")
    return session


def _sky(image: np.ndarray) -> float:
    """Sigma-clipped median: the sky level without the stars."""
    from astropy.stats import sigma_clipped_stats

    return float(sigma_clipped_stats(image[np.isfinite(image)], sigma=2.5)[1])


def _input_state(session: Path) -> dict[str, tuple[str, int]]:
    """SHA-256 and modification time of every file of the session except process's outputs."""
    import hashlib

    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(session.rglob("*"))
        if p.is_file() and "skystack" not in p.relative_to(session).parts
    }


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    session = _write_night(tmp_path_factory.mktemp("process"))
    _BEFORE.update(_input_state(session))
    return session


_BEFORE: dict[str, tuple[str, int]] = {}
"""The session's files as written, before any run."""


@pytest.fixture(scope="module")
def first_run(night: Path) -> ProcessRun:
    return process_session(night)


def test_each_filter_and_exposure_is_stacked_with_its_own_calibration(
    first_run: ProcessRun,
) -> None:
    groups = {run.group.name: run for run in first_run.groups}
    assert sorted(groups) == ["M42-Ha-30s", "M42-Ha-60s", "M42-OIII-30s", "M42-OIII-60s"]
    for name, run in groups.items():
        _, filter_name, exposure_text = name.split("-")
        exposure = float(exposure_text.removesuffix("s"))
        assert run.error is None and run.stacked == 4
        assert {f.filter for f in run.group.lights} == {filter_name}
        assert {f.exposure for f in run.group.darks} == {exposure}
        assert {f.filter for f in run.group.flats} == {filter_name}
        dark = read(run.masters / "master_dark.fits").meta
        flat = read(run.masters / "master_flat.fits").meta
        assert dark.exposure == pytest.approx(exposure)
        assert flat.filter == filter_name
        stack = read(run.outputs["stack"]).data
        corners = [stack[:40, :40], stack[:40, -40:], stack[-40:, :40], stack[-40:, -40:]]
        centre = _sky(stack[40:80, 50:110])
        for corner in corners:  # the flats take out the vignetting, 13-15 % in these corners
            assert _sky(corner) == pytest.approx(centre, rel=0.04)
    # Bias and darks removed: the sky of each stack is proportional to its filter's sky rate
    # times its exposure (an offset left in would break the ratios).
    sky = {name: _sky(read(run.outputs["stack"]).data)
           for name, run in groups.items()}  # fmt: skip
    for name in FILTERS:
        assert sky[f"M42-{name}-60s"] / sky[f"M42-{name}-30s"] == pytest.approx(2.0, rel=0.02)
    assert sky["M42-Ha-60s"] / sky["M42-OIII-60s"] == pytest.approx(8 / 5, rel=0.02)


def test_outputs_recipe_and_report_are_written(first_run: ProcessRun, night: Path) -> None:
    out = night / "skystack"
    assert first_run.out_dir == out and first_run.report == out / "report.html"
    for run in first_run.groups:
        for label in ("stack", "sidecar", "tiff", "jpeg"):
            assert run.outputs[label].is_file(), label
        assert run.outputs["stack"].parent == out / run.group.name
    header = read(first_run.groups[0].outputs["stack"]).meta.header
    history = " ".join(str(v) for k, v, _ in header if k == "HISTORY")
    assert 'recipe [stack] reject = "winsorized"' in history
    assert "[enhance]" in (out / "recipe.toml").read_text()
    html = first_run.report.read_text()
    assert html.count('<section id="group-') == 4
    for run in first_run.groups:
        for light in run.group.lights:
            assert light.path.name in html


def _mtimes(run: ProcessRun) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for g in run.groups for p in g.outputs.values()}


def test_a_second_run_redoes_nothing_and_a_new_stretch_reuses_the_stack(
    first_run: ProcessRun, night: Path
) -> None:
    before = _mtimes(first_run)
    again = process_session(night)
    assert all(g.reused == ("stack", "enhance") for g in again.groups)
    assert _mtimes(again) == before
    config = apply_overrides(PipelineConfig(), ["enhance.stretch=asinh"])
    restretched = process_session(night, config=config)
    assert all(g.reused == ("stack",) for g in restretched.groups)
    after = _mtimes(restretched)
    for run in restretched.groups:
        assert after[str(run.outputs["stack"])] == before[str(run.outputs["stack"])]
        assert after[str(run.outputs["jpeg"])] != before[str(run.outputs["jpeg"])]


def _run_cli(args: list[str]) -> subprocess.Popen[str]:
    code = "import sys; from skystack.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def test_a_run_killed_mid_stack_resumes_to_the_same_result(
    first_run: ProcessRun, night: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    process = _run_cli(["process", str(night), "-o", str(out)])
    assert process.stderr is not None
    stacking = 0
    for line in process.stderr:
        stacking += "stacking 4 frames" in line
        if stacking == 2:  # the second group is registered and its combine starts
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=300)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert main(["process", str(night), "-o", str(out), "--quiet"]) == 0
    for run in first_run.groups:
        name = run.group.name
        resumed = read(out / name / f"{name}.fits").data
        np.testing.assert_array_equal(resumed, read(run.outputs["stack"]).data)
    leftovers = [p for p in out.rglob("*.partial*") if "cache" not in p.parts]
    assert leftovers == []


def test_dry_run_prints_the_groups_and_writes_nothing(
    night: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dry"
    assert main(["process", str(night), "-o", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "M42-OIII-60s" in printed and "M42-Ha-30s" in printed
    assert not out.exists()


def test_write_recipe_then_use_it_with_a_flag_on_top(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "r.toml"
    assert main(["process", "--write-recipe", str(recipe), "--reject", "sigma"]) == 0
    assert 'reject = "sigma"' in recipe.read_text()
    assert main(["process", "--write-recipe", str(recipe)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["process", "--write-recipe", str(tmp_path / "b.toml"), "--recipe", str(recipe),
                 "--set", "stack.low=2"]) == 0  # fmt: skip
    text = (tmp_path / "b.toml").read_text()
    assert 'reject = "sigma"' in text and "low = 2.0" in text


def test_bad_flags_and_missing_session_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["process", str(tmp_path / "nowhere")]) == 2
    assert main(["process", str(tmp_path), "--stretch", "loud"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("skystack: error:") for line in err)
    assert "stretch = 'loud' is not valid" in err[1]


def test_json_lines_for_machines(
    first_run: ProcessRun, night: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    capsys.readouterr()
    assert main(["process", str(night), "--log-format", "json"]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    logged = [json.loads(line) for line in captured.err.splitlines()]
    assert {e["event"] for e in events} >= {"found", "group", "output", "report"}
    assert next(e for e in events if e["event"] == "report")["path"] == str(first_run.report)
    groups = [e for e in events if e["event"] == "group"]
    assert len(groups) == 4 and all(e["stacked"] == 4 for e in groups)
    assert all(e["event"] in ("log", "progress") for e in logged)


def test_the_session_files_are_never_modified(first_run: ProcessRun, night: Path) -> None:
    # Runs above: a full run, a re-run, a new stretch, a killed and resumed run, JSON lines.
    assert len(_BEFORE) == 4 * (4 + 3 + 3 + 3)
    assert _input_state(night) == _BEFORE


def test_a_group_that_cannot_be_stacked_is_reported_and_the_others_are_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from skystack.sim import SessionConfig, write_session

    session = tmp_path / "night"
    for exposure, lights in ((30.0, 3), (60.0, 1)):
        config = SessionConfig(
            width=160, height=120, n_lights=lights, n_bias=0, n_darks=0, n_flats=0,
            star_count=60, exposure_s=exposure, filter="L", target="M42", extended="none",
        )  # fmt: skip
        write_session(session / f"{exposure:.0f}s", config, seed=SEED)
        shutil.rmtree(session / f"{exposure:.0f}s" / "truth")
    assert main(["process", str(session)]) == 2
    out = capsys.readouterr().out
    assert "M42-L-30s: stacked 3 of 3 lights" in out
    assert "M42-L-60s: not stacked:" in out
    html = (session / "skystack" / "report.html").read_text()
    assert "M42-L-60s" in html and "light_0001.fits" in html
