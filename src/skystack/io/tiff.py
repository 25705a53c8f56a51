"""TIFF images through tifffile, and the TIFF/EXIF tag metadata shared with JPEG and raw readers.

Reading keeps what the file stores: 8/16/32-bit integers are divided by their full scale (the
largest value of their ``BitsPerSample``), floats are kept as they are (cast to float32). Mono stays
``(H, W)``, colour becomes ``(H, W, 3)`` R, G, B whether the file is interleaved or planar; alpha is
dropped and a palette expanded, each with a note in ``FrameMeta.notes``. Only the first page of a
multi-page file is read. Writing stores unsigned 8/16-bit integers or float32, uncompressed.

:func:`read_exif` reads the few tags skystack uses from IFD0 and the Exif IFD of any TIFF-structured
block (a JPEG's EXIF segment, a TIFF-based camera raw) without decoding image data, and
:func:`meta_from_exif` turns such tags into ``FrameMeta`` fields and header cards.
"""

from __future__ import annotations

import io
import math
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import tifffile

from skystack._typing import CFA_PATTERNS, CfaPattern, Image
from skystack.errors import FormatError
from skystack.frame import Frame, FrameMeta, HeaderCard
from skystack.io._common import check_claimed_size, one_line, software_name
from skystack.io._scale import stored_samples

__all__ = ["read_tiff", "write_tiff", "read_exif", "meta_from_exif", "ExifMeta"]

# TIFF PhotometricInterpretation values.
_MINISWHITE, _MINISBLACK, _RGB, _PALETTE, _SEPARATED, _CFA = 0, 1, 2, 3, 5, 32803


# --------------------------------------------------------------------------------------------
# Reading


def read_tiff(path: str | os.PathLike[str]) -> Frame:
    """Read the first image of a TIFF file.

    Parameters
    ----------
    path : path-like
        A ``.tif``/``.tiff`` file (classic or BigTIFF).

    Returns
    -------
    Frame
        float32 data, ``(H, W)`` or ``(H, W, 3)``. Unsigned integers are divided by
        ``2**BitsPerSample - 1`` and signed ones by their dtype's maximum; floats are kept as
        stored. ``meta`` holds the bit depth, the capture time (EXIF ``DateTimeOriginal``, else the
        ``DateTime`` tag), the camera from ``Make``/``Model``, exposure and ISO when an Exif IFD
        gives them, header cards for those tags, and notes on anything dropped or converted.

    Raises
    ------
    FormatError
        When the file is not a TIFF, is truncated or corrupt, uses a compression tifffile cannot
        decode here, or holds a layout skystack does not read (CMYK, a first page that is not a
        2-D image, complex samples).
    """
    path = Path(path)
    notes: list[str] = []
    try:
        with tifffile.TiffFile(path) as tif:
            n_pages = len(tif.pages)
            if n_pages == 0:
                raise FormatError(f"{path}: TIFF file holds no image")
            page = tif.pages.first
            if not isinstance(page, tifffile.TiffPage):
                raise FormatError(f"{path}: TIFF file's first page is not an image")
            if n_pages > 1:
                notes.append(f"multi-page TIFF ({n_pages} pages): read only the first page")
            _check_page_size(page, path)
            samples = page.asarray()
            tags = _page_tags(page)
            layout = _Layout(
                axes=page.axes,
                photometric=int(page.photometric),
                bits=int(page.bitspersample),
                extrasamples=tuple(int(e) for e in page.extrasamples),
                colormap=page.colormap,
            )
    except FormatError:
        raise
    except tifffile.TiffFileError as err:
        raise FormatError(f"{path}: not a readable TIFF file ({one_line(err)})") from err
    except (
        ValueError, OSError, EOFError, IndexError, KeyError, struct.error, RuntimeError,
        ArithmeticError,
    ) as err:  # fmt: skip
        # RuntimeError: the imagecodecs decoders (Jpeg8Error, ZlibError ...) derive from it.
        # ArithmeticError: a RowsPerStrip or tile size of 0 divides by zero in tifffile.
        detail = one_line(err).strip("\"'")
        if "imagecodecs" in detail:
            raise FormatError(
                f"{path}: cannot decode this TIFF's compression ({detail}); "
                "install imagecodecs or save the file uncompressed"
            ) from err
        raise FormatError(f"{path}: TIFF data are truncated or corrupt ({detail})") from err
    data = _to_image(samples, layout, path, notes)
    cfa = _tiff_cfa(tags, notes) if layout.photometric == _CFA and data.ndim == 2 else None
    exif = meta_from_exif(tags)
    notes.extend(exif.notes)
    meta = FrameMeta(
        path=path,
        format="tiff",
        bit_depth=layout.bits,
        cfa=cfa,
        notes=tuple(notes),
        header=tuple(exif.cards),
        **exif.fields,
    )
    return Frame(data, meta)


