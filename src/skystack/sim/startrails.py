"""Star-trail sequences: a fixed camera, the sky turning about the celestial pole, a landscape.

Each frame integrates the stars while the sky turns by the sidereal rate, 360 degrees per
86164.0905 s, about the pole's image point (inside or outside the frame). Stars are rendered as
Moffat stamps at sub-steps along their arcs, so every frame already shows short trails. In front
of the sky stands a static landscape: a ridge line from 1-D fractal noise with a few trees, dim
textured ground and a few lit windows. Sky glow brightens towards the horizon; a plane (blinking
dashes) or a satellite (a continuous line) may cross chosen frames.

Rotation convention: positions rotate by ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` about the
pole in array coordinates (x right, y down), so a positive angle turns clockwise on the screen.
Seen facing the north celestial pole the sky turns counter-clockwise: angles decrease (negative
rate); in the south they increase. A star at reference position ``p0`` (the start of frame 0)
is at ``pole + R(rate * t) (p0 - pole)`` at time ``t`` after that start.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from skystack._typing import XY, Image
from skystack.frame import Frame, FrameMeta
from skystack.sim._util import (
    check_frame_size,
    check_positive,
    child_rng,
    clip_line_to_box,
    config_error,
    config_from_dict,
    config_to_dict,
    line_profile,
    read_stars_csv,
    read_truth_json,
    resolve_seed,
    write_stars_csv,
    write_truth_json,
)
from skystack.sim.psf import moffat_peak_fraction, render_stars, stamp_radii
from skystack.sim.scene import fractal_noise
from skystack.sim.sensor import poisson_noise
from skystack.sim.stars import StarField, draw_temperatures, planck_rgb, power_law_fluxes

__all__ = [
    "StarTrailConfig",
    "StarTrailSession",
    "StarTrailTruth",
    "SIDEREAL_DAY_S",
    "make_star_trails",
    "render_star_trail_frame",
    "write_star_trails",
]

SIDEREAL_DAY_S = 86164.0905
"""Length of the sidereal day in seconds."""

_KEY_SCENE, _KEY_PLAN, _KEY_FRAME = 30, 31, 32
_TRUTH_FORMAT = "skystack-sim star-trail truth"
_ZENITH_RGB = np.array([0.8, 0.95, 1.25])
_HORIZON_RGB = np.array([1.35, 1.0, 0.65])
_GROUND_RGB = np.array([0.9, 1.05, 1.05])
_WINDOW_RGB = np.array([1.5, 1.0, 0.5])


@dataclass(frozen=True, kw_only=True)
class StarTrailConfig:
    """A simulated star-trail sequence from a fixed tripod.

    Attributes
    ----------
    width, height : int
        Frame size (px).
    n_frames : int
        Number of frames.
    interval_s, exposure_s : float
        Time between frame starts and the exposure of each frame (s).
    pole_xy : (x, y) or None
        Image position of the celestial pole (may be outside the frame); default
        ``(0.62 W, 0.2 H)``.
    hemisphere : {"north", "south"}
        Sense of rotation (north: counter-clockwise on the screen).
    star_count : int
        Stars per frame area.
    star_slope : float
        Number counts ``N(>F) ∝ F ** -star_slope``.
    fwhm_px, psf_beta : float
        The Moffat PSF of the lens.
    sky_level_e : float
        Sky glow at the top of the frame, electrons per pixel per exposure.
    horizon_glow : float
        Extra glow at the horizon, as a multiple of ``sky_level_e``.
    foreground_height : float
        Mean height of the landscape as a fraction of the frame height.
    n_windows : int
        Lit windows or lamps in the landscape.
    trail_frames : tuple of int
        Frames crossed by a trail.
    trail_kind : {"plane", "satellite"}
        Blinking dashes or a continuous line.
    color : bool
        RGB frames ``(H, W, 3)`` (a developed camera raw) or mono ``(H, W)``.
    file_format : {"tiff", "fits"}
        Output format (16-bit).
    gain, read_noise_e : float
        Electrons per ADU (16-bit units) and read noise (e- rms); no offset (black level removed).
    start_time : str
        ISO time (UTC) of the first frame.
    """

    width: int = 600
    height: int = 400
    n_frames: int = 20
    interval_s: float = 30.0
    exposure_s: float = 25.0
    pole_xy: tuple[float, float] | None = None
    hemisphere: Literal["north", "south"] = "north"
    star_count: int = 400
    star_slope: float = 0.8
    fwhm_px: float = 1.8
    psf_beta: float = 3.0
    sky_level_e: float = 300.0
    horizon_glow: float = 2.0
    foreground_height: float = 0.25
    n_windows: int = 6
    trail_frames: tuple[int, ...] = ()
    trail_kind: Literal["plane", "satellite"] = "plane"
    color: bool = True
    file_format: Literal["tiff", "fits"] = "tiff"
    gain: float = 1.0
    read_noise_e: float = 3.0
    start_time: str = "2025-03-01T22:00:00"

    def __post_init__(self) -> None:
        check_frame_size(self)
        if self.n_frames < 1:
            raise config_error(self, "n_frames", "at least 1")
        check_positive(self, ("interval_s", "exposure_s", "fwhm_px", "gain", "sky_level_e"))
        if self.exposure_s > self.interval_s:
            raise config_error(self, "exposure_s", f"at most interval_s ({self.interval_s})")
        if self.hemisphere not in ("north", "south"):
            raise config_error(self, "hemisphere", "'north' or 'south'")
        if self.trail_kind not in ("plane", "satellite"):
            raise config_error(self, "trail_kind", "'plane' or 'satellite'")
        if self.file_format not in ("tiff", "fits"):
            raise config_error(self, "file_format", "'tiff' or 'fits'")
        if not 0.0 <= self.foreground_height < 0.9:
            raise config_error(self, "foreground_height", "a fraction in [0, 0.9)")
        for index in self.trail_frames:
            if not 0 <= index < self.n_frames:
                raise config_error(self, "trail_frames", f"frame indices in 0..{self.n_frames - 1}")

    @property
    def pole(self) -> tuple[float, float]:
        """The pole's image position ``(x, y)``."""
        if self.pole_xy is not None:
            return (float(self.pole_xy[0]), float(self.pole_xy[1]))
        return (0.62 * self.width, 0.2 * self.height)

    @property
    def rate_deg_per_s(self) -> float:
        """Signed rotation rate in the module's convention (negative in the north)."""
        rate = 360.0 / SIDEREAL_DAY_S
        return -rate if self.hemisphere == "north" else rate


