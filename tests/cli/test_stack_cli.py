"""``skystack stack``: calibrated stack with sidecar, skipped frames, maps, options, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import skystack
from skystack.cli.main import main
from skystack.sim import SessionConfig, write_session


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("session")
    config = SessionConfig(width=320, height=240, n_lights=5, n_bias=3, n_darks=3, n_flats=3,
                           star_count=120, extended="galaxy", shift_px=8.0)  # fmt: skip
    write_session(folder, config, seed=31)
    return folder


@pytest.mark.filterwarnings("ignore::skystack.errors.FrameSkippedWarning")
def test_stack_command_calibrates_registers_and_stacks(session, tmp_path, capsys):
    lights = tmp_path / "lights"
    shutil.copytree(session / "lights", lights)
    (lights / "light_0099.fits").write_text("not a FITS file")
    out = tmp_path / "result.fits"
    args = ["stack", str(lights), "--bias", str(session / "bias"), "--darks",
            str(session / "darks"), "--flats", str(session / "flats"), "-o", str(out),
            "--maps"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "skipped" in printed and "light_0099.fits" in printed
    assert "stacked 5 of 6 lights" in printed
    frame = skystack.read(out)
    assert frame.data.shape == (240, 320) and frame.data.dtype == np.float32
    report = json.loads((tmp_path / "result.json").read_text())
    assert len(report["frames"]) == 6
    assert sum(r["accepted"] for r in report["frames"]) == 5
    assert "calibration" in report["settings"]
    coverage = skystack.read(tmp_path / "result_coverage.fits").data
    assert coverage.max() == 5
    assert not (tmp_path / ".result.skystack-cache").exists()
    # the output is not replaced without --overwrite
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_stack_options_and_errors(session, tmp_path, capsys):
    out = tmp_path / "median.fits"
    code = main(["stack", str(session / "lights"), "-o", str(out), "--combine", "median",
                 "--reject", "none", "--normalize", "none", "--weights", "none",
                 "--no-trail-mask", "--keep-cache"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / ".median.skystack-cache" / "registered").is_dir()
    settings = json.loads((tmp_path / "median.json").read_text())["settings"]["stack"]
    assert settings["combine"] == "median" and settings["trail_mask"] is False
    code = main(["stack", str(session / "lights"), "-o", str(tmp_path / "x.fits"),
                 "--reject", "gesd", "--low", "3", "--high", "3"])  # fmt: skip
    assert code == 2
    assert "gesd" in capsys.readouterr().err.lower()
    code = main(
        ["stack", str(session / "lights" / "light_0001.fits"), "-o", str(tmp_path / "y.fits")]
    )
    assert code == 2
    assert "at least 2" in capsys.readouterr().err


def test_stack_on_a_local_dask_cluster_equals_threads(session, tmp_path, capsys):
    args = ["stack", str(session / "lights"), "--no-trail-mask"]
    assert main([*args, "-o", str(tmp_path / "threads.fits")]) == 0
    assert main([*args, "-o", str(tmp_path / "dask.fits"), "--scheduler", "processes"]) == 0
    threads = skystack.read(tmp_path / "threads.fits").data
    dask = skystack.read(tmp_path / "dask.fits").data
    np.testing.assert_array_equal(threads, dask)
    assert main([*args, "-o", str(tmp_path / "x.fits"), "--scheduler", "nowhere"]) == 2
    assert "--scheduler must be threads, processes or" in capsys.readouterr().err
