"""IRAF old image format (OIF): a ``.imh`` header file and a ``.pix`` pixel file.

Only the version 2 header (magic ``imhv2``, IRAF 2.11 and later) is read. Its fixed part is
2046 bytes of big-endian 32-bit integers and 1-byte strings; the FITS-like user cards follow as
80-character records ended by newlines, up to a NUL. Byte offsets of the fields used here:

======  =========  ==============================================================
offset  field      meaning
======  =========  ==============================================================
0       magic      ``b"imhv2\\0"`` (the pixel file starts with ``b"impv2"``)
10      pixtype    SPP type code: 3 short, 4 int, 6 real, 7 double, 11 ushort
14      swapped    1 when the pixels are little-endian (written on a byte-swapped host)
18      ndim       number of axes
22      len[7]     axis lengths, x first
50      physlen[7] stored axis lengths (rows may be padded: ``physlen[0] >= len[0]``)
86      pixoff     1-based offset of the pixels in the pixel file, in 2-byte SPP chars
126     pixfile    pixel file name, e.g. ``HDR$pix.pix`` (``HDR$`` = the header's folder)
638     title      image title (FITS ``OBJECT``)
2046    user area  header cards
======  =========  ==============================================================

The pixel file named by the header is never opened as given: only the ``.pix`` with the header's
stem in the header's folder, or the base name of the header's file name in that same folder, is
read. The version 1 header (magic ``imhdr`` in 2-byte characters) is refused with a clear error.

References
----------
IRAF ``sys/imio/iki/oif/imhv2.h`` and ``sys/imio/imio.h`` (iraf-community/iraf on GitHub).
"""

from __future__ import annotations

import os
import re
import struct
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError, VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning

from skystack._typing import Image
from skystack.errors import FormatError
from skystack.frame import Frame, FrameMeta, HeaderCard
from skystack.io.fits import meta_fields_from_cards

__all__ = ["read_iraf", "IRAF_HEADER_MAGIC", "IRAF_PIXEL_MAGIC"]

IRAF_HEADER_MAGIC = b"imhv2"
"""First bytes of a version 2 ``.imh`` header."""
IRAF_PIXEL_MAGIC = b"impv2"
"""First bytes of a version 2 ``.pix`` pixel file."""

_V1_MAGICS = (b"\x00i\x00m\x00h\x00d\x00r", b"i\x00m\x00h\x00d\x00r\x00")
_MAXDIM = 7
_HEADER_END = 2046  # end of the fixed v2 header; the user area follows
_OFF_PIXTYPE, _OFF_SWAPPED, _OFF_NDIM, _OFF_LEN, _OFF_PHYSLEN, _OFF_PIXOFF = 10, 14, 18, 22, 50, 86
_OFF_PIXFILE, _SZ_PIXFILE = 126, 256
_OFF_TITLE, _SZ_TITLE = 638, 384
_SZB_CHAR = 2  # SPP char size in bytes: the unit of pixoff
_MAX_HEADER_BYTES = 64 * 2**20  # a header holds a few kB of cards; refuse anything huge
_MAX_PIXELS = 2**31

# SPP type code -> (stored big-endian dtype, name). TY_LONG (5) is left out: its size on disk
# depends on the IRAF build that wrote it.
_PIXEL_TYPES: dict[int, tuple[str, str]] = {
    3: (">i2", "short"),
    4: (">i4", "int"),
    6: (">f4", "real"),
    7: (">f8", "double"),
    11: (">u2", "ushort"),
}
_NAMELESS_TYPES = {1: "bool", 2: "char", 5: "long", 8: "complex", 9: "pointer", 10: "struct"}


