"""The enhance chain on simulated stacks: a flat, neutral, well-exposed picture; linear mode."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.config import EnhanceConfig
from skystack.pipeline.enhance import enhance
from skystack.sim import SessionConfig, make_session, render_stack


@pytest.fixture(scope="module")
def colour_stack():
    config = SessionConfig(
        width=640, height=480, bayer="RGGB", star_count=400, extended="galaxy",
        sky_gradient=(0.35, -0.25), sky_gradient_quadratic=0.1, sky_color=(1.3, 1.0, 0.7),
    )  # fmt: skip
    session = make_session(config, seed=21)
    noisy = render_stack(session, 16, rng=np.random.default_rng(4))
    clean_sky = render_stack(session, 16, background=False)
    return session, noisy, clean_sky


def _sky_pixels(clean_sky: np.ndarray, colour: bool = True) -> np.ndarray:
    """Pixels where the true scene (stars, galaxy) adds under 1% of the faintest sky level."""
    signal = clean_sky.max(axis=-1) if colour else clean_sky
    return signal < 1e-5


def _block_medians(plane: np.ndarray, where: np.ndarray, block: int = 40) -> np.ndarray:
    h, w = plane.shape
    values = []
    for y in range(0, h - block + 1, block):
        for x in range(0, w - block + 1, block):
            keep = where[y : y + block, x : x + block]
            if keep.mean() > 0.5:
                values.append(np.median(plane[y : y + block, x : x + block][keep]))
    return np.array(values)


def test_default_enhance_gives_a_flat_neutral_picture(colour_stack):
    session, noisy, clean_sky = colour_stack
    result = enhance(noisy)
    picture = result.image
    assert picture.shape == noisy.shape and picture.dtype == np.float32
    assert np.isfinite(picture).all() and picture.min() >= 0.0 and picture.max() <= 1.0
    sky = _sky_pixels(clean_sky)
    levels = np.array([np.median(picture[..., c][sky]) for c in range(3)])
    # Auto stretch puts the sky near the target brightness; no colour cast on the sky.
    assert levels.mean() == pytest.approx(EnhanceConfig().target_background, abs=0.05)
    assert levels.max() - levels.min() < 0.01
    # The gradient (35% of the sky across the frame) is gone: sky blocks agree within a few
    # per cent of the sky brightness.
    blocks = _block_medians(picture.mean(axis=-1), sky)
    assert blocks.size > 50
    assert np.percentile(blocks, 95) - np.percentile(blocks, 5) < 0.1 * levels.mean()
    # The galaxy is brighter than the sky around it.
    galaxy = clean_sky.max(axis=-1) > 20 * clean_sky.max(axis=-1)[sky].max() + 1e-4
    assert picture.mean(axis=-1)[galaxy].mean() > levels.mean() + 0.1
    assert len(result.stars) > 50
    names = [name for name, _ in result.timings]
    assert names[:3] == ["background", "stars", "colour"] and "stretch" in names


def test_linear_mode_keeps_shape_and_scale_and_only_flattens(colour_stack):
    _, noisy, clean_sky = colour_stack
    result = enhance(noisy, EnhanceConfig(stretch="none"))
    linear = result.image
    assert linear.shape == noisy.shape
    names = [name for name, _ in result.timings]
    assert names == ["background", "stars", "colour"]
    # Linear steps: each channel's light above the sky is kept, times its white balance gain.
    sky = _sky_pixels(clean_sky)
    gains = np.array(result.white_balance)
    for c in range(3):
        true_light = clean_sky[..., c].sum()
        excess_out = (linear[..., c][~sky] - np.median(linear[..., c][sky])).sum()
        assert excess_out == pytest.approx(true_light * gains[c], rel=0.05), c
    blocks = _block_medians(linear.mean(axis=-1), sky)
    sky_level = np.median(noisy.mean(axis=-1)[sky])
    assert np.percentile(blocks, 95) - np.percentile(blocks, 5) < 0.01 * sky_level


def test_missing_pixels_come_out_black_and_do_not_spread(colour_stack):
    _, noisy, _ = colour_stack
    holed = noisy.copy()
    holed[:20, :, :] = np.nan
    result = enhance(holed, EnhanceConfig(sharpen="none", stars="none"))
    assert np.all(result.image[:20] == 0.0)
    assert np.isfinite(result.image).all()
    assert np.median(result.image[40:]) > 0.1


def test_mono_stack_and_every_stretch_and_sharpen_run():
    session = make_session(
        SessionConfig(width=400, height=300, star_count=200, extended="galaxy"), seed=3
    )
    noisy = render_stack(session, 16, rng=np.random.default_rng(1))
    for stretch in ("auto", "asinh", "ghs", "linear"):
        for sharpen in ("wavelet", "unsharp", "log", "deconv"):
            out = enhance(noisy, EnhanceConfig(stretch=stretch, sharpen=sharpen)).image
            assert out.shape == noisy.shape and np.isfinite(out).all(), (stretch, sharpen)
            assert 0.0 <= out.min() and out.max() <= 1.0
            if stretch == "linear":
                # Black and white points at the extreme percentiles: the full range is used.
                assert out.min() < 0.01 and out.max() > 0.99, sharpen
            else:
                # Non-linear stretches make the faint sky visible.
                assert np.median(out) > 5 * np.median(noisy), (stretch, sharpen)


def test_bad_image_shape_is_a_clear_error():
    from skystack.errors import SkystackError

    with pytest.raises(SkystackError, match="shape"):
        enhance(np.zeros((10, 10, 4), dtype=np.float32))


def test_no_dark_halos_around_bright_stars(colour_stack):
    session, noisy, clean_sky = colour_stack
    picture = enhance(noisy).image.mean(axis=-1)
    sky = _sky_pixels(clean_sky)
    sky_noise = 1.4826 * np.median(np.abs(picture[sky] - np.median(picture[sky])))
    stars_ = session.stars
    height, width = picture.shape
    yy, xx = np.mgrid[:height, :width]
    from skystack.enhance.sharpen import unsharp_mask

    # Control: an unprotected strong unsharp mask does dig dark rings this check sees.
    haloed = unsharp_mask(picture, radius=4.0, amount=3.0)
    checked = caught = 0
    for index in np.argsort(stars_.flux)[::-1][:15]:
        x, y = stars_.x[index], stars_.y[index]
        if not (20 <= x < width - 20 and 20 <= y < height - 20):
            continue
        radius = np.hypot(xx - x, yy - y)
        ring = (radius > 6) & (radius < 10)
        outer = (radius > 14) & (radius < 24) & sky
        if ring.sum() < 20 or outer.sum() < 50:
            continue
        # The ring just outside the star is not darker than the sky further out.
        assert picture[ring].mean() > np.median(picture[outer]) - 0.5 * sky_noise, index
        checked += 1
        caught += haloed[ring].mean() < np.median(haloed[outer]) - 0.5 * sky_noise
    assert checked >= 5 and caught >= 3


def test_top_level_enhance_image_is_the_chain():
    import skystack
    import skystack.enhance.stretch  # noqa: F401 - the step package must not shadow it

    image = render_stack(
        make_session(SessionConfig(width=200, height=150, star_count=40), seed=9),
        4, rng=np.random.default_rng(0),
    )  # fmt: skip
    result = skystack.enhance_image(image, EnhanceConfig(stretch="none"))
    assert result.image.shape == image.shape
