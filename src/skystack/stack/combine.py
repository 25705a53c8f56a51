"""The strip engine: combine N registered frames a band of rows at a time, in bounded memory.

Frames are never all in memory: for each horizontal strip the same rows of every frame are
read (through an injected ``read_rows`` callable, so this module does no file I/O itself),
normalised, masked, and combined per pixel along the frame axis. The next strip is read in a
background thread while the current one is combined (numba kernels release the GIL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from skystack._typing import Cube, Image, ProgressCallback
from skystack.stack.normalize import Normalization, apply_normalization
from skystack.stack.rejection import CombineMethod, RejectMethod, combine
from skystack.stack.satellites import (
    SatelliteTrail,
    downsample_mask,
    find_trails,
    trail_residual_mask,
)

__all__ = [
    "StackResult",
    "strip_rows",
    "stack_strips",
    "find_satellite_trails",
    "ReadRows",
    "MaskRows",
]

ReadRows = Callable[[int, int, int], Image]
"""``read_rows(frame, start, stop)``: rows ``start:stop`` of registered frame ``frame``."""
MaskRows = Callable[[int, int, int], npt.NDArray[np.bool_] | None]
"""``mask_rows(frame, start, stop)``: True where frame ``frame``'s pixels must be left out."""


@dataclass(frozen=True, eq=False)
class StackResult:
    """The combined image and its maps.

    Attributes
    ----------
    image : ndarray float32
        ``(H, W)`` or ``(H, W, 3)``; NaN where no frame has data.
    count : ndarray uint16
        Values combined per pixel (per channel for colour).
    low, high : ndarray uint16
        Values rejected as too low / too high per pixel (uint16 keeps the maps of a 24 MP
        colour stack at 144 MB each; stacks are far below 65535 frames).
    rejected_fraction : ndarray (N,)
        Share of each frame's pixels with data that were rejected or masked.
    """

    image: Image
    count: npt.NDArray[np.uint16]
    low: npt.NDArray[np.uint16]
    high: npt.NDArray[np.uint16]
    rejected_fraction: npt.NDArray[np.float64]


def strip_rows(n_frames: int, shape: tuple[int, ...], *, memory_bytes: int) -> int:
    """Rows per strip so that the strip cube, its read-ahead and the combine's work copies of
    ``n_frames`` frames of ``shape`` fit in ``memory_bytes``."""
    row_bytes = 4 * int(np.prod(shape[1:], dtype=np.int64)) * max(1, n_frames)
    # the cube, the next one being read, and about two working copies inside the kernels
    rows = memory_bytes // max(1, 4 * row_bytes)
    return int(max(1, min(shape[0], rows)))


def stack_strips(
    read_rows: ReadRows,
    n_frames: int,
    shape: tuple[int, ...],
    *,
    method: CombineMethod = "mean",
    reject: RejectMethod = "winsorized",
    low: float = 3.0,
    high: float = 3.0,
    weights: npt.ArrayLike | None = None,
    normalizations: Sequence[Normalization] | None = None,
    mask_rows: MaskRows | None = None,
    rows_per_strip: int = 256,
    progress: ProgressCallback | None = None,
) -> StackResult:
    """Combine ``n_frames`` registered frames of ``shape`` strip by strip.

    Parameters
    ----------
    read_rows : callable
        ``read_rows(frame, start, stop)`` returns that frame's rows (float32, NaN = no data).
    n_frames : int
    shape : tuple
        ``(H, W)`` or ``(H, W, C)`` of every frame.
    method, reject, low, high, weights
        Passed to :func:`skystack.stack.rejection.combine`.
    normalizations : sequence of Normalization, optional
        Per-frame gain and offset applied before combining.
    mask_rows : callable, optional
        Pixels to leave out per frame (satellite trails): set to NaN before combining.
    rows_per_strip : int
        Strip height (see :func:`strip_rows`).
    progress : callable, optional
        ``progress(done_rows, total_rows, "stack")``.

    Returns
    -------
    StackResult
    """
    if n_frames < 1:
        raise ValueError("stack_strips needs at least one frame")
    height = shape[0]
    image = np.empty(shape, dtype=np.float32)
    count = np.zeros(shape, dtype=np.uint16)
    low_map = np.zeros(shape, dtype=np.uint16)
    high_map = np.zeros(shape, dtype=np.uint16)
    rejected = np.zeros(n_frames, dtype=np.float64)
    valid = np.zeros(n_frames, dtype=np.float64)
    weight_array = None if weights is None else np.asarray(weights, dtype=np.float64)
    bounds = [(s, min(height, s + rows_per_strip)) for s in range(0, height, rows_per_strip)]

    def load(start: int, stop: int) -> Cube:
        return _load_strip(read_rows, n_frames, start, stop, normalizations, mask_rows)

    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(load, *bounds[0])
        for index, (start, stop) in enumerate(bounds):
            cube = pending.result()
            if index + 1 < len(bounds):
                pending = reader.submit(load, *bounds[index + 1])
            result = combine(
                cube, method=method, reject=reject, low=low, high=high, weights=weight_array
            )
            image[start:stop] = result.image
            count[start:stop] = result.count
            low_map[start:stop] = result.low
            high_map[start:stop] = result.high
            valid += np.isfinite(cube).reshape(n_frames, -1).sum(axis=1)
            rejected += result.rejected_per_frame
            del cube
            if progress is not None:
                progress(stop, height, "stack")
    fraction = np.divide(rejected, valid, out=np.zeros_like(rejected), where=valid > 0)
    return StackResult(
        image=image, count=count, low=low_map, high=high_map, rejected_fraction=fraction
    )


