"""Compressed videos (AVI, MP4, MOV, MKV ...) decoded through OpenCV.

Frames come back as :class:`~skystack.frame.Frame` objects: 8-bit samples divided by 255 (no
gamma decoding), colour converted from OpenCV's B, G, R order to R, G, B. A grey video is returned
as ``(H, W)`` mono frames: a video counts as grey when, in its first decoded frame, the three
channels agree within :data:`GREY_TOLERANCE` levels. The tolerance is there because codecs store
colour as YUV and a grey source decodes with chroma off by one level (the lunar videos in the
sample data decode with channels up to 3 levels apart); the frame's notes say which case applied.

Frame counts: ``CAP_PROP_FRAME_COUNT`` comes from the container's index or is estimated from the
duration, and is 0 or wrong for some containers. :class:`VideoReader` trusts it only after
checking that the frame it names as the last one decodes and nothing follows; otherwise it counts
the frames by decoding the whole video once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from skystack.errors import FileAccessError, FormatError, MissingFileError
from skystack.frame import Frame, FrameMeta, HeaderCard
from skystack.io._common import ClosingReader, read_and_close
from skystack.io._scale import integer_to_float

__all__ = ["VideoReader", "read_video", "GREY_TOLERANCE"]

logger = logging.getLogger(__name__)

GREY_TOLERANCE = 3
"""Largest difference, in 8-bit levels, between the channels of a frame still taken as grey."""

_GREY_MEAN = np.full((1, 3), 1.0 / (3 * 255.0), dtype=np.float32)


def _open_capture(path: Path) -> Any:
    """Open ``path`` with the FFmpeg backend, then with any backend; None if neither decodes it."""
    for backend in (cv2.CAP_FFMPEG, cv2.CAP_ANY):
        capture = cv2.VideoCapture(str(path), backend)
        if capture.isOpened():
            return capture
        capture.release()
    return None


def _channel_spread(bgr: npt.NDArray[np.uint8]) -> int:
    """Largest difference between the channels of a B, G, R frame, in levels."""
    green = bgr[..., 1]
    return max(
        int(cv2.absdiff(bgr[..., 0], green).max()),
        int(cv2.absdiff(bgr[..., 2], green).max()),
    )


class VideoReader(ClosingReader):
    """A video file opened for lazy decoding of its frames.

    Parameters
    ----------
    path : path-like
        A video OpenCV can decode (AVI, MP4, MOV, MKV ...).
    mono : bool or None
        None (default) decides from the first frame whether the video is grey; True always returns
        ``(H, W)`` frames (the mean of the three channels); False always ``(H, W, 3)`` RGB.

    Raises
    ------
    MissingFileError, FileAccessError
        When the file does not exist or cannot be read.
    FormatError
        When OpenCV cannot decode the file or it holds no frame.

    Notes
    -----
    Random access (``reader[i]``) seeks and falls back to decoding from the start when seeking
    fails; sequential access (iteration, or increasing indices) never seeks. A reader wraps an
    OpenCV capture, which is not thread-safe: use one reader per thread.

    Examples
    --------
    >>> with VideoReader("moon.avi") as video:  # doctest: +SKIP
    ...     print(len(video))
    ...     for frame in video:
    ...         process(frame.data)
    """

    def __init__(self, path: str | os.PathLike[str], *, mono: bool | None = None) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise MissingFileError(f"{self.path}: no such file")
        if self.path.is_dir():
            raise FileAccessError(f"{self.path}: is a folder, not a video file")
        if not os.access(self.path, os.R_OK):
            raise FileAccessError(f"{self.path}: cannot be read (permission denied)")
        capture = _open_capture(self.path)
        if capture is None:
            raise FormatError(f"{self.path}: cannot be opened as a video (OpenCV cannot decode it)")
        self._capture: Any = capture
        self._next: int | None = 1  # index of the frame the capture decodes next; None: unknown
        self._count: int | None = None
        try:
            ok, first = capture.read()
            if not ok or first is None:
                raise FormatError(f"{self.path}: the video holds no frame OpenCV can decode")
            self._first = self._as_bgr(first)
            self._cards = self._header_cards()
        except BaseException:
            self.close()
            raise
        spread = _channel_spread(self._first)
        self._auto_mono = mono is None
        self._mono = spread <= GREY_TOLERANCE if mono is None else mono
        self._notes: tuple[str, ...] = ()
        if mono is None and self._mono:
            how = "identical" if spread == 0 else f"equal within {spread}/255"
            self._notes = (f"grey video (channels {how} in the first frame): read as mono",)
        elif mono:
            self._notes = ("channels averaged to mono as requested",)

    def _as_bgr(self, image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
        if image.dtype != np.uint8:
            raise FormatError(
                f"{self.path}: OpenCV decodes this video to {image.dtype} samples; "
                "only 8-bit videos are supported"
            )
        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        return image

    def _header_cards(self) -> tuple[HeaderCard, ...]:
        capture = self._capture
        code = int(capture.get(cv2.CAP_PROP_FOURCC))
        fourcc = "".join(chr((code >> (8 * k)) & 0xFF) for k in range(4)).strip("\x00 ")
        cards: list[HeaderCard] = []
        if fourcc.isprintable() and fourcc:
            cards.append(("FOURCC", fourcc, "video codec"))
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        if fps > 0:
            cards.append(("FPS", fps, "frames per second, from the container"))
        cards.append(("BACKEND", capture.getBackendName(), "OpenCV video backend"))
        return tuple(cards)

    # -- the public interface ------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of every frame as returned: ``(H, W)`` or ``(H, W, 3)``."""
        height, width = self._first.shape[:2]
        return (height, width) if self._mono else (height, width, 3)

    @property
    def mono(self) -> bool:
        """True when frames are returned as ``(H, W)`` grey images."""
        return self._mono

    @property
    def fps(self) -> float | None:
        """Frame rate the container declares, or None."""
        fps = float(self._live_capture().get(cv2.CAP_PROP_FPS))
        return fps if fps > 0 else None

    def __len__(self) -> int:
        if self._count is None:
            self._count = self._measure_count()
        return self._count

    def _measure_count(self) -> int:
        capture = self._live_capture()
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if declared > 0:
            self._next = None
            if declared == 1:
                confirmed = capture.set(cv2.CAP_PROP_POS_FRAMES, 0) and capture.grab()
            else:
                confirmed = capture.set(cv2.CAP_PROP_POS_FRAMES, declared - 1) and (
                    int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == declared - 1 and capture.grab()
                )
            if confirmed and not capture.grab():
                return declared
            logger.info(
                "%s: container declares %d frames, which does not check out; counting frames",
                self.path,
                declared,
            )
        return self._count_by_decoding()

    def _count_by_decoding(self) -> int:
        capture = self._reopen()
        count = 0
        while capture.grab():
            count += 1
        self._next = count
        return count

    def _live_capture(self) -> Any:
        if self._capture is None:
            raise ValueError(f"{self.path}: video reader is closed")
        return self._capture

    def _reopen(self) -> Any:
        self._live_capture().release()
        capture = _open_capture(self.path)
        if capture is None:
            self._capture = None
            raise FormatError(f"{self.path}: cannot be opened as a video any more")
        self._capture = capture
        self._next = 0
        return capture

    def _decode(self, index: int) -> npt.NDArray[np.uint8] | None:
        """Decode frame ``index`` (B, G, R), seeking if needed; None if it does not exist."""
        if index == 0:
            return self._first
        capture = self._live_capture()
        if self._next != index:
            self._next = None
            if capture.set(cv2.CAP_PROP_POS_FRAMES, index) and (
                int(capture.get(cv2.CAP_PROP_POS_FRAMES)) == index
            ):
                ok, image = capture.read()
                if ok and image is not None:
                    self._next = index + 1
                    return self._as_bgr(image)
            logger.debug(
                "%s: seeking to frame %d failed; decoding from the start", self.path, index
            )
            capture = self._reopen()
            for position in range(index):
                if not capture.grab():
                    self._next = position
                    return None
        ok, image = capture.read()
        if not ok or image is None:
            self._next = None
            return None
        self._next = index + 1
        return self._as_bgr(image)

    def _frame(self, bgr: npt.NDArray[np.uint8], index: int) -> Frame:
        notes = self._notes
        if self._mono:
            spread = _channel_spread(bgr)
            if spread == 0:
                data = integer_to_float(bgr[..., 1], full_scale=255.0)
            else:
                data = cv2.transform(bgr.astype(np.float32), _GREY_MEAN)
            if self._auto_mono and spread > GREY_TOLERANCE:
                notes = (*notes, f"channels of this frame differ by up to {spread}/255: averaged")
        else:
            data = integer_to_float(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), full_scale=255.0)
        meta = FrameMeta(
            path=self.path,
            format="video",
            bit_depth=8,
            frame_index=index,
            notes=notes,
            header=self._cards,
        )
        return Frame(data, meta)

    def __getitem__(self, index: int) -> Frame:
        """Return frame ``index`` (negative counts from the end)."""
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise TypeError(f"video frame index must be an integer, not {type(index).__name__}")
        i = int(index)
        if i != 0:  # frame 0 is known to exist: no need to count the frames for it
            if i < 0:
                i += len(self)
            if not 0 <= i < len(self):
                raise self._out_of_range(int(index))
        bgr = self._decode(i)
        if bgr is None:
            raise self._out_of_range(int(index))
        return self._frame(bgr, i)

    def _out_of_range(self, index: int) -> IndexError:
        return IndexError(
            f"{self.path}: frame index {index} is out of range; the video holds {len(self)} frames"
        )

    def __iter__(self) -> Iterator[Frame]:
        """Decode the frames in order, with a capture of its own (indexing is not disturbed)."""
        self._live_capture()
        capture = _open_capture(self.path)
        if capture is None:
            raise FormatError(f"{self.path}: cannot be opened as a video any more")
        try:
            index = 0
            while True:
                ok, image = capture.read()
                if not ok or image is None:
                    break
                yield self._frame(self._as_bgr(image), index)
                index += 1
        finally:
            capture.release()
        if self._count is None:
            self._count = index
        elif index < self._count:
            raise FormatError(
                f"{self.path}: decoding stopped after {index} of {self._count} frames; "
                "the video is damaged"
            )

    def close(self) -> None:
        """Release the decoder; frames already returned stay valid."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._capture is None

    def __repr__(self) -> str:
        count = "?" if self._count is None else str(self._count)
        return f"VideoReader({str(self.path)!r}, frames={count}, shape={self.shape})"


def read_video(path: str | os.PathLike[str], *, index: int = 0) -> Frame:
    """Read one frame of a video.

    Parameters
    ----------
    path : path-like
        A video file OpenCV can decode.
    index : int
        Frame number, 0-based; negative counts from the end.

    Returns
    -------
    Frame
        float32 ``(H, W, 3)`` RGB, or ``(H, W)`` for a grey video, scaled by 1/255.

    Raises
    ------
    FormatError
        When the file cannot be decoded, holds no frame, or ``index`` is out of range.
    """
    return read_and_close(VideoReader(path), index)
