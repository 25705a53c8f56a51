"""``skystack enhance``: chain the post-processing steps of :mod:`skystack.enhance`.

:func:`enhance` works on arrays (no I/O); :func:`enhance_file` reads a stacked image, runs it and
writes the outputs atomically. The order follows what PixInsight and Siril users do: the linear
steps first (background extraction, colour calibration, deconvolution), then the stretch, then
the steps that act on the picture (noise reduction, stars, sharpening, saturation, curves).
Stars are detected once, on the linear image after background extraction, and that one list
serves the white balance, the PSF, the star mask and the star step. Parts of a stack that are
shallower than the rest (fewer frames overlap there) are noisier: star detection, the
sharpening mask and noise reduction see the image divided by its relative noise map
(:func:`skystack.enhance.noise.relative_noise`), so one threshold fits everywhere.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from skystack._typing import Image, ProgressCallback
from skystack.config import EnhanceConfig
from skystack.detect.stars import StarTable
from skystack.errors import ColorCalibrationError, ConfigError
from skystack.frame import Frame
from skystack.io import read, write
from skystack.io._atomic import check_writable

__all__ = ["EnhanceResult", "EnhanceRun", "enhance", "enhance_file", "prepare_input"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class EnhanceResult:
    """What :func:`enhance` made.

    Attributes
    ----------
    image : ndarray float32
        The finished image: in [0, 1] when stretched, linear (input's scale) otherwise.
    background : ndarray float32 or None
        The fitted background model (None with ``background="none"``).
    stars : StarTable
        The stars found on the linear image.
    white_balance : (r, g, b) or None
        The multipliers applied.
    timings : tuple of (step, seconds)
        Time spent per step.
    """

    image: Image
    background: Image | None
    stars: StarTable
    white_balance: tuple[float, float, float] | None
    timings: tuple[tuple[str, float], ...] = field(default=())


@dataclass(frozen=True, eq=False)
class EnhanceRun:
    """What :func:`enhance_file` wrote."""

    written: tuple[Path, ...]
    result: EnhanceResult
    seconds: float
    summary: tuple[str, ...]


class _Steps:
    """Times the steps and reports them to a progress callback."""

    def __init__(self, names: list[str], progress: ProgressCallback | None) -> None:
        self.names = names
        self.progress = progress
        self.timings: list[tuple[str, float]] = []

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        self.timings.append((name, seconds))
        _log.debug("enhance: %s took %.2f s", name, seconds)
        if self.progress is not None:
            self.progress(len(self.timings), len(self.names), name)


def _planned_steps(config: EnhanceConfig, colour: bool) -> list[str]:
    steps = []
    if config.background != "none":
        steps.append("background")
    steps.append("stars")
    if colour and (config.neutralize or config.white_balance != "none"):
        steps.append("colour")
    if config.sharpen == "deconv":
        steps.append("deconvolution")
    if config.stretch != "none":
        steps.append("stretch")
    if config.denoise != "none":
        steps.append("denoise")
    if config.stars != "none":
        steps.append(f"stars {config.stars}")
    if config.sharpen not in ("none", "deconv"):
        steps.append("sharpen")
    if colour and config.saturation != 1.0:
        steps.append("saturation")
    if config.curves:
        steps.append("curves")
    return steps


def enhance(
    image: Image,
    config: EnhanceConfig | None = None,
    *,
    display_referred: bool = False,
    progress: ProgressCallback | None = None,
) -> EnhanceResult:
    """Finish a linear stacked image into a picture.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, 3)
        A linear stacked image (full scale 1.0); NaN marks pixels without data (they come out
        black).
    config : EnhanceConfig, optional
        The steps and their settings; default: everything a user gets with no options.
    display_referred : bool
        The image is already a picture (8-bit JPEG/PNG/TIFF): by default it is neither
        stretched nor white-balanced again (see :meth:`EnhanceConfig.resolved`).
    progress : callable, optional
        ``progress(done, total, step)`` after each step.

    Returns
    -------
    EnhanceResult
    """
    from skystack.enhance import background as bg
    from skystack.enhance import color, denoise, sharpen, stars, stretch
    from skystack.enhance.noise import relative_noise

    config = (config or EnhanceConfig()).resolved(display_referred=display_referred)
    picture = config.stretch != "none" or display_referred
    data = np.asarray(image, dtype=np.float32)
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[2] != 3):
        raise ConfigError(f"enhance needs an (H, W) or (H, W, 3) image, not shape {data.shape}")
    colour = data.ndim == 3
    missing = ~np.isfinite(data).all(axis=-1) if colour else ~np.isfinite(data)
    if missing.any():
        data = _fill_missing(data, missing)
    steps = _Steps(_planned_steps(config, colour), progress)

    model = None
    if config.background != "none":
        with steps.step("background"):
            data, fitted = bg.extract_background(
                data,
                method=config.background,
                mode=config.background_mode,
                degree=config.background_degree,
                mask=missing if missing.any() else None,
            )
            model = fitted.model
    with steps.step("stars"):
        # Shallow parts of a stack (corners of rotated or dithered sets) are noisier: the
        # steps that compare the image with its noise see it divided by the noise's variation.
        relative = relative_noise(data)
        star_table = _detect_stars(data, relative)
        protect = None
        if config.sharpen != "none" or config.denoise != "none":
            # Where the object and stars are (1) and where only sky (0): sharpening acts on
            # the first, noise reduction mostly on the second.
            protect = sharpen.signal_mask(_even(data, relative))
    multipliers = None
    if "colour" in steps.names:
        with steps.step("colour"):
            if config.white_balance == "stars":
                try:
                    multipliers = tuple(color.star_white_balance(data, star_table))
                except ColorCalibrationError as err:
                    _log.warning("white balance skipped: %s", err)
            elif config.white_balance != "none":
                multipliers = tuple(float(m) for m in config.white_balance)
            balanced = _calibrate_colour(data, multipliers, neutralize=config.neutralize)
            if len(star_table):
                balanced = color.smooth_star_colour(
                    balanced, stars.star_mask(balanced, star_table)
                )
            if multipliers is not None:
                # In a stack, frames clip at slightly different places: a core is unreliable
                # from about half the clipping level on.
                balanced = color.neutralize_clipped(balanced, data, start=0.5, end=0.8)
            data = balanced
    if config.sharpen == "deconv":
        with steps.step("deconvolution"):
            psf = sharpen.measure_psf(data, stars=star_table)
            data = sharpen.deconvolve(data, psf, mask=protect)
    if config.stretch != "none":
        with steps.step("stretch"):
            data = _stretch(data, config)
            if colour:
                data = color.desaturate_highlights(data)
            # The stretch changes the noise's spread: compressed in the bright object, where
            # shot noise is high, raised in the sky. Measure it again for the steps that follow.
            relative = relative_noise(data, min_ratio=1.0)
    if config.denoise != "none":
        # After the stretch: a stretch measured on denoised data would be steeper (its black
        # point follows the noise) and bring out the blotches that denoising leaves. The
        # object is denoised too, less than the sky, so it does not stand out as a noisy patch.
        with steps.step("denoise"):
            data = _uneven(
                denoise.wavelet_denoise(
                    _even(data, relative),
                    strength=config.denoise_strength,
                    mask=np.float32(1.0) - np.float32(0.5) * protect,
                ),
                relative,
            )
    if config.stars != "none":
        with steps.step(f"stars {config.stars}"):
            if config.stars == "enhance":
                data = stars.boost_stars(data, star_table, amount=config.stars_amount)
            else:
                data = stars.reduce_stars(data, star_table, amount=config.stars_amount)
    if config.sharpen not in ("none", "deconv"):
        with steps.step("sharpen"):
            protect = protect * (1.0 - stars.star_mask(data, star_table))
            data = _uneven(
                _sharpen(_even(data, relative), config, protect.astype(np.float32)), relative
            )
    if colour and config.saturation != 1.0:
        with steps.step("saturation"):
            data = color.saturation(data, config.saturation - 1.0)
    if config.curves:
        with steps.step("curves"):
            data = stretch.curves(data, config.curves)
    if picture:
        data = np.clip(data, 0.0, 1.0, out=data)
    if missing.any():
        data[missing] = 0.0
    return EnhanceResult(
        image=data.astype(np.float32, copy=False),
        background=model,
        stars=star_table,
        white_balance=multipliers,  # type: ignore[arg-type]
        timings=tuple(steps.timings),
    )


def _even(data: Image, relative: Image | None) -> Image:
    """``data`` divided by the relative noise map: noise of one level everywhere."""
    if relative is None:
        return data
    return data / (relative[..., None] if data.ndim == 3 else relative)


def _uneven(data: Image, relative: Image | None) -> Image:
    """Undo :func:`_even`."""
    if relative is None:
        return data
    return (data * (relative[..., None] if data.ndim == 3 else relative)).astype(np.float32)


def _detect_stars(data: Image, relative: Image | None) -> StarTable:
    """Stars found on the noise-evened image, with fluxes and peaks in the image's units."""
    from skystack.enhance.stars import detect_stars

    found = detect_stars(_even(data, relative))
    if relative is None or len(found) == 0:
        return found
    rows = np.clip(np.rint(found.y).astype(int), 0, relative.shape[0] - 1)
    cols = np.clip(np.rint(found.x).astype(int), 0, relative.shape[1] - 1)
    factor = relative[rows, cols].astype(np.float64)
    return StarTable(
        x=found.x,
        y=found.y,
        flux=found.flux * factor,
        peak=found.peak * factor,
        fwhm=found.fwhm,
        eccentricity=found.eccentricity,
        saturated=found.saturated,
    )