@dataclass(frozen=True, eq=False)
class StarTrailSession:
    """A drawn star-trail sequence.

    Attributes
    ----------
    config : StarTrailConfig
    seed : int
    stars : StarField
        Star positions at the start of frame 0.
    sky : ndarray float32 (H, W, C)
        Sky glow per pixel, electrons per exposure (C = 3 or 1).
    foreground : ndarray float32 (H, W, C)
        Landscape radiance, electrons per exposure.
    alpha : ndarray float32 (H, W)
        Landscape coverage (1 = landscape).
    trails : dict
        Frame index to ``(start, end, width_px, peak_e)``.
    """

    config: StarTrailConfig
    seed: int
    stars: StarField
    sky: Image
    foreground: Image
    alpha: Image
    trails: dict[int, tuple[tuple[float, float], tuple[float, float], float, float]]

    def angle_deg(self, frame: int, fraction: float = 0.0) -> float:
        """Sky rotation (degrees) at ``fraction`` of frame ``frame``'s exposure since frame 0."""
        config = self.config
        t = frame * config.interval_s + fraction * config.exposure_s
        return config.rate_deg_per_s * t

    def star_positions(self, frame: int, fraction: float = 0.5) -> XY:
        """Star positions ``(N, 2)`` at ``fraction`` of frame ``frame``'s exposure."""
        return _rotate(
            self.stars.x, self.stars.y, self.config.pole, self.angle_deg(frame, fraction)
        )


