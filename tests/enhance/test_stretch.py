"""Tests of skystack.enhance.stretch: monotonic curves, hue kept, GHS against its equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.interpolate import PchipInterpolator

from skystack.color.balance import neutralize_background
from skystack.enhance.stretch import (
    STRETCHES,
    asinh_stretch,
    auto_stretch,
    curves,
    ghs,
    ghs_transfer,
    linear_stretch,
    stretch,
)
from skystack.errors import ConfigError, GeometryError
from skystack.sim import SessionConfig, make_session, render_stack


def hue_degrees(rgb: np.ndarray) -> np.ndarray:
    """Hue as the angle in the opponent plane, atan2(sqrt(3) (G - B), 2R - G - B)."""
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    return np.degrees(np.arctan2(math.sqrt(3.0) * (g - b), 2.0 * r - g - b))


def chroma(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., c].astype(np.float64) for c in range(3))
    return np.hypot(math.sqrt(3.0) * (g - b), 2.0 * r - g - b)


def angle_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a - b + 180.0) % 360.0 - 180.0


@pytest.fixture(scope="module")
def session():
    return make_session(SessionConfig(width=600, height=400, bayer="RGGB", n_lights=4), seed=11)


@pytest.fixture(scope="module")
def raw_stack(session) -> np.ndarray:
    """A simulated colour stack as `stack` delivers it: coloured sky, gradient, galaxy, stars."""
    return render_stack(session, 16, rng=np.random.default_rng(5))


@pytest.fixture(scope="module")
def stack(raw_stack) -> np.ndarray:
    """The stack with a grey sky, as the enhance pipeline has it before stretching."""
    return neutralize_background(raw_stack)


@pytest.fixture(scope="module")
def star_cores(session, stack) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (row, column) of the core of isolated, unsaturated, clearly coloured stars.

    The opponent-plane hue ignores a grey offset, so on the neutralised sky a core pixel's hue is
    the hue of the star's light above the background.
    """
    stars = session.stars
    cols = np.floor(stars.x + 0.5).astype(int)
    rows = np.floor(stars.y + 0.5).astype(int)
    height, width = stack.shape[:2]
    inside = (cols >= 15) & (cols < width - 15) & (rows >= 15) & (rows < height - 15)
    distance = np.hypot(stars.x[:, None] - stars.x, stars.y[:, None] - stars.y)
    np.fill_diagonal(distance, np.inf)
    candidates = np.flatnonzero(inside & (distance.min(axis=1) > 10.0))
    core = stack[rows[candidates], cols[candidates]]
    above = core - np.median(stack.reshape(-1, 3), axis=0)
    keep = (core.max(axis=1) < 0.95) & (above.mean(axis=1) > 0.003)
    keep &= chroma(above) > 0.3 * above.mean(axis=1)
    chosen = candidates[keep]
    assert chosen.size >= 20
    return rows[chosen], cols[chosen]


# --------------------------------------------------------------------------------------------
# Hue of star cores


HUE_CASES = [
    ("auto", {}),
    ("asinh", {}),
    ("asinh", {"stretch": 300.0, "black": 0.005}),
    ("ghs", {}),
    ("ghs", {"D": 6.0, "b": 4.0, "SP": 0.006, "LP": 0.003, "HP": 0.5}),
    ("ghs", {"D": 4.0, "b": -1.0, "luminance": "rec709"}),
    ("linear", {}),
    ("linear", {"black": 0.006, "white": 0.02}),  # star cores above white: pixels rescaled
    ("curves", {"points": [(0.006, 0.25), (0.05, 0.7)]}),
]


@pytest.mark.parametrize(("method", "params"), HUE_CASES)
def test_stretch_keeps_hue_of_star_cores(stack, star_cores, method, params):
    rows, cols = star_cores
    before = stack[rows, cols]
    after = stretch(stack, method, **params)[rows, cols]
    assert np.abs(angle_difference(hue_degrees(after), hue_degrees(before))).max() < 2.0
    assert np.all(after.mean(axis=1) > before.mean(axis=1))  # really stretched


def test_core_hue_is_the_star_colour(session, stack, star_cores):
    """The measurement sees the simulated stars' colours (flux x QE per channel)."""
    rows, cols = star_cores
    stars = session.stars
    index = [
        int(np.argmin(np.hypot(stars.x - c, stars.y - r))) for r, c in zip(rows, cols, strict=True)
    ]
    truth = stars.rgb[index] * np.asarray(session.config.qe)
    measured = hue_degrees(stack[rows, cols])
    assert np.median(np.abs(angle_difference(measured, hue_degrees(truth)))) < 3.0


