"""SER reading and writing: round trips, byte order, hand-made files, corrupt headers, laziness."""

from __future__ import annotations

import struct
import weakref
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

import skystack.io as skio
from skystack.errors import ConfigError, FormatError, GeometryError
from skystack.frame import Frame, FrameMeta
from skystack.io.ser import SerColorId, SerHeader, SerReader, read_ser, write_ser

REAL_SER = "pss_moon_avi/another_short_video_crop384_mono8_DERIVED.ser"
LAYOUTS = ["mono", "RGGB", "GRBG", "GBRG", "BGGR", "rgb"]
BAYER_IDS = {"RGGB": 8, "GRBG": 9, "GBRG": 10, "BGGR": 11}


def ser_bytes(
    *,
    width: int = 4,
    height: int = 3,
    depth: int = 8,
    color: int = 0,
    count: int = 1,
    little_endian: int = 0,
    magic: bytes = b"LUCAM-RECORDER",
    payload: bytes = b"",
    instrument: bytes = b"",
    date_utc: int = 0,
) -> bytes:
    """A SER file built by hand from the format description (independent of the writer)."""
    header = struct.pack(
        "<14s7i40s40s40sqq",
        magic,
        0,
        color,
        little_endian,
        width,
        height,
        depth,
        count,
        b"",
        instrument,
        b"",
        0,
        date_utc,
    )
    assert len(header) == 178
    return header + payload