# The most bytes of samples one stored byte decodes to, per compression; the others (zstd,
# LZMA, WebP ...) get the generic bound of check_claimed_size.
_MAX_RATIO: dict[int, float] = {
    1: 1.0,  # none
    32773: 128.0,  # PackBits: 2 bytes give 128
    5: 4096.0,  # LZW: one 12-bit code gives at most a 4096-byte string
    8: 1100.0,  # Adobe deflate: 1032 to 1
    32946: 1100.0,  # deflate
    7: 1536.0,  # JPEG: at least one bit per 8x8 block and component
    6: 1536.0,  # old-style JPEG
}


def _check_page_size(page: tifffile.TiffPage, path: Path) -> None:
    """Refuse a page whose claimed size its strips cannot hold, before tifffile allocates it.

    tifffile allocates the whole image first: a mutated ImageWidth of 2**32 - 1 asked for 48 GB.
    """
    shape = tuple(int(n) for n in page.shape)
    nbytes = math.prod(shape) * page.dtype.itemsize if page.dtype is not None else 0
    file_size = page.parent.filehandle.size
    # tifffile allocates each strip's byte count before reading it: a strip claiming 1 GiB
    # allocated 1 GiB even though the file ends after a few bytes.
    for index, (offset, count) in enumerate(
        zip(page.dataoffsets, page.databytecounts, strict=False)
    ):
        if count and int(offset) + int(count) > file_size:
            raise FormatError(
                f"{path}: TIFF data are truncated or corrupt (strip {index} of {count} bytes at "
                f"byte {offset} goes beyond the end of the file, {file_size} bytes)"
            )
    stored = sum(int(n) for n in page.databytecounts)
    ratio = _MAX_RATIO.get(int(page.compression))
    bits = int(page.bitspersample)
    if ratio is not None and page.dtype is not None and 0 < bits < page.dtype.itemsize * 8:
        ratio *= page.dtype.itemsize * 8 / bits  # packed samples unpack into larger ones
    size = "x".join(str(n) for n in shape)
    claim = f"TIFF header claims an image of {size} samples"
    check_claimed_size(path, claim, nbytes, stored=stored, max_ratio=ratio)


@dataclass(frozen=True)
class _Layout:
    axes: str
    photometric: int
    bits: int
    extrasamples: tuple[int, ...]
    colormap: np.ndarray | None


def _page_tags(page: tifffile.TiffPage) -> dict[str, Any]:
    """Tag values by tifffile name, with the Exif IFD's tags merged in."""
    tags: dict[str, Any] = {}
    for tag in page.tags.values():
        value = tag.value
        if tag.code == 34665 and isinstance(value, dict):
            for name, sub_value in value.items():
                tags.setdefault(name, sub_value)
        else:
            tags[tag.name] = value
    return tags


