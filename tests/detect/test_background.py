"""Noise and statistics estimates against known simulated noise."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.detect.background import estimate_noise, image_statistics


def test_noise_ignores_gradient_and_stars(rng):
    y, x = np.mgrid[0:300, 0:400].astype(np.float32)
    image = 0.1 + 0.0005 * x + 0.0003 * y + rng.normal(0, 0.01, size=x.shape).astype(np.float32)
    image[::37, ::41] += 0.8  # sparse bright stars
    assert estimate_noise(image) == pytest.approx(0.01, rel=0.05)


def test_noise_on_bayer_mosaic_compares_same_colour_pixels(rng):
    image = rng.normal(0, 0.002, size=(200, 200)).astype(np.float32)
    image[0::2, 0::2] += 0.3  # red sites much brighter than green: a colour mosaic
    assert estimate_noise(image, step=2) == pytest.approx(0.002, rel=0.05)
    assert estimate_noise(image, step=1) > 0.05  # neighbour differences see the colours


def test_noise_of_quantised_data_is_not_zero(rng):
    smooth = np.full((200, 200), 100.0) + rng.normal(0, 0.6, size=(200, 200))
    quantised = (np.rint(smooth) / 255.0).astype(np.float32)
    noise = estimate_noise(quantised)
    assert 0.3 / 255 < noise < 0.9 / 255


def test_statistics_skip_nan(rng):
    image = rng.normal(0.5, 0.01, size=(100, 100)).astype(np.float32)
    image[:10] = np.nan
    stats = image_statistics(image)
    assert stats.finite_fraction == pytest.approx(0.9)
    assert stats.median == pytest.approx(0.5, abs=0.002)
    assert stats.noise == pytest.approx(0.01, rel=0.1)
    empty = image_statistics(np.full((4, 4), np.nan, np.float32))
    assert empty.finite_fraction == 0.0 and np.isnan(empty.median)
