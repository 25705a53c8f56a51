"""The bad-input corpus: damaged, foreign, absurd and unusable files of every format skystack reads.

Every case is built here, in a temporary folder, from the tiny valid files of ``conftest.py`` or
from a simulated light; no real sample is needed. One table (:data:`CASES`) drives all tests:

* reading the file alone raises the case's :class:`~skystack.errors.SkystackError` subclass with a
  one-line message naming the file and the problem, without allocating more than a few MiB
  (``tracemalloc``); files that are readable but unusable in a set (NaN, zero, saturated, another
  size or channel count) read as a valid frame instead;
* ``skystack info FILE`` and ``skystack convert FILE -o OUT`` exit with code 2 and print one line,
  no traceback, and leave no output or temporary file behind;
* ``skystack stack`` of good simulated lights plus every bad file at once skips each bad one with
  a warning naming it, writes a sidecar row ``accepted: false`` with the reason, and exits 0.

Absurd header dimensions are also read in a child process whose address space is limited, and a
full disk is simulated by writers that raise ``ENOSPC`` halfway through.
"""

from __future__ import annotations

import bz2
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import numpy as np
import pytest

import skystack.io
from skystack.cli.main import main
from skystack.errors import (
    FileAccessError,
    FormatError,
    FrameSkippedWarning,
    MissingFileError,
    OutOfDiskError,
    SkystackError,
)
from skystack.frame import Frame

_builders = sys.modules["skystack_trust_conftest"]  # registered by conftest.py
assert_one_line_error = _builders.assert_one_line_error
enospc = _builders.enospc
fits_card_span = _builders.fits_card_span
fits_header_bytes = _builders.fits_header_bytes
gzip_bytes = _builders.gzip_bytes
png_bytes = _builders.png_bytes
ser_header = _builders.ser_header
write_iraf = _builders.write_iraf

MAX_TRACED_BYTES = 16 * 2**20
"""Largest allocation reading one bad file may make (the good files are a few kB)."""
HUGE_DIMS = (100000, 100000, 10**6)
"""The absurd claim of the issue: 100000 x 100000 pixels, 10^6 frames or planes."""


@dataclass(frozen=True)
class Ctx:
    """Where a case builds its file, and what it builds it from."""

    folder: Path
    good: dict[str, Path]
    light: Path  # a simulated light of the stack set (for content cases: same size)

    def path(self, stem: str, suffix: str) -> Path:
        return self.folder / f"{stem}.{suffix}"

    def write(self, stem: str, suffix: str, data: bytes) -> Path:
        path = self.path(stem, suffix)
        path.write_bytes(data)
        return path

    def good_bytes(self, suffix: str) -> bytes:
        return self.good[suffix].read_bytes()


@dataclass(frozen=True)
class Case:
    """One bad input: how to build it and what skystack must do with it.

    ``error`` is the SkystackError subclass reading it raises and ``match`` a regex its message
    matches, or None for a file that reads fine but must be skipped in a set (``reason``: regex
    of the sidecar reason; None means the frame is accepted). ``in_set`` is False for inputs that
    are not a frame of a set at all (a missing path, a folder).
    """

    id: str
    build: Callable[[Ctx, str], Path]
    error: type[SkystackError] | None
    match: str = ""
    reason: str | None = "use_match"
    in_set: bool = True
    needs_permissions: bool = False

    @property
    def set_reason(self) -> str | None:
        return self.match if self.reason == "use_match" else self.reason


def _patch(data: bytes, offset: int, raw: bytes) -> bytes:
    return data[:offset] + raw + data[offset + len(raw) :]


def _flip(data: bytes, offsets: range | tuple[int, ...]) -> bytes:
    buffer = bytearray(data)
    for i in offsets:
        buffer[i] ^= 0xFF
    return bytes(buffer)


def _fits_with(cards: dict[str, object], data: bytes = b"") -> bytes:
    return fits_header_bytes({"SIMPLE": True, **cards}) + data


def _set_fits_card(data: bytes, keyword: str, text: str) -> bytes:
    start, stop = fits_card_span(data, keyword)
    return data[:start] + text.rjust(stop - start).encode() + data[stop:]


def _tiff_entry(data: bytes, tag: int) -> int:
    """Byte offset of the IFD entry of ``tag`` in a little-endian TIFF."""
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == tag:
            return entry
    raise KeyError(tag)


