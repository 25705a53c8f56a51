"""Drizzle accumulator: flux, geometry, resolution, colour and Bayer drizzle, masks, weights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from skystack.color.bayer import mosaic
from skystack.errors import ConfigError, GeometryError
from skystack.register.transform import Transform
from skystack.register.warp import warp_image
from skystack.stack import accumulate
from skystack.stack.accumulate import DrizzleAccumulator, drizzle_output_shape


def _stars(shape, positions, *, fwhm, flux=1.0):
    """Pixel-integrated circular Gaussians at frame positions ``(x, y)``, float32."""
    height, width = shape
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    xe, ye = np.arange(width + 1) - 0.5, np.arange(height + 1) - 0.5
    out = np.zeros(shape)
    for x, y in positions:
        fx = np.diff(0.5 * erf((xe - x) / (np.sqrt(2.0) * sigma)))
        fy = np.diff(0.5 * erf((ye - y) / (np.sqrt(2.0) * sigma)))
        out += flux * np.outer(fy, fx)
    return out.astype(np.float32)


def _centroid(image, x, y, radius):
    iy, ix = int(round(y)), int(round(x))
    cut = np.nan_to_num(image[iy - radius : iy + radius + 1, ix - radius : ix + radius + 1])
    yy, xx = np.mgrid[iy - radius : iy + radius + 1, ix - radius : ix + radius + 1]
    total = cut.sum()
    return (cut * xx).sum() / total, (cut * yy).sum() / total, cut, xx, yy


def _moment_fwhm(image, x, y, radius):
    """FWHM from the second moment of a cut-out, in the image's pixels."""
    mx, my, cut, xx, yy = _centroid(image, x, y, radius)
    var = (cut * ((xx - mx) ** 2 + (yy - my) ** 2)).sum() / cut.sum() / 2.0
    return 2.0 * np.sqrt(2.0 * np.log(2.0)) * np.sqrt(var)


def _to_output(x, scale):
    return (x + 0.5) * scale - 0.5


def _dithers(rng, n, *, amplitude=3.0):
    return [
        (rng.uniform(-amplitude, amplitude), rng.uniform(-amplitude, amplitude)) for _ in range(n)
    ]


# --- flux, units, geometry -------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["square", "turbo", "gaussian", "lanczos3", "point"])
def test_constant_frames_give_the_same_constant(rng, kernel):
    acc = DrizzleAccumulator((40, 50), scale=2.0, pixfrac=0.7, kernel=kernel)
    for dx, dy in _dithers(rng, 5):
        t = Transform.similarity(rotation_deg=rng.uniform(-2, 2), shift=(dx, dy), center=(25, 20))
        acc.add(np.full((40, 50), 0.37, np.float32), t)
    result = acc.result()
    assert result.image.shape == result.weight.shape == (80, 100) == acc.shape
    assert result.image.dtype == result.weight.dtype == np.float32
    covered = result.weight > 0
    assert covered.mean() > 0.8
    np.testing.assert_allclose(result.image[covered], 0.37, atol=1e-4)
    assert np.isnan(result.image[~covered]).all()


@pytest.mark.parametrize("kernel", ["square", "turbo", "point"])
@pytest.mark.parametrize("scale", [1.0, 2.0, 3.0])
def test_flux_is_conserved(rng, kernel, scale):
    # Each input pixel brings a total weight of 1 (times the frame weight), so the weighted
    # sum of the output is the input's flux, whatever pixfrac.
    frame = np.zeros((30, 40), np.float32)
    frame[4:26, 4:36] = rng.random((22, 32))
    acc = DrizzleAccumulator((60, 70), scale=scale, pixfrac=0.6, kernel=kernel)
    acc.add(frame, Transform.translation(12.3, 14.6), weight=2.0)
    result = acc.result()
    flux = frame.sum(dtype=np.float64)
    assert np.nansum(result.image * result.weight, dtype=np.float64) / 2.0 == pytest.approx(
        flux, rel=1e-5
    )
    assert result.weight.sum(dtype=np.float64) == pytest.approx(2.0 * frame.size, rel=1e-5)
    if kernel != "point":
        # The output is surface brightness: with full drops the plain sum is flux * scale**2.
        full = DrizzleAccumulator((60, 70), scale=scale, pixfrac=1.0, kernel=kernel)
        full.add(frame, Transform.translation(12.3, 14.6))
        image = full.result().image
        assert np.nansum(image, dtype=np.float64) / scale**2 == pytest.approx(flux, rel=1e-5)


