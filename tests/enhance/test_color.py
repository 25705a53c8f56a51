"""Tests of skystack.enhance.color: white balance from star colours, hue-preserving saturation."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from skystack.detect import find_stars
from skystack.enhance import color as color_module
from skystack.enhance.color import (
    neutralize_background,
    saturation,
    star_white_balance,
    white_balance,
)
from skystack.enhance.stretch import auto_stretch
from skystack.errors import ColorCalibrationError, ConfigError, GeometryError
from skystack.sim import SessionConfig, make_session, planck_rgb, render_stack

STAR_TEMPERATURE = 6500.0


def hue_degrees(rgb: np.ndarray) -> np.ndarray:
    """Hue as the angle in the opponent plane, atan2(sqrt(3) (G - B), 2R - G - B)."""
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    return np.degrees(np.arctan2(math.sqrt(3.0) * (g - b), 2.0 * r - g - b))


def chroma(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    return np.hypot(math.sqrt(3.0) * (g - b), 2.0 * r - g - b)


@pytest.fixture(scope="module")
def session():
    """Stars all of one temperature: their median colour, the truth, is known exactly."""
    config = SessionConfig(
        width=600,
        height=400,
        bayer="RGGB",
        n_lights=4,
        star_temperature_k=STAR_TEMPERATURE,
        star_temperature_dex=0.0,
    )
    return make_session(config, seed=2)


@pytest.fixture(scope="module")
def stack(session) -> np.ndarray:
    return render_stack(session, 16, rng=np.random.default_rng(5))


@pytest.fixture(scope="module")
def true_multipliers(session) -> np.ndarray:
    """The multipliers that make the stars white: G over each channel's star signal."""
    star = planck_rgb(STAR_TEMPERATURE) * np.asarray(session.config.qe)
    return star[1] / star


@pytest.fixture(scope="module")
def stretched(session) -> np.ndarray:
    """A stretched colour image with the default mix of star colours."""
    config = SessionConfig(width=600, height=400, bayer="RGGB", n_lights=4)
    raw = render_stack(make_session(config, seed=11), 16, rng=np.random.default_rng(5))
    return auto_stretch(neutralize_background(raw))


# --------------------------------------------------------------------------------------------
# Star white balance


def test_star_white_balance_makes_stars_white(stack, true_multipliers):
    estimated = np.asarray(star_white_balance(stack))
    assert estimated[1] == 1.0
    np.testing.assert_allclose(estimated, true_multipliers, rtol=0.03)


@pytest.mark.parametrize("cast", [(1.3, 1.0, 0.7), (0.75, 1.0, 1.2)])
def test_star_white_balance_undoes_a_colour_cast(stack, true_multipliers, cast):
    tinted = white_balance(stack, cast)
    estimated = np.asarray(star_white_balance(tinted))
    np.testing.assert_allclose(estimated * np.asarray(cast), true_multipliers, rtol=0.03)
    # Applying the estimate to the tinted image gives the white-balanced image.
    corrected = white_balance(tinted, estimated)
    np.testing.assert_allclose(
        corrected, white_balance(stack, true_multipliers), rtol=0.03, atol=1e-6
    )


@pytest.mark.parametrize("flags", ["detected", "cleared"])
def test_star_white_balance_ignores_saturated_stars(stack, true_multipliers, flags):
    """Red stars clipped in R only would pull the median colour; they are left out.

    With ``flags="cleared"`` the star table does not mark them: the photometry itself must
    see the flat tops in the red channel.
    """
    painted = stack.copy()
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:9, :9] - 4.0
    blob = np.exp(-(xx**2 + yy**2) / (2 * 1.6**2))[..., None] * np.array([4.0, 0.6, 0.4])
    for _ in range(150):
        row, col = rng.integers(20, 380), rng.integers(20, 580)
        painted[row - 4 : row + 5, col - 4 : col + 5] += blob.astype(np.float32)
    np.minimum(painted, 1.0, out=painted)
    stars = find_stars(painted, max_stars=500)
    if flags == "cleared":
        stars = dataclasses.replace(stars, saturated=np.zeros(len(stars), dtype=bool))
    estimated = np.asarray(star_white_balance(painted, stars))
    np.testing.assert_allclose(estimated, true_multipliers, rtol=0.03)


def test_star_white_balance_with_given_stars(stack):
    stars = find_stars(stack, max_stars=500)
    np.testing.assert_allclose(
        star_white_balance(stack, stars), star_white_balance(stack), rtol=1e-9
    )


