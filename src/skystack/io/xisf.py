"""XISF images (PixInsight's format) through the ``xisf`` package.

Reading takes the first image of a monolithic XISF file: UInt8/16/32 samples are divided by their
dtype's maximum, Float32/64 samples are kept as stored (cast to float32); grey becomes ``(H, W)``
and RGB ``(H, W, 3)`` channel-last, whether the file stores the planes separately (planar, the
default) or interleaved (normal). The FITS keywords the XISF header carries become the frame's
header cards and, through :func:`skystack.io.fits.meta_fields_from_cards`, its metadata fields.

Writing stores float32 (``bit_depth=32``), UInt16 or UInt8 samples, uncompressed, with the meta's
header cards (:func:`skystack.io.fits.cards_from_meta`) as FITS keywords plus HISTORY lines.
"""

from __future__ import annotations

import math
import os
import re
import struct
import zlib
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import lz4.block
import numpy as np
import zstandard
from xisf import XISF

from skystack._typing import Image
from skystack.errors import FormatError
from skystack.frame import Frame, FrameMeta, HeaderCard
from skystack.io._common import check_claimed_size, one_line, software_name
from skystack.io._scale import integer_to_float, stored_samples
from skystack.io.fits import cards_from_meta, meta_fields_from_cards

__all__ = ["read_xisf", "write_xisf"]

_NS = {"xisf": "http://www.pixinsight.com/xisf"}
# Keywords that describe a FITS file's data layout: meaningless in an XISF header.
_STRUCTURAL = re.compile(r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|BZERO|BSCALE|END)$")
_TEXT_CARDS = ("HISTORY", "COMMENT")
# Errors the xisf package and its codecs raise on corrupt or truncated files.
_DECODE_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    AssertionError,
    NotImplementedError,
    ElementTree.ParseError,
    zlib.error,
    lz4.block.LZ4BlockError,
    zstandard.ZstdError,
    SyntaxError,  # ast.literal_eval of a damaged property value
    RecursionError,
    LookupError,
)
_SIGNATURE = b"XISF0100"
_PREAMBLE = 16  # signature, header length (uint32), reserved
_SAMPLE_BYTES = {"UInt8": 1, "Byte": 1, "UInt16": 2, "UShort": 2, "UInt32": 4, "UInt": 4,
                 "Float32": 4, "Float": 4, "Float64": 8, "Double": 8}  # fmt: skip
# The most bytes one compressed byte decodes to (zstd: check_claimed_size's generic bound).
_CODEC_RATIO: dict[str, float | None] = {"zlib": 1100.0, "lz4": 256.0, "lz4hc": 256.0, "zstd": None}


def read_xisf(path: str | os.PathLike[str]) -> Frame:
    """Read the first image of a monolithic XISF file.

    Parameters
    ----------
    path : path-like
        A ``.xisf`` file; its data blocks may be attached, inline or embedded, and compressed with
        any codec of the XISF 1.0 specification.

    Returns
    -------
    Frame
        float32 data, ``(H, W)`` or ``(H, W, 3)``; ``meta.header`` holds the FITS keywords (values
        typed as in FITS: quoted strings, ``T``/``F``, integers, reals) and the usual fields are
        parsed from them.

    Raises
    ------
    FormatError
        When the file is not XISF, is truncated or corrupt, or holds an image skystack does not
        read (CIELab colour, more than two dimensions, a sample type other than UInt8/16/32 and
        Float32/64).
    """
    path = Path(path)
    notes: list[str] = []
    _check_blocks(path)
    try:
        document = XISF(os.fspath(path))
        images = document.get_images_metadata()
        if not images:
            raise FormatError(f"{path}: XISF file holds no image")
        if len(images) > 1:
            notes.append(f"XISF file holds {len(images)} images: read only the first")
        info = images[0]
        samples = _samples(document, info, path)
        elements = document.get_metadata_xml().findall("xisf:Image", _NS)
        cards = _cards(elements[0]) if elements else ()
    except FormatError:
        raise
    except _DECODE_ERRORS as err:
        raise FormatError(f"{path}: not a readable XISF file ({one_line(err)})") from err
    data = _select_channels(samples, info, path, notes)
    if samples.dtype.kind == "u":
        image = integer_to_float(data)
    else:
        image = data.astype(np.float32)
        bounds = str(info.get("bounds", "0:1")).strip()
        if bounds not in ("0:1", "0.0:1.0", "0:1.0"):
            notes.append(f"float samples with bounds {bounds}: kept as stored")
    fields = meta_fields_from_cards(cards, height=image.shape[0])
    if image.ndim == 3:
        fields.pop("cfa", None)
    meta = FrameMeta(
        path=path,
        format="xisf",
        bit_depth=samples.dtype.itemsize * 8,
        notes=tuple(notes),
        header=cards,
        **fields,
    )
    return Frame(np.ascontiguousarray(image, dtype=np.float32), meta)


