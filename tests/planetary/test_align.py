"""Global and multi-point alignment of planetary frames, against known shifts and warps."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from skystack.errors import ConfigError, GeometryError, RegistrationError
from skystack.planetary.align import (
    LocalAligner,
    PhaseCorrelator,
    alignment_grid,
    global_shift,
    local_shifts,
    place_alignment_points,
    shift_image,
    usable_alignment_points,
)
from skystack.sim import PlanetaryConfig, make_planetary, render_planetary_frame

WIDTH, HEIGHT = 320, 240


@pytest.fixture(scope="module")
def sessions():
    out = {}
    for target in ("jupiter", "moon"):
        config = PlanetaryConfig(
            width=WIDTH, height=HEIGHT, n_frames=6, target=target, warp_px=0.0, blur_px=(0.8, 1.6)
        )
        out[target] = make_planetary(config, seed=3)
    return out


def _frame(session, index=0):
    return render_planetary_frame(session, index).astype(np.float32) / np.float32(255.0)


def _noisy(image, rng, sigma=0.01):
    return (image + rng.normal(0.0, sigma, image.shape)).astype(np.float32)


@pytest.mark.parametrize(
    ("target", "method"), [("jupiter", "phase"), ("jupiter", "centroid"), ("moon", "phase")]
)
def test_global_shift_recovers_subpixel_shifts(sessions, rng, target, method):
    reference = _frame(sessions[target])
    for sx, sy in [(1.37, -0.62), (-4.25, 2.8), (0.3, 0.15)]:
        image = _noisy(shift_image(reference, sx, sy), rng)
        dx, dy = global_shift(reference, image, method=method)
        # image is the reference moved by (+sx, +sy): moving it back by (-sx, -sy) aligns it.
        assert dx == pytest.approx(-sx, abs=0.1)
        assert dy == pytest.approx(-sy, abs=0.1)
        # Shifting the noise-free moved frame back by (dx, dy) lands on the reference.
        inner = (slice(10, -10), slice(10, -10))
        moved = shift_image(reference, sx, sy)
        before = np.abs(moved - reference)[inner].mean()
        after = np.abs(shift_image(moved, dx, dy) - reference)[inner].mean()
        ideal = np.abs(shift_image(moved, -sx, -sy) - reference)[inner].mean()
        assert after < 0.7 * before
        assert after < 1.5 * ideal  # nearly as good as shifting back by the true amount


@pytest.mark.parametrize(
    ("target", "method"), [("jupiter", "phase"), ("jupiter", "centroid"), ("moon", "phase")]
)
def test_global_shift_matches_simulator_offsets(sessions, target, method):
    session = sessions[target]
    reference = _frame(session, 0)
    errors = []
    for k in range(1, 6):
        dx, dy = global_shift(reference, _frame(session, k), method=method)
        # Frame k shows clean point (x + o_k): shifting it by o_k - o_0 lands on frame 0.
        expected = session.offsets[k] - session.offsets[0]
        errors.append(np.hypot(dx - expected[0], dy - expected[1]))
    assert max(errors) < 0.1


def test_global_shift_colour_and_errors(sessions):
    reference = _frame(sessions["jupiter"])
    rgb = np.repeat(reference[..., None], 3, axis=2)
    moved = shift_image(rgb, 2.0, -1.0)
    assert moved.shape == rgb.shape and moved.dtype == np.float32
    dx, dy = global_shift(rgb, moved)
    assert (dx, dy) == pytest.approx((-2.0, 1.0), abs=0.05)
    with pytest.raises(GeometryError, match="differ in shape"):
        global_shift(reference, reference[:-1])
    with pytest.raises(ConfigError, match="unknown global alignment method"):
        global_shift(reference, reference, method="sift")  # type: ignore[arg-type]


def test_phase_correlator_reuses_the_reference_at_any_size(sessions, rng):
    # An odd, slow-to-transform size: the correlator pads it to a fast one.
    reference = _frame(sessions["moon"])[3:194, 5:207]
    correlator = PhaseCorrelator(reference)
    for sx, sy in [(1.37, -0.62), (-4.25, 2.8)]:
        image = _noisy(shift_image(reference, sx, sy), rng)
        dx, dy = correlator.shift(image)
        assert (dx, dy) == pytest.approx((-sx, -sy), abs=0.1)
        assert global_shift(reference, image) == pytest.approx((dx, dy), abs=1e-6)
    with pytest.raises(GeometryError, match="differ in shape"):
        correlator.shift(reference[:-1])
    with pytest.raises(RegistrationError, match="non-finite"):
        correlator.shift(np.full_like(reference, np.nan))
    noise = rng.normal(0.5, 0.1, reference.shape).astype(np.float32)
    with pytest.raises(RegistrationError, match="no significant peak"):
        PhaseCorrelator(noise).shift(reference, min_significance=50.0)


@pytest.mark.parametrize(("dx", "dy"), [(0.3, -0.4), (1.7, -1.99), (-0.5, 0.0), (5.2, -3.1)])
def test_shift_image_cubic_is_opencv_bicubic(rng, dx, dy):
    # Small shifts take a separable 4-tap filter; it must be OpenCV's bicubic warp exactly.
    image = cv2.GaussianBlur(rng.random((40, 52)).astype(np.float32), (0, 0), 1.5)
    matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    expected = cv2.warpAffine(
        image, matrix, (52, 40), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    np.testing.assert_allclose(shift_image(image, dx, dy), expected, atol=1e-5)
    rgb = np.stack([image, 2 * image, 3 * image], axis=-1)
    np.testing.assert_allclose(shift_image(rgb, dx, dy)[..., 2], 3 * expected, atol=3e-5)


def test_shift_image_moves_content_by_dx_dy():
    image = np.zeros((40, 50), dtype=np.float32)
    image[10, 20] = 1.0
    moved = shift_image(image, 3.0, -2.0, interpolation="linear")
    assert np.unravel_index(np.argmax(moved), moved.shape) == (8, 23)


@pytest.mark.parametrize("ap_size", [32, 64])
def test_alignment_points_lie_on_the_planet(sessions, ap_size):
    session = sessions["jupiter"]
    reference = _frame(session)
    centres = place_alignment_points(reference, ap_size)
    half = ap_size // 2
    x0, y0 = centres[:, 0] - half, centres[:, 1] - half
    assert (x0 >= 0).all() and (y0 >= 0).all()
    assert (x0 + ap_size <= WIDTH).all() and (y0 + ap_size <= HEIGHT).all()
    # Every box overlaps the disk (radius 0.32 * 240 = 77 px, polar 0.935 of it, centred).
    radius = 0.32 * HEIGHT
    cx, cy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    nearest_x = np.clip(cx, x0, x0 + ap_size - 1)
    nearest_y = np.clip(cy, y0, y0 + ap_size - 1)
    assert (np.hypot(nearest_x - cx, (nearest_y - cy) / 0.935) < radius).all()
    # ... and every grid box well inside the disk is kept.
    everywhere = place_alignment_points(reference, ap_size, min_contrast=0.0, min_brightness=-1)
    inside = np.hypot(everywhere[:, 0] - cx, (everywhere[:, 1] - cy) / 0.935) < 0.6 * radius
    kept = {tuple(p) for p in centres}
    assert inside.sum() >= 3
    assert all(tuple(p) in kept for p in everywhere[inside])
    assert len(centres) < 0.6 * len(everywhere)
    # Centres sit on a grid of step ap_size // 2.
    assert np.all(np.diff(np.unique(centres[:, 0])) % half == 0)


def test_grid_and_usable_points_make_place_alignment_points(sessions):
    reference = _frame(sessions["jupiter"])
    grid = alignment_grid(reference.shape, 48, step=36)
    keep = usable_alignment_points(reference, grid, 48)
    np.testing.assert_array_equal(grid[keep], place_alignment_points(reference, 48, step=36))
    assert 0 < keep.sum() < len(grid)
    # A box reaching beyond the frame is never usable.
    outside = np.array([[10.0, 120.0], [WIDTH - 5.0, 120.0]])
    assert not usable_alignment_points(reference, outside, 48).any()


def test_alignment_points_cover_the_moon_and_skip_the_sky(sessions, rng):
    reference = _frame(sessions["moon"])
    centres = place_alignment_points(reference, 64)
    grid = ((WIDTH - 64) // 32 + 1) * ((HEIGHT - 64) // 32 + 1)
    assert len(centres) >= 0.8 * grid
    # Dark sky with a large bright featureless square: APs only along its edges.
    sky = np.full((HEIGHT, WIDTH), 0.02, dtype=np.float32)
    sky[40:200, 80:240] = 0.8
    sky = cv2.GaussianBlur(sky, (0, 0), 1.5) + rng.normal(0, 0.003, sky.shape).astype(np.float32)
    points = place_alignment_points(sky, 32)
    assert len(points) > 0
    inner = (np.abs(points[:, 0] - 159.5) < 40) & (np.abs(points[:, 1] - 119.5) < 40)
    outer = (np.abs(points[:, 0] - 159.5) > 96) | (np.abs(points[:, 1] - 119.5) > 96)
    assert not inner.any() and not outer.any()
    with pytest.raises(ConfigError, match="alignment point size"):
        place_alignment_points(reference, 4)


def _smooth_warp(image, amplitude=1.5):
    """``image`` seen through a smooth displacement field; returns it and the field."""
    height, width = image.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ux = amplitude * np.cos(np.pi * xs / width) * np.cos(0.5 * np.pi * ys / height)
    uy = amplitude * np.sin(np.pi * ys / height - 0.5) * np.cos(0.7 * np.pi * xs / width)
    warped = cv2.remap(image, xs + ux, ys + uy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    return warped, ux, uy


@pytest.mark.parametrize("target", ["jupiter", "moon"])
def test_local_shifts_recover_a_smooth_warp(sessions, rng, target):
    clean = render_planetary_frame(sessions[target], 0, noise=False)
    warped, ux, uy = _smooth_warp(clean)
    reference, image = _noisy(clean, rng, 0.005), _noisy(warped, rng, 0.005)
    centres = place_alignment_points(reference, 32)
    shifts, confidence = local_shifts(reference, image, centres, 32)
    ix, iy = centres[:, 0].astype(int), centres[:, 1].astype(int)
    # remap samples the frame at x + u: the content moved by -u, so the aligning shift is +u.
    truth = np.column_stack([ux[iy, ix], uy[iy, ix]])
    error = np.hypot(*(shifts - truth).T)
    assert np.median(error) < 0.2
    assert np.percentile(error, 90) < 0.5
    assert np.median(confidence) > 0.9
    # The warp matters: shifts without local alignment would be off by up to 1.5 px.
    assert np.median(np.hypot(*truth.T)) > 0.5
    # A prepared aligner gives the same answer.
    again, conf_again = LocalAligner(reference, centres, 32).shifts(image)
    np.testing.assert_allclose(again, shifts, atol=1e-6)
    np.testing.assert_allclose(conf_again, confidence, atol=1e-6)


def test_local_shifts_uniform_shift_sign(sessions, rng):
    reference = _frame(sessions["moon"])
    image = _noisy(shift_image(reference, 1.3, -0.7), rng)
    centres = place_alignment_points(reference, 64)
    shifts, _ = local_shifts(reference, image, centres, 64)
    np.testing.assert_allclose(np.median(shifts, axis=0), [-1.3, 0.7], atol=0.05)
    gx, gy = global_shift(reference, image)
    np.testing.assert_allclose(np.median(shifts, axis=0), [gx, gy], atol=0.1)


def test_local_shifts_low_confidence_on_noise_and_filled(sessions, rng):
    noise_a = rng.normal(0.5, 0.1, (HEIGHT, WIDTH)).astype(np.float32)
    noise_b = rng.normal(0.5, 0.1, (HEIGHT, WIDTH)).astype(np.float32)
    centres = place_alignment_points(_frame(sessions["moon"]), 64)
    _, confidence = local_shifts(noise_a, noise_b, centres, 64, fill="none")
    assert confidence.max() < 0.25
    # One AP of a real frame replaced by noise: low confidence, shift from its neighbours.
    reference = _frame(sessions["moon"])
    image = shift_image(reference, 0.8, 0.4)
    middle = int(np.argmin(np.hypot(centres[:, 0] - WIDTH / 2, centres[:, 1] - HEIGHT / 2)))
    x, y = centres[middle].astype(int)
    image[y - 32 : y + 32, x - 32 : x + 32] = noise_a[y - 32 : y + 32, x - 32 : x + 32]
    shifts, confidence = local_shifts(reference, image, centres, 64)
    assert confidence[middle] < 0.4
    assert np.median(confidence) > 0.9
    np.testing.assert_allclose(shifts[middle], [-0.8, -0.4], atol=0.1)
    zeroed, _ = local_shifts(reference, image, centres, 64, fill="zero")
    np.testing.assert_array_equal(zeroed[middle], [0.0, 0.0])


def test_local_aligner_measures_a_subset_of_points_like_all():
    from skystack.planetary.align import LocalAligner

    rng = np.random.default_rng(3)
    reference = cv2.GaussianBlur(rng.random((200, 240)).astype(np.float32), (0, 0), 2.0)
    moved = shift_image(reference, 0.6, -0.4)
    centres = place_alignment_points(reference, 32, min_brightness=0.0, min_contrast=0.0)
    aligner = LocalAligner(reference, centres, 32)
    every, _ = aligner.shifts(moved)
    subset = np.arange(0, len(centres), 3)
    some, confidence = aligner.shifts(moved, points=subset)
    assert some.shape == (subset.size, 2) and confidence.shape == (subset.size,)
    np.testing.assert_allclose(some, every[subset], atol=1e-6)
    np.testing.assert_allclose(np.median(some, axis=0), [-0.6, 0.4], atol=0.05)