@pytest.mark.parametrize("method", ["auto", "asinh", "ghs"])
def test_per_channel_stretch_shifts_hue(stack, star_cores, method):
    """The same curve on each channel moves star hues: the measurement above would see it."""
    rows, cols = star_cores
    before = hue_degrees(stack[rows, cols])
    after = hue_degrees(stretch(stack, method, color="channels")[rows, cols])
    assert np.abs(angle_difference(after, before)).max() > 4.0


def test_luminance_mode_rescales_bright_pixels_as_a_whole():
    pixel = np.array([[[0.9, 0.45, 0.225], [0.2, 0.1, 0.05]]], dtype=np.float32)
    out = asinh_stretch(pixel, stretch=100.0, black=0.0)
    assert out[0, 0].max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(out[..., 1] / out[..., 0], 0.5, rtol=1e-5)
    np.testing.assert_allclose(out[..., 2] / out[..., 0], 0.25, rtol=1e-5)
    independent = asinh_stretch(pixel, stretch=100.0, black=0.0, color="channels")
    np.testing.assert_allclose(independent, np.arcsinh(100.0 * pixel) / np.arcsinh(100.0))
    assert independent[0, 0, 1] / independent[0, 0, 0] > 0.8  # per channel: colour washed out


# --------------------------------------------------------------------------------------------
# Monotonic


RAMP = np.linspace(-0.05, 1.2, 25001, dtype=np.float32)
FLOAT32_JITTER = 1e-6

MONOTONIC_CASES = [
    ("auto", {}),
    ("asinh", {}),
    ("asinh", {"stretch": 1000.0, "black": 0.01}),
    ("ghs", {"D": 5.0, "b": 3.0, "SP": 0.1, "LP": 0.02, "HP": 0.7}),
    ("ghs", {"D": 8.0, "b": -2.0, "SP": 0.3}),
    ("ghs", {"D": 2.0, "b": 0.0, "SP": 0.0}),
    ("linear", {}),
    ("linear", {"black": 0.1, "white": 0.6}),
    ("curves", {"points": [(0.1, 0.4), (0.5, 0.5), (0.8, 0.95)]}),
]


@pytest.mark.parametrize(("method", "params"), MONOTONIC_CASES)
def test_stretch_of_a_ramp_never_decreases(method, params):
    mono = stretch(RAMP[None, :], method, **params)[0]
    assert np.all(np.diff(mono) >= 0.0)
    assert mono.min() >= 0.0 and mono.max() <= 1.0
    grey = np.repeat(RAMP[None, :, None], 3, axis=2)
    for color in ("luminance", "channels"):
        out = stretch(grey, method, color=color, **params)[0]
        # The luminance mode multiplies by f(L) / L: float32 rounding, a few ulp, no more.
        assert np.all(np.diff(out, axis=0) >= -FLOAT32_JITTER)
        np.testing.assert_allclose(out, mono[:, None].repeat(3, axis=1), atol=2e-6)


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("asinh", {"stretch": 500.0, "black": 0.0}),
        ("linear", {"black": 0.05, "white": 0.5}),
        ("ghs", {"D": 6.0, "b": 2.0, "SP": 0.05}),
        ("curves", {"points": [(0.2, 0.6)]}),
    ],
)
def test_coloured_ramp_rises_in_every_channel(method, params):
    """In luminance mode a pixel's channels rise together, then stay once it saturates.

    (With a black point below zero the saturated pixel's colour would still drift towards the
    ramp's own colour, since the black point is a grey offset; the hue stays.)
    """
    ramp = np.clip(RAMP, 0.0, None)[None, :, None] * np.array([0.9, 0.6, 0.3], dtype=np.float32)
    out = stretch(ramp, method, **params)[0]
    assert np.all(np.diff(out, axis=0) >= -FLOAT32_JITTER)
    assert out[-1, 0] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# GHS against its equations