def test_lanczos_weights_are_per_input_pixel(rng):
    frame = rng.random((20, 20)).astype(np.float32)
    acc = DrizzleAccumulator((40, 40), scale=2.0, kernel="lanczos3")
    acc.add(frame, Transform.translation(10.0, 10.0))
    assert acc.result().weight.sum() == pytest.approx(frame.size, rel=0.02)


@pytest.mark.parametrize("scale", [2.0, 3.0])
@pytest.mark.parametrize(("pixfrac", "n_frames", "tolerance"), [(1.0, 6, 0.01), (0.6, 16, 0.1)])
def test_star_lands_at_the_scaled_reference_position(rng, scale, pixfrac, n_frames, tolerance):
    # Tolerance in output pixels. With full drops the centroid is exact; smaller drops weight
    # each output pixel by how much of each frame's drop hit it, which moves the centroid of a
    # few-frame stack by a few hundredths of an input pixel (up to 0.06 output px over 40
    # seeds with 16 frames at scale 2, 0.11 with 6 frames).
    star = (20.3, 17.8)  # in the reference frame
    acc = DrizzleAccumulator((40, 44), scale=scale, pixfrac=pixfrac)
    for dx, dy in _dithers(rng, n_frames):
        frame = _stars((40, 44), [(star[0] - dx, star[1] - dy)], fwhm=2.5)
        acc.add(frame, Transform.translation(dx, dy))
    image = acc.result().image
    ex, ey = _to_output(star[0], scale), _to_output(star[1], scale)
    cx, cy, *_ = _centroid(image, ex, ey, int(5 * scale))
    assert abs(cx - ex) < tolerance and abs(cy - ey) < tolerance


def test_rotation_by_180_degrees():
    height, width = 30, 36
    stars = _stars((height, width), [(9.4, 7.7), (25.0, 20.2)], fwhm=2.0)
    reference = stars + np.linspace(0, 0.1, width, dtype=np.float32)[None, :]
    turn = Transform.similarity(rotation_deg=180.0, center=((width - 1) / 2, (height - 1) / 2))
    # scale 1, pixfrac 1: every frame pixel lands exactly on a reference pixel.
    exact = DrizzleAccumulator((height, width), scale=1.0, pixfrac=1.0)
    exact.add(reference[::-1, ::-1], turn)
    np.testing.assert_allclose(exact.result().image, reference, atol=1e-5)
    # scale 2: the star comes back where the reference has it.
    fine = DrizzleAccumulator((height, width), scale=2.0, pixfrac=0.8)
    fine.add(stars[::-1, ::-1], turn)
    ex, ey = _to_output(9.4, 2.0), _to_output(7.7, 2.0)
    cx, cy, *_ = _centroid(fine.result().image, ex, ey, 6)
    assert abs(cx - ex) < 0.05 and abs(cy - ey) < 0.05


def test_bands_give_the_same_result_as_one_pass(rng, monkeypatch):
    frame = rng.random((50, 60)).astype(np.float32)
    transform = Transform(
        np.array([[0.97, -0.2, 4.3], [0.21, 0.98, -3.1], [2e-5, -1e-5, 1.0]])
    )  # with a little perspective

    def run():
        acc = DrizzleAccumulator((50, 60), scale=2.0, pixfrac=0.7)
        acc.add(frame, transform)
        return acc.result()

    whole = run()
    monkeypatch.setattr(accumulate, "_BAND_PIXELS", 7 * 60 + 5)  # 7-row bands and a 1-row tail
    banded = run()
    np.testing.assert_allclose(banded.weight, whole.weight, atol=1e-4)
    np.testing.assert_allclose(banded.image, whole.image, atol=1e-4)


# --- resolution ------------------------------------------------------------------------------


