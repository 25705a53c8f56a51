"""Background extraction against simulated stacks whose sky, stars, objects and noise are known.

How the accuracy is measured
----------------------------
The simulator gives, separately, the noisy stack, its noise-free version, the noise-free stack
without sky (stars and objects) and, from the same seed with ``extended="none"``, the stars
alone. After extraction the corrected image is ``image - model + pedestal``. Removing from it
the true stars and objects, the pedestal and the known noise realisation leaves exactly what the
extraction got wrong, ``true sky - model`` up to a constant (noise is removed so that it does not
eat into the 0.5 % budget: it is not large-scale variation):

* residual large-scale variation = max - min of the 32 x 32 block medians of that remainder,
  as a percentage of the sky level (the true sky's median), per channel;
* object flux = the sum, over the object's footprint (true object brighter than 1 % of the sky),
  of the corrected image minus stars, noise and the sky zero level of the result (the median of
  the remainder outside the footprint, as aperture photometry measures it against the sky
  around), compared with the true object's sum there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import pytest

from skystack.enhance.background import (
    BACKGROUND_METHODS,
    BackgroundModel,
    extract_background,
    fit_background,
    remove_background,
)
from skystack.errors import ConfigError, GeometryError, SkystackError
from skystack.sim import SessionConfig, make_session, render_stack

N_FRAMES = 16
BLOCK = 32


@dataclass(frozen=True)
class Simulated:
    """A simulated stack and its parts (all float32, full scale 1)."""

    image: np.ndarray  # noisy stack
    background: np.ndarray  # true sky
    noise: np.ndarray  # image - noise-free stack
    stars: np.ndarray  # stars alone, no sky
    object: np.ndarray  # extended object alone, no sky

    @property
    def sky(self) -> np.ndarray:
        """Median level of the true sky, per channel."""
        return np.median(self.background, axis=(0, 1))


def simulate(*, bayer: str | None, seed: int, **options: object) -> Simulated:
    config = SessionConfig(
        width=800,
        height=600,
        bayer=bayer,
        sky_gradient=options.pop("sky_gradient", (0.3, -0.2)),
        sky_gradient_quadratic=options.pop("sky_gradient_quadratic", 0.1),
        **options,
    )
    session = make_session(config, seed=seed)
    image = render_stack(session, N_FRAMES, rng=np.random.default_rng(seed + 1000))
    clean = render_stack(session, N_FRAMES)
    signal = render_stack(session, N_FRAMES, background=False)
    stars_only = make_session(replace(config, extended="none"), seed=seed)
    stars = render_stack(stars_only, N_FRAMES, background=False)
    return Simulated(
        image=image,
        background=clean - signal,
        noise=image - clean,
        stars=stars,
        object=signal - stars,
    )


def block_medians(image: np.ndarray, size: int = BLOCK) -> np.ndarray:
    """Medians of ``size`` x ``size`` blocks, shape ``(rows, cols)`` or ``(rows, cols, C)``."""
    rows, cols = image.shape[0] // size, image.shape[1] // size
    cropped = image[: rows * size, : cols * size]
    blocks = cropped.reshape(rows, size, cols, size, *image.shape[2:]).swapaxes(1, 2)
    return np.median(blocks.reshape(rows, cols, size * size, *image.shape[2:]), axis=2)


def pedestal(background: BackgroundModel) -> np.ndarray:
    return np.median(background.model, axis=(0, 1))


def remainder(sim: Simulated, corrected: np.ndarray, background: BackgroundModel) -> np.ndarray:
    """Corrected image minus true stars, objects, noise and pedestal: true sky - model + c."""
    return corrected - sim.stars - sim.object - sim.noise - pedestal(background)


def residual_percent(sim: Simulated, corrected: np.ndarray, background: BackgroundModel):
    """Max - min of the block medians of the remainder, % of the sky level, per channel."""
    blocks = block_medians(remainder(sim, corrected, background))
    return 100.0 * (blocks.max(axis=(0, 1)) - blocks.min(axis=(0, 1))) / sim.sky


def flux_error_percent(sim: Simulated, corrected: np.ndarray, background: BackgroundModel):
    """Relative error of the object's flux over its footprint, %, per channel."""
    rest = remainder(sim, corrected, background)
    footprint = sim.object > 0.01 * sim.sky
    errors = []
    for c in range(1 if sim.image.ndim == 2 else sim.image.shape[2]):
        inside = footprint if sim.image.ndim == 2 else footprint[..., c]
        part = rest if sim.image.ndim == 2 else rest[..., c]
        obj = sim.object if sim.image.ndim == 2 else sim.object[..., c]
        zero = np.median(part[~inside])  # the result's sky level away from the object
        measured = np.sum(obj[inside]) + np.sum(part[inside] - zero)
        errors.append(100.0 * (measured / np.sum(obj[inside]) - 1.0))
    return np.array(errors)


