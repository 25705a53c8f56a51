"""Session discovery: find a night's lights, darks, flats, bias and dark-flats; group and match.

A file's kind comes from its header (FITS ``IMAGETYP``), else the nearest folder name on its path
(``lights/``, ``DARKS/``, ``Offsets/``, ``FlatDarks/`` ...), else tokens of its name as N.I.N.A.,
ASIAIR, Seestar, Ekos and SharpCap write them. Metadata are read from headers only where the
format allows it, then filled from the file name. Lights are grouped by target, filter, exposure,
gain and size; each group gets the calibration frames of its size that fit it (darks by exposure,
gain and temperature, flats by filter, bias by gain, dark-flats by the flats' exposure).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from skystack._typing import FrameKind
from skystack.errors import FileAccessError, MissingFileError, SkystackError
from skystack.pipeline._filenames import kind_of_folders, parse_name
from skystack.pipeline._headers import probe

__all__ = [
    "SessionFile",
    "LightGroup",
    "Session",
    "discover_session",
    "describe_session",
    "group_name",
]

_log = logging.getLogger(__name__)

FoundBy = Literal["folder", "header", "name"]
_EXPOSURE_TOLERANCE = 0.02  # relative
_TEMPERATURE_TOLERANCE_C = 5.0
_TEMPERATURE_GAP_C = 2.0  # darks further apart than this are different temperature sets
_OUTPUT_FOLDER = "skystack"
_RESERVED_NAMES = frozenset({"cache", "report.html", "recipe.toml"})  # inside the output folder
_UNKNOWN_KIND = "cannot tell whether it is a light, dark, flat or bias"


@dataclass(frozen=True)
class SessionFile:
    """One image file of a session and what is known about it (header first, then its name).

    Attributes
    ----------
    found_by : {"header", "folder", "name"}
        What decided ``kind``: FITS ``IMAGETYP``, the nearest folder name, or the file name.
    exposure, gain, temperature : float or None
        Seconds; ISO or gain setting; sensor temperature in Celsius.
    shape : tuple of int or None
        ``(H, W)`` or ``(H, W, 3)``, as :func:`skystack.io.read` returns the data.
    time : datetime or None
        Start of the exposure (header, else the file name; naive when the zone is unknown).
    """

    path: Path
    kind: FrameKind
    found_by: FoundBy
    exposure: float | None = None
    gain: float | None = None
    filter: str | None = None
    target: str | None = None
    temperature: float | None = None
    shape: tuple[int, ...] | None = None
    time: datetime | None = None


@dataclass(frozen=True)
class LightGroup:
    """Lights of one target, filter, exposure, gain and size, with their calibration frames.

    Attributes
    ----------
    name : str
        Folder-safe and unique within the session (:func:`group_name`, plus gain or size).
    lights : tuple of SessionFile
        Sorted by time, then path.
    bias, darks, flats, dark_flats : tuple of SessionFile
        The calibration frames matched to these lights (of the same shape).
    notes : tuple of str
        One line each: missing or substituted calibration frames.
    """

    name: str
    target: str | None
    filter: str | None
    exposure: float | None
    gain: float | None
    lights: tuple[SessionFile, ...]
    bias: tuple[SessionFile, ...]
    darks: tuple[SessionFile, ...]
    flats: tuple[SessionFile, ...]
    dark_flats: tuple[SessionFile, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Session:
    """A discovered session: its groups of lights, and the files found but not used, with why.

    ``unused`` holds ``(path, reason)`` pairs sorted by path: unreadable files, files of unknown
    kind and calibration frames that fit no group.
    """

    root: Path
    groups: tuple[LightGroup, ...]
    unused: tuple[tuple[Path, str], ...]


def group_name(target: str | None, filter: str | None, exposure: float | None) -> str:
    """A folder-safe group name from target, filter and exposure, e.g. ``"M42-Ha-300s"``.

    Spaces become underscores and any character outside ``[A-Za-z0-9._-]`` an underscore;
    ``"lights"`` when nothing is known.
    """
    parts = [target or "", filter or ""]
    if exposure is not None:
        parts.append(f"{_round_exposure(exposure):g}s")
    safe = (re.sub(r"[^A-Za-z0-9._-]+", "_", p.strip()).strip("._-") for p in parts)
    return "-".join(p for p in safe if p)[:120] or "lights"


def discover_session(
    root: str | os.PathLike[str], *, exclude: Iterable[str | os.PathLike[str]] = ()
) -> Session:
    """Find the frames under ``root``, group the lights and match calibration frames to them.

    Parameters
    ----------
    root : path-like
        The session folder, searched recursively (hidden files and folders, ``root/skystack/``
        and anything under ``exclude`` are skipped).
    exclude : iterable of path-like
        Files or folders to leave out (such as the output folder).

    Returns
    -------
    Session
        Groups sorted by target, filter, exposure and gain; unused files with a reason each.

    Raises
    ------
    MissingFileError
        When ``root`` does not exist or holds no light frame.
    FileAccessError
        When ``root`` is a file.
    """
    root = Path(root)
    if not root.exists():
        raise MissingFileError(f"{root}: no such session folder")
    if not root.is_dir():
        raise FileAccessError(f"{root}: is a file, not a session folder")
    skipped = {Path(p).resolve() for p in exclude} | {(root / _OUTPUT_FOLDER).resolve()}
    files: list[SessionFile] = []
    unknown: list[SessionFile] = []
    unused: list[tuple[Path, str]] = []
    for path in _image_files(root, skipped):
        found = _classify(path, root)
        if isinstance(found, str):
            _log.debug("%s: %s", path, found)
            unused.append((path, found))
        else:
            (files if found[1] else unknown).append(found[0])
    notes: tuple[str, ...] = ()
    lights = [f for f in files if f.kind == "light"]
    if not lights:
        lights = [replace(f, found_by="folder") for f in unknown if f.path.parent == root]
        if lights:
            notes = (
                f"no frame is marked as a light: the {len(lights)} image files in the "
                "session folder are taken as lights",
            )
    if not lights:
        raise MissingFileError(f"{root}: no light frames found (in lights/ or by FITS IMAGETYP)")
    taken = {f.path for f in lights}
    unused += [(f.path, _UNKNOWN_KIND) for f in unknown if f.path not in taken]
    groups = _make_groups(lights, [f for f in files if f.kind != "light"], notes)
    used = {f.path for g in groups for f in (*g.bias, *g.darks, *g.flats, *g.dark_flats)}
    shapes = {f.shape for f in lights}
    unused += [
        (f.path, _unused_reason(f, shapes))
        for f in files
        if f.kind != "light" and f.path not in used
    ]
    _log.info("%s: groups of lights: %d, files unused: %d", root, len(groups), len(unused))
    return Session(root=root, groups=tuple(groups), unused=tuple(sorted(unused)))


def describe_session(session: Session) -> list[str]:
    """Plain-text lines describing a session: per group its lights, calibration and notes, then
    the unused files.

    Returns
    -------
    list of str
        Lines such as ``"M42-Ha-300s: 20 lights (target M42, filter Ha, 300 s, gain 100)"``,
        ``"  darks: 10 x 300 s; flats: 15 x 2 s (Ha); bias: 30; dark-flats: none"``,
        ``"  note: ..."`` and ``"unused: darks/d.fits: dark of 120 s matches no lights"``.
    """
    lines: list[str] = []
    for g in session.groups:
        facts = [
            f"target {g.target}" if g.target else "",
            f"filter {g.filter}" if g.filter else "",
            f"{g.exposure:g} s" if g.exposure is not None else "",
            f"gain {g.gain:g}" if g.gain is not None else "",
        ]
        known = ", ".join(f for f in facts if f)
        count = f"{len(g.lights)} light{'s' if len(g.lights) != 1 else ''}"
        lines.append(f"{g.name}: {count}" + (f" ({known})" if known else ""))
        filters = sorted({f.filter for f in g.flats if f.filter})
        flats = _frames_text(g.flats) + (f" ({', '.join(filters)})" if filters else "")
        lines.append(
            f"  darks: {_frames_text(g.darks)}; flats: {flats}; "
            f"bias: {len(g.bias) or 'none'}; dark-flats: {_frames_text(g.dark_flats)}"
        )
        lines.extend(f"  note: {note}" for note in g.notes)
    for path, reason in session.unused:
        lines.append(f"unused: {path.relative_to(session.root)}: {reason}")
    return lines


# --------------------------------------------------------------------------------------------
# Finding and classifying files


def _image_files(root: Path, skipped: set[Path]) -> list[Path]:
    from skystack.io import READ_EXTENSIONS

    def excluded(path: Path) -> bool:
        resolved = path.resolve()
        return resolved in skipped or any(p in skipped for p in resolved.parents)

    found: list[Path] = []
    seen = {root.resolve()}  # symbolic links are followed (a dark library), loops are not
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and not excluded(here / d) and (here / d).resolve() not in seen
        )
        seen.update((here / d).resolve() for d in dirnames)
        for name in sorted(filenames):
            path = here / name
            if name.startswith(".") or ".partial" in name or excluded(path):
                continue
            if _extension(name) in READ_EXTENSIONS:
                found.append(path)
    return found


def _extension(name: str) -> str:
    parts = name.lower().split(".")
    if len(parts) > 2 and parts[-1] in ("gz", "bz2"):
        return "." + parts[-2]
    return "." + parts[-1] if len(parts) > 1 else ""


def _classify(path: Path, root: Path) -> tuple[SessionFile, bool] | str:
    """A file's kind and metadata (and whether the kind is known), or why it cannot be used.

    A file of unknown kind comes back as a light, flagged False: it is used only when the
    session has no other lights.
    """
    try:
        header_kind, values, shape = probe(path)
    except SkystackError as err:
        text = str(err).removeprefix(f"{path}: ").strip().splitlines()
        return f"unreadable: {text[0] if text else type(err).__name__}"
    stem = path.name
    if stem.lower().endswith((".gz", ".bz2")):
        stem = stem.rsplit(".", 1)[0]
    name = parse_name(stem.rsplit(".", 1)[0])
    kind: FrameKind | None = header_kind
    found_by: FoundBy = "header"
    if kind is None:
        kind, found_by = kind_of_folders(path, root), "folder"
    if kind is None:
        kind, found_by = name.pop("kind", None), "name"
    for key in ("exposure", "gain", "filter", "target", "temperature", "time"):
        if values.get(key) is None:
            values[key] = name.get(key)
    return SessionFile(path, kind or "light", found_by, shape=shape, **values), kind is not None


# --------------------------------------------------------------------------------------------
# Grouping and matching


def _round_exposure(exposure: float) -> float:
    return float(f"{exposure:.4g}")


def _fold(text: str | None) -> str | None:
    return text.strip().casefold() if text else None


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _EXPOSURE_TOLERANCE * max(abs(a), abs(b))


def _same_gain(a: float | None, b: float | None) -> bool:
    return a is None or b is None or math.isclose(a, b, rel_tol=1e-6)


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, v if v is not None else 0) for v in key)


def _time_key(file: SessionFile) -> tuple[bool, float, str]:
    t = file.time
    stamp = (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() if t else 0.0
    return (t is None, stamp, str(file.path))


def _make_groups(
    lights: list[SessionFile], calibration: list[SessionFile], notes: tuple[str, ...]
) -> list[LightGroup]:
    by_key: dict[tuple[Any, ...], list[SessionFile]] = {}
    for f in lights:
        exposure = _round_exposure(f.exposure) if f.exposure is not None else None
        gain = round(f.gain, 3) if f.gain is not None else None
        key = (_fold(f.target), _fold(f.filter), exposure, gain, f.shape)
        by_key.setdefault(key, []).append(f)
    keys = sorted(by_key, key=_sort_key)
    firsts = [by_key[k][0] for k in keys]
    names = _unique_names(
        [(group_name(f.target, f.filter, k[2]), k) for f, k in zip(firsts, keys, strict=True)]
    )
    kinds = {kind: [f for f in calibration if f.kind == kind] for kind in ("dark", "flat", "bias")}
    dark_flats = [f for f in calibration if f.kind == "dark-flat"]
    groups = []
    for name, key, first in zip(names, keys, firsts, strict=True):
        members = sorted(by_key[key], key=_time_key)
        _target, _filter, exposure, gain, shape = key
        temps = sorted(f.temperature for f in members if f.temperature is not None)
        temperature = temps[len(temps) // 2] if temps else None
        group_notes = list(notes)
        darks, scaled = _pick_darks(kinds["dark"], exposure, gain, temperature, shape, group_notes)
        flats = _pick_flats(kinds["flat"], first.filter, shape, group_notes)
        bias = [b for b in kinds["bias"] if b.shape == shape and _same_gain(gain, b.gain)]
        if scaled and not bias:
            group_notes.append("no bias frames to scale the darks by exposure")
        groups.append(
            LightGroup(
                name=name,
                target=first.target,
                filter=first.filter,
                exposure=exposure,
                gain=first.gain,
                lights=tuple(members),
                bias=tuple(bias),
                darks=tuple(darks),
                flats=tuple(flats),
                dark_flats=_pick_dark_flats(dark_flats, flats),
                notes=tuple(group_notes),
            )
        )
    return groups


def _unique_names(named: list[tuple[str, tuple[Any, ...]]]) -> list[str]:
    """Make names unique by appending the gain, then the size, then a counter."""
    names = [n for n, _ in named]
    for base in set(names):
        same = [i for i, n in enumerate(names) if n == base]
        if len(same) < 2 and base.casefold() not in _RESERVED_NAMES:
            continue
        gains = {named[i][1][3] for i in same}
        shapes = {named[i][1][4] for i in same}
        for i in same:
            gain, shape = named[i][1][3], named[i][1][4]
            parts = [base]
            if len(gains) > 1 and gain is not None:
                parts.append(f"gain{gain:g}")
            if len(shapes) > 1 and shape is not None:
                parts.append(_size(shape).replace(" ", "-"))
            names[i] = "-".join(parts)
    seen: set[str] = set()
    for i, name in enumerate(names):
        candidate, n = name, 2
        while candidate.casefold() in seen or candidate.casefold() in _RESERVED_NAMES:
            candidate, n = f"{name}-{n}", n + 1
        seen.add(candidate.casefold())
        names[i] = candidate
    return names


def _pick_darks(
    darks: list[SessionFile],
    exposure: float | None,
    gain: float | None,
    temperature: float | None,
    shape: tuple[int, ...] | None,
    notes: list[str],
) -> tuple[list[SessionFile], bool]:
    """Darks of the lights' exposure (or the nearest longer, else nearest) and closest
    temperature; also whether they need scaling by exposure."""
    pool = [d for d in darks if d.shape == shape and _same_gain(gain, d.gain)]
    lights_text = f"{exposure:g} s lights" if exposure is not None else "lights"
    if not pool:
        notes.append(f"no darks for {lights_text}: not dark-subtracted")
        return [], False
    exact = [
        d
        for d in pool
        if exposure is not None and d.exposure is not None and _close(d.exposure, exposure)
    ]
    unknown = [d for d in pool if d.exposure is None]
    known = sorted({_round_exposure(d.exposure) for d in pool if d.exposure is not None})
    if exact:
        chosen = exact
    elif known and (exposure is not None or not unknown):
        longer = [e for e in known if exposure is not None and e > exposure]
        best = min(longer) if longer else max(known)
        chosen = [d for d in pool if d.exposure is not None and _round_exposure(d.exposure) == best]
        scaling = " (scaled)" if exposure is not None else ""
        notes.append(f"darks of {best:g} s used for {lights_text}{scaling}")
    else:
        chosen = unknown
        if exposure is not None:
            notes.append(f"darks of unknown exposure used for {lights_text}")
    scaled = exposure is not None and not exact
    return _closest_temperature(chosen, temperature, notes), scaled


def _closest_temperature(
    darks: list[SessionFile], temperature: float | None, notes: list[str]
) -> list[SessionFile]:
    known = sorted((d for d in darks if d.temperature is not None), key=lambda d: d.temperature)
    if temperature is None or not known:
        return darks
    sets: list[list[SessionFile]] = [[known[0]]]
    for d in known[1:]:
        if d.temperature - sets[-1][-1].temperature > _TEMPERATURE_GAP_C:  # type: ignore[operator]
            sets.append([])
        sets[-1].append(d)

    def distance(group: list[SessionFile]) -> float:
        return abs(sum(d.temperature for d in group) / len(group) - temperature)  # type: ignore[misc]

    best = min(sets, key=distance)
    if distance(best) > _TEMPERATURE_TOLERANCE_C:
        mean = sum(d.temperature for d in best) / len(best)  # type: ignore[misc]
        notes.append(f"darks at {mean:.0f} C used for lights at {temperature:.0f} C")
    return best


def _pick_flats(
    flats: list[SessionFile], filt: str | None, shape: tuple[int, ...] | None, notes: list[str]
) -> list[SessionFile]:
    pool = [f for f in flats if f.shape == shape]
    if filt is not None and pool and not any(f.filter for f in pool):
        notes.append(f"the flats name no filter: used for {filt} lights")
        return pool
    chosen = [f for f in pool if _fold(f.filter) == _fold(filt)]
    if not chosen:
        notes.append(
            f"no flats for filter {filt}: not flat-fielded"
            if filt
            else "no flats: not flat-fielded"
        )
    return chosen


def _pick_dark_flats(
    dark_flats: list[SessionFile], flats: list[SessionFile]
) -> tuple[SessionFile, ...]:
    """Dark-flats of the flats' size and exposure (all of that size if no exposure is known)."""
    exposures = {f.exposure for f in flats if f.exposure is not None}
    shapes = {f.shape for f in flats}
    return tuple(
        d
        for d in dark_flats
        if d.shape in shapes
        and (not exposures or any(_close(d.exposure or 0.0, e) for e in exposures))
    )


def _unused_reason(file: SessionFile, light_shapes: set[tuple[int, ...] | None]) -> str:
    what = file.kind
    if file.exposure is not None and file.kind != "bias":
        what += f" of {file.exposure:g} s"
    if file.kind == "flat":
        what += f" ({file.filter or 'no filter'})"
    if file.shape not in light_shapes:
        size = _size(file.shape) if file.shape else "unknown size"
        return f"{what}, {size}: no lights of that size"
    return f"{what} matches no lights"


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}" + (" rgb" if len(shape) == 3 else "")


def _frames_text(frames: tuple[SessionFile, ...]) -> str:
    if not frames:
        return "none"
    counts: dict[float | None, int] = {}
    for f in frames:
        key = _round_exposure(f.exposure) if f.exposure is not None else None
        counts[key] = counts.get(key, 0) + 1
    return " + ".join(
        f"{n} x {e:g} s" if e is not None else f"{n} (exposure unknown)"
        for e, n in sorted(counts.items(), key=lambda kv: _sort_key(kv[:1]))
    )