def test_drizzle_sharpens_undersampled_dithered_frames(rng):
    # 16 frames of FWHM 1.2 px stars with random sub-pixel dithers. Drizzle x2 (pixfrac 0.6)
    # beats a bilinear shift-and-add clearly and matches a Lanczos-3 one in FWHM ...
    shape = (60, 60)
    stars = [(x + rng.random(), y + rng.random()) for y in (12, 30, 46) for x in (12, 30, 46)]
    shifts = _dithers(rng, 16)
    frames = [_stars(shape, [(x - dx, y - dy) for x, y in stars], fwhm=1.2) for dx, dy in shifts]
    acc = DrizzleAccumulator(shape, scale=2.0, pixfrac=0.6)
    for frame, shift in zip(frames, shifts, strict=True):
        acc.add(frame, Transform.translation(*shift))
    drizzled = acc.result().image

    def plain(interpolation):
        warped = [
            warp_image(f, Transform.translation(*s), interpolation=interpolation).image
            for f, s in zip(frames, shifts, strict=True)
        ]
        return np.nanmean(warped, axis=0)

    def fwhm(image, scale):
        return np.mean(
            [
                _moment_fwhm(image, _to_output(x, scale), _to_output(y, scale), int(4 * scale))
                / scale
                for x, y in stars
            ]
        )

    drizzle_fwhm = fwhm(drizzled, 2.0)
    assert drizzle_fwhm < 0.92 * fwhm(plain("bilinear"), 1.0)
    assert drizzle_fwhm < 1.06 * fwhm(plain("lanczos"), 1.0)


def test_drizzle_resolves_a_close_pair_that_a_plain_stack_does_not(rng):
    # ... and, sampling twice as finely, it separates a 1.7 px double star that the Lanczos
    # shift-and-add on the reference grid shows as one blob.
    shape, x0, y0, sep = (40, 40), 20.4, 19.7, 1.7
    pair = [(x0 - sep / 2, y0), (x0 + sep / 2, y0)]
    shifts = _dithers(rng, 16)
    frames = [_stars(shape, [(x - dx, y - dy) for x, y in pair], fwhm=1.2) for dx, dy in shifts]
    acc = DrizzleAccumulator(shape, scale=2.0, pixfrac=0.6)
    for frame, shift in zip(frames, shifts, strict=True):
        acc.add(frame, Transform.translation(*shift))
    plain = np.nanmean(
        [
            warp_image(f, Transform.translation(*s)).image
            for f, s in zip(frames, shifts, strict=True)
        ],
        axis=0,
    )

    def dip(image, scale):
        """Lowest value between the two stars over the lower of the two star values."""
        row = int(round(_to_output(y0, scale)))
        half = int(scale)
        profile = np.nansum(image[row - half : row + half + 1], axis=0)
        a, b = (int(round(_to_output(x, scale))) for x, _ in pair)
        between = profile[a + 1 : b] if b > a + 1 else profile[[a]]
        return between.min() / min(profile[a], profile[b])

    assert dip(acc.result().image, 2.0) < 0.93
    assert dip(plain, 1.0) >= 0.99


# --- colour and Bayer drizzle ----------------------------------------------------------------


def test_colour_frames_drizzle_per_channel(rng):
    level = np.array([0.2, 0.5, 0.8], np.float32)
    acc = DrizzleAccumulator((24, 30), scale=2.0, pixfrac=0.8, channels=3)
    for dx, dy in _dithers(rng, 4, amplitude=1.0):
        frame = np.broadcast_to(level, (24, 30, 3)).copy()
        frame[5:8, 5:8, 1] = np.nan  # a hole in green only
        acc.add(frame, Transform.translation(dx, dy))
    result = acc.result()
    assert result.image.shape == result.weight.shape == (48, 60, 3)
    for c in range(3):
        covered = result.weight[..., c] > 0
        np.testing.assert_allclose(result.image[..., c][covered], level[c], atol=1e-4)
    assert (result.weight[..., 1].sum() < result.weight[..., 0].sum()) and np.allclose(
        result.weight[..., 0], result.weight[..., 2]
    )