def ticks(moment: datetime) -> int:
    return (moment - datetime(1, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 10


def make_stack(
    rng: np.random.Generator, layout: str, bits: int, n: int = 4
) -> tuple[np.ndarray, FrameMeta]:
    shape = (n, 6, 10, 3) if layout == "rgb" else (n, 6, 10)
    dtype = np.uint8 if bits == 8 else np.uint16
    samples = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)
    cfa = layout if layout in BAYER_IDS else None
    return samples, FrameMeta(cfa=cfa, camera="ASI 462MC", telescope="C8")


# -- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("with_times", [False, True], ids=["no-trailer", "trailer"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bits", [8, 16])
def test_round_trip(tmp_path, rng, bits, layout, with_times):
    samples, meta = make_stack(rng, layout, bits)
    full = 255.0 if bits == 8 else 65535.0
    floats = samples.astype(np.float32) / np.float32(full)
    start = datetime(2024, 3, 5, 21, 30, 0, 123456, tzinfo=UTC)
    times = [start + timedelta(milliseconds=16 * k) for k in range(len(samples))]
    path = tmp_path / "rt.ser"

    write_ser(floats, path, meta=meta, bit_depth=bits, timestamps=times if with_times else None)

    with SerReader(path) as ser:
        assert len(ser) == len(samples)
        header = ser.header
        assert (header.width, header.height, header.pixel_depth) == (10, 6, bits)
        assert header.little_endian == 0
        expected_id = {"mono": 0, "rgb": 100, **BAYER_IDS}[layout]
        assert header.color_id == expected_id
        assert header.instrument == "ASI 462MC" and header.telescope == "C8"
        for k in range(len(samples)):
            raw = ser.raw(k)
            assert raw.dtype == samples.dtype
            np.testing.assert_array_equal(raw, samples[k])
            frame = ser[k]
            assert frame.data.dtype == np.float32
            assert frame.data.shape == samples[k].shape
            np.testing.assert_allclose(frame.data, floats[k], rtol=0, atol=1 / (2 * full))
            assert frame.meta.format == "ser"
            assert frame.meta.bit_depth == bits
            assert frame.meta.frame_index == k
            assert frame.meta.cfa == meta.cfa
            assert frame.meta.camera == "ASI 462MC" and frame.meta.telescope == "C8"
            assert frame.meta.header_value("COLORID") == expected_id
            if with_times:
                assert frame.meta.date_obs == times[k]
            else:
                assert frame.meta.date_obs is None
        if with_times:
            assert ser.timestamps == times
            assert all(t.tzinfo is not None for t in ser.timestamps)
        else:
            assert ser.timestamps is None


def test_float_data_within_half_a_level(tmp_path, rng):
    data = rng.random((3, 8, 9), dtype=np.float32)
    for bits, full in ((8, 255), (16, 65535)):
        path = tmp_path / f"f{bits}.ser"
        write_ser(data, path, bit_depth=bits)
        with SerReader(path) as ser:
            got = np.stack([f.data for f in ser])
        assert np.abs(got - data).max() <= 1 / (2 * full) + 1e-7


def test_single_image_and_frame_objects(tmp_path, rng):
    image = rng.random((5, 7, 3), dtype=np.float32)
    write_ser(image, tmp_path / "one.ser")
    frame = read_ser(tmp_path / "one.ser")
    assert frame.data.shape == (5, 7, 3) and frame.meta.frame_index == 0
    frames = [Frame(rng.random((5, 7), dtype=np.float32)) for _ in range(3)]
    write_ser(frames, tmp_path / "frames.ser", bit_depth=8)
    with SerReader(tmp_path / "frames.ser") as ser:
        assert len(ser) == 3


def test_header_date_when_no_trailer(tmp_path, rng):
    start = datetime(2023, 8, 1, 23, 0, tzinfo=timezone(timedelta(hours=2)))
    write_ser(rng.random((2, 4, 4)), tmp_path / "d.ser", meta=FrameMeta(date_obs=start))
    with SerReader(tmp_path / "d.ser") as ser:
        assert ser.timestamps is None
        # DateTime keeps the local wall clock, DateTime_UTC the instant.
        assert ser.header.date_time == ticks(start.replace(tzinfo=UTC))
        assert ser.header.date_time_utc == ticks(start)
        frame = ser[1]
    assert frame.meta.date_obs == start
    assert any("capture start" in note for note in frame.meta.notes)


def test_dispatcher_round_trip(tmp_path, rng):
    data = rng.random((6, 5), dtype=np.float32)
    path = skio.write(Frame(data, FrameMeta(cfa="GRBG")), tmp_path / "x.ser")
    assert skio.detect_format(path) == "ser"
    frame = skio.read(path)
    assert frame.meta.cfa == "GRBG" and frame.is_cfa
    np.testing.assert_allclose(frame.data, data, atol=1 / (2 * 65535))


def test_copy_a_reader_into_a_new_file(tmp_path, rng):
    samples, meta = make_stack(rng, "BGGR", 16, n=3)
    write_ser(samples, tmp_path / "a.ser", meta=meta)
    with SerReader(tmp_path / "a.ser") as ser:
        write_ser(ser, tmp_path / "b.ser")  # frames carry their metadata
    with SerReader(tmp_path / "b.ser") as copy:
        assert copy.header.color_id is SerColorId.BAYER_BGGR
        assert copy.header.instrument == "ASI 462MC"
        np.testing.assert_array_equal(copy.raw(2), samples[2])


def test_negative_index_and_iteration(tmp_path, rng):
    samples, meta = make_stack(rng, "mono", 8, n=5)
    write_ser(samples, tmp_path / "n.ser", meta=meta, bit_depth=8)
    with SerReader(tmp_path / "n.ser") as ser:
        np.testing.assert_array_equal(ser.raw(-1), samples[-1])
        assert ser[-2].meta.frame_index == 3
        assert [f.meta.frame_index for f in ser] == [0, 1, 2, 3, 4]
    assert ser.closed
    with pytest.raises(ValueError, match="closed"):
        ser.raw(0)


# -- hand-made files: colour order, byte order, depth ----------------------------------------------


def test_bgr_file_reads_as_rgb(tmp_path):
    rgb = np.arange(3 * 4 * 3, dtype=np.uint8).reshape(3, 4, 3)
    path = tmp_path / "bgr.ser"
    path.write_bytes(ser_bytes(color=101, payload=rgb[..., ::-1].tobytes()))
    with SerReader(path) as ser:
        assert ser.header.color_id is SerColorId.BGR
        np.testing.assert_array_equal(ser.raw(0), rgb)
        np.testing.assert_allclose(ser[0].data, rgb / 255.0, atol=1e-7)


@pytest.mark.parametrize(("little_endian", "order"), [(0, "<"), (1, ">")])
def test_16bit_byte_order_follows_the_capture_programs(tmp_path, little_endian, order):
    values = np.array([[1, 256, 4660, 65535]], dtype=np.uint16)  # 4660 = 0x1234
    path = tmp_path / "e.ser"
    payload = values.astype(f"{order}u2").tobytes()
    path.write_bytes(
        ser_bytes(width=4, height=1, depth=16, little_endian=little_endian, payload=payload)
    )
    with SerReader(path) as ser:
        np.testing.assert_array_equal(ser.raw(0), values)
        notes = ser[0].meta.notes
    assert any("big-endian" in n for n in notes) == (little_endian == 1)


def test_12bit_full_scale_and_left_aligned_data(tmp_path):
    values = np.array([[0, 1000, 4095]], dtype="<u2")
    path = tmp_path / "12.ser"
    path.write_bytes(ser_bytes(width=3, height=1, depth=12, payload=values.tobytes()))
    frame = read_ser(path)
    np.testing.assert_allclose(frame.data, values / 4095.0, atol=1e-7)
    assert frame.meta.bit_depth == 12
    assert any("full scale is 4095" in n for n in frame.meta.notes)

    shifted = values * np.uint16(16)  # the camera's 12 bits in the top of the 16-bit word
    path.write_bytes(ser_bytes(width=3, height=1, depth=12, payload=shifted.tobytes()))
    frame = read_ser(path)
    np.testing.assert_allclose(frame.data, shifted / 65535.0, atol=1e-7)
    assert any("scaled as 16-bit" in n for n in frame.meta.notes)


def test_frame_count_zero_is_counted_from_size(tmp_path):
    payload = np.arange(3 * 12, dtype=np.uint8).tobytes()
    path = tmp_path / "zero.ser"
    path.write_bytes(ser_bytes(count=0, payload=payload, instrument=b"ZWO ASI120MM"))
    with SerReader(path) as ser:
        assert len(ser) == 3
        assert ser[0].meta.camera == "ZWO ASI120MM"
        assert any("counted from the file size" in n for n in ser.notes)


def test_trailer_timestamps_are_read(tmp_path):
    moments = [datetime(2022, 1, 2, 3, 4, 5, k * 1000, tzinfo=UTC) for k in range(2)]
    payload = bytes(24) + struct.pack("<2q", *(ticks(m) for m in moments))
    path = tmp_path / "t.ser"
    path.write_bytes(ser_bytes(count=2, payload=payload))
    with SerReader(path) as ser:
        assert ser.timestamps == moments
        assert ser[1].meta.date_obs == moments[1]


# -- errors ----------------------------------------------------------------------------------------


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.ser"
    path.write_bytes(ser_bytes(count=5, payload=bytes(12 * 3 + 7)))
    with pytest.raises(
        FormatError, match=r"cut\.ser: .*promises 5 frames .*only 3 complete frames"
    ):
        SerReader(path)
    with pytest.raises(FormatError, match="promises 5 frames"):
        skio.read(path)


def test_absurd_dimensions_are_refused_cheaply(tmp_path):
    path = tmp_path / "huge.ser"
    path.write_bytes(ser_bytes(width=100_000, height=100_000, depth=16, count=10**6))
    with pytest.raises(FormatError, match=r"huge\.ser: .*100000x100000.*too small for one frame"):
        SerReader(path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"magic": b"LUCAM-RECORDEX"}, r"not a SER file \(starts with b'LUCAM-RECORDEX'"),
        ({"color": 7}, "unknown SER colour id 7"),
        ({"color": 16}, r"colour id 16 \(CYYM mosaic\) is unsupported"),
        ({"depth": 0}, "pixel depth 0 bits is invalid"),
        ({"depth": 17}, "pixel depth 17 bits is invalid"),
        ({"width": 0}, r"frame size 0x3 is invalid"),
        ({"height": -2}, r"frame size 4x-2 is invalid"),
        ({"count": -1}, "frame count -1 is negative"),
    ],
)
def test_invalid_headers(tmp_path, kwargs, match):
    path = tmp_path / "bad.ser"
    path.write_bytes(ser_bytes(payload=bytes(12), **kwargs))
    with pytest.raises(FormatError, match=rf"bad\.ser: .*{match}"):
        SerReader(path)


