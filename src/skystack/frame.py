"""The one data model: a :class:`Frame` is a float32 image plus its :class:`FrameMeta`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from skystack._typing import CFA_PATTERNS, FRAME_KINDS, CfaPattern, FrameKind, Image
from skystack.errors import GeometryError

__all__ = ["Frame", "FrameMeta", "HeaderCard"]

HeaderCard = tuple[str, Any, str]
"""One original header card: ``(keyword, value, comment)``."""


@dataclass(frozen=True)
class FrameMeta:
    """What a file says about its image; readers fill what the file knows and guess nothing.

    Attributes
    ----------
    path : Path or None
        The file the frame came from.
    format : str or None
        Short name of the file format (``"fits"``, ``"tiff"``, ``"raw"``, ``"ser"`` ...).
    kind : {"light", "dark", "flat", "bias", "dark-flat"} or None
        The frame's role, from ``IMAGETYP`` or the caller.
    exposure : float or None
        Exposure time in seconds.
    iso : int or None
        ISO speed (cameras) -- ``gain`` is used by astronomy cameras instead.
    gain : float or None
        Camera gain setting, in the camera's own units.
    temperature : float or None
        Sensor temperature in degrees Celsius.
    cfa : {"RGGB", "BGGR", "GRBG", "GBRG"} or None
        Bayer pattern of the ``(H, W)`` mosaic as stored, starting at element ``[0, 0]``;
        None for mono or already colour data.
    date_obs : datetime or None
        Start of the exposure (UTC where the file says so).
    camera, telescope, filter, target : str or None
        Free text from the file.
    black_level : float or None
        Sensor offset in the frame's units (full scale = 1.0), from raw metadata.
    white_level : float or None
        Saturation level in the frame's units.
    white_balance : tuple of 3 floats or None
        Camera white-balance multipliers for R, G, B (raw files), normalised to G = 1.
    bit_depth : int or None
        Bits per sample stored in the file.
    frame_index : int or None
        Index of the frame inside a video or multi-frame file.
    notes : tuple of str
        Things the reader had to do or assume, for the user (for example
        ``"X-Trans sensor: demosaiced by LibRaw"``).
    header : tuple of (keyword, value, comment)
        The original header cards, in file order.
    """

    path: Path | None = None
    format: str | None = None
    kind: FrameKind | None = None
    exposure: float | None = None
    iso: int | None = None
    gain: float | None = None
    temperature: float | None = None
    cfa: CfaPattern | None = None
    date_obs: datetime | None = None
    camera: str | None = None
    telescope: str | None = None
    filter: str | None = None
    target: str | None = None
    black_level: float | None = None
    white_level: float | None = None
    white_balance: tuple[float, float, float] | None = None
    bit_depth: int | None = None
    frame_index: int | None = None
    notes: tuple[str, ...] = ()
    header: tuple[HeaderCard, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if self.cfa is not None and self.cfa not in CFA_PATTERNS:
            raise ValueError(f"unknown CFA pattern {self.cfa!r}; expected one of {CFA_PATTERNS}")
        if self.kind is not None and self.kind not in FRAME_KINDS:
            raise ValueError(f"unknown frame kind {self.kind!r}; expected one of {FRAME_KINDS}")

    def replace(self, **changes: Any) -> FrameMeta:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def header_value(self, keyword: str, default: Any = None) -> Any:
        """Return the value of the first original header card named ``keyword``."""
        keyword = keyword.upper()
        for key, value, _comment in self.header:
            if key.upper() == keyword:
                return value
        return default


@dataclass(frozen=True)
class Frame:
    """A float32 linear image and what is known about it.

    ``data`` is ``(H, W)`` for mono and undebayered CFA data or ``(H, W, 3)`` for RGB colour,
    scaled so that the sensor's full scale is 1.0. Offsets are not removed on reading.
    """

    data: Image
    meta: FrameMeta = field(default_factory=FrameMeta)

    def __post_init__(self) -> None:
        data = self.data
        if not isinstance(data, np.ndarray):
            raise TypeError(f"Frame data must be a numpy array, not {type(data).__name__}")
        if data.dtype != np.float32:
            raise TypeError(f"Frame data must be float32, not {data.dtype}")
        if not (data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 3)):
            raise GeometryError(
                f"Frame data must be (H, W) or (H, W, 3), got shape {data.shape}"
                + (f" from {self.meta.path}" if self.meta.path else "")
            )

    @property
    def is_color(self) -> bool:
        """True for ``(H, W, 3)`` RGB data."""
        return self.data.ndim == 3

    @property
    def is_cfa(self) -> bool:
        """True for an undebayered Bayer mosaic."""
        return self.data.ndim == 2 and self.meta.cfa is not None

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    def with_data(self, data: Image, **meta_changes: Any) -> Frame:
        """Return a new frame with other pixels (and optionally changed metadata)."""
        meta = self.meta.replace(**meta_changes) if meta_changes else self.meta
        return Frame(np.asarray(data, dtype=np.float32), meta)