@pytest.fixture(scope="module", params=[None, "RGGB"], ids=["mono", "colour"])
def galaxy(request) -> Simulated:
    """A galaxy under a strong gradient: linear 30 % / 20 % plus 10 % quadratic."""
    return simulate(bayer=request.param, seed=3, extended="galaxy")


@pytest.fixture(scope="module", params=[None, "RGGB"], ids=["mono", "colour"])
def big_galaxy(request) -> Simulated:
    """A bright galaxy whose light (above 1 % of the sky) covers about 30 % of the frame."""
    return simulate(
        bayer=request.param, seed=5, extended="galaxy", galaxy_size=0.12, galaxy_brightness=5.0
    )


@pytest.mark.parametrize("method", BACKGROUND_METHODS)
def test_gradient_is_removed_and_the_galaxy_kept(galaxy, method):
    sky = galaxy.sky
    before = block_medians(galaxy.background)
    assert np.all(100 * (before.max(axis=(0, 1)) - before.min(axis=(0, 1))) / sky > 50)

    image = galaxy.image.copy()
    corrected, background = extract_background(image, method=method)

    np.testing.assert_array_equal(image, galaxy.image)  # the input is left alone
    assert corrected.dtype == np.float32 and corrected.shape == galaxy.image.shape
    assert background.model.dtype == np.float32 and background.model.shape == galaxy.image.shape
    assert np.all(residual_percent(galaxy, corrected, background) < 0.5)
    assert np.all(np.abs(flux_error_percent(galaxy, corrected, background)) < 5.0)
    # The sky keeps its level: the pedestal is the model's median, close to the true sky's.
    np.testing.assert_allclose(pedestal(background), sky, rtol=0.02)


def test_samples_on_the_object_are_rejected(big_galaxy):
    background = fit_background(big_galaxy.image)
    n = background.samples.shape[0]
    assert background.samples.shape == (n, 2) and background.accepted.shape == (n,)
    assert background.values.shape == (n, 1 if big_galaxy.image.ndim == 2 else 3)
    assert background.accepted.dtype == bool and background.method == "poly"
    obj = big_galaxy.object
    brightness = (obj if obj.ndim == 2 else obj.mean(axis=2)) / big_galaxy.sky.mean()
    x, y = np.rint(background.samples).astype(int).T
    on_object = brightness[y, x] > 0.05
    assert on_object.sum() >= 30
    assert not background.accepted[on_object].any()
    clear_sky = brightness[y, x] < 0.001
    assert clear_sky.sum() >= 30 and background.accepted[clear_sky].mean() > 0.6


@pytest.mark.parametrize("method", BACKGROUND_METHODS)
def test_big_bright_object_keeps_its_flux(big_galaxy, method):
    footprint = big_galaxy.object > 0.01 * big_galaxy.sky
    assert 0.25 < footprint.mean() < 0.4  # the object fills about 30 % of the frame

    corrected, background = extract_background(big_galaxy.image, method=method)

    assert np.all(np.abs(flux_error_percent(big_galaxy, corrected, background)) < 5.0)


