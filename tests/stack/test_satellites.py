"""Satellite-trail masking for small stacks: residuals, line finding, masks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from skystack.detect.background import estimate_noise
from skystack.sim import SessionConfig, make_session, render_light
from skystack.stack.normalize import apply_normalization, frame_stats, normalization
from skystack.stack.satellites import (
    SatelliteTrail,
    downsample_mask,
    find_trails,
    trail_mask,
    trail_residual_mask,
)

WIDTH, HEIGHT = 480, 360
FAINT = 0.16  # trail peak / sky: about 3x the noise of a 400 e- sky


def _frames(n, *, trail=None, brightness=10.0, seed=0, fwhm=(2.6, 3.6)):
    """Normalised 'registered' frames of one star field (sub-pixel pointing jitter, different
    seeing, sky and transparency per frame), the trail's signal in them, their noise and the
    session. Shot and read noise are drawn here, so the trail signal is known exactly."""
    config = SessionConfig(
        width=WIDTH,
        height=HEIGHT,
        n_lights=n,
        n_bias=0,
        n_darks=0,
        n_flats=0,
        shift_px=0.3,
        rotation_deg=0.0,
        fwhm_px=fwhm,
        trail_lights=() if trail is None else (trail,),
        trail_brightness=brightness,
    )
    session = make_session(config, seed=seed)
    clean_session = dataclasses.replace(
        session, lights=tuple(dataclasses.replace(p, trail=None) for p in session.lights)
    )
    rng = np.random.default_rng(seed + 1000)
    frames, trails = [], []
    for i in range(n):
        clean = render_light(clean_session, i, noise=False).astype(np.float32)
        signal = np.zeros_like(clean)
        if i == trail:
            signal = render_light(session, i, noise=False).astype(np.float32) - clean
        electrons = np.maximum(clean + signal - config.bias_adu, 0.0) + config.read_noise_e**2
        noise = rng.standard_normal(clean.shape).astype(np.float32) * np.sqrt(electrons)
        frames.append(clean + signal + noise)
        trails.append(signal)
    reference = frame_stats(frames[0])
    cube, signals, sigmas = [], [], []
    for frame, signal in zip(frames, trails, strict=True):
        norm = normalization(frame_stats(frame), reference, method="additive-scale")
        normalised = apply_normalization(frame, norm)
        cube.append(normalised)
        signals.append(signal * np.float32(norm.gain[0]))
        sigmas.append(estimate_noise(normalised))
    return np.stack(cube), np.stack(signals), np.array(sigmas), session


def _all_trails(cube, sigmas, *, scale=1):
    mask = trail_residual_mask(cube, noise=sigmas)
    found = {}
    for i in range(cube.shape[0]):
        frame_mask = mask[i] if scale == 1 else downsample_mask(mask[i], scale)
        trails = find_trails(frame_mask, frame=i, scale=scale, shape=cube.shape[1:3])
        if trails:
            found[i] = trails
    return found


# ------------------------------------------------------------------------------ residuals


@pytest.mark.parametrize("n", [3, 4, 5, 16])
def test_residual_mask_flags_the_brighter_frame_only(rng, n):
    cube = rng.normal(1.0, 0.01, (n, 20, 30)).astype(np.float32)
    cube[1, 5:8, :] += 0.2  # a trail in frame 1
    cube[2, 10, 10] = np.nan
    cube[:, 15, 15] = np.nan
    mask = trail_residual_mask(cube, noise=np.full(n, 0.01))
    assert mask.shape == cube.shape
    assert mask[1, 5:8].all()
    assert mask[np.arange(n) != 1][:, 5:8].mean() < 0.02  # noise only
    assert not mask[2, 10, 10] and not mask[:, 15, 15].any()
    # pure noise: a 3-sigma threshold on the difference flags well under 1% of pixels
    assert mask[:, 9:].mean() < 0.005


def test_residual_mask_colour_and_two_frames(rng):
    cube = rng.normal(1.0, 0.01, (4, 10, 12, 3)).astype(np.float32)
    cube[0, 3, :, :] += 0.05  # bright in all channels
    mask = trail_residual_mask(cube, noise=np.full((4, 3), 0.01))
    assert mask.shape == (4, 10, 12)
    assert mask[0, 3].all() and not mask[1:, 3].any()
    assert not trail_residual_mask(cube[:2], noise=np.full(2, 0.01)).any()
    with pytest.raises(ValueError, match=r"noise has shape \(3,\); expected \(4,\) or \(4, 3\)"):
        trail_residual_mask(cube, noise=np.ones(3))
    with pytest.raises(ValueError, match="finite and positive"):
        trail_residual_mask(cube[..., 0], noise=np.zeros(4))


def test_downsample_mask_counts_block_fractions():
    mask = np.zeros((2, 9, 10), dtype=bool)
    mask[0, 0, 0] = True  # 1 of 16: off
    mask[0, 4, 4:6] = True  # 2 of 16: on
    mask[1, 8, 8] = True  # corner block of 1 x 2 pixels: 1 of 2, on
    small = downsample_mask(mask, 4)
    assert small.shape == (2, 3, 3)
    assert small[0, 1, 1] and not small[0, 0, 0] and small[0].sum() == 1
    assert small[1, 2, 2] and small[1].sum() == 1
    np.testing.assert_array_equal(downsample_mask(mask, 1), mask)


# ------------------------------------------------------------------------------ geometry


def test_trail_mask_band_and_strips():
    trail = SatelliteTrail(frame=2, start=(0.0, 10.0), end=(99.0, 10.0), width=4.0)
    full = trail_mask((40, 100), [trail])
    assert full.shape == (40, 100)
    np.testing.assert_array_equal(np.nonzero(full.any(axis=1))[0], [8, 9, 10, 11, 12])
    np.testing.assert_array_equal(trail_mask((40, 100, 3), [trail], rows=slice(5, 20)), full[5:20])
    diagonal = SatelliteTrail(frame=0, start=(0.0, 0.0), end=(39.0, 39.0), width=2.0)
    band = trail_mask((40, 40), [diagonal])
    yy, xx = np.mgrid[0:40, 0:40]
    np.testing.assert_array_equal(band, np.abs(xx - yy) / np.sqrt(2) <= 1.0)
    assert not trail_mask((40, 40), []).any()
    data = json.loads(json.dumps(trail.to_dict()))
    assert data == {"frame": 2, "start": [0.0, 10.0], "end": [99.0, 10.0], "width": 4.0}


def test_finds_crossing_trails_in_a_noisy_mask(rng):
    mask = rng.random((600, 800)) < 0.003
    yy, xx = np.mgrid[0:600, 0:800]
    mask |= (np.abs(yy - (0.3 * xx + 50)) < 2.0) & (rng.random(mask.shape) < 0.6)
    mask |= (np.abs(xx - (-0.8 * yy + 700)) < 3.0) & (rng.random(mask.shape) < 0.4)
    for _ in range(60):  # round blobs of star residuals
        cx, cy, r = rng.uniform(0, 800), rng.uniform(0, 600), rng.uniform(2, 6)
        mask |= np.hypot(xx - cx, yy - cy) < r
    trails = find_trails(mask, frame=3)
    assert len(trails) == 2
    for trail in trails:
        assert trail.frame == 3
        for x, y in (trail.start, trail.end):  # on the border
            assert min(x, y, 799 - x, 599 - y) == pytest.approx(0.0, abs=1e-6)
    lines = sorted(trails, key=lambda t: t.start[0])
    xs = np.array([0.0, 400.0, 799.0])
    # y = 0.3 x + 50 and x = -0.8 y + 700 (perpendicular distance to the true lines)
    horizontal = [t for t in lines if abs(t.end[1] - t.start[1]) < abs(t.end[0] - t.start[0])]
    assert len(horizontal) == 1
    assert horizontal[0].distance(xs, 0.3 * xs + 50).max() < 1.0
    other = next(t for t in lines if t is not horizontal[0])
    ys = np.array([0.0, 300.0, 599.0])
    assert other.distance(-0.8 * ys + 700, ys).max() < 1.0
    assert find_trails(np.zeros((50, 60), bool), frame=0) == []


# ------------------------------------------------------------------------------ simulated frames


@pytest.mark.parametrize(
    ("n", "seed", "fwhm"),
    [
        (16, 0, (2.6, 3.6)),
        (16, 1, (2.0, 5.0)),
        (4, 0, (2.6, 3.6)),
        (4, 1, (2.0, 5.0)),
        (4, 2, (2.0, 5.0)),
        (3, 3, (2.0, 5.0)),
    ],
)
def test_no_false_trails_on_clean_frames(n, seed, fwhm):
    """Stars that changed with seeing or moved by a fraction of a pixel, hot pixels, the
    galaxy and noise leave residuals, but never a trail."""
    cube, _, sigmas, _ = _frames(n, seed=seed, fwhm=fwhm)
    assert _all_trails(cube, sigmas) == {}
    assert _all_trails(cube, sigmas, scale=4) == {}


def _excess_along(trail, signals, keep, sigmas):
    """Mean trail signal left in the stack within 1 px of the true line, plain and masked,
    in units of the stack's noise."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    truth = SatelliteTrail(trail.light, trail.start, trail.end, 1.0)
    path = truth.distance(xx, yy) <= 1.0
    stack_noise = float(np.mean(sigmas)) / np.sqrt(len(sigmas))
    plain = signals.mean(axis=0)
    masked = (signals * keep).sum(axis=0) / np.maximum(keep.sum(axis=0), 1)
    return plain[path].mean() / stack_noise, masked[path].mean() / stack_noise


