"""Masters and light calibration against the simulator's ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.calibrate.apply import calibrate_light, dark_scale_for_exposure, optimize_dark_scale
from skystack.calibrate.masters import (
    channel_levels,
    make_master_bias,
    make_master_dark,
    make_master_flat,
)
from skystack.errors import GeometryError
from skystack.sim import SessionConfig, make_session, render_bias, render_dark, render_flat

ADU = 1.0 / 65535


def _cube(render, session, n):
    return np.stack([render(session, i).astype(np.float32) * np.float32(ADU) for i in range(n)])


@pytest.fixture(scope="module", params=[None, "RGGB"])
def session(request):
    config = SessionConfig(
        width=256, height=192, n_bias=9, n_darks=9, n_flats=9, bayer=request.param,
        dark_current_e_per_s=0.2, exposure_s=120.0,
    )  # fmt: skip
    return make_session(config, seed=3)


def test_master_bias_matches_truth_and_rejects_outliers(session):
    bias_frames = _cube(render_bias, session, 9)
    bias_frames[2, 50:52, :] = 0.9  # a corrupted band in one frame
    master = make_master_bias(bias_frames)
    truth = session.sensor.bias.astype(np.float32) * ADU
    noise = session.sensor.read_noise / session.sensor.gain * ADU
    error = master - truth
    assert abs(np.median(error)) < 0.2 * noise
    assert np.abs(error[50:52]).max() < 5 * noise / np.sqrt(9) * 3


def test_master_dark_is_thermal_only(session):
    bias = make_master_bias(_cube(render_bias, session, 9))
    dark = make_master_dark(_cube(render_dark, session, 9), master_bias=bias)
    expected = session.sensor.dark_rate * session.config.dark_exposure / session.sensor.gain * ADU
    ordinary = expected < np.percentile(expected, 99)
    assert np.median(dark[ordinary]) == pytest.approx(np.median(expected[ordinary]), rel=0.1)


def test_master_flat_follows_vignetting_and_is_normalised_per_channel(session):
    bias = make_master_bias(_cube(render_bias, session, 9))
    flat = make_master_flat(
        _cube(render_flat, session, 9), master_bias=bias, cfa=session.config.bayer
    )
    levels = channel_levels(flat, cfa=session.config.bayer)
    np.testing.assert_allclose(levels, 1.0, atol=1e-3)
    truth = session.sensor.flat_field
    cfa = session.config.bayer
    truth_norm = truth / channel_levels(truth, cfa=cfa).mean()
    ratio = flat / truth_norm
    # Shape of the flat (vignetting, dust) recovered to well under 1 %.
    assert np.std(ratio[ratio > 0]) / np.median(ratio) < 0.01


def test_calibrate_light_arithmetic():
    light = np.full((4, 4), 0.5, np.float32)
    bias = np.full((4, 4), 0.1, np.float32)
    dark = np.full((4, 4), 0.05, np.float32)
    flat = np.full((4, 4), 0.8, np.float32)
    flat[0, 0] = 0.0
    out = calibrate_light(light, bias=bias, dark=dark, flat=flat, dark_scale=2.0)
    assert out[1, 1] == pytest.approx((0.5 - 0.1 - 0.1) / 0.8)
    assert np.isnan(out[0, 0])
    out = calibrate_light(light, offset=0.2)
    assert out[1, 1] == pytest.approx(0.3)
    with pytest.raises(GeometryError, match="master dark has shape"):
        calibrate_light(light, dark=np.zeros((2, 2), np.float32))


def test_dark_scale_from_exposure_and_optimisation(rng):
    assert dark_scale_for_exposure(300, 60) == 5.0
    assert dark_scale_for_exposure(None, 60) == 1.0
    thermal = rng.exponential(0.002, size=(300, 300)).astype(np.float32)
    thermal[rng.random((300, 300)) < 0.003] = 0.2  # hot pixels
    sky = np.linspace(0.05, 0.08, 300, dtype=np.float32)[None, :]
    light = sky + 1.7 * thermal + rng.normal(0, 0.001, size=(300, 300)).astype(np.float32)
    assert optimize_dark_scale(light, dark=thermal) == pytest.approx(1.7, rel=0.02)
