"""FITS round trips, scaling conventions, metadata and corrupt files."""

from __future__ import annotations

import bz2
import gzip
from datetime import UTC, datetime

import numpy as np
import pytest
from astropy.io import fits

import skystack
from skystack.errors import FormatError
from skystack.frame import Frame, FrameMeta
from skystack.io.fits import cards_from_meta, meta_fields_from_cards


@pytest.mark.parametrize("suffix", [".fits", ".fit", ".fz", ".fits.gz", ".fits.bz2"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_round_trip_is_exact(tmp_path, rng, suffix, dtype):
    top = np.iinfo(dtype).max
    stored = rng.integers(0, int(top) + 1, size=(37, 53), dtype=dtype)
    path = tmp_path / f"image{suffix}"
    skystack.write(stored, path, bit_depth=np.dtype(dtype).itemsize * 8)
    frame = skystack.read(path)
    assert frame.data.dtype == np.float32
    assert frame.data.shape == (37, 53)
    np.testing.assert_array_equal(np.rint(frame.data * top).astype(dtype), stored)
    assert frame.meta.bit_depth == np.dtype(dtype).itemsize * 8


@pytest.mark.parametrize("suffix", [".fits", ".fz", ".fits.gz"])
def test_float_round_trip_mono_and_colour(tmp_path, rng, suffix):
    for shape in [(20, 30), (20, 30, 3)]:
        data = rng.normal(0.2, 0.5, size=shape).astype(np.float32)
        data[0, 0] = np.nan
        path = tmp_path / f"float{len(shape)}{suffix}"
        skystack.write(Frame(data), path)
        back = skystack.read(path).data
        assert back.shape == shape
        np.testing.assert_array_equal(back, data)


def test_colour_is_stored_as_planes_and_read_channel_last(tmp_path):
    data = np.zeros((4, 5, 3), np.float32)
    data[..., 0] = 1.0  # pure red
    path = tmp_path / "red.fits"
    skystack.write(data, path)
    with fits.open(path) as hdul:
        assert hdul[0].data.shape == (3, 4, 5)
        assert hdul[0].data[0].min() == 1.0 and hdul[0].data[1:].max() == 0.0
    back = skystack.read(path).data
    assert back.shape == (4, 5, 3)
    assert back[..., 0].min() == 1.0 and back[..., 1:].max() == 0.0


def _write_raw(path, data, **cards):
    header = fits.Header()
    for key, value in cards.items():
        header[key.replace("_", "-")] = value
    fits.PrimaryHDU(data, header).writeto(path)


def test_signed_and_scaled_integers(tmp_path):
    signed = np.array([[-5, 0], [100, 32767]], dtype=np.int16)
    _write_raw(tmp_path / "int16.fits", signed)
    np.testing.assert_allclose(skystack.read(tmp_path / "int16.fits").data, signed / 32767.0)

    int32 = np.array([[0, 2**31 - 1]], dtype=np.int32)
    _write_raw(tmp_path / "int32.fits", int32)
    np.testing.assert_allclose(skystack.read(tmp_path / "int32.fits").data, [[0.0, 1.0]])

    hdu = fits.PrimaryHDU(np.array([[1, 2]], dtype=np.int16))
    hdu.header["BSCALE"], hdu.header["BZERO"] = 0.5, 10.0
    hdu.writeto(tmp_path / "scaled.fits", output_verify="silentfix")
    frame = skystack.read(tmp_path / "scaled.fits")
    np.testing.assert_allclose(frame.data, [[10.5, 11.0]])
    assert any("BSCALE" in note for note in frame.meta.notes)


def test_float64_is_read_as_float32(tmp_path):
    _write_raw(tmp_path / "f64.fits", np.array([[1.5, -2.25e4]], dtype=np.float64))
    frame = skystack.read(tmp_path / "f64.fits")
    assert frame.data.dtype == np.float32
    np.testing.assert_array_equal(frame.data, [[1.5, -2.25e4]])


def test_header_keywords_are_parsed_and_kept(tmp_path):
    data = np.zeros((6, 8), dtype=np.uint16)
    _write_raw(
        tmp_path / "light.fits",
        data,
        EXPTIME=120.0,
        GAIN=100,
        CCD_TEMP=-10.5,
        BAYERPAT="RGGB",
        DATE_OBS="2024-07-31T02:44:22.5",
        FILTER="L-eXtreme",
        IMAGETYP="Light Frame",
        OBJECT="NGC 7023",
        INSTRUME="ZWO ASI2600MC",
        SITELAT=51.5,
    )
    meta = skystack.read(tmp_path / "light.fits").meta
    assert meta.exposure == 120.0
    assert meta.gain == 100.0
    assert meta.temperature == -10.5
    assert meta.cfa == "RGGB"
    assert meta.date_obs == datetime(2024, 7, 31, 2, 44, 22, 500000, tzinfo=UTC)
    assert meta.filter == "L-eXtreme"
    assert meta.kind == "light"
    assert meta.target == "NGC 7023"
    assert meta.camera == "ZWO ASI2600MC"
    assert meta.header_value("SITELAT") == 51.5


@pytest.mark.parametrize(
    ("cards", "height", "expected"),
    [
        ({"BAYERPAT": "RGGB"}, 10, "RGGB"),
        ({"BAYERPAT": "RGGB", "ROWORDER": "TOP-DOWN"}, 10, "RGGB"),
        ({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}, 10, "GBRG"),
        ({"BAYERPAT": "RGGB", "ROWORDER": "BOTTOM-UP"}, 11, "RGGB"),
        ({"BAYERPAT": "RGGB", "XBAYROFF": 1}, 10, "GRBG"),
        ({"BAYERPAT": "RGGB", "YBAYROFF": 1}, 10, "GBRG"),
        ({"BAYERPAT": "RGGB", "XBAYROFF": 1, "YBAYROFF": 1}, 10, "BGGR"),
        ({"BAYERPAT": "GRBG", "XBAYROFF": 2}, 10, "GRBG"),
        ({"BAYERPAT": "XYZW"}, 10, None),
    ],
)
def test_bayer_pattern_follows_offsets_and_row_order(cards, height, expected):
    fields = meta_fields_from_cards(((k, v, "") for k, v in cards.items()), height=height)
    assert fields.get("cfa") == expected


@pytest.mark.parametrize(
    ("value", "kind"),
    [("Light Frame", "light"), ("DARK", "dark"), ("Flat Field", "flat"), ("Bias Frame", "bias"),
     ("Dark Flat", "dark-flat"), ("FLATDARK", "dark-flat"), ("OBJECT", "light"), ("zero", "bias")],
)  # fmt: skip
def test_frame_kind_spellings(value, kind):
    assert meta_fields_from_cards([("IMAGETYP", value, "")])["kind"] == kind


def test_written_header_carries_meta_and_history(tmp_path):
    meta = FrameMeta(
        exposure=30.0,
        iso=800,
        cfa="GBRG",
        kind="dark",
        date_obs=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        header=(("XBAYROFF", 1, ""), ("OBSERVER", "me", "who")),
    )
    path = tmp_path / "dark.fits"
    skystack.write(Frame(np.zeros((4, 4), np.float32), meta), path, history=["made by a test"])
    header = fits.getheader(path)
    assert header["EXPTIME"] == 30.0 and header["ISOSPEED"] == 800
    assert header["BAYERPAT"] == "GBRG" and header["XBAYROFF"] == 0
    assert header["IMAGETYP"] == "Dark Frame"
    assert header["OBSERVER"] == "me"
    assert "made by a test" in str(header["HISTORY"])
    back = skystack.read(path).meta
    assert (back.cfa, back.kind, back.iso, back.date_obs) == ("GBRG", "dark", 800, meta.date_obs)


def test_cards_from_meta_replaces_not_duplicates():
    meta = FrameMeta(exposure=5.0, header=(("EXPTIME", 1.0, "old"), ("NAXIS1", 9, "")))
    cards = cards_from_meta(meta)
    assert [c for c in cards if c[0] == "EXPTIME"] == [("EXPTIME", 5.0, "old")]
    assert not any(c[0] == "NAXIS1" for c in cards)


def test_compressed_extension_and_whole_file_compression(tmp_path, rng):
    data = rng.integers(0, 65536, size=(16, 16), dtype=np.uint16)
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(data).writeto(plain)
    (tmp_path / "plain.fits.gz").write_bytes(gzip.compress(plain.read_bytes()))
    (tmp_path / "plain.fits.bz2").write_bytes(bz2.compress(plain.read_bytes()))
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(tmp_path / "tiles.fz")
    expected = skystack.read(plain).data
    for name in ("plain.fits.gz", "plain.fits.bz2", "tiles.fz"):
        np.testing.assert_array_equal(skystack.read(tmp_path / name).data, expected)


def test_truncated_fits_is_a_format_error(tmp_path):
    path = tmp_path / "whole.fits"
    skystack.write(np.zeros((64, 64), np.float32), path)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(FormatError, match=r"truncated\.fits: .*(truncated|corrupt)"):
        skystack.read(truncated)


def test_absurd_dimensions_are_refused_before_reading(tmp_path):
    header = fits.Header()
    header["SIMPLE"], header["BITPIX"], header["NAXIS"] = True, 16, 2
    header["NAXIS1"], header["NAXIS2"] = 100000, 100000
    path = tmp_path / "huge.fits"
    path.write_bytes(header.tostring().encode() + b"\0" * 2880)
    with pytest.raises(FormatError, match=r"huge\.fits: .*impossible image size"):
        skystack.read(path)


def test_cube_with_many_planes_is_refused(tmp_path):
    _write_raw(tmp_path / "cube.fits", np.zeros((5, 4, 4), np.float32))
    with pytest.raises(FormatError, match="5 planes"):
        skystack.read(tmp_path / "cube.fits")


def test_header_only_file_has_no_image(tmp_path):
    fits.PrimaryHDU().writeto(tmp_path / "empty.fits")
    with pytest.raises(FormatError, match="no image data"):
        skystack.read(tmp_path / "empty.fits")


def test_real_seestar_frame(shared_data):
    path = next((shared_data / "seestar_s50_ngc7023").glob("*20240730-224436.fit"))
    frame = skystack.read(path)
    assert frame.data.shape == (1920, 1080)
    assert frame.meta.cfa == "GRBG"
    assert frame.meta.exposure == 10.0
    assert frame.meta.kind == "light"
    assert 0.0 <= frame.data.min() and frame.data.max() <= 1.0


def test_raw_levels_white_balance_and_local_time_survive_fits(tmp_path):
    meta = FrameMeta(
        cfa="RGGB",
        black_level=512 / 65535,
        white_level=1.0,
        white_balance=(2.2, 1.0, 1.9),
        date_obs=datetime(2024, 8, 1, 23, 15, 0),  # camera clock, no time zone
    )
    path = tmp_path / "raw.fits"
    skystack.write(Frame(np.zeros((4, 4), np.float32), meta), path)
    header = fits.getheader(path)
    assert "DATE-OBS" not in header and header["DATE-LOC"] == "2024-08-01T23:15:00"
    back = skystack.read(path).meta
    assert back.black_level == pytest.approx(512 / 65535)
    assert back.white_level == 1.0
    assert back.white_balance == pytest.approx((2.2, 1.0, 1.9))
    assert back.date_obs == meta.date_obs and back.date_obs.tzinfo is None


def test_ordinary_z_keywords_are_kept_but_compression_keywords_are_not(tmp_path):
    header = fits.Header({"ZD": "22:14:00", "ZENITH": 12.5})
    data = np.zeros((8, 8), np.uint16)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header)]).writeto(tmp_path / "z.fz")
    meta = skystack.read(tmp_path / "z.fz").meta
    assert meta.header_value("ZD") == "22:14:00" and meta.header_value("ZENITH") == 12.5
    assert meta.header_value("ZCMPTYPE") is None and meta.header_value("ZBITPIX") is None