def _rotate(x: np.ndarray, y: np.ndarray, pole: tuple[float, float], angle_deg: float) -> XY:
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    dx = np.asarray(x) - pole[0]
    dy = np.asarray(y) - pole[1]
    return np.column_stack([pole[0] + c * dx - s * dy, pole[1] + s * dx + c * dy])


def _star_sector(config: StarTrailConfig) -> tuple[float, float, float, float, float]:
    """Annulus sector around the pole covering the frame during the sequence."""
    width, height = config.width, config.height
    px, py = config.pole
    margin = 4.0 * config.fwhm_px + 4.0
    xs = np.concatenate(
        [np.linspace(-margin, width + margin, 200)] * 2
        + [np.full(200, -margin), np.full(200, width + margin)]
    )
    ys = np.concatenate(
        [np.full(200, -margin), np.full(200, height + margin)]
        + [np.linspace(-margin, height + margin, 200)] * 2
    )
    d = np.hypot(xs - px, ys - py)
    d_max = float(d.max())
    inside = -margin <= px <= width + margin and -margin <= py <= height + margin
    total = abs(math.radians(config.rate_deg_per_s)) * (
        (config.n_frames - 1) * config.interval_s + config.exposure_s
    )
    if inside:
        return 0.0, d_max, 0.0, -math.pi, math.pi
    cx = min(max(px, -margin), width + margin)
    cy = min(max(py, -margin), height + margin)
    d_min = math.hypot(px - cx, py - cy)
    center_angle = math.atan2((height - 1) / 2.0 - py, (width - 1) / 2.0 - px)
    rel = (np.arctan2(ys - py, xs - px) - center_angle + math.pi) % (2.0 * math.pi) - math.pi
    lo = float(rel.min()) - total - 0.01
    hi = float(rel.max()) + total + 0.01
    if hi - lo >= 2.0 * math.pi:
        lo, hi = -math.pi, math.pi
    return d_min, d_max, center_angle, lo, hi


def _landscape(
    config: StarTrailConfig, rng: np.random.Generator
) -> tuple[Image, Image, npt.NDArray[np.float64]]:
    width, height = config.width, config.height
    base = height * (1.0 - config.foreground_height)
    ridge_noise = fractal_noise((8, width), scale_px=width / 3.0, rng=rng, octaves=6)[3]
    ridge = base + 0.07 * height * ridge_noise.astype(np.float64)
    # A few conifers: narrow triangles rising from the ridge.
    xs = np.arange(width, dtype=np.float64)
    for _ in range(int(rng.integers(3, 9))):
        tx = rng.uniform(0, width)
        th = rng.uniform(0.04, 0.12) * height
        tw = th * rng.uniform(0.18, 0.3)
        top = ridge[int(min(max(tx, 0), width - 1))] - th
        profile = top + th * np.abs(xs - tx) / tw
        ridge = np.minimum(ridge, np.where(np.abs(xs - tx) < tw, profile, np.inf))
    if config.foreground_height == 0:
        ridge = np.full(width, height + 10.0)
    yy = np.arange(height, dtype=np.float64)[:, None]
    alpha = np.clip(yy - ridge[None, :] + 0.5, 0.0, 1.0).astype(np.float32)
    texture = fractal_noise((height, width), scale_px=height / 6.0, rng=rng, octaves=6)
    ground = np.float32(0.12 * config.sky_level_e) * np.exp(0.35 * texture)
    rgb = _GROUND_RGB if config.color else np.array([1.0])
    fg = ground[..., None] * rgb.astype(np.float32)
    # Lit windows: small warm rectangles with a soft glow.
    lamp = np.zeros((height, width), dtype=np.float32)
    for _ in range(config.n_windows if config.foreground_height > 0 else 0):
        wx = int(rng.uniform(0.05, 0.95) * width)
        below = ridge[wx] + rng.uniform(0.2, 0.8) * (height - ridge[wx])
        wy = int(min(max(below, 0), height - 3))
        ww, wh = int(rng.integers(2, 5)), int(rng.integers(2, 4))
        lamp[wy : wy + wh, wx : wx + ww] = np.float32(rng.uniform(20.0, 80.0) * config.sky_level_e)
    lamp += _blur(lamp, 3.0) * np.float32(0.3)
    lamp_rgb = _WINDOW_RGB if config.color else np.array([1.0])
    fg = fg + lamp[..., None] * lamp_rgb.astype(np.float32)
    fg *= alpha[..., None]
    return fg.astype(np.float32), alpha, ridge