def test_without_rejection_the_big_object_is_eaten(big_galaxy):
    # The control for the test above: the same fit keeping every sample (only the box-scatter
    # test is left) bends up under the object's outskirts.
    corrected, background = extract_background(big_galaxy.image, rejection=1e9)
    assert np.all(residual_percent(big_galaxy, corrected, background) > 3.0)
    assert np.all(flux_error_percent(big_galaxy, corrected, background) < -5.0)


@pytest.fixture(scope="module")
def flat_sky() -> Simulated:
    """Stars on a sky without any gradient."""
    return simulate(
        bayer=None, seed=7, extended="none", sky_gradient=(0.0, 0.0), sky_gradient_quadratic=0.0
    )


@pytest.mark.parametrize("method", BACKGROUND_METHODS)
def test_flat_sky_is_left_unchanged(flat_sky, method):
    corrected, _ = extract_background(flat_sky.image, method=method)
    change = corrected - flat_sky.image
    assert 100 * np.ptp(block_medians(change)) / flat_sky.sky < 0.3
    assert np.abs(change).max() < 0.005 * flat_sky.sky  # no pixel moves by more


@dataclass(frozen=True)
class Vignetted:
    image: np.ndarray  # truth * vignetting + noise
    truth: np.ndarray  # noise-free and unvignetted
    noise: np.ndarray
    vignetting: np.ndarray


@pytest.fixture(scope="module")
def vignetted() -> Vignetted:
    """A colour stack without gradient, darkened by 35 % in the corners."""
    sim = simulate(
        bayer="RGGB", seed=9, extended="galaxy", sky_gradient=(0.0, 0.0), sky_gradient_quadratic=0.0
    )
    height, width = sim.image.shape[:2]
    v, u = np.mgrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j]
    vignetting = (1.0 - 0.35 * (u * u + v * v) / 2.0).astype(np.float32)[..., None]
    truth = sim.image - sim.noise
    return Vignetted(truth * vignetting + sim.noise, truth, sim.noise, vignetting)


def vignetting_spread(scene: Vignetted, corrected: np.ndarray, background: BackgroundModel):
    """Spread of corrected / truth (noise taken out), %: over the sky's 32 x 32 blocks, and
    over the pixels of stars and the galaxy (where the signal exceeds the sky)."""
    noise = scene.noise * pedestal(background) / background.model
    ratio = (corrected - noise) / scene.truth
    blocks = block_medians(ratio)
    sky_spread = 100 * (blocks.max(axis=(0, 1)) - blocks.min(axis=(0, 1))) / np.median(blocks)
    bright = scene.truth > 2 * np.median(scene.truth, axis=(0, 1))
    low, high = np.percentile(ratio[bright], [1, 99])
    return sky_spread, 100 * (high - low) / np.median(ratio[bright])


@pytest.mark.parametrize("method", BACKGROUND_METHODS)
def test_divide_removes_vignetting(vignetted, method):
    assert 100 * np.ptp(vignetted.vignetting) > 30  # the corners lost a third of their light

    corrected, background = extract_background(vignetted.image, method=method, mode="divide")

    sky_spread, signal_spread = vignetting_spread(vignetted, corrected, background)
    assert np.all(sky_spread < 0.5)
    assert signal_spread < 1.0  # stars and galaxy are brightened as much as the sky


def test_subtract_cannot_remove_vignetting(vignetted):
    # The control for the test above: subtraction flattens the sky but leaves the stars and
    # the galaxy darkened towards the corners.
    corrected, background = extract_background(vignetted.image, mode="subtract")
    _, signal_spread = vignetting_spread(vignetted, corrected, background)
    assert signal_spread > 10.0


@pytest.mark.parametrize("method", ["poly", "rbf"])
def test_masked_pixels_are_never_sampled(rng, method):
    image = (0.01 + 0.002 * rng.standard_normal((300, 400))).astype(np.float32)
    image[100:200, 150:300] += 0.0005  # faint and flat: within the samples' noise-based tolerance
    mask = np.zeros(image.shape, dtype=bool)
    mask[95:205, 145:305] = True

    unmasked = fit_background(image, method=method)
    masked = fit_background(image, method=method, mask=mask)

    assert unmasked.model[150, 225] - unmasked.model[20, 20] > 0.0003  # followed the object
    assert abs(masked.model[150, 225] - masked.model[20, 20]) < 0.00015
    x, y = np.rint(masked.samples).astype(int).T
    assert not masked.accepted[mask[y, x]].any()


