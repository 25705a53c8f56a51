"""``skystack enhance``: outputs and formats, inputs from other tools, options, one-line errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from skystack.cli.enhance import parse_curves, parse_ghs, parse_white_balance
from skystack.cli.main import main
from skystack.errors import ConfigError
from skystack.io import read, write
from skystack.sim import SessionConfig, make_session, render_stack


@pytest.fixture(scope="module")
def stack_fits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("enhance")
    config = SessionConfig(
        width=320, height=240, bayer="RGGB", star_count=150, extended="galaxy",
        sky_gradient=(0.3, 0.1),
    )  # fmt: skip
    image = render_stack(make_session(config, seed=8), 16, rng=np.random.default_rng(2))
    path = folder / "stack.fits"
    write(image, path)
    return path


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_enhance_writes_16bit_tiff_and_jpeg_and_leaves_the_input_alone(stack_fits, tmp_path,
                                                                      capsys):  # fmt: skip
    before = _digest(stack_fits)
    out, jpeg, model = tmp_path / "out.tif", tmp_path / "out.jpg", tmp_path / "bg.fits"
    code = main(["enhance", str(stack_fits), "-o", str(out), "--jpeg", str(jpeg),
                 "--save-background", str(model)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert _digest(stack_fits) == before
    picture = read(out)
    assert picture.meta.bit_depth == 16 and picture.data.shape == (240, 320, 3)
    # A stretched picture: the sky is no longer a dark linear level.
    assert 0.1 < np.median(picture.data) < 0.35
    preview = read(jpeg).data
    assert preview.shape == (240, 320, 3)
    # The JPEG is the same picture (not stretched a second time).
    assert np.abs(np.median(preview) - np.median(picture.data)) < 0.02
    background = read(model).data
    assert background.shape == (240, 320, 3)
    # The model follows the simulated gradient: brighter on the right (gx = +0.3).
    assert background[:, -20:].mean() > background[:, :20].mean()
    assert "stars found" in captured.out and "wrote" in captured.out


def test_stretch_none_stays_linear_fits(stack_fits, tmp_path, capsys):
    out = tmp_path / "linear.fits"
    assert main(["enhance", str(stack_fits), "-o", str(out), "--stretch", "none"]) == 0
    linear = read(out)
    source = read(stack_fits).data
    assert linear.data.dtype == np.float32 and linear.data.shape == source.shape
    # Linear: the sky stays near its original level, not stretched to ~0.2.
    assert np.median(linear.data) < 5 * np.median(source)
    assert "s, background" in capsys.readouterr().out
    history = [value for key, value, _ in linear.meta.header if key == "HISTORY"]
    assert any("stretch=none" in line for line in history)


def test_enhance_reads_a_deepskystacker_style_16bit_tiff_and_a_jpeg(stack_fits, tmp_path):
    image = read(stack_fits).data
    autosave = tmp_path / "Autosave.tif"
    write(np.clip(image * 20, 0, 1), autosave, bit_depth=16)
    out = tmp_path / "from_tiff.tif"
    assert main(["enhance", str(autosave), "-o", str(out), "--background", "tiles"]) == 0
    assert read(out).data.shape == image.shape
    photo = tmp_path / "phone.jpg"
    write(np.clip(image * 40, 0, 1) ** 0.45, photo, stretch="linear")
    out2 = tmp_path / "from_jpeg.png"
    assert main(["enhance", str(photo), "-o", str(out2), "--stars", "reduce"]) == 0
    assert np.isfinite(read(out2).data).all()


def test_enhance_refuses_to_overwrite_and_to_replace_its_input(stack_fits, tmp_path, capsys):
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep me")
    assert main(["enhance", str(stack_fits), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err and "Traceback" not in err
    assert out.read_bytes() == b"keep me"
    assert main(["enhance", str(stack_fits), "-o", str(stack_fits), "--overwrite"]) == 2
    assert "replace the input" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--white-balance", "1,2"], "--white-balance"),
        (["--curves", "0,0 x"], "--curves"),
        (["--ghs", "Q=3"], "--ghs"),
        (["--jpeg", "preview.png"], "--jpeg"),
        (["--background", "none", "--save-background", "bg.fits"], "--save-background"),
    ],
)
def test_bad_options_are_one_line_errors(stack_fits, tmp_path, capsys, args, message):
    args = [a if not a.endswith((".png", ".fits")) else str(tmp_path / a) for a in args]
    code = main(["enhance", str(stack_fits), "-o", str(tmp_path / "o.tif"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unreadable_input_names_the_file(tmp_path, capsys):
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"SIMPLE  = not a fits file")
    assert main(["enhance", str(bad), "-o", str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert "broken.fits" in err and "Traceback" not in err


def test_option_parsers():
    assert parse_white_balance("Stars") == "stars"
    assert parse_white_balance("1.2,1,0.8") == (1.2, 1.0, 0.8)
    with pytest.raises(ConfigError):
        parse_white_balance("1,0,1")
    assert parse_curves("0,0 0.3,0.45 1,1") == ((0.0, 0.0), (0.3, 0.45), (1.0, 1.0))
    d, b, sp, lp, hp = parse_ghs("D=3,SP=0.05")
    assert (d, sp) == (3.0, 0.05) and (b, lp, hp) == (2.0, 0.0, 1.0)
    with pytest.raises(ConfigError):
        parse_ghs("D=three")
