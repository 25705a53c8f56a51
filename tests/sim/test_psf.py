"""Moffat stamps: the numba kernel against numpy, flux, FWHM and centroid."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.sim.psf import (
    moffat_alpha,
    moffat_fwhm,
    moffat_kernel,
    moffat_pixel_fwhm,
    render_stars,
    render_stars_reference,
    stamp_radii,
)
from skystack.sim.sensor import cfa_lut


def test_alpha_fwhm_round_trip():
    for beta in (2.5, 3.0, 4.765):
        assert moffat_fwhm(moffat_alpha(3.2, beta), beta) == pytest.approx(3.2)


@pytest.mark.parametrize("beta", [3.0, 2.5])
def test_kernel_matches_numpy_reference(rng, beta):
    shape = (40, 50)
    x = rng.uniform(-3, 53, 30)
    y = rng.uniform(-3, 43, 30)
    w = rng.uniform(10, 1e4, (30, 3))
    lut = cfa_lut("GBRG")
    fast = render_stars(shape, x, y, w, fwhm=2.7, beta=beta, lut=lut)
    slow = render_stars_reference(shape, x, y, w, fwhm=2.7, beta=beta, lut=lut)
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-3)
    fast3 = render_stars((40, 50, 3), x, y, w, fwhm=2.7, beta=beta)
    slow3 = render_stars_reference((40, 50, 3), x, y, w, fwhm=2.7, beta=beta)
    np.testing.assert_allclose(fast3, slow3, rtol=1e-5, atol=1e-3)


def test_flux_is_conserved_and_centroid_unbiased(measure):
    flux = 1e5
    image = render_stars((81, 81), [40.3], [39.71], [flux], fwhm=3.0, radii=[40])
    # Moffat beta=3 beyond r=40: (1 + r^2/a^2)^-2 of the flux.
    alpha = moffat_alpha(3.0, 3.0)
    expected = flux * (1 - (1 + 40.0**2 / alpha**2) ** -2.0)
    assert image.sum(dtype=np.float64) == pytest.approx(expected, rel=2e-3)
    x, y = measure.centroid(image, 40.0, 40.0, fwhm=3.0)
    assert abs(x - 40.3) < 0.01 and abs(y - 39.71) < 0.01


def test_measured_fwhm_matches(measure):
    for fwhm in (2.5, 4.0):
        image = render_stars((61, 61), [30.2], [30.4], [1e5], fwhm=fwhm)
        fit = measure.fit_moffat(image, 30.2, 30.4)
        # pixels broaden a sharp star slightly; moffat_pixel_fwhm says by how much
        assert fit["fwhm"] == pytest.approx(moffat_pixel_fwhm(fwhm, 3.0), rel=0.015)
        assert fit["fwhm"] == pytest.approx(fwhm, rel=0.06)


def test_kernel_is_normalised_and_stamps_grow_with_flux():
    kernel = moffat_kernel(3.0, beta=3.0)
    assert kernel.sum(dtype=np.float64) == pytest.approx(1.0, abs=1e-6)
    assert (
        kernel.shape[0] % 2 == 1 and kernel[kernel.shape[0] // 2].argmax() == kernel.shape[1] // 2
    )
    radii = stamp_radii([1e2, 1e4, 1e6], fwhm=3.0, beta=3.0)
    assert radii[0] < radii[1] < radii[2]


def test_out_must_be_float32():
    with pytest.raises(ValueError, match="float32"):
        render_stars((4, 4), [1.0], [1.0], [1.0], fwhm=2.0, out=np.zeros((4, 4)))