def _blur(image: Image, sigma: float) -> Image:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), sigma)


def _sky_glow(config: StarTrailConfig, ridge: npt.NDArray[np.float64]) -> Image:
    height = config.height
    yy = np.arange(height, dtype=np.float64)[:, None]
    horizon = float(np.median(ridge))
    glow = np.exp(-np.clip(horizon - yy, 0.0, None) / (0.25 * height))
    level = config.sky_level_e * (1.0 + config.horizon_glow * glow)
    w = glow[..., None]
    if config.color:
        tint = (1.0 - w) * _ZENITH_RGB + w * _HORIZON_RGB
    else:
        tint = np.ones_like(w)
    sky = level[..., None] * tint
    return np.broadcast_to(sky, (height, config.width, tint.shape[-1])).astype(np.float32)


def make_star_trails(
    config: StarTrailConfig | None = None,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
) -> StarTrailSession:
    """Draw a star-trail sequence: stars around the pole, landscape, sky glow, trails."""
    config = config if config is not None else StarTrailConfig()
    entropy = resolve_seed(seed, rng)
    scene_rng = child_rng(entropy, _KEY_SCENE)
    d_min, d_max, center_angle, lo, hi = _star_sector(config)
    area = 0.5 * (hi - lo) * (d_max**2 - d_min**2)
    count = int(round(config.star_count * area / (config.width * config.height)))
    r = np.sqrt(scene_rng.uniform(d_min**2, d_max**2, count))
    theta = center_angle + scene_rng.uniform(lo, hi, count)
    px, py = config.pole
    headroom = 65535.0 * config.gain - config.sky_level_e * (1.0 + config.horizon_glow)
    f_sat = headroom / moffat_peak_fraction(config.fwhm_px, config.psf_beta)
    noise = math.sqrt(config.sky_level_e + config.read_noise_e**2)
    f_min = 0.8 * noise / moffat_peak_fraction(config.fwhm_px, config.psf_beta)
    flux = power_law_fluxes(
        count,
        f_min=f_min,
        f_max=max(1.5 * f_sat, 2 * f_min),
        slope=config.star_slope,
        rng=scene_rng,
    )
    temperature = draw_temperatures(count, median_k=5200.0, spread_dex=0.12, rng=scene_rng)
    stars = StarField(
        x=px + r * np.cos(theta),
        y=py + r * np.sin(theta),
        flux=flux,
        temperature=temperature,
        rgb=planck_rgb(temperature),
    )
    foreground, alpha, ridge = _landscape(config, scene_rng)
    sky = _sky_glow(config, ridge)
    plan_rng = child_rng(entropy, _KEY_PLAN)
    trails = {}
    horizon = float(np.min(ridge))
    for k in range(config.n_frames):
        point = (
            float(plan_rng.uniform(0.1, 0.9) * config.width),
            float(plan_rng.uniform(0.1, 0.6) * max(horizon, 2.0)),
        )
        angle = float(plan_rng.uniform(-0.5, 0.5))
        peak = float(plan_rng.uniform(5.0, 15.0) * config.sky_level_e)
        if k in config.trail_frames:
            start, end = clip_line_to_box(point, angle, config.width, config.height)
            trails[k] = (start, end, 1.2 * config.fwhm_px, peak)
    return StarTrailSession(
        config=config,
        seed=entropy,
        stars=stars,
        sky=sky,
        foreground=foreground,
        alpha=alpha,
        trails=trails,
    )