def payne_base(x: np.ndarray, D: float, b: float) -> np.ndarray:
    """Payne's base transformations with SP = LP = 0, HP = 1, normalised to T(1) = 1."""
    if b == -1.0:
        t = lambda v: np.log1p(D * v)  # noqa: E731
    elif b < 0.0:
        t = lambda v: 1.0 - (1.0 - D * b * v) ** ((b + 1.0) / b)  # noqa: E731
    elif b == 0.0:
        t = lambda v: 1.0 - np.exp(-D * v)  # noqa: E731
    else:
        t = lambda v: 1.0 - (1.0 + D * b * v) ** (-1.0 / b)  # noqa: E731
    return t(x) / t(1.0)


@pytest.mark.parametrize("b", [-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 6.0])
def test_ghs_base_equations(b):
    x = np.linspace(0.0, 1.0, 41)
    stretch_factor = 4.0
    expected = payne_base(x, math.expm1(stretch_factor), b)
    got = ghs_transfer(x, D=stretch_factor, b=b, SP=0.0)
    np.testing.assert_allclose(got, expected, atol=2e-6)


def ghs_reference(x: float, *, D: float, b: float, SP: float, LP: float, HP: float) -> float:
    """The curve as the normalised integral of its slope, by numerical quadrature.

    The slope at distance u from SP is (1 + D b u)^-(1 + 1/b) for b > 0, exp(-D u) for b = 0 and
    (1 - D b u)^(1/b) for b < 0, with D = exp(D_shown) - 1; it is held constant below LP and
    above HP.
    """
    d = math.expm1(D)

    def slope(t: float) -> float:
        u = abs(min(max(t, LP), HP) - SP)
        if b > 0:
            return (1.0 + d * b * u) ** (-(1.0 + b) / b)
        if b == 0:
            return math.exp(-d * u)
        return (1.0 - d * b * u) ** (1.0 / b)

    def integral(upper: float) -> float:
        breaks = [p for p in (LP, SP, HP) if 0.0 < p < upper]
        return quad(slope, 0.0, upper, points=breaks or None, limit=200, epsabs=1e-13)[0]

    return integral(x) / integral(1.0)


@pytest.mark.parametrize("b", [-2.0, -1.0, 0.0, 0.7, 3.0])
def test_ghs_matches_integral_of_its_slope(b):
    params = {"D": 3.0, "b": b, "SP": 0.2, "LP": 0.05, "HP": 0.75}
    x = np.array([0.0, 0.03, 0.05, 0.1, 0.19, 0.2, 0.21, 0.4, 0.75, 0.9, 1.0])
    expected = [ghs_reference(float(v), **params) for v in x]
    np.testing.assert_allclose(ghs_transfer(x, **params), expected, atol=3e-6)


@pytest.mark.parametrize("b", [-1.5, 0.0, 2.0])
def test_ghs_shape(b):
    SP, LP, HP = 0.3, 0.1, 0.8
    step = 1e-4
    x = np.arange(0.0, 1.0 + step / 2, step)
    y = ghs_transfer(x, D=5.0, b=b, SP=SP, LP=LP, HP=HP)
    assert y[0] == 0.0 and y[-1] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(y) >= 0.0)
    slope = np.diff(y) / step
    middle = x[:-1] + step / 2
    assert abs(middle[np.argmax(slope)] - SP) <= 2 * step  # SP: the steepest point
    # Straight lines below LP and above HP, joining the curve with the same slope.
    below = slope[middle < LP - step]
    above = slope[middle > HP + step]
    resolution = 1e-9 * slope.max()  # float64 rounding of y, divided by the step
    np.testing.assert_allclose(below, below[0], rtol=1e-6, atol=resolution)
    np.testing.assert_allclose(above, above[0], rtol=1e-6, atol=resolution)
    for point in (LP, HP):
        i = int(round(point / step))
        assert slope[i - 2] == pytest.approx(slope[i + 2], rel=0.01, abs=resolution)
    # Continuous: no jump at LP, SP or HP.
    for point in (LP, SP, HP):
        i = int(round(point / step))
        assert abs(y[i + 1] - y[i - 1]) <= 2.2 * step * slope.max()
    # float32 evaluation (images) agrees with float64.
    np.testing.assert_allclose(
        ghs_transfer(x.astype(np.float32), D=5.0, b=b, SP=SP, LP=LP, HP=HP), y, atol=5e-6
    )


def test_ghs_stretch_factor_zero_is_identity():
    x = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(ghs_transfer(x, D=0.0, b=2.0, SP=0.3), x, atol=1e-7)