def test_too_short_for_a_header(tmp_path):
    path = tmp_path / "short.ser"
    path.write_bytes(b"LUCAM-RECORDER" + bytes(20))
    with pytest.raises(FormatError, match=r"short\.ser: too short for a SER file \(34 bytes"):
        read_ser(path)


def test_index_out_of_range(tmp_path, rng):
    write_ser(rng.random((5, 4, 4)), tmp_path / "five.ser")
    with pytest.raises(FormatError, match=r"five\.ser: frame index 5 is out of range; .*5 frames"):
        read_ser(tmp_path / "five.ser", index=5)
    with pytest.raises(FormatError, match="frame index -6 is out of range"):
        skio.read(tmp_path / "five.ser", index=-6)
    with SerReader(tmp_path / "five.ser") as ser, pytest.raises(IndexError, match="holds 5"):
        ser[7]


def test_writer_errors_remove_the_partial_file(tmp_path, rng):
    path = tmp_path / "w.ser"
    frames = [rng.random((4, 4)), rng.random((4, 5))]
    with pytest.raises(GeometryError, match=r"w\.ser: frame 1 has shape \(4, 5\)"):
        write_ser(frames, path)
    assert not path.exists()
    with pytest.raises(GeometryError, match="no frames to write"):
        write_ser(iter([]), path)
    with pytest.raises(GeometryError, match=r"must be \(H, W\) or \(H, W, 3\)"):
        write_ser([rng.random((4, 4, 2))], path)
    with pytest.raises(ConfigError, match="1 timestamps given for 2 frames"):
        write_ser(rng.random((2, 4, 4)), path, timestamps=[datetime.now(UTC)])
    with pytest.raises(FormatError, match="not 32-bit"):
        write_ser(rng.random((4, 4)), path, bit_depth=32)
    assert not path.exists()


