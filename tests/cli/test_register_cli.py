"""``skystack register``: outputs, the JSON report, skipped frames, options, no overwrite."""

from __future__ import annotations

import json
import shutil

import pytest

from skystack.cli.main import main
from skystack.sim import SessionConfig, write_session


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("session")
    config = SessionConfig(width=400, height=300, n_lights=4, n_bias=0, n_darks=0, n_flats=0,
                           star_count=150, extended="none", shift_px=15.0,
                           rotation_deg=2.0)  # fmt: skip
    write_session(folder, config, seed=9)
    return folder


@pytest.mark.filterwarnings("ignore::skystack.errors.FrameSkippedWarning")
def test_register_command_writes_frames_and_report(session, tmp_path, capsys):
    frames = tmp_path / "frames"
    shutil.copytree(session / "lights", frames)
    (frames / "light_0099.fits").write_text("not a FITS file")
    out = tmp_path / "registered"
    args = ["register", str(frames), "-o", str(out), "--interpolation", "bicubic"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "rejected" in printed and "light_0099.fits" in printed
    assert sorted(p.name for p in out.glob("*.fits")) == [f"light_000{i}.fits" for i in range(1, 5)]
    report = json.loads((out / "registration.json").read_text())
    rows = report["frames"]
    assert len(rows) == 5
    bad = next(r for r in rows if r["path"].endswith("light_0099.fits"))
    assert bad["accepted"] is False and bad["reason"] and bad["transform"] is None
    good = [r for r in rows if r["accepted"]]
    assert len(good) == 4
    assert all(r["stars"] >= 15 and r["matched_stars"] >= 10 and r["rms_px"] < 0.3 for r in good)
    assert report["settings"]["interpolation"] == "bicubic"
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_select_and_reference_options(session, tmp_path, capsys):
    out = tmp_path / "best"
    reference = session / "lights" / "light_0003.fits"
    code = main(["register", str(session / "lights"), "-o", str(out), "--select", "50%",
                 "--reference", str(reference)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "registration.json").read_text())
    assert report["reference"] == str(reference)
    accepted = [r for r in report["frames"] if r["accepted"]]
    assert 2 <= len(accepted) <= 3  # the best half, plus the chosen reference
    assert any("best 50%" in (r["reason"] or "") for r in report["frames"])


def test_bad_options_give_one_line_errors(session, tmp_path, capsys):
    assert (
        main(["register", str(session / "lights"), "-o", str(tmp_path / "x"), "--select", "0"]) == 2
    )
    assert "--select" in capsys.readouterr().err
    missing = tmp_path / "nope.fits"
    code = main(["register", str(session / "lights"), "-o", str(tmp_path / "y"), "--reference",
                 str(missing)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "--reference" in err and "Traceback" not in err
