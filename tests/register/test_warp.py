"""Warping onto the reference grid: accuracy, footprint, missing data, colour."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.register.transform import Transform
from skystack.register.warp import _plan_for, _warp_lanczos, warp_image


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


# --- the shear path (similarity warps as three 1-D passes) against the 2-D kernel ----------

_ROTATIONS = [0.3, 13.0, 44.0, 97.0, 183.0]


def _similarity(rotation, *, mirrored=False, scale=1.0):
    return Transform.similarity(
        rotation_deg=rotation,
        shift=(4.3, -6.6),
        center=(100, 100),
        mirrored=mirrored,
        scale=scale,
    )


def _centroids(image, centres, radius=6):
    out = []
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    for cx, cy in centres:
        near = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
        weight = np.where(near, np.nan_to_num(image), 0.0)
        out.append([(weight * xx).sum() / weight.sum(), (weight * yy).sum() / weight.sum()])
    return np.array(out)


@pytest.mark.parametrize("rotation", _ROTATIONS)
def test_shear_path_matches_analytic_blobs_and_the_2d_kernel(rotation):
    centres = np.array([[60.0, 50.0], [140.3, 90.7], [100.0, 150.0], [70.6, 120.2]])
    transform = _similarity(rotation)
    assert _plan_for(transform.inverse().matrix, (200, 200), (200, 200)) is not None
    image = _blobs((200, 200), centres)
    target = transform.apply(centres)
    expected = _blobs((200, 200), target)
    shear = _warp_lanczos(image, transform, (200, 200), clamp=False, method="shear")
    plane = _warp_lanczos(image, transform, (200, 200), clamp=False, method="2d")
    np.testing.assert_array_equal(shear.footprint, plane.footprint)
    inside = shear.footprint
    assert np.abs(shear.image[inside] - expected[inside]).max() < 0.01
    # the two Lanczos paths agree to about 1 % of the peak (measured up to 0.013)
    assert np.abs(shear.image[inside] - plane.image[inside]).max() < 0.015
    # centroids over the whole blob: Lanczos-3 itself moves them by up to ~0.02 px at some
    # sampling phases (its normalised weights' first moment is not 0), the 2-D kernel as well
    # (measured 0.020 px here); three passes add up to 0.032 px
    assert np.abs(_centroids(plane.image, target, radius=12) - target).max() < 0.025
    assert np.abs(_centroids(shear.image, target, radius=12) - target).max() < 0.035
    assert np.nansum(shear.image) == pytest.approx(image.sum(), rel=2e-3)


@pytest.mark.parametrize("mirrored", [False, True])
@pytest.mark.parametrize("scale", [1.0, 1.0002])
@pytest.mark.parametrize("rotation", [-2.0, 61.0, 179.0, 250.0])
def test_shear_path_handles_turns_mirrors_and_near_unit_scales(rotation, scale, mirrored):
    rng = np.random.default_rng(3)
    centres = np.column_stack([rng.uniform(25, 195, 12), rng.uniform(25, 155, 12)])
    transform = _similarity(rotation, mirrored=mirrored, scale=scale)
    image = _blobs((180, 220), centres)
    target = transform.apply(centres)
    shear = _warp_lanczos(image, transform, (190, 210), clamp=False, method="shear")
    plane = _warp_lanczos(image, transform, (190, 210), clamp=False, method="2d")
    np.testing.assert_array_equal(shear.footprint, plane.footprint)
    assert np.isnan(shear.image[~shear.footprint]).all()
    assert np.isfinite(shear.image[shear.footprint]).all()
    inside = shear.footprint
    assert np.abs(shear.image[inside] - plane.image[inside]).max() < 0.015
    expected = _blobs((190, 210), target, sigma=2.0 * scale)
    whole = (target[:, 0] > 14) & (target[:, 0] < 196) & (target[:, 1] > 14) & (target[:, 1] < 176)
    found = _centroids(shear.image, target[whole], radius=12)
    exact = _centroids(expected, target[whole], radius=12)  # neighbours overlap a little
    assert np.abs(found - exact).max() < 0.04


def test_shear_path_is_chosen_only_for_rotations_at_unit_scale():
    shape = (100, 120)
    assert _plan_for(_similarity(30.0).inverse().matrix, shape, shape) is not None
    assert _plan_for(_similarity(30.0, scale=1.01).inverse().matrix, shape, shape) is None
    affine = Transform(np.array([[1.0, 0.01, 2.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]))
    assert _plan_for(affine.inverse().matrix, shape, shape) is None
    homography = Transform(np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0], [1e-5, 0.0, 1.0]]))
    assert _plan_for(homography.inverse().matrix, shape, shape) is None
    with pytest.raises(ValueError, match="not a rotation with a shift at scale 1"):
        _warp_lanczos(np.ones(shape, np.float32), affine, shape, clamp=True, method="shear")


@pytest.mark.parametrize("rotation", [0.0, 7.0, 183.0])
def test_shear_path_clamp_keeps_values_near_the_nearest_samples(rotation):
    image = np.full((40, 40), 0.1, np.float32)
    image[20, 20] = 1.0
    transform = Transform.similarity(rotation_deg=rotation, shift=(0.5, 0.5), center=(20, 20))
    ringing = _warp_lanczos(image, transform, (40, 40), clamp=False, method="shear").image
    clamped = _warp_lanczos(image, transform, (40, 40), clamp=True, method="shear").image
    assert np.nanmin(ringing) < 0.09
    assert np.nanmin(clamped) >= 0.1 - 1e-6
    assert np.nanmax(clamped) <= 1.0 + 1e-6


def test_shear_path_colour_and_missing_pixels():
    rng = np.random.default_rng(4)
    rgb = rng.uniform(size=(60, 70, 3)).astype(np.float32)
    rgb[10:14, 30:33, 1] = np.nan
    transform = _similarity(183.0)
    shear = _warp_lanczos(rgb, transform, (60, 70), clamp=True, method="shear")
    plane = _warp_lanczos(rgb, transform, (60, 70), clamp=True, method="2d")
    np.testing.assert_array_equal(shear.footprint, plane.footprint)
    assert np.isfinite(shear.image[shear.footprint]).all()
    for c in range(3):
        mono = _warp_lanczos(rgb[..., c], transform, (60, 70), clamp=True, method="shear")
        inside = mono.footprint & shear.footprint
        np.testing.assert_allclose(shear.image[..., c][inside], mono.image[inside], atol=1e-6)
