"""``skystack stack LIGHTS... -o OUT.fits``: calibrate, register and stack."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from skystack.cli import calibrate as cal
from skystack.cli import register as reg

__all__ = ["register", "stack_command"]


class CombineOption(StrEnum):
    mean = "mean"
    median = "median"
    sum = "sum"
    max = "max"
    min = "min"


class RejectOption(StrEnum):
    none = "none"
    sigma = "sigma"
    mad = "mad"
    winsorized = "winsorized"
    linear_fit = "linear-fit"
    percentile = "percentile"
    minmax = "minmax"
    gesd = "gesd"


class NormalizeOption(StrEnum):
    none = "none"
    additive = "additive"
    multiplicative = "multiplicative"
    additive_scale = "additive-scale"
    multiplicative_scale = "multiplicative-scale"


class WeightsOption(StrEnum):
    none = "none"
    exposure = "exposure"
    noise = "noise"
    stars = "stars"
    fwhm = "fwhm"


class StackDebayerOption(StrEnum):
    auto = "auto"
    bilinear = "bilinear"
    vng = "vng"
    ea = "ea"
    superpixel = "superpixel"
    none = "none"


def register(app: typer.Typer) -> None:
    """Add the ``stack`` command to ``app``."""
    app.command("stack")(stack_command)


def stack_command(
    lights: list[Path] = typer.Argument(..., help="Light frames: files, folders or globs."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Stacked image (.fits, .tif, .xisf); a .json sidecar beside."
    ),
    bias: Path = cal.BIAS_OPTION,
    darks: Path = cal.DARKS_OPTION,
    flats: Path = cal.FLATS_OPTION,
    dark_flats: Path = cal.DARK_FLATS_OPTION,
    master_bias: Path = cal.MASTER_BIAS_OPTION,
    master_dark: Path = cal.MASTER_DARK_OPTION,
    master_flat: Path = cal.MASTER_FLAT_OPTION,
    master_dark_flat: Path = cal.MASTER_DARK_FLAT_OPTION,
    masters_dir: Path = cal.MASTERS_DIR_OPTION,
    dark_optimize: bool = cal.DARK_OPTIMIZE_OPTION,
    cosmetic: bool = cal.COSMETIC_OPTION,
    cosmetic_sigma: float = cal.COSMETIC_SIGMA_OPTION,
    light_outliers: bool = cal.LIGHT_OUTLIERS_OPTION,
    bad_pixel_map: Path = cal.BAD_PIXEL_MAP_OPTION,
    cosmic_rays: bool = cal.COSMIC_RAYS_OPTION,
    cfa: cal.CfaOption = cal.CFA_OPTION,
    white_balance: str = cal.WHITE_BALANCE_OPTION,
    combine: CombineOption = typer.Option(
        CombineOption.mean, "--combine", help="How the kept values of each pixel are combined."
    ),
    reject: RejectOption = typer.Option(
        RejectOption.winsorized, "--reject", help="Per-pixel outlier rejection."
    ),
    low: float = typer.Option(
        None,
        "--low",
        help="Low rejection threshold: σ (3 for winsorized); a fraction of the median for "
        "percentile; a count for minmax; the largest outlier fraction for gesd.",
    ),
    high: float = typer.Option(
        None, "--high", help="High rejection threshold (σ; fraction; count; gesd significance)."
    ),
    normalize: NormalizeOption = typer.Option(
        NormalizeOption.additive_scale, "--normalize", help="Background matching before combining."
    ),
    weights: WeightsOption = typer.Option(
        WeightsOption.noise, "--weights", help="Frame weights of the mean."
    ),
    trail_mask: bool = typer.Option(
        True, "--trail-mask/--no-trail-mask", help="Find satellite trails and leave them out."
    ),
    select: str = reg.SELECT_OPTION,
    max_fwhm: float = reg.MAX_FWHM_OPTION,
    reference: Path = reg.REFERENCE_OPTION,
    method: reg.RegisterOption = reg.METHOD_OPTION,
    transform: reg.TransformOption = reg.TRANSFORM_OPTION,
    threshold: float = reg.THRESHOLD_OPTION,
    interpolation: reg.InterpolationOption = reg.INTERPOLATION_OPTION,
    clamp: bool = reg.CLAMP_OPTION,
    debayer: StackDebayerOption = typer.Option(
        StackDebayerOption.auto,
        "--debayer",
        help="Demosaicing of Bayer frames (auto = bilinear; none keeps the mosaic).",
    ),
    jobs: int = reg.JOBS_OPTION,
    drizzle: float = typer.Option(
        1.0, "--drizzle", help="Drizzle onto a grid this many times finer (1.5, 2, 3; 1 = off)."
    ),
    pixfrac: float = typer.Option(
        1.0, "--pixfrac", help="Drizzle drop size as a fraction of the input pixel."
    ),
    scheduler: str = typer.Option(
        "threads",
        "--scheduler",
        help="Where strips are combined: threads, processes or a Dask scheduler tcp://HOST:PORT.",
    ),
    memory: float = typer.Option(None, "--memory", help="Memory budget in GB."),
    keep_cache: bool = typer.Option(
        False, "--keep-cache", help="Keep the calibrated and registered frames."
    ),
    maps: bool = typer.Option(
        False, "--maps", help="Also write the coverage and low/high rejection maps."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> int:
    """Calibrate, register and stack light frames into one linear image.

    With calibration frames (--bias/--darks/--flats or masters) the lights are calibrated
    first; then stars are found, every frame measured and aligned to the best one, and the
    frames combined pixel by pixel with outlier rejection (winsorized sigma clipping by
    default), background normalisation and noise weights, a strip of rows at a time so memory
    stays bounded. Writes OUT (32-bit float for FITS) and OUT.json listing every frame.
    """
    import dataclasses

    from skystack.cli._console import progress_reporter
    from skystack.config import StackConfig
    from skystack.errors import ConfigError
    from skystack.io import find_images
    from skystack.pipeline.stacking import stack_files

    calibration = cal.calibration_config(
        bias=bias, darks=darks, flats=flats, dark_flats=dark_flats, master_bias=master_bias,
        master_dark=master_dark, master_flat=master_flat, master_dark_flat=master_dark_flat,
        masters_dir=masters_dir, dark_optimize=dark_optimize, cosmetic=cosmetic,
        cosmetic_sigma=cosmetic_sigma, light_outliers=light_outliers, bad_pixel_map=bad_pixel_map,
        cosmic_rays=cosmic_rays, cfa=cfa, debayer=cal.DebayerOption.none,
        white_balance=white_balance, neutralize=False, memory=memory,
    )  # fmt: skip
    registration_debayer = (
        cal.DebayerOption.bilinear
        if debayer == StackDebayerOption.auto
        else cal.DebayerOption(debayer.value)
    )
    registration = reg.registration_config(
        method=method, transform=transform, reference=reference, select=select,
        max_fwhm=max_fwhm, threshold=threshold, interpolation=interpolation, clamp=clamp,
        debayer=registration_debayer, cfa=cfa, jobs=jobs,
    )  # fmt: skip
    if not 1.0 <= drizzle <= 4.0:
        raise ConfigError(f"--drizzle must be between 1 and 4, not {drizzle}")
    if not 0.0 < pixfrac <= 1.0:
        raise ConfigError(f"--pixfrac must be in (0, 1], not {pixfrac}")
    registration = dataclasses.replace(registration, drizzle=drizzle, pixfrac=pixfrac)
    from skystack.stack.distributed import check_scheduler, probe_scheduler

    scheduler = check_scheduler(scheduler)
    probe_scheduler(scheduler)  # a wrong address fails now, not after registration
    if memory is not None and not memory > 0:
        raise ConfigError(f"--memory must be a positive number of GB, not {memory}")
    from skystack.stack.rejection import REJECT_DEFAULTS

    default_low, default_high = REJECT_DEFAULTS[reject.value]  # type: ignore[index]
    stack = StackConfig(
        combine=combine.value,  # type: ignore[arg-type]
        reject=reject.value,  # type: ignore[arg-type]
        low=default_low if low is None else low,
        high=default_high if high is None else high,
        normalize=normalize.value,  # type: ignore[arg-type]
        weights=weights.value,  # type: ignore[arg-type]
        trail_mask=trail_mask,
        memory_bytes=int(memory * (1 << 30)) if memory else None,
        keep_cache=keep_cache,
        maps=maps,
        scheduler=scheduler,
    )
    paths = find_images(lights)
    with progress_reporter("stack") as progress:
        run = stack_files(
            paths, output, calibration=calibration, registration=registration, stack=stack,
            overwrite=overwrite, progress=progress,
        )  # fmt: skip
    for row in run.frames:
        if not row["accepted"]:
            print(f"skipped {row['path']}: {reg._without_path(row['reason'], Path(row['path']))}")
    print(f"reference: {run.reference}")
    print(f"stacked {run.n_stacked} of {len(run.frames)} lights into {run.output}")
    print(f"wrote {run.sidecar}")
    for path in run.maps:
        print(f"wrote {path}")
    return 0
