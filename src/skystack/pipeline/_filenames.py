"""Kind and settings of a frame from the names capture programs give files and folders.

N.I.N.A. (``M31_2023-10-01_LIGHT_Ha_300.00s_0001.fits``), ASIAIR
(``Light_M31_300.0s_Bin1_Ha_gain100_20231001-220000_-10.0C_0001.fit``), Seestar
(``Light_NGC 7023_10.0s_IRCUT_20240904-203454.fit``), Ekos (``M31_Light_Ha_300_secs_...``) and
SharpCap (``Dark_300.0s_gain100_...``) put the frame kind, exposure, gain, temperature, filter,
target and time into names; folders are named ``lights/``, ``Darks 300s/``, ``FlatDarks/``...
No library parses these conventions, hence this module.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from skystack._typing import FrameKind

__all__ = ["canonical_filter", "kind_of_folders", "parse_name"]

_KIND_WORDS: dict[str, FrameKind] = {
    **dict.fromkeys(("light", "lights"), "light"),
    **dict.fromkeys(("dark", "darks"), "dark"),
    **dict.fromkeys(("flat", "flats", "flatfield", "flatfields"), "flat"),
    **dict.fromkeys(("bias", "biases", "offset", "offsets"), "bias"),
    **dict.fromkeys(("darkflat", "darkflats", "flatdark", "flatdarks"), "dark-flat"),
}  # fmt: skip
_FILTERS = {
    "l": "L", "lum": "L", "luminance": "L", "r": "R", "red": "R", "g": "G", "green": "G",
    "b": "B", "blue": "B", "ha": "Ha", "halpha": "Ha", "hb": "Hb", "hbeta": "Hb", "oiii": "OIII",
    "o3": "OIII", "sii": "SII", "s2": "SII", "ircut": "IRCUT", "lp": "LP", "uvir": "UVIR",
    "cls": "CLS", "lpro": "L-Pro", "lenhance": "L-eNhance", "lextreme": "L-eXtreme",
}  # fmt: skip
_EXPOSURE_RE = re.compile(r"(?i)^(\d+(?:\.\d+)?)(s|sec|secs|seconds|ms)$")
_SECONDS = frozenset({"s", "sec", "secs", "seconds"})
_GAIN_RE = re.compile(r"(?i)^(?:gain|iso)[=-]?(\d+(?:\.\d+)?)$")
_TEMPERATURE_RE = re.compile(r"(?i)^(-?\d+(?:\.\d+)?)c$")
_DATE_RE = re.compile(
    r"^(\d{4})-?(\d\d)-?(\d\d)(?:[T_ -]?(\d\d)[-:]?(\d\d)[-:]?(\d\d)(?:\.\d+)?)?$"
)
_OTHER_RE = re.compile(r"(?i)^(bin\d.*|offset\d+|\d+x\d+|[-+]?\d+(?:\.\d+)?)$")
_CAMERA_WORDS = frozenset(
    "img dsc dscf dscn pict image frame capture autosave stack master snapshot".split()
)


def canonical_filter(name: str) -> str | None:
    """The usual spelling of a filter name (``ha`` -> ``Ha``), or None if it is not one."""
    return _FILTERS.get(re.sub(r"[\s-]", "", name.lower()))


def kind_of_folders(path: Path, root: Path) -> FrameKind | None:
    """The kind named by the nearest folder between ``root`` and the file."""
    for folder in reversed(path.parent.relative_to(root).parts):
        words = [w for w in re.split(r"[\s_-]+", folder) if w]
        for n in (2, 1):  # "Dark Flats", "Darks", "Darks 300s", "Flats_Ha"
            kind = _KIND_WORDS.get("".join(words[:n]).lower())
            if kind and all(is_attribute(w) for w in words[n:]):
                return kind
    return None


def is_attribute(word: str) -> bool:
    """A file-name or folder token that states a setting, a date or a number (not a name)."""
    if canonical_filter(word) or word.lower() in _SECONDS:
        return True
    patterns = (_EXPOSURE_RE, _GAIN_RE, _TEMPERATURE_RE, _DATE_RE, _OTHER_RE)
    return any(p.match(word) for p in patterns)


def kind_of_words(words: list[str]) -> FrameKind | None:
    keys = [re.sub(r"[\s.-]+", "", w.lower()) for w in words]
    kinds: set[FrameKind] = set()
    i = 0
    while i < len(keys):
        if i + 1 < len(keys) and _KIND_WORDS.get(keys[i] + keys[i + 1]) == "dark-flat":
            kinds.add("dark-flat")  # "Dark_Flat_..."
            i += 2
            continue
        if keys[i] in _KIND_WORDS:
            kinds.add(_KIND_WORDS[keys[i]])
        i += 1
    return kinds.pop() if len(kinds) == 1 else None


def parse_name(stem: str) -> dict[str, Any]:
    """Kind, exposure, gain, temperature, filter, target and time from a capture program's name."""
    tokens = [t.strip() for t in stem.split("_") if t.strip()]
    words = [w for w in re.split(r"[\s_-]+", stem) if w]
    kind = kind_of_words(tokens) or kind_of_words(words)
    # A kind word alone ("bias.fits", "dark_current.fits") is not a capture program's name.
    found: dict[str, Any] = {"kind": kind if any(is_attribute(w) for w in words) else None}
    for i, token in enumerate(tokens):
        nxt = tokens[i + 1].lower() if i + 1 < len(tokens) else ""
        if m := _EXPOSURE_RE.match(token):
            scale = 0.001 if m.group(2).lower() == "ms" else 1.0
            found.setdefault("exposure", float(m.group(1)) * scale)
        elif nxt in _SECONDS and re.fullmatch(r"\d+(?:\.\d+)?", token):
            found.setdefault("exposure", float(token))  # Ekos: "300_secs"
        elif m := _GAIN_RE.match(token):
            found.setdefault("gain", float(m.group(1)))
        elif m := _TEMPERATURE_RE.match(token):
            found.setdefault("temperature", float(m.group(1)))
        elif m := _DATE_RE.match(token):
            found.setdefault("time", _name_time(m))
    if found["kind"] is not None or "exposure" in found:  # a capture program's pattern
        filters = (canonical_filter(t) for t in tokens)
        found["filter"] = next((f for f in filters if f), None)
        for token in tokens:
            parts = [re.sub(r"\.", "", w.lower()) for w in re.split(r"[\s-]+", token) if w]
            if re.search(r"[A-Za-z]", token) and not all(
                p in _KIND_WORDS or p in _CAMERA_WORDS or is_attribute(p) for p in parts
            ):
                found["target"] = token
                break
    return found


def _name_time(match: re.Match[str]) -> datetime | None:
    numbers = [int(g) for g in match.groups() if g is not None]
    try:
        return datetime(*numbers)  # type: ignore[arg-type]
    except ValueError:
        return None