def _calibrate_colour(
    data: Image, multipliers: tuple[float, ...] | None, *, neutralize: bool
) -> Image:
    """Neutral sky and white balance in one pass: ``k_c (x_c - sky_c) + sky``.

    The sky of every channel is brought to the green channel's level (background
    neutralisation), and only the light above the sky is multiplied by the white balance:
    multiplying whole channels would tint the sky by the multipliers (a grey sky times
    (1.1, 1, 1.9) turns blue); Siril's colour calibration also balances the objects' light
    only. Without ``neutralize`` each channel keeps its own sky level.
    """
    import cv2

    from skystack.color.balance import background_levels

    gains = np.ones(3) if multipliers is None else np.asarray(multipliers, dtype=np.float64)
    if multipliers is None and not neutralize:
        return data
    # 300 000 samples fix a sky level to ~0.003 sigma: plenty, and 7x faster than the default.
    sky = background_levels(data, max_samples=300_000)
    target = np.full(3, sky[1]) if neutralize else sky
    matrix = np.zeros((3, 4), dtype=np.float64)
    matrix[np.arange(3), np.arange(3)] = gains
    matrix[:, 3] = target - gains * sky
    # cv2.transform applies the 3x4 affine colour matrix in one threaded pass.
    return cv2.transform(data, matrix.astype(np.float32))


