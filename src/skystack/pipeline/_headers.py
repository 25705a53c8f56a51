"""What a file holds, from its header only where the format allows: kind, settings, shape.

FITS headers through astropy (no data read; a truncated file is caught from its size), TIFF
pages through tifffile, PNG and JPEG through Pillow; other formats are read whole.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skystack._typing import FrameKind
from skystack.errors import FormatError
from skystack.pipeline._filenames import canonical_filter

__all__ = ["probe"]

_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def probe(path: Path) -> tuple[FrameKind | None, dict[str, Any], tuple[int, ...]]:
    from skystack.io import detect_format, read

    fmt = detect_format(path)
    if fmt == "fits":
        return _probe_fits(path)
    if fmt == "tiff":
        return _probe_tiff(path)
    if fmt in ("png", "jpeg"):
        return _probe_picture(path, fmt)
    frame = read(path)  # raw, XISF, SER, video, IRAF: no cheaper reader at hand
    meta = frame.meta
    fields = {k: getattr(meta, k) for k in ("exposure", "gain", "iso", "filter", "target")}
    fields.update(temperature=meta.temperature, date_obs=meta.date_obs)
    return meta.kind, _values(fields), tuple(frame.data.shape)


def _values(fields: Mapping[str, Any]) -> dict[str, Any]:
    gain = fields.get("gain")
    if gain is None and fields.get("iso") is not None:
        gain = float(fields["iso"])
    filt = fields.get("filter")
    if isinstance(filt, str):
        filt = canonical_filter(filt) or filt.strip() or None
    target = fields.get("target")
    target = str(target).strip() or None if target is not None else None
    return {
        "exposure": fields.get("exposure"),
        "gain": gain,
        "filter": filt,
        "target": target,
        "temperature": fields.get("temperature"),
        "time": fields.get("date_obs"),
    }


def _probe_fits(path: Path) -> tuple[FrameKind | None, dict[str, Any], tuple[int, ...]]:
    from astropy.io import fits
    from astropy.io.fits.verify import VerifyError, VerifyWarning
    from astropy.utils.exceptions import AstropyUserWarning

    from skystack.io._common import one_line
    from skystack.io.fits import _check_dimensions, _image_hdu, meta_fields_from_cards

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        try:
            with fits.open(path, lazy_load_hdus=True, memmap=False) as hdul:
                hdu = _image_hdu(hdul, path)
                dims = _check_dimensions(hdu.header, path)
                cards = tuple((c.keyword, c.value, c.comment) for c in hdu.header.cards)
                whole_file_compressed = path.suffix.lower() in (".gz", ".bz2")
                if not isinstance(hdu, fits.CompImageHDU) and not whole_file_compressed:
                    sample = abs(int(hdu.header["BITPIX"])) // 8
                    need = hdu.fileinfo()["datLoc"] + sample * math.prod(dims)
                    if path.stat().st_size < need:
                        raise FormatError(f"{path}: FITS data are truncated (expected {dims})")
        except FormatError:
            raise
        except (OSError, ValueError, TypeError, KeyError, IndexError, VerifyError) as err:
            raise FormatError(f"{path}: not a readable FITS header ({one_line(err)})") from err
    shape = (dims[1], dims[2], 3) if len(dims) == 3 and dims[0] == 3 else dims[-2:]
    fields = meta_fields_from_cards(cards, height=shape[0])
    if fields.get("temperature") is None:
        set_temp = dict((k.upper(), v) for k, v, _ in cards).get("SET-TEMP")
        if isinstance(set_temp, int | float) and not isinstance(set_temp, bool):
            fields["temperature"] = float(set_temp)
    return fields.get("kind"), _values(fields), tuple(shape)


def _probe_tiff(path: Path) -> tuple[FrameKind | None, dict[str, Any], tuple[int, ...]]:
    import tifffile

    from skystack.io._common import one_line
    from skystack.io.tiff import meta_from_exif, read_exif

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            axes, dims, photometric = page.axes, tuple(page.shape), int(page.photometric)
        with open(path, "rb") as fh:
            fields = meta_from_exif(read_exif(fh)).fields
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as err:
        raise FormatError(f"{path}: not a readable TIFF file ({one_line(err)})") from err
    if "Y" not in axes or "X" not in axes:
        raise FormatError(f"{path}: TIFF page with axes {axes!r} is not a 2-D image")
    height, width = dims[axes.index("Y")], dims[axes.index("X")]
    colour = photometric == 3 or ("S" in axes and dims[axes.index("S")] >= 3)
    return None, _values(fields), (height, width, 3) if colour else (height, width)


def _probe_picture(path: Path, fmt: str) -> tuple[None, dict[str, Any], tuple[int, ...]]:
    from PIL import Image

    from skystack.io._common import one_line
    from skystack.io.tiff import meta_from_exif, read_exif

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                (width, height), mode, exif = image.size, image.mode, image.info.get("exif")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise FormatError(f"{path}: not a readable {fmt.upper()} file ({one_line(err)})") from err
    fields: dict[str, Any] = {}
    if isinstance(exif, bytes) and exif.startswith(b"Exif\x00\x00"):
        fields = meta_from_exif(read_exif(exif[6:])).fields
    return None, _values(fields), (height, width) if mode in _GREY_MODES else (height, width, 3)
