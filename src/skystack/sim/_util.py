"""Small helpers shared by the simulators: seeding, configs, truth files, geometry."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from skystack.errors import ConfigError, FormatError, MissingFileError
from skystack.sim.stars import StarField

__all__ = [
    "resolve_seed",
    "child_rng",
    "config_to_dict",
    "config_from_dict",
    "config_error",
    "check_frame_size",
    "check_positive",
    "write_truth_json",
    "read_truth_json",
    "write_stars_csv",
    "read_stars_csv",
    "rotation_about",
    "clip_line_to_box",
    "line_profile",
]

T = TypeVar("T")


def resolve_seed(seed: int | None, rng: np.random.Generator | None) -> int:
    """Return the integer entropy of a simulation from ``seed`` or ``rng`` (default seed 0)."""
    if seed is not None and rng is not None:
        raise ConfigError(f"give seed ({seed}) or rng, not both")
    if rng is not None:
        return int(rng.integers(0, 2**63 - 1))
    if seed is None:
        return 0
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, not {seed!r}")
    return int(seed)


def child_rng(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for one part of a simulation (a frame, the sensor ...)."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=tuple(key)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a frozen config dataclass (tuples become lists)."""
    return {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def _is_tuple_type(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple_type(a) for a in typing.get_args(annotation))
    return False


def config_from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from :func:`config_to_dict` output.

    Raises
    ------
    ConfigError
        When a key is not a field of ``cls``.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown {cls.__name__} fields {unknown}; expected some of {sorted(names)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _tupled(value) if _is_tuple_type(hints.get(key)) else value
    return cls(**kwargs)


def config_error(config: Any, name: str, expected: str) -> ConfigError:
    """The error for field ``name`` of a config dataclass: its value and what was expected."""
    return ConfigError(
        f"{type(config).__name__}.{name} = {getattr(config, name)!r} is invalid; "
        f"expected {expected}"
    )


def check_frame_size(config: Any) -> None:
    """Raise :func:`config_error` unless ``config.width`` and ``config.height`` are >= 16."""
    if config.width < 16 or config.height < 16:
        raise config_error(config, "width" if config.width < 16 else "height", "at least 16 pixels")


def check_positive(config: Any, names: tuple[str, ...]) -> None:
    """Raise :func:`config_error` for the first field of ``names`` that is not > 0 (or NaN)."""
    for name in names:
        if not getattr(config, name) > 0:
            raise config_error(config, name, "a positive number")


def write_truth_json(data: dict[str, Any], path: Path) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically.

    The text goes to ``.NAME.partial`` beside ``path`` first and is then renamed over it, so a
    reader sees either no file or the whole file: a truth file marks a complete output.
    """
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_truth_json(
    path: Path,
    *,
    kind: str,
    expected_format: str,
    missing_hint: str,
    show_format: bool = False,
) -> dict[str, Any]:
    """Parse the truth file ``path`` of a simulated ``kind`` ("session", "planetary" ...).

    Parameters
    ----------
    path : Path
        The ``truth.json`` file.
    kind : str
        What the truth describes, as the messages name it.
    expected_format : str
        The value its ``"format"`` entry must have.
    missing_hint : str
        Text after ``"no KIND truth"`` in the message for a missing file (what to do, or for what).
    show_format : bool
        Whether the message for a wrong format names the format found.

    Raises
    ------
    MissingFileError
        When ``path`` is not a file.
    FormatError
        When it is not JSON or not a truth of ``expected_format``.
    """
    if not path.is_file():
        raise MissingFileError(f"{path}: no {kind} truth{missing_hint}")
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FormatError(f"{path}: cannot parse the {kind} truth ({err})") from err
    if data.get("format") != expected_format:
        found = f" (format {data.get('format')!r})" if show_format else ""
        raise FormatError(f"{path}: not a skystack-sim {kind} truth{found}")
    return data


def write_stars_csv(stars: StarField, path: Path) -> None:
    """Write ``stars`` as ``id,x,y,flux_e,temperature_k,r,g,b`` rows, atomically."""
    table = np.column_stack(
        [np.arange(len(stars)), stars.x, stars.y, stars.flux, stars.temperature, stars.rgb]
    )
    tmp = path.with_name(f".{path.name}.partial")
    np.savetxt(
        tmp,
        table,
        fmt=["%d", "%.6f", "%.6f", "%.10g", "%.1f", "%.6f", "%.6f", "%.6f"],
        delimiter=",",
        header="id,x,y,flux_e,temperature_k,r,g,b",
        comments="",
    )
    os.replace(tmp, path)


def read_stars_csv(path: Path) -> StarField:
    """Read a star table written by :func:`write_stars_csv`."""
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    table = table.reshape(-1, 8)
    return StarField(
        x=table[:, 1].copy(),
        y=table[:, 2].copy(),
        flux=table[:, 3].copy(),
        temperature=table[:, 4].copy(),
        rgb=table[:, 5:8].copy(),
    )


def rotation_about(
    center: tuple[float, float], angle_deg: float, shift: tuple[float, float] = (0.0, 0.0)
) -> npt.NDArray[np.float64]:
    """3x3 matrix ``p -> R(angle) (p - center) + center + shift`` on ``(x, y, 1)`` columns.

    ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` in array coordinates (x right, y down): a
    positive angle turns clockwise on the screen.
    """
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    cx, cy = center
    return np.array(
        [
            [c, -s, cx - c * cx + s * cy + shift[0]],
            [s, c, cy - s * cx - c * cy + shift[1]],
            [0.0, 0.0, 1.0],
        ]
    )


def clip_line_to_box(
    point: tuple[float, float], angle_rad: float, width: int, height: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Endpoints of the line through ``point`` at ``angle_rad`` inside ``[0, W-1] x [0, H-1]``."""
    px, py = point
    dx, dy = math.cos(angle_rad), math.sin(angle_rad)
    t_lo, t_hi = -math.inf, math.inf
    for p, d, hi in ((px, dx, width - 1.0), (py, dy, height - 1.0)):
        if abs(d) < 1e-12:
            continue
        t0, t1 = (0.0 - p) / d, (hi - p) / d
        t_lo = max(t_lo, min(t0, t1))
        t_hi = min(t_hi, max(t0, t1))
    return (px + t_lo * dx, py + t_lo * dy), (px + t_hi * dx, py + t_hi * dy)


def line_profile(
    shape: tuple[int, int],
    start: tuple[float, float],
    end: tuple[float, float],
    *,
    fwhm: float,
) -> tuple[npt.NDArray[np.float32], int, int]:
    """Gaussian cross-section (peak 1) of a line segment, in the band of rows/columns it crosses.

    Returns ``(patch, x0, y0)``: the patch covers the bounding box of the segment widened by
    ``3 fwhm``; beyond the segment's ends the profile falls off like a round end cap.
    """
    height, width = shape
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    pad = int(math.ceil(3.0 * fwhm)) + 1
    x0 = max(0, int(math.floor(min(start[0], end[0]))) - pad)
    x1 = min(width - 1, int(math.ceil(max(start[0], end[0]))) + pad)
    y0 = max(0, int(math.floor(min(start[1], end[1]))) - pad)
    y1 = min(height - 1, int(math.ceil(max(start[1], end[1]))) + pad)
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1].astype(np.float32)
    ex, ey = end[0] - start[0], end[1] - start[1]
    length = math.hypot(ex, ey)
    if length < 1e-9:
        d2 = (xx - start[0]) ** 2 + (yy - start[1]) ** 2
    else:
        ux, uy = ex / length, ey / length
        rx = xx - np.float32(start[0])
        ry = yy - np.float32(start[1])
        along = rx * np.float32(ux) + ry * np.float32(uy)
        across = rx * np.float32(-uy) + ry * np.float32(ux)
        beyond = np.maximum(np.maximum(-along, along - np.float32(length)), np.float32(0.0))
        d2 = across * across + beyond * beyond
    patch = np.exp(d2 * np.float32(-0.5 / (sigma * sigma))).astype(np.float32)
    return patch, x0, y0
