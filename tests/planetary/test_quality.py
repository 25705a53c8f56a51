"""Tests of planetary frame sharpness (global and local) and best-frame selection."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from skystack.errors import ConfigError, GeometryError
from skystack.planetary.quality import (
    local_sharpness,
    luminance,
    measure_sharpness,
    select_best,
    sharpness,
)
from skystack.sim import PlanetaryConfig, make_planetary, render_planetary_frame


def _frame(session, index: int) -> np.ndarray:
    raw = render_planetary_frame(session, index)
    return raw.astype(np.float32) / np.float32(session.config.full_scale)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def jupiter():
    session = make_planetary(PlanetaryConfig(n_frames=40), seed=11)
    frames = [_frame(session, k) for k in range(40)]
    return session, frames


@pytest.mark.parametrize(("target", "seed"), [("jupiter", 11), ("moon", 5)])
def test_sharpness_ranks_frames_like_the_seeing(target, seed):
    session = make_planetary(PlanetaryConfig(n_frames=40, target=target), seed=seed)
    scores = np.array([sharpness(_frame(session, k)) for k in range(40)])
    # Measured: jupiter 0.997, moon 0.992 (blur is monotonic in the truth quality).
    assert _spearman(scores, -session.blur_sigma) > 0.9
    assert _spearman(scores, -session.quality) > 0.9


def test_sharpness_is_invariant_to_brightness(jupiter):
    _, frames = jupiter
    for frame in frames[:5]:
        base = sharpness(frame)
        assert base > 0
        assert sharpness(frame * np.float32(0.5)) == pytest.approx(base, rel=0.01)
        assert sharpness(frame * np.float32(3.0)) == pytest.approx(base, rel=0.01)


def test_sharpness_falls_with_extra_blur(jupiter):
    _, frames = jupiter
    frame = frames[0]
    values = [sharpness(cv2.GaussianBlur(frame, (0, 0), s)) for s in (0.5, 1.0, 2.0, 4.0)]
    assert sharpness(frame) > values[0]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))


def test_sharpness_colour_equals_mono_of_luminance(jupiter):
    _, frames = jupiter
    mono = frames[0]
    rgb = np.stack([mono * 0.8, mono, mono * 1.2], axis=-1).astype(np.float32)
    assert np.allclose(luminance(rgb), mono, atol=1e-6)
    assert sharpness(rgb) == pytest.approx(sharpness(mono), rel=1e-4)


def test_sharpness_mask_leaves_out_bad_pixels(jupiter):
    _, frames = jupiter
    frame = frames[0].copy()
    mask = np.zeros(frame.shape, dtype=bool)
    mask[:, :40] = True  # a column of sky to be ignored...
    damaged = frame.copy()
    stripes = (np.arange(frame.shape[0]) // 4) % 2 == 0
    damaged[stripes, :30] = 1.0  # ...where a stripe artefact would dominate the score
    assert sharpness(damaged) > 2 * sharpness(frame)
    assert sharpness(damaged, mask=mask) == pytest.approx(sharpness(frame, mask=mask), rel=1e-6)
    assert sharpness(frame, mask=np.ones(frame.shape, bool)) == 0.0
    with pytest.raises(GeometryError, match="does not match"):
        sharpness(frame, mask=mask[:10])


def test_sharpness_of_dark_frame_is_zero():
    assert sharpness(np.zeros((32, 48), np.float32)) == 0.0
    with pytest.raises(GeometryError, match="shape"):
        sharpness(np.zeros((4, 5, 6), np.float32))


def test_local_sharpness_disk_beats_sky(jupiter):
    session, frames = jupiter
    frame = frames[0]
    cx, cy = (319 / 2 - session.offsets[0, 0], 239 / 2 - session.offsets[0, 1])
    on_disk = [(cx - 30, cy - 20), (cx + 25, cy + 10), (cx, cy)]
    on_sky = [(20, 20), (300, 20), (20, 220), (300, 220)]
    scores = local_sharpness(frame, on_disk + on_sky, 32)
    assert scores.shape == (7,)
    assert scores[:3].min() > 20 * scores[3:].max()


def test_local_sharpness_whole_frame_box_equals_sharpness(jupiter):
    _, frames = jupiter
    frame = frames[1]
    value = local_sharpness(frame, [(160, 120)], 1000)[0]
    assert value == pytest.approx(sharpness(frame), rel=1e-5)


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_measure_sharpness_is_sharpness_and_local_sharpness(jupiter, sigma):
    _, frames = jupiter
    frame = frames[2]
    centres = [(100, 80), (160, 120), (-500, 10)]
    whole, boxes = measure_sharpness(frame, centres, 32, sigma=sigma)
    assert whole == pytest.approx(sharpness(frame, sigma=sigma), rel=1e-6)
    np.testing.assert_allclose(boxes, local_sharpness(frame, centres, 32, sigma=sigma))
    assert np.isnan(boxes[2]) and boxes[1] > 0
    with pytest.raises(ConfigError, match="box size"):
        measure_sharpness(frame, centres, 0)


def test_local_sharpness_follows_regional_blur(jupiter):
    session, frames = jupiter
    frame = frames[2]
    blurred = frame.copy()
    blurred[:, 160:] = cv2.GaussianBlur(frame, (0, 0), 2.0)[:, 160:]
    cx, cy = (319 / 2 - session.offsets[2, 0], 239 / 2 - session.offsets[2, 1])
    left = [(cx - 40, cy + dy) for dy in (-30, 0, 30)]
    right = [(cx + 40, cy + dy) for dy in (-30, 0, 30)]
    before = local_sharpness(frame, left + right, 24)
    after = local_sharpness(blurred, left + right, 24)
    # Left boxes (x < 160) untouched, right boxes lose gradient energy.
    assert np.allclose(after[:3], before[:3], rtol=0.02)
    assert np.all(after[3:] < 0.75 * before[3:])  # measured ratios 0.44 to 0.67
    # Within the blurred frame, the sharp half wins box for box.
    assert np.all(after[:3] > after[3:])


def test_local_sharpness_clips_boxes_and_marks_outside():
    rng = np.random.default_rng(3)
    image = rng.random((50, 60), dtype=np.float32)
    scores = local_sharpness(image, [(0, 0), (59, 49), (500, 500), (np.nan, 3)], 10)
    assert np.isfinite(scores[:2]).all() and (scores[:2] > 0).all()
    assert np.isnan(scores[2:]).all()
    assert local_sharpness(image, np.empty((0, 2)), 10).shape == (0,)
    with pytest.raises(ConfigError, match="box size"):
        local_sharpness(image, [(5, 5)], 0)
    with pytest.raises(ConfigError, match=r"\(n, 2\)"):
        local_sharpness(image, [(5, 5, 5)], 8)


def test_select_best_counts_and_fractions():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4, 0.0])
    assert select_best(scores, 3).tolist() == [1, 3, 5]
    assert select_best(scores, np.int64(1)).tolist() == [1]
    assert select_best(scores, 0.25).tolist() == [1, 3, 5]  # ceil(2.5) = 3
    assert select_best(scores, 0.3).tolist() == [1, 3, 5]  # 0.3 * 10 is 3, not 4
    assert select_best(scores, 1.0).tolist() == list(range(10))
    assert select_best(scores, 0.01).tolist() == [1]  # at least one frame
    assert select_best(scores, 50).tolist() == list(range(10))  # capped at N
    assert select_best([], 0.5).tolist() == []
    assert select_best(scores, 3).dtype == np.intp


def test_select_best_ties_and_nan():
    assert select_best([1.0, 2.0, 2.0, 2.0, 0.5], 2).tolist() == [1, 2]
    assert select_best([5.0, 5.0, 5.0], 1).tolist() == [0]
    assert select_best([np.nan, 1.0, np.nan, 0.0], 2).tolist() == [1, 3]
    assert select_best([np.nan, 1.0], 2).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("best", "match"),
    [
        (0, "count >= 1"),
        (-3, "count >= 1"),
        (0.0, r"fraction in \(0, 1\]"),
        (1.5, r"fraction in \(0, 1\]"),
        (25.0, r"0\.25 keeps 25"),
        (float("nan"), r"fraction in \(0, 1\]"),
        (True, "fraction in"),
        ("25%", "fraction in"),
        (None, "fraction in"),
    ],
)
def test_select_best_rejects_bad_values(best, match):
    with pytest.raises(ConfigError, match=match):
        select_best([1.0, 2.0, 3.0], best)


def test_select_best_rejects_non_1d_scores():
    with pytest.raises(ConfigError, match="1-D"):
        select_best(np.zeros((2, 2)), 1)
