"""Reading and writing images: one module per format, dispatched on extension and magic bytes.

``read(path) -> Frame`` and ``write(frame_or_array, path)`` are the public entry points. Each format
module offers ``read_<format>(path) -> Frame`` and, where writable,
``write_<format>(data, path, *, meta, bit_depth)``; this module checks the path, sniffs the first
bytes, picks the module, converts errors into :class:`~skystack.errors.FormatError` naming the file,
and makes every write atomic.
"""

from __future__ import annotations

import glob
import importlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from skystack.errors import FileAccessError, FormatError, MissingFileError
from skystack.frame import Frame, FrameMeta
from skystack.io._atomic import atomic_path
from skystack.io._common import one_line
from skystack.io.display import DisplayStretch, display_stretch

__all__ = [
    "read",
    "write",
    "detect_format",
    "find_images",
    "READ_EXTENSIONS",
    "WRITE_EXTENSIONS",
    "FileFormat",
]

FileFormat = Literal["fits", "tiff", "png", "jpeg", "xisf", "raw", "ser", "video", "iraf"]

_EXTENSIONS: dict[str, FileFormat] = {
    ".fits": "fits", ".fit": "fits", ".fts": "fits", ".fz": "fits",
    ".tif": "tiff", ".tiff": "tiff",
    ".png": "png",
    ".jpg": "jpeg", ".jpeg": "jpeg",
    ".xisf": "xisf",
    ".ser": "ser",
    ".imh": "iraf", ".pix": "iraf",
    ".avi": "video", ".mp4": "video", ".mov": "video", ".mkv": "video", ".m4v": "video",
}  # fmt: skip
RAW_EXTENSIONS = frozenset(
    ".cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .dng .raf .orf .rw2 .pef .srw .3fr .erf .kdc "
    ".mos .mrw .x3f .iiq .rwl".split()
)
_COMPRESSED_SUFFIXES = {".gz", ".bz2"}  # whole-file compressed FITS: .fits.gz, .fits.bz2

READ_EXTENSIONS = frozenset(_EXTENSIONS) | RAW_EXTENSIONS
WRITE_FORMATS: tuple[FileFormat, ...] = ("fits", "tiff", "png", "jpeg", "xisf", "ser")
WRITE_EXTENSIONS = frozenset(ext for ext, fmt in _EXTENSIONS.items() if fmt in WRITE_FORMATS)

# Formats for looking at: their 8-bit versions get a display stretch. Data formats (FITS, XISF,
# SER) store the samples as they are at any depth.
_PICTURE_FORMATS = frozenset({"tiff", "png", "jpeg"})
_DEFAULT_BIT_DEPTH: dict[str, int] = {"fits": 32, "tiff": 16, "png": 16, "jpeg": 8, "xisf": 32}

_MAGIC: tuple[tuple[bytes, int, FileFormat], ...] = (
    (b"SIMPLE  =", 0, "fits"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"XISF0100", 0, "xisf"),
    (b"LUCAM-RECORDER", 0, "ser"),
    (b"imhv2", 0, "iraf"),  # IRAF OIF header (.imh)
    (b"impv2", 0, "iraf"),  # IRAF OIF pixel file (.pix)
    (b"\x00i\x00m\x00h\x00d\x00r", 0, "iraf"),  # OIF version 1, refused by the reader
    (b"i\x00m\x00h\x00d\x00r\x00", 0, "iraf"),
    (b"FUJIFILMCCD-RAW", 0, "raw"),
    (b"IIRO", 0, "raw"),
    (b"IIRS", 0, "raw"),
    (b"MMOR", 0, "raw"),
    (b"AVI ", 8, "video"),
    (b"ftyp", 4, "video"),  # ISO media: MP4/MOV, and Canon CR3 (decided by extension)
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"II+\x00", 0, "tiff"),
    (b"MM\x00+", 0, "tiff"),
)


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] in _COMPRESSED_SUFFIXES:
        return suffixes[-2]
    return path.suffix.lower()


def _sniff(head: bytes) -> FileFormat | None:
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh":
        return "fits"  # the only format we read whole-file compressed
    for magic, offset, fmt in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return fmt
    return None


def _describe(head: bytes) -> str:
    if not head:
        return "it is empty (0 bytes)"
    try:
        text = head.decode("utf-8", errors="strict")
    except UnicodeDecodeError as err:
        # A multi-byte character cut at the end of the sniffed bytes is still text.
        text = head[: err.start].decode("utf-8") if err.start >= len(head) - 3 else ""
    if text and all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        return "it holds text"
    return f"it starts with bytes {head[:8].hex(' ')}"


