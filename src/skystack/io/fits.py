"""FITS images through astropy: integer and float, mono and colour, tile-compressed and gzip/bzip2.

Integer data are scaled so the stored range's top is 1.0 (unsigned 16-bit with BZERO = 32768 →
/65535); float data are kept as they are. Colour cubes ``(3, H, W)`` become ``(H, W, 3)``. The
header's cards are kept in ``FrameMeta.header`` and the well-known ones parsed into its fields.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import math
import os
import re
import warnings
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from astropy.io import fits
from astropy.io.fits.hdu.compressed._compression import CfitsioException
from astropy.io.fits.verify import VerifyError, VerifyWarning
from astropy.utils.exceptions import AstropyUserWarning

from skystack._typing import CFA_PATTERNS, CfaPattern, FrameKind, Image
from skystack.errors import FormatError
from skystack.frame import Frame, FrameMeta, HeaderCard
from skystack.io._common import check_claimed_size, one_line
from skystack.io._scale import stored_samples

__all__ = ["read_fits", "read_fits_rows", "write_fits", "meta_fields_from_cards", "cards_from_meta"]

# Cards that describe the data layout: astropy writes them itself, so they are not kept.
_STRUCTURAL = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|BZERO|BSCALE|PCOUNT|GCOUNT|XTENSION|CHECKSUM|DATASUM|"
    r"ZIMAGE|ZBITPIX|ZNAXIS\d*|ZTILE\d+|ZCMPTYPE|ZNAME\d+|ZVAL\d+|ZQUANTIZ|ZDITHER0|ZSIMPLE|"
    r"ZEXTEND|ZBLOCKED|ZTENSION|ZPCOUNT|ZGCOUNT|ZHECKSUM|ZDATASUM|ZBLANK|ZSCALE|ZZERO|ZMASKCMP|"
    r"TFIELDS|TTYPE\d+|TFORM\d+|THEAP|END)$"
)
_MAX_PIXELS = 2**31  # refuse headers that promise absurd images before touching the data

_KIND_WORDS: tuple[tuple[str, FrameKind], ...] = (
    ("DARKFLAT", "dark-flat"),
    ("DARK FLAT", "dark-flat"),
    ("DARK-FLAT", "dark-flat"),
    ("FLATDARK", "dark-flat"),
    ("FLAT DARK", "dark-flat"),
    ("BIAS", "bias"),
    ("OFFSET", "bias"),
    ("ZERO", "bias"),
    ("DARK", "dark"),
    ("FLAT", "flat"),
    ("LIGHT", "light"),
    ("OBJECT", "light"),
    ("SCIENCE", "light"),
)


def _first(cards: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        value = cards.get(key)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return value
    return None


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _parse_date(value: Any, *, local: bool = False) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        # Pre-1999 FITS dates: DD/MM/YY, years in the 1900s.
        match = re.fullmatch(r"(\d\d)/(\d\d)/(\d\d)", text)
        if not match:
            return None
        day, month, year = (int(g) for g in match.groups())
        try:
            parsed = datetime(1900 + year, month, day)
        except ValueError:
            return None
    if local or parsed.tzinfo:
        return parsed
    return parsed.replace(tzinfo=UTC)


def _parse_kind(value: Any) -> FrameKind | None:
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    for word, kind in _KIND_WORDS:
        if word in text:
            return kind
    return None


def _shift_pattern(pattern: str, *, dx: int, dy: int) -> str:
    """The pattern seen from a cell shifted by (dx, dy) pixels (only parities matter)."""
    cells = [[pattern[0], pattern[1]], [pattern[2], pattern[3]]]
    return "".join(cells[(r + dy) % 2][(c + dx) % 2] for r in (0, 1) for c in (0, 1))


def _parse_cfa(cards: dict[str, Any], height: int | None) -> CfaPattern | None:
    value = _first(cards, "BAYERPAT", "COLORTYP", "CFA-PAT")
    if not isinstance(value, str):
        return None
    pattern = value.strip().upper()
    if pattern not in CFA_PATTERNS:
        return None
    dx = int(_as_float(cards.get("XBAYROFF")) or 0)
    dy = int(_as_float(cards.get("YBAYROFF")) or 0)
    pattern = _shift_pattern(pattern, dx=dx, dy=dy)
    roworder = str(cards.get("ROWORDER") or "TOP-DOWN").strip().upper()
    if roworder == "BOTTOM-UP" and height is not None and height % 2 == 0:
        # The pattern was given for the image displayed bottom-up: its first row is our last.
        pattern = _shift_pattern(pattern, dx=0, dy=1)
    return pattern  # type: ignore[return-value]


def meta_fields_from_cards(
    cards: Iterable[HeaderCard], *, height: int | None = None
) -> dict[str, Any]:
    """Parse the well-known FITS keywords into :class:`~skystack.frame.FrameMeta` arguments.

    Parameters
    ----------
    cards : iterable of (keyword, value, comment)
        Header cards in file order; the first occurrence of a keyword wins.
    height : int, optional
        Image height, needed to place a ``BAYERPAT`` given with ``ROWORDER = 'BOTTOM-UP'``.

    Returns
    -------
    dict
        Keyword arguments for ``FrameMeta`` (only the fields the header knows).
    """
    table: dict[str, Any] = {}
    for key, value, _comment in cards:
        table.setdefault(key.upper(), value)
    fields: dict[str, Any] = {
        "exposure": _as_float(_first(table, "EXPTIME", "EXPOSURE", "ITIME", "EXP_TIME")),
        "gain": _as_float(_first(table, "GAIN", "EGAIN_SETTING")),
        "temperature": _as_float(_first(table, "CCD-TEMP", "CCD_TEMP", "SENSOR_TEMP", "CAM-TEMP")),
        "cfa": _parse_cfa(table, height),
        "date_obs": _parse_date(_first(table, "DATE-OBS", "DATE_OBS", "DATE-BEG"))
        or _parse_date(_first(table, "DATE-LOC"), local=True),
        "black_level": _as_float(table.get("BLKLEVEL")),
        "white_level": _as_float(table.get("WHTLEVEL")),
        "camera": _first(table, "INSTRUME", "CAMERA"),
        "telescope": _first(table, "TELESCOP"),
        "filter": _first(table, "FILTER", "FILTER1"),
        "target": _first(table, "OBJECT"),
        "kind": _parse_kind(
            _first(table, "IMAGETYP", "IMGTYPE", "FRAMETYP", "OBSTYPE", "DATA-TYP")
        ),
    }
    balance = tuple(_as_float(table.get(f"CAMWB_{c}")) for c in "RGB")
    if all(m is not None for m in balance):
        fields["white_balance"] = balance
    iso = _as_float(_first(table, "ISOSPEED", "ISO"))
    fields["iso"] = int(iso) if iso is not None else None
    for name in ("camera", "telescope", "filter", "target"):
        if fields[name] is not None:
            fields[name] = str(fields[name]).strip()
    return {name: value for name, value in fields.items() if value is not None}


_KIND_TO_IMAGETYP: dict[str, str] = {
    "light": "Light Frame",
    "dark": "Dark Frame",
    "flat": "Flat Field",
    "bias": "Bias Frame",
    "dark-flat": "Dark Flat",
}


def cards_from_meta(meta: FrameMeta) -> list[HeaderCard]:
    """The header cards to write for ``meta``: its original cards, updated with its fields.

    Fields that are set override the original cards of the same meaning; Bayer offsets are
    folded into ``BAYERPAT`` (so ``XBAYROFF``/``YBAYROFF`` become 0) and ``ROWORDER`` is
    written as ``TOP-DOWN``, the order in which skystack stores rows.
    """
    updates: dict[str, tuple[Any, str]] = {}
    if meta.exposure is not None:
        updates["EXPTIME"] = (float(meta.exposure), "[s] exposure time")
    if meta.iso is not None:
        updates["ISOSPEED"] = (int(meta.iso), "ISO speed")
    if meta.gain is not None:
        updates["GAIN"] = (float(meta.gain), "camera gain setting")
    if meta.temperature is not None:
        updates["CCD-TEMP"] = (float(meta.temperature), "[C] sensor temperature")
    if meta.cfa is not None:
        updates["BAYERPAT"] = (meta.cfa, "Bayer pattern at array element [0, 0]")
        updates["ROWORDER"] = ("TOP-DOWN", "order of rows in the image")
        updates["XBAYROFF"] = (0, "Bayer pattern x offset")
        updates["YBAYROFF"] = (0, "Bayer pattern y offset")
    if meta.date_obs is not None:
        stamp = meta.date_obs
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(UTC).replace(tzinfo=None)
            updates["DATE-OBS"] = (stamp.isoformat(), "UTC start of exposure")
        else:  # a camera clock without a time zone
            updates["DATE-LOC"] = (stamp.isoformat(), "local start of exposure (camera clock)")
    if meta.black_level is not None:
        updates["BLKLEVEL"] = (float(meta.black_level), "black level, full scale = 1")
    if meta.white_level is not None:
        updates["WHTLEVEL"] = (float(meta.white_level), "white level, full scale = 1")
    if meta.white_balance is not None:
        for channel, multiplier in zip("RGB", meta.white_balance, strict=True):
            updates[f"CAMWB_{channel}"] = (float(multiplier), f"camera white balance, {channel}")
    if meta.camera is not None:
        updates["INSTRUME"] = (meta.camera, "camera")
    if meta.telescope is not None:
        updates["TELESCOP"] = (meta.telescope, "telescope")
    if meta.filter is not None:
        updates["FILTER"] = (meta.filter, "filter")
    if meta.target is not None:
        updates["OBJECT"] = (meta.target, "target")
    if meta.kind is not None:
        updates["IMAGETYP"] = (_KIND_TO_IMAGETYP[meta.kind], "type of frame")
    cards: list[HeaderCard] = []
    for key, value, comment in meta.header:
        upper = key.upper()
        if _STRUCTURAL.match(upper):
            continue
        if upper in updates:
            new_value, new_comment = updates.pop(upper)
            cards.append((upper, new_value, comment or new_comment))
        else:
            cards.append((key, value, comment))
    cards.extend((key, value, comment) for key, (value, comment) in updates.items())
    return cards


def _image_hdu(hdul: fits.HDUList, path: Path) -> fits.hdu.base.ExtensionHDU:
    for hdu in hdul:
        if isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
            naxis = _axis_length(hdu.header, "NAXIS", path)
            if naxis > 0 and not (isinstance(hdu, fits.PrimaryHDU) and _is_empty_primary(hdu)):
                return hdu
    raise FormatError(f"{path}: FITS file holds no image data")


def _is_empty_primary(hdu: fits.PrimaryHDU) -> bool:
    return any(hdu.header.get(f"NAXIS{i}", 1) == 0 for i in range(1, hdu.header["NAXIS"] + 1))


def _axis_length(header: fits.Header, key: str, path: Path) -> int:
    try:
        value = header.get(key, 0)
    except (VerifyError, ValueError) as err:
        raise FormatError(
            f"{path}: FITS header card {key} is unparsable ({one_line(err)})"
        ) from err
    if not isinstance(value, int) or isinstance(value, bool):
        raise FormatError(f"{path}: FITS header {key} = {value!r} is not an integer")
    return value


def _check_dimensions(header: fits.Header, path: Path) -> tuple[int, ...]:
    prefix = "ZNAXIS" if "ZNAXIS" in header else "NAXIS"
    naxis = _axis_length(header, prefix, path)
    if naxis not in (2, 3):
        raise FormatError(f"{path}: FITS image has {naxis} axes; expected a 2-D image or a cube")
    shape = tuple(_axis_length(header, f"{prefix}{i}", path) for i in range(naxis, 0, -1))
    if any(n <= 0 for n in shape) or math.prod(shape) > _MAX_PIXELS:
        raise FormatError(f"{path}: FITS header claims an impossible image size {shape}")
    if naxis == 3 and shape[0] not in (1, 3):
        raise FormatError(
            f"{path}: FITS cube has {shape[0]} planes; expected a mono image or 3 colour planes"
        )
    return shape


def _to_float(raw: np.ndarray, header: fits.Header, notes: list[str]) -> Image:
    bzero = float(header.get("BZERO", 0.0))
    bscale = float(header.get("BSCALE", 1.0))
    if raw.dtype.kind == "f":
        data = raw.astype(np.float32)
        if bscale != 1.0 or bzero != 0.0:
            data = data * np.float32(bscale) + np.float32(bzero)
        return data
    bits = raw.dtype.itemsize * 8
    if raw.dtype.kind == "i" and bscale == 1.0 and bzero == 2.0 ** (bits - 1):
        # FITS's unsigned convention: signed storage offset by half the range.
        full_scale = 2.0**bits - 1.0
        data = raw.astype(np.float32)
        data += np.float32(bzero)
    elif bscale == 1.0 and bzero == 0.0:
        full_scale = float(np.iinfo(raw.dtype).max)
        data = raw.astype(np.float32)
    else:
        notes.append(f"BSCALE={bscale:g} BZERO={bzero:g}: physical values kept unscaled")
        return (raw.astype(np.float64) * bscale + bzero).astype(np.float32)
    data *= np.float32(1.0 / full_scale)
    return data


def read_fits(path: Path) -> Frame:
    """Read the first image HDU of a FITS file.

    Parameters
    ----------
    path : Path
        ``.fits/.fit/.fts``, tile-compressed ``.fz``, or whole-file ``.gz``/``.bz2`` (recognised
        by their first bytes, whatever the extension).

    Returns
    -------
    Frame
        float32 data, ``(H, W)`` or ``(H, W, 3)``; integer data scaled to full scale 1.0.

    Raises
    ------
    FormatError
        When the file is not FITS, is truncated or corrupt, holds no 2-D image or cube, or its
        header promises more data than the file holds (checked before any allocation).
    """
    path = Path(path)
    notes: list[str] = []
    compression = _whole_file_compression(path)
    with warnings.catch_warnings(), contextlib.ExitStack() as files:
        # Non-standard cards in real files (e.g. HIERARCH, long strings) are not our problem.
        warnings.simplefilter("ignore", VerifyWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        hdul = _open(path, compression, files)
        try:
            with hdul:
                hdu = _image_hdu(hdul, path)
                header = hdu.header
                shape = _check_dimensions(header, path)
                if isinstance(hdu, fits.CompImageHDU):
                    # astropy allocates the whole image before decompressing the tiles.
                    bits = abs(int(header.get("ZBITPIX", 32)))
                    nbytes = math.prod(shape) * max(bits // 8, 1)
                    claim = f"FITS header claims a tile-compressed image of {shape} samples"
                    size = path.stat().st_size
                    check_claimed_size(path, claim, nbytes, stored=size, max_ratio=None)
                try:
                    raw = hdu.data
                except _CORRUPT as err:
                    raise FormatError(
                        f"{path}: FITS data are truncated or corrupt ({one_line(err)})"
                    ) from err
                if raw is None or raw.shape != shape:
                    raise FormatError(f"{path}: FITS data are truncated (expected shape {shape})")
                data = _to_float(raw, header, notes)
                del raw
                cards = _header_cards(hdu.header)
                bitpix = int(hdu.header.get("ZBITPIX", hdu.header.get("BITPIX", 0)))
        except FormatError:
            raise
        except _CORRUPT as err:
            # A header value astropy cannot parse, or of the wrong type (BZERO = 'x' ...).
            raise FormatError(f"{path}: FITS header is corrupt ({one_line(err)})") from err
    if data.ndim == 3:
        data = np.ascontiguousarray(np.moveaxis(data, 0, -1)) if shape[0] == 3 else data[0]
    fields = meta_fields_from_cards(cards, height=data.shape[0])
    if data.ndim == 3:
        fields.pop("cfa", None)
    meta = FrameMeta(
        path=path,
        format="fits",
        bit_depth=abs(bitpix) or None,
        notes=tuple(notes),
        header=cards,
        **fields,
    )
    return Frame(data, meta)


_GZIP_MAGIC, _BZIP2_MAGIC = b"\x1f\x8b", b"BZh"
# What astropy and the decompressors raise on damaged files.
_CORRUPT = (
    OSError, EOFError, ValueError, TypeError, KeyError, IndexError, VerifyError, zlib.error,
    ArithmeticError,  # a zero or huge tile size in ZTILEn
    RuntimeError,  # astropy on an invalid TFORM of a tile-compressed table
    CfitsioException,  # astropy's tile decompression (RICE, HCOMPRESS, PLIO)
)  # fmt: skip


def _open(path: Path, compression: str | None, files: contextlib.ExitStack) -> fits.HDUList:
    """Open ``path``; its file handle, if any, is closed by ``files`` (astropy leaves the file
    open when it fails on a damaged header, so it gets a handle it does not own)."""
    try:
        if compression is None:
            fh = files.enter_context(open(path, "rb"))
            _check_headers(fh, os.fstat(fh.fileno()).st_size, path)
            fh.seek(0)
            return fits.open(
                fh,
                memmap=True,
                do_not_scale_image_data=True,
                lazy_load_hdus=True,
                mode="readonly",
            )
        # Decompressed here, not by astropy: astropy allocates the array the header promises
        # before finding the stream too short. From bytes, astropy's arrays are views of the
        # buffer, so a header that claims more than the file holds fails without allocating.
        return _from_bytes(_decompress(path, compression), path, compression)
    except FormatError:
        raise
    except _CORRUPT as err:
        _raise_for_header(path, compression)
        raise FormatError(f"{path}: not a readable FITS file ({one_line(err)})") from err


_BLOCK = 2880
_MAX_AXES = 999  # the FITS standard's limit for NAXIS and TFIELDS
_MAX_HDUS = 64  # headers checked: far more than an image file has before its image
_MAX_HEADER_BLOCKS = 1000  # 36,000 cards
_COUNTED = {b"NAXIS", b"ZNAXIS", b"TFIELDS"}


def _check_headers(fh: BinaryIO, size: int, path: Path) -> None:
    """Check the file's headers before astropy builds its HDUs from them.

    * NAXIS, ZNAXIS and TFIELDS: astropy builds an HDU with a Python loop over ``range(NAXIS)``
      (``range(TFIELDS)`` for tables), and a damaged header claiming NAXIS = 10**9 kept it busy
      for many minutes. The standard allows at most 999.
    * The data of the first HDU that has any must be in the file: from bytes (compressed files)
      astropy fails on short data with an AttributeError rather than an error of its own.

    Only cards that parse as integers are looked at; anything else is left to astropy.
    """
    offset = 0
    seen_data = False
    for index in range(_MAX_HDUS):
        values: dict[bytes, int] = {}
        end = False
        for _block in range(_MAX_HEADER_BLOCKS):
            fh.seek(offset)
            block = fh.read(_BLOCK)
            if len(block) < _BLOCK:
                return  # truncated: astropy says so
            offset += _BLOCK
            for start in range(0, _BLOCK, 80):
                key = block[start : start + 8].rstrip()
                if key == b"END":
                    end = True
                    break
                if block[start + 8 : start + 10] != b"= ":
                    continue
                text = block[start + 10 : start + 80].split(b"/", 1)[0].strip()
                try:
                    values[key] = int(text)
                except ValueError:
                    continue
            if end:
                break
        if not end:
            return  # no END card where expected: astropy judges the rest
        for key in _COUNTED:
            count = values.get(key)
            if count is not None and not 0 <= count <= _MAX_AXES:
                raise FormatError(
                    f"{path}: FITS header {key.decode()} = {count}; expected 0 to {_MAX_AXES}"
                )
        naxis = values.get(b"NAXIS", 0)
        dims = [values.get(b"NAXIS%d" % i, 0) for i in range(1, naxis + 1)]
        elements = math.prod(dims) if dims else 0
        nbytes = abs(values.get(b"BITPIX", 8)) // 8 * values.get(b"GCOUNT", 1)
        nbytes *= values.get(b"PCOUNT", 0) + elements
        if nbytes > 0 and not seen_data and offset + nbytes > size:
            if elements > _MAX_PIXELS:
                shape = tuple(reversed(dims))
                raise FormatError(f"{path}: FITS header claims an impossible image size {shape}")
            raise FormatError(
                f"{path}: FITS data are truncated (HDU {index} promises {nbytes} bytes of data "
                f"from byte {offset}; the file ends at byte {size})"
            )
        seen_data = seen_data or nbytes > 0
        offset += -(-max(nbytes, 0) // _BLOCK) * _BLOCK
        if offset >= size:
            return


def _whole_file_compression(path: Path) -> str | None:
    """``"gzip"`` or ``"bzip2"`` from the file's first bytes, else None."""
    with open(path, "rb") as fh:
        head = fh.read(3)
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_BZIP2_MAGIC):
        return "bzip2"
    return None