def _load_strip(
    read_rows: ReadRows,
    n_frames: int,
    start: int,
    stop: int,
    normalizations: Sequence[Normalization] | None,
    mask_rows: MaskRows | None,
) -> Cube:
    cube = np.stack([read_rows(i, start, stop) for i in range(n_frames)])
    if normalizations is not None:
        for i, norm in enumerate(normalizations):
            apply_normalization(cube[i], norm, out=cube[i])
    if mask_rows is not None:
        for i in range(n_frames):
            mask = mask_rows(i, start, stop)
            if mask is not None:
                cube[i][mask] = np.nan
    return cube


_TRAIL_MASK_SCALE = 4
"""Residual masks for trail finding are kept at 1/4 resolution (a 24 MP frame: 1.5 MB)."""
_EDGE_GUARD = 7
"""Pixels this close to missing data (footprint edges) are not trail candidates."""


def find_satellite_trails(
    read_rows: ReadRows,
    n_frames: int,
    shape: tuple[int, ...],
    *,
    noise: npt.ArrayLike,
    normalizations: Sequence[Normalization] | None = None,
    rows_per_strip: int = 256,
    progress: ProgressCallback | None = None,
) -> list[SatelliteTrail]:
    """Find satellite and plane trails in every frame, reading the frames strip by strip.

    Each frame's pixels significantly brighter than the other frames are collected into a
    low-resolution mask per frame (:func:`skystack.stack.satellites.trail_residual_mask`),
    then straight trails are searched in each mask (:func:`~skystack.stack.satellites.find_trails`).
    Residuals next to a frame's missing data (the footprint edge of a warped frame) are
    ignored.

    Parameters
    ----------
    noise : array_like (N,)
        Per-pixel noise of each frame after normalisation.

    Returns
    -------
    list of SatelliteTrail
        In frame order; ``trail.frame`` indexes the frames as ``read_rows`` does.
    """
    import cv2

    height, width = shape[0], shape[1]
    if n_frames < 3:
        return []
    scale = _TRAIL_MASK_SCALE
    rows = max(scale, rows_per_strip - rows_per_strip % scale)
    small_height = -(-height // scale)
    small_width = -(-width // scale)
    masks = np.zeros((n_frames, small_height, small_width), dtype=bool)
    kernel = np.ones((_EDGE_GUARD, _EDGE_GUARD), np.uint8)
    noise_array = np.asarray(noise, dtype=np.float64)
    for start in range(0, height, rows):
        stop = min(height, start + rows)
        cube = _load_strip(read_rows, n_frames, start, stop, normalizations, None)
        residual = trail_residual_mask(cube, noise=noise_array)
        missing = ~np.isfinite(cube)
        if missing.ndim == 4:
            missing = missing.any(axis=-1)
        for i in range(n_frames):
            if missing[i].any():
                residual[i] &= ~cv2.dilate(missing[i].astype(np.uint8), kernel).astype(bool)
            small = downsample_mask(residual[i], scale)
            masks[i, start // scale : start // scale + small.shape[0], : small.shape[1]] = small
        if progress is not None:
            progress(stop, height, "trails")
    trails: list[SatelliteTrail] = []
    for i in range(n_frames):
        if masks[i].any():
            trails.extend(find_trails(masks[i], frame=i, scale=scale, shape=(height, width)))
    return trails
