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


# Options shared with ``skystack stack``.
BIAS_OPTION = typer.Option(None, "--bias", help="Folder of bias (offset) frames.")
DARKS_OPTION = typer.Option(None, "--darks", help="Folder of dark frames.")
FLATS_OPTION = typer.Option(None, "--flats", help="Folder of flat frames.")
DARK_FLATS_OPTION = typer.Option(None, "--dark-flats", help="Folder of dark-flat frames.")
MASTER_BIAS_OPTION = typer.Option(None, "--master-bias", help="A ready master bias.")
MASTER_DARK_OPTION = typer.Option(None, "--master-dark", help="A ready master dark.")
MASTER_FLAT_OPTION = typer.Option(None, "--master-flat", help="A ready master flat.")
MASTER_DARK_FLAT_OPTION = typer.Option(None, "--master-dark-flat", help="A ready master dark-flat.")
MASTERS_DIR_OPTION = typer.Option(
    None,
    "--masters",
    help="A library folder of masters, picked by size, exposure, ISO/gain and temperature.",
)
DARK_OPTIMIZE_OPTION = typer.Option(
    False, "--dark-optimize", help="Fit the dark's scale to each light (uncooled cameras)."
)
COSMETIC_OPTION = typer.Option(
    True, "--cosmetic/--no-cosmetic", help="Replace hot/cold pixels found in the masters."
)
COSMETIC_SIGMA_OPTION = typer.Option(5.0, "--cosmetic-sigma", help="Hot/cold threshold (σ).")
LIGHT_OUTLIERS_OPTION = typer.Option(
    False, "--light-outliers", help="Also replace single-pixel outliers found in each light."
)
BAD_PIXEL_MAP_OPTION = typer.Option(
    None, "--bad-pixel-map", help="Image (non-zero = bad) or text file of 'x y' lines."
)
COSMIC_RAYS_OPTION = typer.Option(
    False, "--cosmic-rays", help="Remove cosmic rays (mono data, L.A.Cosmic)."
)
CFA_OPTION = typer.Option(None, "--cfa", help="Bayer pattern, overriding the files.")
DEBAYER_OPTION = typer.Option(
    DebayerOption.none, "--debayer", help="Demosaic the calibrated frames."
)
WHITE_BALANCE_OPTION = typer.Option(
    "none", "--white-balance", help="none, camera (raw files) or multipliers R,G,B."
)
NEUTRALIZE_OPTION = typer.Option(
    False, "--neutralize", help="Neutralise the background colour after debayering."
)


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
    bias: Path = BIAS_OPTION,
    darks: Path = DARKS_OPTION,
    flats: Path = FLATS_OPTION,
    dark_flats: Path = DARK_FLATS_OPTION,
    master_bias: Path = MASTER_BIAS_OPTION,
    master_dark: Path = MASTER_DARK_OPTION,
    master_flat: Path = MASTER_FLAT_OPTION,
    master_dark_flat: Path = MASTER_DARK_FLAT_OPTION,
    masters_dir: Path = MASTERS_DIR_OPTION,
    dark_optimize: bool = DARK_OPTIMIZE_OPTION,
    cosmetic: bool = COSMETIC_OPTION,
    cosmetic_sigma: float = COSMETIC_SIGMA_OPTION,
    light_outliers: bool = LIGHT_OUTLIERS_OPTION,
    bad_pixel_map: Path = BAD_PIXEL_MAP_OPTION,
    cosmic_rays: bool = COSMIC_RAYS_OPTION,
    cfa: CfaOption = CFA_OPTION,
    debayer: DebayerOption = DEBAYER_OPTION,
    white_balance: str = WHITE_BALANCE_OPTION,
    neutralize: bool = NEUTRALIZE_OPTION,
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
