"""ORB feature matching and ECC refinement: accuracy, conventions, rejection of noise."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from skystack.errors import RegistrationError
from skystack.register.features import MIN_ORB_INLIERS, ecc_refine, orb_match
from skystack.register.transform import Transform

data = pytest.importorskip("skimage.data")

_BORDER = 60  # px cut from the master so that rotated frames have no empty corners


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


def _centre(image: np.ndarray) -> tuple[float, float]:
    return (image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2


@pytest.mark.parametrize(
    ("rotation", "scale", "shift"),
    [(-18.0, 1.0, (31.2, -12.6)), (7.5, 1.0, (-38.7, 24.05)), (12.0, 1.03, (-9.3, 5.55))],
)
def test_orb_with_ecc_recovers_rotation_scale_and_shift(moon, rng, rotation, scale, shift):
    reference = _noisy(moon[_BORDER:-_BORDER, _BORDER:-_BORDER], rng)
    truth = Transform.similarity(
        scale=scale, rotation_deg=rotation, shift=shift, center=_centre(reference)
    )
    image = _noisy(_frame(moon, truth), rng)
    match = orb_match(image, reference, rng=rng)
    assert match.method == "orb" and match.n_inliers >= 50
    assert 0.0 < match.rms_px < 2.0
    assert _max_error(match.transform, truth, image.shape) < 0.2
    assert match.transform.scale == pytest.approx(scale, abs=2e-4)


def test_orb_alone_is_good_to_about_a_pixel(moon, rng):
    reference = _noisy(moon[_BORDER:-_BORDER, _BORDER:-_BORDER], rng)
    truth = Transform.similarity(rotation_deg=-9.0, shift=(14.0, 20.5), center=_centre(reference))
    image = _noisy(_frame(moon, truth), rng)
    assert (
        _max_error(orb_match(image, reference, refine=False, rng=rng).transform, truth, image.shape)
        < 1.0
    )


@pytest.mark.parametrize("model", ["translation", "affine", "homography"])
def test_other_models(moon, rng, model):
    reference = _noisy(moon[_BORDER:-_BORDER, _BORDER:-_BORDER], rng)
    rotation = 0.0 if model == "translation" else 4.0
    truth = Transform.similarity(
        rotation_deg=rotation, shift=(-21.3, 11.8), center=_centre(reference)
    )
    image = _noisy(_frame(moon, truth), rng)
    match = orb_match(image, reference, model=model, rng=rng)
    assert _max_error(match.transform, truth, image.shape) < 0.2
    if model == "translation":
        assert match.transform.rotation_deg == 0.0 and match.transform.scale == 1.0


def test_sign_convention_and_reproducibility(moon):
    reference = moon[_BORDER:-_BORDER, _BORDER:-_BORDER]
    # Content moved by +(9, -4) px: reference pixel (x, y) is at (x + 9, y - 4) in the frame.
    moved = moon[_BORDER + 4 : -_BORDER + 4, _BORDER - 9 : -_BORDER - 9]
    np.testing.assert_array_equal(moved[:-4, 9:], reference[4:, :-9])
    first = orb_match(moved, reference, rng=np.random.default_rng(5))
    dx, dy = first.transform.shift
    assert dx == pytest.approx(-9.0, abs=0.05) and dy == pytest.approx(4.0, abs=0.05)
    again = orb_match(moved, reference, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(again.transform.matrix, first.transform.matrix)
    assert again.n_inliers == first.n_inliers


def test_noise_and_blank_frames_are_rejected(moon, rng):
    reference = moon[_BORDER:-_BORDER, _BORDER:-_BORDER]
    noise = rng.normal(0.5, 0.1, reference.shape).astype(np.float32)
    with pytest.raises(RegistrationError, match=rf"ORB matches .*\(need {MIN_ORB_INLIERS}\)"):
        orb_match(noise, reference, rng=rng)
    with pytest.raises(RegistrationError, match="blank"):
        orb_match(np.full_like(reference, 0.3), reference, rng=rng)


def _landscape(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Sky gradient, a rugged horizon silhouette and textured ground, RGB float32."""
    h, w = shape
    y = np.arange(h, dtype=np.float32)[:, None] / h
    sky = np.broadcast_to(0.15 + 0.5 * (1.0 - y), (h, w))
    ridge = np.cumsum(rng.normal(0.0, 2.5, w)) + gaussian_filter(rng.normal(0.0, 40.0, w), 8)
    horizon = 0.55 * h + ridge - ridge.mean()
    ground = (y * h > horizon[None, :]).astype(np.float32)
    texture = gaussian_filter(rng.normal(0.0, 1.0, shape), 1.5) * 0.15
    texture += gaussian_filter(rng.normal(0.0, 1.0, shape), 6.0) * 0.3
    mono = sky * (1.0 - ground) + ground * (0.08 + texture)
    mono = gaussian_filter(mono, 0.7).astype(np.float32)
    return np.stack([mono * 0.9, mono, mono * 1.1], axis=2)