def read_iraf(path: Path) -> Frame:
    """Read an IRAF OIF image (``.imh`` header plus ``.pix`` pixels).

    Parameters
    ----------
    path : Path
        The ``.imh`` header, or the ``.pix`` pixel file (its header is the ``.imh`` with the
        same stem beside it).

    Returns
    -------
    Frame
        float32 ``(H, W)`` data in file row order; integers scaled so the type's maximum is 1.0
        (signed 16-bit: /32767, as for FITS ``int16``), floats kept. The user-area cards are in
        ``meta.header`` (the title added as ``OBJECT`` when no such card exists) and parsed like
        FITS keywords (``ITIME`` gives the exposure).

    Raises
    ------
    FormatError
        For a header that is truncated, of an unknown version or pixel type, or claims an
        impossible size, and for a pixel file that is missing, foreign or too short.
    """
    path = Path(path)
    header_path = _header_path(path)
    raw = _read_header_bytes(header_path, path)
    pixtype = _ints(raw, _OFF_PIXTYPE)[0]
    if pixtype not in _PIXEL_TYPES:
        name = _NAMELESS_TYPES.get(pixtype, "unknown")
        raise FormatError(
            f"{path}: IRAF pixel type {pixtype} ({name}) is not supported; "
            "expected short, ushort, int, real or double"
        )
    swapped = _ints(raw, _OFF_SWAPPED)[0]
    if swapped not in (0, 1):
        raise FormatError(f"{path}: IRAF header byte-swap flag is {swapped}; expected 0 or 1")
    dtype = np.dtype(_PIXEL_TYPES[pixtype][0])
    if swapped:
        dtype = dtype.newbyteorder("<")
    width, height, row_stride = _geometry(raw, path)
    pixoff = _ints(raw, _OFF_PIXOFF)[0]
    if pixoff < 1:
        raise FormatError(f"{path}: IRAF header gives pixel offset {pixoff}; expected >= 1")
    offset = (pixoff - 1) * _SZB_CHAR

    pixfile_name = _text(raw[_OFF_PIXFILE : _OFF_PIXFILE + _SZ_PIXFILE])
    pixel_path = _pixel_path(path, header_path, pixfile_name)
    samples = _read_pixels(pixel_path, path, dtype=dtype, offset=offset, count=row_stride * height)
    pixels = samples.reshape(height, row_stride)[:, :width]
    data = _to_float(pixels)
    del samples, pixels

    cards = _user_cards(raw[_HEADER_END:])
    title = _text(raw[_OFF_TITLE : _OFF_TITLE + _SZ_TITLE]).strip()
    if title and not any(key.upper() == "OBJECT" for key, _value, _comment in cards):
        cards = (("OBJECT", title, "IRAF image title"), *cards)
    meta = FrameMeta(
        path=path,
        format="iraf",
        bit_depth=dtype.itemsize * 8,
        header=cards,
        **meta_fields_from_cards(cards, height=height),
    )
    return Frame(data, meta)


def _header_path(path: Path) -> Path:
    if path.suffix.lower() != ".pix":
        return path
    for suffix in (".imh", ".IMH"):
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise FormatError(
        f"{path}: IRAF pixel file without its header {path.with_suffix('.imh').name} beside it"
    )


def _read_header_bytes(header_path: Path, path: Path) -> bytes:
    try:
        with open(header_path, "rb") as fh:
            # Not fh.read(_MAX_HEADER_BYTES + 1): that allocates the whole limit up front.
            size = os.fstat(fh.fileno()).st_size
            raw = fh.read(min(size, _MAX_HEADER_BYTES + 1))
    except FileNotFoundError as err:
        raise FormatError(f"{path}: IRAF header {header_path} not found") from err
    if len(raw) > _MAX_HEADER_BYTES:
        raise FormatError(
            f"{path}: IRAF header is larger than {_MAX_HEADER_BYTES // 2**20} MiB; not a header"
        )
    if raw[: len(_V1_MAGICS[0])] in _V1_MAGICS:
        raise FormatError(
            f"{path}: IRAF OIF version 1 header ('imhdr') is not supported; "
            "convert it to FITS with IRAF's wfits or imcopy to a .fits name"
        )
    if not raw.startswith(IRAF_HEADER_MAGIC):
        if len(raw) < len(IRAF_HEADER_MAGIC) and IRAF_HEADER_MAGIC.startswith(raw):
            raise FormatError(f"{path}: truncated IRAF header ({len(raw)} bytes)")
        raise FormatError(
            f"{path}: not an IRAF image header (starts with bytes {raw[:8].hex(' ') or 'none'}; "
            f"expected {IRAF_HEADER_MAGIC.decode()!r})"
        )
    if len(raw) < _HEADER_END:
        raise FormatError(
            f"{path}: truncated IRAF header ({len(raw)} bytes; the v2 header needs {_HEADER_END})"
        )
    return raw


def _ints(raw: bytes, offset: int, count: int = 1) -> tuple[int, ...]:
    """Big-endian 32-bit integers of the header at a byte offset."""
    return struct.unpack_from(f">{count}i", raw, offset)


