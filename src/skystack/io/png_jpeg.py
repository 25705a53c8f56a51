"""PNG (8/16-bit) and JPEG (8-bit) images through OpenCV.

Files are read into memory with numpy and decoded with ``cv2.imdecode(..., IMREAD_UNCHANGED)``
(so 16-bit PNG stays 16-bit and any path works, spaces and non-ASCII included), then OpenCV's BGR
order is turned into R, G, B. Grey stays ``(H, W)``; alpha is dropped and a palette expanded, each
with a note in ``FrameMeta.notes``. Samples are divided by 255 or 65535 with no gamma decoding.
Writers only quantise: the dispatcher applies the display stretch before an 8-bit write.

OpenCV reports an undecodable file by returning None; that becomes a
:class:`~skystack.errors.FormatError` naming the file. A JPEG is also checked for its end-of-image
marker, because older OpenCV builds decode a truncated JPEG with a grey lower part and only a
warning on the console.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from skystack._typing import Image
from skystack.errors import FormatError
from skystack.frame import Frame, FrameMeta
from skystack.io._common import check_claimed_size
from skystack.io._scale import integer_to_float, stored_samples
from skystack.io.tiff import meta_from_exif, read_exif

__all__ = ["read_png", "write_png", "read_jpeg", "write_jpeg", "JPEG_QUALITY"]

JPEG_QUALITY = 95
"""Quality of written JPEG files (OpenCV's 0-100 scale); chroma is not subsampled (4:4:4)."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GREY, _PNG_PALETTE, _PNG_GREY_ALPHA = 0, 3, 4


# --------------------------------------------------------------------------------------------
# PNG


def read_png(path: str | os.PathLike[str]) -> Frame:
    """Read a PNG file.

    Parameters
    ----------
    path : path-like
        An 8- or 16-bit PNG (grey, grey + alpha, RGB, RGBA or palette; 1/2/4-bit grey is expanded
        to 8-bit by the decoder).

    Returns
    -------
    Frame
        float32 data divided by 255 or 65535: ``(H, W)`` for grey, ``(H, W, 3)`` R, G, B otherwise.

    Raises
    ------
    FormatError
        When the file is not a PNG or its data are truncated or corrupt.
    """
    path = Path(path)
    buffer = _read_bytes(path)
    colour_type = _check_png_structure(buffer.tobytes(), path)
    pixels = _decode(buffer, path, "PNG")
    notes: list[str] = []
    if colour_type == _PNG_PALETTE:
        notes.append("palette PNG: colours expanded to RGB")
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        notes.append("PNG alpha channel dropped")
    grey = colour_type in (_PNG_GREY, _PNG_GREY_ALPHA)
    data = _to_rgb(pixels, grey=grey)
    bit_depth = 16 if pixels.dtype == np.uint16 else 8
    meta = FrameMeta(path=path, format="png", bit_depth=bit_depth, notes=tuple(notes))
    return Frame(data, meta)


def write_png(
    data: Image,
    path: str | os.PathLike[str],
    *,
    meta: FrameMeta | None = None,
    bit_depth: int = 16,
) -> None:
    """Write an image as PNG with 8- or 16-bit unsigned samples.

    Parameters
    ----------
    data : ndarray
        float32 ``(H, W)`` or ``(H, W, 3)`` R, G, B data; clipped to [0, 1] and rounded.
    path : path-like
        Output path (written directly; :func:`skystack.io.write` makes it atomic).
    meta : FrameMeta, optional
        Unused: PNG files carry no metadata here. Accepted for the common writer signature.
    bit_depth : {8, 16}
        Sample size.

    Raises
    ------
    FormatError
        For another bit depth, a shape that is not an image, or an encoder failure.
    """
    path = Path(path)
    if bit_depth not in (8, 16):
        raise FormatError(f"{path}: PNG holds 8- or 16-bit samples, not {bit_depth}-bit")
    stored = _quantise(data, bit_depth, path, "PNG")
    _encode(stored, path, ".png", [cv2.IMWRITE_PNG_COMPRESSION, 3])


# Samples per pixel of each PNG colour type.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Deflate decodes at most 258 bytes from 2 bits: 1032 to 1 (1100 leaves room for headers).
_DEFLATE_MAX_RATIO = 1100


def _check_png_structure(data: bytes, path: Path) -> int:
    """Walk the PNG chunks up to IEND, check the claimed size; return the colour type.

    Done before decoding: a chunk length beyond the end of the file made the decoder spin for
    seconds, and a header claiming a huge image made it allocate that image first.
    """
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 33:
        raise FormatError(f"{path}: not a PNG file (no PNG signature and header)")
    width, height, depth, colour_type = struct.unpack_from(">IIBB", data, 16)
    if int.from_bytes(data[8:12], "big") != 13 or colour_type not in _PNG_CHANNELS:
        raise FormatError(f"{path}: PNG header is corrupt (colour type {colour_type})")
    if depth not in (1, 2, 4, 8, 16) or width == 0 or height == 0:
        raise FormatError(
            f"{path}: PNG header is corrupt ({width}x{height} pixels of {depth} bits)"
        )
    size = len(data)
    pos = 8
    compressed = 0
    while True:
        if pos + 12 > size:
            raise FormatError(f"{path}: PNG data are truncated (no IEND chunk)")
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if pos + 12 + length > size:
            raise FormatError(
                f"{path}: PNG data are truncated or corrupt (chunk {kind!r} at byte {pos} "
                f"claims {length} bytes; the file ends {size - pos - 12} bytes later)"
            )
        if kind == b"IDAT":
            compressed += length
        elif kind == b"IEND":
            break
        pos += 12 + length
    row_bytes = 1 + (width * _PNG_CHANNELS[colour_type] * depth + 7) // 8
    check_claimed_size(
        path,
        f"PNG header claims {width}x{height} pixels",
        height * row_bytes,
        stored=compressed,
        max_ratio=_DEFLATE_MAX_RATIO,
    )
    return colour_type


# --------------------------------------------------------------------------------------------
# JPEG


def read_jpeg(path: str | os.PathLike[str]) -> Frame:
    """Read a JPEG file (8-bit grey or colour).

    Parameters
    ----------
    path : path-like
        A baseline or progressive JPEG/JFIF/EXIF file.

    Returns
    -------
    Frame
        float32 data divided by 255, ``(H, W)`` for grey JPEGs and ``(H, W, 3)`` R, G, B for
        colour. ``meta`` holds the camera, capture time, exposure and ISO from the EXIF segment when
        present. The EXIF orientation is not applied (pixels are as stored; a note says so).

    Raises
    ------
    FormatError
        When the file is not a JPEG, lacks its end-of-image marker (truncated) or cannot be
        decoded.
    """
    path = Path(path)
    buffer = _read_bytes(path)
    exif_block = _check_jpeg_structure(buffer.tobytes(), path)
    pixels = _decode(buffer, path, "JPEG")
    notes: list[str] = []
    if pixels.ndim == 3 and pixels.shape[2] not in (1, 3):
        # CMYK or other multi-channel JPEGs: let OpenCV convert them to BGR.
        pixels = _decode(buffer, path, "JPEG", flags=cv2.IMREAD_COLOR)
        notes.append("JPEG with 4 colour channels (CMYK) converted to RGB by OpenCV")
    data = _to_rgb(pixels, grey=False)
    fields: dict[str, Any] = {}
    cards: tuple[Any, ...] = ()
    if exif_block is not None:
        exif = meta_from_exif(read_exif(exif_block))
        fields, cards = exif.fields, tuple(exif.cards)
        notes.extend(exif.notes)
    meta = FrameMeta(
        path=path, format="jpeg", bit_depth=8, notes=tuple(notes), header=cards, **fields
    )
    return Frame(data, meta)


def write_jpeg(
    data: Image,
    path: str | os.PathLike[str],
    *,
    meta: FrameMeta | None = None,
    bit_depth: int = 8,
) -> None:
    """Write an image as JPEG, quality :data:`JPEG_QUALITY`, without chroma subsampling.

    Parameters
    ----------
    data : ndarray
        float32 ``(H, W)`` or ``(H, W, 3)`` R, G, B display data in [0, 1] (the dispatcher
        stretches linear data first); clipped and rounded to 8 bits.
    path : path-like
        Output path (written directly; :func:`skystack.io.write` makes it atomic).
    meta : FrameMeta, optional
        Unused; accepted for the common writer signature.
    bit_depth : {8}
        JPEG holds only 8-bit samples.

    Raises
    ------
    FormatError
        For another bit depth, a shape that is not an image, or an encoder failure.
    """
    path = Path(path)
    if bit_depth != 8:
        raise FormatError(f"{path}: JPEG holds only 8-bit samples, not {bit_depth}-bit")
    stored = _quantise(data, 8, path, "JPEG")
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    if stored.ndim == 3:
        params += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    _encode(stored, path, ".jpg", params)


# The entropy-coded data after a start-of-scan run until the next marker: 0xFF followed by a byte
# that is neither a stuffed zero, a restart marker nor another fill byte.
_NEXT_MARKER = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")


def _check_jpeg_structure(data: bytes, path: Path) -> bytes | None:
    """Walk the JPEG markers up to end-of-image; return the EXIF TIFF block if there is one."""
    if data[:3] != b"\xff\xd8\xff":
        raise FormatError(f"{path}: not a JPEG file (no start-of-image marker)")
    truncated = f"{path}: JPEG data are truncated (no end-of-image marker)"
    size = len(data)
    exif: bytes | None = None
    pos = 2
    while True:
        if pos >= size:
            raise FormatError(truncated)
        if data[pos] != 0xFF:
            raise FormatError(f"{path}: JPEG data are corrupt (no marker at byte {pos})")
        while pos < size and data[pos] == 0xFF:
            pos += 1
        if pos >= size:
            raise FormatError(truncated)
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            return exif
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        if pos + 2 > size:
            raise FormatError(truncated)
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            raise FormatError(f"{path}: JPEG data are corrupt (segment length {length})")
        end = pos + length
        if end > size:
            raise FormatError(truncated)
        if marker == 0xE1 and exif is None and data[pos + 2 : pos + 8] == b"Exif\x00\x00":
            exif = data[pos + 8 : end]
        if marker in _SOF_MARKERS:
            _check_jpeg_frame(data[pos + 2 : end], marker, size, path)
        pos = end
        if marker == 0xDA:
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                raise FormatError(truncated)
            pos = found.start()


# Start-of-frame markers (C4 is DHT, C8 is reserved, CC is DAC); C9-CF use arithmetic coding.
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7,
                          0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})  # fmt: skip
