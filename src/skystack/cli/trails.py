"""``skystack trails FRAMES... -o OUT``: star trails from a fixed camera (linear output)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

__all__ = ["register", "trails_command"]


class ForegroundOption(StrEnum):
    mean = "mean"
    median = "median"
    none = "none"


def register(app: typer.Typer) -> None:
    """Add the ``trails`` command to ``app``."""
    app.command("trails")(trails_command)


def trails_command(
    frames: list[Path] = typer.Argument(..., help="Frames: files, folders or globs."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file; format from extension."),
    foreground: ForegroundOption = typer.Option(
        ForegroundOption.mean,
        "--foreground",
        help="Noise-reduced landscape under the trails: mean, median (of blocks of frames, "
        "robust to passing lights) or none (the plain maximum).",
    ),
    gap_fill: bool = typer.Option(
        None,
        "--gap-fill/--no-gap-fill",
        help="Close the gaps between the frames' trails: --gap-fill between all frames, "
        "--no-gap-fill never; default: only after interruptions seen in the frames' times.",
    ),
    comet: float = typer.Option(
        None, "--comet", help="Comet mode: older trails fade by 1/e every N frames."
    ),
    threshold: float = typer.Option(
        3.0, "--threshold", help="Where trails replace the foreground, in frame-noise σ."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> int:
    """Stack star-trail frames: the per-pixel maximum, with a quiet foreground.

    The sky turning above a fixed camera draws trails in the per-pixel maximum of the
    frames; the static landscape is taken from the mean of the frames (noise reduced) where
    nothing moved. No registration. Writes OUT (the frames' size, linear; FITS float32,
    TIFF/PNG 16-bit, 8-bit outputs get a display stretch) and OUT.json with a row per frame.
    Unreadable or mismatched frames are skipped with a warning.
    """
    from skystack.cli._console import progress_reporter
    from skystack.errors import ConfigError
    from skystack.io import find_images
    from skystack.pipeline.trails import TrailsConfig, trails_files

    if comet is not None and not comet > 0:
        raise ConfigError(f"--comet must be a positive number of frames, not {comet}")
    if not threshold > 0:
        raise ConfigError(f"--threshold must be a positive number of sigmas, not {threshold}")
    config = TrailsConfig(
        foreground=foreground.value,  # type: ignore[arg-type]
        gap_fill="auto" if gap_fill is None else ("all" if gap_fill else "none"),
        comet=comet,
        threshold=threshold,
    )
    paths = find_images(frames)
    with progress_reporter("trails") as progress:
        run = trails_files(paths, output, config, overwrite=overwrite, progress=progress)
    for row in run.frames:
        print(_row_line(row))
    result = run.result
    print(
        f"wrote {run.output} ({run.n_stacked} of {len(run.frames)} frames, foreground "
        f"{config.foreground}, {result.gaps_filled} gaps filled"
        + (f", comet {config.comet:g} frames" if config.comet else "")
        + f") and {run.sidecar.name}"
    )
    return 0


def _row_line(row: dict[str, Any]) -> str:
    """One line per frame: level and noise, and the gap filled before it; or why skipped."""
    name = Path(row["path"]).name
    if not row["accepted"]:
        return f"{name}  skipped: {row['reason']}"
    parts = [name]
    if row["background"] is not None:
        parts.append(f"background {row['background']:.5f}")
    if row["noise"] is not None:
        parts.append(f"noise {row['noise']:.5f}")
    if row["gap_filled"]:
        from skystack.register.transform import Transform

        turn = Transform.from_list(row["sky_motion"]).rotation_deg
        parts.append(f"gap filled ({row['gap_steps']} steps, sky turned {turn:+.3f}°)")
    elif row.get("gap_note"):
        parts.append(f"gap not filled: {row['gap_note']}")
    return "  ".join(parts)
