"""White balance and background neutralisation."""

from __future__ import annotations

import numpy as np
import pytest

from skystack._typing import CFA_PATTERNS
from skystack.color.balance import (
    background_levels,
    background_levels_cfa,
    camera_multipliers,
    neutralize_background,
    neutralize_background_cfa,
    white_balance,
    white_balance_cfa,
)
from skystack.color.bayer import channel_map, mosaic
from skystack.errors import ConfigError, GeometryError, MetadataWarning
from skystack.frame import FrameMeta
from skystack.sim import render_stars

SKY = np.array([0.12, 0.10, 0.07])


def test_white_balance_rgb(rng):
    image = rng.random((5, 6, 3), dtype=np.float32)
    out = white_balance(image, (2.0, 1.0, 1.5))
    assert out.dtype == np.float32 and out is not image
    np.testing.assert_allclose(out, image * np.float32([2.0, 1.0, 1.5]))
    with pytest.raises(
        ConfigError,
        match=r"multipliers \(1.0, 0.0, 1.0\) are invalid; expected three finite positive",
    ):
        white_balance(image, (1.0, 0.0, 1.0))
    with pytest.raises(ConfigError, match="expected three finite positive"):
        white_balance(image, (1.0, 2.0))
    with pytest.raises(GeometryError, match=r"RGB image \(H, W, 3\), got shape \(5, 6\)"):
        white_balance(image[..., 0], (1.0, 1.0, 1.0))


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_white_balance_cfa_multiplies_the_right_sites(pattern, rng):
    cfa = np.ones((7, 9), dtype=np.float32)
    out = white_balance_cfa(cfa, pattern, (2.0, 1.0, 3.0))
    np.testing.assert_array_equal(
        out, np.array([2.0, 1.0, 3.0], np.float32)[channel_map(cfa.shape, pattern)]
    )
    rgb = rng.random((7, 9, 3), dtype=np.float32)
    np.testing.assert_allclose(
        white_balance_cfa(mosaic(rgb, pattern), pattern, (1.7, 1.0, 2.2)),
        mosaic(white_balance(rgb, (1.7, 1.0, 2.2)), pattern),
    )
    with pytest.raises(GeometryError, match=r"2-D Bayer mosaic \(H, W\), got shape \(7, 9, 3\)"):
        white_balance_cfa(rgb, pattern, (1.0, 1.0, 1.0))


def test_camera_multipliers():
    assert camera_multipliers(FrameMeta()) is None
    assert camera_multipliers(FrameMeta(white_balance=(2.0, 1.0, 1.5))) == (2.0, 1.0, 1.5)
    assert camera_multipliers(FrameMeta(white_balance=(4.0, 2.0, 3.0))) == (2.0, 1.0, 1.5)
    with pytest.warns(MetadataWarning, match=r"camera white balance \(0.0, 0.0, 0.0\) is unusable"):
        assert camera_multipliers(FrameMeta(white_balance=(0.0, 0.0, 0.0))) is None


def sky_with_stars(rng, *, shape=(256, 256), noise=0.002, count=40):
    """A colour-cast sky (``SKY``) with noise and coloured stars; also the star-only image."""
    stars = render_stars(
        (*shape, 3),
        rng.uniform(5, shape[1] - 5, count),
        rng.uniform(5, shape[0] - 5, count),
        rng.uniform(0.5, 8.0, (count, 3)),
        fwhm=3.0,
    )
    sky = SKY.astype(np.float32)
    image = sky + stars + rng.normal(0.0, noise, (*shape, 3)).astype(np.float32)
    return image.astype(np.float32), stars


def test_background_levels_ignore_stars(rng):
    image, stars = sky_with_stars(rng)
    assert (stars.max(axis=2) > 0.01).mean() > 0.03  # stars above 5 sigma on 3% of the pixels
    assert np.all(np.abs(image.mean(axis=(0, 1)) - SKY) > 2e-3)  # they bias a plain mean
    # The clipped median sits within 0.1 sigma of the sky: the rest is the stars' far wings,
    # which do add light everywhere.
    np.testing.assert_allclose(background_levels(image), SKY, atol=2e-4)


def test_neutralize_background_makes_the_sky_grey(rng):
    image, stars = sky_with_stars(rng)
    out = neutralize_background(image)
    assert out.dtype == np.float32 and out.shape == image.shape
    offsets = (out - image).reshape(-1, 3)
    # One additive offset per channel: every star keeps its signal above the background.
    assert np.abs(offsets - offsets[0]).max() < 1e-6
    # The true sky of every channel is now the same, and green's is where it was.
    neutral_sky = SKY + offsets[0]
    np.testing.assert_allclose(neutral_sky, neutral_sky[1], atol=1e-4)
    np.testing.assert_allclose(neutral_sky, SKY[1], atol=1e-4)
    red = neutralize_background(image, reference="red")
    np.testing.assert_allclose(SKY + (red - image)[0, 0], SKY[0], atol=1e-4)


def test_neutralize_background_with_mask(rng):
    image, _ = sky_with_stars(rng)
    # A faint red nebula over 60% of the frame: clipping cannot tell it from the sky.
    image[:, :154, 0] += 0.003
    nebula = np.zeros(image.shape[:2], dtype=bool)
    nebula[:, :154] = True
    assert background_levels(image)[0] - SKY[0] > 1e-3
    np.testing.assert_allclose(background_levels(image, mask=nebula), SKY, atol=2e-4)
    out = neutralize_background(image, mask=nebula)
    offsets = (out - image)[0, 200]
    np.testing.assert_allclose(SKY + offsets, SKY[1], atol=1e-4)
    np.testing.assert_allclose((out - image)[0, 0], offsets, atol=1e-6)  # masked pixels too


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_neutralize_background_cfa(pattern, rng):
    image, _ = sky_with_stars(rng)
    cfa = mosaic(image, pattern)
    np.testing.assert_allclose(background_levels_cfa(cfa, pattern), SKY, atol=2e-4)
    out = neutralize_background_cfa(cfa, pattern)
    offsets = out - cfa
    cmap = channel_map(cfa.shape, pattern)
    for c in range(3):
        np.testing.assert_allclose(offsets[cmap == c], SKY[1] - SKY[c], atol=1e-4)


def test_background_errors(rng):
    image, _ = sky_with_stars(rng, shape=(32, 32))
    with pytest.raises(
        ConfigError, match="unknown background reference 'grey'; expected one of red, green, blue"
    ):
        neutralize_background(image, reference="grey")  # type: ignore[arg-type]
    with pytest.raises(
        GeometryError, match=r"mask of shape \(4, 4\) does not match the image's \(32, 32\)"
    ):
        background_levels(image, mask=np.zeros((4, 4), dtype=bool))
    with pytest.raises(
        ConfigError, match="cannot measure the background of channel R, G, B: no finite pixel"
    ):
        neutralize_background(image, mask=np.ones((32, 32), dtype=bool))
    image[..., 2] = np.nan
    with pytest.raises(ConfigError, match="channel B: no finite pixel outside the mask"):
        neutralize_background(image)
