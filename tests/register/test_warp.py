"""Warping onto the reference grid: accuracy, footprint, missing data, colour."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.register.transform import Transform
from skystack.register.warp import warp_image


def _blobs(shape, centres, sigma=2.0):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    out = np.zeros(shape, np.float64)
    for cx, cy in centres:
        out += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return out.astype(np.float32)


@pytest.mark.parametrize("interpolation", ["lanczos", "bicubic", "bilinear"])
def test_warp_moves_content_to_the_reference_position(interpolation):
    centres = np.array([[60.0, 50.0], [140.3, 90.7], [100.0, 150.0]])
    transform = Transform.similarity(rotation_deg=25.0, shift=(4.3, -6.6), center=(100, 100))
    image = _blobs((200, 200), centres)
    expected = _blobs((200, 200), transform.apply(centres))
    warped = warp_image(image, transform, interpolation=interpolation, clamp=False)
    inside = warped.footprint
    tolerance = {"lanczos": 0.01, "bicubic": 0.02, "bilinear": 0.06}[interpolation]
    assert np.abs(warped.image[inside] - expected[inside]).max() < tolerance
    # flux is conserved for a pure rotation + shift
    assert np.nansum(warped.image) == pytest.approx(image.sum(), rel=2e-3)


def test_footprint_marks_pixels_without_data():
    image = np.ones((100, 120), np.float32)
    warped = warp_image(image, Transform.translation(30.0, -20.0))
    assert warped.footprint[40:, :30].sum() == 0  # nothing maps into the first 30 columns
    assert not warped.footprint[80:, :].any()
    assert warped.footprint[:80, 30:].all()
    assert np.isnan(warped.image[~warped.footprint]).all()
    np.testing.assert_allclose(warped.image[warped.footprint], 1.0, atol=1e-5)


def test_output_shape_and_identity():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(64, 80)).astype(np.float32)
    same = warp_image(image, Transform.identity(), clamp=False)
    np.testing.assert_allclose(same.image, image, atol=1e-5)
    bigger = warp_image(image, Transform.identity(), shape=(70, 90))
    assert bigger.image.shape == (70, 90)
    assert not bigger.footprint[65:, :].any()


def test_missing_pixels_stay_missing_and_do_not_leak():
    image = _blobs((120, 120), [(60.0, 60.0)]) + 0.1
    image[20:30, 20:30] = np.nan
    warped = warp_image(image, Transform.translation(5.5, 3.25))
    assert np.isnan(warped.image[25:33, 27:35]).all()
    assert np.isfinite(warped.image[warped.footprint]).all()
    assert not warped.footprint[25:33, 27:35].any()
    # far from the hole the result is unaffected
    reference = warp_image(np.nan_to_num(image, nan=0.1), Transform.translation(5.5, 3.25))
    np.testing.assert_allclose(warped.image[60:, 60:], reference.image[60:, 60:], atol=1e-6)


def test_colour_is_warped_like_each_channel():
    rng = np.random.default_rng(2)
    rgb = rng.uniform(size=(50, 60, 3)).astype(np.float32)
    transform = Transform.similarity(rotation_deg=3.0, shift=(1.2, 0.4))
    warped = warp_image(rgb, transform)
    for c in range(3):
        mono = warp_image(rgb[..., c], transform)
        np.testing.assert_array_equal(warped.image[..., c], mono.image)
    assert warped.footprint.shape == (50, 60)


def test_clamp_removes_lanczos_ringing_around_a_sharp_star():
    image = np.full((40, 40), 0.1, np.float32)
    image[20, 20] = 1.0
    transform = Transform.translation(0.5, 0.5)
    ringing = warp_image(image, transform, clamp=False).image
    clamped = warp_image(image, transform, clamp=True).image
    assert np.nanmin(ringing) < 0.09  # Lanczos undershoots next to the star
    assert np.nanmin(clamped) >= 0.1 - 1e-6


def test_homography_warp():
    centres = np.array([[50.0, 50.0], [150.0, 60.0], [90.0, 140.0]])
    transform = Transform(np.array([[1.0, 0.02, 3.0], [0.01, 1.0, -2.0], [1e-4, 5e-5, 1.0]]))
    warped = warp_image(_blobs((200, 200), centres), transform, clamp=False)
    expected = _blobs((200, 200), transform.apply(centres))
    # the projective map also changes the blobs' shapes a little
    assert np.abs(warped.image - expected)[warped.footprint].max() < 0.05