def test_ghs_colour_mode_is_the_curve_on_luminance():
    rgb = np.array([[[0.06, 0.04, 0.02], [0.02, 0.04, 0.03]]], dtype=np.float32)
    params = {"D": 4.0, "b": 1.5, "SP": 0.05, "LP": 0.0, "HP": 1.0}
    out = ghs(rgb, **params)
    assert out.max() < 1.0  # no pixel rescaled
    lum = rgb.mean(axis=2)
    np.testing.assert_allclose(out.mean(axis=2), ghs_transfer(lum, **params), rtol=1e-5)
    ratios = rgb / lum[..., None] / 3
    np.testing.assert_allclose(out / out.sum(axis=2, keepdims=True), ratios, rtol=1e-5)
    independent = ghs(rgb, color="channels", **params)
    np.testing.assert_allclose(independent, ghs_transfer(rgb, **params), rtol=1e-6)


def test_ghs_automatic_stretch_factor_puts_background_at_target(stack):
    out = ghs(stack, target_background=0.2)
    assert np.median(out.mean(axis=2)) == pytest.approx(0.2, abs=0.02)


# --------------------------------------------------------------------------------------------
# Automatic stretch


@pytest.mark.parametrize("target", [0.25, 0.15])
@pytest.mark.parametrize("color", ["luminance", "channels"])
def test_auto_stretch_puts_background_at_target_and_keeps_it_grey(stack, target, color):
    out = auto_stretch(stack, target_background=target, color=color)
    medians = np.median(out.reshape(-1, 3), axis=0)
    np.testing.assert_allclose(medians, target, atol=0.02)
    assert np.ptp(medians) < 0.005  # linked: a neutral sky stays neutral


def test_auto_stretch_of_background_subtracted_data(stack):
    """Data that go below zero (sky subtracted) still get their sky at the target."""
    subtracted = stack - np.median(stack)
    out = auto_stretch(subtracted)
    assert np.median(out.mean(axis=2)) == pytest.approx(0.25, abs=0.02)


def test_unlinked_auto_stretch_neutralises_a_coloured_sky(raw_stack):
    sky = np.median(raw_stack.reshape(-1, 3), axis=0)
    assert np.ptp(sky) / sky.mean() > 0.2  # the simulated sky is coloured
    linked = np.median(auto_stretch(raw_stack).reshape(-1, 3), axis=0)
    assert np.ptp(linked) > 0.03  # linked: the sky colour stays
    unlinked = np.median(auto_stretch(raw_stack, linked=False).reshape(-1, 3), axis=0)
    np.testing.assert_allclose(unlinked, 0.25, atol=0.02)


def test_auto_stretch_mono():
    rng = np.random.default_rng(3)
    mono = (0.01 + 0.001 * rng.standard_normal((200, 300))).astype(np.float32)
    out = auto_stretch(mono)
    assert out.shape == mono.shape and out.dtype == np.float32
    assert np.median(out) == pytest.approx(0.25, abs=0.02)


# --------------------------------------------------------------------------------------------
# asinh, linear, curves


def test_asinh_formula():
    x = np.linspace(0.0, 1.0, 101, dtype=np.float32)[None, :]
    out = asinh_stretch(x, stretch=50.0, black=0.1)
    prime = np.clip((x - 0.1) / 0.9, 0.0, 1.0)
    np.testing.assert_allclose(out, np.arcsinh(50.0 * prime) / np.arcsinh(50.0), atol=1e-6)


def test_asinh_automatic_stretch_puts_background_at_target(stack):
    out = asinh_stretch(stack, target_background=0.2)
    assert np.median(out.mean(axis=2)) == pytest.approx(0.2, abs=0.02)


def test_linear_stretch_points():
    x = np.linspace(0.0, 1.0, 101, dtype=np.float32)[None, :]
    out = linear_stretch(x, black=0.2, white=0.7)
    np.testing.assert_allclose(out, np.clip((x - 0.2) / 0.5, 0.0, 1.0), atol=1e-6)


def test_linear_stretch_automatic_points(stack):
    out = linear_stretch(stack.mean(axis=2), percentiles=(1.0, 99.0))
    assert np.mean(out == 0.0) == pytest.approx(0.01, abs=0.002)
    assert np.mean(out == 1.0) == pytest.approx(0.01, abs=0.002)


def test_curves_follow_pchip():
    points = [(0.0, 0.05), (0.2, 0.5), (0.6, 0.8), (1.0, 1.0)]
    x = np.random.default_rng(0).random((50, 40)).astype(np.float32)
    expected = PchipInterpolator(*np.array(points).T)(x)
    np.testing.assert_allclose(curves(x, points), expected, atol=1e-5)


