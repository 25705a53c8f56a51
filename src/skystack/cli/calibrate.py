"""``skystack calibrate LIGHTS... -o OUT_DIR``: calibrated (and optionally debayered) frames."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

__all__ = ["register", "calibrate_command", "calibration_config"]


class DebayerOption(StrEnum):
    none = "none"
    bilinear = "bilinear"
    vng = "vng"
    ea = "ea"
    superpixel = "superpixel"


class CfaOption(StrEnum):
    RGGB = "RGGB"
    BGGR = "BGGR"
    GRBG = "GRBG"
    GBRG = "GBRG"


def register(app: typer.Typer) -> None:
    """Add the ``calibrate`` command to ``app``."""
    app.command("calibrate")(calibrate_command)


def _frames(folder: Path | None) -> tuple[Path, ...]:
    from skystack.io import find_images

    return tuple(find_images([folder])) if folder is not None else ()


def _multipliers(text: str):  # noqa: ANN202
    from skystack.errors import ConfigError

    if text in ("none", "camera"):
        return text
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise ConfigError(
            f"--white-balance must be none, camera or three positive numbers R,G,B, not {text!r}"
        )
    return values


def calibration_config(
    *,
    bias: Path | None,
    darks: Path | None,
    flats: Path | None,
    dark_flats: Path | None,
    master_bias: Path | None,
    master_dark: Path | None,
    master_flat: Path | None,
    master_dark_flat: Path | None,
    masters_dir: Path | None,
    dark_optimize: bool,
    cosmetic: bool,
    cosmetic_sigma: float,
    light_outliers: bool,
    bad_pixel_map: Path | None,
    cosmic_rays: bool,
    cfa: CfaOption | None,
    debayer: DebayerOption,
    white_balance: str,
    neutralize: bool,
    memory: float | None,
):  # noqa: ANN201 - the config type is imported lazily
    """Build a CalibrationConfig from command-line values (shared with ``stack``)."""
    from skystack.config import CalibrationConfig, MasterSources

    sources = MasterSources(
        bias=_frames(bias),
        darks=_frames(darks),
        flats=_frames(flats),
        dark_flats=_frames(dark_flats),
        master_bias=master_bias,
        master_dark=master_dark,
        master_flat=master_flat,
        master_dark_flat=master_dark_flat,
        library=masters_dir,
    )
    return CalibrationConfig(
        masters=sources,
        dark_optimize=dark_optimize,
        cosmetic=cosmetic,
        cosmetic_sigma=cosmetic_sigma,
        light_outliers=light_outliers,
        bad_pixel_map=bad_pixel_map,
        cosmic_rays=cosmic_rays,
        cfa=cfa.value if cfa is not None else None,  # type: ignore[arg-type]
        debayer=debayer.value,  # type: ignore[arg-type]
        white_balance=_multipliers(white_balance),
        neutralize_background=neutralize,
        memory_bytes=int(memory * (1 << 30)) if memory else None,
    )


def calibrate_command(
    lights: list[Path] = typer.Argument(..., help="Light frames: files, folders or globs."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    bias: Path = typer.Option(None, "--bias", help="Folder of bias (offset) frames."),
    darks: Path = typer.Option(None, "--darks", help="Folder of dark frames."),
    flats: Path = typer.Option(None, "--flats", help="Folder of flat frames."),
    dark_flats: Path = typer.Option(None, "--dark-flats", help="Folder of dark-flat frames."),
    master_bias: Path = typer.Option(None, "--master-bias", help="A ready master bias."),
    master_dark: Path = typer.Option(None, "--master-dark", help="A ready master dark."),
    master_flat: Path = typer.Option(None, "--master-flat", help="A ready master flat."),
    master_dark_flat: Path = typer.Option(
        None, "--master-dark-flat", help="A ready master dark-flat."
    ),
    masters_dir: Path = typer.Option(
        None,
        "--masters",
        help="A library folder of masters, picked by size, exposure, ISO/gain and temperature.",
    ),
    dark_optimize: bool = typer.Option(
        False, "--dark-optimize", help="Fit the dark's scale to each light (uncooled cameras)."
    ),
    cosmetic: bool = typer.Option(
        True, "--cosmetic/--no-cosmetic", help="Replace hot/cold pixels found in the masters."
    ),
    cosmetic_sigma: float = typer.Option(5.0, "--cosmetic-sigma", help="Hot/cold threshold (σ)."),
    light_outliers: bool = typer.Option(
        False, "--light-outliers", help="Also replace single-pixel outliers found in each light."
    ),
    bad_pixel_map: Path = typer.Option(
        None, "--bad-pixel-map", help="Image (non-zero = bad) or text file of 'x y' lines."
    ),
    cosmic_rays: bool = typer.Option(
        False, "--cosmic-rays", help="Remove cosmic rays (mono data, L.A.Cosmic)."
    ),
    cfa: CfaOption = typer.Option(None, "--cfa", help="Bayer pattern, overriding the files."),
    debayer: DebayerOption = typer.Option(
        DebayerOption.none, "--debayer", help="Demosaic the calibrated frames."
    ),
    white_balance: str = typer.Option(
        "none", "--white-balance", help="none, camera (raw files) or multipliers R,G,B."
    ),
    neutralize: bool = typer.Option(
        False, "--neutralize", help="Neutralise the background colour after debayering."
    ),
    memory: float = typer.Option(None, "--memory", help="Memory budget in GB for masters."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT_DIR."),
) -> int:
    """Calibrate light frames with bias, dark and flat frames (or masters).

    Writes OUT_DIR/<light>.fits (float32) per light and the masters it made under
    OUT_DIR/masters/. Lights stay Bayer mosaics unless --debayer is given. An interrupted run
    resumes when the same command is run again.
    """
    from skystack.cli._console import progress_reporter
    from skystack.io import find_images
    from skystack.pipeline.calibration import calibrate_files

    config = calibration_config(
        bias=bias, darks=darks, flats=flats, dark_flats=dark_flats, master_bias=master_bias,
        master_dark=master_dark, master_flat=master_flat, master_dark_flat=master_dark_flat,
        masters_dir=masters_dir, dark_optimize=dark_optimize, cosmetic=cosmetic,
        cosmetic_sigma=cosmetic_sigma, light_outliers=light_outliers, bad_pixel_map=bad_pixel_map,
        cosmic_rays=cosmic_rays, cfa=cfa, debayer=debayer, white_balance=white_balance,
        neutralize=neutralize, memory=memory,
    )  # fmt: skip
    paths = find_images(lights)
    with progress_reporter("calibrate") as progress:
        run = calibrate_files(paths, output, config, overwrite=overwrite, progress=progress)
    for path in run.masters:
        print(f"wrote {path}")
    print(f"wrote {len(run.outputs)} calibrated frames to {run.out_dir}")
    for path, reason in run.skipped:
        print(f"skipped {path}: {reason}")
    return 0