# Huffman coding spends at least one bit per 8x8 block and component: 512 pixels per byte.
_JPEG_MAX_PIXELS_PER_BYTE = 1024


def _check_jpeg_frame(segment: bytes, marker: int, size: int, path: Path) -> None:
    """Check a start-of-frame segment's size claim before the decoder allocates the image."""
    if len(segment) < 6:
        raise FormatError(f"{path}: JPEG data are corrupt (start-of-frame segment too short)")
    height, width, components = struct.unpack_from(">HHB", segment, 1)
    if width == 0 or components == 0:
        raise FormatError(
            f"{path}: JPEG header is corrupt ({width}x{height} pixels, {components} components)"
        )
    # Huffman coding bounds the pixels per byte; arithmetic coding (C9-CF) only the generic bound.
    ratio = _JPEG_MAX_PIXELS_PER_BYTE * components if marker < 0xC9 else None
    check_claimed_size(
        path,
        f"JPEG header claims {width}x{height} pixels",
        width * max(height, 1) * components,
        stored=size,
        max_ratio=ratio,
    )


# --------------------------------------------------------------------------------------------
# Shared helpers


def _read_bytes(path: Path) -> np.ndarray:
    # np.fromfile works with every path OpenCV's imread may not (non-ASCII on some platforms).
    return np.fromfile(path, dtype=np.uint8)