def _tiff_cfa(tags: Mapping[str, Any], notes: list[str]) -> CfaPattern | None:
    """The Bayer pattern of a TIFF/EP CFA image from CFARepeatPatternDim and CFAPattern."""
    dims = tags.get("CFARepeatPatternDim")
    pattern = tags.get("CFAPattern")
    letters = ""
    if tuple(dims or ()) == (2, 2) and isinstance(pattern, bytes | tuple) and len(pattern) == 4:
        letters = "".join({0: "R", 1: "G", 2: "B"}.get(int(c), "?") for c in pattern)
    if letters in CFA_PATTERNS:
        return letters  # type: ignore[return-value]
    notes.append("TIFF/EP CFA image with an unknown colour pattern: kept as a mono mosaic")
    return None


def _to_image(samples: np.ndarray, layout: _Layout, path: Path, notes: list[str]) -> Image:
    axes = layout.axes
    if samples.ndim != len(axes):
        raise FormatError(f"{path}: TIFF page has shape {samples.shape} but axes {axes!r}")
    if layout.photometric == _PALETTE:
        if layout.colormap is None:
            raise FormatError(f"{path}: palette TIFF without a colour map")
        if axes != "YX":
            raise FormatError(f"{path}: palette TIFF with axes {axes!r}; expected 'YX'")
        colormap = np.asarray(layout.colormap)
        index = np.clip(samples.astype(np.intp), 0, colormap.shape[1] - 1)
        notes.append("palette TIFF: colours expanded to RGB")
        rgb = np.moveaxis(colormap[:, index], 0, -1)
        return _scale(rgb, bits=16, path=path)
    if layout.photometric == _SEPARATED:
        raise FormatError(f"{path}: CMYK (separated) TIFF is not supported; save it as RGB")
    if axes == "SYX":
        samples = np.moveaxis(samples, 0, -1)
    elif axes not in ("YX", "YXS"):
        raise FormatError(
            f"{path}: TIFF page with axes {axes!r} (shape {samples.shape}) is not a 2-D image"
        )
    if samples.ndim == 3:
        samples = _select_channels(samples, layout, path, notes)
    data = _scale(samples, bits=layout.bits, path=path)
    if layout.photometric == _MINISWHITE:
        notes.append("MinIsWhite TIFF: values inverted so that 0 is black")
        data = np.float32(1.0) - data
    return np.ascontiguousarray(data, dtype=np.float32)


def _select_channels(
    samples: np.ndarray, layout: _Layout, path: Path, notes: list[str]
) -> np.ndarray:
    channels = samples.shape[2]
    # ExtraSamples 1 and 2 are associated and unassociated alpha; 0 is unspecified data.
    what = "alpha" if any(e in (1, 2) for e in layout.extrasamples) else "extra"
    if layout.photometric == _RGB:
        if channels < 3:
            raise FormatError(f"{path}: RGB TIFF with only {channels} samples per pixel")
        if channels > 3:
            notes.append(f"RGB TIFF: {channels - 3} {what} sample(s) per pixel dropped")
        return samples[..., :3]
    if channels == 1:
        return samples[..., 0]
    if channels == 2:
        notes.append(f"grey TIFF: the {what} sample of each pixel dropped")
        return samples[..., 0]
    dropped = f", {channels - 3} dropped" if channels > 3 else ""
    notes.append(
        f"TIFF with {channels} samples per pixel and photometric {layout.photometric}: "
        f"the first three read as R, G, B{dropped}"
    )
    return samples[..., :3]


def _scale(samples: np.ndarray, *, bits: int, path: Path) -> Image:
    kind = samples.dtype.kind
    if kind == "b":
        return samples.astype(np.float32)
    if kind == "f":
        return samples.astype(np.float32)
    if kind == "u":
        full = float(np.iinfo(samples.dtype).max)
        if 0 < bits < samples.dtype.itemsize * 8:
            full = float(2**bits - 1)
    elif kind == "i":
        full = float(np.iinfo(samples.dtype).max)
    else:
        raise FormatError(f"{path}: TIFF sample type {samples.dtype} is not supported")
    out = samples.astype(np.float32)
    out *= np.float32(1.0 / full)
    return out


# --------------------------------------------------------------------------------------------
# Writing


