"""Star-trail stacking: continuous trails, gap filling, foreground noise, comet mode, real pair."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion, map_coordinates

from skystack.errors import ConfigError, GeometryError
from skystack.io import read
from skystack.register.transform import Transform
from skystack.sim.startrails import StarTrailConfig, write_star_trails
from skystack.stack.trails import (
    StarTrailAccumulator,
    expected_max_excess,
    fractional_transform,
    noise_model,
)

MAD = 1.4826


def _sequence(tmp_path_factory, name: str, **changes):
    options = {"width": 240, "height": 160, "star_count": 2500, "sky_level_e": 150.0} | changes
    config = StarTrailConfig(color=False, **options)
    truth = write_star_trails(tmp_path_factory.mktemp(name), config, seed=5)
    frames = [read(p).data for p in truth.frames]
    return truth, frames


@pytest.fixture(scope="module")
def continuous(tmp_path_factory):
    """10 frames, 295 s exposures every 300 s: trails without visible gaps."""
    return _sequence(tmp_path_factory, "continuous", n_frames=10, interval_s=300.0,
                     exposure_s=295.0, star_count=1500)  # fmt: skip


@pytest.fixture(scope="module")
def dotted(tmp_path_factory):
    """6 frames, 30 s exposures every 1200 s: each trail is a row of dots."""
    return _sequence(tmp_path_factory, "dotted", n_frames=6, interval_s=1200.0, exposure_s=30.0)


def _stack(frames, interval, **options):
    accumulator = StarTrailAccumulator(**options)
    for k, frame in enumerate(frames):
        accumulator.add(frame, time=k * interval)
    return accumulator.result()


def _noise(truth, frames):
    """Single-frame noise in the open sky (robust, data units)."""
    background = read(truth.background).data
    sky = ~binary_dilation(np.load(truth.foreground_mask), iterations=4)
    d = (frames[0] - background)[sky]
    return MAD * float(np.median(np.abs(d - np.median(d))))


def _arcs(truth, *, min_flux=3000.0, min_radius=60.0):
    """Bright stars whose whole path (all frames and gaps) stays in the open sky: (x, y) samples."""
    config = truth.config
    total = (config.n_frames - 1) * config.interval_s + config.exposure_s
    angles = np.radians(truth.rate_deg_per_s * np.linspace(0.0, total, 3000))
    near_ground = binary_dilation(np.load(truth.foreground_mask), iterations=4)
    px, py = truth.pole
    arcs = []
    for i in np.flatnonzero(truth.stars.flux >= min_flux):
        dx, dy = truth.stars.x[i] - px, truth.stars.y[i] - py
        if math.hypot(dx, dy) < min_radius:
            continue
        x = px + np.cos(angles) * dx - np.sin(angles) * dy
        y = py + np.sin(angles) * dx + np.cos(angles) * dy
        if x.min() < 4 or y.min() < 4 or x.max() > config.width - 5 or y.max() > config.height - 5:
            continue
        if near_ground[np.rint(y).astype(int), np.rint(x).astype(int)].any():
            continue
        arcs.append((x, y))
    return arcs


def _arc_minima(image, truth, arcs, sigma):
    """Lowest excess over the clean background along each arc, in single-frame σ."""
    excess = image - read(truth.background).data
    return np.array([map_coordinates(excess, [y, x], order=1).min() / sigma for x, y in arcs])


def test_expected_max_excess_matches_order_statistics():
    assert expected_max_excess(1) == 0.0
    assert expected_max_excess(2) == pytest.approx(1 / math.sqrt(math.pi), abs=1e-4)
    assert expected_max_excess(20) == pytest.approx(1.8675, abs=1e-3)


def test_fractional_transform_composes_to_the_whole():
    rotation = Transform.similarity(rotation_deg=-1.25, center=(150.0, -40.0))
    half = fractional_transform(rotation, 0.5)
    assert np.allclose(half.then(half).matrix, rotation.matrix, atol=1e-12)
    assert half.rotation_deg == pytest.approx(-0.625)
    shift = fractional_transform(Transform.translation(4.0, -2.0), 0.25)
    assert shift.shift == pytest.approx((1.0, -0.5))


def test_continuous_trails_have_no_gaps(continuous):
    truth, frames = continuous
    sigma = _noise(truth, frames)
    arcs = _arcs(truth)
    assert len(arcs) >= 8
    result = _stack(frames, 300.0)
    minima = _arc_minima(result.image, truth, arcs, sigma)
    assert minima.min() > 5.0, np.sort(minima)[:5]
    # the blend takes the plain maximum along the trails
    assert np.array_equal(result.maximum, np.maximum.reduce(frames))


def test_gap_filling_closes_dotted_trails(dotted):
    truth, frames = dotted
    sigma = _noise(truth, frames)
    arcs = _arcs(truth)
    assert len(arcs) >= 8
    plain = _stack(frames, 1200.0, gap_fill="none", foreground="none")
    filled = _stack(frames, 1200.0, gap_fill="all", foreground="none")
    before = _arc_minima(plain.image, truth, arcs, sigma)
    after = _arc_minima(filled.image, truth, arcs, sigma)
    assert np.median(before) < 3.0  # dotted: the gaps go down to the sky
    assert after.min() > 8.0, np.sort(after)[:5]
    assert filled.gaps_filled == len(frames) - 1
    # filling adds stars, not noise: the open sky away from trails keeps its level
    sky = plain.image < np.percentile(plain.image, 50)
    assert np.median(filled.image[sky] - plain.image[sky]) < 0.05 * sigma


def test_gap_fill_measures_the_sky_rotation(dotted):
    truth, frames = dotted
    accumulator = StarTrailAccumulator(gap_fill="all", foreground="none")
    accumulator.add(frames[0])
    gap = accumulator.add(frames[1])
    assert gap.filled and gap.motion is not None
    assert gap.motion.rotation_deg == pytest.approx(truth.rotation_deg_per_frame, abs=0.02)


def test_auto_gap_fill_only_after_interruptions():
    image = np.zeros((40, 60), np.float32)
    frames = []
    for x in (10, 12, 14, 30, 32):
        frame = image.copy()
        frame[20, x] = 1.0
        frames.append(frame)
    accumulator = StarTrailAccumulator(gap_fill="auto", foreground="none")
    motion = Transform.translation(2.0, 0.0)
    gaps = [
        accumulator.add(f, time=t, motion=None if k == 0 else motion)
        for k, (f, t) in enumerate(zip(frames, (0.0, 10.0, 20.0, 100.0, 110.0), strict=True))
    ]
    assert [g.filled for g in gaps] == [False, False, False, True, False]
    assert gaps[3].interval_s == 80.0


def test_foreground_noise_is_reduced(continuous):
    truth, frames = continuous
    n = len(frames)
    background = read(truth.background).data
    ground = binary_erosion(np.load(truth.foreground_mask), iterations=6)
    ground &= background < np.percentile(background[ground], 90)  # no lit windows
    assert ground.sum() > 1500

    def spread(image):
        d = (image - background)[ground]
        return float(np.std(d)), float(np.mean(d))

    single, _ = spread(frames[0])
    blended = _stack(frames, 300.0, foreground="mean")
    noise, bias = spread(blended.image)
    assert noise * math.sqrt(n) / single == pytest.approx(1.0, abs=0.15)
    assert abs(bias) < 0.5 * noise
    assert blended.weight is not None and blended.weight[ground].mean() < 0.01
    maximum, max_bias = spread(blended.maximum)
    assert max_bias > expected_max_excess(n) * single * 0.8  # a pure max is biased up ...
    assert maximum > 1.5 * noise  # ... and noisier than the mean
    median = _stack(frames, 300.0, foreground="median", median_block=3)
    median_noise, _ = spread(median.image)
    assert noise < median_noise < 1.4 * noise


def test_comet_mode_fades_the_start_of_trails(continuous):
    truth, frames = continuous
    sigma = _noise(truth, frames)
    background = read(truth.background).data
    arcs = _arcs(truth, min_flux=6000.0)
    assert len(arcs) >= 4

    def start_to_end(image):
        excess = image - background
        ratios = []
        for x, y in arcs:
            values = map_coordinates(excess, [y, x], order=1)
            k = len(values) // 12
            ratios.append(np.median(values[:k]) / np.median(values[-k:]))
        return np.median(ratios)

    assert start_to_end(_stack(frames, 300.0).image) > 0.7
    comet = _stack(frames, 300.0, comet=2.0)
    assert start_to_end(comet.image) < 0.35
    # the newest segments stay bright
    assert _arc_minima(comet.image, truth, [(x[-200:], y[-200:]) for x, y in arcs],
                       sigma).min() > 5.0  # fmt: skip


def test_median_foreground_drops_a_passing_light(rng):
    frames = [rng.normal(0.1, 0.01, (50, 50)).astype(np.float32) for _ in range(9)]
    frames[4][20:30, 20:30] += 0.5
    mean = _stack(frames, 1.0, foreground="mean", gap_fill="none")
    median = _stack(frames, 1.0, foreground="median", gap_fill="none")
    assert mean.foreground[25, 25] > 0.14
    assert median.foreground[25, 25] < 0.12


def test_noise_model_follows_the_level(rng):
    level = np.repeat(np.linspace(0.01, 0.5, 200, dtype=np.float32)[None, :], 200, axis=0)
    sigma = 0.002 + 0.02 * np.sqrt(level)
    frames = [level + sigma * rng.standard_normal(level.shape, dtype=np.float32)
              for _ in range(6)]  # fmt: skip
    stack = np.stack(frames)
    model = noise_model(stack.mean(0), stack.var(0, ddof=1), dof=5)
    assert np.allclose(model[:, 10:-10], sigma[:, 10:-10], rtol=0.08)


def test_bad_shapes_and_options_raise():
    accumulator = StarTrailAccumulator()
    accumulator.add(np.zeros((10, 12), np.float32))
    with pytest.raises(GeometryError, match=r"frame shape \(10, 13\) differs"):
        accumulator.add(np.zeros((10, 13), np.float32))
    with pytest.raises(GeometryError, match="no frame"):
        StarTrailAccumulator().result()
    with pytest.raises(ConfigError, match="comet length"):
        StarTrailAccumulator(comet=0)
    with pytest.raises(ConfigError, match="foreground"):
        StarTrailAccumulator(foreground="sum")  # type: ignore[arg-type]


def test_real_pair_keeps_the_maximum_on_stars(shared_data):
    folder = shared_data / "startrails_lrt_pair"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    # a 1536 x 2048 crop (sky, trees, horizon) keeps the test quick
    crop = (slice(0, 1536), slice(1024, 3072))
    a, b = (read(folder / name).data[crop] for name in ("LRT_00931.jpg", "LRT_00932.jpg"))
    accumulator = StarTrailAccumulator(gap_fill="none")
    accumulator.add(a)
    accumulator.add(b)
    result = accumulator.result()
    maximum = np.maximum(a, b)
    assert np.array_equal(result.maximum, maximum)
    weight = result.weight
    assert weight is not None and result.foreground is not None
    assert np.array_equal(result.image[weight >= 1.0], maximum[weight >= 1.0])
    assert np.allclose(result.image[weight <= 0.0], result.foreground[weight <= 0.0])
    # the stars of the sky (the strongest excesses in the upper part) take the maximum
    upper = slice(0, 700)
    excess = (maximum - result.foreground)[upper].mean(axis=2)
    ranked = np.sort(excess, axis=None)
    assert np.all(weight[upper][excess >= ranked[-300]] >= 1.0)
    # with 2 frames a star's two images overlap: fainter ones are partly blended
    assert (weight[upper][excess >= ranked[-2000]] > 0.5).mean() > 0.85
    # and everything lies between the mean and the maximum
    assert np.all(result.image <= maximum + 1e-6)
    assert np.all(result.image >= result.foreground - 1e-6)
