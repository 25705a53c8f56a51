"""Cosmetic correction on simulated frames with ground truth: hot, cold and outlier pixels,
repair, bad-pixel masks and cosmic rays."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, median_filter

from skystack.calibrate.cosmetic import (
    bad_pixel_mask_from_array,
    bad_pixel_mask_from_points,
    find_cold_pixels,
    find_hot_pixels,
    find_outlier_pixels,
    remove_cosmic_rays,
    repair_pixels,
)
from skystack.errors import ConfigError, GeometryError
from skystack.sim import (
    Session,
    SessionConfig,
    light_star_positions,
    make_session,
    render_bias,
    render_dark,
    render_flat,
    render_light,
)

FULL = 65535.0
N_DARKS = 5
N_BIAS = 5
BAYERS = [None, "RGGB"]


# --------------------------------------------------------------------------- simulated data


@cache
def _session(
    bayer: str | None,
    *,
    glow: float = 2.0,
    fwhm: float = 2.6,
    cosmics: float = 0.0,
    defects: bool = True,
) -> Session:
    config = SessionConfig(
        bayer=bayer,
        n_lights=1,
        hot_pixel_fraction=2e-3 if defects else 0.0,
        cold_pixel_fraction=5e-4 if defects else 0.0,
        dark_exposure_s=10.0,  # warm pixels from ~3σ to ~40σ above the master dark's noise
        amp_glow_e_per_s=glow,
        fwhm_px=(fwhm, fwhm),
        star_count=600,
        cosmic_ray_rate=cosmics,
    )
    return make_session(config, seed=11)


@cache
def _master_bias(session: Session) -> np.ndarray:
    return np.mean([render_bias(session, i) for i in range(N_BIAS)], axis=0, dtype=np.float64)


def _master_dark(session: Session, glow_e: np.ndarray | None = None) -> np.ndarray:
    """Mean of simulated darks minus the master bias (full-scale units); ``glow_e`` (electrons
    per dark) is added to every dark with its shot noise."""
    rng = np.random.default_rng(3)
    darks = []
    for i in range(N_DARKS):
        dark = render_dark(session, i).astype(np.float64)
        if glow_e is not None:
            dark += rng.poisson(glow_e) / session.config.gain
        darks.append(dark)
    return ((np.mean(darks, axis=0) - _master_bias(session)) / FULL).astype(np.float32)


def _dark_noise(session: Session, extra_e: np.ndarray | float = 0.0) -> np.ndarray:
    """Truth σ of each pixel of the master dark (full-scale units), from read and shot noise."""
    config = session.config
    read = config.read_noise_e**2 * (1.0 / N_DARKS + 1.0 / N_BIAS)
    shot = (session.sensor.dark_rate * config.dark_exposure + extra_e) / N_DARKS
    return np.sqrt(read + shot) / config.gain / FULL


def _excess_noise(session: Session, extra_e: np.ndarray | float = 0.0) -> np.ndarray:
    """Truth σ of each hot pixel's excess in the master dark (full-scale units): read and shot
    noise of the dark (and ``extra_e`` electrons) around it, and the pixel's own shot noise."""
    config = session.config
    hot = session.sensor.hot
    rate = median_filter(session.sensor.dark_rate, size=5, mode="nearest")
    read = config.read_noise_e**2 * (1.0 / N_DARKS + 1.0 / N_BIAS)
    shot = (rate * config.dark_exposure + extra_e) / N_DARKS
    own = hot.rate * config.dark_exposure / N_DARKS
    return np.sqrt((read + shot)[hot.y, hot.x] + own) / config.gain / FULL


def _light(session: Session) -> np.ndarray:
    """Light 0 with the bias removed, full-scale units."""
    raw = render_light(session, 0).astype(np.float32)
    return ((raw - session.sensor.bias) / FULL).astype(np.float32)


def _truth_mask(session: Session, *, cold: bool = True) -> np.ndarray:
    mask = np.zeros(session.config.shape, dtype=bool)
    mask[session.sensor.hot.y, session.sensor.hot.x] = True
    if cold:
        mask[session.sensor.cold_y, session.sensor.cold_x] = True
    return mask


def _local_median_of_clean(values: np.ndarray, bad: np.ndarray, y: int, x: int, step: int):
    """Median of the same-colour neighbours (distance ``step``) of ``(y, x)`` that are not bad."""
    h, w = values.shape
    out = []
    for dy in (-step, 0, step):
        for dx in (-step, 0, step):
            yy, xx = y + dy, x + dx
            if (dy or dx) and 0 <= yy < h and 0 <= xx < w and not bad[yy, xx]:
                out.append(values[yy, xx])
    return float(np.median(out))


