"""``skystack trails``: output, sidecar, skipped frames, no overwrite, one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from skystack.cli.main import main
from skystack.errors import FrameSkippedWarning
from skystack.io import read
from skystack.pipeline.trails import TrailsConfig, trails_files
from skystack.sim.startrails import StarTrailConfig, write_star_trails


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trails")
    config = StarTrailConfig(width=160, height=120, n_frames=5, star_count=4000, sky_level_e=150.0,
                             interval_s=120.0, exposure_s=110.0)  # fmt: skip
    return write_star_trails(folder, config, seed=11)


@pytest.mark.filterwarnings("ignore::skystack.errors.FrameSkippedWarning")
def test_trails_writes_output_and_sidecar_skipping_a_bad_frame(sequence, tmp_path, capsys):
    frames = tmp_path / "frames"
    shutil.copytree(sequence.directory / "frames", frames)
    (frames / "frame_0099.tif").write_bytes(b"II*\x00 not really a TIFF")
    out = tmp_path / "trails.fits"
    code = main(["trails", str(frames), "-o", str(out), "--gap-fill", "--comet", "4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "frame_0099.tif  skipped" in captured.out and "gap filled" in captured.out
    image = read(out).data
    first = read(sequence.frames[0]).data
    assert image.shape == first.shape and image.dtype == np.float32
    report = json.loads(out.with_suffix(".json").read_text())
    rows = report["frames"]
    assert len(rows) == 6 and sum(r["accepted"] for r in rows) == 5
    bad = next(r for r in rows if r["path"].endswith("frame_0099.tif"))
    assert bad["accepted"] is False and "frame_0099.tif" in bad["reason"]
    assert report["settings"]["gap_fill"] == "all" and report["settings"]["comet"] == 4.0
    assert sum(r["gap_filled"] for r in rows) == 4


def test_trails_refuses_to_overwrite(sequence, tmp_path, capsys):
    out = tmp_path / "trails.tif"
    frames = [str(p) for p in sequence.frames]
    assert main(["trails", *frames, "-o", str(out), "--foreground", "none"]) == 0
    maximum = np.maximum.reduce([read(p).data for p in sequence.frames])
    assert np.allclose(read(out).data, maximum, atol=1.0 / 65535)  # 16-bit TIFF, pure max
    capsys.readouterr()
    assert main(["trails", *frames, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err and "Traceback" not in err
    assert main(["trails", *frames, "-o", str(out), "--overwrite"]) == 0


@pytest.mark.filterwarnings("ignore::skystack.errors.FrameSkippedWarning")
def test_unreadable_single_input_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    code = main(["trails", str(bad), "-o", str(tmp_path / "out.fits")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("skystack: error")]
    assert len(errors) == 1 and "broken.jpg" in errors[0] and "at least 2" in errors[0]
    assert not (tmp_path / "out.fits").exists()


def test_bad_options(sequence, tmp_path, capsys):
    frames = [str(p) for p in sequence.frames]
    assert main(["trails", *frames, "-o", str(tmp_path / "a.fits"), "--comet", "0"]) == 2
    assert "--comet" in capsys.readouterr().err
    assert main(["trails", *frames, "-o", str(tmp_path / "a.txt")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_pipeline_skips_a_bad_frame_with_a_warning(sequence, tmp_path):
    bad = tmp_path / "bad.fits"
    bad.write_text("not a FITS file")
    paths = [sequence.frames[0], bad, *sequence.frames[1:3]]
    with pytest.warns(FrameSkippedWarning, match="bad.fits"):
        run = trails_files(paths, tmp_path / "out.fits", TrailsConfig(foreground="median"))
    assert run.n_stacked == 3 and [r["accepted"] for r in run.frames] == [True, False, True, True]
    assert run.output.exists() and run.sidecar.exists()