def _fill_missing(data: Image, missing: np.ndarray) -> Image:
    """Pixels without data take the median of the rest, so no step sees NaN."""
    out = data.copy()
    valid = ~missing
    if not valid.any():
        raise ConfigError("the image has no finite pixels")
    if out.ndim == 3:
        out[missing] = np.median(data[valid], axis=0)
    else:
        out[missing] = np.median(data[valid])
    return np.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)


def _stretch(data: Image, config: EnhanceConfig) -> Image:
    from skystack.enhance import stretch

    method = config.stretch
    target = config.target_background
    if method == "auto":
        return stretch.auto_stretch(data, target_background=target)
    if method == "asinh":
        return stretch.asinh_stretch(data, stretch=config.asinh_stretch, target_background=target)
    if method == "ghs":
        d, b, sp, lp, hp = config.ghs
        return stretch.ghs(data, D=d, b=b, SP=sp, LP=lp, HP=hp, target_background=target)
    return stretch.linear_stretch(data)


def _sharpen(data: Image, config: EnhanceConfig, protect: Image) -> Image:
    """Sharpen the luminance and add its new detail to every channel (colours unchanged)."""
    if data.ndim == 3:
        from skystack.detect.stars import luminance

        grey = luminance(data)
        detail = _sharpen(grey, config, protect) - grey
        return data + detail[..., None]
    from skystack.enhance import sharpen

    amount = config.sharpen_amount
    if config.sharpen == "wavelet":
        # sharpen_amount scales each layer's boost above 1 (1: the method's default gains).
        gains = [1.0 + amount * (g - 1.0) for g in sharpen.DEFAULT_WAVELET_GAINS]
        # Only detail above 3 sigma of the (evened) noise is boosted: the object's own noise
        # must not turn into grain.
        return sharpen.wavelet_sharpen(data, gains=gains, noise_threshold=3.0, mask=protect)
    if config.sharpen == "unsharp":
        return sharpen.unsharp_mask(data, amount=amount, mask=protect)
    return sharpen.log_sharpen(data, amount=2.0 * amount, mask=protect)