def _star_flux_changes(session: Session, before, after, *, min_flux: float, defects):
    """Relative aperture-flux change of every truth star brighter than ``min_flux`` electrons
    that lies inside the frame and whose aperture has no truth defect."""
    h, w = before.shape
    fwhm = session.lights[0].fwhm_px
    radius = max(3.0, 2.5 * fwhm)
    positions = light_star_positions(session, 0)
    changes = []
    for (x, y), flux in zip(positions, session.stars.flux, strict=True):
        if flux < min_flux or not (radius < x < w - 1 - radius and radius < y < h - 1 - radius):
            continue
        y0, y1 = int(y - radius), int(y + radius) + 2
        x0, x1 = int(x - radius), int(x + radius) + 2
        yy, xx = np.mgrid[y0:y1, x0:x1]
        aperture = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        if defects[y0:y1, x0:x1][aperture].any():
            continue
        delta = float((after[y0:y1, x0:x1] - before[y0:y1, x0:x1])[aperture].sum()) * FULL
        changes.append(delta / float(flux))
    return np.array(changes)


# --------------------------------------------------------------------------- hot pixels


@pytest.mark.parametrize("bayer", BAYERS)
def test_find_hot_pixels_recovers_the_truth(bayer):
    session = _session(bayer)
    master = _master_dark(session)
    mask = find_hot_pixels(master, cfa=bayer)
    hot = session.sensor.hot
    config = session.config
    excess = hot.rate * config.dark_exposure / config.gain / FULL
    noise = _excess_noise(session)
    strong = excess > 7.0 * noise
    assert {"warm", "hot", "saturated"} <= set(np.array(hot.kind)[strong])
    assert (excess < 7.0 * noise).sum() > 5  # some warm pixels near the limit exist
    found = mask[hot.y, hot.x]
    assert found[strong].mean() >= 0.99
    false = mask & ~_truth_mask(session, cold=False)
    assert false.sum() < 1e-3 * mask.size


@pytest.mark.parametrize("bayer", BAYERS)
def test_repair_brings_hot_pixels_back_to_their_neighbours(bayer):
    session = _session(bayer)
    step = 1 if bayer is None else 2
    master = _master_dark(session)
    mask = find_hot_pixels(master, cfa=bayer)
    repaired = repair_pixels(master, mask, cfa=bayer)
    assert repaired is not master and repaired.dtype == np.float32
    np.testing.assert_array_equal(repaired[~mask], master[~mask])
    hot = session.sensor.hot
    truth = _truth_mask(session, cold=False)
    # The truth-free expectation: the noise-free dark signal of the clean same-colour neighbours.
    expected_e = session.sensor.dark_rate * session.config.dark_exposure
    sigma = _dark_noise(session)
    deviations = []
    for y, x in zip(hot.y, hot.x, strict=True):
        if not mask[y, x]:
            continue
        expected = _local_median_of_clean(expected_e, truth, y, x, step) / FULL
        local_sigma = _local_median_of_clean(sigma, truth, y, x, step)
        deviations.append(abs(repaired[y, x] - expected) / local_sigma)
    deviations = np.array(deviations)
    assert deviations.size > 300
    assert np.percentile(deviations, 99) < 4.0
    assert deviations.max() < 6.0


@pytest.mark.parametrize("bayer", BAYERS)
@pytest.mark.parametrize("shot_noise", [True, False], ids=["glow-with-shot-noise", "smooth-glow"])
def test_amp_glow_is_not_flagged(bayer, shot_noise):
    session = _session(bayer, glow=0.0)
    h, w = session.config.shape
    yy, xx = np.mgrid[0:h, 0:w]
    # A bright exponential glow from beyond the bottom-left corner, 1/e over 50 px, and a
    # fainter, steeper one along the right edge.
    glow_e = 3000.0 * np.exp(-np.hypot(xx + 20.0, (h - 1 - yy) + 20.0) / 50.0)
    glow_e += 500.0 * np.exp(-(w - 1 - xx) / 25.0)
    if shot_noise:
        master = _master_dark(session, glow_e)
    else:
        master = _master_dark(session) + (glow_e / session.config.gain / FULL).astype(np.float32)
    mask = find_hot_pixels(master, cfa=bayer)
    truth = _truth_mask(session, cold=False)
    glowing = glow_e > 20.0
    assert glowing.mean() > 0.1
    # At most a noise peak or two among the ~60 000 glowing pixels.
    assert (mask & ~truth & glowing).sum() <= 2
    assert (mask & ~truth).sum() <= 3
    # Hot pixels in the glow are still found when they stand out from its shot noise.
    hot = session.sensor.hot
    excess = hot.rate * session.config.dark_exposure / session.config.gain / FULL
    noise = _excess_noise(session, glow_e if shot_noise else 0.0)
    strong = (excess > 8.0 * noise) & glowing[hot.y, hot.x]
    assert strong.sum() > 20
    assert mask[hot.y, hot.x][strong].mean() >= 0.95