def _check_input(path: Path) -> None:
    if not path.exists():
        raise MissingFileError(f"{path}: no such file")
    if path.is_dir():
        raise FileAccessError(f"{path}: is a folder, not an image file")
    if not os.access(path, os.R_OK):
        raise FileAccessError(f"{path}: cannot be read (permission denied)")


def detect_format(path: str | os.PathLike[str]) -> FileFormat:
    """Return the format of an existing file from its extension, checked against its first bytes.

    Raises
    ------
    MissingFileError, FileAccessError
        When the path does not exist or cannot be read.
    FormatError
        When the file is empty, its content contradicts its extension, or the format is unknown.
    """
    path = Path(path)
    _check_input(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except PermissionError as err:  # permissions changed since the check
        raise FileAccessError(f"{path}: cannot be read (permission denied)") from err
    except OSError as err:
        raise FileAccessError(f"{path}: cannot be read ({one_line(err)})") from err
    sniffed = _sniff(head)
    ext = _suffix(path)
    if ext in RAW_EXTENSIONS:
        # Raw containers are many (TIFF-like, ISO media, vendor formats): only reject what is
        # plainly not one, and let LibRaw judge the rest.
        description = _describe(head)
        if (
            not head
            or description == "it holds text"
            or sniffed not in (None, "tiff", "raw", "video")
        ):
            raise FormatError(f"{path}: not a camera raw file ({description})")
        return "raw"
    by_ext = _EXTENSIONS.get(ext)
    if not head:
        raise FormatError(f"{path}: {_describe(head)}")
    if by_ext is not None:
        if by_ext == "video" and sniffed is None:
            return "video"  # container magic varies (Matroska, old QuickTime); OpenCV decides
        if sniffed != by_ext:
            article = "an" if by_ext in ("xisf", "iraf") else "a"
            raise FormatError(f"{path}: not {article} {by_ext.upper()} file ({_describe(head)})")
        return by_ext
    if sniffed is not None:
        return sniffed
    raise FormatError(f"{path}: unknown image format ({_describe(head)})")


def _module(fmt: FileFormat) -> Any:
    name = {"png": "png_jpeg", "jpeg": "png_jpeg"}.get(fmt, fmt)
    return importlib.import_module(f"skystack.io.{name}")


def read(path: str | os.PathLike[str], *, index: int = 0) -> Frame:
    """Read an image file into a :class:`~skystack.frame.Frame`.

    Parameters
    ----------
    path : path-like
        FITS (also ``.fz``, ``.fits.gz``, ``.fits.bz2``), TIFF, PNG, JPEG, XISF, camera raw, SER or
        a video (AVI/MP4).
    index : int
        Frame index for videos and SER files.

    Returns
    -------
    Frame
        float32 data scaled to full scale 1.0, ``(H, W)`` or ``(H, W, 3)``.

    Raises
    ------
    MissingFileError, FileAccessError, FormatError
        With a message naming the file and the problem.
    """
    path = Path(path)
    fmt = detect_format(path)
    module = _module(fmt)
    reader = getattr(module, f"read_{fmt}")
    kwargs = {"index": index} if fmt in ("ser", "video") else {}
    try:
        return reader(path, **kwargs)
    except (FormatError, MissingFileError, FileAccessError):
        raise
    except MemoryError as err:
        raise FormatError(f"{path}: image too large to load ({err})") from err
    except PermissionError as err:
        # Permissions changed after the check above, or a companion file (an IRAF .pix).
        denied = f" ({err.filename})" if err.filename and str(err.filename) != str(path) else ""
        raise FileAccessError(f"{path}: cannot be read (permission denied{denied})") from err
    except (OSError, ValueError, EOFError, KeyError, IndexError, TypeError, ArithmeticError) as err:
        # Third-party readers signal corrupt data with a variety of builtin errors (a size of
        # zero in a header divides by zero, a huge one overflows).
        raise FormatError(f"{path}: cannot read {fmt.upper()} data ({one_line(err)})") from err


def _as_frame(frame_or_array: Frame | np.ndarray) -> Frame:
    if isinstance(frame_or_array, Frame):
        return frame_or_array
    array = np.asarray(frame_or_array)
    if np.issubdtype(array.dtype, np.integer):
        from skystack.io._scale import integer_to_float

        return Frame(integer_to_float(array), FrameMeta(bit_depth=array.dtype.itemsize * 8))
    return Frame(np.asarray(array, dtype=np.float32))


def write(
    frame_or_array: Frame | np.ndarray,
    path: str | os.PathLike[str],
    *,
    bit_depth: int | None = None,
    stretch: DisplayStretch = "auto",
    history: Iterable[str] = (),
    overwrite: bool = False,
) -> Path:
    """Write a frame or array atomically, in the format given by the extension.

    Parameters
    ----------
    frame_or_array : Frame or ndarray
        A frame, or an ``(H, W)`` / ``(H, W, 3)`` array (float: full scale 1.0; integer: scaled by
        its dtype's maximum).
    path : path-like
        Output file; ``.fits/.fit/.fts``, ``.tif/.tiff``, ``.png``, ``.jpg/.jpeg``, ``.xisf`` or
        ``.ser``.
    bit_depth : {8, 16, 32}, optional
        Sample size; 32 means float32. Defaults: FITS and XISF 32, TIFF and PNG 16, JPEG 8.
    stretch : {"auto", "stf", "linear"}
        Display stretch applied to 8-bit TIFF, PNG and JPEG outputs only. ``"auto"`` applies the
        automatic screen transfer function (:func:`skystack.io.display.display_stretch`) unless
        the frame was read from 8-bit display data (JPEG, 8-bit PNG/TIFF), which is written as it
        is; ``"stf"`` always stretches; ``"linear"`` never does.
    history : iterable of str
        HISTORY lines for formats with headers (FITS, XISF).
    overwrite : bool
        Replace an existing file; otherwise :class:`~skystack.errors.OutputExistsError`.

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    frame = _as_frame(frame_or_array)
    ext = _suffix(path)
    fmt = _EXTENSIONS.get(ext)
    if fmt not in WRITE_FORMATS:
        writable = ", ".join(sorted(WRITE_EXTENSIONS))
        raise FormatError(
            f"{path}: cannot write {ext or 'files without extension'}; use {writable}"
        )
    bits = bit_depth if bit_depth is not None else _DEFAULT_BIT_DEPTH.get(fmt, 16)
    if fmt == "jpeg" and bits != 8:
        raise FormatError(f"{path}: JPEG holds only 8-bit samples, not {bits}-bit")
    data = frame.data
    if bits == 8 and fmt in _PICTURE_FORMATS and _needs_display_stretch(frame, stretch):
        data = display_stretch(data)
    writer = getattr(_module(fmt), f"write_{fmt}")
    # Samples plus headers: what a full disk message quotes as the space needed.
    needed = int(np.size(data)) * (bits // 8) + 64 * 1024
    with atomic_path(path, overwrite=overwrite, needed_bytes=needed) as tmp:
        if fmt in ("fits", "xisf"):
            writer(data, tmp, meta=frame.meta, bit_depth=bits, history=tuple(history))
        else:
            writer(data, tmp, meta=frame.meta, bit_depth=bits)
    return path


def _needs_display_stretch(frame: Frame, stretch: DisplayStretch) -> bool:
    if stretch == "linear":
        return False
    if stretch == "stf":
        return True
    meta = frame.meta
    display_referred = meta.format == "jpeg" or (
        meta.bit_depth == 8 and meta.format in ("png", "tiff", "video", "ser")
    )
    return not display_referred


def find_images(
    inputs: Iterable[str | os.PathLike[str]], *, extensions: Iterable[str] | None = None
) -> list[Path]:
    """Expand files, folders and glob patterns into a sorted, de-duplicated list of image files.

    Folders are searched one level deep for files with a readable extension; hidden files and
    ``*.partial*`` temporaries are ignored.

    Raises
    ------
    MissingFileError
        When an input does not exist, a glob matches nothing, or a folder holds no image file.
    """
    allowed = frozenset(e.lower() for e in extensions) if extensions else READ_EXTENSIONS
    found: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and not p.name.startswith(".") and _suffix(p) in allowed
            )
            if not files:
                raise MissingFileError(f"{path}: folder holds no image files")
            found.extend(files)
        elif path.exists():
            found.append(path)
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text) if Path(m).is_file())
            if not matches:
                raise MissingFileError(f"{text}: pattern matches no file")
            found.extend(matches)
        else:
            raise MissingFileError(f"{path}: no such file or folder")
    unique: dict[Path, None] = dict.fromkeys(found)
    return list(unique)
