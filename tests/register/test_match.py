"""Asterism matching of star lists: any rotation, mirror, scale, small overlap; no false matches."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.errors import RegistrationError
from skystack.register.match import match_stars, triangle_invariants
from skystack.register.transform import Transform

WIDTH, HEIGHT = 1600, 1200


def _frame_stars(rng, truth: Transform, n: int = 300, noise: float = 0.05):
    """Reference stars, and the same stars as the frame sees them (brightest first)."""
    reference = rng.uniform([0, 0], [WIDTH, HEIGHT], (n, 2))
    flux = rng.pareto(1.5, n) + 1.0
    order = np.argsort(-flux)
    reference, flux = reference[order], flux[order]
    frame = truth.inverse().apply(reference) + rng.normal(0, noise, (n, 2))
    inside = (frame >= 0).all(axis=1) & (frame[:, 0] < WIDTH) & (frame[:, 1] < HEIGHT)
    # brightness measured with 10% scatter reorders faint stars a little
    measured = flux[inside] * rng.normal(1.0, 0.1, inside.sum())
    return frame[inside][np.argsort(-measured)], reference


def _grid_error(found: Transform, truth: Transform) -> float:
    grid = np.stack(np.meshgrid(np.linspace(0, WIDTH, 9), np.linspace(0, HEIGHT, 7)), -1)
    grid = grid.reshape(-1, 2)
    return float(np.sqrt(np.mean(np.sum((found.apply(grid) - truth.apply(grid)) ** 2, axis=1))))


@pytest.mark.parametrize(
    ("rotation", "shift", "scale", "mirrored"),
    [
        (0.0, (3.2, -1.7), 1.0, False),
        (0.7, (200.0, -200.0), 1.0, False),
        (90.0, (-150.0, 120.0), 1.0, False),
        (180.0, (40.0, 25.0), 1.0, False),
        (-135.0, (10.0, 10.0), 1.03, False),
        (20.0, (-60.0, 30.0), 0.97, False),
        (180.0, (0.0, 0.0), 1.0, True),
        (33.0, (50.0, -20.0), 1.0, True),
    ],
)
def test_recovers_similarity_transforms(rng, rotation, shift, scale, mirrored):
    truth = Transform.similarity(
        rotation_deg=rotation, shift=shift, scale=scale, center=(WIDTH / 2, HEIGHT / 2),
        mirrored=mirrored,
    )  # fmt: skip
    frame, reference = _frame_stars(rng, truth)
    match = match_stars(frame, reference, rng=rng)
    assert match.mirrored is mirrored
    assert _grid_error(match.transform, truth) < 0.05
    assert match.n_inliers > 0.8 * len(frame)
    assert match.rms_px < 0.1


@pytest.mark.parametrize("model", ["affine", "homography"])
def test_fits_affine_and_homography_models(rng, model):
    if model == "affine":
        matrix = [[1.01, 0.015, -40.0], [-0.01, 0.995, 25.0], [0, 0, 1]]
    else:
        matrix = [[1.0, 0.01, -40.0], [0.0, 1.01, 25.0], [1.5e-6, -2e-6, 1]]
    truth = Transform(np.array(matrix))
    frame, reference = _frame_stars(rng, truth)
    match = match_stars(frame, reference, model=model, rng=rng)
    assert _grid_error(match.transform, truth) < 0.05
    assert match.transform.is_affine is (model == "affine")


def test_dense_field_and_small_overlap(rng):
    truth = Transform.similarity(rotation_deg=4.0, shift=(700.0, 500.0), center=(800, 600))
    frame, reference = _frame_stars(rng, truth, n=2000)
    match = match_stars(frame, reference, rng=rng)
    assert _grid_error(match.transform, truth) < 0.05


def test_is_deterministic_for_a_seed(rng):
    truth = Transform.similarity(rotation_deg=50.0, shift=(5.0, 5.0))
    frame, reference = _frame_stars(rng, truth)
    first = match_stars(frame, reference, rng=np.random.default_rng(7))
    second = match_stars(frame, reference, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(first.transform.matrix, second.transform.matrix)


@pytest.mark.parametrize("n_random", [10, 40, 200])
def test_unrelated_star_lists_are_rejected_not_aligned(rng, n_random):
    reference = rng.uniform([0, 0], [WIDTH, HEIGHT], (300, 2))
    noise = rng.uniform([0, 0], [WIDTH, HEIGHT], (n_random, 2))
    with pytest.raises(RegistrationError, match="no star pattern in common"):
        match_stars(noise, reference, rng=rng)


def test_unrelated_dense_small_fields_are_rejected(rng):
    # 500 stars on 400 x 300 px: chance coincidences within 3 px are frequent
    reference = rng.uniform([0, 0], [400, 300], (500, 2))
    other = rng.uniform([0, 0], [400, 300], (500, 2))
    with pytest.raises(RegistrationError):
        match_stars(other, reference, rng=rng)


def test_too_few_stars_is_a_clear_error(rng):
    with pytest.raises(RegistrationError, match=r"too few stars to match: 4 in the frame"):
        match_stars(rng.uniform(0, 100, (4, 2)), rng.uniform(0, 100, (50, 2)))


def test_triangle_invariants_ignore_rotation_scale_and_mirror(rng):
    points = rng.uniform(0, 500, (30, 2))
    moved = Transform.similarity(rotation_deg=77, scale=1.4, mirrored=True).apply(points)
    inv_a, tri_a, ori_a = triangle_invariants(points)
    inv_b, tri_b, ori_b = triangle_invariants(moved)
    np.testing.assert_allclose(inv_a, inv_b, atol=1e-9)
    np.testing.assert_array_equal(tri_a, tri_b)
    np.testing.assert_array_equal(ori_a, -ori_b)