def write_tiff(
    data: Image,
    path: str | os.PathLike[str],
    *,
    meta: FrameMeta | None = None,
    bit_depth: int = 16,
) -> None:
    """Write an image as an uncompressed TIFF.

    Parameters
    ----------
    data : ndarray
        float32 ``(H, W)`` or ``(H, W, 3)`` R, G, B data, full scale 1.0.
    path : path-like
        Output path (written directly; :func:`skystack.io.write` makes it atomic).
    meta : FrameMeta, optional
        Its camera is stored in the ``Model`` tag.
    bit_depth : {8, 16, 32}
        8 and 16 store unsigned integers (data clipped to [0, 1] and rounded); 32 stores float32
        as it is (no clipping).

    Raises
    ------
    FormatError
        For another bit depth or an image that is not ``(H, W)`` or ``(H, W, 3)``.
    """
    path = Path(path)
    stored = stored_samples(data, bit_depth, path=path, format_name="TIFF")
    extratags: list[tuple[int, str, int, Any, bool]] = []
    if meta is not None and meta.camera:
        extratags.append((272, "s", 0, str(meta.camera), True))
    tifffile.imwrite(
        path,
        stored,
        photometric="rgb" if stored.ndim == 3 else "minisblack",
        planarconfig="contig" if stored.ndim == 3 else None,
        metadata=None,
        software=software_name(),
        extratags=extratags,
    )


# --------------------------------------------------------------------------------------------
# TIFF/EXIF tags shared with the JPEG and raw readers

_EXIF_IFD, _SUBIFDS = 34665, 330
_WANTED_TAGS = frozenset(
    {
        254,  # NewSubfileType
        258,  # BitsPerSample
        262,  # PhotometricInterpretation
        271,  # Make
        272,  # Model
        274,  # Orientation
        305,  # Software
        306,  # DateTime
        33434,  # ExposureTime
        33437,  # FNumber
        34855,  # ISOSpeedRatings
        36867,  # DateTimeOriginal
        36881,  # OffsetTimeOriginal
        37386,  # FocalLength
        42036,  # LensModel
        50708,  # UniqueCameraModel
        _EXIF_IFD,
        _SUBIFDS,
    }
)
# TIFF field type: (struct code, size in bytes)
_FIELD_TYPES: dict[int, tuple[str, int]] = {
    1: ("B", 1),
    2: ("s", 1),
    3: ("H", 2),
    4: ("I", 4),
    5: ("I", 8),
    6: ("b", 1),
    7: ("B", 1),
    8: ("h", 2),
    9: ("i", 4),
    10: ("i", 8),
    11: ("f", 4),
    12: ("d", 8),
    13: ("I", 4),
}
_MAX_ENTRIES = 4096
_MAX_VALUE_BYTES = 1 << 16


def read_exif(source: bytes | BinaryIO) -> dict[str, Any]:
    """Read the tags skystack uses from a TIFF-structured block, by tifffile tag name.

    The block is a JPEG's EXIF segment (after ``Exif\\0\\0``) or a TIFF-based file such as a DNG,
    NEF, CR2 or ARW raw. IFD0 and its Exif IFD are merged into one dictionary (IFD0 wins); the
    first-level SubIFDs, where DNG files keep their raw image, are listed under ``"SubIFDs"`` as
    dictionaries of their own. Unreadable parts are skipped: the result holds what could be read,
    possibly nothing.

    Parameters
    ----------
    source : bytes or binary file
        The block, or a seekable file opened in binary mode positioned anywhere (offsets are
        relative to its start).

    Returns
    -------
    dict
        Values as tifffile gives them: text as ``str``, rationals as ``(numerator, denominator)``,
        single numbers as ``int``/``float``, several as tuples.
    """
    fh: BinaryIO = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(0)
        head = fh.read(8)
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            return {}
        order = "<" if head[:2] == b"II" else ">"
        (magic,) = struct.unpack(order + "H", head[2:4])
        if magic == 43:  # BigTIFF: not used for EXIF blocks or raws
            return {}
        (offset,) = struct.unpack(order + "I", head[4:8])
        reader = _IfdReader(fh, order, size)
        tags = reader.read(offset)
        exif_offset = tags.pop("ExifTag", None)
        if isinstance(exif_offset, int):
            for name, value in reader.read(exif_offset).items():
                tags.setdefault(name, value)
        sub_offsets = tags.pop("SubIFDs", None)
        if sub_offsets is not None:
            offsets = sub_offsets if isinstance(sub_offsets, tuple) else (sub_offsets,)
            tags["SubIFDs"] = [reader.read(int(o)) for o in offsets[:16]]
        return tags
    except (OSError, ValueError, struct.error):
        return {}


