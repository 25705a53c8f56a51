"""Format conversion: any readable file to any writable one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from skystack._typing import ProgressCallback
from skystack.io import DisplayStretch, detect_format, read, write
from skystack.io._atomic import atomic_path

__all__ = ["convert_file"]


def convert_file(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    bit_depth: int | None = None,
    stretch: DisplayStretch = "auto",
    frame_index: int = 0,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Convert ``source`` to the format of ``destination``'s extension.

    A SER or video converted to ``.ser`` keeps every frame (streamed, constant memory); any
    other conversion of a video takes frame ``frame_index``. 8-bit TIFF/PNG/JPEG outputs of
    linear data get a display stretch (see :func:`skystack.io.write`).

    Returns
    -------
    Path
        The written file.
    """
    source, destination = Path(source), Path(destination)
    source_format = detect_format(source)
    if destination.suffix.lower() == ".ser" and source_format in ("ser", "video"):
        return _convert_video_to_ser(
            source, destination, source_format, bit_depth, overwrite, progress
        )
    frame = read(source, index=frame_index)
    return write(frame, destination, bit_depth=bit_depth, stretch=stretch, overwrite=overwrite)


def _convert_video_to_ser(
    source: Path,
    destination: Path,
    source_format: str,
    bit_depth: int | None,
    overwrite: bool,
    progress: ProgressCallback | None,
) -> Path:
    from skystack.io.ser import SerReader, write_ser
    from skystack.io.video import VideoReader

    reader_type = SerReader if source_format == "ser" else VideoReader
    with reader_type(source) as reader:
        total = len(reader)
        first = reader[0]

        def frames() -> Iterator[np.ndarray]:
            for index, frame in enumerate(reader):
                if progress is not None:
                    progress(index + 1, total, "frames")
                yield frame.data

        bits = bit_depth or (first.meta.bit_depth if first.meta.bit_depth == 8 else 16)
        with atomic_path(destination, overwrite=overwrite) as tmp:
            write_ser(frames(), tmp, meta=first.meta, bit_depth=bits)
    return destination
