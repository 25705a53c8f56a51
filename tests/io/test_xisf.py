"""XISF reading and writing: round trips, FITS keywords and HISTORY, storage layouts, bad files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import skystack.io
from skystack.errors import FormatError
from skystack.frame import Frame, FrameMeta
from skystack.io._scale import integer_to_float
from skystack.io.xisf import read_xisf, write_xisf


@pytest.mark.parametrize("shape", [(11, 17), (11, 17, 3)])
def test_float32_round_trip_is_exact(tmp_path, rng, shape):
    data = (rng.standard_normal(shape) * 0.3 + 0.2).astype(np.float32)
    path = tmp_path / "round trip.xisf"
    write_xisf(data, path, bit_depth=32)
    frame = read_xisf(path)
    assert frame.data.dtype == np.float32
    assert frame.data.shape == shape
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta.bit_depth == 32
    assert frame.meta.format == "xisf"


@pytest.mark.parametrize("shape", [(11, 17), (11, 17, 3)])
def test_uint16_round_trip_is_exact(tmp_path, rng, shape):
    data = integer_to_float(rng.integers(0, 65536, shape, dtype=np.uint16))
    path = tmp_path / "sixteen.xisf"
    write_xisf(data, path, bit_depth=16)
    frame = read_xisf(path)
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta.bit_depth == 16


def test_red_stays_in_channel_zero(tmp_path):
    data = np.zeros((5, 6, 3), np.float32)
    data[2, 3, 0] = 1.0
    path = tmp_path / "red.xisf"
    write_xisf(data, path)
    frame = read_xisf(path)
    assert frame.data[2, 3].tolist() == [1.0, 0.0, 0.0]


def test_keywords_and_history_survive(tmp_path, rng):
    meta = FrameMeta(
        exposure=300.0,
        filter="Ha 7nm",
        header=(
            ("OBJECT", "M 42", "target"),
            ("XPIXSZ", 3.76, "[um] pixel size"),
            ("GAINADJ", True, "a boolean"),
            ("NCOMBINE", 12, "frames"),
            ("NOTE", "it's quoted", ""),
            ("HISTORY", "bias subtracted", ""),
        ),
    )
    data = rng.random((8, 9)).astype(np.float32)
    path = tmp_path / "with keywords.xisf"
    skystack.io.write(Frame(data, meta), path, history=["stacked 12 frames", "registered"])
    frame = skystack.io.read(path)
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta.exposure == 300.0
    assert frame.meta.filter == "Ha 7nm"
    assert frame.meta.target == "M 42"
    assert frame.meta.header_value("EXPTIME") == 300.0
    assert frame.meta.header_value("FILTER") == "Ha 7nm"
    assert frame.meta.header_value("XPIXSZ") == 3.76
    assert frame.meta.header_value("GAINADJ") is True
    assert frame.meta.header_value("NCOMBINE") == 12
    assert frame.meta.header_value("NOTE") == "it's quoted"
    history = [value for key, value, _ in frame.meta.header if key == "HISTORY"]
    assert history == ["bias subtracted", "stacked 12 frames", "registered"]


def test_bad_bit_depth(tmp_path):
    with pytest.raises(FormatError, match="bit depth must be 8, 16 or 32, not 64"):
        write_xisf(np.zeros((2, 2), np.float32), tmp_path / "x.xisf", bit_depth=64)


def _handmade_xisf(path: Path, pixels: np.ndarray, image_attrs: str, keywords: str) -> None:
    """A monolithic XISF file with one attached block holding ``pixels`` as given."""
    block = pixels.tobytes()
    position = 4096
    header = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<xisf version="1.0" xmlns="http://www.pixinsight.com/xisf">'
        f'<Image {image_attrs} location="attachment:{position}:{len(block)}">{keywords}</Image>'
        '<Metadata><Property id="XISF:CreatorApplication" type="String">tests</Property>'
        "</Metadata></xisf>"
    ).encode()
    head = b"XISF0100" + len(header).to_bytes(4, "little") + b"\x00" * 4 + header
    path.write_bytes(head + b"\x00" * (position - len(head)) + block)


def test_normal_pixel_storage_and_big_endian(tmp_path, rng):
    pixels = rng.integers(0, 65536, (4, 5, 3), dtype=np.uint16)  # (H, W, C) interleaved
    path = tmp_path / "normal.xisf"
    keywords = (
        '<FITSKeyword name="EXPTIME" value="1.5D1" comment="exposure"/>'
        '<FITSKeyword name="FILTER" value="\'O3  \'" comment=""/>'
        '<FITSKeyword name="HISTORY" value="" comment="made by hand"/>'
        '<FITSKeyword name="NAXIS" value="2" comment="layout, not kept"/>'
    )
    attrs = (
        'geometry="5:4:3" sampleFormat="UInt16" colorSpace="RGB" pixelStorage="Normal" '
        'byteOrder="big"'
    )
    _handmade_xisf(path, pixels.astype(">u2"), attrs, keywords)
    frame = read_xisf(path)
    np.testing.assert_array_equal(frame.data, integer_to_float(pixels))
    assert frame.meta.exposure == 15.0
    assert frame.meta.filter == "O3"
    assert frame.meta.header_value("HISTORY") == "made by hand"
    assert frame.meta.header_value("NAXIS") is None


def test_rgba_drops_alpha(tmp_path, rng):
    planes = rng.random((4, 3, 5)).astype(np.float32)  # (C, H, W) planar
    path = tmp_path / "rgba.xisf"
    attrs = 'geometry="5:3:4" sampleFormat="Float32" colorSpace="RGB"'
    _handmade_xisf(path, planes, attrs, "")
    frame = read_xisf(path)
    np.testing.assert_array_equal(frame.data, np.moveaxis(planes[:3], 0, -1))
    assert any("alpha" in note for note in frame.meta.notes)


def test_truncated_data_block(tmp_path, rng, assert_format_error):
    path = tmp_path / "trunc ated.xisf"
    write_xisf(rng.random((32, 32)).astype(np.float32), path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 100])
    assert_format_error(path, read_xisf)


def test_truncated_header(tmp_path, rng, assert_format_error):
    path = tmp_path / "short.xisf"
    write_xisf(rng.random((8, 8)).astype(np.float32), path)
    path.write_bytes(path.read_bytes()[:200])
    assert_format_error(path, read_xisf)


def test_corrupt_header(tmp_path, assert_format_error):
    path = tmp_path / "corrupt.xisf"
    path.write_bytes(b"XISF0100" + (40).to_bytes(4, "little") + b"\x00" * 4 + b"<xisf><Image" * 4)
    assert_format_error(path, read_xisf)


def test_unsupported_colour_space(tmp_path):
    path = tmp_path / "lab.xisf"
    attrs = 'geometry="2:2:3" sampleFormat="Float32" colorSpace="CIELab"'
    _handmade_xisf(path, np.zeros((3, 2, 2), np.float32), attrs, "")
    with pytest.raises(FormatError, match=re.escape(str(path)) + ".*CIELab"):
        read_xisf(path)
