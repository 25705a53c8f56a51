"""The command line: help, version, info, convert, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits

import skystack
from skystack.cli.main import main


def run_cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def light(tmp_path, rng):
    path = tmp_path / "light.fits"
    data = rng.normal(1000, 10, size=(64, 80)).clip(0, 65535).astype(np.uint16)
    header = fits.Header({"EXPTIME": 30.0, "BAYERPAT": "RGGB", "IMAGETYP": "Light Frame"})
    fits.PrimaryHDU(data, header).writeto(path)
    return path


def test_version_and_help(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"skystack {skystack.__version__}"
    for command in ([], ["info"], ["convert"], ["demo"]):
        code, out, _ = run_cli(capsys, *command, "--help")
        assert code == 0 and "Usage" in out


def test_info_prints_metadata_and_statistics(capsys, light):
    code, out, err = run_cli(capsys, "info", str(light))
    assert code == 0, err
    assert "Bayer mosaic" in out and "RGGB" in out and "exposure" in out
    code, out, _ = run_cli(capsys, "info", "--json", str(light))
    record = json.loads(out)
    assert record["shape"] == [64, 80] and record["cfa"] == "RGGB"
    stats = record["statistics"]["CFA"]
    assert stats["median"] == pytest.approx(1000 / 65535, rel=0.01)
    assert stats["noise"] == pytest.approx(10 / 65535, rel=0.15)


def test_convert_fits_to_png_and_tiff(capsys, tmp_path, light):
    png = tmp_path / "out.png"
    code, out, err = run_cli(capsys, "convert", str(light), "-o", str(png), "--bit-depth", "8")
    assert code == 0, err
    assert png.exists() and "wrote" in out
    picture = skystack.read(png).data
    # The 8-bit output of linear data is display-stretched: the sky is no longer near black.
    assert 0.1 < np.median(picture) < 0.4
    code, _, err = run_cli(capsys, "convert", str(light), "-o", str(png))
    assert code == 2 and "--overwrite" in err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _missing(folder):
    return folder / "missing.fits"


def _zero_bytes(folder):
    path = folder / "zero.fits"
    path.touch()
    return path


def _text_as_raw(folder):
    path = folder / "fake.cr2"
    path.write_text("hello")
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_missing, r"missing\.fits: no such file"),
        (_zero_bytes, r"zero\.fits: .*empty"),
        (_text_as_raw, r"fake\.cr2: not a camera raw file"),
    ],
)
def test_bad_inputs_give_one_line_and_exit_2(capsys, tmp_path, make, expected):
    path = make(tmp_path)
    code, _, err = run_cli(capsys, "info", str(path))
    assert code == 2
    assert re.search(expected, _one_error_line(err))


def test_truncated_fits_gives_one_line(capsys, tmp_path, light):
    truncated = tmp_path / "cut.fits"
    truncated.write_bytes(light.read_bytes()[:5000])
    code, _, err = run_cli(capsys, "info", str(truncated))
    assert code == 2
    assert "cut.fits" in _one_error_line(err)


def test_empty_folder(capsys, tmp_path):
    code, _, err = run_cli(capsys, "info", str(tmp_path))
    assert code == 2
    assert "folder holds no image files" in _one_error_line(err)


def test_one_bad_file_does_not_hide_the_good_ones(capsys, tmp_path, light):
    bad = tmp_path / "bad.fits"
    bad.write_text("nope")
    code, out, err = run_cli(capsys, "info", str(bad), str(light))
    assert code == 2
    assert "light.fits" in out and "bad.fits" in _one_error_line(err)


def test_debug_shows_traceback(capsys, tmp_path):
    code, _, err = run_cli(capsys, "convert", str(tmp_path / "nope.fits"), "-o", "x.png", "--debug")
    assert code == 2 and "Traceback" in err and "nope.fits" in err


def test_console_script_starts_fast_without_heavy_imports():
    probe = (
        "import sys; from skystack.cli.main import app; "
        "heavy = [m for m in ('numpy', 'astropy', 'cv2', 'scipy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_ser_promising_more_frames_than_it_holds(capsys, tmp_path):
    from skystack.io.ser import write_ser

    path = tmp_path / "short.ser"
    write_ser(np.zeros((4, 16, 16), np.float32), path, bit_depth=8)
    path.write_bytes(path.read_bytes()[: 178 + 2 * 16 * 16 + 10])  # 2 whole frames of 4 remain
    code, _, err = run_cli(capsys, "info", str(path))
    assert code == 2
    line = _one_error_line(err)
    assert "short.ser" in line and "4" in line and "2" in line


def test_info_on_every_real_sample_file(capsys, shared_data):
    files = sorted(p for p in shared_data.rglob("*") if p.is_file())
    images = [p for p in files if p.suffix.lower() != ".md"]
    code, out, err = run_cli(capsys, "info", "--json", *map(str, files))
    assert "Traceback" not in err
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["path"] for r in records) == sorted(map(str, images))
    # Only the README and SOURCE notes are refused, each with one line naming it.
    errors = err.strip().splitlines()
    assert len(errors) == len(files) - len(images)
    assert all(".md: unknown image format (it holds text)" in line for line in errors)
    assert code == 2
    for record in records:
        for stats in record["statistics"].values():
            assert stats["min"] <= stats["median"] <= stats["max"]
            assert stats["noise"] >= 0