# --------------------------------------------------------------------------- cold pixels


@pytest.mark.parametrize("bayer", BAYERS)
def test_find_cold_pixels_in_a_master_flat(bayer):
    session = _session(bayer)
    bias = _master_bias(session)
    flat = np.mean([render_flat(session, i) for i in range(5)], axis=0) - bias
    flat = (flat / FULL).astype(np.float32)
    mask = find_cold_pixels(flat, cfa=bayer)
    cold = np.zeros(flat.shape, dtype=bool)
    cold[session.sensor.cold_y, session.sensor.cold_x] = True
    assert cold.sum() > 50
    assert mask[cold].all()
    # Vignetting (30% at the corners) and dust shadows are not cold pixels.
    assert (mask & ~cold).sum() < 1e-4 * mask.size
    repaired = repair_pixels(flat, mask, cfa=bayer)
    # Repaired to the flat without the defect: vignetting x dust x colour response (1% PRNU).
    sensor = session.sensor
    clean = sensor.vignetting * sensor.dust * sensor.qe_map() / max(sensor.qe)
    ratio = repaired[cold] / (clean[cold] * np.median(flat / clean))
    assert np.all(np.abs(ratio - 1.0) < 0.05)


# --------------------------------------------------------------------------- lights


@pytest.mark.parametrize("bayer", BAYERS)
@pytest.mark.parametrize("fwhm", [1.8, 3.0])
def test_find_outlier_pixels_in_a_light_spares_stars(bayer, fwhm):
    session = _session(bayer, fwhm=fwhm)
    light = _light(session)
    mask = find_outlier_pixels(light, cfa=bayer)
    hot = session.sensor.hot
    kinds = np.array(hot.kind)
    sky_noise = np.sqrt(session.lights[0].background_e + session.config.read_noise_e**2)
    excess_e = hot.rate * session.config.exposure_s
    found = mask[hot.y, hot.x]
    assert found[kinds != "warm"].mean() >= 0.99
    assert found[(kinds == "warm") & (excess_e > 20 * sky_noise)].mean() >= 0.9  # a few on stars
    cold = mask[session.sensor.cold_y, session.sensor.cold_x]
    assert cold.mean() >= 0.9
    truth = _truth_mask(session)
    false = np.argwhere(mask & ~truth)
    assert len(false) < 1e-4 * mask.size
    # No star core is flagged: no false detection within 2 px of a star brighter than the noise.
    positions = light_star_positions(session, 0)
    visible = session.stars.flux > 20 * sky_noise
    for y, x in false:
        distance = np.hypot(positions[visible, 0] - x, positions[visible, 1] - y)
        assert distance.min() > 2.0, f"flagged ({x}, {y}) next to a star"
    # Aperture fluxes of the stars do not change by repairing.
    repaired = repair_pixels(light, mask, cfa=bayer)
    changes = _star_flux_changes(session, light, repaired, min_flux=2000.0, defects=truth)
    assert changes.size > 20
    assert np.abs(changes).max() < 0.01


def test_outlier_detection_ignores_gradients_and_flags_dips(rng):
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    image = 0.05 + 0.3 * (xx / w) ** 2 + 0.2 * np.exp(-yy / 30.0)  # curved, steep at the edge
    image = (image + 1e-3 * rng.standard_normal((h, w))).astype(np.float32)
    for cfa in (None, "GRBG"):
        assert not find_outlier_pixels(image, cfa=cfa).any()
        assert not find_hot_pixels(image, cfa=cfa).any()
        assert not find_cold_pixels(image, cfa=cfa).any()
    spoilt = image.copy()
    spoilt[60, 80] += 0.02
    spoilt[119, 0] += 0.02  # a corner
    spoilt[30, 159] -= 0.02  # the border
    spoilt[90, 40] *= 0.3
    for cfa in (None, "BGGR"):
        found = set(map(tuple, np.argwhere(find_outlier_pixels(spoilt, cfa=cfa)).tolist()))
        assert found == {(60, 80), (119, 0), (30, 159), (90, 40)}
        hot = set(map(tuple, np.argwhere(find_hot_pixels(spoilt, cfa=cfa)).tolist()))
        assert hot == {(60, 80), (119, 0)}
        cold = set(map(tuple, np.argwhere(find_cold_pixels(spoilt, cfa=cfa)).tolist()))
        assert cold == {(30, 159), (90, 40)}


