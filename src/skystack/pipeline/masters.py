"""Building, loading, choosing and checking calibration masters (the I/O around calibrate/).

Masters are built with bounded memory: frames are read one at a time into an on-disk cache and
combined band by band, so a set of 50 darks of 24 MP needs the memory of a band, not of the set.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skystack._typing import CfaPattern, FrameKind, Image, Mask, ProgressCallback
from skystack.calibrate.masters import (
    channel_levels,
    combine_frames,
    make_master_dark,
    make_master_flat,
    normalize_flat,
)
from skystack.config import CalibrationConfig
from skystack.errors import (
    ConfigError,
    FrameSkippedWarning,
    GeometryError,
    MetadataWarning,
    MissingFileError,
    SkystackError,
)
from skystack.frame import Frame, FrameMeta
from skystack.io import find_images, read, write
from skystack.stack.cache import FrameCache, default_memory_budget, rows_per_band

__all__ = ["Master", "MasterSet", "build_master", "load_master", "prepare_masters", "check_master"]

_log = logging.getLogger(__name__)

_TEMPERATURE_TOLERANCE_C = 2.0
_EXPOSURE_TOLERANCE = 0.02


@dataclass(frozen=True)
class Master:
    """A master frame and what it was made from.

    ``thermal_only`` is False for a dark that still holds the bias (made without bias frames or
    a black level): it can then only be subtracted unscaled.
    """

    kind: FrameKind
    data: Image
    meta: FrameMeta
    n_frames: int
    thermal_only: bool = True
    path: Path | None = None


@dataclass(frozen=True)
class MasterSet:
    """Everything needed to calibrate a light."""

    bias: Master | None = None
    dark: Master | None = None
    flat: Master | None = None
    dark_flat: Master | None = None
    bad_pixels: Mask | None = None


def _frames_meta(metas: list[FrameMeta], kind: FrameKind, n: int) -> FrameMeta:
    first = metas[0]
    exposures = [m.exposure for m in metas if m.exposure is not None]
    temperatures = [m.temperature for m in metas if m.temperature is not None]
    return FrameMeta(
        kind=kind,
        exposure=float(np.median(exposures)) if exposures else None,
        temperature=float(np.mean(temperatures)) if temperatures else None,
        iso=first.iso,
        gain=first.gain,
        cfa=first.cfa,
        camera=first.camera,
        filter=first.filter,
        black_level=first.black_level,
        white_level=first.white_level,
        bit_depth=32,
    )


def build_master(
    paths: list[Path],
    kind: FrameKind,
    *,
    bias: Master | None = None,
    dark_flat: Master | None = None,
    cfa: CfaPattern | None = None,
    method: str = "sigma-clip",
    kappa: float = 3.0,
    cache_dir: Path | None = None,
    memory_bytes: int | None = None,
    progress: ProgressCallback | None = None,
) -> Master:
    """Combine calibration frames into a master, streaming them through an on-disk cache.

    Darks and dark-flats get the master bias (or the files' black level) subtracted; flats get
    the bias and the dark-flat subtracted, are scaled to a common level per colour channel,
    combined, and normalised. Unreadable frames and frames of another size are skipped with a
    warning.

    Raises
    ------
    MissingFileError
        When no usable frame remains.
    """
    budget = memory_bytes or default_memory_budget()
    metas: list[FrameMeta] = []
    levels: list[np.ndarray] = []
    shape: tuple[int, ...] | None = None
    with tempfile.TemporaryDirectory(prefix="skystack-master-", dir=cache_dir) as folder:
        cache: FrameCache | None = None
        try:
            for index, path in enumerate(paths):
                try:
                    frame = read(path)
                except SkystackError as err:
                    warnings.warn(
                        f"skipping {kind} frame: {err}", FrameSkippedWarning, stacklevel=2
                    )
                    continue
                if shape is None:
                    shape = frame.data.shape
                    cache = FrameCache(folder, shape=shape)
                if frame.data.shape != shape:
                    warnings.warn(
                        f"skipping {kind} frame {path}: size {frame.data.shape} differs from "
                        f"the first frame's {shape}",
                        FrameSkippedWarning,
                        stacklevel=2,
                    )
                    continue
                assert cache is not None
                cache.append(frame.data)
                metas.append(frame.meta)
                if kind == "flat":
                    levels.append(
                        channel_levels(
                            _flat_base(frame.data, bias, dark_flat, frame.meta),
                            cfa=cfa or frame.meta.cfa,
                        )
                    )
                if progress is not None:
                    progress(index + 1, len(paths), f"master {kind}")
            if cache is None or len(cache) == 0:
                raise MissingFileError(f"no usable {kind} frame among {len(paths)} files")
            pattern = cfa or metas[0].cfa
            offset = _offset(metas[0], bias)
            result = np.empty(shape, dtype=np.float32)
            band = rows_per_band(len(cache), shape, memory_bytes=budget, copies=3)
            for start in range(0, shape[0], band):
                stop = min(shape[0], start + band)
                cube = cache.read_rows(start, stop)
                bias_band = bias.data[start:stop] if bias is not None else None
                if kind == "flat":
                    dark_band = dark_flat.data[start:stop] if dark_flat is not None else None
                    result[start:stop] = make_master_flat(
                        cube,
                        master_bias=bias_band,
                        master_dark_flat=dark_band,
                        offset=offset,
                        cfa=pattern,
                        method=method,  # type: ignore[arg-type]
                        kappa=kappa,
                        frame_levels=np.array(levels),
                        row0=start,
                        normalize=False,
                    )
                elif kind in ("dark", "dark-flat"):
                    result[start:stop] = make_master_dark(
                        cube,
                        master_bias=bias_band,
                        offset=offset,
                        method=method,
                        kappa=kappa,  # type: ignore[arg-type]
                    )
                else:
                    result[start:stop] = combine_frames(cube, method=method, kappa=kappa)  # type: ignore[arg-type]
        finally:
            if cache is not None:
                cache.close()
    if kind == "flat":
        result = normalize_flat(result, cfa=pattern)
    meta = _frames_meta(metas, kind, len(metas)).replace(cfa=pattern)
    thermal_only = kind not in ("dark", "dark-flat") or bias is not None or offset is not None
    return Master(kind=kind, data=result, meta=meta, n_frames=len(metas), thermal_only=thermal_only)


def _offset(meta: FrameMeta, bias: Master | None) -> float | None:
    return None if bias is not None else meta.black_level


def _flat_base(
    data: Image, bias: Master | None, dark_flat: Master | None, meta: FrameMeta
) -> Image:
    base = data - bias.data if bias is not None else data - np.float32(meta.black_level or 0.0)
    return base - dark_flat.data if dark_flat is not None else base


_KIND_TITLE = {"bias": "Bias", "dark": "Dark", "flat": "Flat", "dark-flat": "DarkFlat"}


def write_master(master: Master, path: Path, *, method: str, kappa: float) -> Path:
    """Write a master as float32 FITS with its frame count, exposure, temperature and method."""
    cards = (
        ("MASTER", True, "skystack calibration master"),
        ("NFRAMES", master.n_frames, "number of frames combined"),
        ("CALMETH", f"{method} kappa={kappa:g}", "how the frames were combined"),
        ("THERMAL", master.thermal_only, "bias removed (darks: thermal signal only)"),
    )
    meta = master.meta.replace(header=cards)
    history = [f"skystack: master {master.kind} from {master.n_frames} frames ({method})"]
    write(Frame(master.data, meta), path, history=history, overwrite=True)
    return path


def load_master(path: Path, kind: FrameKind) -> Master:
    """Read a master written by skystack (or another tool: then assumed bias-free and unscaled)."""
    frame = read(path)
    n_frames = int(frame.meta.header_value("NFRAMES", 0) or 0)
    thermal = frame.meta.header_value("THERMAL")
    data = frame.data
    if kind == "flat":
        levels = channel_levels(data, cfa=frame.meta.cfa)
        if np.any(np.abs(levels - 1.0) > 1e-3):
            data = normalize_flat(data, cfa=frame.meta.cfa)
    return Master(
        kind=kind,
        data=data,
        meta=frame.meta.replace(kind=kind),
        n_frames=n_frames,
        thermal_only=bool(thermal) if thermal is not None else kind not in ("dark", "dark-flat"),
        path=path,
    )


def check_master(master: Master, light: FrameMeta, light_path: Path | None) -> list[str]:
    """Describe how a master differs from a light (size aside): exposure, ISO/gain, temperature."""
    problems = []
    m = master.meta
    name = master.path.name if master.path else f"master {master.kind}"
    lname = light_path.name if light_path else "the lights"
    if master.kind == "dark" and m.exposure and light.exposure:
        if abs(m.exposure - light.exposure) > _EXPOSURE_TOLERANCE * light.exposure:
            problems.append(
                f"{name}: exposure {m.exposure:g} s differs from {lname}'s {light.exposure:g} s"
            )
    if m.iso is not None and light.iso is not None and m.iso != light.iso:
        problems.append(f"{name}: ISO {m.iso} differs from {lname}'s ISO {light.iso}")
    if m.gain is not None and light.gain is not None and m.gain != light.gain:
        problems.append(f"{name}: gain {m.gain:g} differs from {lname}'s gain {light.gain:g}")
    if master.kind == "dark" and m.temperature is not None and light.temperature is not None:
        if abs(m.temperature - light.temperature) > _TEMPERATURE_TOLERANCE_C:
            problems.append(
                f"{name}: sensor at {m.temperature:.1f} °C, {lname} at {light.temperature:.1f} °C"
            )
    return problems


def _pick_from_library(folder: Path, kind: FrameKind, light: Frame) -> Path | None:
    """The library master of ``kind`` that fits the light best (same size, ISO/gain, closest
    exposure then temperature for darks)."""
    best: tuple[float, Path] | None = None
    for path in find_images([folder]):
        try:
            frame = read(path)
        except SkystackError:
            continue
        meta = frame.meta
        if meta.kind != kind or frame.data.shape != light.data.shape:
            continue
        if light.meta.iso is not None and meta.iso not in (None, light.meta.iso):
            continue
        if light.meta.gain is not None and meta.gain not in (None, light.meta.gain):
            continue
        score = 0.0
        if kind == "dark":
            if meta.exposure and light.meta.exposure:
                score += abs(np.log(meta.exposure / light.meta.exposure)) * 100
            if meta.temperature is not None and light.meta.temperature is not None:
                score += abs(meta.temperature - light.meta.temperature)
        if kind == "flat" and light.meta.filter and meta.filter not in (None, light.meta.filter):
            continue
        if best is None or score < best[0]:
            best = (score, path)
    return best[1] if best else None


def prepare_masters(
    config: CalibrationConfig,
    *,
    first_light: Frame,
    masters_dir: Path,
    progress: ProgressCallback | None = None,
) -> MasterSet:
    """Build or load every master the config asks for, write the built ones to ``masters_dir``,
    and find the bad pixels for cosmetic correction.

    Masters already built in ``masters_dir`` by an interrupted earlier run are reused.
    """
    sources = config.masters
    cfa = config.cfa or first_light.meta.cfa
    memory = config.memory_bytes

    def obtain(
        kind: FrameKind,
        ready: Path | None,
        frames: tuple[Path, ...],
        bias: Master | None = None,
        dark_flat: Master | None = None,
    ) -> Master | None:
        if ready is None and not frames and sources.library is not None:
            ready = _pick_from_library(sources.library, kind, first_light)
            if ready is not None:
                _log.info("master %s from the library: %s", kind, ready)
        if ready is not None:
            master = load_master(ready, kind)
        elif frames:
            target = masters_dir / f"master_{kind.replace('-', '_')}.fits"
            if target.exists():
                master = load_master(target, kind)
                _log.info("reusing %s", target)
            else:
                master = build_master(
                    list(frames), kind, bias=bias, dark_flat=dark_flat, cfa=cfa,
                    method=config.master_method, kappa=config.master_kappa,
                    cache_dir=masters_dir, memory_bytes=memory, progress=progress,
                )  # fmt: skip
                write_master(master, target, method=config.master_method, kappa=config.master_kappa)
                master = Master(
                    kind=master.kind, data=master.data, meta=master.meta,
                    n_frames=master.n_frames, thermal_only=master.thermal_only, path=target,
                )  # fmt: skip
        else:
            return None
        if master.data.shape != first_light.data.shape:
            raise GeometryError(
                f"{master.path or 'master ' + kind}: size {master.data.shape} does not match "
                f"the lights' {first_light.data.shape}"
            )
        return master

    masters_dir.mkdir(parents=True, exist_ok=True)
    bias = obtain("bias", sources.master_bias, sources.bias)
    dark_flat = obtain("dark-flat", sources.master_dark_flat, sources.dark_flats, bias=bias)
    dark = obtain("dark", sources.master_dark, sources.darks, bias=bias)
    flat = obtain("flat", sources.master_flat, sources.flats, bias=bias, dark_flat=dark_flat)
    if flat is not None and bias is None and dark_flat is None and flat.meta.black_level is None:
        warnings.warn(
            "flats are calibrated without bias, dark-flat or black level: their offset will "
            "leave vignetting partly uncorrected; give --bias or --dark-flats",
            MetadataWarning,
            stacklevel=2,
        )
    bad = _bad_pixels(config, dark, flat, first_light, cfa)
    return MasterSet(bias=bias, dark=dark, flat=flat, dark_flat=dark_flat, bad_pixels=bad)


def _bad_pixels(
    config: CalibrationConfig,
    dark: Master | None,
    flat: Master | None,
    light: Frame,
    cfa: CfaPattern | None,
) -> Mask | None:
    from skystack.calibrate import cosmetic

    plane_shape = light.data.shape[:2]
    mask = np.zeros(plane_shape, dtype=bool)
    if config.cosmetic and dark is not None:
        mask |= _plane_mask(
            dark.data, lambda d: cosmetic.find_hot_pixels(d, sigma=config.cosmetic_sigma, cfa=cfa)
        )
    if config.cosmetic and flat is not None:
        mask |= _plane_mask(
            flat.data, lambda f: cosmetic.find_cold_pixels(f, sigma=config.cosmetic_sigma, cfa=cfa)
        )
    if config.bad_pixel_map is not None:
        mask |= _read_bad_pixel_map(config.bad_pixel_map, plane_shape)
    if mask.any():
        _log.info("cosmetic correction: %d bad pixels", int(mask.sum()))
        return mask
    return None


def _plane_mask(image: Image, finder) -> Mask:  # noqa: ANN001
    if image.ndim == 3:
        return np.any([finder(image[..., c]) for c in range(image.shape[2])], axis=0)
    return finder(image)


def _read_bad_pixel_map(path: Path, shape: tuple[int, ...]) -> Mask:
    """A bad-pixel map: an image (non-zero = bad) or a text file of ``x y`` lines."""
    from skystack.calibrate.cosmetic import bad_pixel_mask_from_array, bad_pixel_mask_from_points

    if path.suffix.lower() in (".txt", ".csv", ".lst"):
        try:
            points = np.loadtxt(path, delimiter=None if path.suffix != ".csv" else ",", ndmin=2)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: not a list of 'x y' pixel positions ({err})") from err
        return bad_pixel_mask_from_points(points[:, :2], shape)
    data = read(path).data
    if data.shape[:2] != shape:
        raise GeometryError(f"{path}: bad-pixel map size {data.shape} differs from {shape}")
    return bad_pixel_mask_from_array(data if data.ndim == 2 else data.max(axis=2))
