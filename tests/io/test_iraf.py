"""IRAF OIF (.imh + .pix): the dev$pix sample against its FITS copy, layouts and bad files."""

from __future__ import annotations

import shutil
import struct
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

import skystack
from skystack.errors import FormatError
from skystack.io.iraf import read_iraf

# Byte offsets in the v2 header (see skystack.io.iraf).
PIXTYPE, SWAPPED, NDIM, LEN, PHYSLEN, PIXOFF, PIXFILE = 10, 14, 18, 22, 50, 86, 126
PIXEL_START = 2048


@pytest.fixture
def sample(shared_data: Path) -> Path:
    folder = shared_data / "iraf_m51_devpix"
    if not (folder / "pix.imh").is_file():
        pytest.skip(f"IRAF sample not found in {folder}")
    return folder


@pytest.fixture
def reference(sample: Path) -> np.ndarray:
    return skystack.read(sample / "pix_m51_DERIVED.fits").data


@pytest.fixture
def copy(sample: Path, tmp_path: Path) -> Path:
    """A writable copy of the sample: returns the path of its ``.imh``."""
    for name in ("pix.imh", "pix.pix"):
        shutil.copyfile(sample / name, tmp_path / name)
    return tmp_path / "pix.imh"


def _patch(path: Path, offset: int, *values: int) -> None:
    raw = bytearray(path.read_bytes())
    struct.pack_into(f">{len(values)}i", raw, offset, *values)
    path.write_bytes(bytes(raw))


def _set_pixfile(path: Path, name: str) -> None:
    raw = bytearray(path.read_bytes())
    raw[PIXFILE : PIXFILE + 255] = name.encode().ljust(255, b"\x00")
    path.write_bytes(bytes(raw))


def _int16_pixels(sample: Path) -> np.ndarray:
    raw = (sample / "pix.pix").read_bytes()[PIXEL_START:]
    return np.frombuffer(raw, dtype=">i2").reshape(512, 512)


def test_sample_equals_its_fits_copy(sample, reference):
    frame = read_iraf(sample / "pix.imh")
    assert frame.data.dtype == np.float32
    assert frame.data.shape == (512, 512)
    np.testing.assert_array_equal(frame.data, reference)
    assert frame.data.max() == np.float32(19936 / 32767)


def test_sample_metadata(sample):
    meta = read_iraf(sample / "pix.imh").meta
    assert meta.format == "iraf"
    assert meta.bit_depth == 16
    assert meta.path == sample / "pix.imh"
    assert meta.exposure == 600.0
    assert meta.target == "m51  B  600s"
    assert meta.kind == "light"
    assert meta.temperature == pytest.approx(-106.22)
    assert meta.date_obs == datetime(1987, 4, 5, tzinfo=UTC)
    assert meta.header_value("ITIME") == 600
    assert meta.header_value("CCDPICNO") == 53
    assert meta.header_value("TRIM") == "Apr 22 14:11 Trim image section is [3:510,3:510]"
    assert meta.header_value("AIRMASS") == pytest.approx(1.08015632629395)
    assert [v for k, v, _ in meta.header if k == "HISTORY"][0] == "'KPNO-IRAF'"


def test_reading_the_pixel_file_finds_its_header(sample, reference):
    frame = read_iraf(sample / "pix.pix")
    np.testing.assert_array_equal(frame.data, reference)
    assert frame.meta.exposure == 600.0


def test_pixel_file_named_in_header_is_found_beside_a_renamed_header(copy, reference):
    renamed = copy.with_name("m51.imh")
    copy.rename(renamed)  # no m51.pix: the header's "HDR$pix.pix" names pix.pix in its folder
    np.testing.assert_array_equal(read_iraf(renamed).data, reference)


@pytest.mark.parametrize("name", ["{outside}", "HDR$../outside/pix.pix", "node!{outside}"])
def test_pixel_path_from_header_never_leaves_the_header_folder(copy, tmp_path, name):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copyfile(copy.with_suffix(".pix"), outside / "evil.pix")
    folder = tmp_path / "images"
    folder.mkdir()
    header = folder / "m51.imh"
    shutil.copyfile(copy, header)
    pixfile = name.format(outside=outside / "evil.pix")
    if "outside/pix.pix" in pixfile:
        shutil.copyfile(copy.with_suffix(".pix"), outside / "pix.pix")
    _set_pixfile(header, pixfile)
    with pytest.raises(FormatError, match=r"m51\.imh: IRAF pixel file not found: .*m51\.pix"):
        read_iraf(header)