def _decompress(path: Path, compression: str) -> bytes:
    """The decompressed content of a whole-file compressed FITS file."""
    opener = gzip.open if compression == "gzip" else bz2.open
    chunks: list[bytes] = []
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                chunks.append(chunk)
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise FormatError(
            f"{path}: {compression}-compressed FITS file is truncated or corrupt ({one_line(err)})"
        ) from err
    return b"".join(chunks)


def _from_bytes(content: bytes, path: Path, compression: str) -> fits.HDUList:
    if not content.startswith(b"SIMPLE  ="):
        raise FormatError(
            f"{path}: {compression}-compressed file does not hold FITS data (it starts with "
            f"{content[:8]!r}, expected 'SIMPLE  =')"
        )
    _check_headers(io.BytesIO(content), len(content), path)
    try:
        return fits.HDUList.fromstring(content, do_not_scale_image_data=True)
    except AttributeError as err:
        # astropy's fromstring fails this way when no header can be parsed at all.
        raise FormatError(
            f"{path}: {compression}-compressed FITS file holds no readable header"
        ) from err


def _raise_for_header(path: Path, compression: str | None) -> None:
    """After astropy failed to open ``path``: raise a clearer error if its first header tells why.

    A header promising an absurd image makes astropy seek far beyond the end of the file, which
    fails with an unhelpful ``Invalid argument``; the dimensions say what is wrong.
    """
    opener: Any = {"gzip": gzip.open, "bzip2": bz2.open}.get(compression or "", open)
    try:
        with opener(path, "rb") as fh:
            header = fits.Header.fromfile(fh, padding=False)
        naxis = header.get("NAXIS", 0)
    except FormatError:
        raise
    except _CORRUPT:
        return
    if naxis in (2, 3):
        _check_dimensions(header, path)


