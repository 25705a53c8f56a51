"""Demosaicing: colours in the right channels, exactness where it is owed, NaN, errors, stars."""

from __future__ import annotations

import numpy as np
import pytest

from skystack._typing import CFA_PATTERNS
from skystack.color.bayer import channel_index, channel_map, crop_cfa, mosaic
from skystack.color.debayer import (
    DEBAYER_METHODS,
    _quantize_u16,
    debayer,
    fill_missing_cfa,
    vng_reference,
)
from skystack.errors import ConfigError, GeometryError
from skystack.sim import planck_rgb, render_stars

FULL_RES = ("bilinear", "vng", "ea")


def expected_shape(shape, method):
    if method == "superpixel":
        return (shape[0] // 2, shape[1] // 2, 3)
    return (*shape, 3)


# -- neutral and single-colour scenes ----------------------------------------------------------


@pytest.mark.parametrize("method", DEBAYER_METHODS)
@pytest.mark.parametrize("pattern", CFA_PATTERNS)
@pytest.mark.parametrize("shape", [(8, 10), (7, 9), (2, 2), (3, 5)])
def test_uniform_grey_stays_grey(method, pattern, shape):
    for value in (0.3172, -0.05, 1.7):
        cfa = np.full(shape, value, dtype=np.float32)
        out = debayer(cfa, pattern=pattern, method=method)
        assert out.dtype == np.float32 and out.shape == expected_shape(shape, method)
        np.testing.assert_allclose(out, value, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", DEBAYER_METHODS)
@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_grey_after_odd_crop(method, pattern):
    cfa = np.full((20, 23), 0.25, dtype=np.float32)
    for x0, y0 in [(1, 0), (0, 1), (3, 3), (1, 2)]:
        cropped, new_pattern = crop_cfa(cfa, pattern, x0=x0, y0=y0, width=13, height=11)
        out = debayer(cropped, pattern=new_pattern, method=method)
        np.testing.assert_allclose(out, 0.25, rtol=1e-6)


@pytest.mark.parametrize("method", DEBAYER_METHODS)
@pytest.mark.parametrize("pattern", CFA_PATTERNS)
@pytest.mark.parametrize("color", [0, 1, 2])
def test_single_colour_scene_lands_in_its_channel(method, pattern, color):
    rgb = np.zeros((11, 14, 3), dtype=np.float32)
    rgb[..., color] = 0.6
    out = debayer(mosaic(rgb, pattern), pattern=pattern, method=method)
    expected = np.zeros(expected_shape((11, 14), method), dtype=np.float32)
    expected[..., color] = 0.6
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("method", DEBAYER_METHODS)
def test_cropped_colour_scene_with_shifted_pattern(method):
    rgb = np.zeros((16, 16, 3), dtype=np.float32)
    rgb[..., 2] = 0.4  # blue
    cropped, pattern = crop_cfa(mosaic(rgb, "RGGB"), "RGGB", x0=1, y0=2, width=11, height=9)
    assert pattern == "GRBG"
    out = debayer(cropped, pattern=pattern, method=method)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), [0.0, 0.0, 0.4], atol=1e-6)


# -- exactness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", FULL_RES)
@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_measured_sites_are_kept_exactly(method, pattern, rng):
    cfa = rng.uniform(-0.2, 3.0, (13, 16)).astype(np.float32)  # beyond [0, 1]: no clipping
    out = debayer(cfa, pattern=pattern, method=method)
    cmap = channel_map(cfa.shape, pattern)
    own = np.take_along_axis(out, cmap[..., None].astype(np.intp), axis=2)[..., 0]
    np.testing.assert_array_equal(own, cfa)


