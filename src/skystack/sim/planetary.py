"""Planetary (lucky-imaging) videos: a planet or the Moon seen through turbulent air, as SER.

The clean target is rendered once on a canvas a little larger than the frame:

* ``"jupiter"``: an oblate disk whose longitude-latitude texture has belts and zones with
  turbulent edges, a red oval and white ovals, with Minnaert limb darkening ``I ∝ mu**k``
  (Minnaert [1]_);
* ``"moon"``: a surface filling the frame: craters with power-law sizes (bowl, raised rim,
  ejecta), maria from smoothed noise, lit by a low Sun (Lambertian shading of the height field).

Each frame sees the canvas through the atmosphere of that instant [2]_: a global tip-tilt shift
(an AR(1) random walk, ``jitter_px`` rms), a smooth local displacement field (seeing warps,
correlation length ``warp_scale_px``) and a Gaussian blur; the blur and the warp strength
follow one seeing quality per frame that drifts from frame to frame (AR(1) in a normal score),
so some short runs of frames are clearly sharper. Then shot noise, read noise and quantisation
to 8 or 16 bits. Frames are generated one at a time from per-frame seeds, so a video of any
length is written in constant memory and any frame can be re-rendered alone.

References
----------
.. [1] M. Minnaert, "The reciprocity principle in lunar photometry", ApJ 93, 403 (1941).
.. [2] D. L. Fried, "Probability of getting a lucky short-exposure image through turbulence",
   JOSA 68, 1651 (1978).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from skystack._typing import CFA_PATTERNS, CfaPattern, Image
from skystack.frame import Frame, FrameMeta
from skystack.sim._util import (
    check_frame_size,
    check_positive,
    child_rng,
    config_error,
    config_from_dict,
    config_to_dict,
    read_truth_json,
    resolve_seed,
    write_truth_json,
)
from skystack.sim.scene import fractal_noise
from skystack.sim.sensor import mosaic, poisson_noise

__all__ = [
    "PlanetaryConfig",
    "PlanetarySession",
    "PlanetaryTruth",
    "make_planetary",
    "render_planetary_frame",
    "planetary_frames",
    "write_planetary_ser",
    "jupiter_image",
    "moon_image",
]

PlanetaryTarget = Literal["jupiter", "moon"]
PlanetaryColor = Literal["mono", "rgb", "bayer"]

_KEY_CANVAS, _KEY_SEEING, _KEY_FRAME = 20, 21, 22
_TRUTH_FORMAT = "skystack-sim planetary truth"


@dataclass(frozen=True, kw_only=True)
class PlanetaryConfig:
    """A simulated planetary video.

    Attributes
    ----------
    width, height : int
        Frame size (px).
    n_frames : int
        Number of frames.
    target : {"jupiter", "moon"}
        A banded planet disk, or a lunar surface filling the frame.
    color : {"mono", "rgb", "bayer"}
        Mono frames, RGB frames, or a raw Bayer mosaic (pattern ``bayer``).
    bayer : {"RGGB", "BGGR", "GRBG", "GBRG"}
        Pattern used when ``color`` is ``"bayer"``.
    bit_depth : {8, 16}
        Sample size of the SER file.
    planet_radius_px : float or None
        Equatorial radius of the planet (default ``0.32 min(width, height)``).
    jitter_px : float
        rms of the global frame shift.
    warp_px : float
        rms of the local seeing displacement at median seeing.
    warp_scale_px : float
        Correlation length of the displacement field.
    blur_px : (best, worst)
        Range of the per-frame Gaussian blur sigma (px).
    seeing_correlation : float
        Frame-to-frame correlation of the seeing quality (AR(1) coefficient, 0 to < 1).
    peak_e : float
        Electrons at the brightest point of the clean image.
    peak_fraction : float
        Fraction of full scale the clean image's brightest point reaches (sets the gain).
    sky_e : float
        Sky background, electrons per pixel.
    read_noise_e : float
        Read noise, electrons rms.
    fps : float
        Frame rate (timestamps are ``start_time + k / fps``).
    start_time : str
        ISO time (UTC) of the first frame.
    """

    width: int = 320
    height: int = 240
    n_frames: int = 200
    target: PlanetaryTarget = "jupiter"
    color: PlanetaryColor = "mono"
    bayer: CfaPattern = "RGGB"
    bit_depth: int = 8
    planet_radius_px: float | None = None
    jitter_px: float = 3.0
    warp_px: float = 0.8
    warp_scale_px: float = 24.0
    blur_px: tuple[float, float] = (0.4, 2.5)
    seeing_correlation: float = 0.7
    peak_e: float = 3000.0
    peak_fraction: float = 0.75
    sky_e: float = 10.0
    read_noise_e: float = 3.0
    fps: float = 60.0
    start_time: str = "2025-03-01T22:00:00"

    def __post_init__(self) -> None:
        check_frame_size(self)
        if self.n_frames < 1:
            raise config_error(self, "n_frames", "at least 1")
        if self.target not in ("jupiter", "moon"):
            raise config_error(self, "target", "'jupiter' or 'moon'")
        if self.color not in ("mono", "rgb", "bayer"):
            raise config_error(self, "color", "'mono', 'rgb' or 'bayer'")
        if self.bayer not in CFA_PATTERNS:
            raise config_error(self, "bayer", f"one of {CFA_PATTERNS}")
        if self.bit_depth not in (8, 16):
            raise config_error(self, "bit_depth", "8 or 16")
        lo, hi = self.blur_px
        if not 0.0 <= lo <= hi:
            raise config_error(self, "blur_px", "(best, worst) with 0 <= best <= worst")
        if not 0.0 <= self.seeing_correlation < 1.0:
            raise config_error(self, "seeing_correlation", "a number in [0, 1)")
        if not 0.0 < self.peak_fraction <= 1.0:
            raise config_error(self, "peak_fraction", "a fraction in (0, 1]")
        check_positive(self, ("peak_e", "fps", "warp_scale_px"))
        for name in ("jitter_px", "warp_px", "sky_e", "read_noise_e"):
            if getattr(self, name) < 0:
                raise config_error(self, name, "a number >= 0")

    @property
    def full_scale(self) -> int:
        """Largest sample value: 255 or 65535."""
        return 255 if self.bit_depth == 8 else 65535

    @property
    def gain(self) -> float:
        """Electrons per ADU, chosen so the clean peak sits at ``peak_fraction`` of full scale."""
        return (self.peak_e + self.sky_e) / (self.peak_fraction * self.full_scale)


@dataclass(frozen=True, eq=False)
class PlanetarySession:
    """A drawn planetary video: clean canvas and per-frame seeing, ready to render frames.

    Attributes
    ----------
    config : PlanetaryConfig
    seed : int
    canvas : ndarray float32 (H + 2m, W + 2m, 3)
        Clean RGB target in relative units (mono luminance peak 1).
    margin : int
        ``m``: frame pixel ``(x, y)`` at zero offset shows canvas pixel ``(x + m, y + m)``.
    offsets : ndarray (N, 2)
        Per frame: frame pixel ``(x, y)`` shows clean-image point ``(x + dx, y + dy)``.
    blur_sigma : ndarray (N,)
        Per-frame Gaussian blur sigma (px).
    warp_rms : ndarray (N,)
        Per-frame rms of the local displacement field (px).
    quality : ndarray (N,)
        Seeing score in [0, 1], 0 best.
    """

    config: PlanetaryConfig
    seed: int
    canvas: Image
    margin: int
    offsets: npt.NDArray[np.float64]
    blur_sigma: npt.NDArray[np.float64]
    warp_rms: npt.NDArray[np.float64]
    quality: npt.NDArray[np.float64]
    _mono: Image = field(repr=False)

    def clean(self) -> Image:
        """The clean, undistorted, sharp image in frame data units (full scale 1.0), no noise.

        ``(H, W)`` for mono; ``(H, W, 3)`` R, G, B for RGB and Bayer videos.
        """
        config = self.config
        m = self.margin
        source = self._mono if config.color == "mono" else self.canvas
        crop = source[m : m + config.height, m : m + config.width]
        scale = config.peak_e / (config.gain * config.full_scale)
        offset = config.sky_e / (config.gain * config.full_scale)
        return (crop * np.float32(scale) + np.float32(offset)).astype(np.float32)


def jupiter_image(
    shape: tuple[int, int],
    *,
    center: tuple[float, float],
    radius: float,
    rng: np.random.Generator,
    oversample: int = 2,
) -> Image:
    """Render a Jupiter-like disk: belts, zones, turbulent edges, ovals, limb darkening.

    Parameters
    ----------
    shape : (H, W)
        Image size.
    center : (x, y)
        Disk centre (px).
    radius : float
        Equatorial radius (px); the polar radius is 0.935 of it.
    rng : numpy.random.Generator
        Source of the band layout and texture.
    oversample : int
        Supersampling per axis for a smooth limb.

    Returns
    -------
    ndarray float32 (H, W, 3)
        Relative intensity, R, G, B; the mean of the channels peaks at about 1.
    """
    tex_h, tex_w = 256, 512
    lat = np.linspace(90.0, -90.0, tex_h, dtype=np.float32)[:, None]
    lon = np.linspace(-180.0, 180.0, tex_w, endpoint=False, dtype=np.float32)[None, :]
    wobble = fractal_noise((tex_h, tex_w), scale_px=48.0, rng=rng, octaves=5)
    detail = fractal_noise((tex_h, tex_w), scale_px=12.0, rng=rng, octaves=4)
    lat_p = lat + 1.6 * wobble
    belts = [
        (12.0, 5.0, 0.45),
        (-14.0, 5.5, 0.4),
        (27.0, 3.0, 0.25),
        (-28.0, 3.0, 0.22),
        (38.0, 2.5, 0.18),
        (-38.0, 2.5, 0.18),
        (47.0, 2.0, 0.15),
        (-46.0, 2.0, 0.15),
    ]
    dark = np.zeros((tex_h, tex_w), dtype=np.float32)
    for center_lat, half_width, depth in belts:
        c = center_lat + rng.uniform(-1.5, 1.5)
        w = half_width * rng.uniform(0.8, 1.2)
        d = depth * rng.uniform(0.8, 1.2)
        dark += np.float32(0.5 * d) * (1.0 - np.tanh((np.abs(lat_p - c) - w) / 1.6))
    polar = np.clip((np.abs(lat) - 50.0) / 30.0, 0.0, 1.0)
    dark = np.clip(dark + 0.35 * polar + 0.06 * detail, 0.0, 0.85)
    zone_rgb = np.array([1.0, 0.96, 0.86], dtype=np.float32)
    belt_rgb = np.array([0.72, 0.5, 0.36], dtype=np.float32)
    tex = (1.0 - dark)[..., None] * zone_rgb + dark[..., None] * belt_rgb * np.float32(0.6)
    # Red oval near -22 deg, white ovals near -33 deg.
    ovals = [(-22.0, float(rng.uniform(-60, 60)), 11.0, 5.5, np.array([0.95, 0.5, 0.35]), 0.7)]
    for _ in range(3):
        ovals.append(
            (-33.0, float(rng.uniform(-180, 180)), 3.0, 2.0, np.array([1.0, 1.0, 0.97]), 0.8)
        )
    for olat, olon, a, b, color, strength in ovals:
        dlon = (lon - olon + 180.0) % 360.0 - 180.0
        d2 = (dlon / a) ** 2 + ((lat - olat) / b) ** 2
        inside = np.exp(-(d2**2))[..., None].astype(np.float32)
        collar = (0.25 * np.exp(-(((np.sqrt(d2) - 1.3) / 0.25) ** 2)))[..., None].astype(np.float32)
        tex = tex * (1.0 - strength * inside) + strength * inside * color.astype(np.float32)
        tex = tex + collar * zone_rgb * np.float32(0.3)
    tex = np.ascontiguousarray(tex, dtype=np.float32)

    height, width = shape
    hs, ws = height * oversample, width * oversample
    ys = (np.arange(hs, dtype=np.float32) + 0.5) / oversample - 0.5
    xs = (np.arange(ws, dtype=np.float32) + 0.5) / oversample - 0.5
    u = (xs[None, :] - np.float32(center[0])) / np.float32(radius)
    v = (ys[:, None] - np.float32(center[1])) / np.float32(0.935 * radius)
    rho2 = u * u + v * v
    inside = rho2 < 1.0
    mu = np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))
    yy = np.clip(-v, -1.0, 1.0)
    phi = np.degrees(np.arcsin(yy))
    lam = np.degrees(np.arctan2(u, np.maximum(mu, 1e-6)))
    map_x = ((lam + 180.0) / 360.0 * tex_w).astype(np.float32)
    map_y = np.broadcast_to((90.0 - phi) / 180.0 * (tex_h - 1), map_x.shape).astype(np.float32)
    sampled = cv2.remap(tex, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    limb = np.where(inside, mu**0.45, 0.0).astype(np.float32)
    image = sampled * limb[..., None]
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    peak = float(image.mean(axis=2).max())
    return (image / np.float32(peak)).astype(np.float32)


def moon_image(shape: tuple[int, int], *, rng: np.random.Generator) -> Image:
    """Render a lunar surface filling the frame: craters and maria under a low Sun.

    Returns
    -------
    ndarray float32 (H, W, 3)
        Relative intensity, R, G, B; the mean of the channels peaks at about 1.
    """
    height, width = shape
    scale = min(height, width)
    h = 0.6 * fractal_noise(shape, scale_px=scale / 3.0, rng=rng, octaves=7, persistence=0.5)
    maria = fractal_noise(shape, scale_px=scale / 2.0, rng=rng, octaves=4)
    area = height * width
    count = int(area / 900)
    r_min, r_max = 1.5, 0.12 * scale
    u = rng.random(count)
    a, b = r_min**-2.0, r_max**-2.0
    radii = (a - u * (a - b)) ** -0.5
    cxs = rng.uniform(0, width, count)
    cys = rng.uniform(0, height, count)
    for cx, cy, r in zip(cxs, cys, radii, strict=True):
        half = int(math.ceil(2.5 * r)) + 1
        xa, xb = max(0, int(cx) - half), min(width, int(cx) + half + 1)
        ya, yb = max(0, int(cy) - half), min(height, int(cy) + half + 1)
        if xa >= xb or ya >= yb:
            continue
        yy, xx = np.mgrid[ya:yb, xa:xb].astype(np.float32)
        d = np.hypot(xx - np.float32(cx), yy - np.float32(cy)) / np.float32(r)
        depth = 0.35 * r
        bowl = np.where(d < 1.0, depth * (d * d - 1.0), 0.0)
        rim = 0.12 * r * np.exp(-(((d - 1.0) / 0.18) ** 2))
        ejecta = np.where(d > 1.0, 0.05 * r * d**-3.0, 0.0)
        h[ya:yb, xa:xb] += (bowl + rim + ejecta).astype(np.float32)
    gy, gx = np.gradient(h)
    az = rng.uniform(0.0, 2.0 * math.pi)
    el = math.radians(rng.uniform(12.0, 25.0))
    lx, ly, lz = math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)
    norm = np.sqrt(gx * gx + gy * gy + 1.0)
    shade = np.clip((-gx * lx - gy * ly + lz) / norm, 0.0, None) / lz
    albedo = 0.55 + 0.35 / (1.0 + np.exp(2.5 * maria))
    image = (albedo * shade).astype(np.float32)
    image = cv2.GaussianBlur(image, (0, 0), 0.6)
    rgb = image[..., None] * np.array([1.02, 1.0, 0.95], dtype=np.float32)
    peak = float(np.percentile(rgb.mean(axis=2), 99.9))
    return np.clip(rgb / np.float32(peak), 0.0, 1.2).astype(np.float32)


def make_planetary(
    config: PlanetaryConfig | None = None,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
) -> PlanetarySession:
    """Draw a planetary video: the clean target and every frame's seeing (default seed 0)."""
    config = config if config is not None else PlanetaryConfig()
    entropy = resolve_seed(seed, rng)
    n = config.n_frames
    margin = int(math.ceil(4.0 * config.jitter_px + 4.0 * config.warp_px * 1.6 + 4.0))
    canvas_shape = (config.height + 2 * margin, config.width + 2 * margin)
    canvas_rng = child_rng(entropy, _KEY_CANVAS)
    if config.target == "jupiter":
        radius = config.planet_radius_px or 0.32 * min(config.width, config.height)
        center = (margin + (config.width - 1) / 2.0, margin + (config.height - 1) / 2.0)
        canvas = jupiter_image(canvas_shape, center=center, radius=radius, rng=canvas_rng)
    else:
        canvas = moon_image(canvas_shape, rng=canvas_rng)
    mono = canvas.mean(axis=2, dtype=np.float32)
    rng_seeing = child_rng(entropy, _KEY_SEEING)
    rho = config.seeing_correlation
    innov = math.sqrt(1.0 - rho * rho)
    z = rng_seeing.standard_normal(n)
    jit = rng_seeing.standard_normal((n, 2))
    score = np.empty(n)
    offsets = np.empty((n, 2))
    state = z[0]
    jstate = jit[0] * config.jitter_px
    rho_j = 0.9
    innov_j = math.sqrt(1.0 - rho_j * rho_j)
    for k in range(n):
        if k:
            state = rho * state + innov * z[k]
            jstate = rho_j * jstate + innov_j * config.jitter_px * jit[k]
        score[k] = state
        offsets[k] = jstate
    quality = np.array([0.5 * (1.0 + math.erf(s / math.sqrt(2.0))) for s in score])
    lo, hi = config.blur_px
    blur = lo + (hi - lo) * quality
    warp = config.warp_px * (0.4 + 1.2 * quality)
    return PlanetarySession(
        config=config,
        seed=entropy,
        canvas=canvas,
        margin=margin,
        offsets=offsets,
        blur_sigma=blur,
        warp_rms=warp,
        quality=quality,
        _mono=mono,
    )