def test_landscape_small_rotation_and_shift_in_colour(rng):
    border = 40
    master = _landscape(rng, (480 + 2 * border, 640 + 2 * border))
    reference = _noisy(master[border:-border, border:-border], rng, 0.01)
    truth = Transform.similarity(rotation_deg=1.5, shift=(12.4, -7.3), center=_centre(reference))
    image = _noisy(_frame(master, truth, border), rng, 0.01)
    assert image.shape == (480, 640, 3)
    match = orb_match(image, reference, rng=rng)
    assert _max_error(match.transform, truth, image.shape) < 0.3


def test_ecc_refine_convention_from_a_rough_start(moon, rng):
    reference = _noisy(moon[_BORDER:-_BORDER, _BORDER:-_BORDER], rng)
    truth = Transform.similarity(rotation_deg=3.0, shift=(6.6, -2.2), center=_centre(reference))
    image = _noisy(_frame(moon, truth), rng)
    image[:20] = np.nan  # missing data is masked out
    rough = Transform.similarity(rotation_deg=2.5, shift=(6.0, -1.5), center=_centre(reference))
    for model in ("similarity", "affine", "homography"):
        refined = ecc_refine(image, reference, rough, model=model)
        assert _max_error(refined, truth, image.shape) < 0.1, model
    # A scale change takes the affine route and comes back as a similarity.
    scaled = Transform.similarity(
        scale=0.98, rotation_deg=3.0, shift=(6.6, -2.2), center=_centre(reference)
    )
    image = _noisy(_frame(moon, scaled), rng)
    start = Transform.similarity(
        scale=0.985, rotation_deg=2.7, shift=(6.0, -2.0), center=_centre(reference)
    )
    refined = ecc_refine(image, reference, start)
    assert _max_error(refined, scaled, image.shape) < 0.1
    residual = refined.matrix[:2, :2] / refined.scale
    np.testing.assert_allclose(residual @ residual.T, np.eye(2), atol=1e-9)


def test_ecc_refine_failure_is_a_registration_error(moon, rng):
    reference = moon[_BORDER:-_BORDER, _BORDER:-_BORDER]
    flat_noise = rng.normal(0.0, 1e-3, reference.shape).astype(np.float32)
    far = Transform.translation(5000.0, 5000.0)  # no overlap at all
    with pytest.raises(RegistrationError, match="ECC"):
        ecc_refine(flat_noise, reference, far)


def test_real_lunar_frames(shared_data, rng):
    from skystack.io.ser import read_ser

    path = shared_data / "pss_moon_avi" / "another_short_video_crop384_mono8_DERIVED.ser"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    first = read_ser(path, index=0).data
    later = read_ser(path, index=20).data
    border = 40
    truth = Transform.similarity(rotation_deg=6.0, shift=(-8.2, 5.7), center=(151.5, 151.5))
    image = _frame(first, truth, border)
    found = orb_match(image, first[border:-border, border:-border], rng=rng).transform
    assert _max_error(found, truth, image.shape) < 0.2
    # Two real frames 20 apart (seeing moves parts of the field by about a pixel).
    match = orb_match(later, first, rng=rng)
    assert match.n_inliers >= 50
    centre = np.array([_centre(first)])
    moved = match.transform.apply(centre)[0] - centre[0]
    np.testing.assert_allclose(moved, [-2.2, 3.0], atol=1.0)
    assert abs(match.transform.rotation_deg) < 0.3