# --------------------------------------------------------------------------- repair


def test_repair_uses_same_colour_neighbours_on_a_mosaic():
    levels = np.array([[0.1, 0.2], [0.3, 0.4]], dtype=np.float32)
    mosaic = np.tile(levels, (8, 10))
    mask = np.zeros(mosaic.shape, dtype=bool)
    mask[5, 7] = mask[6, 6] = mask[0, 0] = True
    spoilt = mosaic.copy()
    spoilt[mask] = 1.0
    repaired = repair_pixels(spoilt, mask, cfa="RGGB")
    np.testing.assert_array_equal(repaired, mosaic)
    assert spoilt[5, 7] == 1.0  # the input is left alone
    mono = repair_pixels(spoilt, mask)
    # Mono: the 8 adjacent pixels of any colour, without the masked one at (6, 6).
    assert mono[5, 7] == pytest.approx(np.median([0.1, 0.2, 0.1, 0.3, 0.3, 0.2, 0.1]))


def test_repair_fills_clusters_and_skips_bad_neighbours(rng):
    image = (0.2 + 0.001 * rng.standard_normal((60, 70))).astype(np.float32)
    mask = np.zeros(image.shape, dtype=bool)
    mask[20:27, 30:37] = True  # a 7 x 7 cluster: filled from the outside in
    image[mask] = 5.0
    image[10, 10] = np.nan  # missing data is never used as a neighbour
    mask[10, 11] = True
    image[10, 11] = 3.0
    for cfa in (None, "GBRG"):
        repaired = repair_pixels(image, mask, cfa=cfa)
        assert np.all(np.abs(repaired[mask] - 0.2) < 0.005)
        assert np.isnan(repaired[10, 10])  # unmasked NaN stays
    everything = repair_pixels(image, np.ones(image.shape, dtype=bool))
    assert np.isnan(everything).all()  # nothing valid to repair from


def test_repair_colour_and_integer_images():
    rgb = np.zeros((10, 12, 3), dtype=np.float64)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0.1, 0.5, 0.9
    mask = np.zeros((10, 12), dtype=bool)
    mask[4, 4] = True
    spoilt = rgb.copy()
    spoilt[4, 4] = 0.0
    repaired = repair_pixels(spoilt, mask)
    assert repaired.dtype == np.float64
    np.testing.assert_allclose(repaired, rgb)
    counts = np.full((6, 6), 1000, dtype=np.uint16)
    counts[2, 3] = 65535
    fixed = repair_pixels(counts, counts > 60000)
    assert fixed.dtype == np.float32 and fixed[2, 3] == 1000.0


def test_repair_rejects_mismatched_shapes():
    with pytest.raises(GeometryError, match=r"mask shape \(5, 5\) does not match"):
        repair_pixels(np.zeros((6, 6), np.float32), np.zeros((5, 5), bool))
    with pytest.raises(GeometryError, match="a mosaic must be 2-D"):
        repair_pixels(np.zeros((6, 6, 3), np.float32), np.zeros((6, 6), bool), cfa="RGGB")


def test_repair_on_a_24_megapixel_frame(rng):
    # Speed is measured by benchmarks/bench_calibrate.py, not here (the machines are noisy).
    image = np.full((4000, 6000), 0.1, dtype=np.float32)
    flat = rng.choice(image.size, 10_000, replace=False)
    mask = np.zeros(image.shape, dtype=bool)
    mask.reshape(-1)[flat] = True
    image.reshape(-1)[flat] = 1.0
    repaired = repair_pixels(image, mask)
    assert np.all(repaired.reshape(-1)[flat] == np.float32(0.1))
    assert np.array_equal(repaired[~mask], image[~mask])


# --------------------------------------------------------------------------- masks


