"""``skystack planetary VIDEO_OR_DIR -o OUT``: lucky imaging of planets, the Moon and the Sun."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

__all__ = ["register", "planetary_command", "parse_best"]


class ModeOption(StrEnum):
    auto = "auto"
    disk = "disk"
    surface = "surface"


class SharpenOption(StrEnum):
    wavelet = "wavelet"
    none = "none"


def register(app: typer.Typer) -> None:
    """Add the ``planetary`` command to ``app``."""
    app.command("planetary")(planetary_command)


def planetary_command(
    source: Path = typer.Argument(..., help="SER file, video (AVI/MP4) or folder of frames."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Linear stack: .tif (16-bit), .fits (32-bit float), .png."
    ),
    best: str = typer.Option(
        "25%", "--best", help="Frames stacked per alignment point: a percentage (25%) or a count."
    ),
    ap_size: int = typer.Option(64, "--ap-size", help="Alignment point box size (px)."),
    drizzle: float = typer.Option(1.0, "--drizzle", help="Output scale: 1, 1.5 or 2."),
    mode: ModeOption = typer.Option(
        ModeOption.auto,
        "--mode",
        help="Object: disk (a planet with sky around it), surface (Moon/Sun filling the "
        "frame) or auto.",
    ),
    sharpen: SharpenOption = typer.Option(
        SharpenOption.wavelet,
        "--sharpen",
        help="wavelet: also write OUT_sharp.ext, sharpened with planetary wavelet gains; none.",
    ),
    sharpen_amount: float = typer.Option(
        1.0, "--sharpen-amount", help="Strength of the wavelet sharpening (1 = default)."
    ),
    workers: int = typer.Option(
        0, "--workers", help="Processes reading and measuring frames (0: one per CPU)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> int:
    """Stack the sharpest moments of a planetary or lunar video (lucky imaging).

    Frames are ranked by sharpness, aligned globally and at a grid of alignment points; each
    point stacks its own best frames and the patches are blended without seams. Writes OUT
    (linear, cropped to the object), OUT.json (a row per frame) and, unless --sharpen none,
    OUT_sharp.ext. Memory does not grow with the number of frames.
    """
    from skystack.cli._console import progress_reporter
    from skystack.pipeline.planetary import LuckyConfig, planetary_file

    config = LuckyConfig(
        best=parse_best(best),
        ap_size=ap_size,
        drizzle=drizzle,
        mode=mode.value,  # type: ignore[arg-type]
        sharpen=sharpen.value,  # type: ignore[arg-type]
        sharpen_amount=sharpen_amount,
    )
    with progress_reporter(f"planetary {source.name}") as progress:
        run = planetary_file(
            source,
            output,
            config,
            overwrite=overwrite,
            progress=progress,
            workers=workers or None,
        )
    x0, y0, x1, y1 = run.roi
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run.timings)
    print(
        f"{run.n_frames} frames, object box {x1 - x0}x{y1 - y0} at ({x0}, {y0}), "
        f"{run.n_points} alignment points"
    )
    print(f"steps: {steps}")
    written = [run.output, run.sidecar] + ([run.sharpened] if run.sharpened else [])
    print(f"wrote {', '.join(str(p) for p in written)} in {run.seconds:.1f} s")
    return 0


def parse_best(text: str) -> float | int:
    """``25%`` or ``25.5%`` (a fraction of the frames) or ``300`` (a count)."""
    from skystack.errors import ConfigError

    value = text.strip()
    try:
        if value.endswith("%"):
            percent = float(value[:-1])
            if not 0.0 < percent <= 100.0:
                raise ValueError
            return percent / 100.0
        count = int(value)
        if count < 1:
            raise ValueError
        return count
    except ValueError:
        raise ConfigError(
            f"--best takes a percentage in (0, 100] like 25% or a frame count, not {text!r}"
        ) from None
