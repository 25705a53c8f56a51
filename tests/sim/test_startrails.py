"""Star-trail sequences: rotation about the recorded pole, static foreground, files and truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

import skystack
from skystack.errors import ConfigError
from skystack.sim import (
    StarTrailConfig,
    StarTrailTruth,
    make_star_trails,
    render_star_trail_frame,
    write_star_trails,
)

CONFIG = StarTrailConfig(width=240, height=160, n_frames=30, interval_s=120.0, exposure_s=20.0)


@pytest.mark.parametrize("hemisphere", ["north", "south"])
def test_stars_rotate_about_the_pole(measure, hemisphere):
    config = StarTrailConfig(
        width=240,
        height=160,
        n_frames=30,
        interval_s=120.0,
        exposure_s=20.0,
        hemisphere=hemisphere,
        pole_xy=(100.0, 60.0),
        color=False,
        foreground_height=0.0,
    )
    session = make_star_trails(config, seed=2)
    pole = np.array(config.pole)
    sky0 = render_star_trail_frame(session, 0, noise=False) - session.sky[..., 0]
    last = config.n_frames - 1
    sky1 = render_star_trail_frame(session, last, noise=False) - session.sky[..., 0]
    xy0 = session.star_positions(0)
    xy1 = session.star_positions(last)
    checked = 0
    for i in np.argsort(-session.stars.flux)[:40]:
        inside = all(10 < p[0] < 230 and 10 < p[1] < 150 for p in (xy0[i], xy1[i]))
        if not inside or np.hypot(*(xy0[i] - pole)) < 20:
            continue
        d0 = np.hypot(xy0[:, 0] - xy0[i, 0], xy0[:, 1] - xy0[i, 1])
        d1 = np.hypot(xy1[:, 0] - xy1[i, 0], xy1[:, 1] - xy1[i, 1])
        others = session.stars.flux > 0.01 * session.stars.flux[i]
        if ((d0 < 8) & (d0 > 0) & others).any() or ((d1 < 8) & (d1 > 0) & others).any():
            continue
        c0 = np.array(measure.centroid(sky0, *xy0[i], fwhm=2.5))
        c1 = np.array(measure.centroid(sky1, *xy1[i], fwhm=2.5))
        assert np.hypot(*(c0 - xy0[i])) < 0.1 and np.hypot(*(c1 - xy1[i])) < 0.1
        # the measured positions are turned about the pole by the recorded angle
        a0 = math.atan2(c0[1] - pole[1], c0[0] - pole[0])
        a1 = math.atan2(c1[1] - pole[1], c1[0] - pole[0])
        turned = math.degrees((a1 - a0 + math.pi) % (2 * math.pi) - math.pi)
        expected = config.rate_deg_per_s * config.interval_s * last
        assert turned == pytest.approx(expected, abs=0.1)
        assert np.hypot(*(c0 - pole)) == pytest.approx(np.hypot(*(c1 - pole)), abs=0.1)
        checked += 1
    assert checked >= 3
    assert (config.rate_deg_per_s < 0) == (hemisphere == "north")


def test_foreground_is_static_and_hides_the_stars():
    session = make_star_trails(CONFIG, seed=3)
    a = render_star_trail_frame(session, 0, noise=False)
    b = render_star_trail_frame(session, 20, noise=False)
    solid = session.alpha >= 1.0
    assert solid.mean() > 0.15
    np.testing.assert_array_equal(a[solid], b[solid])
    np.testing.assert_allclose(a[solid], session.foreground[solid] / CONFIG.gain, rtol=1e-6)
    assert not np.array_equal(a[~solid], b[~solid])


def test_write_star_trails_files_and_truth(tmp_path):
    config = StarTrailConfig(width=120, height=80, n_frames=4, trail_frames=(2,))
    truth = write_star_trails(tmp_path / "a", config, seed=5)
    assert [p.name for p in truth.frames] == [f"frame_{k:04d}.tif" for k in range(1, 5)]
    frame = skystack.read(truth.frames[2])
    assert frame.data.shape == (80, 120, 3)
    session = make_star_trails(config, seed=5)
    np.testing.assert_array_equal(
        np.rint(frame.data * 65535).astype(np.uint16), render_star_trail_frame(session, 2)
    )
    mask = np.load(truth.foreground_mask)
    assert mask.shape == (80, 120) and mask.dtype == bool and mask[-1].all() and not mask[0].any()
    assert skystack.read(truth.foreground).data.shape == (80, 120, 3)
    assert truth.pole == config.pole
    assert truth.rotation_deg_per_frame == pytest.approx(-360 / 86164.0905 * 30.0)
    assert list(truth.trails) == [2]
    np.testing.assert_allclose(truth.star_positions(1), session.star_positions(1), atol=1e-5)
    again = write_star_trails(tmp_path / "b", config, seed=5)
    for p, q in zip(truth.frames, again.frames, strict=True):
        assert p.read_bytes() == q.read_bytes()
    assert StarTrailTruth.load(tmp_path / "a").config == config
    fits = write_star_trails(
        tmp_path / "f",
        StarTrailConfig(width=64, height=48, n_frames=2, file_format="fits", color=False),
        seed=1,
    )
    assert skystack.read(fits.frames[0]).data.shape == (48, 64)


def test_invalid_star_trail_config():
    with pytest.raises(ConfigError, match="exposure_s"):
        StarTrailConfig(interval_s=10.0, exposure_s=20.0)
    with pytest.raises(ConfigError, match="trail_frames"):
        StarTrailConfig(n_frames=3, trail_frames=(3,))