def ramp_rgb(height, width):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack(
        [
            0.2 + 0.01 * xx + 0.003 * yy,
            0.1 + 0.004 * xx + 0.007 * yy,
            -0.05 + 0.002 * xx + 0.011 * yy,
        ],
        axis=-1,
    )


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_bilinear_reproduces_linear_ramps(pattern):
    truth = ramp_rgb(21, 30)
    out = debayer(mosaic(truth.astype(np.float32), pattern), pattern=pattern, method="bilinear")
    # Away from the mirrored border a linear ramp is interpolated without error.
    np.testing.assert_allclose(out[1:-1, 1:-1], truth[1:-1, 1:-1], atol=2e-7)


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
@pytest.mark.parametrize("shape", [(24, 30), (17, 23), (4, 5)])
def test_vng_kernel_equals_reference(pattern, shape, rng):
    cfa = rng.uniform(-0.1, 1.2, shape).astype(np.float32)
    np.testing.assert_allclose(
        debayer(cfa, pattern=pattern, method="vng"),
        vng_reference(cfa, pattern=pattern),
        atol=1e-6,
    )


def test_vng_kernel_equals_reference_on_stars(rng):
    # Smooth sky and sharp stars: the threshold picks few directions near the stars.
    scene = np.full((40, 44, 3), 0.05, dtype=np.float32)
    render_stars(
        scene,
        rng.uniform(3, 41, 12),
        rng.uniform(3, 37, 12),
        rng.uniform(5, 50, (12, 3)),
        fwhm=2.5,
        out=scene,
    )
    for pattern in ("RGGB", "GBRG"):
        cfa = mosaic(scene, pattern)
        np.testing.assert_allclose(
            debayer(cfa, pattern=pattern, method="vng"),
            vng_reference(cfa, pattern=pattern),
            atol=1e-6,
        )


def test_vng_is_exact_on_linear_ramps():
    truth = ramp_rgb(20, 26)
    for pattern in CFA_PATTERNS:
        out = debayer(mosaic(truth.astype(np.float32), pattern), pattern=pattern, method="vng")
        np.testing.assert_allclose(out[2:-2, 2:-2], truth[2:-2, 2:-2], atol=1e-6)


def test_ea_quantisation_error_is_negligible(rng):
    cfa = rng.uniform(-0.03, 1.4, (50, 60)).astype(np.float32)
    q, offset, step = _quantize_u16(cfa)
    assert q.dtype == np.uint16 and q.min() == 0 and q.max() == 65535
    span = float(cfa.max() - cfa.min())
    assert offset == pytest.approx(float(cfa.min())) and step == pytest.approx(span / 65535)
    error = np.abs(q * step + offset - cfa).max()
    assert error <= 0.5 * step * 1.001
    assert error / span < 1e-5


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_ea_on_linear_ramps_within_a_quantisation_step(pattern):
    truth = ramp_rgb(24, 31)
    cfa = mosaic(truth.astype(np.float32), pattern)
    out = debayer(cfa, pattern=pattern, method="ea")
    span = float(cfa.max() - cfa.min())
    # Half a step from quantising, up to half a step from OpenCV's integer arithmetic.
    assert np.abs(out - truth)[2:-2, 2:-2].max() / span < 2e-5


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_ea_codes_give_correct_colours_with_opencv(pattern):
    # The code mapping is checked directly on OpenCV, in its 16-bit domain.
    import cv2

    from skystack.color.debayer import _ea_code

    for color in range(3):
        rgb = np.zeros((12, 12, 3), dtype=np.float32)
        rgb[..., color] = 40000.0
        out = cv2.cvtColor(mosaic(rgb, pattern).astype(np.uint16), _ea_code(pattern))
        assert out[3:-3, 3:-3].mean(axis=(0, 1)).argmax() == color


# -- superpixel --------------------------------------------------------------------------------


def test_superpixel_by_hand():
    cfa = np.array(
        [
            [1.0, 2.0, 5.0, 6.0],
            [3.0, 4.0, 7.0, 8.0],
            [9.0, 10.0, 13.0, 14.0],
            [11.0, 12.0, 15.0, 16.0],
        ],
        dtype=np.float32,
    )
    out = debayer(cfa, pattern="RGGB", method="superpixel")
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0], [1.0, 2.5, 4.0])
    np.testing.assert_array_equal(out[0, 1], [5.0, 6.5, 8.0])
    np.testing.assert_array_equal(out[1, 0], [9.0, 10.5, 12.0])
    np.testing.assert_array_equal(out[1, 1], [13.0, 14.5, 16.0])
    gbrg = debayer(cfa, pattern="GBRG", method="superpixel")
    np.testing.assert_array_equal(gbrg[0, 0], [3.0, 2.5, 2.0])
    odd = debayer(
        np.pad(cfa, ((0, 1), (0, 1)), constant_values=99.0), pattern="RGGB", method="superpixel"
    )
    np.testing.assert_array_equal(odd, out)  # the last odd row and column are dropped


