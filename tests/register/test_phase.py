"""Phase correlation: sign convention, sub-pixel accuracy, rejection of frames without structure."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from skystack.errors import RegistrationError
from skystack.register.phase import phase_correlate
from skystack.register.transform import Transform

data = pytest.importorskip("skimage.data")

_BORDER = 44  # px cut from the 512 x 512 Moon so that warped frames have no empty edges


@pytest.fixture(scope="module")
def moon() -> np.ndarray:
    return data.moon().astype(np.float32) / 255.0


def _frame(master: np.ndarray, truth: Transform, border: int = _BORDER) -> np.ndarray:
    """The crop of ``master`` whose pixel ``x`` shows the reference crop's pixel ``truth(x)``."""
    to_full = Transform.translation(border, border)
    full = to_full.inverse().then(truth).then(to_full)
    height, width = master.shape[:2]
    warped = cv2.warpAffine(
        master,
        full.matrix[:2],
        (width, height),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )
    return warped[border:-border, border:-border]


def _max_error(found: Transform, truth: Transform, shape: tuple[int, ...]) -> float:
    """Largest distance, px, between the two maps over the central 60 % of a frame."""
    h, w = shape[:2]
    gy, gx = np.mgrid[0.2 * (h - 1) : 0.8 * (h - 1) : 9j, 0.2 * (w - 1) : 0.8 * (w - 1) : 9j]
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    return float(np.max(np.hypot(*(found.apply(grid) - truth.apply(grid)).T)))


def _noisy(image: np.ndarray, rng: np.random.Generator, sigma: float = 0.02) -> np.ndarray:
    return (image + rng.normal(0.0, sigma, image.shape)).astype(np.float32)


def test_sign_convention_content_moved_right_and_down_maps_back(moon):
    reference = moon[_BORDER:-_BORDER, _BORDER:-_BORDER]
    # Content moved by +(5, 3) px: reference pixel (x, y) is at (x + 5, y + 3) in the frame.
    moved = moon[_BORDER - 3 : -_BORDER - 3, _BORDER - 5 : -_BORDER - 5]
    np.testing.assert_array_equal(moved[3:, 5:], reference[:-3, :-5])
    match = phase_correlate(moved, reference, refine=False)
    dx, dy = match.transform.shift
    assert dx == pytest.approx(-5.0, abs=0.05) and dy == pytest.approx(-3.0, abs=0.05)
    assert match.method == "phase" and match.n_inliers == 0 and math.isnan(match.rms_px)


@pytest.mark.parametrize("refine", [False, True])
def test_subpixel_shifts_within_a_fifth_of_a_pixel(moon, rng, refine):
    reference = _noisy(moon[_BORDER:-_BORDER, _BORDER:-_BORDER], rng)
    errors = []
    for dx, dy in [(-37.3, 12.71), (0.5, -0.25), (23.86, 39.1)]:
        truth = Transform.translation(dx, dy)
        image = _noisy(_frame(moon, truth), rng)
        errors.append(
            _max_error(
                phase_correlate(image, reference, refine=refine).transform, truth, image.shape
            )
        )
    assert max(errors) < 0.2, errors
    assert np.median(errors) < 0.1, errors


def test_ecc_recovers_a_small_rotation(moon, rng):
    reference = _noisy(moon[_BORDER:-_BORDER, _BORDER:-_BORDER], rng)
    center = ((reference.shape[1] - 1) / 2, (reference.shape[0] - 1) / 2)
    truth = Transform.similarity(rotation_deg=0.5, shift=(17.4, -8.8), center=center)
    image = _noisy(_frame(moon, truth), rng)
    found = phase_correlate(image, reference).transform
    assert _max_error(found, truth, image.shape) < 0.2
    assert found.rotation_deg == pytest.approx(0.5, abs=0.02)
    # Without ECC the rotation is left over: about 2 px at the edge of the central region.
    assert (
        _max_error(phase_correlate(image, reference, refine=False).transform, truth, image.shape)
        > 1.0
    )


def test_colour_and_nan_input(moon, rng):
    reference = moon[_BORDER:-_BORDER, _BORDER:-_BORDER]
    truth = Transform.translation(-6.25, 9.5)
    image = _noisy(_frame(moon, truth), rng)
    colour = np.stack([image * 0.8, image, image * 1.2], axis=2)
    colour[:10, :10] = np.nan
    found = phase_correlate(colour, np.stack([reference] * 3, axis=2)).transform
    assert _max_error(found, truth, image.shape) < 0.2


def test_noise_and_blank_frames_are_rejected(moon, rng):
    reference = moon[_BORDER:-_BORDER, _BORDER:-_BORDER]
    noise = rng.normal(0.5, 0.1, reference.shape).astype(np.float32)
    with pytest.raises(RegistrationError, match=r"no significant peak \(\d+\.\d sigma < 10\)"):
        phase_correlate(noise, reference)
    with pytest.raises(RegistrationError, match="blank"):
        phase_correlate(np.full_like(reference, 0.3), reference)
    with pytest.raises(RegistrationError, match="no finite pixels"):
        phase_correlate(np.full_like(reference, np.nan), reference)


def test_cloudy_frame_is_rejected(moon, rng):
    from scipy.ndimage import gaussian_filter

    reference = moon[_BORDER:-_BORDER, _BORDER:-_BORDER]
    cloud = gaussian_filter(rng.normal(size=reference.shape), 20) + rng.normal(
        0, 1e-3, reference.shape
    )
    with pytest.raises(RegistrationError, match="no significant peak"):
        phase_correlate(cloud.astype(np.float32), reference)


def test_real_lunar_frame_against_a_shifted_copy_and_its_neighbour(shared_data):
    from skystack.io.ser import read_ser

    path = shared_data / "pss_moon_avi" / "another_short_video_crop384_mono8_DERIVED.ser"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    first = read_ser(path, index=0).data
    later = read_ser(path, index=20).data
    truth = Transform.translation(7.3, -4.6)
    border = 24
    image = _frame(first, truth, border)
    found = phase_correlate(image, first[border:-border, border:-border]).transform
    assert _max_error(found, truth, image.shape) < 0.2
    # Two real frames 20 apart: seeing moves parts of the field differently, so "the" shift
    # depends on how a method weights the field (about 1 px here); each must still beat no shift.
    before = _correlation(later, first, Transform.identity())
    for refine in (False, True):
        found = phase_correlate(later, first, refine=refine).transform
        centre = np.array([[191.5, 191.5]])
        np.testing.assert_allclose(found.apply(centre)[0] - centre[0], [-2.2, 3.0], atol=1.0)
        assert _correlation(later, first, found) > before + 0.02


def _correlation(image: np.ndarray, reference: np.ndarray, transform: Transform) -> float:
    """Correlation coefficient of ``image`` and ``reference`` resampled onto it, central part."""
    h, w = image.shape
    resampled = cv2.warpAffine(
        reference, transform.matrix[:2], (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    )
    a = image[h // 8 : -h // 8, w // 8 : -w // 8]
    b = resampled[h // 8 : -h // 8, w // 8 : -w // 8]
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
