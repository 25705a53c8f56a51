"""TIFF reading and writing: exact integer round trips, layouts, metadata, corrupt files."""

from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import pytest
import tifffile

import skystack.io
from skystack.errors import FormatError
from skystack.frame import Frame, FrameMeta
from skystack.io._scale import integer_to_float
from skystack.io.tiff import meta_from_exif, read_exif, read_tiff, write_tiff


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("shape", [(17, 23), (17, 23, 3)])
def test_integer_round_trip_is_exact(tmp_path, rng, bits, shape, quantised):
    data = quantised(rng, shape, bits)
    path = tmp_path / "round trip.tif"
    write_tiff(data, path, bit_depth=bits)
    frame = read_tiff(path)
    assert frame.data.dtype == np.float32
    assert frame.data.shape == shape
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta.bit_depth == bits
    assert frame.meta.format == "tiff"
    assert frame.meta.notes == ()


@pytest.mark.parametrize("shape", [(9, 11), (9, 11, 3)])
def test_float_round_trip_keeps_values_outside_unit_range(tmp_path, rng, shape):
    data = (rng.standard_normal(shape) * 3).astype(np.float32)
    data.flat[0] = np.nan
    path = tmp_path / "float.tiff"
    write_tiff(data, path, bit_depth=32)
    frame = read_tiff(path)
    np.testing.assert_array_equal(frame.data, data)  # NaN == NaN for assert_array_equal
    assert frame.meta.bit_depth == 32


def test_integer_write_clips_and_rounds(tmp_path):
    data = np.array([[-0.5, 0.0, 0.5, 1.0, 2.0, np.nan]], dtype=np.float32)
    path = tmp_path / "clip.tif"
    write_tiff(data, path, bit_depth=16)
    np.testing.assert_array_equal(tifffile.imread(path), [[0, 0, 32768, 65535, 65535, 0]])


def test_red_stays_in_channel_zero(tmp_path):
    data = np.zeros((8, 8, 3), np.float32)
    data[2:5, 2:5, 0] = 1.0
    path = tmp_path / "red.tif"
    write_tiff(data, path, bit_depth=16)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.photometric == tifffile.PHOTOMETRIC.RGB
        stored = tif.pages.first.asarray()
    assert stored[3, 3].tolist() == [65535, 0, 0]
    frame = read_tiff(path)
    np.testing.assert_array_equal(frame.data, data)


def test_mono_is_written_minisblack(tmp_path, rng, quantised):
    path = tmp_path / "mono.tif"
    write_tiff(quantised(rng, (5, 6), 8), path, bit_depth=8)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.photometric == tifffile.PHOTOMETRIC.MINISBLACK
        assert tif.pages.first.dtype == np.uint8


def test_dispatcher_round_trip_with_spaces(tmp_path, rng, quantised):
    folder = tmp_path / "my session" / "out put"
    folder.mkdir(parents=True)
    path = folder / "M 42 final.tiff"
    data = quantised(rng, (12, 10, 3), 16)
    skystack.io.write(Frame(data), path, bit_depth=16)
    frame = skystack.io.read(path)
    np.testing.assert_array_equal(frame.data, data)
    assert frame.meta.path == path


def test_dispatcher_eight_bit_linear_is_exact(tmp_path, rng, quantised):
    data = quantised(rng, (6, 7), 8)
    path = tmp_path / "eight.tif"
    skystack.io.write(Frame(data), path, bit_depth=8, stretch="linear")
    np.testing.assert_array_equal(skystack.io.read(path).data, data)


def test_planar_rgb_becomes_channel_last(tmp_path, rng):
    planes = rng.integers(0, 65536, (3, 7, 9), dtype=np.uint16)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate", metadata=None)
    frame = read_tiff(path)
    assert frame.data.shape == (7, 9, 3)
    np.testing.assert_array_equal(frame.data, integer_to_float(np.moveaxis(planes, 0, -1)))


def test_rgba_drops_alpha_with_note(tmp_path, rng):
    pixels = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(path, pixels, photometric="rgb", extrasamples=["unassalpha"], metadata=None)
    frame = read_tiff(path)
    np.testing.assert_array_equal(frame.data, integer_to_float(pixels[..., :3]))
    assert any("alpha" in note for note in frame.meta.notes)


def test_multi_page_reads_first_page_with_note(tmp_path, rng):
    stack = rng.integers(0, 65536, (3, 5, 6), dtype=np.uint16)
    path = tmp_path / "pages.tif"
    tifffile.imwrite(path, stack, photometric="minisblack", metadata=None)
    frame = read_tiff(path)
    assert frame.data.shape == (5, 6)
    np.testing.assert_array_equal(frame.data, integer_to_float(stack[0]))
    assert any("first page" in note for note in frame.meta.notes)


def test_uint32_and_float64_samples(tmp_path, rng):
    big = rng.integers(0, 2**32, (4, 5), dtype=np.uint32)
    path = tmp_path / "u32.tif"
    tifffile.imwrite(path, big, photometric="minisblack", metadata=None)
    frame = read_tiff(path)
    expected = (big.astype(np.float64) / (2**32 - 1)).astype(np.float32)
    np.testing.assert_allclose(frame.data, expected, rtol=1e-6)
    assert frame.meta.bit_depth == 32

    doubles = rng.standard_normal((4, 5))
    path = tmp_path / "f64.tif"
    tifffile.imwrite(path, doubles, photometric="minisblack", metadata=None)
    frame = read_tiff(path)
    assert frame.data.dtype == np.float32
    np.testing.assert_array_equal(frame.data, doubles.astype(np.float32))


