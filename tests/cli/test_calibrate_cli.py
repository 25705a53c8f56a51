"""``skystack calibrate``: outputs, skipped bad frames, refusal to overwrite, resume."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import skystack
from skystack.cli.main import main
from skystack.config import CalibrationConfig, MasterSources
from skystack.pipeline.calibration import calibrate_files
from skystack.sim import SessionConfig, write_session


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("session")
    config = SessionConfig(width=128, height=96, n_lights=4, n_bias=3, n_darks=3, n_flats=3,
                           bayer="GRBG", star_count=40)  # fmt: skip
    write_session(folder, config, seed=5)
    return folder


# The CLI shows warnings as log lines; the skipped frame is asserted from the printed report.
@pytest.mark.filterwarnings("ignore::skystack.errors.FrameSkippedWarning")
def test_calibrate_command_writes_debayered_frames_and_skips_a_bad_one(session, tmp_path, capsys):
    lights = tmp_path / "lights"
    shutil.copytree(session / "lights", lights)
    (lights / "light_0099.fits").write_text("not a FITS file")
    out = tmp_path / "calibrated"
    args = ["calibrate", str(lights), "--bias", str(session / "bias"), "--darks",
            str(session / "darks"), "--flats", str(session / "flats"), "--debayer", "vng",
            "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.out and "light_0099.fits" in captured.out
    frames = sorted(out.glob("light_*.fits"))
    assert [p.name for p in frames] == [f"light_000{i}.fits" for i in range(1, 5)]
    frame = skystack.read(frames[0])
    assert frame.data.shape == (96, 128, 3)
    assert np.isfinite(frame.data).mean() > 0.99
    assert (out / "masters" / "master_flat.fits").exists()
    assert not (tmp_path / "calibrated.partial").exists()
    # An existing output folder is not replaced without --overwrite.
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_master_files_can_be_reused(session, tmp_path, capsys):
    first = tmp_path / "first"
    main(["calibrate", str(session / "lights"), "--darks", str(session / "darks"),
          "--bias", str(session / "bias"), "-o", str(first)])  # fmt: skip
    second = tmp_path / "second"
    code = main(["calibrate", str(session / "lights"), "--master-dark",
                 str(first / "masters" / "master_dark.fits"), "--master-bias",
                 str(first / "masters" / "master_bias.fits"), "-o", str(second)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    a = skystack.read(first / "light_0001.fits").data
    b = skystack.read(second / "light_0001.fits").data
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert not (second / "masters").exists()


def test_library_of_masters_is_picked_by_kind(session, tmp_path):
    first = tmp_path / "first"
    main(["calibrate", str(session / "lights"), "--darks", str(session / "darks"), "--flats",
          str(session / "flats"), "--bias", str(session / "bias"), "-o", str(first)])  # fmt: skip
    library = first / "masters"
    code = main(["calibrate", str(session / "lights"), "--masters", str(library),
                 "-o", str(tmp_path / "lib")])  # fmt: skip
    assert code == 0
    a = skystack.read(first / "light_0002.fits").data
    b = skystack.read(tmp_path / "lib" / "light_0002.fits").data
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_interrupted_run_resumes(session, tmp_path):
    lights = sorted((session / "lights").glob("*.fits"))
    config = CalibrationConfig(
        masters=MasterSources(darks=tuple(sorted((session / "darks").glob("*.fits"))))
    )
    out = tmp_path / "out"

    def stop_after_two(done, total, what):
        if what == "calibrate" and done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        calibrate_files(lights, out, config, progress=stop_after_two)
    partial = tmp_path / "out.partial"
    written = {p.name: p.stat().st_mtime_ns for p in partial.glob("light_*.fits")}
    assert sorted(written) == ["light_0001.fits", "light_0002.fits"]
    run = calibrate_files(lights, out, config)
    assert len(run.outputs) == 4 and not partial.exists()
    for name, mtime in written.items():
        assert (out / name).stat().st_mtime_ns == mtime  # reused, not redone


def test_mismatched_master_size_is_one_line_error(session, tmp_path, capsys):
    small = tmp_path / "small_dark.fits"
    skystack.write(np.zeros((10, 10), np.float32), small)
    code = main(["calibrate", str(session / "lights"), "--master-dark", str(small),
                 "-o", str(tmp_path / "x")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "small_dark.fits" in err and "does not match" in err
    assert len(err.strip().splitlines()) == 1
