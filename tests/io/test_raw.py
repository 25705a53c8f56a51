"""Camera raw through rawpy: the real DNG as a mosaic, pattern derivation, fallbacks, bad files."""

from __future__ import annotations

import re
from collections import namedtuple
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rawpy

import skystack.io
import skystack.io.raw as raw_module
from skystack.errors import FormatError
from skystack.io.raw import bayer_pattern, read_raw


@pytest.fixture(scope="module")
def dng(shared_data: Path) -> Path:
    path = shared_data / "raw_blackmagic_dng" / "Blackmagic.dng"
    if not path.is_file():
        pytest.skip(f"sample raw not found at {path}")
    return path


@pytest.fixture(scope="module")
def dng_frame(dng: Path):
    return skystack.io.read(dng)


# ------------------------------------------------------------------------------ the real DNG


def test_dng_is_an_undemosaiced_mosaic(dng, dng_frame):
    with rawpy.imread(str(dng)) as raw:
        visible = raw.raw_image_visible.copy()
        white = raw.white_level
    data = dng_frame.data
    assert data.dtype == np.float32
    assert data.shape == visible.shape == (2176, 4128)
    np.testing.assert_array_equal(data, (visible.astype(np.float32) * np.float32(1.0 / white)))
    assert 0.0 <= float(data.min()) <= float(data.max()) <= 1.0
    assert dng_frame.is_cfa


def test_dng_metadata(dng_frame):
    meta = dng_frame.meta
    assert meta.format == "raw"
    assert meta.cfa == "RGGB"
    assert meta.white_level == 1.0
    assert meta.black_level == pytest.approx(512 / 65535)
    assert meta.bit_depth == 12
    assert meta.camera == "Blackmagic Pocket Cinema Camera 4K"
    red, green, blue = meta.white_balance
    assert green == 1.0
    assert red == pytest.approx(1 / 0.4533, rel=1e-3)  # DNG AsShotNeutral 0.4533 1 0.53
    assert blue == pytest.approx(1 / 0.53, rel=1e-3)
    # This cinema camera's DNG records no ISO, shutter or time: nothing is guessed.
    assert meta.iso is None and meta.exposure is None and meta.date_obs is None
    assert any("no ISO" in note for note in meta.notes)


def test_dng_pattern_matches_libraw_colours(dng, dng_frame):
    with rawpy.imread(str(dng)) as raw:
        colours = raw.raw_colors_visible[:4, :4]
        letters = raw.color_desc.decode()
    expected = "".join(letters[c] for c in colours[:2, :2].ravel())
    assert dng_frame.meta.cfa == expected
    # The 2x2 cell repeats over the corner, so [0, 0] is a cell origin.
    np.testing.assert_array_equal(colours[:2, :2], colours[2:, 2:])


def test_dng_sites_have_colour_statistics(dng_frame):
    data = dng_frame.data
    red, green1, green2, blue = (
        data[0::2, 0::2],
        data[0::2, 1::2],
        data[1::2, 0::2],
        data[1::2, 1::2],
    )
    g1, g2 = float(green1.mean()), float(green2.mean())
    # The two green sites of a daylight scene agree closely; red and blue sites differ from them.
    assert abs(g1 / g2 - 1.0) < 0.01
    assert float(red.mean()) < 0.8 * g1
    assert float(blue.mean()) < 0.8 * g1
    assert abs(float(red.mean()) / float(blue.mean()) - 1.0) > 0.1


def test_truncated_dng_is_format_error(dng, tmp_path, assert_format_error):
    path = tmp_path / "cut short.dng"
    path.write_bytes(dng.read_bytes()[:200_000])
    assert_format_error(path, read_raw)


# --------------------------------------------------------------------------------- bad files


def test_text_named_cr2_is_format_error(tmp_path):
    path = tmp_path / "IMG 0001.cr2"
    path.write_text("this is a text file, not a raw\n" * 20)
    with pytest.raises(FormatError, match=re.escape(str(path))):
        skystack.io.read(path)
    with pytest.raises(FormatError, match=re.escape(str(path)) + ": not a readable camera raw"):
        read_raw(path)


def test_tiff_magic_but_not_raw_is_format_error(tmp_path):
    path = tmp_path / "fake.nef"
    path.write_bytes(b"II*\x00\x08\x00\x00\x00" + b"\x00" * 64)
    with pytest.raises(FormatError, match=re.escape(str(path))):
        skystack.io.read(path)


# -------------------------------------------------------------------------- pattern from LibRaw


@pytest.mark.parametrize(
    ("top", "left", "expected"),
    [(0, 0, "RGGB"), (0, 1, "GRBG"), (1, 0, "GBRG"), (1, 1, "BGGR"), (2, 4, "RGGB")],
)
def test_bayer_pattern_follows_the_visible_origin(top, left, expected):
    cell = np.array([[0, 1], [3, 2]], dtype=np.uint8)
    assert bayer_pattern(cell, b"RGBG", top=top, left=left) == expected


