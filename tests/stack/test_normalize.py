"""Frame normalisation: Siril's estimators and the five methods."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.sim import render_stars
from skystack.stack.normalize import (
    NORMALIZE_METHODS,
    FrameStats,
    Normalization,
    apply_normalization,
    frame_stats,
    normalization,
)

SIZE = 800
SKY = 0.1
NOISE = 0.004


def _clean(rng: np.random.Generator, *, channels: int = 0) -> np.ndarray:
    """Sky plus 3000 stars (a power law of fluxes), float32 (H, W) or (H, W, C)."""
    n = 3000
    x, y = rng.uniform(0, SIZE - 1, n), rng.uniform(0, SIZE - 1, n)
    flux = 0.02 * rng.pareto(1.2, n) + 0.01
    if channels:
        weights = flux[:, None] * rng.uniform(0.7, 1.3, (n, channels))
        stars = render_stars((SIZE, SIZE, channels), x, y, weights, fwhm=3.0)
    else:
        stars = render_stars((SIZE, SIZE), x, y, flux, fwhm=3.0)
    return (stars + np.float32(SKY)).astype(np.float32)


def _noisy(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (clean + rng.normal(0.0, NOISE, clean.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return _clean(np.random.default_rng(5))


def _close(a: np.ndarray, b: np.ndarray, rel: float) -> None:
    np.testing.assert_allclose(a, b, rtol=rel)


def test_stats_of_sky_with_stars_measure_background_and_noise(clean, rng):
    stats = frame_stats(_noisy(clean, rng))
    assert stats.location.shape == stats.scale.shape == (1,)
    # stars lift the median a little (they are part of the background distribution's tail)
    assert stats.location[0] == pytest.approx(SKY, rel=0.01)
    assert stats.scale[0] == pytest.approx(NOISE, rel=0.05)


@pytest.mark.parametrize(
    ("method", "gain", "offset"),
    [
        ("additive", 1.0, 0.03),
        ("multiplicative", 0.7, 0.0),
        ("additive-scale", 0.7, 0.03),
        ("additive-scale", 1.3, -0.02),
    ],
)
def test_affine_frames_are_restored(clean, rng, method, gain, offset):
    reference = _noisy(clean, rng)
    # other sky level and transparency: an affine transform of the scene, fresh noise
    frame = (gain * _noisy(clean, rng) + offset).astype(np.float32)
    ref_stats = frame_stats(reference)
    norm = normalization(frame_stats(frame), ref_stats, method=method)
    restored = frame_stats(apply_normalization(frame, norm))
    _close(restored.location, ref_stats.location, 0.005)
    _close(restored.scale, ref_stats.scale, 0.005)
    np.testing.assert_allclose(norm.gain, [1.0 / gain], rtol=0.005)


def test_none_is_identity(clean, rng):
    frame = _noisy(clean, rng)
    norm = normalization(frame_stats(frame), frame_stats(frame * 2), method="none")
    assert norm.is_identity
    np.testing.assert_array_equal(apply_normalization(frame, norm), frame)


def test_formulas_match_siril():
    stats = FrameStats(location=np.array([0.2]), scale=np.array([0.01]))
    ref = FrameStats(location=np.array([0.1]), scale=np.array([0.004]))
    expected = {
        "none": (1.0, 0.0),
        "additive": (1.0, -0.1),
        "multiplicative": (0.5, 0.0),
        "additive-scale": (0.4, 0.1 - 0.2 * 0.4),
        "multiplicative-scale": (0.4 * 0.5, 0.0),
    }
    for method in NORMALIZE_METHODS:
        norm = normalization(stats, ref, method=method)
        np.testing.assert_allclose([norm.gain[0], norm.offset[0]], expected[method], atol=1e-12)
    zero = FrameStats(location=np.array([0.0]), scale=np.array([0.0]))
    assert normalization(zero, ref, method="multiplicative-scale").gain[0] == 1.0


def test_colour_channels_are_normalised_separately(rng):
    clean = _clean(np.random.default_rng(6), channels=3)
    reference = _noisy(clean, rng)
    gains = np.array([0.8, 1.1, 1.4], dtype=np.float32)
    offsets = np.array([0.02, -0.01, 0.05], dtype=np.float32)
    frame = _noisy(clean, rng) * gains + offsets
    ref_stats = frame_stats(reference)
    assert ref_stats.location.shape == (3,)
    norm = normalization(frame_stats(frame), ref_stats, method="additive-scale")
    np.testing.assert_allclose(norm.gain, 1.0 / gains, rtol=0.005)
    restored = frame_stats(apply_normalization(frame, norm))
    _close(restored.location, ref_stats.location, 0.005)
    _close(restored.scale, ref_stats.scale, 0.005)


def test_nan_is_ignored(clean, rng):
    frame = _noisy(clean, rng)
    holed = frame.copy()
    holed[:, :250] = np.nan  # outside a registered frame's footprint
    holed[500:, 600:] = np.inf
    a, b = frame_stats(frame), frame_stats(holed)
    _close(b.location, a.location, 0.002)
    _close(b.scale, a.scale, 0.01)
    assert np.all(np.isnan(frame_stats(np.full((10, 10), np.nan)).location))
    norm = Normalization(gain=np.array([2.0]), offset=np.array([1.0]))
    assert np.isnan(apply_normalization(holed, norm)[0, 0])


def test_bright_object_and_trail_barely_move_the_estimates(clean, rng):
    frame = _noisy(clean, rng)
    base = frame_stats(frame)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    # a bright extended object covering 5% of the frame, with a soft edge
    radius = SIZE * np.sqrt(0.05 / np.pi)
    r = np.hypot(xx - 420.0, yy - 380.0)
    galaxy = 0.3 * np.clip((radius - r) / 4.0 + 0.5, 0.0, 1.0) * np.exp(-r / radius)
    with_object = frame + galaxy.astype(np.float32)
    assert 0.045 < np.mean(galaxy > 0) < 0.055
    # a trail 10x the sky covering 5% of the frame (34 px wide)
    trail = np.abs(yy - 0.6 * xx - 100.0) < 17.0 / np.cos(np.arctan(0.6))
    with_trail = frame + np.where(trail, np.float32(10 * SKY), np.float32(0))
    assert 0.045 < trail.mean() < 0.055
    for other in (frame_stats(with_object), frame_stats(with_trail)):
        _close(other.location, base.location, 0.005)
        _close(other.scale, base.scale, 0.005)


def test_apply_to_strips_of_frames_and_in_place(rng):
    cube = rng.normal(0.1, 0.01, (4, 6, 5, 3)).astype(np.float32)
    norm = Normalization(gain=np.array([1.0, 2.0, 3.0]), offset=np.array([0.0, 0.5, -1.0]))
    expected = cube * np.array([1, 2, 3], np.float32) + np.array([0, 0.5, -1], np.float32)
    out = apply_normalization(cube, norm)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    same = apply_normalization(cube, norm, out=cube)
    assert same is cube
    np.testing.assert_allclose(cube, expected, rtol=1e-6)
    mono = Normalization(gain=np.array([2.0]), offset=np.array([1.0]))
    np.testing.assert_allclose(apply_normalization(np.ones((2, 3, 4), np.uint16), mono), 3.0)


def test_errors_name_the_problem():
    one = FrameStats(location=np.array([0.1]), scale=np.array([0.01]))
    three = FrameStats(location=np.full(3, 0.1), scale=np.full(3, 0.01))
    with pytest.raises(ValueError, match="1 channel.*reference 3"):
        normalization(one, three, method="additive")
    with pytest.raises(ValueError, match="unknown method 'scale'"):
        normalization(one, one, method="scale")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"has 3 channels but the strip has shape \(4, 5\)"):
        apply_normalization(
            np.zeros((4, 5), np.float32), normalization(three, three, method="none")
        )
    with pytest.raises(ValueError, match="needs an"):
        frame_stats(np.zeros(5))