def _geometry(raw: bytes, path: Path) -> tuple[int, int, int]:
    """Return ``(width, height, row stride in samples)`` after checking the header's axes."""
    ndim = _ints(raw, _OFF_NDIM)[0]
    if not 1 <= ndim <= _MAXDIM:
        raise FormatError(
            f"{path}: IRAF header claims {ndim} axes; expected 1 to {_MAXDIM} (corrupt header?)"
        )
    lengths = _ints(raw, _OFF_LEN, ndim)
    physical = _ints(raw, _OFF_PHYSLEN, ndim)
    if any(n <= 0 for n in lengths) or any(p < n for p, n in zip(physical, lengths, strict=True)):
        raise FormatError(
            f"{path}: IRAF header claims an impossible image size {lengths} (stored as {physical})"
        )
    if ndim == 1:
        raise FormatError(f"{path}: 1-D IRAF image (a spectrum?) of length {lengths[0]}")
    if any(n != 1 for n in lengths[2:]):
        raise FormatError(
            f"{path}: IRAF image has axes {lengths}; expected a 2-D image (one plane)"
        )
    width, height = lengths[0], lengths[1]
    if ndim > 2 and physical[1] != height:
        # Further planes would sit after padded rows; only one plane is expected here.
        raise FormatError(
            f"{path}: IRAF image stores {physical[1]} rows for {height}; expected {height}"
        )
    if physical[0] * height > _MAX_PIXELS:
        raise FormatError(f"{path}: IRAF header claims an impossible image size {lengths}")
    return width, height, physical[0]


def _text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("latin-1")


def _pixel_path(path: Path, header_path: Path, pixfile_name: str) -> Path:
    """The pixel file: never the header's path as given, only names inside the header's folder."""
    folder = header_path.parent
    candidates: list[Path] = [header_path.with_suffix(".pix")]
    if header_path.suffix.isupper():
        candidates.append(header_path.with_suffix(".PIX"))
    # "HDR$pix.pix", "imdir$x.pix", "node!/data/x.pix", "/data/x.pix": keep the base name only.
    base = re.split(r"[$/\\!:]", pixfile_name)[-1].strip()
    if base not in ("", ".", "..") and "\x00" not in base:
        candidates.append(folder / base)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = " or ".join(str(c) for c in dict.fromkeys(candidates))
    raise FormatError(
        f"{path}: IRAF pixel file not found: {looked} (the header names {pixfile_name!r})"
    )


def _read_pixels(
    pixel_path: Path, path: Path, *, dtype: np.dtype, offset: int, count: int
) -> np.ndarray:
    size = pixel_path.stat().st_size
    needed = offset + count * dtype.itemsize
    with open(pixel_path, "rb") as fh:
        head = fh.read(len(IRAF_PIXEL_MAGIC))
        if head != IRAF_PIXEL_MAGIC:
            raise FormatError(
                f"{path}: {pixel_path.name} is not an IRAF pixel file "
                f"(starts with bytes {head.hex(' ') or 'none'}; expected "
                f"{IRAF_PIXEL_MAGIC.decode()!r})"
            )
        if size < needed:
            raise FormatError(
                f"{path}: IRAF pixel file {pixel_path.name} is too short "
                f"({size} bytes; the header needs {needed})"
            )
        fh.seek(offset)
        samples = np.fromfile(fh, dtype=dtype, count=count)
    if samples.size != count:
        raise FormatError(
            f"{path}: IRAF pixel file {pixel_path.name} is too short (read {samples.size} of "
            f"{count} samples)"
        )
    return samples


def _to_float(pixels: np.ndarray) -> Image:
    if pixels.dtype.kind == "f":
        return np.ascontiguousarray(pixels, dtype=np.float32)
    data = pixels.astype(np.float32)
    data *= np.float32(1.0 / float(np.iinfo(pixels.dtype).max))
    return data


def _user_cards(area: bytes) -> tuple[HeaderCard, ...]:
    """Parse the user area: 80-character FITS-like records ended by newlines, up to a NUL."""
    text = _text(area)
    records: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        records.extend(line[i : i + 80] for i in range(0, len(line), 80))
    cards: list[HeaderCard] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        for record in records:
            if not record.strip() or record.rstrip() == "END":
                continue
            try:
                card = fits.Card.fromstring(record.ljust(80))
                cards.append((card.keyword, card.value, card.comment))
            except (ValueError, VerifyError):
                # A card astropy cannot parse: keep its text rather than drop it.
                key, _, rest = record.partition("=")
                cards.append((key.strip().upper(), rest.strip(), ""))
    return tuple(cards)