def _header_cards(header: fits.Header) -> tuple[HeaderCard, ...]:
    """The header's cards but the structural ones; an unparsable value is kept as its text."""
    cards: list[HeaderCard] = []
    for card in header.cards:
        if _STRUCTURAL.match(card.keyword):
            continue
        try:
            cards.append((card.keyword, card.value, card.comment))
        except (VerifyError, ValueError):
            text = card.image[10:] if card.image[8:10] == "= " else card.image[8:]
            cards.append((card.keyword, text.split(" /", 1)[0].strip(), ""))
    return tuple(cards)


def read_fits_rows(path: Path, start: int, stop: int) -> Image:
    """Read rows ``start:stop`` of a FITS image without reading the rest of the file.

    For the strip-by-strip stacking of large sets: only the requested rows are read from disk
    (astropy's ``section``), scaled like :func:`read_fits`. Uncompressed files only.

    Returns
    -------
    ndarray
        float32 ``(stop - start, W)`` or ``(stop - start, W, 3)``.
    """
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        try:
            hdul = fits.open(path, memmap=False, do_not_scale_image_data=True, lazy_load_hdus=True)
        except OSError as err:
            raise FormatError(f"{path}: not a readable FITS file ({one_line(err)})") from err
        with hdul:
            hdu = _image_hdu(hdul, path)
            shape = _check_dimensions(hdu.header, path)
            try:
                raw = hdu.section[:, start:stop, :] if len(shape) == 3 else hdu.section[start:stop]
            except (TypeError, ValueError, OSError, IndexError) as err:
                raise FormatError(f"{path}: FITS rows {start}:{stop} unreadable ({err})") from err
            data = _to_float(np.asarray(raw), hdu.header, [])
    if data.ndim == 3:
        return np.ascontiguousarray(np.moveaxis(data, 0, -1)) if shape[0] == 3 else data[0]
    return data


