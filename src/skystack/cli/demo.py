"""``skystack demo [DIR]``: simulate a sample session and run the pipeline on it, end to end."""

from __future__ import annotations

from pathlib import Path

import typer

__all__ = ["register", "demo_command"]


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo")(demo_command)


def demo_command(
    directory: Path = typer.Argument(
        Path("skystack-demo"), help="Folder to write the sample session and results into."
    ),
    seed: int = typer.Option(1, "--seed", help="Seed of the simulated session."),
) -> int:
    """Simulate a night's session (lights, darks, flats, bias) and process it, end to end.

    Writes the session under DIR/session and runs `skystack process` on it into DIR/results
    (stack, picture, report.html). A re-run reuses both.
    """
    from skystack.cli._console import progress_reporter
    from skystack.pipeline.demo import run_demo

    with progress_reporter("demo") as progress:
        result = run_demo(directory, seed=seed, progress=progress)
    for path in result.outputs:
        print(f"wrote {path}")
    print(f"open the report: {result.report.resolve()}")
    return 0
