"""``skystack register FRAMES... -o OUT_DIR``: frames aligned to a reference, and a JSON report."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from skystack.cli.calibrate import CfaOption, DebayerOption

__all__ = ["register", "register_command", "registration_config"]


class RegisterOption(StrEnum):
    stars = "stars"
    phase = "phase"
    orb = "orb"
    none = "none"


class TransformOption(StrEnum):
    similarity = "similarity"
    affine = "affine"
    homography = "homography"


class InterpolationOption(StrEnum):
    lanczos = "lanczos"
    bicubic = "bicubic"
    bilinear = "bilinear"


# Options shared with ``skystack stack``.
METHOD_OPTION = typer.Option(
    RegisterOption.stars,
    "--register",
    help="stars (asterism matching, with phase/ORB fallbacks for the Moon and landscapes), "
    "phase, orb, or none.",
)
TRANSFORM_OPTION = typer.Option(
    TransformOption.similarity, "--transform", help="Model fitted to the matched stars."
)
REFERENCE_OPTION = typer.Option(
    None, "--reference", help="Reference frame (default: the best quality score)."
)
SELECT_OPTION = typer.Option("100", "--select", help="Keep the best PERCENT of frames (80 or 80%).")
MAX_FWHM_OPTION = typer.Option(None, "--max-fwhm", help="Reject frames with a larger FWHM (px).")
THRESHOLD_OPTION = typer.Option(5.0, "--threshold", help="Star detection threshold (σ).")
INTERPOLATION_OPTION = typer.Option(
    InterpolationOption.lanczos, "--interpolation", help="Resampling of the warped frames."
)
CLAMP_OPTION = typer.Option(True, "--clamp/--no-clamp", help="Lanczos ringing guard around stars.")
JOBS_OPTION = typer.Option(
    None, "--jobs", help="Frames processed at once (default: one per CPU for large sets)."
)


def register(app: typer.Typer) -> None:
    """Add the ``register`` command to ``app``."""
    app.command("register")(register_command)


def registration_config(
    *,
    method: RegisterOption,
    transform: TransformOption,
    reference: Path | None,
    select: str,
    max_fwhm: float | None,
    threshold: float,
    interpolation: InterpolationOption,
    clamp: bool,
    debayer: DebayerOption,
    cfa: CfaOption | None,
    jobs: int | None = None,
):  # noqa: ANN201 - the config type is imported lazily
    """Build a RegistrationConfig from command-line values (shared with ``stack``)."""
    from skystack.config import RegistrationConfig
    from skystack.detect.quality import parse_percent
    from skystack.errors import ConfigError

    try:
        percent = parse_percent(select)
    except ValueError as err:
        raise ConfigError(f"--select: {err}") from err
    if max_fwhm is not None and not max_fwhm > 0:
        raise ConfigError(f"--max-fwhm must be a positive number of pixels, not {max_fwhm}")
    if jobs is not None and jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, not {jobs}")
    if not threshold > 0:
        raise ConfigError(f"--threshold must be a positive number of sigmas, not {threshold}")
    return RegistrationConfig(
        method=method.value,  # type: ignore[arg-type]
        transform=transform.value,  # type: ignore[arg-type]
        reference=reference,
        select_percent=percent,
        max_fwhm=max_fwhm,
        threshold=threshold,
        interpolation=interpolation.value,  # type: ignore[arg-type]
        clamp=clamp,
        debayer=debayer.value if debayer.value != "none" else "none",  # type: ignore[arg-type]
        cfa=cfa.value if cfa is not None else None,  # type: ignore[arg-type]
        jobs=jobs,
    )


def register_command(
    frames: list[Path] = typer.Argument(..., help="Frames: files, folders or globs."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder."),
    method: RegisterOption = METHOD_OPTION,
    transform: TransformOption = TRANSFORM_OPTION,
    reference: Path = REFERENCE_OPTION,
    select: str = SELECT_OPTION,
    max_fwhm: float = MAX_FWHM_OPTION,
    threshold: float = THRESHOLD_OPTION,
    interpolation: InterpolationOption = INTERPOLATION_OPTION,
    clamp: bool = CLAMP_OPTION,
    debayer: DebayerOption = typer.Option(
        DebayerOption.bilinear, "--debayer", help="Demosaicing of Bayer (CFA) frames."
    ),
    cfa: CfaOption = typer.Option(None, "--cfa", help="Bayer pattern, overriding the files."),
    jobs: int = JOBS_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT_DIR."),
) -> int:
    """Align frames to a reference frame.

    Detects the stars of every frame, measures its quality (stars, FWHM, background, noise),
    picks the best frame as reference, and writes each frame warped onto the reference grid
    as OUT_DIR/<frame>.fits (float32, NaN where it has no data), with OUT_DIR/registration.json
    listing every frame's quality, transform, matched stars and residual, or why it was
    rejected. An interrupted run resumes when the same command is run again.
    """
    from skystack.cli._console import progress_reporter
    from skystack.io import find_images
    from skystack.pipeline.registration import register_files

    config = registration_config(
        method=method, transform=transform, reference=reference, select=select,
        max_fwhm=max_fwhm, threshold=threshold, interpolation=interpolation, clamp=clamp,
        debayer=debayer, cfa=cfa, jobs=jobs,
    )  # fmt: skip
    paths = find_images(frames)
    with progress_reporter("register") as progress:
        run = register_files(paths, output, config, overwrite=overwrite, progress=progress)
    for row in run.rows:
        print(_row_line(row, row.path == run.reference))
    print(f"reference: {run.reference}")
    print(f"wrote {len(run.outputs)} registered frames and {run.report.name} to {run.out_dir}")
    for row in run.rejected:
        print(f"rejected {row.path}: {_without_path(row.reason, row.path)}")
    return 0


def _row_line(row, is_reference: bool) -> str:  # noqa: ANN001 - FrameRow is imported lazily
    """One line per frame: quality, and the match or why there is none."""
    parts = [row.path.name]
    quality = row.quality
    if quality is not None:
        parts.append(f"stars {quality.n_stars:5d}  FWHM {quality.fwhm:5.2f} px")
    match = row.match
    if is_reference:
        parts.append("reference")
    elif row.accepted and match is not None:
        transform = match.transform
        dx, dy = transform.shift
        detail = f"{match.method}: shift ({dx:+.1f}, {dy:+.1f}) rot {transform.rotation_deg:+.2f}°"
        if match.method == "stars":
            detail += f"  matched {match.n_inliers}  rms {match.rms_px:.3f} px"
        elif match.method == "orb":
            detail += f"  {match.n_inliers} features agree"
        if match.mirrored:
            detail += "  MIRRORED"
        parts.append(detail)
    else:
        parts.append("rejected")
    return "  ".join(parts)


def _without_path(reason: str | None, path: Path) -> str:
    """The reason without a leading copy of the path (the line names the file already)."""
    text = reason or "rejected"
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text