# -- streaming and laziness ------------------------------------------------------------------------


def test_streaming_write_from_a_generator(tmp_path):
    alive: list[weakref.ref[np.ndarray]] = []
    n = 200

    def frames():
        for k in range(n):
            # The writer must have let go of all but the frame it is writing.
            assert sum(ref() is not None for ref in alive) <= 1
            image = np.full((16, 24), k / (n - 1), dtype=np.float32)
            alive.append(weakref.ref(image))
            yield image
            del image

    path = tmp_path / "stream.ser"
    write_ser(frames(), path, bit_depth=16)
    with SerReader(path) as ser:
        assert ser.header.frame_count == n == len(ser)
        assert ser.raw(0).max() == 0 and ser.raw(n - 1).min() == 65535
        assert path.stat().st_size == 178 + n * 16 * 24 * 2


def test_iteration_is_lazy(tmp_path, rng):
    samples, _ = make_stack(rng, "mono", 8, n=6)
    path = tmp_path / "lazy.ser"
    write_ser(samples, path, bit_depth=8)
    with SerReader(path) as ser:
        frames = iter(ser)
        first = next(frames)
        np.testing.assert_allclose(first.data, samples[0] / 255.0, atol=1e-7)
        # Change the last frame on disk: a reader that had loaded everything would not see it.
        with open(path, "r+b") as fh:
            fh.seek(178 + 5 * samples[0].size)
            fh.write(bytes(samples[0].size))
        rest = list(frames)
    assert len(rest) == 5
    assert not rest[-1].data.any()
    np.testing.assert_allclose(rest[0].data, samples[1] / 255.0, atol=1e-7)


def test_header_round_trip():
    header = SerHeader(
        lu_id=0,
        color_id=SerColorId.BAYER_GBRG,
        little_endian=0,
        width=640,
        height=480,
        pixel_depth=12,
        frame_count=3,
        observer="me",
        instrument="cam",
        telescope="scope",
        date_time=5,
        date_time_utc=6,
    )
    assert SerHeader.from_bytes(header.to_bytes()) == header
    assert header.frame_bytes == 640 * 480 * 2 and header.shape == (480, 640)
    assert header.color_id.cfa == "GBRG"


# -- real data -------------------------------------------------------------------------------------


def test_real_ser(shared_data: Path):
    path = shared_data / REAL_SER
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with SerReader(path) as ser:
        assert len(ser) == 45
        assert ser.header.color_id is SerColorId.MONO and ser.header.pixel_depth == 8
        means = []
        for k, frame in enumerate(ser):
            assert frame.data.shape == (384, 384) and frame.meta.frame_index == k
            assert frame.meta.cfa is None and frame.meta.bit_depth == 8
            means.append(float(frame.data.mean()))
    assert len(means) == 45
    assert 0.05 < min(means) and max(means) < 0.95
    frame = skio.read(path, index=44)
    assert frame.meta.format == "ser" and frame.meta.frame_index == 44
