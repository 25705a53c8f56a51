"""``skystack process SESSION_DIR``: find the frames of a night and run everything."""

from __future__ import annotations

import json
from pathlib import Path

import typer

__all__ = ["register", "process_command"]

_FLAGS = {
    # flag name -> recipe key it overrides
    "select": "registration.select_percent",
    "register": "registration.method",
    "drizzle": "registration.drizzle",
    "combine": "stack.combine",
    "reject": "stack.reject",
    "normalize": "stack.normalize",
    "weights": "stack.weights",
    "background": "enhance.background",
    "stretch": "enhance.stretch",
    "stars": "enhance.stars",
    "sharpen": "enhance.sharpen",
    "denoise": "enhance.denoise",
    "saturation": "enhance.saturation",
}


def register(app: typer.Typer) -> None:
    """Add the ``process`` command to ``app``."""
    app.command("process")(process_command)


def _flag(help_text: str) -> str:
    return typer.Option(None, help=f"{help_text} (overrides the recipe).")  # type: ignore[no-any-return]


def process_command(
    session_dir: Path = typer.Argument(
        None, help="The night's folder: lights, darks, flats, bias, dark-flats in any layout."
    ),
    output: Path = typer.Option(
        None, "-o", "--output", help="Output folder (default SESSION_DIR/skystack)."
    ),
    recipe: Path = typer.Option(None, "--recipe", help="Settings of every step (TOML)."),
    write_recipe: Path = typer.Option(
        None, "--write-recipe", help="Write the recipe (defaults, or --recipe + flags) and stop."
    ),
    settings: list[str] = typer.Option(
        [], "--set", help="Any recipe setting, SECTION.KEY=VALUE (e.g. stack.reject=sigma)."
    ),
    select: str = _flag("Keep the best PERCENT of the frames"),
    register: str = _flag("Registration: stars|phase|orb|none"),
    drizzle: float = _flag("Drizzle scale: 1, 1.5, 2 or 3"),
    combine: str = _flag("mean|median|sum|max|min"),
    reject: str = _flag("Outlier rejection: none|sigma|mad|winsorized|linear-fit|..."),
    normalize: str = _flag("Background normalisation"),
    weights: str = _flag("Frame weights: none|exposure|noise|stars|fwhm"),
    background: str = _flag("Background model: poly|rbf|tiles|none"),
    stretch: str = _flag("Stretch: auto|asinh|ghs|linear|none"),
    stars: str = _flag("Stars: enhance|reduce|none"),
    sharpen: str = _flag("Sharpening: wavelet|unsharp|log|deconv|none"),
    denoise: str = _flag("Noise reduction: wavelet|none"),
    saturation: float = _flag("Colour saturation (1 = unchanged)"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what was found and how it is grouped, and stop."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings, errors and results."),
    log_format: str = typer.Option(
        "text", "--log-format", help="text, or json: JSON lines for machines (stderr and stdout)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing --write-recipe file."
    ),
) -> int:
    """Process a whole session: discovery, masters, calibration, registration, stacking,
    the finished picture and report.html, one set per target, filter and exposure.

    A re-run reuses everything still valid (the cache under OUT_DIR/cache is keyed by the
    input files' content and each step's settings) and resumes an interrupted run.
    """
    from skystack.cli._console import configure_logging, progress_reporter
    from skystack.errors import ConfigError, OutputExistsError
    from skystack.io._atomic import atomic_path
    from skystack.recipe import apply_overrides, dump_recipe, load_recipe

    if log_format not in ("text", "json"):
        raise ConfigError(f"--log-format must be text or json, not {log_format}")
    if log_format == "json" or quiet:
        configure_logging(debug=False, log_format=log_format, quiet=quiet)  # type: ignore[arg-type]
    config = load_recipe(recipe) if recipe is not None else None
    from skystack.config import PipelineConfig

    config = config or PipelineConfig()
    values = {"select": select.rstrip("%") if select else None, "register": register,
              "drizzle": drizzle, "combine": combine, "reject": reject,
              "normalize": normalize, "weights": weights, "background": background,
              "stretch": stretch, "stars": stars, "sharpen": sharpen, "denoise": denoise,
              "saturation": saturation}  # fmt: skip
    flags = [f"{_FLAGS[name]}={value}" for name, value in values.items() if value is not None]
    config = apply_overrides(config, [*flags, *settings])
    emit = _emitter(log_format)
    if write_recipe is not None:
        if write_recipe.exists() and not overwrite:
            raise OutputExistsError(f"{write_recipe}: exists already; pass --overwrite")
        with atomic_path(write_recipe) as tmp:
            Path(tmp).write_text(dump_recipe(config))
        emit("recipe", f"wrote {write_recipe}", path=str(write_recipe))
        return 0
    if session_dir is None:
        raise ConfigError("give the session folder: skystack process SESSION_DIR")
    from skystack.pipeline.process import default_output_dir, process_session
    from skystack.pipeline.session import describe_session, discover_session

    out_dir = output if output is not None else default_output_dir(session_dir)
    session = discover_session(session_dir, exclude=[out_dir])
    if not quiet or dry_run:
        for line in describe_session(session):
            emit("found", line)
    if dry_run:
        return 0
    with progress_reporter("process", log_format=log_format, quiet=quiet) as progress:  # type: ignore[arg-type]
        run = process_session(
            session_dir, out_dir=out_dir, config=config, session=session, progress=progress
        )
    failed = 0
    for group in run.groups:
        if group.error is not None:
            failed += 1
            emit("group", f"{group.group.name}: not stacked: {group.error}", group=group.group.name,
                 error=group.error)  # fmt: skip
            continue
        reused = f" (reused: {', '.join(group.reused)})" if group.reused else ""
        emit("group", f"{group.group.name}: stacked {group.stacked} of {len(group.group.lights)}"
             f" lights{reused}", group=group.group.name, stacked=group.stacked,
             outputs={k: str(v) for k, v in group.outputs.items()})  # fmt: skip
        for path in group.outputs.values():
            emit("output", f"  {path}", path=str(path))
    emit("report", f"report: {run.report}", path=str(run.report))
    if failed:
        raise typer.Exit(code=2)
    return 0


def _emitter(log_format: str):  # noqa: ANN202
    """Print a result line: text, or one JSON object per line on stdout."""

    def emit(event: str, text: str, **fields: object) -> None:
        if log_format == "json":
            print(json.dumps({"event": event, "message": text, **fields}), flush=True)
        else:
            print(text, flush=True)

    return emit