def test_star_white_balance_detects_large_images_in_tiles(stack, true_multipliers, monkeypatch):
    monkeypatch.setattr(color_module, "_TILED_DETECTION_PIXELS", 100_000)
    estimated = np.asarray(star_white_balance(stack))
    np.testing.assert_allclose(estimated, true_multipliers, rtol=0.03)


def test_star_white_balance_needs_stars():
    noise = np.random.default_rng(0).normal(0.01, 0.001, (200, 200, 3)).astype(np.float32)
    with pytest.raises(ColorCalibrationError, match="found 0 usable stars") as caught:
        star_white_balance(noise)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_stars": 0}, "max_stars 0 is invalid"),
        ({"aperture": -2.0}, "aperture -2.0 is invalid"),
        ({"saturation": 0.0}, "saturation 0.0 is invalid"),
        ({"min_snr": float("nan")}, "min_snr nan is invalid"),
        ({"min_stars": 0}, "min_stars 0 is invalid"),
    ],
)
def test_star_white_balance_bad_options(stack, options, message):
    with pytest.raises(ConfigError, match=message):
        star_white_balance(stack, **options)


def test_star_white_balance_needs_rgb():
    with pytest.raises(GeometryError, match=r"needs an RGB image \(H, W, 3\)"):
        star_white_balance(np.zeros((50, 50), dtype=np.float32))


# --------------------------------------------------------------------------------------------
# Saturation


@pytest.mark.parametrize("amount", [0.8, 5.0])
@pytest.mark.parametrize("background_factor", [0.0, 1.0])
def test_saturation_keeps_hue_and_range(stretched, amount, background_factor):
    out = saturation(stretched, amount, background_factor=background_factor)
    assert out.dtype == np.float32 and out.shape == stretched.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out.mean(axis=2), stretched.mean(axis=2), atol=1e-6)  # grey kept
    before, after = chroma(stretched), chroma(out)
    coloured = before > 0.02
    shift = (hue_degrees(out) - hue_degrees(stretched) + 180.0) % 360.0 - 180.0
    assert np.abs(shift[coloured]).max() < 1.0
    assert np.all(after >= before - 1e-5)
    bright = coloured & (stretched.mean(axis=2) > 0.5)
    assert np.median(after[bright] / before[bright]) > 1.0 + 0.9 * min(amount, 0.8)


def test_saturation_limits_the_boost_to_the_unit_range():
    pixel = np.array([[[0.9, 0.5, 0.3]]], dtype=np.float32)
    out = saturation(pixel, 10.0, background_factor=0.0)
    assert out[0, 0, 0] == pytest.approx(1.0, abs=1e-6)  # as far as the range allows
    assert out[0, 0].mean() == pytest.approx(pixel[0, 0].mean(), abs=1e-6)


def test_saturation_spares_the_background(stretched):
    protected = chroma(saturation(stretched, 0.8, background_factor=1.0))
    uniform = chroma(saturation(stretched, 0.8, background_factor=0.0))
    before = chroma(stretched)
    grey = stretched.mean(axis=2)
    background = (grey < np.median(grey)) & (before > 1e-4)
    np.testing.assert_allclose(protected[background], before[background], rtol=1e-4, atol=1e-6)
    assert np.median(uniform[background] / before[background]) == pytest.approx(1.8, rel=1e-3)


def test_desaturation_to_grey(stretched):
    grey = saturation(stretched, -1.0, background_factor=0.0)
    np.testing.assert_allclose(
        grey, np.repeat(stretched.mean(axis=2)[..., None], 3, axis=2), atol=1e-6
    )


def test_saturation_keeps_nan():
    image = np.full((4, 4, 3), 0.4, dtype=np.float32)
    image[..., 0] = 0.6
    image[1, 2] = np.nan
    out = saturation(image, 0.5, background_factor=0.0)
    assert np.all(np.isnan(out[1, 2]))
    assert np.isfinite(out[0]).all()
    grey = (0.6 + 0.4 + 0.4) / 3
    assert out[0, 0, 0] == pytest.approx(grey + 1.5 * (0.6 - grey), abs=1e-6)