def test_bayer_pattern_rejects_non_bayer():
    assert bayer_pattern(None, b"RGBG") is None
    assert bayer_pattern(np.zeros((6, 6), np.uint8), b"RGBG") is None  # X-Trans
    assert bayer_pattern(np.array([[0, 1], [3, 2]]), b"CMYG") is None
    assert bayer_pattern(np.array([[0, 0], [1, 2]]), b"RGBG") is None


# ------------------------------------------------------------ LibRaw stand-ins for other sensors

Sizes = namedtuple("Sizes", "top_margin left_margin flip")
Other = namedtuple("Other", "iso_speed shutter_speed aperture focal_length timestamp")
Lens = namedtuple("Lens", "model make")


class _FakeRaw:
    """The parts of rawpy.RawPy that read_raw uses."""

    def __init__(self, **attributes: Any) -> None:
        self.raw_type = rawpy.RawType.Flat
        self.color_desc = b"RGBG"
        self.num_colors = 3
        self.white_level = 4000
        self.black_level_per_channel = [256, 256, 256, 256]
        self.camera_whitebalance = [2.0, 1.0, 1.5, 1.0]
        self.sizes = Sizes(0, 0, 0)
        self.other = Other(800.0, 30.0, 2.8, 50.0, datetime(2024, 1, 2, 3, 4, 5))
        self.lens = Lens("", "")
        self.postprocess_kwargs: dict[str, Any] = {}
        self.__dict__.update(attributes)

    def __enter__(self) -> _FakeRaw:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def postprocess(self, **kwargs: Any) -> np.ndarray:
        self.postprocess_kwargs = kwargs
        return np.full((4, 6, 3), 65535, np.uint16)


def _use_fake(monkeypatch, fake: _FakeRaw) -> None:
    monkeypatch.setattr(raw_module.rawpy, "imread", lambda _path: fake)


def test_margins_and_uneven_black_levels(monkeypatch, tmp_path):
    mosaic = np.arange(24, dtype=np.uint16).reshape(4, 6) * 100
    fake = _FakeRaw(
        raw_pattern=np.array([[0, 1], [3, 2]], np.uint8),
        raw_image_visible=mosaic,
        sizes=Sizes(top_margin=1, left_margin=0, flip=6),
        black_level_per_channel=[250, 256, 260, 256],
    )
    _use_fake(monkeypatch, fake)
    path = tmp_path / "shot.cr2"
    path.write_bytes(b"stand-in")
    frame = read_raw(path)
    np.testing.assert_array_equal(frame.data, mosaic.astype(np.float32) * np.float32(1 / 4000))
    meta = frame.meta
    assert meta.cfa == "GBRG"
    assert meta.black_level == pytest.approx(np.mean([250, 256, 260, 256]) / 4000)
    assert meta.iso == 800 and meta.exposure == 30.0
    assert meta.date_obs == datetime(2024, 1, 2, 3, 4, 5)
    assert meta.white_balance == (2.0, 1.0, 1.5)
    assert meta.bit_depth == 12  # from the white level when the file does not say
    assert any("black levels differ" in note for note in meta.notes)
    assert any("orientation" in note for note in meta.notes)


def test_xtrans_falls_back_to_libraw_demosaic(monkeypatch, tmp_path):
    fake = _FakeRaw(raw_pattern=np.zeros((6, 6), np.uint8), raw_image_visible=None)
    _use_fake(monkeypatch, fake)
    path = tmp_path / "fuji.raf"
    path.write_bytes(b"stand-in")
    frame = read_raw(path)
    assert frame.data.shape == (4, 6, 3)
    assert frame.data.max() == 1.0
    assert frame.meta.cfa is None
    assert frame.meta.black_level == 0.0
    assert any("X-Trans" in note and "demosaiced by LibRaw" in note for note in frame.meta.notes)
    kwargs = fake.postprocess_kwargs
    assert kwargs["gamma"] == (1.0, 1.0)
    assert kwargs["no_auto_bright"] is True
    assert kwargs["output_bps"] == 16
    assert kwargs["use_camera_wb"] is False and kwargs["use_auto_wb"] is False
    assert kwargs["output_color"] == rawpy.ColorSpace.raw
    assert kwargs["user_flip"] == 0


def test_monochrome_sensor_stays_mono(monkeypatch, tmp_path):
    mosaic = np.full((4, 6), 2000, np.uint16)
    fake = _FakeRaw(raw_pattern=np.zeros((1, 1), np.uint8), raw_image_visible=mosaic, num_colors=1)
    _use_fake(monkeypatch, fake)
    path = tmp_path / "mono.dng"
    path.write_bytes(b"stand-in")
    frame = read_raw(path)
    assert frame.data.shape == (4, 6)
    assert frame.meta.cfa is None
    assert frame.data[0, 0] == pytest.approx(0.5)
