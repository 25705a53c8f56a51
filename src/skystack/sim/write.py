"""Writing a simulated deep-sky session to disk with its ground truth, and reading the truth back.

Layout written by :func:`write_session`::

    DIR/lights/light_0001.fits ...     16-bit FITS, IMAGETYP = Light Frame, EXPTIME, GAIN, ...
    DIR/darks/dark_0001.fits ...
    DIR/flats/flat_0001.fits ...
    DIR/bias/bias_0001.fits ...
    DIR/darkflats/darkflat_0001.fits ...   (only when n_dark_flats > 0)
    DIR/truth/truth.json         config, seed, per-light transforms, FWHM, background, transparency,
                                 trails, cosmic rays, sensor (hot/dead pixels, vignetting, dust)
    DIR/truth/stars.csv          id, x, y (reference frame), flux_e, temperature_k, r, g, b
    DIR/truth/scene.fits         clean sky in the reference frame, e- per light exposure (float32)
    DIR/truth/signal.fits        the same without the sky background
    DIR/truth/bias.fits          bias level per pixel, ADU (16-bit units)
    DIR/truth/dark_current.fits  dark current per pixel, e-/s
    DIR/truth/flat_field.fits    vignetting x dust x pixel response (relative, 1 at the centre)

Frames are rendered and written one at a time, so memory does not grow with the frame count.
``truth.json`` is written last: its presence marks a complete session.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skystack._typing import XY, FrameKind, Image, ProgressCallback
from skystack.frame import Frame, FrameMeta
from skystack.sim._util import (
    config_from_dict,
    config_to_dict,
    read_stars_csv,
    read_truth_json,
    write_stars_csv,
    write_truth_json,
)
from skystack.sim.session import (
    Session,
    SessionConfig,
    Trail,
    make_session,
    render_bias,
    render_dark,
    render_dark_flat,
    render_flat,
    render_light,
    render_scene,
)
from skystack.sim.stars import StarField

__all__ = ["write_session", "SessionTruth", "write_frame_adu", "TRUTH_FORMAT"]

TRUTH_FORMAT = "skystack-sim session truth"
_TRUTH_VERSION = 1
_CAMERA = "skystack-sim"

_KINDS: tuple[tuple[str, FrameKind, str, str], ...] = (
    # (config count field, kind, folder, file stem)
    ("n_bias", "bias", "bias", "bias"),
    ("n_darks", "dark", "darks", "dark"),
    ("n_flats", "flat", "flats", "flat"),
    ("n_dark_flats", "dark-flat", "darkflats", "darkflat"),
    ("n_lights", "light", "lights", "light"),
)


def write_frame_adu(adu: npt.NDArray[np.uint16], path: Path, *, meta: FrameMeta) -> Path:
    """Write uint16 ADU as a 16-bit file through :func:`skystack.io.write` (atomic, overwrite)."""
    from skystack.io import write

    data = adu.astype(np.float32) / np.float32(65535.0)
    return write(Frame(data, meta.replace(bit_depth=16)), path, bit_depth=16, overwrite=True)


def _write_float(image: Image, path: Path) -> None:
    from skystack.io import write

    write(Frame(np.asarray(image, dtype=np.float32)), path, bit_depth=32, overwrite=True)


def _meta(session: Session, kind: FrameKind, index: int) -> FrameMeta:
    config = session.config
    last_light = session.lights[-1].date_obs
    if kind == "light":
        date = session.lights[index].date_obs
        exposure = config.exposure_s
    else:
        order = {"dark": 1, "bias": 2, "flat": 3, "dark-flat": 4}[kind]
        exposure = {
            "dark": config.dark_exposure,
            "bias": 0.0,
            "flat": config.flat_exposure_s,
            "dark-flat": config.flat_exposure_s,
        }[kind]
        date = last_light + timedelta(minutes=30 * order, seconds=index * (exposure + 2.0))
    return FrameMeta(
        kind=kind,
        exposure=float(exposure),
        gain=float(config.gain_setting),
        temperature=float(config.temperature_c),
        cfa=config.bayer,
        date_obs=date,
        camera=_CAMERA,
        filter=config.filter,
        target=config.target if kind == "light" else None,
    )


def _render(session: Session, kind: FrameKind, index: int) -> npt.NDArray[np.uint16]:
    renderer = {
        "light": render_light,
        "bias": render_bias,
        "dark": render_dark,
        "flat": render_flat,
        "dark-flat": render_dark_flat,
    }[kind]
    return renderer(session, index)  # type: ignore[return-value]


def _trail_json(trail: Trail | None) -> dict[str, Any] | None:
    if trail is None:
        return None
    return {
        "start": list(trail.start),
        "end": list(trail.end),
        "start_ref": list(trail.start_ref),
        "end_ref": list(trail.end_ref),
        "width_px": trail.width_px,
        "peak_e": trail.peak_e,
    }


def _truth_json(session: Session, files: dict[str, list[str]]) -> dict[str, Any]:
    config = session.config
    sensor = session.sensor
    hot = sensor.hot
    lights = []
    for plan, name in zip(session.lights, files["lights"], strict=True):
        lights.append(
            {
                "index": plan.index,
                "file": name,
                "transform": plan.transform.tolist(),
                "rotation_deg": plan.rotation_deg,
                "shift_px": list(plan.shift_px),
                "fwhm_px": plan.fwhm_px,
                "fwhm_pixel_px": plan.fwhm_pixel_px,
                "background_e": plan.background_e,
                "transparency": plan.transparency,
                "cloudy": plan.cloudy,
                "date_obs": plan.date_obs.isoformat(),
                "trail": _trail_json(plan.trail),
                "cosmic_rays": plan.cosmic_rays.tolist(),
            }
        )
    color = np.asarray(config.sky_color, dtype=np.float64)
    return {
        "format": TRUTH_FORMAT,
        "version": _TRUTH_VERSION,
        "seed": session.seed,
        "config": config_to_dict(config),
        "conventions": {
            "points": "(x, y) with 0-based pixel centres; arrays are indexed [y, x]",
            "transform": "3x3 matrix (rows) mapping a light's pixel (x, y, 1) to the reference "
            "frame's (light 0, the identity)",
            "light_model": "ADU = quantise(bias + (Poisson(flat * sky + dark_current * t) "
            "+ read noise + cosmic rays) / gain), saturating",
            "sky": "transparency * (stars + objects) + background_e * gradient * sky colour "
            "(+ trail); Bayer sites: colour x qe",
            "gradient": "G(u, v) = 1 + gx u + gy v + q (u^2 + v^2), u = (x - (W-1)/2) / (W/2), "
            "v = (y - (H-1)/2) / (H/2), in sensor coordinates",
            "units": {
                "scene.fits": "e- per light exposure, reference frame, before vignetting/dust",
                "signal.fits": "scene.fits without the sky background",
                "bias.fits": "ADU (16-bit units; divide by 65535 for frame data units)",
                "dark_current.fits": "e-/s",
                "flat_field.fits": "relative response, 1 at the optical centre",
                "stars.csv flux_e": "e- per light exposure for a mono sensor (mean of r, g, b = 1)",
            },
        },
        "scene": {
            "fwhm_px": session.scene_fwhm,
            "psf": {"profile": "moffat", "beta": config.psf_beta},
            "star_count": len(session.stars),
            "star_region": list(session.star_region),
            "objects": [
                {
                    "name": c.name,
                    "x0": c.x0,
                    "y0": c.y0,
                    "width": int(c.rgb.shape[1]),
                    "height": int(c.rgb.shape[0]),
                    "fwhm_px": c.fwhm,
                }
                for c in session.cutouts
            ],
        },
        "sky": {
            "level_e": config.sky_level_e,
            "gradient": list(config.sky_gradient),
            "quadratic": config.sky_gradient_quadratic,
            "color": (color / color.mean()).tolist(),
        },
        "sensor": {
            "width": config.width,
            "height": config.height,
            "cfa": config.bayer,
            "qe": list(sensor.qe) if config.bayer else [1.0, 1.0, 1.0],
            "gain_e_per_adu": sensor.gain,
            "read_noise_e": sensor.read_noise,
            "bias_adu": config.bias_adu,
            "bit_depth": sensor.bit_depth,
            "saturation_adu": sensor.saturation_adu,
            "dark_current_e_per_s": config.dark_current_e_per_s,
            "flat_level_e": config.flat_level * 65535.0 * config.gain,
            "vignetting": {
                "center": list(sensor.vignetting_center),
                "focal_px": sensor.vignetting_focal_px
                if np.isfinite(sensor.vignetting_focal_px)
                else None,
                "falloff": config.vignetting,
                "formula": "cos^4(atan(r / focal_px))",
            },
            "dust": [list(d) for d in sensor.dust_donuts],
            "hot_pixels": [
                [int(x), int(y), float(r), k]
                for x, y, r, k in zip(hot.x, hot.y, hot.rate, hot.kind, strict=True)
            ],
            "cold_pixels": [
                [int(x), int(y)] for x, y in zip(sensor.cold_x, sensor.cold_y, strict=True)
            ],
        },
        "files": files,
        "lights": lights,
    }


def write_session(
    directory: str | os.PathLike[str],
    config: SessionConfig | None = None,
    *,
    seed: int | None = None,
    rng: np.random.Generator | None = None,
    progress: ProgressCallback | None = None,
) -> SessionTruth:
    """Simulate a session and write its frames and ground truth under ``directory``.

    Parameters
    ----------
    directory : path-like
        Created if missing; existing files of the same names are replaced.
    config : SessionConfig, optional
        Defaults to ``SessionConfig()`` (12 lights of 512 x 384, 5 bias, 5 darks, 5 flats).
    seed : int, optional
        Seed of every random draw (default 0); the same seed gives byte-identical files.
    rng : numpy.random.Generator, optional
        Alternative to ``seed``.
    progress : callable, optional
        ``progress(done, total, "simulate")`` after each frame.

    Returns
    -------
    SessionTruth
        Paths and parsed ground truth.
    """
    session = make_session(config, seed=seed, rng=rng)
    config = session.config
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    truth_dir = root / "truth"
    truth_dir.mkdir(exist_ok=True)
    (truth_dir / "truth.json").unlink(missing_ok=True)
    files: dict[str, list[str]] = {}
    total = sum(getattr(config, count) for count, *_ in _KINDS)
    done = 0
    for count_field, kind, folder, stem in _KINDS:
        count = getattr(config, count_field)
        names: list[str] = []
        if count:
            (root / folder).mkdir(exist_ok=True)
        for i in range(count):
            rel = f"{folder}/{stem}_{i + 1:04d}.fits"
            write_frame_adu(_render(session, kind, i), root / rel, meta=_meta(session, kind, i))
            names.append(rel)
            done += 1
            if progress is not None:
                progress(done, total, "simulate")
        files[folder] = names
    write_stars_csv(session.stars, truth_dir / "stars.csv")
    scene = render_scene(session, background=True)
    _write_float(scene, truth_dir / "scene.fits")
    del scene
    _write_float(render_scene(session, background=False), truth_dir / "signal.fits")
    _write_float(session.sensor.bias, truth_dir / "bias.fits")
    _write_float(session.sensor.dark_rate, truth_dir / "dark_current.fits")
    _write_float(session.sensor.flat_field, truth_dir / "flat_field.fits")
    write_truth_json(_truth_json(session, files), truth_dir / "truth.json")
    return SessionTruth.load(root)


@dataclass(frozen=True, eq=False)
class SessionTruth:
    """The ground truth of a written session: file paths and the numbers from ``truth.json``.

    Attributes
    ----------
    directory : Path
        Session folder.
    config : SessionConfig
        The configuration used.
    seed : int
        The entropy of every random draw.
    lights, darks, flats, bias, dark_flats : tuple of Path
        Frame files in order.
    truth_json, stars_csv, scene, signal, bias_map, dark_current, flat_field : Path
        Truth files (see the module docstring for units).
    transforms : tuple of ndarray (3, 3)
        Per light, maps its pixel coordinates to the reference frame (light 0).
    fwhm_px, background_e, transparency : tuple of float
        Per light: Moffat FWHM of the optical PSF (px), sky level (e-/px before the flat field)
        and transparency.
    fwhm_pixel_px : tuple of float
        Per light: FWHM of stars as the pixels record them (slightly larger than ``fwhm_px``).
    cloudy : tuple of bool
        Per light.
    trails : tuple of Trail
        Satellite trails, in light order.
    cosmic_rays : tuple of ndarray (K, 3)
        Per light: hit pixels ``x, y, electrons``.
    hot_pixels : ndarray (K, 3)
        ``x, y, rate (e-/s)``.
    hot_pixel_kinds : tuple of str
        ``warm``, ``hot`` or ``saturated`` per hot pixel.
    cold_pixels : ndarray (K, 2) of int
        Dead pixels ``x, y``.
    stars : StarField
        Truth stars in reference coordinates.
    scene_fwhm_px : float
        FWHM of ``scene.fits``.
    data : dict
        The whole parsed ``truth.json``.
    """

    directory: Path
    config: SessionConfig
    seed: int
    lights: tuple[Path, ...]
    darks: tuple[Path, ...]
    flats: tuple[Path, ...]
    bias: tuple[Path, ...]
    dark_flats: tuple[Path, ...]
    truth_json: Path
    stars_csv: Path
    scene: Path
    signal: Path
    bias_map: Path
    dark_current: Path
    flat_field: Path
    transforms: tuple[npt.NDArray[np.float64], ...]
    fwhm_px: tuple[float, ...]
    fwhm_pixel_px: tuple[float, ...]
    background_e: tuple[float, ...]
    transparency: tuple[float, ...]
    cloudy: tuple[bool, ...]
    trails: tuple[Trail, ...]
    cosmic_rays: tuple[npt.NDArray[np.float64], ...]
    hot_pixels: npt.NDArray[np.float64]
    hot_pixel_kinds: tuple[str, ...]
    cold_pixels: npt.NDArray[np.int64]
    stars: StarField
    scene_fwhm_px: float
    data: dict[str, Any]

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> SessionTruth:
        """Read ``directory/truth/truth.json`` and ``stars.csv``.

        Raises
        ------
        MissingFileError
            When the truth files are missing (the session was not completely written).
        FormatError
            When ``truth.json`` is not a skystack-sim session truth.
        """
        root = Path(directory)
        truth_dir = root / "truth"
        path = truth_dir / "truth.json"
        data = read_truth_json(
            path,
            kind="session",
            expected_format=TRUTH_FORMAT,
            missing_hint="; write the session with skystack.sim.write_session",
            show_format=True,
        )
        config = config_from_dict(SessionConfig, data["config"])
        files = data["files"]
        lights = data["lights"]
        trails = []
        for row in lights:
            t = row["trail"]
            if t is not None:
                trails.append(
                    Trail(
                        light=int(row["index"]),
                        start=tuple(t["start"]),  # type: ignore[arg-type]
                        end=tuple(t["end"]),  # type: ignore[arg-type]
                        start_ref=tuple(t["start_ref"]),  # type: ignore[arg-type]
                        end_ref=tuple(t["end_ref"]),  # type: ignore[arg-type]
                        width_px=float(t["width_px"]),
                        peak_e=float(t["peak_e"]),
                    )
                )
        hot = data["sensor"]["hot_pixels"]
        stars = read_stars_csv(truth_dir / "stars.csv")
        return cls(
            directory=root,
            config=config,
            seed=int(data["seed"]),
            lights=tuple(root / f for f in files.get("lights", [])),
            darks=tuple(root / f for f in files.get("darks", [])),
            flats=tuple(root / f for f in files.get("flats", [])),
            bias=tuple(root / f for f in files.get("bias", [])),
            dark_flats=tuple(root / f for f in files.get("darkflats", [])),
            truth_json=path,
            stars_csv=truth_dir / "stars.csv",
            scene=truth_dir / "scene.fits",
            signal=truth_dir / "signal.fits",
            bias_map=truth_dir / "bias.fits",
            dark_current=truth_dir / "dark_current.fits",
            flat_field=truth_dir / "flat_field.fits",
            transforms=tuple(np.array(row["transform"], dtype=np.float64) for row in lights),
            fwhm_px=tuple(float(row["fwhm_px"]) for row in lights),
            fwhm_pixel_px=tuple(float(row["fwhm_pixel_px"]) for row in lights),
            background_e=tuple(float(row["background_e"]) for row in lights),
            transparency=tuple(float(row["transparency"]) for row in lights),
            cloudy=tuple(bool(row["cloudy"]) for row in lights),
            trails=tuple(trails),
            cosmic_rays=tuple(
                np.array(row["cosmic_rays"], dtype=np.float64).reshape(-1, 3) for row in lights
            ),
            hot_pixels=np.array([h[:3] for h in hot], dtype=np.float64).reshape(-1, 3),
            hot_pixel_kinds=tuple(str(h[3]) for h in hot),
            cold_pixels=np.array(data["sensor"]["cold_pixels"], dtype=np.int64).reshape(-1, 2),
            stars=stars,
            scene_fwhm_px=float(data["scene"]["fwhm_px"]),
            data=data,
        )

    def star_positions(self, light: int) -> XY:
        """Truth star positions in light ``light``'s pixel coordinates, ``(N, 2)``."""
        inv = np.linalg.inv(self.transforms[light])
        pts = np.column_stack([self.stars.x, self.stars.y, np.ones(len(self.stars))])
        mapped = pts @ inv.T
        return mapped[:, :2] / mapped[:, 2:3]

    def date_obs(self, light: int) -> datetime:
        """Start time of light ``light``."""
        return datetime.fromisoformat(self.data["lights"][light]["date_obs"])
