"""Star trails from a fixed camera: read frames one at a time into a StarTrailAccumulator.

No calibration and no registration: the camera stands still and the sky's motion is the
picture. Each readable frame (CFA mosaics debayered) goes into
:class:`~skystack.stack.trails.StarTrailAccumulator` with its start time, so memory holds a
few frames whatever their number. Frames that cannot be used are skipped with a
:class:`~skystack.errors.FrameSkippedWarning` and an ``accepted: false`` row in the sidecar;
the run goes on while at least 2 frames remain. The output (the frames' size, linear, no
stretch except the display stretch :func:`skystack.io.write` gives 8-bit pictures) and its
sidecar ``OUT.json`` are written atomically.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from skystack._typing import Image, ProgressCallback
from skystack.errors import (
    FormatError,
    FrameSkippedWarning,
    GeometryError,
    MissingFileError,
    OutputExistsError,
    SkystackError,
)
from skystack.frame import Frame, FrameMeta
from skystack.io import WRITE_EXTENSIONS, read, write
from skystack.io._atomic import atomic_path
from skystack.stack.trails import (
    ForegroundMethod,
    GapFill,
    GapFillMode,
    StarTrailAccumulator,
    StarTrailResult,
)

__all__ = ["TrailsConfig", "TrailsRun", "trails_files", "sidecar_path", "prepare_frame"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrailsConfig:
    """Settings of ``skystack trails``.

    Attributes
    ----------
    foreground : {"mean", "median", "none"}
        Noise-reduced foreground blended under the trails, or none (the plain maximum).
    gap_fill : {"auto", "all", "none"}
        Gap filling between frames: after interruptions found from the frames' times,
        between all frames, or never.
    comet : float or None
        Comet length in frames (older trails fade by 1/e per ``comet`` frames).
    threshold : float
        Sky-weight threshold of the foreground blend (frame-noise σ).
    median_block : int
        Frames per median block for ``foreground="median"``.
    """

    foreground: ForegroundMethod = "mean"
    gap_fill: GapFillMode = "auto"
    comet: float | None = None
    threshold: float = 3.0
    median_block: int = 5


@dataclass(frozen=True, eq=False)
class TrailsRun:
    """What :func:`trails_files` wrote."""

    output: Path
    sidecar: Path
    frames: tuple[dict[str, Any], ...]
    result: StarTrailResult

    @property
    def n_stacked(self) -> int:
        """Frames that went into the image."""
        return sum(1 for row in self.frames if row["accepted"])


def sidecar_path(output: Path) -> Path:
    """``OUT.json`` beside ``OUT.ext``."""
    return Path(output).with_suffix(".json")


def prepare_frame(frame: Frame) -> Image:
    """The frame's data as the trail stack uses it: CFA mosaics debayered (bilinear).

    Raises
    ------
    GeometryError
        When the frame has no usable pixel: all NaN/Inf, or constant (all zero, saturated).
    """
    data = frame.data
    if frame.is_cfa:
        from skystack.color.debayer import debayer

        data = debayer(data, pattern=frame.meta.cfa, method="bilinear")  # type: ignore[arg-type]
    finite = np.isfinite(data)
    if not finite.any():
        raise GeometryError(f"{frame.meta.path}: the frame has no finite pixel (all NaN or Inf)")
    values = data[finite]
    if not values.max() > values.min():
        raise GeometryError(
            f"{frame.meta.path}: the frame is constant at {float(values.min()):g} "
            "(all zero or saturated)"
        )
    return np.asarray(data, dtype=np.float32)


def _seconds(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _row(path: Path) -> dict[str, Any]:
    return {
        "path": str(path), "accepted": False, "reason": None, "weight": None, "fwhm": None,
        "stars": None, "background": None, "noise": None, "transform": None,
        "rejected_fraction": None, "date_obs": None, "gap_filled": False, "gap_steps": 0,
        "sky_motion": None, "interval_s": None,
    }  # fmt: skip


def _skip(row: dict[str, Any], reason: str) -> None:
    row["accepted"] = False
    row["reason"] = " ".join(reason.split())
    warnings.warn(f"skipping frame: {row['reason']}", FrameSkippedWarning, stacklevel=3)


def _measure(row: dict[str, Any], image: Image) -> None:
    from skystack.detect import luminance
    from skystack.detect.background import estimate_noise

    lum = luminance(image)
    sample = lum[:: max(1, lum.shape[0] // 256), :: max(1, lum.shape[1] // 256)]
    row["background"] = float(np.nanmedian(sample))
    # The noise of a central crop of at most 1024 x 1024 px is plenty and keeps this cheap.
    height, width = lum.shape
    top, left = max(0, height // 2 - 512), max(0, width // 2 - 512)
    noise = estimate_noise(lum[top : top + 1024, left : left + 1024])
    row["noise"] = float(noise) if np.isfinite(noise) else None


def _record_gap(row: dict[str, Any], gap: GapFill) -> None:
    row["gap_filled"] = gap.filled
    row["gap_steps"] = gap.steps
    row["interval_s"] = gap.interval_s
    row["sky_motion"] = gap.motion.to_list() if gap.motion is not None else None
    if gap.reason is not None:
        row["gap_note"] = gap.reason


def trails_files(
    paths: list[Path],
    output: Path,
    config: TrailsConfig | None = None,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> TrailsRun:
    """Stack ``paths`` into a star-trail image at ``output`` with its sidecar ``OUT.json``.

    Returns
    -------
    TrailsRun

    Raises
    ------
    OutputExistsError
        ``output`` (or its sidecar) exists and ``overwrite`` is False.
    FormatError
        ``output`` has an extension skystack cannot write.
    MissingFileError
        Fewer than 2 frames could be used.
    """
    config = config if config is not None else TrailsConfig()
    output = Path(output)
    sidecar = sidecar_path(output)
    if output.suffix.lower() not in WRITE_EXTENSIONS or output.suffix.lower() == ".ser":
        writable = ", ".join(sorted(WRITE_EXTENSIONS - {".ser"}))
        raise FormatError(
            f"{output}: cannot write {output.suffix or 'no extension'}; use {writable}"
        )
    for path in (output, sidecar):
        if path.exists() and not overwrite:
            raise OutputExistsError(
                f"{path}: output exists already; pass --overwrite to replace it"
            )
    accumulator = StarTrailAccumulator(
        foreground=config.foreground,
        gap_fill=config.gap_fill,
        comet=config.comet,
        threshold=config.threshold,
        median_block=config.median_block,
    )
    rows = [_row(Path(p)) for p in paths]
    first: Frame | None = None
    shape: tuple[int, ...] | None = None
    for index, row in enumerate(rows):
        path = Path(row["path"])
        try:
            frame = read(path)
            image = prepare_frame(frame)
            if shape is not None and image.shape != shape:
                raise GeometryError(
                    f"{path}: shape {image.shape} differs from the first frame's {shape}"
                )
            gap = accumulator.add(image, time=_seconds(frame.meta.date_obs))
        except SkystackError as err:
            _skip(row, str(err) if str(path) in str(err) else f"{path}: {err}")
        else:
            shape = image.shape
            first = first or frame
            row.update(accepted=True, weight=1.0)
            row["date_obs"] = frame.meta.date_obs.isoformat() if frame.meta.date_obs else None
            _record_gap(row, gap)
            _measure(row, image)
        if progress is not None:
            progress(index + 1, len(rows), "frames")
    used = [row for row in rows if row["accepted"]]
    if len(used) < 2 or first is None:
        reasons = "; ".join(row["reason"] for row in rows if row["reason"])
        raise MissingFileError(
            f"only {len(used)} of {len(rows)} frames could be used"
            + (f" ({reasons})" if reasons else "")
            + "; star trails need at least 2"
        )
    result = accumulator.result()
    settings = asdict(config)
    history = [
        f"skystack trails: {len(used)} of {len(rows)} frames, maximum stack",
        f"skystack trails: foreground {config.foreground}, gap fill {config.gap_fill} "
        f"({result.gaps_filled} gaps filled), comet {config.comet}",
    ]
    meta = _output_meta(first.meta, output)
    write(Frame(result.image, meta), output, history=history, overwrite=overwrite)
    report = {
        "reference": used[0]["path"],
        "settings": settings,
        "frames": rows,
        "trails": [],
    }
    with atomic_path(sidecar, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
    _log.info("star trails: %d of %d frames, %d gaps filled", len(used), len(rows),
              result.gaps_filled)  # fmt: skip
    return TrailsRun(output=output, sidecar=sidecar, frames=tuple(rows), result=result)


def _output_meta(meta: FrameMeta, output: Path) -> FrameMeta:
    # Keep format and bit depth: JPEG inputs are display-referred and get no second stretch.
    return FrameMeta(
        path=output,
        format=meta.format,
        kind="light",
        iso=meta.iso,
        gain=meta.gain,
        date_obs=meta.date_obs,
        camera=meta.camera,
        telescope=meta.telescope,
        target=meta.target,
        bit_depth=meta.bit_depth,
    )
