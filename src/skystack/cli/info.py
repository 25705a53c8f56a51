"""``skystack info FILE...``: format, shape, type, metadata and statistics of image files."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

__all__ = ["register", "info_command"]

_log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    """Add the ``info`` command to ``app``."""
    app.command("info")(info_command)


def info_command(
    files: list[Path] = typer.Argument(..., help="Image files, folders or glob patterns."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per file."),
) -> int:
    """Show format, shape, type, metadata and statistics (min/max/median/noise) of each file.

    A file that cannot be read gets a one-line error and the others are still shown; the exit
    code is then 2.
    """
    from skystack.errors import MissingFileError, SkystackError
    from skystack.io import find_images
    from skystack.pipeline.inspect import describe_file

    paths: list[Path] = []
    failed = 0
    for item in files:
        if item.is_dir():
            try:
                paths.extend(find_images([item]))
            except MissingFileError as err:
                print(f"skystack: error: {err}", file=sys.stderr)
                failed += 1
        else:
            paths.append(item)
    for path in paths:
        try:
            description = describe_file(path)
        except SkystackError as err:
            print(f"skystack: error: {err}", file=sys.stderr)
            failed += 1
            continue
        record = _record(description)
        if as_json:
            print(json.dumps(record, default=str))
        else:
            _print_text(record)
    if failed:
        raise typer.Exit(2)
    return 0


def _record(description: Any) -> dict[str, Any]:
    frame = description.frame
    meta = frame.meta
    data = frame.data
    channels = ("R", "G", "B") if data.ndim == 3 else ("CFA" if frame.is_cfa else "mono",)
    record: dict[str, Any] = {
        "path": str(description.path),
        "format": description.format,
        "size_bytes": description.size_bytes,
        "frames": description.frame_count,
        "shape": list(data.shape),
        "layout": "colour (H, W, 3)"
        if data.ndim == 3
        else ("Bayer mosaic" if frame.is_cfa else "mono"),
        "bit_depth": meta.bit_depth,
    }
    for name in (
        "kind",
        "exposure",
        "iso",
        "gain",
        "temperature",
        "cfa",
        "date_obs",
        "camera",
        "telescope",
        "filter",
        "target",
        "black_level",
        "white_level",
        "white_balance",
    ):
        value = getattr(meta, name)
        if value is not None:
            record[name] = value.isoformat() if hasattr(value, "isoformat") else value
    if meta.notes:
        record["notes"] = list(meta.notes)
    record["statistics"] = {
        channel: {
            "min": stats.minimum,
            "max": stats.maximum,
            "mean": stats.mean,
            "median": stats.median,
            "noise": stats.noise,
            **({"finite_fraction": stats.finite_fraction} if stats.finite_fraction < 1 else {}),
        }
        for channel, stats in zip(channels, description.statistics, strict=True)
    }
    return record


def _print_text(record: dict[str, Any]) -> None:
    print(record["path"])
    for key, value in record.items():
        if key in ("path", "statistics"):
            continue
        if key == "shape":
            value = " x ".join(str(v) for v in value)
        elif isinstance(value, list):
            value = "; ".join(str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:.6g}"
        print(f"  {key:<14}{value}")
    print("  statistics    (full scale = 1.0)")
    for channel, stats in record["statistics"].items():
        fields = "  ".join(f"{k} {v:.5g}" for k, v in stats.items())
        print(f"    {channel:<5} {fields}")
