"""Transforms: construction, composition and least-squares fits of every model."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.register.transform import Transform, fit_transform, residuals


def _points(rng: np.random.Generator, n: int = 40) -> np.ndarray:
    return rng.uniform(0, 2000, (n, 2))


@pytest.mark.parametrize("mirrored", [False, True])
@pytest.mark.parametrize("rotation", [0.0, 37.0, 180.0, -95.0])
def test_similarity_fit_recovers_rotation_scale_shift_and_mirror(rng, rotation, mirrored):
    truth = Transform.similarity(
        scale=1.03,
        rotation_deg=rotation,
        shift=(120.5, -33.25),
        center=(1000, 700),
        mirrored=mirrored,
    )
    src = _points(rng)
    fitted = fit_transform(src, truth.apply(src), model="similarity")
    np.testing.assert_allclose(fitted.matrix, truth.matrix, atol=1e-9)
    assert fitted.is_mirrored is mirrored
    assert fitted.scale == pytest.approx(1.03)
    assert fitted.rotation_deg == pytest.approx(rotation if rotation != 180.0 else 180.0)


def test_noisy_similarity_fit_is_least_squares(rng):
    truth = Transform.similarity(rotation_deg=12.0, shift=(5.0, 7.0))
    src = _points(rng, 400)
    dst = truth.apply(src) + rng.normal(0, 0.1, (400, 2))
    fitted = fit_transform(src, dst)
    grid = _points(rng, 50)
    # 400 points with 0.1 px noise pin the map to about 0.1/sqrt(400) px
    assert np.abs(fitted.apply(grid) - truth.apply(grid)).max() < 0.03


def test_affine_and_homography_fits(rng):
    affine = Transform(np.array([[1.01, 0.02, 3.0], [-0.015, 0.99, -4.0], [0, 0, 1]]))
    homography = Transform(np.array([[1.0, 0.01, 3.0], [0.0, 1.02, -4.0], [2e-5, -1e-5, 1]]))
    src = _points(rng)
    for truth, model in ((affine, "affine"), (homography, "homography")):
        fitted = fit_transform(src, truth.apply(src), model=model)
        assert residuals(fitted, src, truth.apply(src)).max() < 1e-6
    translation = fit_transform(src, src + [2.5, -1.0], model="translation")
    assert translation.shift == pytest.approx((2.5, -1.0))


def test_inverse_compose_and_json_round_trip():
    t = Transform.similarity(scale=0.98, rotation_deg=170.0, shift=(10, 20), mirrored=True)
    assert np.allclose(t.then(t.inverse()).matrix, np.eye(3))
    assert np.allclose(Transform.from_list(t.to_list()).matrix, t.matrix)
    pts = np.array([[3.0, 4.0], [100.0, -5.0]])
    assert np.allclose(t.inverse().apply(t.apply(pts)), pts)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least 3 point pairs"):
        fit_transform([[0, 0], [1, 1]], [[0, 0], [1, 1]], model="affine")
    with pytest.raises(ValueError, match="degenerate"):
        fit_transform(np.zeros((5, 2)), np.ones((5, 2)), model="affine")
    with pytest.raises(ValueError, match="finite 3x3"):
        Transform(np.full((3, 3), np.nan))