def test_curves_add_end_points():
    x = np.linspace(0.0, 1.0, 201, dtype=np.float32)[None, :]
    expected = PchipInterpolator([0.0, 0.25, 1.0], [0.0, 0.5, 1.0])(x)
    np.testing.assert_allclose(curves(x, [(0.25, 0.5)]), expected, atol=1e-5)


def test_curves_lifting_black_gives_grey():
    black = np.zeros((1, 2, 3), dtype=np.float32)
    np.testing.assert_allclose(curves(black, [(0.0, 0.1), (1.0, 1.0)]), 0.1, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Dispatcher, NaN, errors


def test_every_stretch_keeps_shape_and_dtype(stack):
    for method in STRETCHES:
        params = {"points": [(0.1, 0.5)]} if method == "curves" else {}
        out = stretch(stack[:50, :60], method, **params)
        assert out.shape == (50, 60, 3) and out.dtype == np.float32
    none = stretch(stack, "none")
    np.testing.assert_array_equal(none, stack)
    assert none is not stack


@pytest.mark.parametrize("method", ["auto", "asinh", "ghs", "linear", "curves"])
@pytest.mark.parametrize("color", ["luminance", "channels"])
def test_nan_stays_nan(stack, method, color):
    data = stack[:40, :40].copy()
    data[5, 7] = np.nan
    params = {"points": [(0.1, 0.5)]} if method == "curves" else {}
    out = stretch(data, method, color=color, **params)
    assert np.all(np.isnan(out[5, 7]))
    assert np.isfinite(np.delete(out.reshape(-1, 3), 5 * 40 + 7, axis=0)).all()


BAD_OPTIONS = [
    ("bogus", {}, "unknown stretch 'bogus'"),
    ("ghs", {"gamma": 2.0}, "ghs stretch has no option 'gamma'"),
    ("curves", {}, "curves stretch needs points"),
    ("none", {"D": 1.0}, "takes no options"),
    ("ghs", {"D": -1.0}, r"ghs stretch factor D=-1\.0 is invalid"),
    ("ghs", {"D": 3.0, "b": float("nan")}, "ghs b nan is invalid"),
    ("ghs", {"SP": 0.5, "HP": 0.4}, "expected 0 <= LP <= SP <= HP <= 1"),
    ("ghs", {"SP": 0.1, "LP": 0.2}, "expected 0 <= LP <= SP <= HP <= 1"),
    ("auto", {"target_background": 1.5}, "target_background 1.5 is invalid"),
    ("auto", {"shadows_clip": 1.0}, "shadows_clip 1.0 is invalid"),
    ("auto", {"color": "rgb"}, "unknown colour mode 'rgb'"),
    ("asinh", {"luminance": "human"}, "unknown luminance weights 'human'"),
    ("asinh", {"stretch": -5.0}, "asinh stretch factor -5.0 is invalid"),
    ("asinh", {"black": 1.0}, "black point 1.0 is invalid"),
    ("linear", {"black": 0.5, "white": 0.5}, "white point 0.5 must be above the black point"),
    ("linear", {"percentiles": (50.0, 10.0)}, "percentiles .* are invalid"),
    ("curves", {"points": [(0.2, 0.6), (0.5, 0.4)]}, "not monotone: y falls from 0.6"),
    ("curves", {"points": [(0.3, 0.2), (0.3, 0.4)]}, "two points at x = 0.3"),
    ("curves", {"points": [(0.3, 1.4)]}, r"must lie in \[0, 1\]"),
    ("curves", {"points": [0.1, 0.2, 0.3]}, r"sequence of \(x, y\) pairs"),
]


@pytest.mark.parametrize(("method", "params", "message"), BAD_OPTIONS)
def test_bad_options_raise_one_line_config_errors(method, params, message):
    image = np.full((8, 8, 3), 0.1, dtype=np.float32)
    with pytest.raises(ConfigError, match=message) as caught:
        stretch(image, method, **params)
    assert "\n" not in str(caught.value)


def test_bad_shape_raises_geometry_error():
    with pytest.raises(GeometryError, match=r"shape \(H, W\) or \(H, W, 3\), got \(4, 4, 4\)"):
        auto_stretch(np.zeros((4, 4, 4), dtype=np.float32))