def test_row_padding_is_dropped(copy, reference):
    _patch(copy, LEN, 500, 510)  # physical lengths stay 512 x 512
    frame = read_iraf(copy)
    assert frame.data.shape == (510, 500)
    np.testing.assert_array_equal(frame.data, reference[:510, :500])


def test_little_endian_pixels_when_swapped(copy, sample, reference):
    pixels = _int16_pixels(sample).astype("<i2")
    pix = copy.with_suffix(".pix")
    pix.write_bytes(pix.read_bytes()[:PIXEL_START] + pixels.tobytes())
    _patch(copy, SWAPPED, 1)
    np.testing.assert_array_equal(read_iraf(copy).data, reference)


def test_real_pixels_are_kept(copy, rng):
    values = rng.normal(100.0, 30.0, size=(512, 512)).astype(">f4")
    pix = copy.with_suffix(".pix")
    pix.write_bytes(pix.read_bytes()[:PIXEL_START] + values.tobytes())
    _patch(copy, PIXTYPE, 6)
    frame = read_iraf(copy)
    assert frame.meta.bit_depth == 32
    np.testing.assert_array_equal(frame.data, values.astype(np.float32))


@pytest.mark.parametrize("size", [0, 3, 100, 2000])
def test_truncated_header(copy, size):
    copy.write_bytes(copy.read_bytes()[:size])
    with pytest.raises(FormatError, match=rf"pix\.imh: truncated IRAF header \({size} bytes"):
        read_iraf(copy)


def test_missing_pixel_file_is_named(copy):
    copy.with_suffix(".pix").unlink()
    with pytest.raises(FormatError, match=r"pix\.imh: IRAF pixel file not found: .*pix\.pix"):
        read_iraf(copy)


def test_pixel_file_without_header(copy):
    copy.unlink()
    with pytest.raises(FormatError, match=r"pix\.pix: IRAF pixel file without its header pix\.imh"):
        read_iraf(copy.with_suffix(".pix"))


def test_short_pixel_file(copy):
    pix = copy.with_suffix(".pix")
    pix.write_bytes(pix.read_bytes()[:-1000])
    with pytest.raises(FormatError, match=r"pixel file pix\.pix is too short \(525336 bytes"):
        read_iraf(copy)


def test_foreign_pixel_file(copy):
    pix = copy.with_suffix(".pix")
    pix.write_bytes(b"SIMPLE  =" + pix.read_bytes()[9:])
    with pytest.raises(FormatError, match=r"pix\.pix is not an IRAF pixel file"):
        read_iraf(copy)


def test_corrupted_magic(copy):
    copy.write_bytes(b"xmhv2" + copy.read_bytes()[5:])
    with pytest.raises(FormatError, match=r"pix\.imh: not an IRAF image header \(starts with"):
        read_iraf(copy)


def test_version_1_header_is_refused(copy):
    copy.write_bytes("imhdr".encode("utf-16-be") + copy.read_bytes()[10:])
    with pytest.raises(FormatError, match=r"version 1 header .* not supported"):
        read_iraf(copy)


@pytest.mark.parametrize(
    ("offset", "values", "message"),
    [
        (LEN, (2**30, 2**30), r"impossible image size \(1073741824, 1073741824\)"),
        (LEN, (0, 512), r"impossible image size \(0, 512\)"),
        (LEN, (600, 512), r"impossible image size \(600, 512\) \(stored as \(512, 512\)\)"),
        (NDIM, (99,), r"claims 99 axes"),
        (NDIM, (1,), r"1-D IRAF image"),
        (PIXOFF, (0,), r"pixel offset 0"),
        (SWAPPED, (7,), r"byte-swap flag is 7"),
    ],
)
def test_absurd_header_values(copy, offset, values, message):
    _patch(copy, offset, *values)
    with pytest.raises(FormatError, match=message):
        read_iraf(copy)


def test_huge_claimed_image_is_checked_against_the_file_size(copy):
    _patch(copy, LEN, 40000, 40000)
    _patch(copy, PHYSLEN, 40000, 40000)
    with pytest.raises(
        FormatError, match=r"too short \(526336 bytes; the header needs 3200002048\)"
    ):
        read_iraf(copy)


@pytest.mark.parametrize(("code", "name"), [(5, "long"), (8, "complex"), (42, "unknown")])
def test_unknown_pixel_type(copy, code, name):
    _patch(copy, PIXTYPE, code)
    with pytest.raises(FormatError, match=rf"IRAF pixel type {code} \({name}\) is not supported"):
        read_iraf(copy)
