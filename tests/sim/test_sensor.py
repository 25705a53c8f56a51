"""Noise, quantisation, saturation and Bayer sampling of the simulated camera."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.sim.sensor import (
    POISSON_EXACT_BELOW,
    cfa_channel_map,
    expose,
    mosaic,
    poisson_noise,
    poisson_noise_reference,
)
from skystack.sim.session import SessionConfig, make_session, render_dark, render_sky


def test_poisson_matches_reference_and_is_reproducible(rng):
    lam = rng.uniform(0, 3 * POISSON_EXACT_BELOW, (60, 70)).astype(np.float32)
    lam[0, :5] = 0.0
    fast = poisson_noise(lam, rng=np.random.default_rng(5))
    slow = poisson_noise_reference(lam, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_array_equal(fast, poisson_noise(lam, rng=np.random.default_rng(5)))
    assert (fast[0, :5] == 0).all()


@pytest.mark.parametrize("mean", [0.4, 4.0, 25.0, 35.0, 400.0, 20000.0])
def test_poisson_moments(mean):
    counts = poisson_noise(np.full(400_000, mean, np.float32), rng=np.random.default_rng(1))
    counts = counts.astype(np.float64)
    assert np.all(counts == np.round(counts))
    se = np.sqrt(mean / counts.size)
    assert abs(counts.mean() - mean) < 5 * se
    assert counts.var() / mean == pytest.approx(1.0, abs=0.01)
    if mean < 50:  # the sample skewness is too noisy to test at large means
        skew = ((counts - counts.mean()) ** 3).mean() / counts.std() ** 3
        assert skew * np.sqrt(mean) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("pattern", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_mosaic_puts_each_colour_on_its_sites(pattern):
    rgb = np.zeros((6, 8, 3), np.float32)
    rgb[..., 0] = 1.0
    out = mosaic(rgb, pattern)
    red_sites = cfa_channel_map((6, 8), pattern) == 0
    assert (out[red_sites] == 1).all() and (out[~red_sites] == 0).all()
    assert out[:2, :2][np.array(list(pattern)).reshape(2, 2) == "R"].item() == 1.0


def test_bit_depth_quantisation_and_saturation():
    config = SessionConfig(width=64, height=48, bit_depth=12, n_lights=1, hot_pixel_fraction=0.02)
    session = make_session(config, seed=2)
    dark = render_dark(session, 0)
    assert dark.dtype == np.uint16
    assert np.all(dark % 16 == 0)
    assert dark.max() == (2**12 - 1) * 16  # saturated hot pixels
    bright = np.full((48, 64), 1e7, np.float32)
    out = expose(bright, session.sensor, exposure_s=1.0, rng=np.random.default_rng(0))
    assert (out == 65520).all()


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_red_only_sky_lights_only_red_sites(pattern):
    config = SessionConfig(
        width=64,
        height=48,
        n_lights=1,
        bayer=pattern,
        sky_color=(1.0, 0.0, 0.0),
        star_count=0,
        bright_star_count=0,
        extended="none",
    )
    sky = render_sky(make_session(config, seed=3), 0)
    red = cfa_channel_map((48, 64), pattern) == 0
    assert (sky[red] > 100).all()
    assert (sky[~red] == 0).all()


def test_amp_glow_brightens_the_top_right_corner_of_darks():
    from skystack.sim import SessionConfig, make_session, render_dark

    config = SessionConfig(width=200, height=150, amp_glow_e_per_s=5.0, hot_pixel_fraction=0.0)
    session = make_session(config, seed=4)
    dark = render_dark(session, 0, noise=False)
    gain = session.sensor.gain
    corner = float(dark[:5, -5:].mean())
    far = float(dark[-5:, :5].mean())
    expected = 5.0 * config.dark_exposure / gain * np.exp(-np.hypot(2, 2) / 30.0)
    assert corner - far == pytest.approx(expected, rel=0.1)
