"""Per-pixel rejection and combination: numba kernels against their numpy references,
against astropy's sigma_clip and Rosner's GESD example, on satellites, noise and colour."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.stats import sigma_clip

from skystack._kernels import combine_columns, combine_columns_reference
from skystack.errors import ConfigError, GeometryError
from skystack.stack.rejection import (
    COMBINE_METHODS,
    REJECT_DEFAULTS,
    REJECT_METHODS,
    combine,
    nan_median,
    reject_mask,
    sigma_clipped_mean,
)


def _outlier_cube(rng: np.random.Generator, n: int = 16, shape=(24, 30)) -> np.ndarray:
    """Noise with bright and dark outliers, missing values, ties and nearly empty pixels."""
    cube = rng.normal(1.0, 0.05, size=(n, *shape))
    cube[rng.random(cube.shape) < 0.04] += 2.0
    cube[rng.random(cube.shape) < 0.02] -= 1.5
    cube[rng.random(cube.shape) < 0.05] = np.nan
    cube[:, 0, :4] = np.nan  # all missing
    cube[: n - 1, 1, :4] = np.nan  # one value
    cube[: n - 4, 2, :6] = np.nan  # four values: the keep-3 guard
    cube[: n - 5, 3, :6] = np.nan  # five values
    cube[:, 4, :] = np.round(cube[:, 4, :], 1)  # ties, zero MAD
    cube[:, 5, :] = 1.0  # constant
    cube[: n // 2, 5, :5] = np.inf  # inf is missing too
    return cube.astype(np.float32)


def _assert_same(ours, ref) -> None:
    np.testing.assert_array_equal(ours.mask, ref.mask)
    np.testing.assert_array_equal(ours.count, ref.count)
    np.testing.assert_array_equal(ours.low, ref.low)
    np.testing.assert_array_equal(ours.high, ref.high)
    np.testing.assert_array_equal(ours.rejected_per_frame, ref.rejected_per_frame)
    np.testing.assert_allclose(ours.image, ref.image, rtol=1e-5, atol=1e-6)


_CASES = sorted(
    {(reject, COMBINE_METHODS[i % 5]) for i, reject in enumerate(REJECT_METHODS)}
    | {("winsorized", method) for method in COMBINE_METHODS}
)


@pytest.mark.parametrize(("reject", "method"), _CASES)
def test_kernel_matches_numpy_reference(rng, reject, method):
    cube = _outlier_cube(rng)
    low, high = REJECT_DEFAULTS[reject]
    if reject in ("sigma", "mad", "winsorized"):
        low, high = 2.0, 2.5  # rejects plenty, so the guard and several passes run
    weights = rng.uniform(0.2, 2.0, size=cube.shape[0])
    weights[3] = 0.0
    kwargs = {"method": method, "reject": reject, "low": low, "high": high}
    kwargs |= {"weights": weights, "max_iterations": 6, "with_mask": True}
    ours = combine_columns(cube, **kwargs)
    _assert_same(ours, combine_columns_reference(cube, **kwargs))
    # rejection keeps at least 3 values (2 for minmax) wherever there were that many
    finite = np.isfinite(cube).sum(axis=0)
    floor = 2 if reject == "minmax" else 3
    assert np.all(ours.count >= np.minimum(finite, floor))
    np.testing.assert_array_equal(ours.count + ours.low + ours.high, finite)
    public = combine(cube, **{k: v for k, v in kwargs.items() if k != "with_mask"})
    np.testing.assert_array_equal(public.image, ours.image)
    np.testing.assert_array_equal(
        reject_mask(cube, reject=reject, low=low, high=high, max_iterations=6), ours.mask
    )


@pytest.mark.parametrize(("low", "high", "iterations"), [(3.0, 3.0, 5), (2.0, 2.5, 10)])
def test_sigma_matches_astropy_sigma_clip(rng, low, high, iterations):
    cube = rng.normal(0.1, 0.01, size=(15, 40, 50)).astype(np.float32)
    cube[rng.random(cube.shape) < 0.03] += 0.2
    cube[rng.random(cube.shape) < 0.01] -= 0.1
    cube[7, 10, :] = -3.0
    ours = combine(cube, reject="sigma", low=low, high=high, max_iterations=iterations)
    clipped = sigma_clip(
        cube,
        sigma_lower=low,
        sigma_upper=high,
        maxiters=iterations,
        axis=0,
        cenfunc="median",
        stdfunc="std",
    )
    np.testing.assert_allclose(ours.image, clipped.mean(axis=0).filled(np.nan), rtol=1e-5)
    np.testing.assert_array_equal(ours.count, (~clipped.mask).sum(axis=0))


def test_missing_values_are_ignored_not_rejected_or_counted(rng):
    cube = rng.normal(1.0, 0.01, size=(10, 6, 6)).astype(np.float32)
    cube[0, 2, 2] = 100.0
    cube[:, 4, 4] = np.nan
    cube[1:, 5, 5] = np.nan
    cube[3:7, 1, 1] = np.nan
    for reject in ("none", "winsorized"):
        out = combine(cube, reject=reject)
        assert np.isnan(out.image[4, 4])
        assert (out.count[4, 4], out.low[4, 4], out.high[4, 4]) == (0, 0, 0)
        assert out.image[5, 5] == cube[0, 5, 5]
        assert out.count[5, 5] == 1
        present = cube[[0, 1, 2, 7, 8, 9], 1, 1]
        assert out.count[1, 1] == 6
        assert out.image[1, 1] == pytest.approx(present.mean(), rel=1e-6)
    assert combine(cube, reject="winsorized").high[2, 2] == 1
    assert combine(cube, reject="winsorized").image[2, 2] == pytest.approx(1.0, abs=0.02)


def test_weighted_mean_and_sum(rng):
    cube = rng.normal(1.0, 0.1, size=(8, 5, 7)).astype(np.float32)
    weights = rng.uniform(0.5, 3.0, size=8)
    out = combine(cube, weights=weights)
    np.testing.assert_allclose(out.image, np.average(cube, axis=0, weights=weights), rtol=1e-6)
    # sum: N times the weighted mean; with equal weights the plain sum
    plain = combine(cube, method="sum")
    np.testing.assert_allclose(plain.image, cube.sum(axis=0, dtype=np.float64), rtol=1e-6)
    weighted = combine(cube, method="sum", weights=weights)
    np.testing.assert_allclose(weighted.image, 8 * out.image, rtol=1e-6)
    # a rejected value is replaced by the mean of the kept ones: the sum does not darken
    cube[2, 1, 1] = 50.0
    clipped = combine(cube, method="sum", reject="sigma")
    kept = np.delete(cube[:, 1, 1], 2)
    assert clipped.image[1, 1] == pytest.approx(8 * kept.mean(), rel=1e-6)
    # the weight of a rejected frame plays no part
    cube[5, 3, 3] = 50.0
    heavy = weights.copy()
    heavy[5] = 1e6
    out = combine(cube, reject="winsorized", weights=heavy)
    expected = np.average(np.delete(cube[:, 3, 3], 5), weights=np.delete(heavy, 5))
    assert out.image[3, 3] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("method", COMBINE_METHODS)
def test_each_combine_method_without_rejection(rng, method):
    cube = rng.normal(1.0, 0.1, size=(9, 6, 8)).astype(np.float32)
    cube[2:5, 0, 0] = np.nan
    out = combine(cube, method=method)
    with np.errstate(all="ignore"):
        expected = {
            "mean": np.nanmean(cube, axis=0),
            "median": np.nanmedian(cube, axis=0),
            "sum": 9 * np.nanmean(cube, axis=0),
            "max": np.nanmax(cube, axis=0),
            "min": np.nanmin(cube, axis=0),
        }[method]
    assert out.image.dtype == np.float32 and out.image.shape == (6, 8)
    assert out.count.dtype == np.int32
    np.testing.assert_allclose(out.image, expected, rtol=1e-6)
    assert out.count[0, 0] == 6 and out.count[1, 1] == 9


@pytest.mark.parametrize("reject", [r for r in REJECT_METHODS if r != "none"])
def test_a_satellite_in_one_of_16_frames_is_rejected_high(rng, reject):
    cube = rng.normal(0.1, 0.01, size=(16, 20, 200)).astype(np.float32)
    cube[5, 8:11, :] += 0.5  # a bright trail across frame 5
    low, high = REJECT_DEFAULTS[reject]
    out = combine(cube, reject=reject, low=low, high=high)
    mask = reject_mask(cube, reject=reject, low=low, high=high)
    assert mask[5, 8:11].all()
    assert np.all(out.high[8:11] >= 1)
    # the trail would leave 0.5 / 16 = 0.031 in a plain mean
    assert abs(out.image[8:11].mean() - 0.1) < 0.002
    assert out.image[8:11].max() < 0.12
    assert out.rejected_per_frame[5] >= 3 * 200
    np.testing.assert_array_equal(mask.sum(axis=0), out.low + out.high)
    np.testing.assert_array_equal(mask.sum(axis=(1, 2)), out.rejected_per_frame)


def test_winsorized_rejects_almost_nothing_from_gaussian_noise(rng):
    sigma, n = 0.01, 16
    cube = rng.normal(0.2, sigma, size=(n, 400, 500)).astype(np.float32)
    out = combine(cube, reject="winsorized", low=3.0, high=3.0)
    noise = float(np.std(out.image, dtype=np.float64))
    assert noise == pytest.approx(sigma / np.sqrt(n), rel=0.05)
    assert out.count.mean() > 0.985 * n  # under 1.5 % of the values rejected


def test_colour_cubes_and_strided_strips(rng):
    cube = rng.normal(0.3, 0.02, size=(12, 10, 16, 3)).astype(np.float32)
    cube[4, 3, 5, 1] = 2.0
    out = combine(cube, reject="winsorized")
    assert out.image.shape == (10, 16, 3) and out.count.shape == (10, 16, 3)
    assert out.high[3, 5, 1] == 1
    assert reject_mask(cube, reject="winsorized")[4, 3, 5, 1]
    for channel in range(3):
        single = combine(cube[..., channel], reject="winsorized")
        np.testing.assert_array_equal(out.image[..., channel], single.image)
        np.testing.assert_array_equal(out.count[..., channel], single.count)
    strip = combine(cube[:, 2:7], reject="mad", method="median")
    copy = combine(np.ascontiguousarray(cube[:, 2:7]), reject="mad", method="median")
    np.testing.assert_array_equal(strip.image, copy.image)
    assert reject_mask(cube, reject="winsorized").shape == cube.shape


def test_gesd_finds_rosners_three_outliers():
    # Rosner (1983) / NIST e-Handbook 1.3.5.17.3: up to 10 outliers, alpha 0.05 -> 3
    values = [
        -0.25, 0.68, 0.94, 1.15, 1.20, 1.26, 1.26, 1.34, 1.38, 1.43, 1.49, 1.49, 1.55, 1.56,
        1.58, 1.65, 1.69, 1.70, 1.76, 1.77, 1.81, 1.91, 1.94, 1.96, 1.99, 2.06, 2.09, 2.10,
        2.14, 2.15, 2.23, 2.24, 2.26, 2.35, 2.37, 2.40, 2.47, 2.54, 2.62, 2.64, 2.90, 2.92,
        2.92, 2.93, 3.21, 3.26, 3.30, 3.59, 3.68, 4.30, 4.64, 5.34, 5.42, 6.01,
    ]  # fmt: skip
    cube = np.array(values, dtype=np.float32)[::-1].reshape(-1, 1)
    out = combine(cube, reject="gesd", low=10.5 / 54, high=0.05)
    assert (out.count[0], out.low[0], out.high[0]) == (51, 0, 3)
    mask = reject_mask(cube, reject="gesd", low=10.5 / 54, high=0.05)
    np.testing.assert_array_equal(np.flatnonzero(mask[:, 0]), [0, 1, 2])


def test_minmax_drops_counts_and_keeps_two():
    cube = np.array([[5.0], [1.0], [3.0], [2.0], [4.0]], dtype=np.float32)
    out = combine(cube, reject="minmax", low=1, high=2)
    assert (out.image[0], out.count[0], out.low[0], out.high[0]) == (2.5, 2, 1, 2)
    small = combine(cube[:3], reject="minmax", low=1, high=1)
    assert (small.count[0], small.low[0], small.high[0]) == (2, 1, 0)


def test_the_guard_keeps_the_three_least_deviant_values():
    cube = np.array([[0.0], [0.1], [0.2], [0.3], [40.0], [50.0], [-30.0]], dtype=np.float32)
    out = combine(cube, reject="mad", low=0.01, high=0.01, method="max")
    assert out.count[0] == 3
    mask = reject_mask(cube, reject="mad", low=0.01, high=0.01)
    assert set(np.flatnonzero(~mask[:, 0])) <= {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"method": "average"}, ConfigError, "unknown combine method 'average'"),
        ({"reject": "kappa"}, ConfigError, "unknown rejection 'kappa'"),
        ({"reject": "gesd"}, ConfigError, r"maximum outlier fraction .* got low=3.0"),
        ({"reject": "minmax", "low": 1.5}, ConfigError, "integers >= 0; got low=1.5"),
        ({"reject": "sigma", "low": 0}, ConfigError, "in sigmas, > 0"),
        ({"reject": "percentile", "high": -0.1}, ConfigError, "fractions of the median"),
        ({"max_iterations": 0}, ConfigError, "max_iterations must be an integer >= 1"),
        ({"weights": [1.0, 2.0]}, GeometryError, r"one weight per frame, shape \(4,\)"),
        ({"weights": [1.0, -1.0, 1.0, 1.0]}, ConfigError, "finite and >= 0"),
    ],
)
def test_invalid_options_are_refused(options, error, match):
    cube = np.ones((4, 2, 2), dtype=np.float32)
    with pytest.raises(error, match=match):
        combine(cube, **options)


def test_sigma_clipped_mean_matches_astropy_sigma_clip(rng):
    cube = rng.normal(0.1, 0.01, size=(15, 20, 30)).astype(np.float32)
    cube[3, 5, 5] = 5.0
    cube[7, 10, :] = -3.0
    ours = sigma_clipped_mean(cube, kappa_low=3, kappa_high=3, max_iterations=5)
    clipped = sigma_clip(cube, sigma=3, maxiters=5, axis=0, cenfunc="median", stdfunc="std")
    expected = clipped.mean(axis=0).filled(np.nan)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)


def test_sigma_clipped_mean_rejects_a_hot_value_and_keeps_nan_as_missing(rng):
    cube = rng.normal(1.0, 0.01, size=(10, 8, 8)).astype(np.float32)
    cube[0, 2, 2] = 100.0
    cube[:, 4, 4] = np.nan
    cube[1:, 6, 6] = np.nan
    out = sigma_clipped_mean(cube)
    assert out[2, 2] == pytest.approx(1.0, abs=0.02)
    assert np.isnan(out[4, 4])
    assert out[6, 6] == cube[0, 6, 6]
    np.testing.assert_array_equal(nan_median(cube[:, 4:5, 4:5]), [[np.nan]])


def test_sigma_clip_mean_kernel_matches_numpy_reference(rng):
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
