"""A deep-sky capture session: configuration, the drawn session, and pure frame renderers.

:func:`make_session` draws everything that is fixed for a session from one seed: the sky (stars
and extended objects, defined in the reference frame = light 0), the camera (:mod:`.sensor`) and
the plan of each light (pointing transform, seeing, sky background, transparency, satellite
trail, cosmic rays). The ``render_*`` functions then produce any frame on demand; each frame's
noise comes from its own seed stream, so frames can be rendered in any order, alone or in
parallel, and always come out the same.

Image formation of a light (electrons, then ADU)::

    sky_i(x, y)  = transparency_i * [stars + objects](T_i(x, y))  +  b_i * G(x, y) * sky colour
                   (+ trail);  Bayer: each site takes its colour times its quantum efficiency
    e(x, y)      = Poisson(flat(x, y) * sky_i(x, y) + dark(x, y) * t) + read noise (+ cosmic rays)
    ADU(x, y)    = quantise(bias(x, y) + e / gain), saturating at 65535

``T_i`` maps light ``i``'s pixel coordinates to the reference frame; stars are rendered at the
exact inverse-mapped truth positions; extended objects are resampled through ``T_i``. The sky
gradient ``G``, vignetting, dust, bias pattern and hot pixels are fixed to the sensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from skystack._typing import CFA_PATTERNS, XY, CfaPattern, Image
from skystack.sim._util import (
    check_frame_size,
    check_positive,
    child_rng,
    clip_line_to_box,
    config_error,
    line_profile,
    resolve_seed,
    rotation_about,
)
from skystack.sim.psf import (
    moffat_peak_fraction,
    moffat_pixel_fwhm,
    render_stars,
    stamp_radii,
)
from skystack.sim.scene import (
    Cutout,
    galaxy_cutout,
    gaussian_sigma_between,
    nebula_cutout,
    warp_cutout,
)
from skystack.sim.sensor import Sensor, expose, make_sensor, mosaic
from skystack.sim.stars import StarField, draw_temperatures, planck_rgb, power_law_fluxes

__all__ = [
    "SessionConfig",
    "ExtendedKind",
    "Trail",
    "LightPlan",
    "Session",
    "make_session",
    "render_sky",
    "render_scene",
    "render_light",
    "render_bias",
    "render_dark",
    "render_flat",
    "render_dark_flat",
    "flat_signal",
    "light_star_positions",
]

ExtendedKind = Literal["galaxy", "nebula", "both", "none"]

_KEY_PLAN, _KEY_SENSOR, _KEY_SCENE = 1, 2, 3
_KEY_FRAME = {"light": 10, "bias": 11, "dark": 12, "flat": 13, "dark-flat": 14}


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    """Everything that shapes a simulated deep-sky session. All defaults give a small, fast one.

    Attributes
    ----------
    width, height : int
        Sensor size in pixels.
    n_lights, n_bias, n_darks, n_flats, n_dark_flats : int
        Number of frames of each kind.
    exposure_s : float
        Light exposure (s).
    dark_exposure_s : float or None
        Dark exposure (s); None means equal to ``exposure_s``.
    flat_exposure_s : float
        Flat and dark-flat exposure (s).
    star_count : int
        Stars per reference-frame area (more are placed in the margin the pointing shifts reach).
    star_slope : float
        Number counts ``N(>F) ∝ F ** -star_slope``.
    bright_star_count : int
        Brightest stars, placed in the reference frame, peaking at 0.4-1.6 x saturation.
    star_temperature_k, star_temperature_dex : float
        Median and log-normal spread of stellar temperatures (colours).
    extended : {"galaxy", "nebula", "both", "none"}
        Extended object(s) near the centre.
    galaxy_size : float
        Disk half-light radius as a fraction of ``min(width, height)``.
    galaxy_brightness : float
        Central surface brightness of the galaxy's disk as a multiple of ``sky_level_e`` (the
        bulge adds a brighter core).
    nebula_brightness : float
        Peak surface brightness of the nebula as a multiple of ``sky_level_e``.
    sky_level_e : float
        Mean sky background, electrons per pixel per light exposure.
    sky_gradient : (gx, gy)
        Linear gradient: fractional change of the sky from the centre to the right / bottom edge.
    sky_gradient_quadratic : float
        Fractional change from the centre to the edge midpoints, radially symmetric.
    sky_variation : float
        Frame-to-frame sky level spread (uniform, fractional).
    sky_color : (r, g, b)
        Sky background colour, normalised to mean 1 on use.
    psf_beta : float
        Moffat beta.
    fwhm_px : (min, max)
        Range of per-light FWHM (px), drawn uniformly.
    oversample : int
        Sub-pixel samples per axis for star cores.
    shift_px : float
        Maximum pointing offset per axis between lights (px), drawn uniformly (light 0: none).
    rotation_deg : float
        Field rotation accumulated from the first to the last light (linear in time).
    meridian_flip : bool
        Lights from ``n_lights // 2`` on are turned by another 180 degrees.
    trail_lights : tuple of int
        Light indices (0-based) crossed by a satellite trail.
    trail_brightness : float
        Trail peak as a multiple of the light's sky background.
    cloudy_lights : tuple of int
        Lights through thin clouds: transparency 0.3-0.6, sky 1.5-2.5 x brighter.
    cosmic_ray_rate : float
        Mean cosmic-ray hits per light per megapixel.
    bayer : {"RGGB", "BGGR", "GRBG", "GBRG"} or None
        One-shot colour mosaic, None for mono.
    qe : (r, g, b)
        Relative quantum efficiency of the Bayer sites.
    gain : float
        Electrons per ADU (16-bit output units).
    read_noise_e : float
        Read noise, electrons rms.
    bias_adu, bias_column_std_adu : float
        Bias offset and the rms of its fixed column pattern (ADU).
    dark_current_e_per_s : float
        Median dark current (e-/s).
    amp_glow_e_per_s : float
        Amplifier glow: extra dark current at the top-right corner, fading over a fifth of the
        shorter side (0 for none).
    hot_pixel_fraction, cold_pixel_fraction : float
        Fractions of hot (warm, hot, saturated) and dead pixels.
    prnu : float
        Pixel response non-uniformity (rms, fractional).
    vignetting : float
        Fraction of light lost in the farthest corner (``cos^4`` law).
    dust_count : int
        Dust shadows (donuts).
    flat_level : float
        Flat frames' signal at the optical centre as a fraction of full scale.
    bit_depth : int
        ADC bits (8-16), values left-aligned in 16 bits.
    temperature_c, gain_setting : float
        Written to the headers (CCD-TEMP, GAIN).
    filter, target : str or None
        Written to the headers.
    start_time : str
        ISO time (UTC) of the first light.
    """

    width: int = 512
    height: int = 384
    n_lights: int = 12
    n_bias: int = 5
    n_darks: int = 5
    n_flats: int = 5
    n_dark_flats: int = 0
    exposure_s: float = 60.0
    dark_exposure_s: float | None = None
    flat_exposure_s: float = 2.0
    star_count: int = 300
    star_slope: float = 0.8
    bright_star_count: int = 3
    star_temperature_k: float = 5200.0
    star_temperature_dex: float = 0.12
    extended: ExtendedKind = "galaxy"
    galaxy_size: float = 0.06
    galaxy_brightness: float = 1.0
    nebula_brightness: float = 1.0
    sky_level_e: float = 400.0
    sky_gradient: tuple[float, float] = (0.15, 0.05)
    sky_gradient_quadratic: float = 0.05
    sky_variation: float = 0.05
    sky_color: tuple[float, float, float] = (1.15, 1.0, 0.85)
    psf_beta: float = 3.0
    fwhm_px: tuple[float, float] = (2.6, 3.6)
    oversample: int = 3
    shift_px: float = 12.0
    rotation_deg: float = 0.5
    meridian_flip: bool = False
    trail_lights: tuple[int, ...] = ()
    trail_brightness: float = 10.0
    cloudy_lights: tuple[int, ...] = ()
    cosmic_ray_rate: float = 0.0
    bayer: CfaPattern | None = None
    qe: tuple[float, float, float] = (0.8, 1.0, 0.7)
    gain: float = 1.0
    read_noise_e: float = 3.0
    bias_adu: float = 800.0
    bias_column_std_adu: float = 3.0
    dark_current_e_per_s: float = 0.05
    amp_glow_e_per_s: float = 2.0
    hot_pixel_fraction: float = 3e-4
    cold_pixel_fraction: float = 5e-5
    prnu: float = 0.01
    vignetting: float = 0.3
    dust_count: int = 3
    flat_level: float = 0.45
    bit_depth: int = 16
    temperature_c: float = -10.0
    gain_setting: float = 100.0
    filter: str | None = None
    target: str | None = "skystack-sim"
    start_time: str = "2025-03-01T21:00:00"

    def __post_init__(self) -> None:
        check_frame_size(self)
        if self.n_lights < 1:
            raise config_error(self, "n_lights", "at least 1")
        for name in (
            "n_bias",
            "n_darks",
            "n_flats",
            "n_dark_flats",
            "star_count",
            "dust_count",
            "bright_star_count",
        ):
            if getattr(self, name) < 0:
                raise config_error(self, name, "a count >= 0")
        check_positive(self, ("exposure_s", "flat_exposure_s", "gain", "sky_level_e", "psf_beta"))
        if self.dark_exposure_s is not None and not self.dark_exposure_s > 0:
            raise config_error(self, "dark_exposure_s", "None or a positive number")
        if self.psf_beta <= 1.0:
            raise config_error(self, "psf_beta", "a number above 1")
        lo, hi = self.fwhm_px
        if not 0.5 <= lo <= hi:
            raise config_error(self, "fwhm_px", "(min, max) with 0.5 <= min <= max")
        if self.bayer is not None and self.bayer not in CFA_PATTERNS:
            raise config_error(self, "bayer", f"None or one of {CFA_PATTERNS}")
        if self.extended not in ("galaxy", "nebula", "both", "none"):
            raise config_error(self, "extended", "'galaxy', 'nebula', 'both' or 'none'")
        if not 8 <= self.bit_depth <= 16:
            raise config_error(self, "bit_depth", "8 to 16 bits")
        if not 0.0 <= self.vignetting < 1.0:
            raise config_error(self, "vignetting", "a fraction in [0, 1)")
        if not 0.0 < self.flat_level < 1.0:
            raise config_error(self, "flat_level", "a fraction in (0, 1)")
        if self.oversample < 1:
            raise config_error(self, "oversample", "at least 1")
        for name in ("trail_lights", "cloudy_lights"):
            for index in getattr(self, name):
                if not 0 <= index < self.n_lights:
                    raise config_error(self, name, f"light indices in 0..{self.n_lights - 1}")
        try:
            datetime.fromisoformat(self.start_time)
        except ValueError as err:
            raise config_error(
                self, "start_time", "an ISO date and time such as 2025-03-01T21:00:00"
            ) from err

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    @property
    def dark_exposure(self) -> float:
        """The dark exposure in seconds (``dark_exposure_s`` or ``exposure_s``)."""
        return float(self.dark_exposure_s if self.dark_exposure_s is not None else self.exposure_s)


@dataclass(frozen=True)
class Trail:
    """A satellite trail across one light.

    Attributes
    ----------
    light : int
        Light index.
    start, end : (x, y)
        Endpoints in the light's pixel coordinates (on the frame border).
    start_ref, end_ref : (x, y)
        The same endpoints in the reference frame.
    width_px : float
        FWHM of the Gaussian cross-section (px).
    peak_e : float
        Peak brightness along the trail, electrons per pixel (before flat field and transparency).
    """

    light: int
    start: tuple[float, float]
    end: tuple[float, float]
    start_ref: tuple[float, float]
    end_ref: tuple[float, float]
    width_px: float
    peak_e: float


@dataclass(frozen=True, eq=False)
class LightPlan:
    """What is fixed about one light before noise.

    Attributes
    ----------
    index : int
        Light index (0 is the reference).
    transform : ndarray (3, 3)
        Maps this light's pixel coordinates ``(x, y, 1)`` to the reference frame's.
    rotation_deg : float
        Rotation part of ``transform`` (about the frame centre).
    shift_px : (dx, dy)
        Translation added after the rotation.
    fwhm_px : float
        Moffat FWHM of the stars (the optical PSF).
    fwhm_pixel_px : float
        FWHM of the stars as pixels record them (after integration over the pixel area), what
        a fit of a point-sampled profile measures.
    background_e : float
        Sky level at the gradient's centre (e-/px per exposure), before the flat field.
    transparency : float
        Fraction of the astronomical signal getting through.
    cloudy : bool
        Whether the light is through clouds.
    trail : Trail or None
        A satellite trail.
    cosmic_rays : ndarray (K, 3)
        Hit pixels ``x, y, electrons``.
    date_obs : datetime
        Start of the exposure (UTC, naive).
    """

    index: int
    transform: npt.NDArray[np.float64]
    rotation_deg: float
    shift_px: tuple[float, float]
    fwhm_px: float
    fwhm_pixel_px: float
    background_e: float
    transparency: float
    cloudy: bool
    trail: Trail | None
    cosmic_rays: npt.NDArray[np.float64]
    date_obs: datetime


@dataclass(frozen=True, eq=False)
class Session:
    """A drawn session: config, seed, sky, camera and per-light plans. Render frames from it.

    Attributes
    ----------
    config : SessionConfig
    seed : int
        The entropy every random stream derives from.
    sensor : Sensor
    stars : StarField
        Stars in reference-frame coordinates.
    cutouts : tuple of Cutout
        Extended objects in the reference frame, convolved with ``cutout_fwhm``.
    lights : tuple of LightPlan
    scene_fwhm : float
        FWHM of the reference scene (the mean of the lights').
    star_region : (x0, y0, x1, y1)
        Reference-frame box the stars were drawn in.
    sky_pattern : ndarray float32
        Background shape on the sensor: gradient x sky colour (x QE at Bayer sites).
    """

    config: SessionConfig
    seed: int
    sensor: Sensor
    stars: StarField
    cutouts: tuple[Cutout, ...]
    lights: tuple[LightPlan, ...]
    scene_fwhm: float
    star_region: tuple[float, float, float, float]
    sky_pattern: Image
    _planes: tuple[Image, ...] = field(repr=False)

    def rng(self, kind: str, index: int) -> np.random.Generator:
        """The noise generator of frame ``index`` of ``kind`` ("light", "bias", "dark", ...)."""
        return child_rng(self.seed, _KEY_FRAME[kind], index)


def _gradient(config: SessionConfig) -> Image:
    height, width = config.shape
    u = ((np.arange(width, dtype=np.float32) - (width - 1) / 2.0) / (width / 2.0))[None, :]
    v = ((np.arange(height, dtype=np.float32) - (height - 1) / 2.0) / (height / 2.0))[:, None]
    gx, gy = config.sky_gradient
    q = config.sky_gradient_quadratic
    return (1.0 + gx * u + gy * v + q * (u * u + v * v)).astype(np.float32)


def _sky_color(config: SessionConfig) -> npt.NDArray[np.float64]:
    color = np.asarray(config.sky_color, dtype=np.float64)
    return color / color.mean()


def _plan(config: SessionConfig, seed: int) -> tuple[LightPlan, ...]:
    rng = child_rng(seed, _KEY_PLAN)
    n = config.n_lights
    height, width = config.shape
    center = ((width - 1) / 2.0, (height - 1) / 2.0)
    start = datetime.fromisoformat(config.start_time).replace(tzinfo=None)
    plans = []
    for i in range(n):
        rotation = config.rotation_deg * (i / (n - 1) if n > 1 else 0.0)
        if config.meridian_flip and n > 1 and i >= n // 2:
            rotation += 180.0
        shift = (0.0, 0.0) if i == 0 else tuple(rng.uniform(-config.shift_px, config.shift_px, 2))
        transform = rotation_about(center, rotation, shift)
        fwhm = float(rng.uniform(*config.fwhm_px))
        background = config.sky_level_e * float(
            rng.uniform(1.0 - config.sky_variation, 1.0 + config.sky_variation)
        )
        cloudy = i in config.cloudy_lights
        transparency = float(rng.uniform(0.95, 1.0))
        cloud_t = float(rng.uniform(0.3, 0.6))
        cloud_b = float(rng.uniform(1.5, 2.5))
        if cloudy:
            transparency = cloud_t
            background *= cloud_b
        trail = None
        point = (
            float(rng.uniform(0.2, 0.8) * (width - 1)),
            float(rng.uniform(0.2, 0.8) * (height - 1)),
        )
        angle = float(rng.uniform(0.0, math.pi))
        width_factor = float(rng.uniform(1.0, 1.5))
        if i in config.trail_lights:
            a, b = clip_line_to_box(point, angle, width, height)
            ref = np.array([[a[0], a[1], 1.0], [b[0], b[1], 1.0]]) @ transform.T
            trail = Trail(
                light=i,
                start=a,
                end=b,
                start_ref=(float(ref[0, 0]), float(ref[0, 1])),
                end_ref=(float(ref[1, 0]), float(ref[1, 1])),
                width_px=fwhm * width_factor,
                peak_e=config.trail_brightness * background,
            )
        rays = _cosmic_rays(config, rng)
        date = start + timedelta(seconds=i * (config.exposure_s + 5.0))
        plans.append(
            LightPlan(
                index=i,
                transform=transform,
                rotation_deg=float(rotation),
                shift_px=(float(shift[0]), float(shift[1])),
                fwhm_px=fwhm,
                fwhm_pixel_px=moffat_pixel_fwhm(fwhm, config.psf_beta),
                background_e=float(background),
                transparency=transparency,
                cloudy=cloudy,
                trail=trail,
                cosmic_rays=rays,
                date_obs=date,
            )
        )
    return tuple(plans)


def _cosmic_rays(config: SessionConfig, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    height, width = config.shape
    count = int(rng.poisson(config.cosmic_ray_rate * width * height / 1e6))
    rows: list[tuple[float, float, float]] = []
    for _ in range(count):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        energy = float(rng.uniform(800.0, 15000.0))
        length = int(rng.integers(1, 5))
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        pixels: dict[tuple[int, int], float] = {}
        for k in range(length):
            px = int(math.floor(x + k * math.cos(angle)))
            py = int(math.floor(y + k * math.sin(angle)))
            if 0 <= px < width and 0 <= py < height:
                pixels[(px, py)] = pixels.get((px, py), 0.0) + energy / length
        rows.extend((float(px), float(py), e) for (px, py), e in pixels.items())
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def _star_region(
    config: SessionConfig, plans: tuple[LightPlan, ...]
) -> tuple[float, float, float, float]:
    height, width = config.shape
    corners = np.array(
        [
            [-0.5, -0.5, 1],
            [width - 0.5, -0.5, 1],
            [-0.5, height - 0.5, 1],
            [width - 0.5, height - 0.5, 1],
        ]
    )
    pts = np.concatenate([corners @ p.transform.T for p in plans])
    margin = 4.0 * config.fwhm_px[1] + 4.0
    return (
        float(pts[:, 0].min() - margin),
        float(pts[:, 1].min() - margin),
        float(pts[:, 0].max() + margin),
        float(pts[:, 1].max() + margin),
    )


def _stars(
    config: SessionConfig, region: tuple[float, float, float, float], rng: np.random.Generator
) -> StarField:
    height, width = config.shape
    x0, y0, x1, y1 = region
    area_ratio = (x1 - x0) * (y1 - y0) / float(width * height)
    n_bright = min(config.bright_star_count, config.star_count)
    n_faint = max(int(round(config.star_count * area_ratio)) - n_bright, 0)
    gradient_max = (
        1.0 + sum(abs(g) for g in config.sky_gradient) + abs(config.sky_gradient_quadratic) * 2
    )
    headroom = (65535.0 - config.bias_adu) * config.gain - config.sky_level_e * gradient_max
    mean_fwhm = 0.5 * (config.fwhm_px[0] + config.fwhm_px[1])
    f_sat = max(headroom, 1.0) / moffat_peak_fraction(mean_fwhm, config.psf_beta)
    noise = math.sqrt(config.sky_level_e + config.read_noise_e**2)
    f_min = 0.8 * noise / moffat_peak_fraction(config.fwhm_px[1], config.psf_beta)
    f_max = max(0.4 * f_sat, 2.0 * f_min)
    faint = power_law_fluxes(n_faint, f_min=f_min, f_max=f_max, slope=config.star_slope, rng=rng)
    bright = f_sat * 10.0 ** rng.uniform(math.log10(0.4), math.log10(1.6), n_bright)
    fx = rng.uniform(x0, x1, n_faint)
    fy = rng.uniform(y0, y1, n_faint)
    bx = rng.uniform(0.05, 0.95, n_bright) * (width - 1)
    by = rng.uniform(0.05, 0.95, n_bright) * (height - 1)
    flux = np.concatenate([bright, faint])
    temperature = draw_temperatures(
        flux.size,
        median_k=config.star_temperature_k,
        spread_dex=config.star_temperature_dex,
        rng=rng,
    )
    order = np.argsort(-flux, kind="stable")
    return StarField(
        x=np.concatenate([bx, fx])[order],
        y=np.concatenate([by, fy])[order],
        flux=flux[order],
        temperature=temperature[order],
        rgb=planck_rgb(temperature[order]),
    )


def _cutouts(config: SessionConfig, fwhm: float, rng: np.random.Generator) -> tuple[Cutout, ...]:
    height, width = config.shape
    out = []
    # Draw every parameter whatever the choice, so the stars do not depend on `extended`.
    gal_center = (
        (0.5 + rng.uniform(-0.1, 0.1)) * (width - 1),
        (0.5 + rng.uniform(-0.1, 0.1)) * (height - 1),
    )
    gal_q = float(rng.uniform(0.35, 0.8))
    gal_pa = float(rng.uniform(0.0, 180.0))
    neb_center = (
        (0.5 + rng.uniform(-0.15, 0.15)) * (width - 1),
        (0.5 + rng.uniform(-0.15, 0.15)) * (height - 1),
    )
    neb_radius = (float(rng.uniform(0.25, 0.4) * width), float(rng.uniform(0.25, 0.4) * height))
    neb_seed = int(rng.integers(0, 2**63 - 1))
    if config.extended in ("nebula", "both"):
        out.append(
            nebula_cutout(
                neb_center,
                radius=neb_radius,
                peak_e=config.nebula_brightness * config.sky_level_e,
                fwhm=fwhm,
                beta=config.psf_beta,
                rng=np.random.default_rng(neb_seed),
            )
        )
    if config.extended in ("galaxy", "both"):
        out.append(
            galaxy_cutout(
                gal_center,
                r_eff=config.galaxy_size * min(width, height),
                axis_ratio=gal_q,
                pa_deg=gal_pa,
                disk_center_e=config.galaxy_brightness * config.sky_level_e,
                fwhm=fwhm,
                beta=config.psf_beta,
                oversample=config.oversample,
            )
        )
    return tuple(out)


def make_session(
    config: SessionConfig | None = None,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
) -> Session:
    """Draw a session: sky, camera and light plans, from one seed.

    Parameters
    ----------
    config : SessionConfig, optional
        Defaults to ``SessionConfig()``.
    seed : int, optional
        Entropy of every random draw (default 0).
    rng : numpy.random.Generator, optional
        Alternative to ``seed``: one integer is drawn from it.

    Returns
    -------
    Session
    """
    config = config if config is not None else SessionConfig()
    entropy = resolve_seed(seed, rng)
    plans = _plan(config, entropy)
    sensor_rng = child_rng(entropy, _KEY_SENSOR)
    longest = max(config.exposure_s, config.dark_exposure)
    sensor = make_sensor(
        config.shape,
        rng=sensor_rng,
        cfa=config.bayer,
        qe=config.qe,
        gain=config.gain,
        read_noise=config.read_noise_e,
        bit_depth=config.bit_depth,
        bias_adu=config.bias_adu,
        bias_column_std_adu=config.bias_column_std_adu,
        dark_current=config.dark_current_e_per_s,
        amp_glow=config.amp_glow_e_per_s,
        hot_pixel_fraction=config.hot_pixel_fraction,
        cold_pixel_fraction=config.cold_pixel_fraction,
        prnu=config.prnu,
        vignetting=config.vignetting,
        dust_count=config.dust_count,
        longest_exposure_s=longest,
    )
    region = _star_region(config, plans)
    scene_rng = child_rng(entropy, _KEY_SCENE)
    stars = _stars(config, region, scene_rng)
    fwhms = [p.fwhm_px for p in plans]
    scene_fwhm = float(np.mean(fwhms))
    cutouts = _cutouts(config, min(fwhms), scene_rng)
    gradient = _gradient(config)
    color = _sky_color(config)
    if config.bayer is None:
        sky_pattern = gradient
        planes = tuple(c.luminance for c in cutouts)
    else:
        weights = color * np.asarray(config.qe)
        sky_pattern = mosaic(
            np.repeat(gradient[..., None], 3, axis=2), config.bayer, weights=weights
        )
        qe = np.asarray(config.qe, dtype=np.float32)
        planes = tuple((c.rgb * qe).astype(np.float32) for c in cutouts)
    return Session(
        config=config,
        seed=entropy,
        sensor=sensor,
        stars=stars,
        cutouts=cutouts,
        lights=plans,
        scene_fwhm=scene_fwhm,
        star_region=region,
        sky_pattern=sky_pattern,
        _planes=planes,
    )


def light_star_positions(session: Session, index: int) -> XY:
    """Truth star positions mapped into light ``index``'s pixel coordinates, ``(N, 2)``."""
    inv = np.linalg.inv(session.lights[index].transform)
    pts = np.column_stack([session.stars.x, session.stars.y, np.ones(len(session.stars))])
    mapped = pts @ inv.T
    return mapped[:, :2] / mapped[:, 2:3]


def _star_weights(session: Session, transparency: float) -> npt.NDArray[np.float64]:
    stars = session.stars
    if session.config.bayer is None:
        return (stars.flux * transparency)[:, None]
    qe = np.asarray(session.config.qe)
    return stars.flux[:, None] * transparency * stars.rgb * qe[None, :]


def _add_cutouts(
    out: Image, session: Session, transform: npt.NDArray[np.float64], fwhm: float, scale: float
) -> None:
    shape = out.shape[:2]
    for cutout, plane in zip(session.cutouts, session._planes, strict=True):
        sigma = gaussian_sigma_between(cutout.fwhm, fwhm)
        image = plane
        if sigma > 0.05:
            image = cv2.GaussianBlur(plane, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        warped = warp_cutout(
            image, x0=cutout.x0, y0=cutout.y0, transform=transform, frame_shape=shape
        )
        if warped is None:
            continue
        patch, bx, by = warped
        np.maximum(patch, 0.0, out=patch)  # bicubic overshoot
        if patch.ndim == 3:
            patch = mosaic(patch, session.config.bayer, x0=bx, y0=by)  # type: ignore[arg-type]
        h, w = patch.shape
        out[by : by + h, bx : bx + w] += patch * np.float32(scale)


def render_sky(session: Session, index: int, *, background: bool = True) -> Image:
    """Expected photo-electrons of light ``index`` on an ideal sensor (flat field 1, no dark).

    Stars, extended objects (times the light's transparency), the sky background with its
    gradient (unless ``background`` is False) and a satellite trail if the light has one. A Bayer
    session returns the mosaic: each site its colour times its quantum efficiency.

    Returns
    -------
    ndarray float32 (H, W)
        Electrons per pixel for the light's exposure.
    """
    plan = session.lights[index]
    config = session.config
    out = np.zeros(config.shape, dtype=np.float32)
    pos = light_star_positions(session, index)
    weights = _star_weights(session, plan.transparency)
    radii = stamp_radii(weights.max(axis=1), fwhm=plan.fwhm_px, beta=config.psf_beta)
    render_stars(
        out,
        pos[:, 0],
        pos[:, 1],
        weights,
        fwhm=plan.fwhm_px,
        beta=config.psf_beta,
        lut=session.sensor.lut,
        radii=radii,
        oversample=config.oversample,
        out=out,
    )
    _add_cutouts(out, session, plan.transform, plan.fwhm_px, plan.transparency)
    if background:
        out += np.float32(plan.background_e) * session.sky_pattern
    if plan.trail is not None:
        trail = plan.trail
        patch, x0, y0 = line_profile(config.shape, trail.start, trail.end, fwhm=trail.width_px)
        h, w = patch.shape
        if config.bayer is None:
            out[y0 : y0 + h, x0 : x0 + w] += patch * np.float32(trail.peak_e)
        else:
            qe = np.asarray(config.qe, dtype=np.float32)
            site = qe[
                session.sensor.lut[
                    (np.arange(h) + y0)[:, None] & 1, (np.arange(w) + x0)[None, :] & 1
                ]
            ]
            out[y0 : y0 + h, x0 : x0 + w] += patch * site * np.float32(trail.peak_e)
    return out


def render_scene(session: Session, *, background: bool = True) -> Image:
    """The clean sky in the reference frame: what a perfect calibration and stack approaches.

    Stars and extended objects with the PSF of ``session.scene_fwhm``, transparency 1, and (unless
    ``background`` is False) the nominal sky ``sky_level_e`` times the gradient, before vignetting
    and dust, in electrons per light exposure. Mono sessions give ``(H, W)``; Bayer sessions give
    ``(H, W, 3)`` R, G, B, each channel times its quantum efficiency.
    """
    config = session.config
    stars = session.stars
    beta = config.psf_beta
    fwhm = session.scene_fwhm
    radii = stamp_radii(stars.flux * stars.rgb.max(axis=1), fwhm=fwhm, beta=beta)
    gradient = _gradient(config)
    if config.bayer is None:
        out = render_stars(
            config.shape,
            stars.x,
            stars.y,
            stars.flux,
            fwhm=fwhm,
            beta=beta,
            radii=radii,
            oversample=config.oversample,
        )
        _add_cutouts(out, session, np.eye(3), fwhm, 1.0)
        if background:
            out += np.float32(config.sky_level_e) * gradient
        return out
    qe = np.asarray(config.qe)
    color = _sky_color(config)
    out = np.zeros((*config.shape, 3), dtype=np.float32)
    render_stars(
        out,
        stars.x,
        stars.y,
        stars.flux[:, None] * stars.rgb * qe[None, :],
        fwhm=fwhm,
        beta=beta,
        radii=radii,
        oversample=config.oversample,
        out=out,
    )
    for cutout in session.cutouts:
        sigma = gaussian_sigma_between(cutout.fwhm, fwhm)
        image = cutout.rgb * qe.astype(np.float32)
        if sigma > 0.05:
            image = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        _paste(out, image, cutout.x0, cutout.y0)
    if background:
        out += (np.float32(config.sky_level_e) * gradient)[..., None] * (color * qe).astype(
            np.float32
        )
    return out


def render_stack(
    session: Session,
    n_frames: int,
    *,
    rng: np.random.Generator | None = None,
    background: bool = True,
) -> Image:
    """A calibrated, registered mean of ``n_frames`` lights: what ``skystack stack`` delivers.

    The clean sky of :func:`render_scene` in full-scale units (ADU / 65535), with the shot and
    read noise of a mean of ``n_frames`` exposures when ``rng`` is given (Gaussian, variance
    ``(signal + read_noise**2) / n_frames`` electrons), clipped at full scale. Without ``rng``
    it is noise-free, so ``render_stack(s, n) - render_stack(s, n, background=False)`` is the
    true sky background.

    Returns
    -------
    ndarray
        float32 ``(H, W)`` for mono sessions, ``(H, W, 3)`` for Bayer ones.
    """
    if n_frames < 1:
        raise ValueError("render_stack needs n_frames >= 1")
    config = session.config
    electrons = render_scene(session, background=background)
    if rng is not None:
        variance = (np.maximum(electrons, 0.0) + np.float32(config.read_noise_e**2)) / n_frames
        electrons = electrons + np.sqrt(variance) * rng.standard_normal(
            electrons.shape, dtype=np.float32
        )
    # Star cores that saturate in every light stay at full scale in the stack.
    return np.minimum(electrons / np.float32(config.gain * 65535.0), 1.0).astype(np.float32)


def _paste(out: Image, patch: Image, x0: int, y0: int) -> None:
    h, w = patch.shape[:2]
    height, width = out.shape[:2]
    xa, ya = max(x0, 0), max(y0, 0)
    xb, yb = min(x0 + w, width), min(y0 + h, height)
    if xa < xb and ya < yb:
        out[ya:yb, xa:xb] += patch[ya - y0 : yb - y0, xa - x0 : xb - x0]


def render_light(session: Session, index: int, *, noise: bool = True) -> npt.NDArray[np.generic]:
    """Light ``index`` as the camera delivers it.

    Returns
    -------
    ndarray
        uint16 ADU with all noise (``noise=True``), or the float32 expected ADU (no shot or read
        noise, no quantisation; cosmic rays included).
    """
    config = session.config
    plan = session.lights[index]
    signal = render_sky(session, index)
    signal *= session.sensor.flat_field
    extra = None
    if plan.cosmic_rays.size:
        extra = np.zeros(config.shape, dtype=np.float32)
        xs = plan.cosmic_rays[:, 0].astype(np.int64)
        ys = plan.cosmic_rays[:, 1].astype(np.int64)
        np.add.at(extra, (ys, xs), plan.cosmic_rays[:, 2].astype(np.float32))
    rng = session.rng("light", index) if noise else None
    return expose(
        signal, session.sensor, exposure_s=config.exposure_s, rng=rng, extra_e=extra, noise=noise
    )


def render_bias(session: Session, index: int, *, noise: bool = True) -> npt.NDArray[np.generic]:
    """Bias frame ``index`` (zero exposure): uint16 ADU, or float32 expected ADU."""
    rng = session.rng("bias", index) if noise else None
    return expose(None, session.sensor, exposure_s=0.0, rng=rng, noise=noise)


def render_dark(session: Session, index: int, *, noise: bool = True) -> npt.NDArray[np.generic]:
    """Dark frame ``index`` of ``config.dark_exposure`` seconds: uint16 ADU or expected ADU."""
    rng = session.rng("dark", index) if noise else None
    exposure = session.config.dark_exposure
    return expose(None, session.sensor, exposure_s=exposure, rng=rng, noise=noise)


def flat_signal(session: Session) -> Image:
    """Expected photo-electrons of a flat frame: uniform white light through the optics."""
    config = session.config
    sensor = session.sensor
    level = config.flat_level * 65535.0 * config.gain
    qe = sensor.qe_map()
    if config.bayer is not None:
        qe = qe / np.float32(max(config.qe))
    return (np.float32(level) * sensor.flat_field * qe).astype(np.float32)


def render_flat(session: Session, index: int, *, noise: bool = True) -> npt.NDArray[np.generic]:
    """Flat frame ``index``: uint16 ADU or expected ADU."""
    rng = session.rng("flat", index) if noise else None
    return expose(
        flat_signal(session),
        session.sensor,
        exposure_s=session.config.flat_exposure_s,
        rng=rng,
        noise=noise,
    )


def render_dark_flat(
    session: Session, index: int, *, noise: bool = True
) -> npt.NDArray[np.generic]:
    """Dark-flat frame ``index`` (a dark of the flat exposure): uint16 ADU or expected ADU."""
    rng = session.rng("dark-flat", index) if noise else None
    exposure = session.config.flat_exposure_s
    return expose(None, session.sensor, exposure_s=exposure, rng=rng, noise=noise)