def _decode(
    buffer: np.ndarray, path: Path, kind: str, *, flags: int = cv2.IMREAD_UNCHANGED
) -> np.ndarray:
    if buffer.size == 0:
        raise FormatError(f"{path}: {kind} file is empty (0 bytes)")
    try:
        pixels = cv2.imdecode(buffer, flags)
    except cv2.error as err:
        message = str(err).strip().splitlines()[-1] if str(err).strip() else "cv2.error"
        raise FormatError(f"{path}: {kind} data are corrupt ({message})") from err
    if pixels is None:
        raise FormatError(
            f"{path}: {kind} data are truncated or corrupt (OpenCV cannot decode them)"
        )
    if pixels.dtype not in (np.uint8, np.uint16):
        raise FormatError(f"{path}: {kind} samples of type {pixels.dtype} are not supported")
    return pixels


def _to_rgb(pixels: np.ndarray, *, grey: bool) -> Image:
    """OpenCV's grey/BGR/BGRA samples to float32 grey ``(H, W)`` or R, G, B ``(H, W, 3)``."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3:
        if grey:
            pixels = np.ascontiguousarray(pixels[..., 0])
        else:
            code = cv2.COLOR_BGRA2RGB if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
            pixels = cv2.cvtColor(pixels, code)
    return integer_to_float(pixels)


def _quantise(data: Image, bits: int, path: Path, kind: str) -> np.ndarray:
    stored = stored_samples(data, bits, path=path, format_name=kind)
    if stored.ndim == 3:
        stored = np.ascontiguousarray(stored[..., ::-1])  # R, G, B -> OpenCV's B, G, R
    return stored


def _encode(stored: np.ndarray, path: Path, extension: str, params: list[int]) -> None:
    try:
        ok, encoded = cv2.imencode(extension, stored, params)
    except cv2.error as err:
        raise FormatError(f"{path}: OpenCV cannot encode the image ({err})") from err
    if not ok:
        raise FormatError(f"{path}: OpenCV cannot encode the image as {extension}")
    encoded.tofile(path)
