"""Bayer colour filter arrays: which colour each pixel of a mosaic measured.

A pattern names the colours of the 2x2 cell read row by row from array element ``[0, 0]``
(``"RGGB"``: ``[0, 0]`` red, ``[0, 1]`` and ``[1, 0]`` green, ``[1, 1]`` blue), as
:data:`skystack._typing.CfaPattern` defines it. Colour indices are 0 = R, 1 = G, 2 = B.
Cropping an odd number of rows or columns changes the pattern seen at ``[0, 0]``:
:func:`shift_pattern` and :func:`crop_cfa` keep track of it.

References
----------
.. [1] B. E. Bayer, "Color imaging array", US patent 3,971,065 (1976).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from skystack._typing import CFA_PATTERNS, CfaPattern, Image
from skystack.errors import ConfigError, GeometryError

__all__ = [
    "CHANNEL_NAMES",
    "PlaneName",
    "CfaPlanes",
    "as_pattern",
    "channel_index",
    "channel_map",
    "channel_masks",
    "pattern_offsets",
    "shift_pattern",
    "crop_cfa",
    "cfa_planes",
    "mosaic",
]

CHANNEL_NAMES: tuple[str, str, str] = ("R", "G", "B")
"""Colour index -> letter."""

PlaneName = Literal["r", "g1", "g2", "b"]
"""The four sub-images of a mosaic: red, green on red rows, green on blue rows, blue."""

_INDEX = {"R": 0, "G": 1, "B": 2}


def as_pattern(pattern: object) -> CfaPattern:
    """Check a Bayer pattern and return it as one of ``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"``.

    Lower case is accepted (``"rggb"``).

    Raises
    ------
    ConfigError
        For anything else, naming the value and the accepted patterns.
    """
    if isinstance(pattern, str) and pattern.upper() in CFA_PATTERNS:
        return pattern.upper()  # type: ignore[return-value]
    expected = ", ".join(CFA_PATTERNS)
    raise ConfigError(f"unknown CFA pattern {pattern!r}; expected one of {expected}")


def channel_index(pattern: CfaPattern) -> npt.NDArray[np.int64]:
    """Colour index of each position of the 2x2 cell: ``lut[y % 2, x % 2]`` (0 R, 1 G, 2 B).

    Parameters
    ----------
    pattern : {"RGGB", "BGGR", "GRBG", "GBRG"}

    Returns
    -------
    ndarray of int, (2, 2)
    """
    p = as_pattern(pattern)
    return np.array([[_INDEX[p[0]], _INDEX[p[1]]], [_INDEX[p[2]], _INDEX[p[3]]]], dtype=np.int64)


def pattern_offsets(pattern: CfaPattern) -> dict[PlaneName, tuple[int, int]]:
    """``(row, column)`` of each colour site in the 2x2 cell at ``[0, 0]``.

    ``"g1"`` is the green on the red sites' row, ``"g2"`` the green on the blue sites' row.
    """
    lut = channel_index(pattern)
    (ry, rx), (by, bx) = (tuple(int(v) for v in np.argwhere(lut == c)[0]) for c in (0, 2))
    return {"r": (ry, rx), "g1": (ry, 1 - rx), "g2": (by, 1 - bx), "b": (by, bx)}


def _shape2(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        raise GeometryError(f"a CFA needs a 2-D shape (H, W), got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def channel_map(shape: tuple[int, ...], pattern: CfaPattern) -> npt.NDArray[np.int8]:
    """Colour index (0 R, 1 G, 2 B) of every pixel of an ``(H, W)`` mosaic.

    Parameters
    ----------
    shape : (H, W) or (H, W, ...)
        Only the first two entries are used.
    pattern : {"RGGB", "BGGR", "GRBG", "GBRG"}

    Returns
    -------
    ndarray of int8, (H, W)
    """
    height, width = _shape2(shape)
    lut = channel_index(pattern).astype(np.int8)
    return lut[np.arange(height)[:, None] & 1, np.arange(width)[None, :] & 1]


def channel_masks(shape: tuple[int, ...], pattern: CfaPattern) -> npt.NDArray[np.bool_]:
    """Boolean masks of the red, green and blue sites, ``(3, H, W)``.

    Each mask is True where the pixel measured that colour (not a "bad pixel" mask). For large
    frames prefer :func:`cfa_planes` or strided views ``[r::2, c::2]``, which need no memory.
    """
    cmap = channel_map(shape, pattern)
    return np.stack([cmap == c for c in range(3)])


def shift_pattern(pattern: CfaPattern, *, dx: int = 0, dy: int = 0) -> CfaPattern:
    """The pattern seen at ``[0, 0]`` after dropping ``dx`` columns and ``dy`` rows.

    Only the parities of ``dx`` and ``dy`` matter; negative values (padding) work too.

    Examples
    --------
    >>> shift_pattern("RGGB", dx=1, dy=0)
    'GRBG'
    >>> shift_pattern("RGGB", dx=3, dy=1)
    'BGGR'
    """
    p = as_pattern(pattern)
    sx, sy = int(dx) & 1, int(dy) & 1
    cell = [[p[0], p[1]], [p[2], p[3]]]
    shifted = "".join(cell[(i + sy) & 1][(j + sx) & 1] for i in range(2) for j in range(2))
    return shifted  # type: ignore[return-value]


def crop_cfa(
    image: Image, pattern: CfaPattern, *, x0: int, y0: int, width: int, height: int
) -> tuple[Image, CfaPattern]:
    """Crop a mosaic and return the crop with the pattern at its new ``[0, 0]``.

    Parameters
    ----------
    image : ndarray, (H, W)
        The mosaic.
    pattern : {"RGGB", "BGGR", "GRBG", "GBRG"}
        Its pattern at ``[0, 0]``.
    x0, y0 : int
        Column and row of the crop's first pixel.
    width, height : int
        Size of the crop; the box must lie inside the image.

    Returns
    -------
    cropped : ndarray, (height, width)
        A copy of the box.
    pattern : str
        The pattern at the crop's ``[0, 0]``, :func:`shift_pattern` by ``(x0, y0)``.

    Raises
    ------
    GeometryError
        If the image is not 2-D or the box is empty or reaches outside it.
    """
    p = as_pattern(pattern)
    data = np.asarray(image)
    if data.ndim != 2:
        raise GeometryError(f"crop_cfa needs a 2-D mosaic (H, W), got shape {data.shape}")
    full_h, full_w = data.shape
    if width < 1 or height < 1 or x0 < 0 or y0 < 0 or x0 + width > full_w or y0 + height > full_h:
        raise GeometryError(
            f"crop box x0={x0}, y0={y0}, width={width}, height={height} does not fit in a "
            f"{full_w}x{full_h} mosaic; expected 0 <= x0, x0 + width <= {full_w}, "
            f"0 <= y0, y0 + height <= {full_h} and a non-empty box"
        )
    cropped = data[y0 : y0 + height, x0 : x0 + width].copy()
    return cropped, shift_pattern(p, dx=x0, dy=y0)


@dataclass(frozen=True, eq=False)
class CfaPlanes:
    """The four same-colour sub-images of a mosaic, each ``image[row::2, col::2]``.

    The arrays are read-only views of the mosaic (no copy). Plane pixel ``[i, j]`` sits at
    mosaic pixel ``[2 i + row, 2 j + col]`` with ``(row, col) = offsets[name]``; planes of an
    odd-sized mosaic differ in size by one.

    Attributes
    ----------
    r, g1, g2, b : ndarray
        Red, green on red rows, green on blue rows, blue.
    pattern : str
        The mosaic's pattern.
    offsets : dict
        ``(row, col)`` of each plane's first pixel in the mosaic.
    """

    r: Image
    g1: Image
    g2: Image
    b: Image
    pattern: CfaPattern
    offsets: dict[PlaneName, tuple[int, int]]

    def __getitem__(self, name: PlaneName) -> Image:
        """The plane called ``"r"``, ``"g1"``, ``"g2"`` or ``"b"``."""
        if name not in ("r", "g1", "g2", "b"):
            raise KeyError(f"no CFA plane {name!r}; expected 'r', 'g1', 'g2' or 'b'")
        return getattr(self, name)

    def items(self) -> list[tuple[PlaneName, Image]]:
        """``[(name, plane), ...]`` in the order r, g1, g2, b."""
        return [("r", self.r), ("g1", self.g1), ("g2", self.g2), ("b", self.b)]


def cfa_planes(image: Image, pattern: CfaPattern) -> CfaPlanes:
    """Split a mosaic into its red, two green and blue sub-images (read-only views).

    Parameters
    ----------
    image : ndarray, (H, W)
    pattern : {"RGGB", "BGGR", "GRBG", "GBRG"}

    Returns
    -------
    CfaPlanes
    """
    p = as_pattern(pattern)
    data = np.asarray(image)
    if data.ndim != 2:
        raise GeometryError(f"cfa_planes needs a 2-D mosaic (H, W), got shape {data.shape}")
    offsets = pattern_offsets(p)
    views = {}
    for name, (row, col) in offsets.items():
        view = data[row::2, col::2]
        view.flags.writeable = False
        views[name] = view
    return CfaPlanes(
        r=views["r"], g1=views["g1"], g2=views["g2"], b=views["b"], pattern=p, offsets=offsets
    )


def mosaic(rgb: Image, pattern: CfaPattern) -> Image:
    """Sample an RGB image through a Bayer filter: each pixel keeps its site's colour.

    Parameters
    ----------
    rgb : ndarray, (H, W, 3)
        R, G, B image.
    pattern : {"RGGB", "BGGR", "GRBG", "GBRG"}
        Pattern at ``[0, 0]`` of the result.

    Returns
    -------
    ndarray float32, (H, W)
    """
    data = np.asarray(rgb)
    if data.ndim != 3 or data.shape[2] != 3:
        raise GeometryError(f"mosaic needs an RGB image (H, W, 3), got shape {data.shape}")
    lut = channel_index(pattern)
    out = np.empty(data.shape[:2], dtype=np.float32)
    for row in range(2):
        for col in range(2):
            out[row::2, col::2] = data[row::2, col::2, lut[row, col]]
    return out
