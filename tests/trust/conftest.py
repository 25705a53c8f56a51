"""Tiny valid files of every format skystack reads, built by hand or by skystack's own writers.

The bad-input corpus (``test_bad_inputs.py``) and the fuzzers (``test_fuzz_readers.py``, and
``benchmarks/fuzz_long.py``, which imports this file by path) start from these files and damage
them. Nothing here needs real sample data. The plain functions are usable without pytest; the
fixtures wrap them.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

__all__ = [
    "FORMATS",
    "EXTRA_FORMATS",
    "build_good_file",
    "write_avi",
    "write_dng",
    "write_iraf",
    "ser_header",
    "fits_header_bytes",
    "png_bytes",
    "fits_card_span",
    "gzip_bytes",
    "assert_one_line_error",
    "enospc",
]

HEIGHT, WIDTH = 6, 8
"""Size of the tiny images: a few hundred bytes per file keeps every fuzz example fast."""
RAW_HEIGHT, RAW_WIDTH = 24, 32
"""LibRaw refuses raw images smaller than 22 pixels on a side."""

FORMATS: tuple[str, ...] = (
    "fits",
    "fits.gz",
    "fits.bz2",
    "tif",
    "png",
    "jpg",
    "dng",
    "ser",
    "xisf",
    "imh",
    "avi",
)
"""File name suffixes of the formats skystack reads, one tiny valid file each."""
EXTRA_FORMATS: tuple[str, ...] = ("fits.fz",)
"""Variants only the long fuzzing run and a few corpus cases use (same reader as another)."""

IRAF_PIXEL_START = 2048
"""Byte offset of the pixels in the ``.pix`` files :func:`write_iraf` makes (pixoff 1025)."""
IRAF_PIXFILE_OFFSET = 126
"""Byte offset of the pixel file name in an IRAF v2 header."""


def _image(seed: int = 7, *, colour: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (HEIGHT, WIDTH, 3) if colour else (HEIGHT, WIDTH)
    return (0.1 + 0.8 * rng.random(shape)).astype(np.float32)


def fits_header_bytes(cards: dict[str, object]) -> bytes:
    """A primary FITS header block (cards in the given order, then END), padded to 2880 bytes."""
    records = []
    for key, value in cards.items():
        if isinstance(value, bool):
            text = "T" if value else "F"
        elif isinstance(value, str):
            text = f"'{value}'"
        else:
            text = str(value)
        records.append(f"{key:<8}= {text:>20}".ljust(80))
    records.append("END".ljust(80))
    block = "".join(records).encode("ascii")
    return block.ljust(-(-len(block) // 2880) * 2880, b" ")


def ser_header(
    *,
    width: int = WIDTH,
    height: int = HEIGHT,
    depth: int = 8,
    frames: int = 1,
    color_id: int = 0,
    little_endian: int = 0,
) -> bytes:
    """A 178-byte SER header (see :mod:`skystack.io.ser` for the layout)."""
    return struct.pack(
        "<14s7i40s40s40sqq",
        b"LUCAM-RECORDER",
        0,
        color_id,
        little_endian,
        width,
        height,
        depth,
        frames,
        b"trust",
        b"",
        b"",
        0,
        0,
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, *, bit_depth: int = 8, idat: bytes | None = None) -> bytes:
    """A grey PNG whose IHDR claims ``width x height``; ``idat`` defaults to one zero row."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    data = idat if idat is not None else zlib.compress(b"\x00" * (1 + width * bit_depth // 8))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def write_iraf(
    imh: Path,
    data: np.ndarray | None = None,
    *,
    pixfile: str | None = None,
    write_pixels: bool = True,
) -> Path:
    """Write an IRAF OIF v2 image: ``imh`` (header) and the ``.pix`` beside it (big-endian real).

    ``pixfile`` is the pixel file name stored in the header (default ``HDR$<stem>.pix``).
    """
    pixels = _image(3) if data is None else np.asarray(data)
    height, width = pixels.shape
    raw = bytearray(2046)
    raw[0:6] = b"imhv2\x00"
    struct.pack_into(">3i", raw, 10, 6, 0, 2)  # pixtype real, not swapped, 2 axes
    struct.pack_into(">7i", raw, 22, width, height, 1, 1, 1, 1, 1)
    struct.pack_into(">7i", raw, 50, width, height, 1, 1, 1, 1, 1)
    struct.pack_into(">i", raw, 86, IRAF_PIXEL_START // 2 + 1)
    name = (pixfile if pixfile is not None else f"HDR${imh.with_suffix('.pix').name}").encode()
    raw[IRAF_PIXFILE_OFFSET : IRAF_PIXFILE_OFFSET + len(name)] = name
    raw[638:643] = b"trust"
    cards = ["EXPTIME =                  2.0 / exposure", "END"]
    user = "".join(card.ljust(80) + "\n" for card in cards).encode("ascii")
    imh.write_bytes(bytes(raw) + user + b"\x00")
    if write_pixels:
        head = b"impv2".ljust(IRAF_PIXEL_START, b"\x00")
        imh.with_suffix(".pix").write_bytes(head + pixels.astype(">f4").tobytes())
    return imh


def write_dng(path: Path, *, width: int = RAW_WIDTH, height: int = RAW_HEIGHT) -> Path:
    """A minimal uncompressed 12-bit RGGB DNG that LibRaw reads."""
    import tifffile

    rng = np.random.default_rng(5)
    mosaic = rng.integers(200, 4000, (height, width), dtype=np.uint16)
    tifffile.imwrite(
        path,
        mosaic,
        photometric=32803,  # CFA
        subfiletype=0,
        metadata=None,
        extratags=[
            (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
            (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
            (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: R G / G B
            (50717, "I", 1, 4095, True),  # WhiteLevel
            (271, "s", 0, "Trust", True),  # Make
            (272, "s", 0, "Trust Cam", True),  # Model
            (50708, "s", 0, "Trust Cam", True),  # UniqueCameraModel
        ],
    )
    return path


def write_avi(path: Path, *, frames: int = 3, size: int = 16) -> Path:
    """A small MJPG AVI of grey frames with a moving bright square (skips if OpenCV cannot)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size, size))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG AVI files here")
    for k in range(frames):
        image = np.full((size, size, 3), 40, dtype=np.uint8)
        image[4:8, 2 + 2 * k : 6 + 2 * k] = 220
        writer.write(image)
    writer.release()
    return path


def build_good_file(folder: Path, suffix: str, *, stem: str = "good") -> Path:
    """Write a tiny valid file of format ``suffix`` (one of :data:`FORMATS`) into ``folder``."""
    import skystack.io

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.{suffix}"
    image = _image()
    if suffix in ("fits", "fits.gz", "fits.fz", "tif", "png", "xisf"):
        bits = 32 if suffix == "xisf" else 16
        skystack.io.write(image, path, bit_depth=bits, overwrite=True)
    elif suffix == "fits.bz2":
        plain = build_good_file(folder, "fits", stem=f".{stem}-plain")
        path.write_bytes(bz2.compress(plain.read_bytes()))
        plain.unlink()
    elif suffix == "jpg":
        skystack.io.write(_image(colour=True), path, overwrite=True)
    elif suffix == "ser":
        # Two 8-bit frames and a timestamp trailer, through skystack's own writer.
        from datetime import UTC, datetime, timedelta

        from skystack.io.ser import write_ser

        start = datetime(2024, 5, 1, 22, 0, tzinfo=UTC)
        write_ser(
            np.stack([image, image[::-1]]),
            path,
            bit_depth=8,
            timestamps=[start, start + timedelta(seconds=0.1)],
        )
    elif suffix == "dng":
        write_dng(path)
    elif suffix == "imh":
        write_iraf(path)
    elif suffix == "avi":
        write_avi(path)
    else:
        raise ValueError(f"unknown format {suffix!r}")
    return path


def assert_one_line_error(err: BaseException, path: Path | None = None) -> str:
    """A skystack error's message: one line, naming ``path``; returns the message."""
    from skystack.errors import SkystackError

    assert isinstance(err, SkystackError), f"{type(err).__name__} is not a SkystackError: {err}"
    message = str(err)
    assert message.strip(), "empty error message"
    assert "\n" not in message.strip(), f"message of several lines: {message!r}"
    assert "Traceback" not in message
    if path is not None:
        assert str(path) in message or path.name in message, f"{path} not named in {message!r}"
    return message


def enospc(path: object = None) -> OSError:
    """The error a write raises on a full disk."""
    return OSError(errno.ENOSPC, "No space left on device", None if path is None else str(path))


def fits_card_span(header: bytes, keyword: str) -> tuple[int, int]:
    """Byte span of the value field of ``keyword``'s card (columns 11-30) in a FITS header."""
    for start in range(0, len(header), 80):
        if header[start : start + 8].rstrip() == keyword.encode():
            return start + 10, start + 30
    raise KeyError(keyword)


def gzip_bytes(data: bytes) -> bytes:
    """``data`` gzip-compressed with a fixed timestamp (byte-identical output)."""
    return gzip.compress(data, mtime=0)


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def good_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny valid file per format in :data:`FORMATS`, by suffix (read-only: copy them)."""
    folder = tmp_path_factory.mktemp("good")
    return {suffix: build_good_file(folder, suffix) for suffix in FORMATS + EXTRA_FORMATS}


# The test modules here take these builders from this module; under --import-mode=importlib
# they cannot import a conftest by name, so it registers itself under a fixed one.
sys.modules.setdefault("skystack_trust_conftest", sys.modules[__name__])
