"""``skystack enhance IN -o OUT``: finish a stacked image into a picture."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

__all__ = ["register", "enhance_command", "parse_white_balance", "parse_curves", "parse_ghs"]


class BackgroundOption(StrEnum):
    poly = "poly"
    rbf = "rbf"
    tiles = "tiles"
    none = "none"


class BackgroundModeOption(StrEnum):
    subtract = "subtract"
    divide = "divide"


class StretchOption(StrEnum):
    auto = "auto"
    asinh = "asinh"
    ghs = "ghs"
    linear = "linear"
    none = "none"


class StarsOption(StrEnum):
    enhance = "enhance"
    reduce = "reduce"
    none = "none"


class SharpenOption(StrEnum):
    wavelet = "wavelet"
    unsharp = "unsharp"
    log = "log"
    deconv = "deconv"
    none = "none"


class DenoiseOption(StrEnum):
    wavelet = "wavelet"
    none = "none"


def register(app: typer.Typer) -> None:
    """Add the ``enhance`` command to ``app``."""
    app.command("enhance")(enhance_command)


def enhance_command(
    source: Path = typer.Argument(..., help="Stacked image (FITS, TIFF, PNG, JPEG, XISF)."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output: .tif (16-bit), .fits (32-bit float), .png, .jpg..."
    ),
    jpeg: Path = typer.Option(None, "--jpeg", help="Also write this 8-bit JPEG."),
    background: BackgroundOption = typer.Option(
        BackgroundOption.poly,
        "--background",
        help="Sky background model: poly (polynomial), rbf (thin-plate splines), tiles, none.",
    ),
    degree: int = typer.Option(2, "--degree", help="Degree of the poly background (1-4)."),
    background_mode: BackgroundModeOption = typer.Option(
        BackgroundModeOption.subtract,
        "--background-mode",
        help="subtract (light pollution) or divide (vignetting).",
    ),
    save_background: Path = typer.Option(
        None, "--save-background", help="Write the fitted background model to this file."
    ),
    neutralize: bool = typer.Option(
        True, "--neutralize/--no-neutralize", help="Make the sky background neutral grey."
    ),
    white_balance: str = typer.Option(
        None,
        "--white-balance",
        help="stars (average star colour made white), none, or multipliers R,G,B. "
        "Default: stars; none for 8-bit (JPEG) input.",
    ),
    stretch: StretchOption = typer.Option(
        None,
        "--stretch",
        help="auto (screen transfer function), asinh, ghs, linear, none (stay linear). "
        "Default: auto; none for 8-bit (JPEG) input, which is already stretched.",
    ),
    target_background: float = typer.Option(
        0.2,
        "--target-background",
        help="Sky brightness after the stretch (0-1), unless --asinh or --ghs D= is given.",
    ),
    asinh_stretch: float = typer.Option(
        None, "--asinh", help="Strength of --stretch asinh (default: from --target-background)."
    ),
    ghs: str = typer.Option(
        None,
        "--ghs",
        help="Parameters of --stretch ghs as D=5,b=2,SP=0.01,LP=0,HP=1 (default D: from "
        "--target-background; SP: the sky level).",
    ),
    curves: str = typer.Option(
        None, "--curves", help="A final curve through points x,y, e.g. '0,0 0.3,0.4 1,1'."
    ),
    stars: StarsOption = typer.Option(
        None,
        "--stars",
        help="enhance (dim stars boosted more than bright ones), reduce, none. "
        "Default: enhance, or none with --stretch none.",
    ),
    stars_amount: float = typer.Option(0.5, "--stars-amount", help="Strength of --stars (0-1)."),
    sharpen: SharpenOption = typer.Option(
        None,
        "--sharpen",
        help="wavelet, unsharp, log (Laplacian of Gaussian), deconv (Richardson-Lucy with the "
        "stars' PSF), none. Default: wavelet, or none with --stretch none.",
    ),
    sharpen_amount: float = typer.Option(
        1.0, "--sharpen-amount", help="Strength of --sharpen (1 = the method's default)."
    ),
    denoise: DenoiseOption = typer.Option(
        None,
        "--denoise",
        help="wavelet noise reduction or none. Default: wavelet, or none with --stretch none.",
    ),
    denoise_strength: float = typer.Option(
        0.7, "--denoise-strength", help="Strength of --denoise (0-1)."
    ),
    saturation: float = typer.Option(
        None,
        "--saturation",
        help="Colour saturation factor (1 = unchanged). Default 1.3, or 1 with --stretch none.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> int:
    """Finish a stacked image: background, colour, stretch, stars, sharpening, noise.

    Works on any stacked image (skystack's, DeepSkyStacker's Autosave.tif, Siril's FITS).
    With no options: polynomial background extraction, neutral background and star-based
    white balance, auto stretch, wavelet noise reduction, dim-star enhancement, wavelet
    sharpening of the object and a saturation boost. --stretch none keeps the data linear
    and runs only the background and colour steps unless others are asked for.
    """
    from skystack._memory import reuse_freed_memory
    from skystack.cli._console import progress_reporter
    from skystack.config import EnhanceConfig
    from skystack.pipeline.enhance import enhance_file

    reuse_freed_memory()

    config = EnhanceConfig(
        background=background.value,  # type: ignore[arg-type]
        background_degree=degree,
        background_mode=background_mode.value,  # type: ignore[arg-type]
        neutralize=neutralize,
        white_balance=None if white_balance is None else parse_white_balance(white_balance),
        stretch=None if stretch is None else stretch.value,  # type: ignore[arg-type]
        target_background=target_background,
        asinh_stretch=asinh_stretch,
        ghs=parse_ghs(ghs) if ghs else EnhanceConfig().ghs,
        curves=parse_curves(curves) if curves else (),
        stars=None if stars is None else stars.value,  # type: ignore[arg-type]
        stars_amount=stars_amount,
        sharpen=None if sharpen is None else sharpen.value,  # type: ignore[arg-type]
        sharpen_amount=sharpen_amount,
        denoise=None if denoise is None else denoise.value,  # type: ignore[arg-type]
        denoise_strength=denoise_strength,
        saturation=saturation,
    )
    with progress_reporter(f"enhance {source.name}") as progress:
        run = enhance_file(
            source,
            output,
            config,
            jpeg=jpeg,
            save_background=save_background,
            overwrite=overwrite,
            progress=progress,
        )
    for line in run.summary:
        print(line)
    written = ", ".join(str(path) for path in run.written)
    print(f"wrote {written} in {run.seconds:.1f} s")
    return 0


def parse_white_balance(text: str) -> str | tuple[float, float, float]:
    """``stars``, ``none`` or ``R,G,B`` multipliers (positive numbers)."""
    from skystack.errors import ConfigError

    value = text.strip().lower()
    if value in ("stars", "none"):
        return value
    try:
        numbers = tuple(float(part) for part in value.split(","))
    except ValueError:
        numbers = ()
    if len(numbers) != 3 or not all(n > 0 for n in numbers):
        raise ConfigError(
            f"--white-balance must be stars, none or three positive multipliers R,G,B, "
            f"not {text!r}"
        )
    return numbers  # type: ignore[return-value]


def parse_curves(text: str) -> tuple[tuple[float, float], ...]:
    """Points ``x,y x,y ...`` in [0, 1] with increasing x."""
    from skystack.errors import ConfigError

    points = []
    for pair in text.replace(";", " ").split():
        try:
            x, y = (float(v) for v in pair.split(","))
        except ValueError:
            raise ConfigError(
                f"--curves takes points x,y separated by spaces, not {pair!r}"
            ) from None
        points.append((x, y))
    if len(points) < 2:
        raise ConfigError("--curves needs at least two points x,y")
    return tuple(points)


_GHS_KEYS = ("d", "b", "sp", "lp", "hp")


def parse_ghs(text: str) -> tuple[float | None, float, float | None, float, float]:
    """``D=5,b=2,SP=0.01,LP=0,HP=1`` (any subset; the rest keep their defaults)."""
    from skystack.config import EnhanceConfig
    from skystack.errors import ConfigError

    values: list[float | None] = list(EnhanceConfig().ghs)
    for item in text.split(","):
        key, _, number = item.partition("=")
        key = key.strip().lower()
        if key not in _GHS_KEYS or not number.strip():
            raise ConfigError(
                f"--ghs takes D=,b=,SP=,LP=,HP= separated by commas, not {item.strip()!r}"
            )
        try:
            values[_GHS_KEYS.index(key)] = float(number)
        except ValueError:
            raise ConfigError(f"--ghs {key.upper()} must be a number, not {number!r}") from None
    return tuple(values)  # type: ignore[return-value]