class _IfdReader:
    def __init__(self, fh: BinaryIO, order: str, size: int) -> None:
        self._fh, self._order, self._size = fh, order, size

    def read(self, offset: int) -> dict[str, Any]:
        tags: dict[str, Any] = {}
        fh, order = self._fh, self._order
        if not 8 <= offset <= self._size - 2:
            return tags
        try:
            fh.seek(offset)
            (count,) = struct.unpack(order + "H", fh.read(2))
            if count > _MAX_ENTRIES:
                return tags
            entries = fh.read(12 * count)
            for i in range(len(entries) // 12):
                code, ftype, n = struct.unpack(order + "HHI", entries[12 * i : 12 * i + 8])
                if code not in _WANTED_TAGS or ftype not in _FIELD_TYPES:
                    continue
                value = self._value(ftype, n, entries[12 * i + 8 : 12 * i + 12])
                if value is not None:
                    tags[tifffile.TIFF.TAGS.get(code, str(code))] = value
        except (OSError, struct.error):
            pass  # a truncated IFD: keep the tags read so far
        return tags

    def _value(self, ftype: int, n: int, field: bytes) -> Any:
        code, item = _FIELD_TYPES[ftype]
        nbytes = n * item
        if n == 0 or nbytes > _MAX_VALUE_BYTES:
            return None
        if nbytes <= 4:
            raw = field[:nbytes]
        else:
            (where,) = struct.unpack(self._order + "I", field)
            if where + nbytes > self._size:
                return None
            self._fh.seek(where)
            raw = self._fh.read(nbytes)
            if len(raw) < nbytes:
                return None
        if ftype == 2:
            return raw.split(b"\x00", 1)[0].decode("utf-8", "replace").strip()
        if ftype == 7:
            return raw
        count = 2 * n if ftype in (5, 10) else n
        values = struct.unpack(f"{self._order}{count}{code}", raw)
        if ftype in (5, 10):
            return values if n == 1 else tuple(values)
        return values[0] if n == 1 else tuple(values)


@dataclass(frozen=True)
class ExifMeta:
    """What TIFF/EXIF tags say, ready for :class:`~skystack.frame.FrameMeta`.

    Attributes
    ----------
    fields : dict
        ``FrameMeta`` keyword arguments among ``camera``, ``date_obs``, ``exposure``, ``iso``.
    cards : list of (keyword, value, comment)
        FITS-style header cards for the same tags and a few more (lens, focal length, f-number,
        software).
    notes : list of str
        Remarks for ``FrameMeta.notes`` (an orientation that was not applied).
    """

    fields: dict[str, Any]
    cards: list[HeaderCard]
    notes: list[str]


def meta_from_exif(tags: Mapping[str, Any]) -> ExifMeta:
    """Turn TIFF/EXIF tags (by tifffile name, as :func:`read_exif` returns) into metadata.

    The camera is ``Make`` and ``Model`` (the make is not repeated when the model starts with it),
    else the DNG ``UniqueCameraModel``. The time is ``DateTimeOriginal``, else ``DateTime``; it is
    timezone-aware only when ``OffsetTimeOriginal`` gives the camera's offset from UTC, otherwise
    it is the camera clock's local time (naive). Nothing is filled from a missing or unusable tag.

    Parameters
    ----------
    tags : mapping of str to value
        Tag values by name (``"Make"``, ``"ExposureTime"``, ...).

    Returns
    -------
    ExifMeta
    """
    fields: dict[str, Any] = {}
    cards: list[HeaderCard] = []
    notes: list[str] = []
    camera = _camera(tags)
    if camera:
        fields["camera"] = camera
        cards.append(("INSTRUME", camera, "camera (TIFF/EXIF tags)"))
    stamp = _exif_datetime(tags)
    if stamp is not None:
        fields["date_obs"] = stamp
        if stamp.tzinfo is not None:
            utc = stamp.astimezone(UTC).replace(tzinfo=None)
            cards.append(("DATE-OBS", utc.isoformat(), "UTC start of exposure (EXIF)"))
        else:
            cards.append(("DATE-LOC", stamp.isoformat(), "camera clock time (EXIF), zone unknown"))
    exposure = _rational(tags.get("ExposureTime"))
    if exposure is not None and exposure > 0:
        fields["exposure"] = exposure
        cards.append(("EXPTIME", exposure, "[s] exposure time (EXIF)"))
    iso = tags.get("ISOSpeedRatings")
    if isinstance(iso, tuple) and iso:
        iso = iso[0]
    if isinstance(iso, int) and not isinstance(iso, bool) and iso > 0:
        fields["iso"] = iso
        cards.append(("ISOSPEED", iso, "ISO speed (EXIF)"))
    focal = _rational(tags.get("FocalLength"))
    if focal is not None and focal > 0:
        cards.append(("FOCALLEN", focal, "[mm] lens focal length (EXIF)"))
    f_number = _rational(tags.get("FNumber"))
    if f_number is not None and f_number > 0:
        cards.append(("FOCRATIO", f_number, "lens f-number (EXIF)"))
    lens = _text(tags.get("LensModel"))
    if lens:
        cards.append(("LENS", lens, "lens (EXIF)"))
    software = _text(tags.get("Software"))
    if software:
        cards.append(("SOFTWARE", software, "software that wrote the original file"))
    orientation = tags.get("Orientation")
    if orientation is not None:
        try:
            code = int(orientation)
        except (TypeError, ValueError):
            code = 1
        if code not in (0, 1):
            notes.append(f"orientation tag {code} not applied: pixels are kept as stored")
    return ExifMeta(fields=fields, cards=cards, notes=notes)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.split(b"\x00", 1)[0].decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.strip().strip("\x00").strip()
    return value if value.strip("-_ ") else None


def _camera(tags: Mapping[str, Any]) -> str | None:
    make, model = _text(tags.get("Make")), _text(tags.get("Model"))
    if make and model:
        if model.lower().startswith(make.split()[0].lower()):
            return model
        return f"{make} {model}"
    return model or make or _text(tags.get("UniqueCameraModel"))


def _rational(value: Any) -> float | None:
    if isinstance(value, tuple) and len(value) == 2:
        numerator, denominator = value
        if not denominator:
            return None
        return float(numerator) / float(denominator)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _exif_datetime(tags: Mapping[str, Any]) -> datetime | None:
    for name in ("DateTimeOriginal", "DateTime"):
        text = _text(tags.get(name))
        if not text:
            continue
        stamp = _parse_exif_time(text)
        if stamp is None:
            continue
        offset = _text(tags.get("OffsetTimeOriginal")) if name == "DateTimeOriginal" else None
        if stamp.tzinfo is None and offset:
            zone = _parse_offset(offset)
            if zone is not None:
                stamp = stamp.replace(tzinfo=zone)
        return stamp
    return None


def _parse_exif_time(text: str) -> datetime | None:
    try:
        return datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _parse_offset(text: str) -> timezone | None:
    text = text.strip()
    if len(text) != 6 or text[0] not in "+-" or text[3] != ":":
        return None
    try:
        hours, minutes = int(text[1:3]), int(text[4:6])
    except ValueError:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)