# -- missing data ------------------------------------------------------------------------------


def test_bilinear_leaves_nan_neighbours_out(rng):
    cfa = rng.random((10, 10), dtype=np.float32)
    cfa[4, 4] = np.nan  # a red site in RGGB
    out = debayer(cfa, pattern="RGGB", method="bilinear")
    assert np.isfinite(out).all()
    # Green site [4, 5] has red neighbours [4, 4] (missing) and [4, 6]: only the latter counts.
    assert out[4, 5, 0] == cfa[4, 6]
    # The missing red is the mean of the red sites around it.
    reds = [cfa[2, 2], cfa[2, 4], cfa[2, 6], cfa[4, 2], cfa[4, 6], cfa[6, 2], cfa[6, 4], cfa[6, 6]]
    assert out[4, 4, 0] == pytest.approx(np.mean(reds), rel=1e-6)
    # Green and blue there come from their (finite) sites as usual.
    assert out[4, 4, 1] == pytest.approx(np.mean([cfa[3, 4], cfa[5, 4], cfa[4, 3], cfa[4, 5]]))
    clean = debayer(np.where(np.isnan(cfa), 0.5, cfa), pattern="RGGB", method="bilinear")
    far = np.ones((10, 10), dtype=bool)
    far[3:6, 3:6] = False
    np.testing.assert_array_equal(out[far], clean[far])


@pytest.mark.parametrize("method", DEBAYER_METHODS)
@pytest.mark.parametrize("pattern", ["RGGB", "GRBG"])
def test_nan_is_filled_from_neighbours(method, pattern, rng):
    cfa = np.full((30, 33), 0.4, dtype=np.float32)
    cfa[rng.random(cfa.shape) < 0.05] = np.nan
    cfa[10:18, 12:20] = np.nan  # a hole larger than the 5x5 window
    cfa[0, :] = np.inf
    out = debayer(cfa, pattern=pattern, method=method)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, 0.4, rtol=1e-6)


@pytest.mark.parametrize("method", DEBAYER_METHODS)
def test_a_colour_without_data_stays_nan(method, rng):
    cfa = rng.random((12, 14), dtype=np.float32)
    cfa[0::2, 0::2] = np.nan  # every red site of RGGB
    out = debayer(cfa, pattern="RGGB", method=method)
    assert np.isnan(out[..., 0]).all()
    assert np.isfinite(out[..., 1:]).all()


def test_fill_missing_cfa_uses_same_colour_sites(rng):
    cfa = rng.random((12, 12), dtype=np.float32)
    cfa[5, 5] = np.nan  # blue in RGGB
    filled = fill_missing_cfa(cfa, pattern="RGGB")
    blues = cfa[3:8:2, 3:8:2]  # the blue sites within 2 px of [5, 5]
    assert filled[5, 5] == pytest.approx(np.nanmean(blues), rel=1e-6)
    mask = np.ones_like(cfa, dtype=bool)
    mask[5, 5] = False
    np.testing.assert_array_equal(filled[mask], cfa[mask])


# -- star colours ------------------------------------------------------------------------------

TEMPERATURES = np.array([3500.0, 4200.0, 5000.0, 5800.0, 6500.0, 7500.0, 9000.0, 12000.0])