@pytest.mark.parametrize(
    ("n", "k", "brightness", "seed", "scale"),
    [
        (4, 1, 10.0, 0, 1),
        (4, 2, FAINT, 1, 1),
        (16, 7, 10.0, 2, 1),
        (16, 11, FAINT, 0, 1),
        (4, 3, 10.0, 3, 4),
        (4, 0, FAINT, 2, 4),
    ],
)
def test_trail_is_found_and_masked(n, k, brightness, seed, scale):
    cube, signals, sigmas, session = _frames(n, trail=k, brightness=brightness, seed=seed)
    truth = session.lights[k].trail
    found = _all_trails(cube, sigmas, scale=scale)
    assert list(found) == [k]
    (trail,) = found[k]
    # the frames are not warped, so the light's own coordinates are the reference grid
    error = trail.distance([truth.start[0], truth.end[0]], [truth.start[1], truth.end[1]])
    assert error.max() < (2.0 if scale == 1 else 4.0)
    keep = np.ones(cube.shape, dtype=bool)
    keep[k] = ~trail_mask(cube.shape[1:], found[k])
    plain, masked = _excess_along(truth, signals, keep, sigmas)
    assert masked < 1.0
    if brightness >= 10.0:
        assert plain > 20.0
        assert masked < 0.05 * plain


@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_reference_median_matches_numpy(rng, m):
    from skystack.stack.satellites import _nan_median0

    cube = rng.normal(size=(m, 40, 50)).astype(np.float32)
    np.testing.assert_allclose(_nan_median0(cube), np.median(cube, axis=0), rtol=1e-6)
    cube[0, :3] = np.nan
    cube[:, 5, 5] = np.nan
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        expected = np.nanmedian(cube, axis=0)
    np.testing.assert_allclose(_nan_median0(cube), expected, rtol=1e-6)