def test_missing_pixels_are_ignored_and_stay_missing(galaxy):
    image = galaxy.image.copy()
    image[:, :120] = np.nan  # an edge the stack did not cover
    corrected, background = extract_background(image, method="tiles")
    assert np.isfinite(background.model).all()
    assert np.isnan(corrected[:, :120]).all() and np.isfinite(corrected[:, 120:]).all()
    cropped = replace(
        galaxy,
        image=galaxy.image[:, 120:],
        background=galaxy.background[:, 120:],
        noise=galaxy.noise[:, 120:],
        stars=galaxy.stars[:, 120:],
        object=galaxy.object[:, 120:],
    )
    part = replace(background, model=background.model[:, 120:])
    assert np.all(residual_percent(cropped, corrected[:, 120:], part) < 1.0)


def test_remove_background_accepts_a_model_array(rng):
    image = (0.1 + 0.01 * rng.standard_normal((64, 64))).astype(np.float32)
    model = np.full_like(image, 0.05)
    model[:, 32:] = 0.15  # median 0.1: subtracting keeps the sky level
    np.testing.assert_allclose(remove_background(image, model).mean(), 0.1, atol=0.002)
    divided = remove_background(image, model, mode="divide")
    np.testing.assert_allclose(divided[:, :32].mean(), 0.2, atol=0.002)


def test_too_few_sky_samples_falls_back_to_all_usable_ones(caplog, rng):
    image = (0.1 + 0.01 * rng.standard_normal((64, 64))).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="skystack.enhance.background"):
        background = fit_background(image, grid=3, degree=1, rejection=1e-9)
    assert "looked like sky" in caplog.text
    assert background.accepted.all() and np.isfinite(background.model).all()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"method": "spline"}, ConfigError, r"background method must be one of .*'spline'"),
        ({"degree": 5}, ConfigError, "polynomial degree must be an integer from 1 to 4, got 5"),
        ({"degree": 0}, ConfigError, "polynomial degree must be an integer from 1 to 4, got 0"),
        ({"degree": 2.5}, ConfigError, "polynomial degree must be an integer"),
        ({"grid": 2}, ConfigError, "background grid must be an integer from 3 to 200"),
        ({"box": 1}, ConfigError, "background box must be an integer of at least 3 pixels"),
        ({"box": 500}, GeometryError, "box of 500 pixels does not fit in the 64 x 80 image"),
        ({"rejection": 0.0}, ConfigError, "background rejection must be a positive number"),
        ({"smoothing": -1.0}, ConfigError, "background smoothing must be a number >= 0"),
        ({"mode": "multiply"}, ConfigError, "background mode must be one of"),
        ({"mask": np.zeros((10, 10), bool)}, GeometryError, r"mask shape \(10, 10\) does not"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    image = np.full((64, 80), 0.1, np.float32)
    with pytest.raises(error, match=message) as info:
        extract_background(image, **kwargs)
    assert isinstance(info.value, SkystackError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros(100, np.float32), r"needs an \(H, W\) or \(H, W, C\) image"),
        (np.zeros((8, 8), np.float32), "at least 16 x 16 pixels"),
        (np.full((64, 64), np.nan, np.float32), "found only 0 usable samples"),
    ],
)
def test_unusable_images_raise_geometry_errors(image, message):
    with pytest.raises(GeometryError, match=message):
        fit_background(image)


def test_remove_background_checks_its_model():
    image = np.full((32, 32), 0.1, np.float32)
    with pytest.raises(GeometryError, match="does not match the image shape"):
        remove_background(image, np.zeros((32, 31), np.float32))
    with pytest.raises(ConfigError, match="not positive"):
        remove_background(image, np.zeros_like(image), mode="divide")
