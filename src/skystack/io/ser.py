"""SER videos of planetary cameras: a memory-mapped reader and a streaming writer.

SER is the raw video format written by planetary capture programs (FireCapture, SharpCap,
Genika, Siril's converter ...). A file is a 178-byte header, ``FrameCount`` uncompressed frames of
identical geometry, and an optional trailer of one 64-bit timestamp per frame.

Header layout (all integers little-endian)::

    offset  size  field
         0    14  FileID "LUCAM-RECORDER"
        14     4  LuID (int32)
        18     4  ColorID (int32, see SerColorId)
        22     4  LittleEndian (int32)
        26     4  ImageWidth (int32)
        30     4  ImageHeight (int32)
        34     4  PixelDepthPerPlane (int32, bits)
        38     4  FrameCount (int32)
        42    40  Observer
        82    40  Instrument
       122    40  Telescope
       162     8  DateTime (int64, local time, .NET ticks)
       170     8  DateTime_UTC (int64, UTC, .NET ticks)

.NET ticks count 100 ns intervals since 0001-01-01 00:00.

Byte order of 16-bit samples: the SER specification says ``LittleEndian = 1`` means
little-endian data, but FireCapture, SharpCap and Siril write little-endian data with
``LittleEndian = 0``. skystack follows the programs, not the text: 16-bit data are read as
little-endian when the field is 0 and as big-endian otherwise, and files are written with
``LittleEndian = 0`` and little-endian data.

Samples are scaled to full scale 1.0: 8-bit samples by 255, samples in 16-bit words by
``2**PixelDepthPerPlane - 1`` (4095 for a 12-bit camera). If the first frame holds values above
that (some programs store the camera's bits left-aligned in the 16-bit word while declaring the
camera's depth), the reader scales by 65535 instead and says so in ``FrameMeta.notes``.

References
----------
.. [1] Heiko Wilkens, Grischa Hahn, "SER format description version 3", 2014,
   https://free-astro.org/index.php/SER
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import mmap
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import numpy.typing as npt

from skystack._typing import CfaPattern, Image
from skystack.errors import (
    ConfigError,
    FileAccessError,
    FormatError,
    GeometryError,
    MissingFileError,
)
from skystack.frame import Frame, FrameMeta, HeaderCard
from skystack.io._common import ClosingReader, read_and_close
from skystack.io._scale import float_to_integer, integer_to_float

__all__ = ["SerColorId", "SerHeader", "SerReader", "read_ser", "write_ser", "SER_HEADER_SIZE"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

SER_HEADER_SIZE = 178
"""Size of the SER file header in bytes."""

_MAGIC = b"LUCAM-RECORDER"
_HEADER = struct.Struct("<14s7i40s40s40sqq")
_FRAME_COUNT_OFFSET = 38
_TICKS_PER_SECOND = 10_000_000
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)
_MAX_TICKS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1) * 10


class SerColorId(enum.IntEnum):
    """The ``ColorID`` field of a SER header: how the samples of a frame are laid out."""

    MONO = 0
    BAYER_RGGB = 8
    BAYER_GRBG = 9
    BAYER_GBRG = 10
    BAYER_BGGR = 11
    BAYER_CYYM = 16
    BAYER_YCMY = 17
    BAYER_YMCY = 18
    BAYER_MYYC = 19
    RGB = 100
    BGR = 101

    @property
    def cfa(self) -> CfaPattern | None:
        """The RGB Bayer pattern, or None for mono, colour and CMY mosaics."""
        return _CFA_OF_COLOR_ID.get(self)

    @property
    def planes(self) -> int:
        """Samples per pixel: 3 for RGB and BGR, else 1."""
        return 3 if self in (SerColorId.RGB, SerColorId.BGR) else 1

    @property
    def supported(self) -> bool:
        """Whether skystack reads this layout (CMY mosaics are not supported)."""
        return self not in _CMY_IDS


_CFA_OF_COLOR_ID: dict[SerColorId, CfaPattern] = {
    SerColorId.BAYER_RGGB: "RGGB",
    SerColorId.BAYER_GRBG: "GRBG",
    SerColorId.BAYER_GBRG: "GBRG",
    SerColorId.BAYER_BGGR: "BGGR",
}
_COLOR_ID_OF_CFA: dict[str, SerColorId] = {cfa: cid for cid, cfa in _CFA_OF_COLOR_ID.items()}
_CMY_IDS = frozenset(
    {SerColorId.BAYER_CYYM, SerColorId.BAYER_YCMY, SerColorId.BAYER_YMCY, SerColorId.BAYER_MYYC}
)


@dataclass(frozen=True)
class SerHeader:
    """The fields of a SER file header, as stored.

    Attributes
    ----------
    lu_id : int
        Lumenera camera id (0 for other cameras).
    color_id : SerColorId
        Sample layout: mono, Bayer pattern, RGB or BGR.
    little_endian : int
        The ``LittleEndian`` field as stored: 0 means little-endian 16-bit data (see the module
        docstring for why this contradicts the specification's text).
    width, height : int
        Frame size in pixels.
    pixel_depth : int
        Bits per sample (1-8 stored in bytes, 9-16 in 16-bit words).
    frame_count : int
        Number of frames the header promises.
    observer, instrument, telescope : str
        Free text, empty when not recorded.
    date_time : int
        Start of the capture in local time, .NET ticks (100 ns since 0001-01-01); 0 if unknown.
    date_time_utc : int
        Start of the capture in UTC, .NET ticks; 0 if unknown.
    """

    lu_id: int
    color_id: SerColorId
    little_endian: int
    width: int
    height: int
    pixel_depth: int
    frame_count: int
    observer: str = ""
    instrument: str = ""
    telescope: str = ""
    date_time: int = 0
    date_time_utc: int = 0

    @property
    def bytes_per_sample(self) -> int:
        """1 for depths up to 8 bits, 2 for 9-16 bits."""
        return 1 if self.pixel_depth <= 8 else 2

    @property
    def planes(self) -> int:
        """Samples per pixel: 3 for RGB/BGR, 1 for mono and Bayer."""
        return self.color_id.planes

    @property
    def frame_bytes(self) -> int:
        """Size of one stored frame in bytes (a Python int: never overflows)."""
        return self.width * self.height * self.planes * self.bytes_per_sample

    @property
    def dtype(self) -> np.dtype[Any]:
        """The stored sample type, with its byte order."""
        if self.bytes_per_sample == 1:
            return np.dtype(np.uint8)
        return np.dtype("<u2") if self.little_endian == 0 else np.dtype(">u2")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one frame as read: ``(H, W)`` or ``(H, W, 3)``."""
        if self.planes == 3:
            return (self.height, self.width, 3)
        return (self.height, self.width)

    @classmethod
    def from_bytes(cls, buffer: bytes, *, path: str | os.PathLike[str] = "<bytes>") -> SerHeader:
        """Parse and validate the first 178 bytes of a SER file.

        Raises
        ------
        FormatError
            When the magic, the colour id, the depth or the dimensions are invalid.
        """
        if len(buffer) < SER_HEADER_SIZE:
            raise FormatError(
                f"{path}: too short for a SER file ({len(buffer)} bytes, the header alone "
                f"needs {SER_HEADER_SIZE})"
            )
        fields = _HEADER.unpack_from(buffer)
        magic = fields[0]
        if magic != _MAGIC:
            raise FormatError(
                f"{path}: not a SER file (starts with {magic!r}, expected {_MAGIC.decode()!r})"
            )
        lu_id, color, little_endian, width, height, depth, count = fields[1:8]
        try:
            color_id = SerColorId(color)
        except ValueError as err:
            known = ", ".join(str(int(c)) for c in SerColorId)
            raise FormatError(f"{path}: unknown SER colour id {color} (known: {known})") from err
        if not color_id.supported:
            raise FormatError(
                f"{path}: SER colour id {int(color_id)} ({color_id.name.removeprefix('BAYER_')} "
                "mosaic) is unsupported; skystack reads mono, RGB Bayer, RGB and BGR SER files"
            )
        if not 1 <= depth <= 16:
            raise FormatError(
                f"{path}: SER pixel depth {depth} bits is invalid (expected 1 to 16 bits per "
                "sample)"
            )
        if width <= 0 or height <= 0:
            raise FormatError(
                f"{path}: SER frame size {width}x{height} is invalid (width and height must be "
                "positive)"
            )
        if count < 0:
            raise FormatError(f"{path}: SER frame count {count} is negative")
        return cls(
            lu_id=lu_id,
            color_id=color_id,
            little_endian=little_endian,
            width=width,
            height=height,
            pixel_depth=depth,
            frame_count=count,
            observer=_decode_text(fields[8]),
            instrument=_decode_text(fields[9]),
            telescope=_decode_text(fields[10]),
            date_time=fields[11],
            date_time_utc=fields[12],
        )

    def to_bytes(self) -> bytes:
        """Return the 178-byte header."""
        return _HEADER.pack(
            _MAGIC,
            self.lu_id,
            int(self.color_id),
            self.little_endian,
            self.width,
            self.height,
            self.pixel_depth,
            self.frame_count,
            _encode_text(self.observer),
            _encode_text(self.instrument),
            _encode_text(self.telescope),
            self.date_time,
            self.date_time_utc,
        )

    def cards(self) -> tuple[HeaderCard, ...]:
        """The header as ``(keyword, value, comment)`` cards for :class:`FrameMeta`."""
        return (
            ("FILEID", _MAGIC.decode(), "SER file id"),
            ("LUID", self.lu_id, "SER Lumenera camera id"),
            ("COLORID", int(self.color_id), "SER colour id"),
            ("LENDIAN", self.little_endian, "SER LittleEndian field (0: little-endian data)"),
            ("WIDTH", self.width, "frame width in pixels"),
            ("HEIGHT", self.height, "frame height in pixels"),
            ("DEPTH", self.pixel_depth, "bits per sample"),
            ("FRAMES", self.frame_count, "frame count in the header"),
            ("OBSERVER", self.observer, "SER observer"),
            ("INSTRUME", self.instrument, "SER instrument (camera)"),
            ("TELESCOP", self.telescope, "SER telescope"),
            ("DATETIME", self.date_time, "capture start, local time, .NET ticks"),
            ("DATEUTC", self.date_time_utc, "capture start, UTC, .NET ticks"),
        )


def _decode_text(raw: bytes) -> str:
    raw = raw.split(b"\x00", 1)[0]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text.strip()


def _encode_text(text: str) -> bytes:
    raw = text.encode("ascii", errors="replace")[:40]
    return raw.ljust(40, b"\x00")


def _ticks_to_datetime(ticks: int) -> datetime | None:
    """A .NET tick count as an aware UTC datetime; None for 0 or out-of-range values."""
    if not 0 < ticks <= _MAX_TICKS:
        return None
    return _EPOCH + timedelta(microseconds=ticks // 10)


def _datetime_to_ticks(moment: datetime) -> int:
    """An aware datetime (naive means UTC) as .NET ticks."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 10


def _local_ticks(moment: datetime) -> int:
    """The wall-clock time of ``moment`` in its own time zone (UTC if naive), as ticks."""
    return (moment.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1) * 10


def _open_for_reading(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError as err:
        raise MissingFileError(f"{path}: no such file") from err
    except IsADirectoryError as err:
        raise FileAccessError(f"{path}: is a folder, not a SER file") from err
    except PermissionError as err:
        raise FileAccessError(f"{path}: cannot be read (permission denied)") from err


class SerReader(ClosingReader):
    """A SER file opened for lazy, memory-mapped reading of its frames.

    The header is validated and the file size checked against what the header promises before
    anything is allocated. Each frame is read through its own short-lived memory map, which is
    closed before the frame is returned, so peak memory stays at a few frames whatever the size of
    the file. The reader does not seek, so one reader may be shared between threads.

    Parameters
    ----------
    path : path-like
        The ``.ser`` file.

    Raises
    ------
    MissingFileError, FileAccessError
        When the file does not exist or cannot be read.
    FormatError
        When the header is invalid or the file holds fewer frames than the header promises.

    Examples
    --------
    >>> with SerReader("jupiter.ser") as ser:  # doctest: +SKIP
    ...     print(len(ser), ser.header.width, ser.header.height)
    ...     for frame in ser:
    ...         process(frame.data)
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: BinaryIO | None = _open_for_reading(self.path)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        assert self._file is not None
        path = self.path
        head = self._file.read(SER_HEADER_SIZE)
        header = SerHeader.from_bytes(head, path=path)
        size = os.fstat(self._file.fileno()).st_size
        frame_bytes = header.frame_bytes
        available = size - SER_HEADER_SIZE
        notes: list[str] = []
        geometry = (
            f"{header.width}x{header.height}"
            + (" RGB" if header.planes == 3 else "")
            + f" {header.pixel_depth}-bit"
        )
        if frame_bytes > available and header.frame_count > 0:
            raise FormatError(
                f"{path}: SER header promises {header.frame_count} frames of {geometry} "
                f"({frame_bytes} bytes each), but the file is only {size} bytes, too small for "
                "one frame; the header is corrupt or the file truncated"
            )
        present = available // frame_bytes
        count = header.frame_count
        if count == 0 and present > 0:
            count = present
            notes.append(f"SER header frame count is 0; {count} frames counted from the file size")
            logger.warning("%s: SER header frame count is 0; read %d frames", path, count)
        elif present < count:
            raise FormatError(
                f"{path}: SER header promises {count} frames of {geometry} but the file holds "
                f"only {present} complete frames ({size} bytes); it is truncated"
            )
        self._header = header
        self._count = count
        self._size = size
        self._frame_bytes = frame_bytes
        self._ticks = self._read_trailer(notes)
        self._full_scale, self._bit_depth = self._decide_full_scale(notes)
        self._notes = tuple(notes)
        utc = _ticks_to_datetime(header.date_time_utc)
        self._header_date = utc
        cfa = header.color_id.cfa
        self._base_meta = FrameMeta(
            path=path,
            format="ser",
            cfa=cfa,
            date_obs=None,
            camera=header.instrument or None,
            telescope=header.telescope or None,
            bit_depth=header.pixel_depth,
            header=header.cards(),
        )

    def _read_trailer(self, notes: list[str]) -> npt.NDArray[np.int64] | None:
        assert self._file is not None
        count = self._count
        trailer_offset = SER_HEADER_SIZE + count * self._frame_bytes
        extra = self._size - trailer_offset
        if count == 0 or extra <= 0:
            return None
        if extra < 8 * count:
            notes.append(f"{extra} bytes after the last frame ignored (not a timestamp trailer)")
            return None
        raw = os.pread(self._file.fileno(), 8 * count, trailer_offset)
        ticks = np.frombuffer(raw, dtype="<i8").astype(np.int64)
        if not np.any(ticks):
            return None
        if np.any(ticks <= 0) or np.any(ticks > _MAX_TICKS):
            notes.append("SER timestamp trailer holds invalid values; timestamps ignored")
            return None
        return ticks

    def _decide_full_scale(self, notes: list[str]) -> tuple[float, int]:
        header = self._header
        depth = header.pixel_depth
        if header.bytes_per_sample == 1:
            if depth < 8:
                notes.append(f"SER depth {depth} bits stored in bytes: scaled by 255")
            return 255.0, depth
        if header.little_endian != 0:
            notes.append(
                f"16-bit samples read as big-endian (SER LittleEndian field is "
                f"{header.little_endian})"
            )
        if depth == 16:
            return 65535.0, 16
        full = float(2**depth - 1)
        if self._count > 0 and int(self._raw(0).max()) > full:
            notes.append(
                f"SER depth says {depth} bits but the first frame holds larger values: samples "
                "scaled as 16-bit (full scale 65535)"
            )
            return 65535.0, 16
        notes.append(f"{depth}-bit samples in 16-bit words: full scale is {int(full)}")
        return full, depth

    # -- the public interface ------------------------------------------------------------

    @property
    def header(self) -> SerHeader:
        """The parsed file header."""
        return self._header

    @property
    def timestamps(self) -> list[datetime] | None:
        """Per-frame capture times from the trailer (aware UTC datetimes), or None if absent."""
        if self._ticks is None:
            return None
        return [_EPOCH + timedelta(microseconds=int(t) // 10) for t in self._ticks]

    @property
    def full_scale(self) -> float:
        """The stored sample value that becomes 1.0."""
        return self._full_scale

    @property
    def notes(self) -> tuple[str, ...]:
        """What the reader had to decide about this file (copied into every frame's notes)."""
        return self._notes

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._file is None

    def __len__(self) -> int:
        return self._count

    def _index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"SER frame index must be an integer, not {type(index).__name__}")
        i = int(index)
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError(
                f"{self.path}: frame index {int(index)} is out of range; the file holds "
                f"{self._count} frames"
            )
        return i

    def _convert(self, i: int, convert: Callable[[npt.NDArray[Any]], _T]) -> _T:
        """Map frame ``i`` alone, apply ``convert`` to the stored samples, unmap, return.

        ``convert`` gets a read-only view ``(H, W)`` or ``(H, W, 3)`` (RGB order, stored byte
        order) and must return a copy: the map is closed, and its pages leave the process's
        resident set, before this returns.
        """
        if self._file is None:
            raise ValueError(f"{self.path}: SER reader is closed")
        header = self._header
        offset = SER_HEADER_SIZE + i * self._frame_bytes
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        stored = header.dtype
        with mmap.mmap(
            self._file.fileno(),
            offset - start + self._frame_bytes,
            access=mmap.ACCESS_READ,
            offset=start,
        ) as mapped:
            view = np.frombuffer(
                mapped, dtype=stored, count=self._frame_bytes // stored.itemsize,
                offset=offset - start,
            ).reshape(header.shape)  # fmt: skip
            if header.color_id == SerColorId.BGR:
                view = view[..., ::-1]
            result = convert(view)
            del view  # no buffer may outlive the map
        return result

    def _raw(self, i: int) -> npt.NDArray[np.unsignedinteger]:
        native = self._header.dtype.newbyteorder("=")
        return self._convert(i, lambda view: np.array(view, dtype=native, order="C", copy=True))

    def _float(self, i: int) -> Image:
        scale = self._full_scale
        return self._convert(
            i, lambda view: np.ascontiguousarray(integer_to_float(view, full_scale=scale))
        )

    def raw(self, index: int) -> npt.NDArray[np.unsignedinteger]:
        """Return frame ``index`` as stored: uint8 or native uint16, ``(H, W)`` or ``(H, W, 3)``.

        Colour samples are in R, G, B order (BGR files are reordered). The array is a copy that
        does not keep the file mapped.
        """
        return self._raw(self._index(index))

    def __getitem__(self, index: int) -> Frame:
        """Return frame ``index`` (negative counts from the end) as a :class:`Frame`."""
        i = self._index(index)
        return Frame(self._float(i), self._meta(i))

    def _meta(self, i: int) -> FrameMeta:
        notes = self._notes
        if self._ticks is not None:
            date = _ticks_to_datetime(int(self._ticks[i]))
        else:
            date = self._header_date
            if date is not None:
                notes = (*notes, "date_obs is the capture start from the SER header")
        return self._base_meta.replace(
            date_obs=date, frame_index=i, notes=notes, bit_depth=self._bit_depth
        )

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self._count):
            yield self[i]

    def close(self) -> None:
        """Close the file; frames already returned stay valid."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        h = self._header
        return (
            f"SerReader({str(self.path)!r}, frames={self._count}, {h.width}x{h.height}, "
            f"{h.color_id.name}, {h.pixel_depth}-bit)"
        )


def read_ser(path: str | os.PathLike[str], *, index: int = 0) -> Frame:
    """Read one frame of a SER file.

    Parameters
    ----------
    path : path-like
        The ``.ser`` file.
    index : int
        Frame number, 0-based; negative counts from the end.

    Returns
    -------
    Frame
        float32 ``(H, W)`` (mono or Bayer, with ``meta.cfa`` set) or ``(H, W, 3)`` RGB, scaled to
        full scale 1.0.

    Raises
    ------
    FormatError
        When the file is not a valid SER file or ``index`` is out of range.
    """
    return read_and_close(SerReader(path), index)


# -- writing --------------------------------------------------------------------------------


def _frames_of(data: Any, path: Path) -> Iterator[Any]:
    """Yield single images from an image, a stack or an iterable of images."""
    if isinstance(data, Frame):
        yield data
        return
    if isinstance(data, np.ndarray):
        if data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 3):
            yield data
        elif data.ndim in (3, 4):
            yield from data
        else:
            raise GeometryError(
                f"{path}: SER data must be (H, W), (H, W, 3), (N, H, W) or (N, H, W, 3), "
                f"got shape {data.shape}"
            )
        return
    yield from data


def _quantise(image: npt.NDArray[Any], bits: int, path: Path) -> npt.NDArray[np.unsignedinteger]:
    stored = np.dtype(np.uint8 if bits == 8 else np.uint16)
    if image.dtype == stored:
        return image
    if image.dtype == np.bool_:
        raise TypeError(f"{path}: SER frames must be numeric, not boolean")
    if np.issubdtype(image.dtype, np.integer):
        return float_to_integer(integer_to_float(image), bits)
    return float_to_integer(image, bits)


def write_ser(
    data: Image | npt.NDArray[Any] | Iterable[npt.NDArray[Any]],
    path: str | os.PathLike[str],
    *,
    meta: FrameMeta | None = None,
    bit_depth: int = 16,
    timestamps: Iterable[datetime] | None = None,
) -> None:
    """Write frames to a SER file, streaming them one at a time.

    Parameters
    ----------
    data : ndarray or iterable of ndarray
        One image ``(H, W)`` / ``(H, W, 3)``, a stack ``(N, H, W)`` / ``(N, H, W, 3)``, or any
        iterable (a generator, a list, a :class:`SerReader`) of images or :class:`Frame` objects.
        A 3-D array whose last axis is 3 is taken as one colour image. Float data are in
        [0, 1] (clipped, NaN becomes 0); ``uint8``/``uint16`` data matching ``bit_depth`` are
        written unchanged, other integers are scaled by their type's maximum. Frames are
        consumed one at a time, so a generator of any length is written in bounded memory.
    path : path-like
        Output file, written directly (:func:`skystack.io.write` wraps this in an atomic temporary
        file). On error the partial file is removed.
    meta : FrameMeta, optional
        Defaults to the metadata of the first frame when it is a :class:`Frame`. ``cfa`` selects the
        Bayer colour id for mono frames; ``camera`` becomes Instrument,
        ``telescope`` Telescope, an ``OBSERVER`` header card Observer; ``date_obs`` the header
        DateTime (otherwise the first timestamp).
    bit_depth : {8, 16}
        Bits per sample. 16-bit data are written little-endian with ``LittleEndian = 0``.
    timestamps : iterable of datetime, optional
        One capture time per frame, written as the trailer (naive datetimes are taken as UTC).

    Raises
    ------
    FormatError
        When ``bit_depth`` is not 8 or 16.
    GeometryError
        When there is no frame, a frame is not ``(H, W)`` or ``(H, W, 3)``, or frames differ in
        shape.
    ConfigError
        When the number of timestamps differs from the number of frames.
    """
    path = Path(path)
    if bit_depth not in (8, 16):
        raise FormatError(f"{path}: SER stores 8- or 16-bit integer samples, not {bit_depth}-bit")
    stamps = list(timestamps) if timestamps is not None else None
    try:
        with open(path, "wb") as fh:
            header = _write_frames(fh, data, path=path, meta=meta, bits=bit_depth, stamps=stamps)
            if stamps is not None:
                if len(stamps) != header.frame_count:
                    raise ConfigError(
                        f"{path}: {len(stamps)} timestamps given for {header.frame_count} frames"
                    )
                ticks = np.array([_datetime_to_ticks(t) for t in stamps], dtype="<i8")
                fh.write(ticks.tobytes())
            fh.seek(_FRAME_COUNT_OFFSET)
            fh.write(struct.pack("<i", header.frame_count))
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _write_frames(
    fh: BinaryIO,
    data: Any,
    *,
    path: Path,
    meta: FrameMeta | None,
    bits: int,
    stamps: Sequence[datetime] | None,
) -> SerHeader:
    header: SerHeader | None = None
    shape: tuple[int, ...] = ()
    count = 0
    for item in _frames_of(data, path):
        image = np.asarray(item.data if isinstance(item, Frame) else item)
        if header is None:
            if meta is None:
                meta = item.meta if isinstance(item, Frame) else FrameMeta()
            if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
                raise GeometryError(
                    f"{path}: SER frames must be (H, W) or (H, W, 3), got shape {image.shape}"
                )
            shape = image.shape
            header = _new_header(shape, meta=meta, bits=bits, stamps=stamps)
            fh.write(header.to_bytes())
        elif image.shape != shape:
            raise GeometryError(
                f"{path}: frame {count} has shape {image.shape}, but the first frame's is {shape}; "
                "all frames of a SER file share one shape"
            )
        samples = _quantise(image, bits, path)
        fh.write(np.ascontiguousarray(samples, dtype=samples.dtype.newbyteorder("<")).data)
        count += 1
    if header is None:
        raise GeometryError(f"{path}: no frames to write")
    if count > np.iinfo(np.int32).max:
        raise GeometryError(f"{path}: {count} frames is more than a SER header can count")
    return dataclasses.replace(header, frame_count=count)


def _new_header(
    shape: tuple[int, ...],
    *,
    meta: FrameMeta,
    bits: int,
    stamps: Sequence[datetime] | None,
) -> SerHeader:
    if len(shape) == 3:
        color_id = SerColorId.RGB
    elif meta.cfa is not None:
        color_id = _COLOR_ID_OF_CFA[meta.cfa]
    else:
        color_id = SerColorId.MONO
    start = meta.date_obs if meta.date_obs is not None else (stamps[0] if stamps else None)
    observer = meta.header_value("OBSERVER")
    return SerHeader(
        lu_id=0,
        color_id=color_id,
        little_endian=0,
        width=shape[1],
        height=shape[0],
        pixel_depth=bits,
        frame_count=0,
        observer=observer if isinstance(observer, str) else "",
        instrument=meta.camera or "",
        telescope=meta.telescope or "",
        date_time=_local_ticks(start) if start is not None else 0,
        date_time_utc=_datetime_to_ticks(start) if start is not None else 0,
    )
