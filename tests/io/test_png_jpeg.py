"""PNG and JPEG through OpenCV: exact PNG round trips, colour order, layouts, EXIF, bad files."""

from __future__ import annotations

import struct
from datetime import datetime

import cv2
import numpy as np
import pytest

import skystack.io
from skystack.errors import FormatError
from skystack.frame import Frame
from skystack.io._scale import integer_to_float
from skystack.io.png_jpeg import read_jpeg, read_png, write_jpeg, write_png


def _smooth(shape: tuple[int, ...]) -> np.ndarray:
    """A smooth test picture (JPEG-friendly) in [0.1, 0.9]."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    base = 0.5 + 0.4 * np.sin(x / 7.0) * np.cos(y / 9.0)
    if len(shape) == 2:
        return base.astype(np.float32)
    return np.stack([base, base[::-1], base[:, ::-1]], axis=-1).astype(np.float32)


# --------------------------------------------------------------------------------------- PNG


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("shape", [(13, 21), (13, 21, 3)])
def test_png_round_trip_is_exact(tmp_path, rng, bits, shape, quantised):
    data = quantised(rng, shape, bits)
    path = tmp_path / "round trip.png"
    write_png(data, path, bit_depth=bits)
    frame = read_png(path)
    assert frame.data.dtype == np.float32
    assert frame.data.shape == shape
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta.bit_depth == bits
    assert frame.meta.format == "png"
    assert frame.meta.notes == ()


def test_png_red_stays_in_channel_zero(tmp_path):
    data = np.zeros((6, 6, 3), np.float32)
    data[1:3, 1:3, 0] = 1.0
    path = tmp_path / "red.png"
    write_png(data, path, bit_depth=16)
    stored = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    assert stored[2, 2].tolist() == [0, 0, 65535]  # OpenCV's B, G, R: the file holds red
    np.testing.assert_array_equal(read_png(path).data, data)


def test_png_paths_with_spaces_and_non_ascii(tmp_path, rng, quantised):
    folder = tmp_path / "nuit étoilée" / "with space"
    folder.mkdir(parents=True)
    path = folder / "Ørion ñebula 1.png"
    data = quantised(rng, (7, 9, 3), 16)
    skystack.io.write(Frame(data), path, bit_depth=16)
    frame = skystack.io.read(path)
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta.path == path


def test_png_eight_bit_through_dispatcher_linear(tmp_path, rng, quantised):
    data = quantised(rng, (7, 9), 8)
    path = tmp_path / "eight bit.png"
    skystack.io.write(Frame(data), path, bit_depth=8, stretch="linear")
    np.testing.assert_array_equal(skystack.io.read(path).data, data)


def test_png_grey_alpha_stays_grey_and_drops_alpha(tmp_path, rng):
    pil = pytest.importorskip("PIL.Image")
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    alpha = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    path = tmp_path / "grey alpha.png"
    pil.fromarray(np.dstack([grey, alpha]), "LA").save(path)
    frame = read_png(path)
    assert frame.data.shape == (5, 7)
    np.testing.assert_array_equal(frame.data, integer_to_float(grey))
    assert any("alpha" in note for note in frame.meta.notes)


def test_png_rgba_drops_alpha(tmp_path, rng):
    rgba = rng.integers(0, 65536, (4, 5, 4), dtype=np.uint16)
    path = tmp_path / "rgba.png"
    ok, encoded = cv2.imencode(".png", rgba)  # B, G, R, A
    assert ok
    encoded.tofile(path)
    frame = read_png(path)
    np.testing.assert_array_equal(frame.data, integer_to_float(rgba[..., 2::-1]))
    assert any("alpha" in note for note in frame.meta.notes)


def test_png_palette_is_expanded(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    index = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    image = pil.fromarray(index, "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    path = tmp_path / "palette.png"
    image.save(path)
    frame = read_png(path)
    assert frame.data.shape == (2, 2, 3)
    assert frame.data[0, 1].tolist() == [1.0, 0.0, 0.0]
    assert frame.data[1, 0].tolist() == [0.0, 0.0, 1.0]
    assert any("palette" in note for note in frame.meta.notes)


def test_png_bad_bit_depth(tmp_path):
    with pytest.raises(FormatError, match="8- or 16-bit samples, not 32-bit"):
        write_png(np.zeros((2, 2), np.float32), tmp_path / "x.png", bit_depth=32)


def test_real_png(shared_data):
    frame = skystack.io.read(shared_data / "skimage_moon_hdf" / "moon.png")
    assert frame.data.ndim in (2, 3)
    assert 0.0 <= float(frame.data.min()) <= float(frame.data.max()) <= 1.0


# -------------------------------------------------------------------------------------- JPEG


@pytest.mark.parametrize("shape", [(40, 56), (40, 56, 3)])
def test_jpeg_round_trip_is_close(tmp_path, shape):
    data = _smooth(shape)
    path = tmp_path / "round trip.jpg"
    write_jpeg(data, path)
    frame = read_jpeg(path)
    assert frame.data.shape == shape  # grey JPEG stays (H, W)
    assert frame.meta.bit_depth == 8
    assert frame.meta.format == "jpeg"
    assert float(np.abs(frame.data - data).mean()) < 0.01
    assert float(np.abs(frame.data - data).max()) < 0.06


def test_jpeg_red_stays_in_channel_zero(tmp_path):
    data = np.zeros((32, 32, 3), np.float32)
    data[8:24, 8:24, 0] = 1.0
    path = tmp_path / "red.jpeg"
    write_jpeg(data, path)
    patch = read_jpeg(path).data[12:20, 12:20]
    assert patch[..., 0].min() > 0.9
    assert patch[..., 1:].max() < 0.1


def test_jpeg_through_dispatcher_with_spaces(tmp_path):
    data = _smooth((24, 32, 3))
    path = tmp_path / "all sky" / "frame 0001.jpg"
    path.parent.mkdir()
    skystack.io.write(Frame(data), path, stretch="linear")
    frame = skystack.io.read(path)
    assert frame.data.shape == (24, 32, 3)
    assert float(np.abs(frame.data - data).mean()) < 0.01


def test_jpeg_only_eight_bit(tmp_path):
    with pytest.raises(FormatError, match="only 8-bit"):
        write_jpeg(np.zeros((2, 2), np.float32), tmp_path / "x.jpg", bit_depth=16)


def _exif_block() -> bytes:
    """A little-endian EXIF TIFF block: Make, Model, Orientation, DateTime and an Exif IFD."""
    make, model, when = b"Sony\x00", b"ILCE-7S\x00", b"2020:12:11 20:09:13\x00"
    offset_time = b"+01:00\x00"
    ifd0_at, n0 = 8, 5
    data0 = ifd0_at + 2 + 12 * n0 + 4
    exif_at = data0 + len(make) + len(model) + len(when)
    n1 = 4
    data1 = exif_at + 2 + 12 * n1 + 4
    block = bytearray(b"II*\x00" + struct.pack("<I", ifd0_at))
    block += struct.pack("<H", n0)
    block += struct.pack("<HHII", 271, 2, len(make), data0)
    block += struct.pack("<HHII", 272, 2, len(model), data0 + len(make))
    block += struct.pack("<HHIHH", 274, 3, 1, 1, 0)
    block += struct.pack("<HHII", 306, 2, len(when), data0 + len(make) + len(model))
    block += struct.pack("<HHII", 34665, 4, 1, exif_at)
    block += struct.pack("<I", 0) + make + model + when
    block += struct.pack("<H", n1)
    block += struct.pack("<HHII", 33434, 5, 1, data1)  # ExposureTime 4/1
    block += struct.pack("<HHIHH", 34855, 3, 1, 16000, 0)  # ISO
    block += struct.pack("<HHII", 36867, 2, len(when), data1 + 8)  # DateTimeOriginal
    block += struct.pack("<HHII", 36881, 2, len(offset_time), data1 + 8 + len(when))
    block += struct.pack("<I", 0) + struct.pack("<II", 4, 1) + when + offset_time
    return bytes(block)


def test_jpeg_exif_metadata(tmp_path):
    ok, encoded = cv2.imencode(".jpg", np.full((8, 8), 100, np.uint8))
    assert ok
    jpeg = encoded.tobytes()
    payload = b"Exif\x00\x00" + _exif_block()
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    path = tmp_path / "exif.jpg"
    path.write_bytes(jpeg[:2] + app1 + jpeg[2:])
    meta = read_jpeg(path).meta
    assert meta.camera == "Sony ILCE-7S"
    assert meta.exposure == 4.0
    assert meta.iso == 16000
    assert meta.date_obs is not None
    assert meta.date_obs.replace(tzinfo=None) == datetime(2020, 12, 11, 20, 9, 13)
    assert meta.date_obs.utcoffset().total_seconds() == 3600
    assert meta.header_value("EXPTIME") == 4.0


def test_real_jpeg_exif(shared_data):
    frame = read_jpeg(shared_data / "kho_allsky_sony" / "LYR-Sony-111220_200933.jpg")
    assert frame.data.shape == (2832, 2832, 3)
    assert frame.meta.camera == "SONY ILCE-7S"
    assert frame.meta.exposure == 4.0
    assert frame.meta.iso == 16000


# ------------------------------------------------------------------------------ broken files


@pytest.mark.parametrize("cut", [0.5, 0.98])
def test_truncated_png(tmp_path, rng, cut, quantised, assert_format_error):
    path = tmp_path / "trunc ated.png"
    write_png(quantised(rng, (40, 40, 3), 16), path)
    whole = path.read_bytes()
    path.write_bytes(whole[: int(len(whole) * cut)])
    assert_format_error(path, read_png)


def test_corrupt_png(tmp_path, assert_format_error):
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert_format_error(path, read_png)


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_jpeg(tmp_path, cut, assert_format_error):
    path = tmp_path / "trunc ated.jpg"
    write_jpeg(_smooth((64, 64, 3)), path)
    whole = path.read_bytes()
    path.write_bytes(whole[: int(len(whole) * cut)])
    assert_format_error(path, read_jpeg)


def test_corrupt_jpeg(tmp_path, assert_format_error):
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    assert_format_error(path, read_jpeg)


def test_text_named_png_is_format_error(tmp_path, assert_format_error):
    path = tmp_path / "notes.png"
    path.write_text("not an image\n")
    assert_format_error(path, read_png)
