"""Tests of the planetary region of interest: disk centre, disk box, surface, blank frames."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.errors import ConfigError, RegistrationError
from skystack.planetary.roi import Roi, disk_centre, find_object
from skystack.sim import PlanetaryConfig, make_planetary, render_planetary_frame

W, H = 320, 240
RADIUS = 0.32 * min(W, H)  # the simulator's default equatorial radius (px)
POLAR = 0.935 * RADIUS


def _frame(session, index: int) -> np.ndarray:
    raw = render_planetary_frame(session, index)
    return raw.astype(np.float32) / np.float32(session.config.full_scale)


def _true_centre(session, index: int) -> np.ndarray:
    # Frame pixel p shows clean point p + offset; the clean planet is centred in the frame.
    return np.array([(W - 1) / 2.0, (H - 1) / 2.0]) - session.offsets[index]


@pytest.mark.parametrize("color", ["mono", "rgb"])
def test_disk_centre_within_a_fraction_of_a_pixel_without_warp(color):
    config = PlanetaryConfig(n_frames=20, color=color, warp_px=0.0, jitter_px=4.0)
    session = make_planetary(config, seed=3)
    errors = []
    for k in range(20):
        frame = _frame(session, k)
        centre = disk_centre(frame)
        assert centre is not None
        errors.append(np.subtract(centre, _true_centre(session, k)))
        roi = find_object(frame)
        assert roi.centre == pytest.approx(centre)
    errors = np.abs(errors)
    assert errors.max() < 0.5  # measured 0.28 px (the texture is not left-right symmetric)


def test_disk_centre_with_seeing_warp_within_one_pixel():
    session = make_planetary(PlanetaryConfig(n_frames=30), seed=3)
    errors = np.array(
        [np.subtract(disk_centre(_frame(session, k)), _true_centre(session, k)) for k in range(30)]
    )
    # The local warp moves the limb itself, so the truth is fuzzy: measured rms 0.34, 0.27 px,
    # max 0.88 px.
    assert np.sqrt((errors**2).mean(axis=0)).max() < 0.5
    assert np.abs(errors).max() < 1.0


def test_find_object_box_holds_the_disk_with_margin():
    session = make_planetary(PlanetaryConfig(n_frames=12), seed=7)
    for k in range(0, 12, 3):
        frame = _frame(session, k)
        roi = find_object(frame, mode="auto", margin=0.15)
        assert roi.kind == "disk"
        cx, cy = _true_centre(session, k)
        # The whole disk plus at least 10 % of its diameter on every side (15 % asked for).
        assert roi.x0 <= cx - RADIUS - 0.1 * 2 * RADIUS
        assert roi.x1 >= cx + RADIUS + 0.1 * 2 * RADIUS
        assert roi.y0 <= cy - POLAR - 0.1 * 2 * RADIUS
        assert roi.y1 >= cy + POLAR + 0.1 * 2 * RADIUS
        # ... and not much more than 15 % plus blur.
        assert roi.shape[1] < 2 * RADIUS * 1.45
        assert roi.radius == pytest.approx(RADIUS, abs=3.0)  # measured 76.5 to 77.5 of 76.8
        crop = roi.crop(frame)
        assert crop.shape == roi.shape
        assert np.shares_memory(crop, frame)
        rgb = np.stack([frame] * 3, axis=-1)
        assert roi.crop(rgb).shape == (*roi.shape, 3)


def test_find_object_margin_zero_and_min_size():
    session = make_planetary(PlanetaryConfig(n_frames=1), seed=7)
    frame = _frame(session, 0)
    tight = find_object(frame, mode="disk", margin=0.0)
    cx, cy = _true_centre(session, 0)
    assert tight.shape[1] == pytest.approx(2 * RADIUS, abs=6)
    assert tight.shape[0] == pytest.approx(2 * POLAR, abs=6)
    assert tight.x0 <= cx - RADIUS + 1 and tight.x1 >= cx + RADIUS - 1
    big = find_object(frame, mode="disk", margin=0.0, min_size=200)
    assert big.shape[0] >= 200 and big.shape[1] >= 200
    assert 0 <= big.y0 and big.y1 <= H
    huge = find_object(frame, mode="disk", margin=2.0)  # clipped to the frame
    assert (huge.x0, huge.y0, huge.x1, huge.y1) == (0, 0, W, H)


def test_small_planet_box():
    config = PlanetaryConfig(n_frames=1, planet_radius_px=8.0, jitter_px=0.0, warp_px=0.0)
    session = make_planetary(config, seed=2)
    roi = find_object(_frame(session, 0))
    assert roi.kind == "disk"
    assert roi.shape == (32, 32)  # min_size wins over the ~18 px disk plus 2 x 15 %
    assert roi.centre == pytest.approx(_true_centre(session, 0), abs=0.5)


def test_moon_is_a_surface():
    session = make_planetary(PlanetaryConfig(n_frames=3, target="moon"), seed=3)
    for k in range(3):
        roi = find_object(_frame(session, k))
        assert roi.kind == "surface"
        assert (roi.x0, roi.y0, roi.x1, roi.y1) == (8, 8, W - 8, H - 8)
        assert roi.centre is None and roi.radius is None
    forced = find_object(_frame(session, 0), mode="surface", border=0)
    assert forced.shape == (H, W)


def test_planet_cut_by_the_frame_edge_is_a_surface():
    session = make_planetary(PlanetaryConfig(n_frames=1), seed=7)
    frame = _frame(session, 0)
    cut = np.ascontiguousarray(frame[:, 100:])  # the limb leaves the frame on the left
    assert find_object(cut).kind == "surface"
    assert find_object(cut, mode="disk").kind == "disk"


def test_blank_and_noise_frames():
    """No object: ``auto`` gives the whole-frame surface, ``disk`` raises, the centre is None."""
    rng = np.random.default_rng(1)
    blank = np.zeros((H, W), np.float32)
    noise = rng.normal(0.02, 0.003, (H, W)).astype(np.float32)
    quantised = (rng.poisson(0.6, (H, W)) / 255.0).astype(np.float32)
    for frame in (blank, noise, quantised):
        assert disk_centre(frame) is None
        roi = find_object(frame)
        assert roi.kind == "surface" and roi.shape == (H - 16, W - 16)
        with pytest.raises(RegistrationError, match="no bright object"):
            find_object(frame, mode="disk")


def test_bad_options():
    frame = np.zeros((40, 40), np.float32)
    with pytest.raises(ConfigError, match="mode"):
        find_object(frame, mode="planet")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="margin"):
        find_object(frame, margin=-0.1)
    with pytest.raises(ConfigError, match="min_size"):
        find_object(frame, min_size=0)
    with pytest.raises(ConfigError, match="threshold"):
        disk_centre(frame, threshold=1.5)
    with pytest.raises(ConfigError, match="empty region"):
        Roi(5, 5, 5, 10, "surface")
