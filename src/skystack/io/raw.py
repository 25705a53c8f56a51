"""Camera raw files through rawpy (LibRaw), kept as the undemosaiced Bayer mosaic.

A Bayer raw becomes an ``(H, W)`` float32 mosaic of LibRaw's visible area (``raw_image_visible``)
divided by the white level, so saturation is 1.0. The black level is *not* subtracted: it is stored
in ``FrameMeta.black_level`` in the same units for calibration to use. The Bayer pattern is the one
at element ``[0, 0]`` of the returned array. Sensors that are not a 2x2 R/G/B Bayer mosaic (Fujifilm
X-Trans, CMYG, Foveon, linear DNG) are demosaiced by LibRaw instead, linearly, without white balance
and in the camera's raw colour space, and returned as ``(H, W, 3)`` with a note. Nothing is rotated:
the camera's orientation flag is reported in the notes, not applied.

LibRaw knows ISO, exposure time and capture time for most cameras (``raw.other``); the camera name
and, for DNG, the stored bits per sample come from the file's TIFF/EXIF tags when it is TIFF-based.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rawpy

from skystack._typing import CFA_PATTERNS, CfaPattern, Image
from skystack.errors import FormatError
from skystack.frame import Frame, FrameMeta, HeaderCard
from skystack.io.tiff import meta_from_exif, read_exif

__all__ = ["read_raw", "bayer_pattern"]

_CFA_PHOTOMETRIC = 32803


def read_raw(path: str | os.PathLike[str]) -> Frame:
    """Read a camera raw file.

    Parameters
    ----------
    path : path-like
        Any raw format LibRaw reads (CR2, CR3, NEF, ARW, DNG, RAF, ORF, RW2, PEF, ...).

    Returns
    -------
    Frame
        For Bayer sensors an ``(H, W)`` float32 mosaic, raw values divided by the white level
        (values above 1.0 are kept), with ``meta.cfa`` the pattern at ``[0, 0]``,
        ``meta.black_level`` the mean black level in the same units (a note when the channels'
        levels differ), ``meta.white_level = 1.0``, ``meta.white_balance`` the as-shot multipliers
        normalised to G = 1, and ISO, exposure time, capture time (the camera clock's local time),
        camera and bit depth where the file gives them. For other sensors an ``(H, W, 3)``
        demosaiced image in camera raw colour, black level removed (``black_level = 0``).

    Raises
    ------
    FormatError
        When LibRaw cannot open or decode the file.
    """
    path = Path(path)
    try:
        raw = rawpy.imread(os.fspath(path))
    except (rawpy.LibRawError, OSError, ValueError) as err:
        raise FormatError(f"{path}: not a readable camera raw file ({_message(err)})") from err
    with raw:
        try:
            return _read(raw, path)
        except (rawpy.LibRawError, NotImplementedError, RuntimeError) as err:
            raise FormatError(
                f"{path}: camera raw data are truncated or corrupt ({_message(err)})"
            ) from err


def bayer_pattern(
    raw_pattern: np.ndarray | None, color_desc: bytes | str, *, top: int = 0, left: int = 0
) -> CfaPattern | None:
    """The Bayer pattern at element ``[0, 0]`` of LibRaw's visible area, or None if not Bayer.

    Parameters
    ----------
    raw_pattern : ndarray or None
        ``RawPy.raw_pattern``: colour indices of the smallest repeating cell, counted from element
        ``[0, 0]`` of the *full* raw image, margins included.
    color_desc : bytes or str
        ``RawPy.color_desc``, the letter of each colour index (``b"RGBG"``: index 3 is the second
        green).
    top, left : int
        ``RawPy.sizes.top_margin`` and ``left_margin``: where the visible area starts in the full
        raw image.

    Returns
    -------
    {"RGGB", "BGGR", "GRBG", "GBRG"} or None
        None when the cell is not 2x2 or its colours are not one R, two G and one B.
    """
    if raw_pattern is None:
        return None
    cell = np.asarray(raw_pattern)
    if cell.shape != (2, 2):
        return None
    letters = color_desc.decode("ascii", "replace") if isinstance(color_desc, bytes) else color_desc
    pattern = ""
    for y in (0, 1):
        for x in (0, 1):
            index = int(cell[(y + top) % 2, (x + left) % 2])
            if index >= len(letters):
                return None
            pattern += letters[index].upper()
    return pattern if pattern in CFA_PATTERNS else None  # type: ignore[return-value]


def _read(raw: Any, path: Path) -> Frame:
    notes: list[str] = []
    cards: list[HeaderCard] = []
    fields: dict[str, Any] = {}
    tags = _file_tags(path)
    exif = meta_from_exif(tags)
    fields.update(exif.fields)
    cards.extend(exif.cards)
    _add_libraw_fields(raw, fields, cards)
    missing = [name for name in ("iso", "exposure", "date_obs") if name not in fields]
    if missing:
        words = {"iso": "ISO", "exposure": "exposure time", "date_obs": "capture time"}
        notes.append("the file's metadata give no " + ", ".join(words[m] for m in missing))
    flip = int(raw.sizes.flip)
    if flip:
        notes.append(f"camera orientation flag {flip} not applied: pixels are kept as stored")

    white = float(raw.white_level)
    flat = raw.raw_type == rawpy.RawType.Flat
    cell = _raw_pattern(raw) if flat else None
    sizes = raw.sizes
    pattern = bayer_pattern(
        cell, raw.color_desc, top=int(sizes.top_margin), left=int(sizes.left_margin)
    )
    mono = (
        flat
        and pattern is None
        and (int(raw.num_colors) == 1 or (cell is not None and cell.shape == (1, 1)))
    )
    if white <= 0 or (pattern is None and not mono):
        return _demosaiced(raw, path, fields, cards, notes)
    if mono:
        notes.append("monochrome sensor: no colour filter array")
    data = _mosaic(raw, white)
    meta = FrameMeta(
        path=path,
        format="raw",
        cfa=pattern,
        black_level=_black_level(raw, cell, notes) / white,
        white_level=1.0,
        white_balance=_white_balance(raw.camera_whitebalance, raw.color_desc) if pattern else None,
        bit_depth=_stored_bits(tags) or int(raw.white_level).bit_length(),
        notes=tuple(notes),
        header=tuple(cards),
        **fields,
    )
    return Frame(data, meta)


def _raw_pattern(raw: Any) -> np.ndarray | None:
    """``raw.raw_pattern``, or None for colour filter layouts rawpy cannot describe."""
    try:
        cell = raw.raw_pattern
    except NotImplementedError:
        return None
    return None if cell is None else np.asarray(cell)


def _mosaic(raw: Any, white: float) -> Image:
    visible = raw.raw_image_visible
    data = visible.astype(np.float32)
    data *= np.float32(1.0 / white)
    return data


def _demosaiced(
    raw: Any, path: Path, fields: dict[str, Any], cards: list[HeaderCard], notes: list[str]
) -> Frame:
    sensor = _sensor_name(raw)
    rgb = raw.postprocess(
        gamma=(1.0, 1.0),
        no_auto_bright=True,
        output_bps=16,
        use_camera_wb=False,
        use_auto_wb=False,
        user_wb=[1.0, 1.0, 1.0, 1.0],
        output_color=rawpy.ColorSpace.raw,
        user_flip=0,
        adjust_maximum_thr=0.0,
    )
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise FormatError(f"{path}: LibRaw returned an image of shape {rgb.shape}; expected RGB")
    notes.append(
        f"{sensor}: not a 2x2 Bayer mosaic, demosaiced by LibRaw (linear, camera raw colour, "
        "no white balance, black level subtracted)"
    )
    data = rgb.astype(np.float32)
    data *= np.float32(1.0 / 65535.0)
    meta = FrameMeta(
        path=path,
        format="raw",
        black_level=0.0,
        white_level=1.0,
        white_balance=_white_balance(raw.camera_whitebalance, raw.color_desc),
        bit_depth=16,
        notes=tuple(notes),
        header=tuple(cards),
        **fields,
    )
    return Frame(data, meta)


def _sensor_name(raw: Any) -> str:
    if raw.raw_type != rawpy.RawType.Flat:
        return "full-colour raw data (Foveon, linear DNG or similar)"
    cell = _raw_pattern(raw)
    shape = np.asarray(cell).shape if cell is not None else None
    if shape == (6, 6):
        return "X-Trans sensor"
    colours = raw.color_desc.decode("ascii", "replace")
    return f"colour filter array {shape} of colours {colours!r}"


def _black_level(raw: Any, cell: np.ndarray | None, notes: list[str]) -> float:
    """Mean black level over the mosaic's pixels, in raw units."""
    levels = [float(v) for v in raw.black_level_per_channel]
    indices = np.asarray(cell).ravel() if cell is not None else np.arange(len(levels))
    used = [levels[int(i)] for i in indices if int(i) < len(levels)] or levels
    if len(set(used)) > 1:
        shown = ", ".join(f"{v:g}" for v in levels)
        notes.append(f"per-channel black levels differ ({shown}); black_level is their mean")
    return float(np.mean(used))


def _white_balance(multipliers: Any, color_desc: bytes | str) -> tuple[float, float, float] | None:
    letters = color_desc.decode("ascii", "replace") if isinstance(color_desc, bytes) else color_desc
    values = [float(v) for v in (multipliers or [])]
    if len(values) < 3 or letters[:3].upper() != "RGB":
        return None
    red, green, blue = values[:3]
    if not (green > 0 and red > 0 and blue > 0) or not np.isfinite([red, green, blue]).all():
        return None
    return (red / green, 1.0, blue / green)


def _add_libraw_fields(raw: Any, fields: dict[str, Any], cards: list[HeaderCard]) -> None:
    """ISO and exposure from LibRaw (which also reads maker notes); its capture time, focal
    length, f-number and lens where the EXIF tags did not give them."""
    other = getattr(raw, "other", None)  # rawpy exposes it from 0.2x on
    if other is None:
        return
    if other.iso_speed > 0:
        fields["iso"] = round(float(other.iso_speed))
        _set_card(cards, ("ISOSPEED", fields["iso"], "ISO speed (LibRaw)"))
    if other.shutter_speed > 0:
        fields["exposure"] = float(other.shutter_speed)
        _set_card(cards, ("EXPTIME", fields["exposure"], "[s] exposure time (LibRaw)"))
    known = {key for key, _value, _comment in cards}
    if "date_obs" not in fields:
        stamp = other.timestamp
        if isinstance(stamp, datetime) and stamp != datetime.fromtimestamp(0):
            fields["date_obs"] = stamp
            comment = "camera clock time (LibRaw), zone unknown"
            cards.append(("DATE-LOC", stamp.isoformat(), comment))
    if "FOCALLEN" not in known and other.focal_length > 0:
        cards.append(("FOCALLEN", float(other.focal_length), "[mm] lens focal length (LibRaw)"))
    if "FOCRATIO" not in known and other.aperture > 0:
        cards.append(("FOCRATIO", float(other.aperture), "lens f-number (LibRaw)"))
    lens_info = getattr(raw, "lens", None)
    lens = str(getattr(lens_info, "model", "") or "").strip()
    if "LENS" not in known and lens:
        cards.append(("LENS", lens, "lens (LibRaw)"))


def _set_card(cards: list[HeaderCard], card: HeaderCard) -> None:
    for i, (key, _value, _comment) in enumerate(cards):
        if key == card[0]:
            cards[i] = card
            return
    cards.append(card)


def _file_tags(path: Path) -> dict[str, Any]:
    """TIFF/EXIF tags of a TIFF-based raw (DNG, NEF, CR2, ARW, ...); empty for other layouts."""
    try:
        with open(path, "rb") as fh:
            return read_exif(fh)
    except OSError:
        return {}


def _stored_bits(tags: dict[str, Any]) -> int | None:
    """BitsPerSample of the IFD holding the CFA image (DNG), if the tags name one."""
    candidates = [tags, *tags.get("SubIFDs", [])]
    for ifd in candidates:
        if ifd.get("PhotometricInterpretation") == _CFA_PHOTOMETRIC:
            bits = ifd.get("BitsPerSample")
            if isinstance(bits, tuple):
                bits = bits[0] if bits else None
            if isinstance(bits, int) and 0 < bits <= 32:
                return bits
    return None


def _message(err: BaseException) -> str:
    detail: Any = err.args[0] if err.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    text = str(detail).strip().splitlines()
    return text[0] if text else type(err).__name__