def test_bad_pixel_masks_from_arrays_and_points():
    array = np.zeros((4, 5), dtype=np.float32)
    array[1, 2] = 3.0
    array[3, 4] = np.nan
    np.testing.assert_array_equal(np.argwhere(bad_pixel_mask_from_array(array)), [[1, 2], [3, 4]])
    assert bad_pixel_mask_from_array(np.eye(3, dtype=np.uint8)).dtype == bool
    with pytest.raises(GeometryError, match="2-D"):
        bad_pixel_mask_from_array(np.zeros((2, 3, 3)))

    mask = bad_pixel_mask_from_points([(4, 0), (1.2, 2.9)], (4, 5))  # (x, y) pairs
    np.testing.assert_array_equal(np.argwhere(mask), [[0, 4], [3, 1]])
    assert bad_pixel_mask_from_points([], (4, 5)).sum() == 0
    assert bad_pixel_mask_from_points(np.array([2, 1]), (4, 5))[1, 2]
    with pytest.raises(GeometryError, match=r"\(5, 1\) lies outside the 5 x 4 frame"):
        bad_pixel_mask_from_points([(1, 1), (5, 1)], (4, 5))
    with pytest.raises(GeometryError, match=r"\(N, 2\)"):
        bad_pixel_mask_from_points([(1, 2, 3)], (4, 5))
    with pytest.raises(ConfigError, match="shape"):
        bad_pixel_mask_from_points([(1, 2)], (4, 0))


def test_detectors_reject_bad_arguments():
    image = np.zeros((8, 8), np.float32)
    with pytest.raises(ConfigError, match="sigma = 0"):
        find_hot_pixels(image, sigma=0)
    with pytest.raises(ConfigError, match="unknown CFA pattern 'RGBG'"):
        find_outlier_pixels(image, cfa="RGBG")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="relative = 1.5"):
        find_cold_pixels(image, relative=1.5)
    with pytest.raises(GeometryError, match=r"got shape \(8, 8, 3\)"):
        find_outlier_pixels(np.zeros((8, 8, 3), np.float32))


# --------------------------------------------------------------------------- cosmic rays


@pytest.mark.parametrize("fwhm", [1.8, 3.0])
def test_remove_cosmic_rays_from_a_mono_light(fwhm):
    session = _session(None, glow=0.0, fwhm=fwhm, cosmics=1000.0, defects=False)
    config = session.config
    light = _light(session)
    rays = session.lights[0].cosmic_rays
    rows, cols = rays[:, 1].astype(int), rays[:, 0].astype(int)
    hit = np.zeros(light.shape, dtype=bool)
    hit[rows, cols] = True
    deposit = np.zeros(light.shape)
    np.add.at(deposit, (rows, cols), rays[:, 2])
    clean, mask = remove_cosmic_rays(
        light,
        gain=config.gain,
        readnoise=config.read_noise_e,
        satlevel=(FULL - config.bias_adu) / FULL,
    )
    assert clean.dtype == np.float32 and mask.dtype == bool and clean is not light
    sky_noise = np.sqrt(session.lights[0].background_e + config.read_noise_e**2)
    expected = render_light(session, 0, noise=False) - session.sensor.bias - deposit / config.gain
    on_sky = expected < np.median(expected) + 5 * sky_noise  # not on a star or the galaxy
    strong = hit & (deposit > 10 * sky_noise)
    assert (strong & on_sky).sum() > 150
    assert mask[strong & on_sky].mean() >= 0.97
    assert mask[strong].mean() >= 0.95
    border = np.ones(light.shape, dtype=bool)
    border[3:-3, 3:-3] = False
    # L.A.Cosmic alone finds none there (one may lie on a star's flank and be missed).
    assert (strong & on_sky & border).sum() > 0
    assert mask[strong & on_sky & border].sum() >= (strong & on_sky & border).sum() - 1
    # L.A.Cosmic takes a few noise peaks for hits (~1e-4 of the pixels at sigclip 4.5).
    assert (mask & ~binary_dilation(hit, np.ones((3, 3), bool))).sum() < 5e-4 * mask.size
    # The hits are gone: what is left is within a few σ of the light without cosmic rays.
    residual = (clean * FULL - expected)[strong] / sky_noise
    assert np.percentile(np.abs(residual), 95) < 4.0
    # Stars are intact (apertures reached by a hit or its grown neighbours are left out). A
    # noise peak that L.A.Cosmic takes for a hit changes a faint star's flux within its noise,
    # so the 1% limit is for stars with a signal-to-noise ratio above 40.
    near_hits = binary_dilation(hit, np.ones((5, 5), bool))
    changes = _star_flux_changes(session, light, clean, min_flux=8000.0, defects=near_hits)
    assert changes.size > 5
    assert np.abs(changes).max() < 0.01


def test_cosmic_ray_removal_is_for_mono_data():
    with pytest.raises(ConfigError, match="cosmic-ray removal is for mono data"):
        remove_cosmic_rays(np.zeros((16, 16), np.float32), cfa="RGGB")
    with pytest.raises(ConfigError, match="gain = -1"):
        remove_cosmic_rays(np.zeros((16, 16), np.float32), gain=-1.0)