def _check_blocks(path: Path) -> None:
    """Check the header's sizes against the file before the ``xisf`` package reads anything.

    The package reads the header length, every attached block and every decompressed size it
    is told, allocating each first: a damaged length field asked for 4 GB.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        preamble = fh.read(_PREAMBLE)
        if len(preamble) < _PREAMBLE or not preamble.startswith(_SIGNATURE):
            raise FormatError(f"{path}: not an XISF file (no XISF0100 signature and header)")
        (length,) = struct.unpack_from("<I", preamble, 8)
        if length > size - _PREAMBLE:
            raise FormatError(
                f"{path}: XISF header length {length} bytes goes beyond the end of the file "
                f"({size} bytes); the file is truncated or corrupt"
            )
        text = fh.read(length)
    try:
        root = ElementTree.fromstring(text.rstrip(b"\0"))
    except (ElementTree.ParseError, LookupError, ValueError) as err:
        # LookupError: an XML declaration naming an unknown encoding.
        raise FormatError(f"{path}: XISF header is not valid XML ({one_line(err)})") from err
    for element in root.iter():
        _check_block(element, path, size=size, header_bytes=length)


def _check_block(element: ElementTree.Element, path: Path, *, size: int, header_bytes: int) -> None:
    tag = element.tag.rpartition("}")[2]
    location = element.attrib.get("location", "")
    compression = element.attrib.get("compression", "")
    geometry = element.attrib.get("geometry", "") if tag == "Image" else ""
    if not (location or compression or geometry):
        return
    try:
        stored = header_bytes  # inline and embedded data sit in the header
        if location and not location.startswith(("attachment:", "inline:", "embedded")):
            # "path(...)" and "url(...)" name another file: never followed.
            raise FormatError(
                f"{path}: XISF {tag} data are in another file ({location!r}); skystack reads "
                "only monolithic XISF files"
            )
        if location.startswith("attachment:"):
            start, stored = (int(v) for v in location.split(":")[1:3])
            if start < 0 or stored < 0 or start + stored > size:
                raise FormatError(
                    f"{path}: XISF {tag} data block of {stored} bytes at byte {start} goes "
                    f"beyond the end of the file ({size} bytes); the file is truncated or corrupt"
                )
        available = stored
        if compression:
            codec, uncompressed = compression.split(":")[:2]
            ratio = _CODEC_RATIO.get(codec.removesuffix("+sh"))
            available = int(uncompressed)
            claim = f"XISF {tag} block claims {available} bytes uncompressed"
            check_claimed_size(path, claim, available, stored=stored, max_ratio=ratio)
        sample_bytes = _SAMPLE_BYTES.get(element.attrib.get("sampleFormat", ""))
        if geometry and sample_bytes is not None:
            dims = [int(v) for v in geometry.split(":")]
            if min(dims, default=0) <= 0:
                raise FormatError(f"{path}: XISF image has an impossible geometry {geometry}")
            claim = f"XISF header claims an image of {geometry} samples"
            nbytes = math.prod(dims) * sample_bytes
            check_claimed_size(path, claim, nbytes, stored=available, max_ratio=1.0)
    except ValueError as err:
        if isinstance(err, FormatError):
            raise
        raise FormatError(
            f"{path}: XISF {tag} element has a corrupt location, compression or geometry "
            f"({one_line(err)})"
        ) from err


def _samples(document: XISF, info: dict[str, Any], path: Path) -> np.ndarray:
    """The image's samples as ``(H, W, channels)`` in native byte order."""
    geometry = info["geometry"]
    if len(geometry) != 3:
        dims = len(geometry) - 1
        raise FormatError(f"{path}: XISF image has {dims} dimensions; expected a 2-D image")
    width, height, channels = (int(g) for g in geometry)
    if min(width, height, channels) <= 0:
        raise FormatError(f"{path}: XISF image has an impossible geometry {geometry}")
    planes = document.read_image(0, data_format="channels_first")  # (channels, H, W) of the block
    if str(info.get("pixelStorage", "Planar")).lower() == "normal":
        samples = planes.reshape(-1).reshape(height, width, channels)
    else:
        samples = np.moveaxis(planes, 0, -1)
    if str(info.get("byteOrder", "little")).lower() == "big" and samples.dtype.itemsize > 1:
        samples = samples.view(samples.dtype.newbyteorder(">"))
    return samples.astype(samples.dtype.newbyteorder("="), copy=False)