@pytest.mark.parametrize(
    ("amount", "options", "message"),
    [
        (-1.5, {}, "saturation amount -1.5 is invalid"),
        (float("inf"), {}, "saturation amount inf is invalid"),
        (0.5, {"background_factor": -1.0}, "background_factor -1.0 is invalid"),
    ],
)
def test_saturation_bad_options(amount, options, message):
    with pytest.raises(ConfigError, match=message) as caught:
        saturation(np.zeros((4, 4, 3), dtype=np.float32), amount, **options)
    assert "\n" not in str(caught.value)


def test_saturation_needs_rgb():
    with pytest.raises(GeometryError, match="saturation needs an RGB image"):
        saturation(np.zeros((4, 4), dtype=np.float32), 0.5)


def test_neutralize_clipped_greys_saturated_cores_only(rng):
    from skystack.enhance.color import neutralize_clipped

    original = np.full((64, 64, 3), 0.05, dtype=np.float32)
    original[30:34, 30:34] = 1.0  # a clipped white core
    original[10, 10] = (0.4, 0.2, 0.1)  # a bright, unclipped orange star
    balanced = original * np.array([0.8, 1.0, 1.4], dtype=np.float32)
    out = neutralize_clipped(balanced, original)
    core = out[30:34, 30:34]
    assert np.ptp(core, axis=2).max() < 1e-6  # grey again
    np.testing.assert_allclose(core.mean(axis=2), balanced[30:34, 30:34].mean(axis=2), rtol=1e-6)
    np.testing.assert_array_equal(out[10, 10], balanced[10, 10])  # 40% of clip: untouched
    np.testing.assert_array_equal(out[:20, :20][1:], balanced[:20, :20][1:])
    with pytest.raises(ConfigError):
        neutralize_clipped(balanced, original, start=0.9, end=0.5)


def _opponent_hue(rgb):
    r, g, b = np.moveaxis(np.asarray(rgb, dtype=np.float64), -1, 0)
    return np.degrees(np.arctan2(np.sqrt(3.0) * (g - b), 2.0 * r - g - b))


def test_desaturate_highlights_keeps_hue_and_whitens_only_bright_pixels(rng):
    from skystack.enhance.color import desaturate_highlights

    pixels = rng.uniform(0.0, 1.0, (200, 200, 3)).astype(np.float32)
    out = desaturate_highlights(pixels)
    mean_in = pixels.mean(axis=2)
    dim = mean_in <= 0.5
    np.testing.assert_array_equal(out[dim], pixels[dim])
    bright = mean_in > 0.5
    chroma_in = np.ptp(pixels[bright], axis=1)
    chroma_out = np.ptp(out[bright], axis=1)
    assert np.all(chroma_out <= chroma_in + 1e-6)
    assert np.all(out[bright].mean(axis=1) >= mean_in[bright] - 1e-6)  # never darker
    coloured = bright & (np.ptp(out, axis=2) > 1e-3)
    delta = _opponent_hue(out[coloured]) - _opponent_hue(pixels[coloured])
    assert np.abs((delta + 180.0) % 360.0 - 180.0).max() < 0.1
    white = mean_in >= 0.95
    assert np.ptp(out[white], axis=1).max() < 1e-6
    with pytest.raises(ConfigError):
        desaturate_highlights(pixels, start=0.9, end=0.2)


def test_smooth_star_colour_gives_a_noisy_star_its_true_colour(rng):
    from skystack.enhance.color import smooth_star_colour

    yy, xx = np.mgrid[:64, :64]
    profile = np.exp(-((xx - 32.0) ** 2 + (yy - 32.0) ** 2) / (2 * 2.0**2)).astype(np.float32)
    colour = np.array([1.0, 0.7, 0.4], dtype=np.float32)
    clean = profile[..., None] * colour
    noisy = clean + 0.02 * rng.standard_normal(clean.shape, dtype=np.float32)
    mask = (profile > 0.05).astype(np.float32)
    out = smooth_star_colour(noisy, mask)
    core = profile > 0.3
    ratio_in = noisy[core] / noisy[core].mean(axis=1, keepdims=True)
    ratio_out = out[core] / out[core].mean(axis=1, keepdims=True)
    truth = colour / colour.mean()
    # Per-pixel colour error shrinks several-fold; brightness (channel mean) is kept.
    assert np.abs(ratio_out - truth).mean() < 0.4 * np.abs(ratio_in - truth).mean()
    np.testing.assert_allclose(out[core].mean(axis=1), noisy[core].mean(axis=1), rtol=1e-4)
    outside = mask == 0
    np.testing.assert_array_equal(out[outside], noisy[outside])