def star_grid(rng, *, fwhm=3.0, temperatures=TEMPERATURES, grey=False):
    """Isolated Moffat stars (FWHM ``fwhm``) on a 32 px grid at random sub-pixel positions."""
    n = len(temperatures)
    cols = 4
    rows = -(-n // cols)
    xs = 16 + 32 * (np.arange(n) % cols) + rng.uniform(-1, 1, n)
    ys = 16 + 32 * (np.arange(n) // cols) + rng.uniform(-1, 1, n)
    colours = np.ones((n, 3)) if grey else planck_rgb(temperatures)
    flux = rng.uniform(20.0, 40.0, n)
    scene = render_stars((32 * rows, 32 * cols, 3), xs, ys, flux[:, None] * colours, fwhm=fwhm)
    return scene, xs, ys, colours


def aperture_sums(image, xs, ys, radius=11.0):
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    sums = []
    for x, y in zip(xs, ys, strict=True):
        inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        sums.append(image[inside].sum(axis=0, dtype=np.float64))
    return np.array(sums)


def colour_errors(method, pattern, rng, **kwargs):
    scene, xs, ys, colours = star_grid(rng, **kwargs)
    out = debayer(mosaic(scene, pattern), pattern=pattern, method=method)
    sums = aperture_sums(out, xs, ys)
    measured = np.column_stack([sums[:, 0] / sums[:, 1], sums[:, 2] / sums[:, 1]])
    truth = np.column_stack([colours[:, 0] / colours[:, 1], colours[:, 2] / colours[:, 1]])
    return measured / truth - 1.0


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_star_colours_bilinear(pattern, rng):
    errors = colour_errors("bilinear", pattern, rng)
    assert np.abs(errors).max() < 0.03


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
@pytest.mark.parametrize(
    "method",
    [
        pytest.param(
            "vng",
            marks=pytest.mark.xfail(
                strict=True,
                reason="VNG interpolates colour differences along its chosen directions: on "
                "FWHM-3 stars R/G and B/G are off by up to ~8% and ~25% for strong colours",
            ),
        ),
        pytest.param(
            "ea",
            marks=pytest.mark.xfail(
                strict=True,
                reason="OpenCV's edge-aware green loses ~7% of a FWHM-3 star's flux "
                "(interpolation along isophotes), so R/G and B/G come out ~7% high",
            ),
        ),
    ],
)
def test_star_colours_within_3_percent(method, pattern, rng):
    errors = colour_errors(method, pattern, rng)
    assert np.abs(errors).max() < 0.03


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_vng_keeps_grey_stars_grey(pattern, rng):
    # What VNG does keep: the colour of neutral (white-balanced) stars, to about 1.5%.
    errors = colour_errors("vng", pattern, rng, grey=True)
    assert np.abs(errors).max() < 0.02


@pytest.mark.parametrize("method", ["vng", "ea"])
def test_star_colour_errors_shrink_with_the_star_size(method, rng):
    sharp = np.abs(colour_errors(method, "RGGB", rng, fwhm=3.0)).max()
    wide = np.abs(colour_errors(method, "RGGB", rng, fwhm=6.0)).max()
    assert wide < 0.5 * sharp


# -- errors ------------------------------------------------------------------------------------


def test_errors_name_the_value():
    with pytest.raises(
        GeometryError, match=r"2-D Bayer mosaic \(H, W\), got an array of shape \(4, 4, 3\)"
    ):
        debayer(np.zeros((4, 4, 3), dtype=np.float32), pattern="RGGB")
    with pytest.raises(GeometryError, match=r"at least 2x2 pixels, got shape \(1, 8\)"):
        debayer(np.zeros((1, 8), dtype=np.float32), pattern="RGGB")
    with pytest.raises(ConfigError, match="unknown CFA pattern 'RGBG'; expected one of RGGB"):
        debayer(np.zeros((4, 4), dtype=np.float32), pattern="RGBG")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown debayer method 'ahd'; expected one of bilinear"):
        debayer(np.zeros((4, 4), dtype=np.float32), pattern="RGGB", method="ahd")  # type: ignore[arg-type]


def test_input_is_not_modified_and_integers_are_accepted(rng):
    cfa = rng.random((8, 8), dtype=np.float32)
    cfa[2, 3] = np.nan
    before = cfa.copy()
    for method in DEBAYER_METHODS:
        debayer(cfa, pattern="BGGR", method=method)
    np.testing.assert_array_equal(cfa, before)
    counts = np.arange(64, dtype=np.uint16).reshape(8, 8)
    out = debayer(counts, pattern="RGGB")
    assert out.dtype == np.float32 and out[0, 0, 0] == 0.0 and out[7, 7, 2] == 63.0
    assert channel_index("RGGB")[1, 1] == 2
