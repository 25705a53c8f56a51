"""Sigma-clipped mean against astropy's sigma_clip and on outliers."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.stats import sigma_clip

from skystack.stack.rejection import nan_median, sigma_clipped_mean


def test_matches_astropy_sigma_clip(rng):
    cube = rng.normal(0.1, 0.01, size=(15, 20, 30)).astype(np.float32)
    cube[3, 5, 5] = 5.0
    cube[7, 10, :] = -3.0
    ours = sigma_clipped_mean(cube, kappa_low=3, kappa_high=3, max_iterations=5)
    clipped = sigma_clip(cube, sigma=3, maxiters=5, axis=0, cenfunc="median", stdfunc="std")
    expected = clipped.mean(axis=0).filled(np.nan)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)


def test_rejects_a_hot_frame_value_and_keeps_nan_as_missing(rng):
    cube = rng.normal(1.0, 0.01, size=(10, 8, 8)).astype(np.float32)
    cube[0, 2, 2] = 100.0
    cube[:, 4, 4] = np.nan
    cube[1:, 6, 6] = np.nan
    out = sigma_clipped_mean(cube)
    assert out[2, 2] == pytest.approx(1.0, abs=0.02)
    assert np.isnan(out[4, 4])
    assert out[6, 6] == cube[0, 6, 6]
    np.testing.assert_array_equal(nan_median(cube[:, 4:5, 4:5]), [[np.nan]])


def test_kernel_matches_numpy_reference(rng):
    from skystack._kernels import sigma_clip_mean_columns, sigma_clip_mean_reference

    data = rng.normal(0, 1, size=(9, 5000)).astype(np.float32)
    data[rng.random(data.shape) < 0.05] = 8.0
    data[rng.random(data.shape) < 0.05] = np.nan
    data[:, :10] = np.nan
    kwargs = {"kappa_low": 2.5, "kappa_high": 2.0, "max_iterations": 6}
    np.testing.assert_allclose(
        sigma_clip_mean_columns(data, **kwargs),
        sigma_clip_mean_reference(data, **kwargs),
        rtol=1e-5,
        atol=1e-6,
    )
