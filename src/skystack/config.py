"""Settings of each pipeline stage as frozen dataclasses (only :mod:`skystack.pipeline` uses them).

Every field has the default a user gets with no option; the command line builds these from its
flags, and recipes (TOML, :mod:`skystack.recipe`) load and dump a :class:`PipelineConfig`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from skystack._typing import CfaPattern

__all__ = [
    "DebayerChoice",
    "WhiteBalanceChoice",
    "MasterSources",
    "CalibrationConfig",
    "RegistrationConfig",
    "StackConfig",
    "EnhanceConfig",
    "PipelineConfig",
    "BackgroundChoice",
    "StretchChoice",
    "StarsChoice",
    "SharpenChoice",
    "DenoiseChoice",
]

DebayerChoice: TypeAlias = Literal["none", "bilinear", "vng", "ea", "superpixel"]
WhiteBalanceChoice: TypeAlias = Literal["none", "camera"]


@dataclass(frozen=True)
class MasterSources:
    """Where calibration masters come from: frames to combine, ready masters, or a library.

    A ready master (``master_*``) wins over frames of the same kind; ``library`` is a folder of
    masters picked by kind, size, exposure, ISO/gain and temperature for the lights.
    """

    bias: tuple[Path, ...] = ()
    darks: tuple[Path, ...] = ()
    flats: tuple[Path, ...] = ()
    dark_flats: tuple[Path, ...] = ()
    master_bias: Path | None = None
    master_dark: Path | None = None
    master_flat: Path | None = None
    master_dark_flat: Path | None = None
    library: Path | None = None

    @property
    def empty(self) -> bool:
        """True when no calibration source is given at all."""
        return not any(
            (self.bias, self.darks, self.flats, self.dark_flats, self.master_bias,
             self.master_dark, self.master_flat, self.master_dark_flat, self.library)
        )  # fmt: skip


@dataclass(frozen=True)
class CalibrationConfig:
    """How lights are calibrated, corrected and debayered.

    Attributes
    ----------
    masters : MasterSources
        Calibration frames and masters.
    master_method : {"sigma-clip", "mean", "median"}
        How masters are combined; ``master_kappa`` is the clipping threshold.
    dark_optimize : bool
        Fit the dark's scale to each light (uncooled cameras) instead of the exposure ratio.
    cosmetic : bool
        Replace hot pixels found in the master dark and cold pixels found in the master flat.
    cosmetic_sigma : float
        Detection threshold of hot/cold pixels, in standard deviations.
    light_outliers : bool
        Also find and replace single-pixel outliers in each light (no darks needed).
    bad_pixel_map : Path or None
        An image (non-zero = bad) or a text file of ``x y`` pairs of pixels to replace.
    cosmic_rays : bool
        Remove cosmic rays (L.A.Cosmic via astroscrappy; mono data).
    cfa : str or None
        Bayer pattern overriding the files' metadata.
    debayer : str
        Demosaicing method of the written frames, or ``"none"`` to keep the mosaic.
    white_balance : "none", "camera" or three multipliers
        White balance applied in CFA space before debayering.
    neutralize_background : bool
        Make the background neutral grey after debayering.
    memory_bytes : int or None
        Memory budget for building masters (default: a share of the free RAM).
    jobs : int or None
        Lights calibrated at once in worker processes; None picks the number of CPUs for
        large sets (about 100 MB of input or more) and 1 (in-process) otherwise.
    """

    masters: MasterSources = field(default_factory=MasterSources)
    master_method: Literal["sigma-clip", "mean", "median"] = "sigma-clip"
    master_kappa: float = 3.0
    dark_optimize: bool = False
    cosmetic: bool = True
    cosmetic_sigma: float = 5.0
    light_outliers: bool = False
    bad_pixel_map: Path | None = None
    cosmic_rays: bool = False
    cfa: CfaPattern | None = None
    debayer: DebayerChoice = "none"
    white_balance: WhiteBalanceChoice | tuple[float, float, float] = "none"
    neutralize_background: bool = False
    memory_bytes: int | None = None
    jobs: int | None = None


@dataclass(frozen=True)
class RegistrationConfig:
    """How frames are measured, selected and aligned to the reference.

    Attributes
    ----------
    method : {"stars", "phase", "orb", "none"}
        Star asterism matching (falls back to phase correlation, then ORB features, when the
        reference itself has too few stars: the Moon, the Sun, landscapes), or one method only.
    transform : {"similarity", "affine", "homography"}
        Model fitted to the matched stars.
    reference : Path or None
        The reference frame; by default the frame with the best quality score.
    select_percent : float
        Keep the best-scoring percentage of the frames.
    max_fwhm : float or None
        Reject frames whose median star FWHM (px) is larger.
    threshold : float
        Star detection threshold, in background noise sigmas.
    min_stars : int
        Below this many stars detection retries with a matched filter and lower thresholds;
        a reference with fewer is not a star field (fallback methods are used).
    max_stars : int
        Brightest stars kept per frame for the final fit.
    control_points : int
        Brightest stars forming the matching triangles.
    allow_mirror : bool
        Accept (and report) frames that are mirror images of the reference.
    interpolation : {"lanczos", "bicubic", "bilinear"}
        Resampling of the warped frames.
    clamp : bool
        Lanczos ringing guard.
    debayer : DebayerChoice
        Demosaicing of CFA frames before detection and warping.
    cfa : str or None
        Bayer pattern overriding the files'.
    seed : int
        Seed of the matcher's random proposal draws.
    jobs : int or None
        Frames processed at once in worker processes; None picks the number of CPUs for large
        sets (about 100 MB of input or more) and 1 (in-process) otherwise.
    drizzle : float
        1 resamples each frame onto the reference grid (``interpolation``); 1.5, 2 or 3 drizzle
        it onto that grid scaled by this factor (Bayer frames straight from the mosaic).
    pixfrac : float
        Drizzle drop size as a fraction of the input pixel.
    """

    method: Literal["stars", "phase", "orb", "none"] = "stars"
    transform: Literal["similarity", "affine", "homography"] = "similarity"
    reference: Path | None = None
    select_percent: float = 100.0
    max_fwhm: float | None = None
    threshold: float = 5.0
    min_stars: int = 15
    max_stars: int = 500
    control_points: int = 50
    allow_mirror: bool = True
    interpolation: Literal["lanczos", "bicubic", "bilinear"] = "lanczos"
    clamp: bool = True
    debayer: DebayerChoice = "bilinear"
    cfa: CfaPattern | None = None
    seed: int = 0
    jobs: int | None = None
    drizzle: float = 1.0
    pixfrac: float = 1.0


@dataclass(frozen=True)
class StackConfig:
    """How registered frames are combined.

    Attributes
    ----------
    combine : {"mean", "median", "sum", "max", "min"}
        Combination of the values kept at each pixel (``mean`` is weighted by ``weights``).
    reject : {"none", "percentile", "sigma", "mad", "winsorized", "linear-fit", "minmax", "gesd"}
        Per-pixel outlier rejection along the frame axis.
    low, high : float
        Rejection thresholds (sigmas; fractions for percentile; counts for minmax).
    normalize : {"none", "additive", "multiplicative", "additive-scale", "multiplicative-scale"}
        Matching of each frame's background level (and spread) to the reference frame's.
    weights : {"none", "exposure", "noise", "stars", "fwhm"}
        Frame weights of the mean.
    trail_mask : bool
        Find satellite and plane trails in each frame and leave their pixels out.
    memory_bytes : int or None
        Memory budget of the combine (default: a safe share of the free RAM).
    keep_cache : bool
        Keep the calibrated and registered frames after stacking.
    maps : bool
        Also write the coverage (frames combined) and low/high rejection maps.
    scheduler : str
        ``threads`` (this process), ``processes`` (a local Dask cluster) or the address
        ``tcp://HOST:PORT`` of a Dask scheduler: where the strips are combined.
    """

    combine: Literal["mean", "median", "sum", "max", "min"] = "mean"
    reject: Literal[
        "none", "percentile", "sigma", "mad", "winsorized", "linear-fit", "minmax", "gesd"
    ] = "winsorized"
    low: float = 3.0
    high: float = 3.0
    normalize: Literal[
        "none", "additive", "multiplicative", "additive-scale", "multiplicative-scale"
    ] = "additive-scale"
    weights: Literal["none", "exposure", "noise", "stars", "fwhm"] = "noise"
    trail_mask: bool = True
    memory_bytes: int | None = None
    keep_cache: bool = False
    maps: bool = False
    scheduler: str = "threads"


BackgroundChoice: TypeAlias = Literal["poly", "rbf", "tiles", "none"]
StretchChoice: TypeAlias = Literal["auto", "asinh", "ghs", "linear", "none"]
StarsChoice: TypeAlias = Literal["enhance", "reduce", "none"]
SharpenChoice: TypeAlias = Literal["wavelet", "unsharp", "log", "deconv", "none"]
DenoiseChoice: TypeAlias = Literal["wavelet", "none"]


@dataclass(frozen=True, kw_only=True)
class EnhanceConfig:
    """How a stacked image is finished by ``skystack enhance``.

    The steps run in this order: background extraction, background neutralisation and white
    balance, deconvolution (all linear), stretch, noise reduction, stars, sharpening,
    saturation, curves. ``None`` for ``stars``, ``sharpen``, ``denoise`` and ``saturation``
    means "the default for this stretch": on for a stretched picture, off when ``stretch`` is
    ``"none"`` (the output then stays linear; see :meth:`resolved`).

    Attributes
    ----------
    background : {"poly", "rbf", "tiles", "none"}
        Model of the sky background (light pollution, vignetting) fitted to samples away from
        stars and the object.
    background_degree : int
        Degree of the polynomial model (1-4).
    background_mode : {"subtract", "divide"}
        Subtract the model (gradients) or divide by it (vignetting).
    neutralize : bool
        Make the sky background neutral grey (colour images).
    white_balance : "stars", "none", (r, g, b) or None
        White balance from the average colour of the stars, none, or given multipliers
        (None: stars for linear input, none for display-referred input).
    stretch : {"auto", "asinh", "ghs", "linear", "none"} or None
        Non-linear stretch to a picture; ``none`` keeps the data as they are (None: auto for
        linear input, none for display-referred input).
    target_background : float
        Brightness of the sky after the stretch (0-1; auto, and asinh and ghs unless their
        strength is given).
    asinh_stretch : float or None
        Strength of the asinh stretch; None chooses it so the sky lands on
        ``target_background``.
    ghs : (D, b, SP, LP, HP)
        Generalised hyperbolic stretch parameters; D None chooses the stretch so the sky lands
        on ``target_background``, SP None puts the symmetry point at the sky background.
    curves : tuple of (x, y)
        Control points of a final curve (empty: none).
    stars : {"enhance", "reduce", "none"} or None
        Boost dim stars more than bright ones, shrink the stars, or leave them.
    stars_amount : float
        Strength of the star step (0-1).
    sharpen : {"wavelet", "unsharp", "log", "deconv", "none"} or None
        Sharpening of the object (the sky background and star cores are protected).
    sharpen_amount : float
        Strength of the sharpening (1 = the method's default).
    denoise : {"wavelet", "none"} or None
        Wavelet noise reduction, stronger on the background than on the object.
    denoise_strength : float
        Strength of the noise reduction (0-1).
    saturation : float or None
        Colour saturation factor (1 = unchanged).
    """

    background: BackgroundChoice = "poly"
    background_degree: int = 2
    background_mode: Literal["subtract", "divide"] = "subtract"
    neutralize: bool = True
    white_balance: Literal["stars", "none"] | tuple[float, float, float] | None = None
    stretch: StretchChoice | None = None
    target_background: float = 0.2
    asinh_stretch: float | None = None
    ghs: tuple[float | None, float, float | None, float, float] = (None, 2.0, None, 0.0, 1.0)
    curves: tuple[tuple[float, float], ...] = ()
    stars: StarsChoice | None = None
    stars_amount: float = 0.5
    sharpen: SharpenChoice | None = None
    sharpen_amount: float = 1.0
    denoise: DenoiseChoice | None = None
    denoise_strength: float = 0.7
    saturation: float | None = None

    def resolved(self, *, display_referred: bool = False) -> EnhanceConfig:
        """The settings with every "default" (None) made explicit.

        A linear input (a stack) is stretched (``auto``) and white-balanced on its stars by
        default. A display-referred input (an 8-bit JPEG, PNG or TIFF, already stretched and
        colour-balanced by whoever made it) is not stretched again nor re-balanced unless
        asked. The picture steps (noise reduction, stars, sharpening, saturation) are on for a
        picture -- stretched, or display-referred -- and off for linear output.
        """
        stretch = self.stretch if self.stretch is not None else (
            "none" if display_referred else "auto"
        )
        picture = stretch != "none" or display_referred
        balance = self.white_balance if self.white_balance is not None else (
            "none" if display_referred else "stars"
        )
        return dataclasses.replace(
            self,
            stretch=stretch,
            white_balance=balance,
            stars=self.stars if self.stars is not None else ("enhance" if picture else "none"),
            sharpen=self.sharpen if self.sharpen is not None else (
                "wavelet" if picture else "none"
            ),
            denoise=self.denoise if self.denoise is not None else (
                "wavelet" if picture else "none"
            ),
            saturation=self.saturation if self.saturation is not None else (
                1.3 if picture else 1.0
            ),
        )


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """Every setting of ``skystack process``: one config per stage, as a recipe holds them.

    The calibration frames and masters (``calibration.masters``) and the reference frame are
    not part of it: ``process`` finds them per group of lights.
    """

    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    stack: StackConfig = field(default_factory=StackConfig)
    enhance: EnhanceConfig = field(default_factory=lambda: EnhanceConfig().resolved())