def test_one_cfa_pixel_drops_into_its_own_colour_only():
    acc = DrizzleAccumulator((8, 8), scale=2.0, pixfrac=1.0, channels=3)
    cfa = np.zeros((8, 8), np.float32)
    cfa[2, 2] = 1.0  # a red site of RGGB
    cfa[3, 3] = 5.0  # a blue site
    acc.add_cfa(cfa, Transform.identity(), pattern="RGGB")
    image = np.nan_to_num(acc.result().image)
    # pixfrac 1 of a sensor pixel is a 2x2 block at scale 2; green sites all read 0.
    expected_red = np.zeros((16, 16))
    expected_red[4:6, 4:6] = 1.0
    np.testing.assert_allclose(image[..., 0], expected_red, atol=1e-6)
    assert image[..., 2][6:8, 6:8] == pytest.approx(np.full((2, 2), 5.0))
    assert image[..., 1].max() == 0.0
    weight = acc.result().weight
    assert weight.sum(axis=(0, 1)) == pytest.approx([16.0, 32.0, 16.0])  # sites per colour


@pytest.mark.parametrize(("n_frames", "scale", "pixfrac"), [(12, 1.0, 0.7), (12, 2.0, 1.0)])
def test_bayer_drizzle_keeps_star_colour_and_fills_every_pixel(rng, n_frames, scale, pixfrac):
    # A coloured star through an RGGB sensor, dithered by +-3 px and +-1 degree: 12 frames
    # cover every output pixel of every colour at scale 1 / pixfrac 0.7 and scale 2 /
    # pixfrac 1 (scale 2 / pixfrac 0.7 needs about 20).
    shape, star, colour, sky = (48, 56), (27.3, 22.6), np.array([1.0, 0.7, 0.4]), 0.05
    acc = DrizzleAccumulator(shape, scale=scale, pixfrac=pixfrac, channels=3)
    for dx, dy in _dithers(rng, n_frames):
        t = Transform.similarity(rotation_deg=rng.uniform(-1, 1), shift=(dx, dy), center=(28, 24))
        fx, fy = t.inverse().apply([star])[0]
        profile = _stars(shape, [(fx, fy)], fwhm=2.5, flux=2.0)
        acc.add_cfa(mosaic(sky + profile[..., None] * colour, "RGGB"), t, pattern="RGGB")
    result = acc.result()
    margin = int(5 * scale)
    assert (result.weight[margin:-margin, margin:-margin] > 0).all()
    yy, xx = np.indices(result.image.shape[:2])
    aperture = np.hypot(xx - _to_output(star[0], scale), yy - _to_output(star[1], scale))
    aperture = aperture < 4 * scale
    flux = (result.image[aperture] - sky).sum(axis=0) / scale**2
    np.testing.assert_allclose(flux / flux[0], colour / colour[0], rtol=0.03)
    assert flux[0] == pytest.approx(2.0, rel=0.03)


def test_bayer_drizzle_without_dithers_leaves_holes():
    acc = DrizzleAccumulator((16, 16), scale=1.0, pixfrac=0.7, channels=3)
    for _ in range(4):
        acc.add_cfa(np.ones((16, 16), np.float32), Transform.identity(), pattern="GRBG")
    covered = (acc.result().weight > 0).mean(axis=(0, 1))
    np.testing.assert_allclose(covered, [0.25, 0.5, 0.25])


# --- masks, NaN and weights ------------------------------------------------------------------


def test_nan_and_masked_pixels_are_ignored():
    acc = DrizzleAccumulator((20, 20), scale=1.0, pixfrac=1.0)
    first = np.ones((20, 20), np.float32)
    first[2:5, 2:5] = np.nan
    mask = np.zeros((20, 20), bool)
    mask[10:13, 10:13] = True
    first[10:13, 10:13] = 1000.0  # masked, so never seen
    acc.add(first, Transform.identity(), mask=mask)
    acc.add(np.full((20, 20), 2.0, np.float32), Transform.identity())
    acc.add(np.full((20, 20), np.nan, np.float32), Transform.identity())  # adds nothing
    result = acc.result()
    assert acc.n_frames == 2
    assert result.image[3, 3] == pytest.approx(2.0) and result.image[11, 11] == pytest.approx(2.0)
    assert result.image[0, 0] == pytest.approx(1.5) and result.weight[0, 0] == pytest.approx(2.0)
    assert result.weight[3, 3] == pytest.approx(1.0) and result.weight[11, 11] == pytest.approx(1.0)


