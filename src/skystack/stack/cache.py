"""An on-disk float32 cache of equally shaped frames, read back in bands of rows.

Large sets never live in memory at once: frames are appended one by one to a file, and the
combine step reads the same band of rows of every frame. Reads use plain file reads into a
buffer rather than a memory map, so the resident memory is the band buffer and nothing else
(pages of a mapped file would count in the peak RSS).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from skystack._typing import Cube, Image
from skystack.errors import GeometryError, OutOfDiskError

__all__ = ["FrameCache", "rows_per_band", "default_memory_budget"]


def default_memory_budget(*, share: float = 0.25, ceiling: int = 1 << 30) -> int:
    """A safe memory budget in bytes: ``share`` of the available RAM, at most ``ceiling``."""
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        available = 4 << 30
    return int(max(256 << 20, min(ceiling, available * share)))


def rows_per_band(
    n_frames: int, frame_shape: tuple[int, ...], *, memory_bytes: int, copies: int = 4
) -> int:
    """Rows per band so that ``copies`` float32 buffers of ``n_frames`` bands fit the budget."""
    row_bytes = 4 * int(np.prod(frame_shape[1:], dtype=np.int64)) * max(1, n_frames) * copies
    return int(max(2, min(frame_shape[0], memory_bytes // max(1, row_bytes))) & ~1 or 2)


class FrameCache:
    """Frames of one shape appended to a temporary float32 file, read back by bands of rows.

    Parameters
    ----------
    directory : path-like
        Folder for the cache file (created if missing).
    shape : tuple
        Shape of every frame, ``(H, W)`` or ``(H, W, 3)``.
    keep : bool
        Keep the file when the cache is closed.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, shape: tuple[int, ...], keep: bool = False
    ) -> None:
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix="frames.", suffix=".f32", dir=folder)
        self.path = Path(name)
        self._file = os.fdopen(handle, "w+b")
        self.shape = tuple(int(n) for n in shape)
        self._frame_bytes = 4 * int(np.prod(self.shape, dtype=np.int64))
        self._row_elements = int(np.prod(self.shape[1:], dtype=np.int64))
        self._count = 0
        self._keep = keep

    def __len__(self) -> int:
        return self._count

    def append(self, image: Image) -> int:
        """Append a frame; returns its index."""
        data = np.ascontiguousarray(image, dtype=np.float32)
        if data.shape != self.shape:
            raise GeometryError(f"frame of shape {data.shape} does not match {self.shape}")
        self._file.seek(self._count * self._frame_bytes)
        try:
            self._file.write(data.tobytes())
        except OSError as err:
            if err.errno == 28:
                raise OutOfDiskError(
                    f"{self.path}: no space left for the frame cache "
                    f"({self._frame_bytes / 1e6:.0f} MB per frame); free space and re-run"
                ) from err
            raise
        self._count += 1
        return self._count - 1

    def read_rows(self, start: int, stop: int) -> Cube:
        """Rows ``start:stop`` of every frame, as ``(N, stop - start, ...)`` float32."""
        stop = min(stop, self.shape[0])
        band = np.empty((self._count, stop - start, *self.shape[1:]), dtype=np.float32)
        self._file.flush()
        row_bytes = 4 * self._row_elements
        for index in range(self._count):
            self._file.seek(index * self._frame_bytes + start * row_bytes)
            self._file.readinto(memoryview(band[index]).cast("B"))
        return band

    def read_frame(self, index: int) -> Image:
        """One whole frame."""
        if not 0 <= index < self._count:
            raise IndexError(f"frame {index} not in cache of {self._count}")
        frame = np.empty(self.shape, dtype=np.float32)
        self._file.flush()
        self._file.seek(index * self._frame_bytes)
        self._file.readinto(memoryview(frame).cast("B"))
        return frame

    def close(self) -> None:
        """Close the file and delete it unless ``keep``."""
        if not self._file.closed:
            self._file.close()
        if not self._keep:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