def write_fits(
    data: Image,
    path: Path,
    *,
    meta: FrameMeta | None = None,
    bit_depth: int = 32,
    history: Iterable[str] = (),
) -> None:
    """Write an image as FITS: float32 (``bit_depth=32``), unsigned 16-bit or 8-bit.

    Colour ``(H, W, 3)`` is stored as a ``(3, H, W)`` cube. A ``.fz`` path writes a
    tile-compressed HDU (lossless: RICE for integers, GZIP_2 without quantisation for floats);
    ``.gz`` compresses the whole file.

    Parameters
    ----------
    data : ndarray
        float32 image, full scale 1.0.
    path : Path
        Output path (written directly; :func:`skystack.io.write` makes it atomic).
    meta : FrameMeta, optional
        Metadata to store as header cards.
    bit_depth : {8, 16, 32}
        Sample type.
    history : iterable of str
        HISTORY cards to add.
    """
    path = Path(path)
    stored = stored_samples(data, bit_depth, path=path, format_name="FITS", any_shape=True)
    if stored.ndim == 3:
        stored = np.ascontiguousarray(np.moveaxis(stored, -1, 0))
    header = fits.Header()
    for key, value, comment in cards_from_meta(meta or FrameMeta()):
        if key in ("HISTORY", "COMMENT"):
            header.add_history(str(value)) if key == "HISTORY" else header.add_comment(str(value))
        elif key:
            _set_card(header, key, value, comment)
    from skystack import __version__

    header["SWCREATE"] = (f"skystack {__version__}", "software that wrote this file")
    for line in history:
        header.add_history(str(line))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        if path.suffix.lower() == ".fz":
            compression = "GZIP_2" if stored.dtype.kind == "f" else "RICE_1"
            options: dict[str, Any] = {"compression_type": compression}
            if stored.dtype.kind == "f":
                options["quantize_level"] = 0.0
            hdul = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(stored, header, **options)])
        else:
            hdul = fits.HDUList([fits.PrimaryHDU(stored, header)])
        hdul.writeto(path, overwrite=True, output_verify="silentfix")


def _set_card(header: fits.Header, key: str, value: Any, comment: str) -> None:
    if isinstance(value, float) and not np.isfinite(value):
        return
    if len(key) > 8 and not key.startswith("HIERARCH"):
        key = f"HIERARCH {key}"
    try:
        header.append((key, value, comment), end=True)
    except (ValueError, TypeError):
        # A card from another file that astropy cannot re-emit (odd value types): keep it as text.
        header.append((key, str(value), comment), end=True)