def prepare_input(frame: Frame) -> tuple[Image, bool, list[str]]:
    """A frame's data as an (H, W) or (H, W, 3) image, whether it is display-referred, and notes.

    Undebayered mosaics are debayered (bilinear). Display-referred data (JPEG, 8-bit PNG or
    TIFF) are already a picture; they are kept as they are and flagged.
    """
    data = frame.data
    notes: list[str] = []
    meta = frame.meta
    if data.ndim == 2 and meta.cfa is not None:
        from skystack.color.debayer import debayer

        data = debayer(data, pattern=meta.cfa, method="bilinear")
        notes.append(f"debayered the {meta.cfa} mosaic (bilinear)")
    display_referred = meta.format == "jpeg" or (
        meta.bit_depth == 8 and meta.format in ("png", "tiff")
    )
    if display_referred:
        notes.append("8-bit display data: not stretched or re-balanced unless asked")
    return np.asarray(data, dtype=np.float32), display_referred, notes


def enhance_file(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: EnhanceConfig | None = None,
    *,
    jpeg: str | os.PathLike[str] | None = None,
    save_background: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> EnhanceRun:
    """Read a stacked image, :func:`enhance` it and write the outputs.

    Parameters
    ----------
    source : path-like
        The stacked image (any readable format; never modified).
    output : path-like
        Output file, format from the extension: TIFF 16-bit, FITS/XISF 32-bit float (with the
        settings as HISTORY), PNG 16-bit, JPEG 8-bit.
    config : EnhanceConfig, optional
        The steps; default: everything a user gets with no options.
    jpeg : path-like, optional
        Also write an 8-bit JPEG.
    save_background : path-like, optional
        Also write the fitted background model.
    overwrite : bool
        Replace existing outputs; otherwise :class:`~skystack.errors.OutputExistsError`
        before any work is done.
    progress : callable, optional
        ``progress(done, total, step)``.

    Returns
    -------
    EnhanceRun
    """
    start = time.perf_counter()
    config = config or EnhanceConfig()
    source, output = Path(source), Path(output)
    targets = [output] + [Path(p) for p in (jpeg, save_background) if p is not None]
    _check_targets(source, targets, overwrite=overwrite)
    if jpeg is not None and Path(jpeg).suffix.lower() not in (".jpg", ".jpeg"):
        raise ConfigError(f"{jpeg}: --jpeg needs a .jpg or .jpeg file name")
    if save_background is not None and config.background == "none":
        raise ConfigError("--save-background needs a background model (not --background none)")
    read_start = time.perf_counter()
    frame = read(source)
    data, display_referred, notes = prepare_input(frame)
    read_seconds = time.perf_counter() - read_start
    for note in notes:
        _log.info("%s: %s", source.name, note)
    result = enhance(data, config, display_referred=display_referred, progress=progress)
    config = config.resolved(display_referred=display_referred)
    history = [f"skystack enhance {source.name}"] + [
        f"{key}={value}" for key, value in asdict(config).items()
    ]
    meta = frame.meta
    # A picture is display data: no display stretch again when it is written 8-bit.
    picture = config.stretch != "none" or display_referred
    stretch_mode = "linear" if picture else "auto"
    out_frame = Frame(result.image, meta)
    write_start = time.perf_counter()
    written = [
        write(out_frame, output, stretch=stretch_mode, history=history, overwrite=overwrite)
    ]
    if jpeg is not None:
        written.append(write(out_frame, jpeg, stretch=stretch_mode, overwrite=overwrite))
    if save_background is not None and result.background is not None:
        written.append(write(Frame(result.background, meta), save_background, overwrite=overwrite))
    io_seconds = (read_seconds, time.perf_counter() - write_start)
    summary = _summary(result, config, notes, io_seconds)
    return EnhanceRun(
        written=tuple(written),
        result=result,
        seconds=time.perf_counter() - start,
        summary=tuple(summary),
    )


def _check_targets(source: Path, targets: list[Path], *, overwrite: bool) -> None:
    for target in targets:
        if target.resolve() == source.resolve():
            raise ConfigError(f"{target}: the output would replace the input; choose another name")
        check_writable(target, overwrite=overwrite)
    if len({t.resolve() for t in targets}) != len(targets):
        raise ConfigError("the outputs must have different file names")


def _summary(
    result: EnhanceResult, config: EnhanceConfig, notes: list[str], io_seconds: tuple[float, float]
) -> list[str]:
    lines = list(notes)
    lines.append(f"stars found: {len(result.stars)}")
    if result.white_balance is not None:
        r, g, b = result.white_balance
        lines.append(f"white balance: R {r:.3f}  G {g:.3f}  B {b:.3f}")
    steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in result.timings)
    lines.append(f"steps: read {io_seconds[0]:.1f} s, {steps}, write {io_seconds[1]:.1f} s")
    return lines
