"""``skystack convert IN -o OUT``: convert between image formats."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

__all__ = ["register", "convert_command"]


class StretchChoice(StrEnum):
    auto = "auto"
    stf = "stf"
    linear = "linear"


def register(app: typer.Typer) -> None:
    """Add the ``convert`` command to ``app``."""
    app.command("convert")(convert_command)


def convert_command(
    source: Path = typer.Argument(..., help="Input file (any readable format)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file; format from extension."),
    bit_depth: int = typer.Option(
        None, "--bit-depth", help="8, 16 or 32 (float). Default: FITS/XISF 32, TIFF/PNG 16, JPEG 8."
    ),
    stretch: StretchChoice = typer.Option(
        StretchChoice.auto,
        "--stretch",
        help="Display stretch of 8-bit TIFF/PNG/JPEG outputs: auto (linear data only), "
        "stf (always), linear (never).",
    ),
    frame: int = typer.Option(0, "--frame", help="Frame of a SER or video to convert."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> int:
    """Convert an image to another format (FITS, TIFF, PNG, JPEG, XISF, SER).

    SER and videos converted to .ser keep all their frames; to any other format, one frame.
    """
    from skystack.cli._console import progress_reporter
    from skystack.errors import ConfigError
    from skystack.pipeline.convert import convert_file

    if bit_depth is not None and bit_depth not in (8, 16, 32):
        raise ConfigError(f"--bit-depth must be 8, 16 or 32, not {bit_depth}")
    with progress_reporter(f"convert {source.name}") as progress:
        written = convert_file(
            source,
            output,
            bit_depth=bit_depth,
            stretch=stretch.value,  # type: ignore[arg-type]
            frame_index=frame,
            overwrite=overwrite,
            progress=progress,
        )
    print(f"wrote {written}")
    return 0