def test_palette_is_expanded(tmp_path):
    index = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    colormap = np.zeros((3, 256), np.uint16)
    colormap[:, 1] = (65535, 0, 0)  # index 1 is red
    colormap[:, 2] = (0, 0, 65535)  # index 2 is blue
    path = tmp_path / "palette.tif"
    tifffile.imwrite(path, index, photometric="palette", colormap=colormap, metadata=None)
    frame = read_tiff(path)
    assert frame.data.shape == (2, 2, 3)
    assert frame.data[0, 1].tolist() == [1.0, 0.0, 0.0]
    assert frame.data[1, 0].tolist() == [0.0, 0.0, 1.0]
    assert any("palette" in note for note in frame.meta.notes)


def test_lzw_compressed_needs_imagecodecs_or_reads(tmp_path, rng):
    pil = pytest.importorskip("PIL.Image")
    pixels = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    path = tmp_path / "lzw.tif"
    pil.fromarray(pixels, "RGB").save(path, compression="tiff_lzw")
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        with pytest.raises(FormatError, match=re.escape(str(path)) + ".*imagecodecs"):
            read_tiff(path)
    else:
        np.testing.assert_array_equal(read_tiff(path).data, integer_to_float(pixels))


def test_min_is_white_is_inverted(tmp_path):
    pixels = np.array([[0, 255], [51, 204]], dtype=np.uint8)
    path = tmp_path / "white.tif"
    tifffile.imwrite(path, pixels, photometric="miniswhite", metadata=None)
    frame = read_tiff(path)
    np.testing.assert_allclose(frame.data, 1.0 - integer_to_float(pixels), atol=1e-7)
    assert any("MinIsWhite" in note for note in frame.meta.notes)


def test_cfa_tiff_keeps_mosaic_and_pattern(tmp_path, rng):
    mosaic = rng.integers(0, 65536, (4, 6), dtype=np.uint16)
    path = tmp_path / "cfa.tif"
    tifffile.imwrite(
        path,
        mosaic,
        photometric="cfa",
        metadata=None,
        extratags=[(33421, "H", 2, (2, 2), True), (33422, "B", 4, (1, 0, 2, 1), True)],
    )
    frame = read_tiff(path)
    np.testing.assert_array_equal(frame.data, integer_to_float(mosaic))
    assert frame.meta.cfa == "GRBG"


def test_metadata_from_tags(tmp_path):
    path = tmp_path / "tags.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 4), np.uint16),
        photometric="minisblack",
        metadata=None,
        datetime="2024:07:30 22:44:36",
        extratags=[(271, "s", 0, "Canon", True), (272, "s", 0, "Canon EOS 6D", True)],
    )
    meta = read_tiff(path).meta
    assert meta.camera == "Canon EOS 6D"
    assert meta.date_obs == datetime(2024, 7, 30, 22, 44, 36)
    assert meta.header_value("INSTRUME") == "Canon EOS 6D"
    assert meta.header_value("DATE-LOC") == "2024-07-30T22:44:36"


def test_writer_stores_camera_as_model(tmp_path):
    path = tmp_path / "camera.tif"
    write_tiff(np.zeros((3, 3), np.float32), path, meta=FrameMeta(camera="ZWO ASI2600MC"))
    assert read_tiff(path).meta.camera == "ZWO ASI2600MC"


def test_meta_from_exif_with_offset_and_rationals():
    exif = meta_from_exif(
        {
            "Make": "NIKON CORPORATION",
            "Model": "NIKON D850",
            "DateTimeOriginal": "2023:08:12 23:30:05",
            "OffsetTimeOriginal": "+02:00",
            "ExposureTime": (30, 1),
            "ISOSpeedRatings": 1600,
            "FNumber": (28, 10),
            "Orientation": 6,
        }
    )
    assert exif.fields["camera"] == "NIKON D850"  # the make is not repeated
    assert exif.fields["exposure"] == 30.0
    assert exif.fields["iso"] == 1600
    assert exif.fields["date_obs"].utcoffset().total_seconds() == 7200
    cards = dict((key, value) for key, value, _ in exif.cards)
    assert cards["DATE-OBS"] == "2023-08-12T21:30:05"
    assert cards["FOCRATIO"] == pytest.approx(2.8)
    assert any("orientation" in note for note in exif.notes)


def test_read_exif_ignores_garbage():
    assert read_exif(b"") == {}
    assert read_exif(b"not a tiff block at all") == {}
    assert read_exif(b"II*\x00\xff\xff\xff\x7f") == {}


def test_bad_bit_depth_is_refused(tmp_path):
    with pytest.raises(FormatError, match="bit depth must be 8, 16 or 32, not 12"):
        write_tiff(np.zeros((2, 2), np.float32), tmp_path / "x.tif", bit_depth=12)


def test_truncated_file_is_format_error(tmp_path, rng, quantised, assert_format_error):
    path = tmp_path / "trunc ated.tif"
    write_tiff(quantised(rng, (64, 64), 16), path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert_format_error(path, read_tiff)


def test_corrupt_header_is_format_error(tmp_path, assert_format_error):
    path = tmp_path / "corrupt.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 60)
    assert_format_error(path, read_tiff)


def test_garbage_with_tiff_extension_is_format_error(tmp_path, assert_format_error):
    path = tmp_path / "text.tif"
    path.write_text("hello, this is not an image\n")
    assert_format_error(path, read_tiff)