def test_cfa_mask_is_honoured():
    acc = DrizzleAccumulator((8, 8), scale=1.0, pixfrac=1.0, channels=3)
    mask = np.zeros((8, 8), bool)
    mask[0, 0] = True  # a red site of RGGB
    acc.add_cfa(np.ones((8, 8), np.float32), Transform.identity(), pattern="RGGB", mask=mask)
    assert np.isnan(acc.result().image[0, 0, 0]) and acc.result().weight[2, 2, 0] == 1.0


def test_frame_weights():
    acc = DrizzleAccumulator((10, 12), scale=2.0, pixfrac=1.0)
    acc.add(np.full((10, 12), 1.0, np.float32), Transform.identity(), weight=1.0)
    acc.add(np.full((10, 12), 2.0, np.float32), Transform.identity(), weight=3.0)
    acc.add(np.full((10, 12), 100.0, np.float32), Transform.identity(), weight=0.0)
    result = acc.result()
    assert acc.n_frames == 2
    np.testing.assert_allclose(result.image, 1.75, atol=1e-5)
    np.testing.assert_allclose(result.weight, 4.0 / 4.0, atol=1e-5)  # 4 output px per input px


def test_frames_outside_the_reference_add_nothing():
    acc = DrizzleAccumulator((10, 12), scale=2.0)
    acc.add(np.ones((10, 12), np.float32), Transform.translation(500.0, 0.0))
    assert acc.n_frames == 0 and np.isnan(acc.result().image).all()


# --- options and errors ----------------------------------------------------------------------


def test_output_shape_rounds():
    assert drizzle_output_shape((101, 75), 1.5) == (152, 112)
    assert DrizzleAccumulator((101, 75), scale=3.0).shape == (303, 225)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pixfrac": 0.0}, r"pixfrac must be in \(0, 1\], got 0.0"),
        ({"pixfrac": 1.5}, r"pixfrac must be in \(0, 1\]"),
        ({"scale": -2.0}, r"drizzle scale must be a finite number > 0, got -2.0"),
        ({"kernel": "lanczos"}, r"unknown drizzle kernel 'lanczos'; expected one of square"),
        ({"channels": 2}, r"channels must be 1 \(mono\) or 3 \(colour, CFA\), got 2"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        DrizzleAccumulator((10, 10), **options)


def test_bad_inputs_are_refused():
    mono = DrizzleAccumulator((10, 10))
    colour = DrizzleAccumulator((10, 10), channels=3)
    frame = np.ones((10, 10), np.float32)
    with pytest.raises(GeometryError, match=r"reference_shape must be two positive integers"):
        DrizzleAccumulator((10, 0))
    with pytest.raises(GeometryError, match=r"has 1 channel\(s\) and needs \(h, w\) images"):
        mono.add(np.ones((10, 10, 3), np.float32), Transform.identity())
    with pytest.raises(GeometryError, match=r"has 3 channel\(s\) and needs \(h, w, 3\) images"):
        colour.add(frame, Transform.identity())
    with pytest.raises(GeometryError, match=r"the mask's shape \(4, 4\) differs from the frame's"):
        mono.add(frame, Transform.identity(), mask=np.zeros((4, 4), bool))
    with pytest.raises(ConfigError, match=r"a frame weight must be a finite number >= 0, got -1"):
        mono.add(frame, Transform.identity(), weight=-1.0)
    with pytest.raises(ConfigError, match=r"Bayer drizzle needs an accumulator with channels=3"):
        mono.add_cfa(frame, Transform.identity(), pattern="RGGB")
    with pytest.raises(ConfigError, match=r"unknown CFA pattern 'RGBX'"):
        colour.add_cfa(frame, Transform.identity(), pattern="RGBX")
    with pytest.raises(GeometryError, match=r"add_cfa needs a 2-D CFA mosaic"):
        colour.add_cfa(np.ones((10, 10, 3), np.float32), Transform.identity(), pattern="RGGB")
