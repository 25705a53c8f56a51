"""Calibration end to end on simulated sessions with vignetting, dust, amp glow and hot pixels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import skystack
from skystack.config import CalibrationConfig, MasterSources
from skystack.frame import Frame
from skystack.pipeline.calibration import calibrate_files, calibrate_frame
from skystack.pipeline.masters import prepare_masters
from skystack.sim import SessionConfig, make_session, render_light, render_sky, write_session


def _session_config(bayer):
    return SessionConfig(
        width=320, height=240, n_lights=2, n_bias=7, n_darks=7, n_flats=7, bayer=bayer,
        star_count=120, extended="none", sky_level_e=3000.0, sky_gradient=(0.0, 0.0),
        sky_gradient_quadratic=0.0, sky_variation=0.0, vignetting=0.3, dust_count=3,
        amp_glow_e_per_s=20.0, exposure_s=60.0,
    )  # fmt: skip


@pytest.fixture(scope="module", params=[None, "RGGB"], ids=["mono", "rggb"])
def simulated(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"session_{request.param}")
    config = _session_config(request.param)
    truth = write_session(folder, config, seed=11)
    session = make_session(config, seed=11)
    return folder, truth, session


def _config(folder, **changes):
    sources = MasterSources(
        bias=tuple(sorted((folder / "bias").glob("*.fits"))),
        darks=tuple(sorted((folder / "darks").glob("*.fits"))),
        flats=tuple(sorted((folder / "flats").glob("*.fits"))),
    )
    return CalibrationConfig(masters=sources, **changes)


def _star_mask(session, index):
    stars = render_sky(session, index, background=False)
    return ndimage.binary_dilation(stars > 0.002 * session.config.sky_level_e, iterations=4)


def _block_residual(image, mask, block=32):
    """Largest deviation of block medians (stars masked) from their overall median."""
    values = []
    for y in range(0, image.shape[0] - block + 1, block):
        for x in range(0, image.shape[1] - block + 1, block):
            tile = image[y : y + block, x : x + block]
            good = ~mask[y : y + block, x : x + block] & np.isfinite(tile)
            if good.sum() > block * block // 3:
                values.append(np.median(tile[good]))
    values = np.array(values)
    return float(np.max(np.abs(values / np.median(values) - 1.0)))


def _channels(image, cfa):
    """Yield (plane, row slice, column slice) per CFA site, or the image once for mono."""
    if cfa is None:
        yield image, slice(None), slice(None)
        return
    for dy in (0, 1):
        for dx in (0, 1):
            yield image[dy::2, dx::2], slice(dy, None, 2), slice(dx, None, 2)


def test_background_is_flat_after_calibration(simulated, tmp_path):
    folder, truth, session = simulated
    cfa = session.config.bayer
    run = calibrate_files(list(truth.lights), tmp_path / "out", _config(folder))
    calibrated = skystack.read(run.outputs[0]).data
    mask = _star_mask(session, 0)
    raw = skystack.read(truth.lights[0]).data
    for plane, rows, cols in _channels(calibrated, cfa):
        residual = _block_residual(plane, mask[rows, cols], block=32)
        assert residual < 0.005, f"large-scale residual {residual:.4f} of the sky level"
    # The light's expected value (no photon noise) through the same noisy masters: what is left
    # at finer scale is the masters' own error.
    first = skystack.read(truth.lights[0])
    masters = prepare_masters(_config(folder), first_light=first, masters_dir=tmp_path / "m")
    expected = render_light(session, 0, noise=False).astype(np.float32) / np.float32(65535)
    clean = calibrate_frame(Frame(expected, first.meta), masters, _config(folder)).frame.data
    for plane, rows, cols in _channels(clean, cfa):
        assert _block_residual(plane, mask[rows, cols], block=16) < 0.005
    # Without calibration the same measure sees the vignetting, dust and glow.
    for plane, rows, cols in _channels(raw, cfa):
        assert _block_residual(plane, mask[rows, cols], block=16) > 0.05


def test_hot_pixels_are_removed_and_stars_are_untouched(simulated, tmp_path):
    folder, truth, session = simulated
    cfa = session.config.bayer
    step = 2 if cfa else 1
    with_cosmetic = calibrate_files(list(truth.lights), tmp_path / "a", _config(folder))
    without = calibrate_files(list(truth.lights), tmp_path / "b", _config(folder, cosmetic=False))
    image = skystack.read(with_cosmetic.outputs[0]).data
    plain = skystack.read(without.outputs[0]).data
    sensor = session.sensor
    hx, hy = sensor.hot.x, sensor.hot.y
    noise = np.sqrt(session.config.sky_level_e) / sensor.gain / 65535
    neighbours = ndimage.median_filter(image, footprint=_same_colour_footprint(step))
    inside = (hx >= 2 * step) & (hy >= 2 * step)
    inside &= (hx < image.shape[1] - 2 * step) & (hy < image.shape[0] - 2 * step)
    deviation = np.abs(image[hy, hx] - neighbours[hy, hx])[inside]
    assert np.mean(deviation < 6 * noise) >= 0.99
    # Star fluxes with and without cosmetic correction agree within 1 %.
    positions = truth.star_positions(0)
    fluxes = truth.stars.flux
    bright = np.argsort(fluxes)[-15:]
    for i in bright:
        x, y = positions[i]
        if not (8 <= x < image.shape[1] - 8 and 8 <= y < image.shape[0] - 8):
            continue
        window = (slice(int(y) - 6, int(y) + 7), slice(int(x) - 6, int(x) + 7))
        sky = np.median(plain)
        a = np.nansum(image[window] - sky)
        b = np.nansum(plain[window] - sky)
        hot_inside = np.any((np.abs(hx - x) <= 6) & (np.abs(hy - y) <= 6))
        if not hot_inside:
            assert a == pytest.approx(b, rel=0.01)


def _same_colour_footprint(step):
    footprint = np.zeros((2 * step + 1, 2 * step + 1), bool)
    footprint[::step, ::step] = True
    footprint[step, step] = False
    return footprint


def test_debayered_output_and_masters_are_written(simulated, tmp_path):
    folder, truth, session = simulated
    if session.config.bayer is None:
        pytest.skip("colour output is for Bayer sessions")
    run = calibrate_files(list(truth.lights), tmp_path / "rgb", _config(folder, debayer="bilinear"))
    frame = skystack.read(run.outputs[0])
    assert frame.data.shape == (240, 320, 3) and frame.meta.cfa is None
    names = sorted(p.name for p in run.masters)
    assert names == ["master_bias.fits", "master_dark.fits", "master_flat.fits"]
    master = skystack.read(tmp_path / "rgb" / "masters" / "master_dark.fits")
    assert master.meta.header_value("NFRAMES") == 7
    assert master.meta.exposure == session.config.dark_exposure
    assert master.data.dtype == np.float32
    history = [str(v) for k, v, _ in frame.meta.header if k == "HISTORY"]
    assert any("debayer: bilinear" in line for line in history)


def test_worker_processes_calibrate_like_one_process(tmp_path):
    import dataclasses

    truth = write_session(tmp_path / "s", SessionConfig(width=160, height=120, n_lights=4,
                          n_bias=2, n_darks=2, n_flats=2, bayer="RGGB"), seed=2)  # fmt: skip
    config = CalibrationConfig(
        masters=MasterSources(bias=truth.bias, darks=truth.darks, flats=truth.flats)
    )
    one = calibrate_files(list(truth.lights), tmp_path / "one", dataclasses.replace(config, jobs=1))
    two = calibrate_files(list(truth.lights), tmp_path / "two", dataclasses.replace(config, jobs=2))
    assert [p.name for p in one.outputs] == [p.name for p in two.outputs]
    for a, b in zip(one.outputs, two.outputs, strict=True):
        np.testing.assert_array_equal(skystack.read(a).data, skystack.read(b).data)
