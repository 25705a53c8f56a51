"""Star detection against simulated fields with known positions, fluxes and PSF widths."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from skystack.detect import StarTable, find_stars, luminance
from skystack.sim import (
    SessionConfig,
    light_star_positions,
    make_session,
    render_light,
    render_stars,
)
from skystack.sim.psf import moffat_pixel_fwhm

SHAPE = (384, 512)


def _field(rng, *, n=120, fwhm=3.0, flux=(2e3, 1e5), sky=100.0, shape=SHAPE, margin=12):
    """Moffat stars with Poisson noise on a flat sky (electrons); returns image and truth."""
    height, width = shape
    x = rng.uniform(margin, width - margin, n)
    y = rng.uniform(margin, height - margin, n)
    f = 10 ** rng.uniform(np.log10(flux[0]), np.log10(flux[1]), n)
    image = render_stars(shape, x, y, f, fwhm=fwhm, beta=3.0)
    image += np.float32(sky)
    image = rng.poisson(np.maximum(image, 0)).astype(np.float32)
    return image, np.column_stack([x, y]), f


def _match(stars: StarTable, truth: np.ndarray, radius: float = 1.0):
    distance, index = cKDTree(truth).query(stars.xy)
    return distance < radius, distance, index


def test_luminance_shapes():
    mono = np.ones((4, 5), dtype=np.float32)
    assert luminance(mono) is mono
    colour = np.stack([np.full((4, 5), v, np.float32) for v in (0.3, 0.6, 0.9)], axis=2)
    assert luminance(colour).shape == (4, 5)
    assert np.allclose(luminance(colour), 0.6)
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\).*\(4, 5, 2\)"):
        luminance(np.ones((4, 5, 2)))


@pytest.mark.parametrize("fwhm", [1.8, 4.0])
def test_centroids_of_bright_stars_within_005_px(rng, fwhm):
    image, truth, _ = _field(rng, fwhm=fwhm)
    stars = find_stars(image)
    matched, distance, _ = _match(stars, truth)
    assert matched.sum() >= 0.8 * len(truth)
    bright = matched & (stars.peak > 30 * 10.0)  # peak S/N > 30 against sky noise 10
    assert bright.sum() >= 20
    assert np.median(distance[bright]) < 0.05
    # sorted by flux, brightest first
    assert np.all(np.diff(stars.flux) <= 0)
    assert stars.xy.shape == (len(stars), 2) and stars.xy.dtype == np.float64


@pytest.mark.parametrize("fwhm", [1.8, 2.5, 4.0])
def test_fitted_fwhm_matches_pixel_fwhm_of_moffat_stars(rng, fwhm):
    image, truth, _ = _field(rng, fwhm=fwhm)
    stars = find_stars(image)
    truth_fwhm = moffat_pixel_fwhm(fwhm, 3.0)  # what the sim calls fwhm_pixel_px
    good = np.isfinite(stars.fwhm) & (stars.peak > 200)
    assert np.median(stars.fwhm[good]) == pytest.approx(truth_fwhm, rel=0.10)


def test_fwhm_of_simulated_light_matches_plan():
    session = make_session(
        SessionConfig(extended="none", n_lights=2, fwhm_px=(2.2, 2.2), cosmic_ray_rate=0.0),
        seed=3,
    )
    image = render_light(session, 1).astype(np.float32) / 65535.0
    stars = find_stars(image)
    truth = light_star_positions(session, 1)
    matched, distance, _ = _match(stars, truth)
    assert matched.mean() > 0.9
    fwhm = np.nanmedian(stars.fwhm[~stars.saturated])
    assert fwhm == pytest.approx(session.lights[1].fwhm_pixel_px, rel=0.10)


def test_saturated_stars_are_flagged_and_skipped_by_brightest(rng):
    image, truth, flux = _field(rng, n=60, flux=(2e3, 3e4))
    height, width = SHAPE
    bright_xy = np.array([[100.3, 100.6], [300.7, 250.2], [420.1, 80.9]])
    image += render_stars(SHAPE, bright_xy[:, 0], bright_xy[:, 1], np.full(3, 2e6), fwhm=3.0)
    level = 20000.0
    clipped = np.minimum(image, level)
    for saturation in (level * 0.999, None):  # explicit, then inferred from the plateau
        stars = find_stars(clipped, saturation=saturation)
        matched, _, index = _match(stars, bright_xy, radius=1.5)
        assert matched.sum() == 3
        assert stars.saturated[matched].all()
        assert stars.saturated.sum() == 3
        picked = stars.brightest(5)
        assert len(picked) == 5 and not picked.saturated.any()
        assert len(stars.brightest(5, unsaturated=False)) == 5
        assert stars.brightest(5, unsaturated=False).saturated[:3].all()
    # an unclipped image has no plateau: nothing is saturated
    assert not find_stars(image).saturated.any()


def test_elongated_stars_have_higher_eccentricity(rng):
    round_image, _, _ = _field(rng, n=40, flux=(2e4, 1e5))
    # stretch a round field along x by 1.7: elongated stars
    import cv2

    stretched = cv2.resize(round_image, None, fx=1.7, fy=1.0, interpolation=cv2.INTER_CUBIC)
    round_stars = find_stars(round_image)
    long_stars = find_stars(stretched)
    assert len(round_stars) > 20 and len(long_stars) > 20
    assert np.median(long_stars.eccentricity) > np.median(round_stars.eccentricity) + 0.3
    assert np.all((long_stars.eccentricity >= 0) & (long_stars.eccentricity < 1))


def test_hot_pixels_and_trail_are_not_stars(rng):
    image = rng.normal(100.0, 10.0, SHAPE).astype(np.float32)
    hot_y = rng.integers(10, SHAPE[0] - 10, 50)
    hot_x = rng.integers(10, SHAPE[1] - 10, 50)
    image[hot_y, hot_x] += rng.uniform(500, 5000, 50).astype(np.float32)
    # a satellite trail: a Gaussian line of FWHM 2.5 px across the frame
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    distance = np.abs(0.4 * xx - yy + 50) / np.hypot(0.4, 1.0)
    image += (400.0 * np.exp(-0.5 * (distance / (2.5 / 2.3548)) ** 2)).astype(np.float32)
    stars = find_stars(image, min_stars=10)
    assert len(stars) <= 2


def test_nan_regions_are_masked(rng):
    image, truth, _ = _field(rng, n=80, flux=(1e4, 1e5))
    image[:, :100] = np.nan
    image[200:220, 300:330] = np.inf
    stars = find_stars(image)
    assert len(stars) > 30
    assert np.all(np.isfinite(stars.xy))
    assert stars.x.min() > 100
    matched, distance, _ = _match(stars, truth)
    assert matched.all()
    # an explicit mask works the same way
    mask = np.zeros(SHAPE, dtype=bool)
    mask[:, 256:] = True
    masked = find_stars(np.nan_to_num(image), mask=mask)
    assert len(masked) > 10 and masked.x.max() < 256
    assert len(find_stars(np.full(SHAPE, np.nan, np.float32))) == 0


def test_colour_input_finds_the_same_stars(rng):
    image, truth, _ = _field(rng, n=60, flux=(1e4, 1e5))
    colour = np.stack([image * 0.8, image, image * 0.6], axis=2)
    mono = find_stars(image)
    rgb = find_stars(colour)
    assert abs(len(rgb) - len(mono)) <= 2
    matched, distance, _ = _match(rgb, truth)
    assert matched.all()


def test_pure_noise_gives_no_stars(rng):
    noise = rng.normal(0.1, 0.01, (512, 512)).astype(np.float32)
    assert len(find_stars(noise)) <= 2
    # the adaptive retry does not turn noise into stars either
    assert len(find_stars(noise, min_stars=15)) < 15
    assert len(find_stars(noise, min_stars=15)) <= 2


def test_adaptive_retry_finds_faint_stars(rng):
    height, width = SHAPE
    n = 60
    x = rng.uniform(12, width - 12, n)
    y = rng.uniform(12, height - 12, n)
    # peak S/N about 4 per pixel: too faint for threshold 5 after the 3x3 filter
    peak_fraction = 0.09  # FWHM 3 px Moffat beta 3
    flux = np.full(n, 4.0 * 10.0 / peak_fraction)
    image = render_stars(SHAPE, x, y, flux, fwhm=3.0) + rng.normal(0, 10.0, SHAPE).astype(
        np.float32
    )
    plain = find_stars(image)
    retried = find_stars(image, min_stars=30)
    assert len(plain) < 30
    assert len(retried) >= 30
    matched, distance, _ = _match(retried, np.column_stack([x, y]))
    assert matched.mean() > 0.9
    assert np.median(distance[matched]) < 0.5  # measured on the unsmoothed image


def test_dense_field(rng):
    shape = (1024, 1024)
    image, truth, _ = _field(rng, n=2000, fwhm=2.5, flux=(3e3, 3e5), shape=shape)
    stars = find_stars(image)
    matched, distance, _ = _match(stars, truth)
    assert len(stars) > 1500
    assert matched.mean() > 0.95
    capped = find_stars(image, max_stars=100)
    assert len(capped) == 100
    np.testing.assert_allclose(capped.flux, stars.flux[:100])


def test_star_table_select_and_empty():
    empty = StarTable.empty()
    assert len(empty) == 0 and empty.xy.shape == (0, 2)
    table = StarTable(
        x=np.array([1.0, 2.0, 3.0]),
        y=np.array([4.0, 5.0, 6.0]),
        flux=np.array([30.0, 20.0, 10.0]),
        peak=np.array([3.0, 2.0, 1.0]),
        fwhm=np.array([2.0, np.nan, 2.5]),
        eccentricity=np.array([0.1, 0.2, 0.3]),
        saturated=np.array([True, False, False]),
    )
    assert table.select([2, 0]).x.tolist() == [3.0, 1.0]
    assert table.select(np.array([False, True, True])).y.tolist() == [5.0, 6.0]
    assert table.brightest(1).x.tolist() == [2.0]
    with pytest.raises(ValueError, match="boolean selection"):
        table.select(np.array([True, False]))
    with pytest.raises(ValueError, match="StarTable.y has 2 entries, x has 3"):
        StarTable(
            x=table.x,
            y=table.y[:2],
            flux=table.flux,
            peak=table.peak,
            fwhm=table.fwhm,
            eccentricity=table.eccentricity,
            saturated=table.saturated,
        )


def test_bad_options_are_rejected():
    image = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        find_stars(image, threshold=0)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 3\)"):
        find_stars(image, mask=np.zeros((3, 3), bool))


def test_max_stars_keeps_the_brightest_real_stars_among_many_hot_pixels():
    from scipy.spatial import cKDTree

    from skystack.sim import SessionConfig, light_star_positions, make_session, render_light

    config = SessionConfig(width=512, height=384, n_lights=1, star_count=300, extended="none",
                           hot_pixel_fraction=0.01)  # fmt: skip
    session = make_session(config, seed=4)
    image = render_light(session, 0).astype(np.float32) / 65535.0
    everything = find_stars(image)
    capped = find_stars(image, max_stars=20)
    assert len(capped) == 20
    np.testing.assert_allclose(capped.xy, everything.xy[:20])
    distance, _ = cKDTree(light_star_positions(session, 0)).query(capped.xy)
    # real stars (one may be blended with a neighbour or a hot pixel), no lone hot pixels
    assert (distance < 2.0).all() and np.median(distance) < 0.1