def _select_channels(
    samples: np.ndarray, info: dict[str, Any], path: Path, notes: list[str]
) -> np.ndarray:
    space = str(info.get("colorSpace", "Gray"))
    channels = samples.shape[2]
    if space.lower() == "gray":
        if channels == 1:
            return samples[..., 0]
        if channels == 2:
            notes.append("XISF grey image with an alpha channel: alpha dropped")
            return samples[..., 0]
        if channels == 3:
            notes.append("XISF image of 3 grey channels read as R, G, B")
            return samples
    elif space.lower() == "rgb":
        if channels == 3:
            return samples
        if channels == 4:
            notes.append("XISF RGB image with an alpha channel: alpha dropped")
            return samples[..., :3]
    raise FormatError(
        f"{path}: XISF image with {channels} channel(s) in colour space {space!r}; "
        "expected grey or RGB (with an optional alpha channel)"
    )


def _cards(image: ElementTree.Element) -> tuple[HeaderCard, ...]:
    """The FITSKeyword elements of an Image element as typed header cards, in file order."""
    cards: list[HeaderCard] = []
    for element in image.findall("xisf:FITSKeyword", _NS):
        name = element.attrib.get("name", "").strip()
        if not name or _STRUCTURAL.match(name.upper()):
            continue
        text = element.attrib.get("value", "")
        comment = element.attrib.get("comment", "")
        if name.upper() in _TEXT_CARDS:
            # PixInsight stores HISTORY and COMMENT text in the comment attribute.
            line = _parse_value(text) if text.strip() else comment
            cards.append((name, str(line if line is not None else ""), ""))
        else:
            cards.append((name, _parse_value(text), comment))
    return tuple(cards)


def _parse_value(text: str) -> Any:
    """A FITS value text: quoted string, T/F, integer or real; anything else stays text."""
    value = text.strip()
    if not value:
        return None
    if value.startswith("'"):
        inner = value[1:-1] if len(value) > 1 and value.endswith("'") else value[1:]
        return inner.replace("''", "'").rstrip()
    if value in ("T", "F"):
        return value == "T"
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value.replace("D", "E").replace("d", "e"))
    except ValueError:
        return value


def write_xisf(
    data: Image,
    path: str | os.PathLike[str],
    *,
    meta: FrameMeta | None = None,
    bit_depth: int = 32,
    history: Iterable[str] = (),
) -> None:
    """Write an image as a monolithic, uncompressed XISF file.

    Parameters
    ----------
    data : ndarray
        float32 ``(H, W)`` or ``(H, W, 3)`` R, G, B data, full scale 1.0.
    path : path-like
        Output path (written directly; :func:`skystack.io.write` makes it atomic).
    meta : FrameMeta, optional
        Its header cards, updated with its fields, are written as FITS keywords.
    bit_depth : {8, 16, 32}
        32 stores Float32 as it is; 16 and 8 store UInt16/UInt8 (clipped to [0, 1] and rounded).
    history : iterable of str
        HISTORY keywords to add after the meta's own.

    Raises
    ------
    FormatError
        For another bit depth or an image that is not ``(H, W)`` or ``(H, W, 3)``.
    """
    path = Path(path)
    stored = stored_samples(data, bit_depth, path=path, format_name="XISF")
    if stored.ndim == 2:
        stored = stored[:, :, np.newaxis]
    keywords: dict[str, list[dict[str, str]]] = {}
    cards = cards_from_meta(meta) if meta is not None else []
    for key, value, comment in cards:
        name = str(key).strip().upper()
        if not name or _STRUCTURAL.match(name):
            continue
        if name in _TEXT_CARDS:
            entry = {"value": "", "comment": str(value if value is not None else comment or "")}
        else:
            text = _format_value(value)
            if text is None:
                continue
            entry = {"value": text, "comment": str(comment or "")}
        keywords.setdefault(name, []).append(entry)
    for line in history:
        keywords.setdefault("HISTORY", []).append({"value": "", "comment": str(line)})
    XISF.write(
        os.fspath(path),
        np.ascontiguousarray(stored),
        creator_app=software_name(),
        image_metadata={"FITSKeywords": keywords},
        xisf_metadata={},
        codec=None,
    )


def _format_value(value: Any) -> str | None:
    """A header value as FITS value text; None for a value that cannot be written (NaN)."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "T" if value else "F"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            return None
        return repr(number).upper()
    if isinstance(value, datetime):
        value = value.isoformat()
    return "'" + str(value).replace("'", "''") + "'"