def _displacement(
    shape: tuple[int, int], *, scale: float, rms: float, rng: np.random.Generator
) -> tuple[Image, Image]:
    height, width = shape
    gh = int(math.ceil(height / scale)) + 3
    gw = int(math.ceil(width / scale)) + 3
    out = []
    for _ in range(2):
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        up = cv2.resize(grid, (int(gw * scale), int(gh * scale)), interpolation=cv2.INTER_CUBIC)
        o = int(scale)
        field_ = np.ascontiguousarray(up[o : o + height, o : o + width])
        std = float(field_.std())
        out.append(field_ * np.float32(rms / std) if std > 0 else field_)
    return out[0], out[1]


def render_planetary_frame(
    session: PlanetarySession, index: int, *, noise: bool = True
) -> npt.NDArray[np.generic]:
    """Frame ``index`` of the video.

    Returns
    -------
    ndarray
        uint8 or uint16 samples (``noise=True``) or float32 expected values in full-scale units;
        ``(H, W)`` for mono and Bayer, ``(H, W, 3)`` for RGB.
    """
    config = session.config
    height, width = config.height, config.width
    frame_rng = child_rng(session.seed, _KEY_FRAME, index)
    wx, wy = _displacement(
        (height, width),
        scale=config.warp_scale_px,
        rms=float(session.warp_rms[index]),
        rng=frame_rng,
    )
    m = session.margin
    dx, dy = session.offsets[index]
    map_x = wx + (np.arange(width, dtype=np.float32) + np.float32(m + dx))[None, :]
    map_y = wy + (np.arange(height, dtype=np.float32) + np.float32(m + dy))[:, None]
    source = session._mono if config.color == "mono" else session.canvas
    image = cv2.remap(source, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    np.maximum(image, 0.0, out=image)
    sigma = float(session.blur_sigma[index])
    if sigma > 0.05:
        image = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    if config.color == "bayer":
        image = mosaic(image, config.bayer)
    electrons = image * np.float32(config.peak_e) + np.float32(config.sky_e)
    adu_per_e = np.float32(1.0 / config.gain)
    if not noise:
        return np.clip(electrons * adu_per_e / np.float32(config.full_scale), 0.0, 1.0)
    counts = poisson_noise(electrons, rng=frame_rng)
    counts += np.float32(config.read_noise_e) * frame_rng.standard_normal(
        counts.shape, dtype=np.float32
    )
    adu = np.rint(counts * adu_per_e)
    np.clip(adu, 0, config.full_scale, out=adu)
    return adu.astype(np.uint8 if config.bit_depth == 8 else np.uint16)


def planetary_frames(session: PlanetarySession) -> Iterator[npt.NDArray[np.generic]]:
    """Yield every frame in order, one at a time (constant memory)."""
    for k in range(session.config.n_frames):
        yield render_planetary_frame(session, k)


def _truth_dir(path: Path) -> Path:
    return path.with_name(f"{path.stem}_truth")


def write_planetary_ser(
    path: str | os.PathLike[str],
    config: PlanetaryConfig | None = None,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
) -> PlanetaryTruth:
    """Simulate a planetary video and write it as a SER file, with its truth beside it.

    Writes ``path`` (atomically) and ``<stem>_truth/`` next to it holding ``clean.fits`` (the
    sharp, undistorted, noise-free image in frame data units, float32; RGB for colour videos) and
    ``truth.json`` (config, seed, gain, per-frame offset, blur sigma, warp rms, quality).

    Parameters
    ----------
    path : path-like
        Output ``.ser`` file; replaced if it exists.
    config : PlanetaryConfig, optional
        Defaults to ``PlanetaryConfig()`` (200 mono 8-bit frames of 320 x 240).
    seed, rng :
        Seed (default 0) or generator; the same seed gives byte-identical files.
    """
    from skystack.io import write
    from skystack.io._atomic import atomic_path
    from skystack.io.ser import write_ser

    session = make_planetary(config, seed=seed, rng=rng)
    config = session.config
    path = Path(path)
    truth_dir = _truth_dir(path)
    truth_dir.mkdir(parents=True, exist_ok=True)
    start = datetime.fromisoformat(config.start_time).replace(tzinfo=None)
    stamps = [start + timedelta(seconds=k / config.fps) for k in range(config.n_frames)]
    meta = FrameMeta(
        cfa=config.bayer if config.color == "bayer" else None,
        camera="skystack-sim",
        date_obs=start,
        exposure=1.0 / config.fps,
        target=config.target,
    )
    with atomic_path(path, overwrite=True) as tmp:
        write_ser(
            planetary_frames(session), tmp, meta=meta, bit_depth=config.bit_depth, timestamps=stamps
        )
    write(Frame(session.clean()), truth_dir / "clean.fits", bit_depth=32, overwrite=True)
    data = {
        "format": _TRUTH_FORMAT,
        "version": 1,
        "seed": session.seed,
        "config": config_to_dict(config),
        "video": path.name,
        "gain_e_per_adu": config.gain,
        "conventions": {
            "offset": "frame pixel (x, y) shows clean-image point (x + dx, y + dy) before the "
            "local seeing warp",
            "clean.fits": "sharp, undistorted expected frame in data units (full scale 1.0); "
            "R, G, B for rgb and bayer videos",
            "blur_sigma_px": "sigma of the Gaussian blur of each frame",
        },
        "frames": [
            {
                "index": k,
                "offset": [float(session.offsets[k, 0]), float(session.offsets[k, 1])],
                "blur_sigma_px": float(session.blur_sigma[k]),
                "warp_rms_px": float(session.warp_rms[k]),
                "quality": float(session.quality[k]),
            }
            for k in range(config.n_frames)
        ],
    }
    write_truth_json(data, truth_dir / "truth.json")
    return PlanetaryTruth.load(path)


@dataclass(frozen=True, eq=False)
class PlanetaryTruth:
    """Ground truth of a simulated planetary video.

    Attributes
    ----------
    path : Path
        The SER file.
    truth_dir : Path
        ``<stem>_truth/`` beside it.
    clean : Path
        ``clean.fits``: the sharp, undistorted, noise-free image in frame data units.
    config : PlanetaryConfig
    seed : int
    offsets : ndarray (N, 2)
        Frame pixel ``(x, y)`` shows clean point ``(x + dx, y + dy)``.
    blur_sigma : ndarray (N,)
        Per-frame Gaussian blur sigma (px).
    warp_rms : ndarray (N,)
        Per-frame rms of the local displacement (px).
    quality : ndarray (N,)
        Seeing score in [0, 1], 0 best.
    gain : float
        Electrons per ADU.
    data : dict
        The parsed ``truth.json``.
    """

    path: Path
    truth_dir: Path
    clean: Path
    config: PlanetaryConfig
    seed: int
    offsets: npt.NDArray[np.float64]
    blur_sigma: npt.NDArray[np.float64]
    warp_rms: npt.NDArray[np.float64]
    quality: npt.NDArray[np.float64]
    gain: float
    data: dict[str, Any]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PlanetaryTruth:
        """Read the truth of the SER video ``path`` from ``<stem>_truth/truth.json``."""
        path = Path(path)
        truth_dir = _truth_dir(path)
        data = read_truth_json(
            truth_dir / "truth.json",
            kind="planetary",
            expected_format=_TRUTH_FORMAT,
            missing_hint=f" for {path}",
        )
        frames = data["frames"]
        return cls(
            path=path,
            truth_dir=truth_dir,
            clean=truth_dir / "clean.fits",
            config=config_from_dict(PlanetaryConfig, data["config"]),
            seed=int(data["seed"]),
            offsets=np.array([f["offset"] for f in frames], dtype=np.float64).reshape(-1, 2),
            blur_sigma=np.array([f["blur_sigma_px"] for f in frames], dtype=np.float64),
            warp_rms=np.array([f["warp_rms_px"] for f in frames], dtype=np.float64),
            quality=np.array([f["quality"] for f in frames], dtype=np.float64),
            gain=float(data["gain_e_per_adu"]),
            data=data,
        )
