"""Physics and bookkeeping of the deep-sky session renderer (in memory, no files)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from skystack.errors import ConfigError
from skystack.sim import (
    SessionConfig,
    light_star_positions,
    make_session,
    render_bias,
    render_dark,
    render_flat,
    render_light,
    render_scene,
    render_sky,
    render_stars,
)
from skystack.sim.psf import moffat_peak_fraction
from skystack.sim.sensor import cfa_channel_map, cfa_lut

STARS = SessionConfig(
    width=256,
    height=192,
    n_lights=4,
    star_count=250,
    extended="none",
    shift_px=15.0,
    rotation_deg=3.0,
)


@pytest.fixture(scope="module")
def stars_session():
    return make_session(STARS, seed=11)


def test_same_seed_same_frames_other_seed_differs():
    a = render_light(make_session(STARS, seed=4), 2)
    b = render_light(make_session(STARS, seed=4), 2)
    c = render_light(make_session(STARS, seed=5), 2)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint16 and a.shape == (192, 256)
    assert not np.array_equal(a, c)
    rng_a = make_session(STARS, rng=np.random.default_rng(9))
    rng_b = make_session(STARS, rng=np.random.default_rng(9))
    assert rng_a.seed == rng_b.seed


def test_reference_transform_is_identity_and_others_move(stars_session):
    np.testing.assert_array_equal(stars_session.lights[0].transform, np.eye(3))
    last = stars_session.lights[-1]
    assert last.rotation_deg == pytest.approx(3.0)
    assert not np.allclose(last.transform, np.eye(3))


@pytest.mark.parametrize("light", [0, 3])
def test_noiseless_centroids_follow_the_transforms(stars_session, measure, light):
    plan = stars_session.lights[light]
    image = render_sky(stars_session, light, background=False) / np.float32(plan.transparency)
    xy = light_star_positions(stars_session, light)
    chosen = measure.isolated_bright(xy, stars_session.stars.flux, image.shape, count=6)
    assert len(chosen) >= 4
    for i in chosen:
        x, y = measure.centroid(image, xy[i, 0], xy[i, 1], fwhm=plan.fwhm_px)
        assert np.hypot(x - xy[i, 0], y - xy[i, 1]) < 0.05


def test_transform_maps_light_positions_to_reference(stars_session):
    plan = stars_session.lights[2]
    xy = light_star_positions(stars_session, 2)
    back = np.column_stack([xy, np.ones(len(xy))]) @ plan.transform.T
    np.testing.assert_allclose(back[:, 0], stars_session.stars.x, atol=1e-9)
    np.testing.assert_allclose(back[:, 1], stars_session.stars.y, atol=1e-9)


def test_noisy_light_centroids_and_fwhm(stars_session, measure):
    light = 1
    plan = stars_session.lights[light]
    config = stars_session.config
    adu = render_light(stars_session, light).astype(np.float64)
    expected_bg = render_light(
        dataclasses.replace(stars_session, stars=_no_stars(stars_session)), light, noise=False
    )
    image = adu - expected_bg
    xy = light_star_positions(stars_session, light)
    flux = stars_session.stars.flux
    unsaturated = 0.5 * 65535 * config.gain / moffat_peak_fraction(plan.fwhm_px, config.psf_beta)
    chosen = measure.isolated_bright(xy, flux, image.shape, count=5, max_flux=unsaturated)
    chosen = [i for i in chosen if flux[i] > 1e4]  # signal-to-noise above ~60
    assert len(chosen) >= 3
    for i in chosen:
        x, y = measure.centroid(image, xy[i, 0], xy[i, 1], fwhm=plan.fwhm_px)
        assert np.hypot(x - xy[i, 0], y - xy[i, 1]) < 0.15
    fit = measure.fit_moffat(image, xy[chosen[0], 0], xy[chosen[0], 1], background=True)
    assert fit["fwhm"] == pytest.approx(plan.fwhm_pixel_px, rel=0.04)
    assert fit["fwhm"] == pytest.approx(plan.fwhm_px, rel=0.06)


def _no_stars(session):
    stars = session.stars
    return dataclasses.replace(stars, flux=np.zeros_like(stars.flux))


def test_noiseless_fwhm_matches_plan(stars_session, measure):
    for light in (0, 2):
        plan = stars_session.lights[light]
        image = render_sky(stars_session, light, background=False)
        xy = light_star_positions(stars_session, light)
        (i,) = measure.isolated_bright(xy, stars_session.stars.flux, image.shape, count=1)
        fit = measure.fit_moffat(image, xy[i, 0], xy[i, 1])
        assert fit["fwhm"] == pytest.approx(plan.fwhm_pixel_px, rel=0.015)
        assert fit["fwhm"] == pytest.approx(plan.fwhm_px, rel=0.05)


def test_bias_noise_and_level_match_the_sensor():
    session = make_session(SessionConfig(width=200, height=150, read_noise_e=4.0, gain=2.0), seed=1)
    b0 = render_bias(session, 0).astype(np.float64)
    b1 = render_bias(session, 1).astype(np.float64)
    noise_adu = np.std(b0 - b1) / np.sqrt(2)
    assert noise_adu == pytest.approx(4.0 / 2.0, rel=0.04)
    assert np.mean(b0) == pytest.approx(session.sensor.bias.mean(), abs=0.05)
    # the column pattern is fixed: both frames share it
    cols = np.corrcoef(b0.mean(axis=0), b1.mean(axis=0))[0, 1]
    assert cols > 0.9


def test_dark_current_and_hot_pixels():
    config = SessionConfig(
        width=200,
        height=150,
        dark_current_e_per_s=0.1,
        exposure_s=120.0,
        hot_pixel_fraction=1e-3,
        amp_glow_e_per_s=0.0,
    )
    session = make_session(config, seed=2)
    sensor = session.sensor
    dark = render_dark(session, 0).astype(np.float64)
    hot = np.zeros(config.shape, bool)
    hot[sensor.hot.y, sensor.hot.x] = True
    excess = (dark - sensor.bias)[~hot].mean()
    expected = sensor.dark_rate[~hot].mean() * 120.0 / config.gain
    assert excess == pytest.approx(expected, abs=0.05)
    assert expected == pytest.approx(12.0, rel=0.05)
    kinds = np.array(sensor.hot.kind)
    strong = kinds != "warm"
    assert (dark[sensor.hot.y[strong], sensor.hot.x[strong]] > sensor.bias.max() + 500).all()
    saturated = kinds == "saturated"
    assert saturated.any()
    assert (dark[sensor.hot.y[saturated], sensor.hot.x[saturated]] == 65535).all()
    # nothing else stands out: every pixel 8 sigma above the bias is a recorded hot pixel
    sigma = np.sqrt(config.read_noise_e**2 + 12.0) / config.gain
    outliers = (dark - sensor.bias) > 12.0 + 8 * sigma
    assert outliers.any() and not (outliers & ~hot).any()


def test_flat_follows_vignetting_and_dust():
    config = SessionConfig(width=240, height=180, dust_count=4, vignetting=0.4, prnu=0.0)
    session = make_session(config, seed=3)
    sensor = session.sensor
    flat = np.mean([render_flat(session, i).astype(np.float64) for i in range(3)], axis=0)
    signal = flat - sensor.bias - sensor.dark_rate * config.flat_exposure_s / config.gain
    ratio = signal / sensor.flat_field
    good = np.ones(config.shape, bool)
    good[sensor.hot.y, sensor.hot.x] = False
    level = config.flat_level * 65535
    assert np.median(ratio[good]) == pytest.approx(level, rel=0.002)
    assert np.std(ratio[good]) / level < 0.01
    # the corners lose about `vignetting` of the light, the dust donuts their depth
    assert signal[0, 0] / signal.max() == pytest.approx(sensor.flat_field[0, 0], abs=0.02)
    x, y, r_in, r_out, depth = sensor.dust_donuts[0]
    ring = signal[int(y), int(x + 0.7 * r_out)] / sensor.vignetting[int(y), int(x + 0.7 * r_out)]
    assert ring / level == pytest.approx(sensor.dust[int(y), int(x + 0.7 * r_out)], abs=0.02)
    assert sensor.dust[int(y), int(x + 0.7 * r_out)] < 1 - 0.5 * depth


def test_satellite_trail_is_where_recorded():
    config = dataclasses.replace(STARS, trail_lights=(2,), cosmic_ray_rate=0.0)
    session = make_session(config, seed=6)
    trail = session.lights[2].trail
    assert trail is not None and session.lights[1].trail is None
    with_trail = render_sky(session, 2)
    plan = dataclasses.replace(session.lights[2], trail=None)
    lights = (*session.lights[:2], plan, *session.lights[3:])
    without = render_sky(dataclasses.replace(session, lights=lights), 2)
    diff = with_trail - without
    assert diff.max() == pytest.approx(trail.peak_e, rel=0.05)
    ys, xs = np.nonzero(diff > 0.5 * trail.peak_e)
    (x0, y0), (x1, y1) = trail.start, trail.end
    length = np.hypot(x1 - x0, y1 - y0)
    distance = np.abs((xs - x0) * (y1 - y0) - (ys - y0) * (x1 - x0)) / length
    assert distance.max() < trail.width_px
    assert len(xs) > 0.8 * length
    # and it stands out of the noise of the frame as written
    base = render_light(dataclasses.replace(session, lights=lights), 2, noise=False)
    excess = render_light(session, 2).astype(np.float64) - base
    on_line = diff > 0.9 * trail.peak_e
    expected = trail.peak_e * session.sensor.flat_field[on_line] / config.gain
    assert excess[on_line].mean() == pytest.approx(expected.mean(), rel=0.05)


def test_clouds_and_cosmic_rays():
    config = dataclasses.replace(STARS, cloudy_lights=(1,), cosmic_ray_rate=300.0)
    session = make_session(config, seed=7)
    clear, cloudy = session.lights[0], session.lights[1]
    assert cloudy.cloudy and cloudy.transparency < 0.7 < clear.transparency
    assert cloudy.background_e > 1.3 * clear.background_e
    rays = session.lights[3].cosmic_rays
    assert len(rays) > 3
    expected = render_light(session, 3, noise=False)
    xs, ys = rays[:, 0].astype(int), rays[:, 1].astype(int)
    hits = np.zeros(config.shape)
    np.add.at(hits, (ys, xs), rays[:, 2])
    plain = dataclasses.replace(session.lights[3], cosmic_rays=np.zeros((0, 3)))
    lights = (*session.lights[:3], plain)
    base = render_light(dataclasses.replace(session, lights=lights), 3, noise=False)
    np.testing.assert_allclose(
        (expected - base)[ys, xs],
        np.minimum(hits[ys, xs] / config.gain, 65535 - base[ys, xs]),
        rtol=1e-4,
        atol=0.01,
    )


def test_meridian_flip_turns_the_second_half():
    config = dataclasses.replace(STARS, meridian_flip=True, rotation_deg=0.0)
    session = make_session(config, seed=8)
    assert [p.rotation_deg for p in session.lights] == [0.0, 0.0, 180.0, 180.0]
    t = session.lights[3].transform
    np.testing.assert_allclose(t[:2, :2], -np.eye(2), atol=1e-12)


def test_bayer_stars_land_on_their_colour_sites():
    lut = cfa_lut("BGGR")
    image = render_stars((40, 40), [20.3], [19.6], [[5e4, 0.0, 0.0]], fwhm=3.0, lut=lut)
    red = cfa_channel_map((40, 40), "BGGR") == 0
    assert image[red].sum() > 0.2 * 5e4 and (image[~red] == 0).all()


def test_scene_holds_the_light_zero_signal():
    config = dataclasses.replace(STARS, extended="galaxy", bayer="RGGB")
    session = make_session(config, seed=9)
    scene = render_scene(session, background=False)
    assert scene.shape == (192, 256, 3)
    light0 = render_sky(session, 0, background=False) / np.float32(session.lights[0].transparency)
    mosaic_sum = sum(
        scene[..., c][cfa_channel_map(config.shape, "RGGB") == c].sum(dtype=np.float64)
        for c in range(3)
    )
    assert light0.sum(dtype=np.float64) == pytest.approx(mosaic_sum, rel=0.02)
    mono = render_scene(make_session(STARS, seed=9))
    assert mono.shape == (192, 256) and mono.min() > 0.5 * STARS.sky_level_e


def test_invalid_config_is_rejected():
    with pytest.raises(ConfigError, match="fwhm_px"):
        SessionConfig(fwhm_px=(4.0, 2.0))
    with pytest.raises(ConfigError, match="trail_lights"):
        SessionConfig(n_lights=3, trail_lights=(5,))
    with pytest.raises(ConfigError, match="bayer"):
        SessionConfig(bayer="RGBG")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="seed"):
        make_session(STARS, seed=1, rng=np.random.default_rng(1))


def test_extended_object_follows_the_transforms():
    config = dataclasses.replace(
        STARS, extended="both", fwhm_px=(3.0, 3.0), rotation_deg=4.0, sky_variation=0.0
    )
    session = make_session(config, seed=10)
    session = dataclasses.replace(session, stars=_no_stars(session))
    ref = render_sky(session, 0, background=False) / np.float32(session.lights[0].transparency)
    light = 3
    plan = session.lights[light]
    image = render_sky(session, light, background=False) / np.float32(plan.transparency)
    # frame pixel (x, y) shows reference point T (x, y)
    warped = cv2.warpAffine(
        ref, plan.transform[:2], ref.shape[::-1], flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    )
    inner = (slice(20, -20), slice(20, -20))
    err = np.abs(image[inner] - warped[inner]).max()
    assert ref.max() > 100 and err < 0.01 * ref.max()
    # a wrong sign of the transform would be far off
    wrong = cv2.warpAffine(ref, plan.transform[:2], ref.shape[::-1], flags=cv2.INTER_CUBIC)
    assert np.abs(image[inner] - wrong[inner]).max() > 0.1 * ref.max()


def test_galaxy_light_centre_follows_the_transform():
    config = dataclasses.replace(STARS, extended="galaxy", galaxy_size=0.04, rotation_deg=10.0)
    session = make_session(config, seed=12)
    session = dataclasses.replace(session, stars=_no_stars(session))

    def centre(image):
        yy, xx = np.indices(image.shape)
        return np.array([(image * xx).sum(), (image * yy).sum()]) / image.sum()

    ref = centre(render_sky(session, 0, background=False).astype(np.float64))
    for light in (1, 3):
        measured = centre(render_sky(session, light, background=False).astype(np.float64))
        mapped = session.lights[light].transform @ np.array([*measured, 1.0])
        assert np.hypot(*(mapped[:2] - ref)) < 0.05


def test_render_stack_noise_falls_with_frame_count():
    from skystack.sim import SessionConfig, make_session, render_stack

    session = make_session(SessionConfig(width=200, height=150, star_count=20), seed=5)
    clean = render_stack(session, 4)
    sky = render_stack(session, 4) - render_stack(session, 4, background=False)
    assert np.median(sky) > 0
    noise = [
        np.std(render_stack(session, n, rng=np.random.default_rng(n)) - clean)
        for n in (4, 16)
    ]
    # Noise of a mean falls as 1/sqrt(N): 16 frames give half the noise of 4.
    assert noise[1] / noise[0] == pytest.approx(0.5, rel=0.05)
    assert render_stack(session, 4).max() <= 1.0