def _tiff_set(data: bytes, tag: int, value: int) -> bytes:
    entry = _tiff_entry(data, tag)
    kind = struct.unpack_from("<H", data, entry + 2)[0]
    raw = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
    return _patch(data, entry + 8, raw)


def _jpeg_sof(data: bytes) -> int:
    pos = 2
    while data[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return pos


def _xisf_header(data: bytes) -> tuple[int, str]:
    (length,) = struct.unpack_from("<I", data, 8)
    return length, data[16 : 16 + length].decode("utf-8")


def _xisf_with(data: bytes, old: str, new: str) -> bytes:
    """Replace text in the XML header (the data block, aligned at 4096, stays where it is)."""
    length, xml = _xisf_header(data)
    changed = re.sub(old, new, xml, count=1)
    assert changed != xml, old
    encoded = changed.encode()
    assert 16 + len(encoded) <= 4096, "the header must still end before the data block"
    return (
        data[:8]
        + struct.pack("<I", len(encoded))
        + data[12:16]
        + encoded
        + data[16 + len(encoded) :]
    )


def _iraf(ctx: Ctx, stem: str, **kwargs: object) -> Path:
    return write_iraf(ctx.path(stem, "imh"), **kwargs)  # type: ignore[arg-type]


def _iraf_patched(ctx: Ctx, stem: str, offset: int, *values: int) -> Path:
    path = _iraf(ctx, stem)
    raw = path.read_bytes()
    path.write_bytes(_patch(raw, offset, struct.pack(f">{len(values)}i", *values)))
    return path


def _light_variant(ctx: Ctx, stem: str, change: Callable[[np.ndarray], np.ndarray]) -> Path:
    frame = skystack.io.read(ctx.light)
    path = ctx.path(stem, "fits")
    skystack.io.write(Frame(change(frame.data.copy()), frame.meta), path, bit_depth=32)
    return path


def _light_16bit(ctx: Ctx, stem: str, value: float) -> Path:
    frame = skystack.io.read(ctx.light)
    path = ctx.path(stem, "fits")
    data = np.full_like(frame.data, value)
    skystack.io.write(Frame(data, frame.meta), path, bit_depth=16)
    return path


def _unreadable(ctx: Ctx, stem: str) -> Path:
    path = ctx.write(stem, "fits", ctx.good_bytes("fits"))
    path.chmod(0)
    return path


def _folder(ctx: Ctx, stem: str) -> Path:
    path = ctx.path(stem, "fits")
    path.mkdir()
    return path


def _partial_nan(data: np.ndarray) -> np.ndarray:
    data[10:20, 10:30] = np.nan
    return data


TRUNCATED = r"truncat"
CORRUPT = r"truncated or corrupt|corrupt"
CLAIMS = r"claims|impossible image size|promises"

# fmt: off
CASES: tuple[Case, ...] = (
    # ---------------------------------------------------------------------------------- FITS
    Case("fits-empty", lambda c, s: c.write(s, "fits", b""), FormatError, r"empty \(0 bytes\)"),
    Case("fits-text", lambda c, s: c.write(s, "fits", b"exposure notes\n"), FormatError,
         r"not a FITS file \(it holds text\)"),
    Case("fits-png-inside", lambda c, s: c.write(s, "fits", c.good_bytes("png")), FormatError,
         r"not a FITS file \(it starts with bytes 89 50 4e 47"),
    Case("fits-truncated-header", lambda c, s: c.write(s, "fits", c.good_bytes("fits")[:1000]),
         FormatError, r"not a readable FITS file"),
    Case("fits-truncated-data", lambda c, s: c.write(s, "fits", c.good_bytes("fits")[:2900]),
         FormatError, TRUNCATED),
    Case("fits-corrupt-naxis", lambda c, s: c.write(
        s, "fits", _set_fits_card(c.good_bytes("fits"), "NAXIS1", "'eight'")),
         FormatError, r"NAXIS1 = 'eight' is not an integer"),
    Case("fits-unparsable-card", lambda c, s: c.write(
        s, "fits", _set_fits_card(c.good_bytes("fits"), "NAXIS2", "6 6 6")),
         FormatError, r"NAXIS2 is unparsable"),
    Case("fits-absurd-dims", lambda c, s: c.write(
        s, "fits", _fits_with({"BITPIX": 16, "NAXIS": 3, "NAXIS1": HUGE_DIMS[0],
                               "NAXIS2": HUGE_DIMS[1], "NAXIS3": HUGE_DIMS[2]})),
         FormatError, r"impossible image size \(1000000, 100000, 100000\)"),
    Case("fits-claims-more-than-file", lambda c, s: c.write(
        s, "fits", _fits_with({"BITPIX": -32, "NAXIS": 2, "NAXIS1": 40000, "NAXIS2": 40000},
                              b"\0" * 2880)),
         FormatError, TRUNCATED),
    Case("fits-4-axes", lambda c, s: c.write(
        s, "fits", _fits_with({"BITPIX": 8, "NAXIS": 4, "NAXIS1": 2, "NAXIS2": 2, "NAXIS3": 2,
                               "NAXIS4": 2}, b"\0" * 2880)),
         FormatError, r"has 4 axes; expected a 2-D image or a cube"),
    Case("fits-naxis-huge", lambda c, s: c.write(
        s, "fits", _set_fits_card(c.good_bytes("fits"), "NAXIS", "1000000000")), FormatError,
         r"FITS header NAXIS = 1000000000; expected 0 to 999"),
    Case("fits-no-image", lambda c, s: c.write(s, "fits", _fits_with({"BITPIX": 8, "NAXIS": 0})),
         FormatError, r"holds no image data"),
    Case("fits-bad-bzero", lambda c, s: c.write(
        s, "fits", _set_fits_card(c.good_bytes("fits"), "BZERO", "'zero'")),
         FormatError, r"FITS header is corrupt"),
    Case("fitsgz-truncated", lambda c, s: c.write(s, "fits.gz", c.good_bytes("fits.gz")[:150]),
         FormatError, r"gzip-compressed FITS file is truncated or corrupt"),
    Case("fitsgz-corrupt-stream", lambda c, s: c.write(
        s, "fits.gz", _flip(c.good_bytes("fits.gz"), range(40, 60))),
         FormatError, r"gzip-compressed FITS file is truncated or corrupt"),
    Case("fitsgz-absurd-dims", lambda c, s: c.write(
        s, "fits.gz", gzip_bytes(_fits_with({"BITPIX": -32, "NAXIS": 2, "NAXIS1": 40000,
                                              "NAXIS2": 40000}, b"\0" * 2880))),
         FormatError, TRUNCATED),
    Case("fitsgz-text-inside", lambda c, s: c.write(s, "fits.gz", gzip_bytes(b"notes " * 100)),
         FormatError, r"does not hold FITS data"),
    Case("fitsbz2-truncated", lambda c, s: c.write(s, "fits.bz2", c.good_bytes("fits.bz2")[:200]),
         FormatError, r"bzip2-compressed FITS file is truncated or corrupt"),
    Case("fitsbz2-absurd-dims", lambda c, s: c.write(
        s, "fits.bz2", bz2.compress(_fits_with({"BITPIX": 16, "NAXIS": 3,
                                                "NAXIS1": HUGE_DIMS[0], "NAXIS2": HUGE_DIMS[1],
                                                "NAXIS3": HUGE_DIMS[2]}))),
         FormatError, r"impossible image size"),
    Case("fitsfz-absurd-dims", lambda c, s: c.write(s, "fits.fz", _set_fits_card(_set_fits_card(
        c.good_bytes("fits.fz"), "ZNAXIS1", "40000"), "ZNAXIS2", "40000")), FormatError,
         r"claims a tile-compressed image of \(40000, 40000\) samples"),
    Case("fitsfz-tfields-huge", lambda c, s: c.write(
        s, "fits.fz", _set_fits_card(c.good_bytes("fits.fz"), "TFIELDS", "2000000000")),
         FormatError, r"FITS header TFIELDS = 2000000000; expected 0 to 999"),
    Case("fitsfz-truncated", lambda c, s: c.write(s, "fits.fz", c.good_bytes("fits.fz")[:5770]),
         FormatError, r"not a readable FITS file|truncated"),
    # ---------------------------------------------------------------------------------- TIFF
    Case("tif-empty", lambda c, s: c.write(s, "tif", b""), FormatError, r"empty \(0 bytes\)"),
    Case("tif-text", lambda c, s: c.write(s, "tif", b"not an image\n"), FormatError,
         r"not a TIFF file \(it holds text\)"),
    Case("tif-jpeg-inside", lambda c, s: c.write(s, "tif", c.good_bytes("jpg")), FormatError,
         r"not a TIFF file"),
    Case("tif-truncated-ifd", lambda c, s: c.write(s, "tif", c.good_bytes("tif")[:12]),
         FormatError, r"TIFF"),
    Case("tif-truncated-data", lambda c, s: c.write(
        s, "tif", c.good_bytes("tif")[: c.good_bytes("tif").index(b"skystack") + 20]),
         FormatError, CORRUPT),
    Case("tif-absurd-width", lambda c, s: c.write(
        s, "tif", _tiff_set(c.good_bytes("tif"), 256, 2**32 - 1)), FormatError, CLAIMS),
    Case("tif-strip-beyond-eof", lambda c, s: c.write(
        s, "tif", _tiff_set(c.good_bytes("tif"), 279, 2**30)), FormatError,
         r"strip 0 of 1073741824 bytes .* goes beyond the end of the file"),
    # ----------------------------------------------------------------------------------- PNG
    Case("png-empty", lambda c, s: c.write(s, "png", b""), FormatError, r"empty \(0 bytes\)"),
    Case("png-fits-inside", lambda c, s: c.write(s, "png", c.good_bytes("fits")), FormatError,
         r"not a PNG file \(it holds text\)"),
    Case("png-truncated", lambda c, s: c.write(s, "png", c.good_bytes("png")[:60]),
         FormatError, TRUNCATED),
    Case("png-corrupt-data", lambda c, s: c.write(
        s, "png", _flip(c.good_bytes("png"), range(45, 60))), FormatError, CORRUPT),
    Case("png-absurd-dims", lambda c, s: c.write(s, "png", png_bytes(100000, 100000)),
         FormatError, r"PNG header claims 100000x100000 pixels"),
    Case("png-chunk-beyond-eof", lambda c, s: c.write(
        s, "png", _patch(c.good_bytes("png"), 33, b"\xff\xff\xff\x00")), FormatError,
         r"chunk .* claims 4294967040 bytes"),
    # ---------------------------------------------------------------------------------- JPEG
    Case("jpg-empty", lambda c, s: c.write(s, "jpg", b""), FormatError, r"empty \(0 bytes\)"),
    Case("jpg-text", lambda c, s: c.write(s, "jpg", "ciel étoilé\n".encode()), FormatError,
         r"not a JPEG file \(it holds text\)"),
    Case("jpg-truncated", lambda c, s: c.write(s, "jpg", c.good_bytes("jpg")[:400]),
         FormatError, r"truncated \(no end-of-image marker\)"),
    Case("jpg-absurd-dims", lambda c, s: c.write(
        s, "jpg", _patch(c.good_bytes("jpg"), _jpeg_sof(c.good_bytes("jpg")) + 5,
                         struct.pack(">HH", 65000, 65000))),
         FormatError, r"JPEG header claims 65000x65000 pixels"),
    # --------------------------------------------------------------------------- camera raw
    Case("dng-empty", lambda c, s: c.write(s, "dng", b""), FormatError,
         r"not a camera raw file \(it is empty"),
    Case("dng-text", lambda c, s: c.write(s, "dng", b"raw? no\n"), FormatError,
         r"not a camera raw file \(it holds text\)"),
    Case("dng-truncated", lambda c, s: c.write(s, "dng", c.good_bytes("dng")[:200]),
         FormatError, r"camera raw"),
    Case("dng-png-inside", lambda c, s: c.write(s, "dng", c.good_bytes("png")), FormatError,
         r"not a camera raw file"),
    # ----------------------------------------------------------------------------------- SER
    Case("ser-empty", lambda c, s: c.write(s, "ser", b""), FormatError, r"empty \(0 bytes\)"),
    Case("ser-png-inside", lambda c, s: c.write(s, "ser", c.good_bytes("png")), FormatError,
         r"not a SER file"),
    Case("ser-truncated-header", lambda c, s: c.write(s, "ser", c.good_bytes("ser")[:100]),
         FormatError, r"too short for a SER file \(100 bytes"),
    Case("ser-truncated-frames", lambda c, s: c.write(s, "ser", c.good_bytes("ser")[:200]),
         FormatError, r"holds only 0 complete frames|too small for one frame"),
    Case("ser-absurd-dims", lambda c, s: c.write(
        s, "ser", ser_header(width=HUGE_DIMS[0], height=HUGE_DIMS[1], frames=HUGE_DIMS[2],
                             depth=16) + b"\0" * 4096),
         FormatError, r"promises 1000000 frames of 100000x100000 16-bit"),
    Case("ser-bad-depth", lambda c, s: c.write(
        s, "ser", ser_header(depth=33) + b"\0" * 96), FormatError, r"pixel depth 33 bits"),
    Case("ser-cmy-colour", lambda c, s: c.write(
        s, "ser", ser_header(color_id=16) + b"\0" * 96), FormatError, r"unsupported"),
    Case("ser-negative-width", lambda c, s: c.write(
        s, "ser", ser_header(width=-8) + b"\0" * 96), FormatError, r"frame size -8x6"),
    # ---------------------------------------------------------------------------------- XISF
    Case("xisf-empty", lambda c, s: c.write(s, "xisf", b""), FormatError, r"empty \(0 bytes\)"),
    Case("xisf-truncated", lambda c, s: c.write(s, "xisf", c.good_bytes("xisf")[:500]),
         FormatError, r"header length \d+ bytes goes beyond the end of the file"),
    Case("xisf-data-beyond-eof", lambda c, s: c.write(s, "xisf", c.good_bytes("xisf")[:-40]),
         FormatError, r"data block of 192 bytes at byte \d+ goes beyond the end of the file"),
    Case("xisf-bad-xml", lambda c, s: c.write(
        s, "xisf", _xisf_with(c.good_bytes("xisf"), r"<Image ", "<Image <")),
         FormatError, r"XISF header is not valid XML"),
    Case("xisf-absurd-geometry", lambda c, s: c.write(
        s, "xisf", _xisf_with(c.good_bytes("xisf"), r'geometry="8:6:1"',
                              'geometry="99999:9999:9"')),
         FormatError, r"XISF header claims an image of 99999:9999:9 samples"),
    Case("xisf-text", lambda c, s: c.write(s, "xisf", b"<xisf/>\n"), FormatError,
         r"not an XISF file \(it holds text\)"),
    # ---------------------------------------------------------------------------------- IRAF
    Case("imh-missing-pixels", lambda c, s: _iraf(c, s, write_pixels=False), FormatError,
         r"IRAF pixel file not found"),
    Case("imh-pixfile-parent-dirs", lambda c, s: _iraf(
        c, s, pixfile="../../../../../../etc/passwd", write_pixels=False), FormatError,
         r"IRAF pixel file not found: .*the header names '\.\./\.\./"),
    Case("imh-pixfile-absolute", lambda c, s: _iraf(
        c, s, pixfile="/etc/passwd", write_pixels=False), FormatError,
         r"IRAF pixel file not found: .*the header names '/etc/passwd'"),
    Case("imh-truncated", lambda c, s: c.write(s, "imh", c.good_bytes("imh")[:1000]),
         FormatError, r"truncated IRAF header \(1000 bytes"),
    Case("imh-absurd-dims", lambda c, s: _iraf_patched(
        c, s, 18, 3, *HUGE_DIMS, 1, 1, 1, 1, *HUGE_DIMS), FormatError,
         r"axes \(100000, 100000, 1000000, 1, 1, 1, 1\)|axes \(100000, 100000, 1000000\)"),
    Case("imh-huge-2d", lambda c, s: _iraf_patched(
        c, s, 22, 40000, 40000, 1, 1, 1, 1, 1, 40000, 40000), FormatError,
         r"pixel file imh-huge-2d.pix is too short \(\d+ bytes; the header needs 6400002048\)"),
    Case("imh-foreign-pixels", lambda c, s: (_iraf(c, s), c.path(s, "pix").write_bytes(
        c.good_bytes("fits")))[0], FormatError, r"is not an IRAF pixel file"),
    # ---------------------------------------------------------------------------------- video
    Case("avi-empty", lambda c, s: c.write(s, "avi", b""), FormatError, r"empty \(0 bytes\)"),
    Case("avi-text", lambda c, s: c.write(s, "avi", b"RIFF? no, text\n"), FormatError,
         r"cannot be opened as a video|holds no frame"),
    Case("avi-truncated", lambda c, s: c.write(s, "avi", c.good_bytes("avi")[:300]),
         FormatError, r"cannot be opened as a video|holds no frame"),
    # -------------------------------------------------------------------------- any format
    Case("missing-file", lambda c, s: c.path(s, "fits"), MissingFileError, r"no such file",
         in_set=False),
    Case("folder-named-fits", _folder, FileAccessError,  # info lists folders: none inside
         r"is a folder, not an image file|folder holds no image files", in_set=False),
    Case("unknown-extension", lambda c, s: c.write(s, "xyz", b"hello"), FormatError,
         r"unknown image format \(it holds text\)", in_set=False),
    Case("no-read-permission", _unreadable, FileAccessError, r"permission denied",
         needs_permissions=True),
    # ------------------------------------------ readable, but not usable in a set (content)
    Case("all-nan", lambda c, s: _light_variant(c, s, lambda d: np.full_like(d, np.nan)),
         None, reason=r"the frame is empty"),
    Case("all-inf", lambda c, s: _light_variant(c, s, lambda d: np.full_like(d, np.inf)),
         None, reason=r"the frame is empty"),
    Case("all-zero", lambda c, s: _light_16bit(c, s, 0.0), None, reason=r"the frame is empty"),
    Case("saturated", lambda c, s: _light_16bit(c, s, 1.0), None, reason=r"the frame is empty"),
    Case("other-size", lambda c, s: _light_variant(c, s, lambda d: d[:-2, :-4]), None,
         reason=r"shape \(118, 156\) differs from the first frame's \(120, 160\)"),
    Case("colour-among-mono", lambda c, s: _light_variant(
        c, s, lambda d: np.repeat(d[..., None], 3, axis=2)), None,
         reason=r"shape \(120, 160, 3\) differs from the first frame's \(120, 160\)"),
    Case("some-nan-pixels", lambda c, s: _light_variant(c, s, _partial_nan), None,
         reason=None),
)
# fmt: on

CASE_IDS = [case.id for case in CASES]
ERROR_CASES = [case for case in CASES if case.error is not None]
SET_CASES = [case for case in CASES if case.in_set]
FORMATS_COVERED = ("fits", "fitsgz", "fitsbz2", "fitsfz", "tif", "png", "jpg", "dng", "ser", "xisf",
                   "imh", "avi")  # fmt: skip


def _skip_if_root(case: Case) -> None:
    if case.needs_permissions and os.geteuid() == 0:
        pytest.skip("running as root, which ignores file permissions")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small simulated lights (160 x 120, 16-bit FITS) in ``SESSION/lights``."""
    from skystack.sim import SessionConfig, write_session

    folder = tmp_path_factory.mktemp("session")
    config = SessionConfig(width=160, height=120, n_lights=4, n_bias=0, n_darks=0, n_flats=0,
                           star_count=60, extended="none", shift_px=4.0)  # fmt: skip
    write_session(folder, config, seed=3)
    return folder


@pytest.fixture
def ctx(tmp_path: Path, good_files: dict[str, Path], session: Path) -> Ctx:
    folder = tmp_path / "bad"
    folder.mkdir()
    return Ctx(folder, good_files, session / "lights" / "light_0001.fits")


def test_corpus_covers_every_format_and_is_large_enough():
    assert len(CASES) >= 40
    assert len(set(CASE_IDS)) == len(CASE_IDS)
    prefixes = {case.id.split("-")[0] for case in CASES}
    assert set(FORMATS_COVERED) <= prefixes


# ------------------------------------------------------------------------- reading one file


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_reading_alone(case: Case, ctx: Ctx):
    _skip_if_root(case)
    path = case.build(ctx, case.id)
    tracemalloc.start()
    try:
        if case.error is None:
            frame = skystack.io.read(path)
        else:
            with pytest.raises(case.error, match=case.match) as caught:
                skystack.io.read(path)
    finally:
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if case.error is None:
        assert frame.data.dtype == np.float32
        assert frame.data.ndim == 2 or frame.data.shape[2] == 3
    else:
        assert_one_line_error(caught.value, path)
        assert not isinstance(caught.value.__cause__, MemoryError)
    assert peak < MAX_TRACED_BYTES, f"reading {path.name} allocated {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.id for c in ERROR_CASES])
def test_info_command_prints_one_line(case: Case, ctx: Ctx, capsys):
    _skip_if_root(case)
    path = case.build(ctx, case.id)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("skystack: error: ") and str(path) in lines[0]
    assert re.search(case.match, lines[0]), lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.id for c in ERROR_CASES])
def test_convert_command_fails_cleanly(case: Case, ctx: Ctx, tmp_path: Path, capsys):
    _skip_if_root(case)
    path = case.build(ctx, case.id)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["convert", str(path), "-o", str(out_dir / "converted.tif")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err, err
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_content_cases_are_reported_by_info(ctx: Ctx, capsys):
    """A NaN frame is readable: ``info`` shows it, with the fraction of finite pixels."""
    path = next(c for c in CASES if c.id == "some-nan-pixels").build(ctx, "some-nan-pixels")
    assert main(["info", "--json", str(path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert 0.9 < record["statistics"]["mono"]["finite_fraction"] < 1.0


@pytest.mark.parametrize("denied", ["the file", "its pixel file"])
def test_permission_denied_while_opening(denied: str, ctx: Ctx, monkeypatch):
    """Permissions that change between the check and the open, of the file or of a companion
    file (an IRAF header's pixel file): FileAccessError. Works as root too."""
    import builtins

    if denied == "the file":
        path = locked = ctx.write("locked", "fits", ctx.good_bytes("fits"))
    else:
        path = _iraf(ctx, "locked")
        locked = path.with_suffix(".pix")
    real_open = builtins.open

    def denying_open(file, *args, **kwargs):
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denying_open)
    with pytest.raises(FileAccessError, match=r"cannot be read \(permission denied") as caught:
        skystack.io.read(path)
    assert_one_line_error(caught.value, path)
    assert str(locked) in str(caught.value)


# ------------------------------------------------------------------------------ in a stack


@pytest.fixture(scope="module")
def stack_run(session: Path, good_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """``skystack stack`` of the four good lights followed by every bad file of the corpus."""
    folder = tmp_path_factory.mktemp("stackset")
    ctx = Ctx(folder / "bad", good_files, session / "lights" / "light_0001.fits")
    ctx.folder.mkdir()
    bad: dict[str, Path] = {}
    for case in SET_CASES:
        if case.needs_permissions and os.geteuid() == 0:
            continue
        bad[case.id] = case.build(ctx, case.id)
    good = sorted((session / "lights").glob("*.fits"))
    out = folder / "stack.fits"
    argv = ["stack", *map(str, good), *map(str, bad.values()), "-o", str(out)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stdout, stderr = StringIO(), StringIO()
        with redirect_stdout(stdout), redirect_stderr(stderr):
            code = main(argv)
    skipped = [str(w.message) for w in caught if issubclass(w.category, FrameSkippedWarning)]
    rows = json.loads(out.with_suffix(".json").read_text())["frames"] if code == 0 else []
    return {
        "code": code,
        "stderr": stderr.getvalue(),
        "stdout": stdout.getvalue(),
        "warnings": skipped,
        "rows": {row["path"]: row for row in rows},
        "bad": bad,
        "good": good,
        "out": out,
    }


def test_stack_with_bad_frames_exits_0(stack_run):
    assert stack_run["code"] == 0, stack_run["stderr"]
    assert "Traceback" not in stack_run["stderr"]
    assert stack_run["out"].is_file()
    rows = stack_run["rows"]
    assert len(rows) == len(stack_run["good"]) + len(stack_run["bad"])
    for path in stack_run["good"]:
        assert rows[str(path)]["accepted"], rows[str(path)]


@pytest.mark.parametrize("case", SET_CASES, ids=[c.id for c in SET_CASES])
def test_stack_skips_the_bad_frame(case: Case, stack_run):
    _skip_if_root(case)
    path = stack_run["bad"][case.id]
    row = stack_run["rows"][str(path)]
    if case.set_reason is None:
        assert row["accepted"] is True and row["reason"] is None
        return
    assert row["accepted"] is False
    assert re.search(case.set_reason, row["reason"]), row["reason"]
    assert "\n" not in row["reason"]
    # The command line shows warnings as log lines on stderr (a FrameSkippedWarning each).
    warned = [line for line in stack_run["stderr"].splitlines() if "WARNING" in line and
              str(path) in line] + [w for w in stack_run["warnings"] if str(path) in w]  # fmt: skip
    assert warned, f"no warning names {path}"
    assert f"skipped {path}" in stack_run["stdout"]


def test_stack_of_only_bad_frames_fails_in_one_line(ctx: Ctx, capsys):
    paths = [case.build(ctx, case.id) for case in CASES if case.id in ("fits-text", "ser-empty")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FrameSkippedWarning)
        code = main(["stack", *map(str, paths), "-o", str(ctx.folder / "none.fits")])
    assert code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("skystack: error:")]
    assert len(error_lines) == 1 and "Traceback" not in err, err
    assert not (ctx.folder / "none.fits").exists()


# --------------------------------------------------------------- absurd sizes, memory capped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
def test_absurd_headers_are_refused_before_allocating(ctx: Ctx):
    """In a child limited to its current address space + 512 MiB, every absurd claim fails
    with a FormatError that no MemoryError caused: nothing tried to allocate the image."""
    absurd = [case for case in CASES if "absurd" in case.id or case.id in (
        "fits-claims-more-than-file", "tif-strip-beyond-eof", "png-chunk-beyond-eof",
        "imh-huge-2d", "xisf-data-beyond-eof")]  # fmt: skip
    paths = [str(case.build(ctx, case.id)) for case in absurd]
    script = textwrap.dedent(
        """
        import json, resource, sys, warnings
        warnings.simplefilter("ignore")
        import skystack.io
        for name in ("fits", "tiff", "png_jpeg", "ser", "xisf", "iraf", "raw"):
            __import__("skystack.io." + name)
        with open("/proc/self/status") as fh:
            vm = next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmSize:"))
        limit = vm + 512 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        results = {}
        for path in sys.argv[1:]:
            try:
                skystack.io.read(path)
                results[path] = "read"
            except Exception as err:
                cause = type(err.__cause__).__name__ if err.__cause__ else None
                results[path] = [type(err).__name__, cause, str(err)]
        print(json.dumps(results))
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=120,
        env={**os.environ, "OPENCV_LOG_LEVEL": "SILENT"},
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    results = json.loads(child.stdout.strip().splitlines()[-1])
    for path in paths:
        kind, cause, message = results[path]
        assert kind == "FormatError", (path, results[path])
        assert cause not in ("MemoryError", "_ArrayMemoryError"), (path, message)


# ---------------------------------------------------------------------------- a full disk


def _half_then_enospc(data: object, path: Path, **kwargs: object) -> None:
    Path(path).write_bytes(b"SIMPLE  = half a file")
    raise enospc(path)


@pytest.mark.parametrize(
    "suffix, module, writer",
    [("fits", "fits", "write_fits"), ("tif", "tiff", "write_tiff"), ("png", "png_jpeg",
     "write_png"), ("jpg", "png_jpeg", "write_jpeg"), ("xisf", "xisf", "write_xisf")],
    ids=["fits", "tif", "png", "jpg", "xisf"],
)  # fmt: skip
def test_full_disk_while_writing(suffix, module, writer, tmp_path, monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module(f"skystack.io.{module}"), writer,
                        _half_then_enospc)  # fmt: skip
    target = tmp_path / f"out.{suffix}"
    data = np.zeros((600, 800), np.float32)
    with pytest.raises(OutOfDiskError) as caught:
        skystack.io.write(data, target)
    message = assert_one_line_error(caught.value, target)
    assert re.search(r"no space left on the device .*the disk is full", message), message
    assert re.search(r"needs about \d+(\.\d)? (kB|MB)", message), message
    assert list(tmp_path.iterdir()) == [], "a partial or temporary file was left"


def test_full_disk_through_the_convert_command(good_files, tmp_path, monkeypatch, capsys):
    import skystack.io.tiff as tiff_module

    monkeypatch.setattr(tiff_module, "write_tiff", _half_then_enospc)
    out = tmp_path / "converted.tif"
    assert main(["convert", str(good_files["fits"]), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(out) in err and "the disk is full" in err and "needs about" in err
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_writing_a_ser_video(good_files, tmp_path, monkeypatch, capsys):
    """``convert`` of a SER streams frames; a full disk halfway leaves nothing behind."""
    import skystack.io.ser as ser_module

    real_write_frames = ser_module._write_frames

    def fill_up(fh, data, **kwargs):
        real_write_frames(fh, data, **kwargs)
        raise enospc(kwargs.get("path"))

    monkeypatch.setattr(ser_module, "_write_frames", fill_up)
    out = tmp_path / "copy.ser"
    assert main(["convert", str(good_files["ser"]), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no space left" in err and str(out) in err, err
    assert list(tmp_path.iterdir()) == []


def test_good_files_read(good_files):
    """The corpus starts from valid files: each of them reads."""
    for suffix, path in good_files.items():
        frame = skystack.io.read(path)
        assert frame.data.dtype == np.float32, suffix