def _render_trail(session: StarTrailSession, frame: int, out: Image) -> None:
    start, end, width_px, peak = session.trails[frame]
    config = session.config
    if config.trail_kind == "satellite":
        pieces = [(start, end)]
    else:
        length = math.hypot(end[0] - start[0], end[1] - start[1])
        period = 24.0
        n = int(length // period) + 1
        ux, uy = (end[0] - start[0]) / max(length, 1e-9), (end[1] - start[1]) / max(length, 1e-9)
        pieces = []
        for j in range(n):
            a = j * period
            b = min(a + 0.3 * period, length)
            pieces.append(
                ((start[0] + a * ux, start[1] + a * uy), (start[0] + b * ux, start[1] + b * uy))
            )
    for a, b in pieces:
        patch, x0, y0 = line_profile((config.height, config.width), a, b, fwhm=width_px)
        h, w = patch.shape
        out[y0 : y0 + h, x0 : x0 + w] += (patch * np.float32(peak))[..., None]


def render_star_trail_frame(
    session: StarTrailSession, frame: int, *, noise: bool = True
) -> npt.NDArray[np.generic]:
    """Frame ``frame`` of the sequence.

    Returns
    -------
    ndarray
        uint16 ADU (``noise=True``) or the float32 expected value in ADU; ``(H, W, 3)`` or
        ``(H, W)``.
    """
    config = session.config
    height, width = config.height, config.width
    channels = 3 if config.color else 1
    sky = np.zeros((height, width, channels), dtype=np.float32)
    stars = session.stars
    a0 = session.angle_deg(frame, 0.0)
    a1 = session.angle_deg(frame, 1.0)
    mid = _rotate(stars.x, stars.y, config.pole, 0.5 * (a0 + a1))
    r = np.hypot(stars.x - config.pole[0], stars.y - config.pole[1])
    arc = r * abs(math.radians(a1 - a0))
    reach = 0.5 * arc + 8.0 * config.fwhm_px + 2.0
    near = (
        (mid[:, 0] > -reach)
        & (mid[:, 0] < width + reach)
        & (mid[:, 1] > -reach)
        & (mid[:, 1] < height + reach)
    )
    if near.any():
        n_sub = int(min(max(math.ceil(float(arc[near].max()) / 0.5), 1), 256))
        xs, ys = stars.x[near], stars.y[near]
        fractions = (np.arange(n_sub) + 0.5) / n_sub
        positions = np.concatenate(
            [_rotate(xs, ys, config.pole, a0 + f * (a1 - a0)) for f in fractions]
        )
        flux = np.tile(stars.flux[near], n_sub) / n_sub
        rgb = np.tile(stars.rgb[near], (n_sub, 1))
        radii = stamp_radii(flux * rgb.max(axis=1), fwhm=config.fwhm_px, beta=config.psf_beta)
        weights = flux[:, None] * rgb if config.color else flux[:, None]
        render_stars(
            sky,
            positions[:, 0],
            positions[:, 1],
            weights,
            fwhm=config.fwhm_px,
            beta=config.psf_beta,
            radii=radii,
            out=sky,
        )
    sky += session.sky
    if frame in session.trails:
        _render_trail(session, frame, sky)
    alpha = session.alpha[..., None]
    expected = sky * (1.0 - alpha) + session.foreground
    if config.color is False:
        expected = expected[..., 0]
    if not noise:
        return np.clip(expected / np.float32(config.gain), 0.0, 65535.0).astype(np.float32)
    rng = child_rng(session.seed, _KEY_FRAME, frame)
    electrons = poisson_noise(expected, rng=rng)
    electrons += np.float32(config.read_noise_e) * rng.standard_normal(
        electrons.shape, dtype=np.float32
    )
    adu = np.rint(electrons / np.float32(config.gain))
    np.clip(adu, 0.0, 65535.0, out=adu)
    return adu.astype(np.uint16)


def write_star_trails(
    directory: str | os.PathLike[str],
    config: StarTrailConfig | None = None,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
) -> StarTrailTruth:
    """Simulate a star-trail sequence and write it with its ground truth.

    Layout::

        DIR/frames/frame_0001.tif (or .fits)   16-bit frames, one at a time
        DIR/truth/truth.json                   config, seed, pole, rotation per frame, trails
        DIR/truth/stars.csv                    id, x, y (at the start of frame 0), flux_e,
                                               temperature_k, r, g, b
        DIR/truth/foreground_mask.npy          bool (H, W), True = landscape (coverage >= 0.5)
        DIR/truth/foreground_alpha.fits        landscape coverage 0..1 (float32)
        DIR/truth/foreground.fits              clean landscape (frame data units, 0 in the sky)
        DIR/truth/background.fits              clean frame without stars or trails (data units)

    Parameters
    ----------
    directory : path-like
        Created if missing; files of the same names are replaced.
    config : StarTrailConfig, optional
        Defaults to ``StarTrailConfig()`` (20 RGB frames of 600 x 400 as 16-bit TIFF).
    seed, rng :
        Seed (default 0) or generator; the same seed gives byte-identical files.
    """
    from skystack.io import write

    session = make_star_trails(config, seed=seed, rng=rng)
    config = session.config
    root = Path(directory)
    frames_dir = root / "frames"
    truth_dir = root / "truth"
    frames_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(exist_ok=True)
    (truth_dir / "truth.json").unlink(missing_ok=True)
    ext = "tif" if config.file_format == "tiff" else "fits"
    start = datetime.fromisoformat(config.start_time).replace(tzinfo=None)
    names = []
    for k in range(config.n_frames):
        adu = render_star_trail_frame(session, k)
        meta = FrameMeta(
            kind="light",
            exposure=config.exposure_s,
            date_obs=start + timedelta(seconds=k * config.interval_s),
            camera="skystack-sim",
            bit_depth=16,
        )
        rel = f"frames/frame_{k + 1:04d}.{ext}"
        write(
            Frame(adu.astype(np.float32) / np.float32(65535.0), meta),
            root / rel,
            bit_depth=16,
            overwrite=True,
        )
        names.append(rel)
    write_stars_csv(session.stars, truth_dir / "stars.csv")
    np.save(truth_dir / "foreground_mask.npy", session.alpha >= 0.5)
    scale = np.float32(1.0 / (config.gain * 65535.0))
    fg = session.foreground if config.color else session.foreground[..., 0]
    write(Frame(fg * scale), truth_dir / "foreground.fits", bit_depth=32, overwrite=True)
    write(Frame(session.alpha), truth_dir / "foreground_alpha.fits", bit_depth=32, overwrite=True)
    background = session.sky * (1.0 - session.alpha[..., None]) + session.foreground
    if not config.color:
        background = background[..., 0]
    write(
        Frame((background * scale).astype(np.float32)),
        truth_dir / "background.fits",
        bit_depth=32,
        overwrite=True,
    )
    data = {
        "format": _TRUTH_FORMAT,
        "version": 1,
        "seed": session.seed,
        "config": config_to_dict(config),
        "pole": list(config.pole),
        "rate_deg_per_s": config.rate_deg_per_s,
        "rotation_deg_per_frame": config.rate_deg_per_s * config.interval_s,
        "rotation_deg_per_exposure": config.rate_deg_per_s * config.exposure_s,
        "conventions": {
            "rotation": "p(t) = pole + R(rate * t) (p0 - pole), R(a) = [[cos a, -sin a], "
            "[sin a, cos a]] in (x, y) array coordinates (positive = clockwise on screen); "
            "t in s from the start of frame 0; stars.csv holds p0",
            "foreground_mask": "True where the landscape covers the pixel",
            "data_units": "foreground.fits and background.fits are expected frame values "
            "(full scale 1.0)",
        },
        "files": names,
        "frames": [
            {
                "index": k,
                "file": names[k],
                "start_angle_deg": session.angle_deg(k, 0.0),
                "end_angle_deg": session.angle_deg(k, 1.0),
                "trail": None
                if k not in session.trails
                else {
                    "kind": config.trail_kind,
                    "start": list(session.trails[k][0]),
                    "end": list(session.trails[k][1]),
                    "width_px": session.trails[k][2],
                    "peak_e": session.trails[k][3],
                },
            }
            for k in range(config.n_frames)
        ],
    }
    write_truth_json(data, truth_dir / "truth.json")
    return StarTrailTruth.load(root)


@dataclass(frozen=True, eq=False)
class StarTrailTruth:
    """Ground truth of a written star-trail sequence.

    Attributes
    ----------
    directory : Path
    frames : tuple of Path
        The frames in order.
    config : StarTrailConfig
    seed : int
    pole : (x, y)
        Image position of the celestial pole.
    rotation_deg_per_frame : float
        Signed rotation between frame starts (module convention: negative in the north).
    rate_deg_per_s : float
        Signed rotation rate.
    stars : StarField
        Star positions at the start of frame 0.
    foreground_mask, foreground_alpha, foreground, background : Path
        Truth files (see :func:`write_star_trails`).
    trails : dict
        Frame index to its trail entry of ``truth.json``.
    data : dict
        The parsed ``truth.json``.
    """

    directory: Path
    frames: tuple[Path, ...]
    config: StarTrailConfig
    seed: int
    pole: tuple[float, float]
    rotation_deg_per_frame: float
    rate_deg_per_s: float
    stars: StarField
    foreground_mask: Path
    foreground_alpha: Path
    foreground: Path
    background: Path
    trails: dict[int, dict[str, Any]]
    data: dict[str, Any]

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> StarTrailTruth:
        """Read ``directory/truth/truth.json`` and ``stars.csv``."""
        root = Path(directory)
        data = read_truth_json(
            root / "truth" / "truth.json",
            kind="star-trail",
            expected_format=_TRUTH_FORMAT,
            missing_hint="; write it with write_star_trails",
        )
        stars = read_stars_csv(root / "truth" / "stars.csv")
        return cls(
            directory=root,
            frames=tuple(root / f for f in data["files"]),
            config=config_from_dict(StarTrailConfig, data["config"]),
            seed=int(data["seed"]),
            pole=(float(data["pole"][0]), float(data["pole"][1])),
            rotation_deg_per_frame=float(data["rotation_deg_per_frame"]),
            rate_deg_per_s=float(data["rate_deg_per_s"]),
            stars=stars,
            foreground_mask=root / "truth" / "foreground_mask.npy",
            foreground_alpha=root / "truth" / "foreground_alpha.fits",
            foreground=root / "truth" / "foreground.fits",
            background=root / "truth" / "background.fits",
            trails={int(f["index"]): f["trail"] for f in data["frames"] if f["trail"] is not None},
            data=data,
        )

    def star_positions(self, frame: int, fraction: float = 0.5) -> XY:
        """Star positions ``(N, 2)`` at ``fraction`` of frame ``frame``'s exposure."""
        config = self.config
        t = frame * config.interval_s + fraction * config.exposure_s
        return _rotate(self.stars.x, self.stars.y, self.pole, self.rate_deg_per_s * t)
