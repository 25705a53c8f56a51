"""A seeded, physically grounded simulator of capture sessions, with ground truth.

Three kinds of data, each from one seed (the same seed gives byte-identical files):

* deep-sky sessions -- lights, darks, flats, bias and dark-flats of a mono or one-shot-colour
  camera, with per-light pointing transforms, seeing, clouds, satellite trails and cosmic rays
  (:class:`SessionConfig`, :func:`make_session`, the ``render_*`` functions,
  :func:`write_session`, :class:`SessionTruth`);
* planetary videos -- a planet or the Moon through turbulent air, as SER
  (:class:`PlanetaryConfig`, :func:`write_planetary_ser`, :class:`PlanetaryTruth`);
* star-trail sequences -- a fixed camera, the sky turning about the pole above a landscape
  (:class:`StarTrailConfig`, :func:`write_star_trails`, :class:`StarTrailTruth`).

Example
-------
>>> from skystack.sim import SessionConfig, write_session
>>> truth = write_session("session", SessionConfig(n_lights=8), seed=1)  # doctest: +SKIP
>>> truth.transforms[3]  # maps light 3's pixels (x, y, 1) to light 0's  # doctest: +SKIP
"""

from __future__ import annotations

from skystack.sim.planetary import (
    PlanetaryConfig,
    PlanetarySession,
    PlanetaryTruth,
    make_planetary,
    planetary_frames,
    render_planetary_frame,
    write_planetary_ser,
)
from skystack.sim.psf import moffat_alpha, moffat_fwhm, moffat_kernel, render_stars
from skystack.sim.sensor import Sensor, expose, mosaic, poisson_noise
from skystack.sim.session import (
    LightPlan,
    Session,
    SessionConfig,
    Trail,
    light_star_positions,
    make_session,
    render_bias,
    render_dark,
    render_dark_flat,
    render_flat,
    render_light,
    render_scene,
    render_sky,
    render_stack,
)
from skystack.sim.stars import StarField, planck_rgb
from skystack.sim.startrails import (
    StarTrailConfig,
    StarTrailSession,
    StarTrailTruth,
    make_star_trails,
    render_star_trail_frame,
    write_star_trails,
)
from skystack.sim.write import SessionTruth, write_session

__all__ = [
    # deep-sky sessions
    "SessionConfig",
    "Session",
    "LightPlan",
    "Trail",
    "make_session",
    "render_sky",
    "render_scene",
    "render_stack",
    "render_light",
    "render_bias",
    "render_dark",
    "render_flat",
    "render_dark_flat",
    "light_star_positions",
    "write_session",
    "SessionTruth",
    # planetary videos
    "PlanetaryConfig",
    "PlanetarySession",
    "PlanetaryTruth",
    "make_planetary",
    "render_planetary_frame",
    "planetary_frames",
    "write_planetary_ser",
    # star trails
    "StarTrailConfig",
    "StarTrailSession",
    "StarTrailTruth",
    "make_star_trails",
    "render_star_trail_frame",
    "write_star_trails",
    # building blocks
    "StarField",
    "Sensor",
    "planck_rgb",
    "moffat_alpha",
    "moffat_fwhm",
    "moffat_kernel",
    "render_stars",
    "expose",
    "mosaic",
    "poisson_noise",
]
