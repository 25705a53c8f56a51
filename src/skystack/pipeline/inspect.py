"""What ``skystack info`` reports about a file: format, geometry, metadata and statistics."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from skystack.detect.background import ImageStatistics, image_statistics
from skystack.frame import Frame
from skystack.io import detect_format, read

__all__ = ["FileDescription", "describe_file", "frame_count"]


@dataclass(frozen=True)
class FileDescription:
    """A read file with its statistics (per channel for colour: R, G, B)."""

    path: Path
    format: str
    size_bytes: int
    frame_count: int
    frame: Frame
    statistics: tuple[ImageStatistics, ...]


def frame_count(path: Path, file_format: str) -> int:
    """Number of frames in a file: 1 for still images, the length of a SER or video."""
    if file_format == "ser":
        from skystack.io.ser import SerReader

        with SerReader(path) as reader:
            return len(reader)
    if file_format == "video":
        from skystack.io.video import VideoReader

        with VideoReader(path) as reader:
            return len(reader)
    return 1


def describe_file(path: str | os.PathLike[str]) -> FileDescription:
    """Read ``path`` (its first frame for videos) and compute its statistics.

    Raises
    ------
    SkystackError
        Any reading error, with a message naming the file.
    """
    path = Path(path)
    file_format = detect_format(path)
    frame = read(path)
    data = frame.data
    if data.ndim == 3:
        stats = tuple(image_statistics(data[..., c]) for c in range(3))
    else:
        stats = (image_statistics(data, cfa=frame.is_cfa),)
    return FileDescription(
        path=path,
        format=file_format,
        size_bytes=path.stat().st_size,
        frame_count=frame_count(path, file_format),
        frame=frame,
        statistics=stats,
    )
