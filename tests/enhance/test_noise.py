"""The local noise map: uneven depth across a stack is measured, stars do not fool it."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.enhance.noise import noise_map, relative_noise
from skystack.errors import GeometryError
from skystack.sim import SessionConfig, make_session, render_stack


def test_noise_map_follows_a_step_in_depth(rng):
    image = np.full((512, 768), 0.1, dtype=np.float32)
    sigma = np.where(np.arange(768) < 384, 0.01, 0.02).astype(np.float32)
    image += sigma[None, :] * rng.standard_normal(image.shape, dtype=np.float32)
    measured = noise_map(image)
    assert np.median(measured[:, :300]) == pytest.approx(0.01, rel=0.05)
    assert np.median(measured[:, 468:]) == pytest.approx(0.02, rel=0.05)


def test_noise_map_is_not_raised_by_stars_and_sees_colour_noise():
    session = make_session(SessionConfig(width=512, height=384, bayer="RGGB",
                                         star_count=800), seed=2)  # fmt: skip
    clean = render_stack(session, 9)
    objects = render_stack(session, 9, background=False).max(axis=2)
    noisy = render_stack(session, 9, rng=np.random.default_rng(3))
    sky = objects < 1e-6
    truth = float(np.std((noisy - clean).mean(axis=2)[sky]))
    measured = noise_map(noisy)
    # 800 stars in 0.2 MP sit in most blocks; the sky's noise is still measured within 10%,
    # and no block is raised by a star beyond the shot noise it really adds.
    assert np.median(measured[sky]) == pytest.approx(truth, rel=0.1)
    assert np.percentile(measured, 99) < 1.3 * truth


def test_relative_noise_is_none_for_even_noise_and_a_factor_otherwise(rng):
    even = 0.1 + 0.01 * rng.standard_normal((400, 400), dtype=np.float32)
    assert relative_noise(even) is None
    uneven = even.copy()
    uneven[:, 200:] = 0.1 + 0.03 * rng.standard_normal((400, 200), dtype=np.float32)
    factor = relative_noise(uneven)
    assert factor is not None and factor.shape == (400, 400)
    assert np.median(factor[:, 250:]) / np.median(factor[:, :150]) == pytest.approx(3.0, rel=0.1)


def test_noise_map_ignores_nan_and_rejects_bad_shapes(rng):
    image = 0.1 + 0.01 * rng.standard_normal((256, 256), dtype=np.float32)
    image[:40] = np.nan
    measured = noise_map(image)
    assert np.isfinite(measured).all()
    assert np.median(measured[80:]) == pytest.approx(0.01, rel=0.1)
    with pytest.raises(GeometryError):
        noise_map(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(GeometryError):
        noise_map(image, box=4)
