"""``stack_files`` end to end on simulated sessions: noise, stars, hot pixels, trails, sidecar."""

from __future__ import annotations

import json

import numpy as np
import pytest

import skystack
from skystack.config import CalibrationConfig, MasterSources, RegistrationConfig, StackConfig
from skystack.detect import estimate_noise, find_stars
from skystack.pipeline.stacking import stack_files
from skystack.sim import SessionConfig, make_session, render_light, write_session

pytestmark = pytest.mark.filterwarnings("ignore::skystack.errors.FrameSkippedWarning")

_BASE = dict(width=480, height=360, n_bias=0, n_darks=0, n_flats=0, extended="none",
             star_count=250, shift_px=6.0, rotation_deg=0.3, dust_count=0, vignetting=0.0,
             sky_gradient=(0.0, 0.0), sky_gradient_quadratic=0.0)  # fmt: skip


def _session(folder, **overrides):
    config = SessionConfig(**{**_BASE, **overrides})
    return write_session(folder, config, seed=23)


def _background_noise(image: np.ndarray) -> float:
    """Noise of the sky between stars: pixel differences, robust to the stars."""
    inner = image[20:-20, 20:-20]
    return estimate_noise(inner)


@pytest.fixture(scope="module")
def sixteen(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sixteen")
    truth = _session(folder / "session", n_lights=16, hot_pixel_fraction=2e-3,
                     cosmic_ray_rate=2e-4)  # fmt: skip
    out = folder / "stack.fits"
    run = stack_files(list(truth.lights), out, calibration=None,
                      registration=RegistrationConfig(), stack=StackConfig())  # fmt: skip
    return truth, run


def _robust_sigma(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


def test_winsorized_stack_noise_is_the_ideal_mean_noise(tmp_path):
    # No pointing changes, so the registered frames are not resampled (resampling smooths the
    # noise of each frame differently) and the ideal is exactly sigma_1 / sqrt(N). Noise is
    # measured against the simulator's noise-free frames, so stars do not bias it.
    truth = _session(tmp_path / "session", n_lights=16, shift_px=0.0, rotation_deg=0.0,
                     hot_pixel_fraction=0.0)  # fmt: skip
    session = make_session(truth.config, seed=truth.seed)
    clean = [render_light(session, i, noise=False).astype(np.float32) / 65535 for i in range(16)]
    singles = [
        _robust_sigma(skystack.read(p).data - c) for p, c in zip(truth.lights, clean, strict=True)
    ]
    ideal = float(np.sqrt(np.mean(np.square(singles)))) / np.sqrt(16)
    run = stack_files(list(truth.lights), tmp_path / "still.fits", calibration=None,
                      registration=RegistrationConfig(), stack=StackConfig())  # fmt: skip
    residual = run.result.image - np.mean(clean, axis=0)
    measured = _robust_sigma(residual[10:-10, 10:-10])
    assert measured == pytest.approx(ideal, rel=0.05)
    assert run.n_stacked == 16


def test_hot_pixels_and_cosmic_rays_are_gone(sixteen):
    truth, run = sixteen
    image = run.result.image
    # hot pixels of the sensor sit at fixed sensor positions, which move on the sky between
    # frames: rejection removes them; nothing in the stack stands out of its neighbourhood
    # like a single hot pixel does
    from scipy import ndimage

    local = ndimage.median_filter(image, size=3)
    noise = _background_noise(image)
    spikes = (image - local) > 8 * noise
    isolated = spikes & (ndimage.uniform_filter(spikes.astype(float), 3) * 9 <= 1.01)
    stars = find_stars(image)
    near_star = np.zeros_like(spikes)
    for x, y in stars.xy:
        near_star[max(0, int(y) - 4) : int(y) + 5, max(0, int(x) - 4) : int(x) + 5] = True
    # where at least 5 frames overlap (rejection keeps 3 values at least, so the few pixels at
    # the edge that 3 frames cover cannot lose a hot pixel)
    covered = run.result.count >= 5
    assert covered.mean() > 0.9
    assert int((isolated & ~near_star & covered).sum()) == 0


def test_stars_are_not_clipped(tmp_path):
    # Frames with different seeing (FWHM 2.6-3.6 px) and transparency, no hot pixels: the
    # winsorized stack must keep the star fluxes of the plain (unbiased) mean of the same
    # registered, normalised, weighted frames, and their sharpness.
    truth = _session(tmp_path / "session", n_lights=12, hot_pixel_fraction=0.0)
    common = dict(calibration=None, registration=RegistrationConfig())
    plain = stack_files(list(truth.lights), tmp_path / "mean.fits", **common,
                        stack=StackConfig(reject="none", keep_cache=True))  # fmt: skip
    clipped = stack_files(list(truth.lights), tmp_path / "winsorized.fits", **common,
                          stack=StackConfig())  # fmt: skip
    stars = find_stars(plain.result.image, max_stars=120)
    radius = 3.0 * float(np.nanmedian(stars.fwhm))
    margin = radius + 9
    height, width = plain.result.image.shape
    usable = ~stars.saturated & (stars.peak < 0.5)
    usable &= (stars.x > margin) & (stars.x < width - margin)
    usable &= (stars.y > margin) & (stars.y < height - margin)
    bright = stars.select(np.flatnonzero(usable)[:25])  # the brightest, well measured
    assert len(bright) == 25
    ratio = _aperture(clipped.result.image, bright.xy, radius) / _aperture(
        plain.result.image, bright.xy, radius
    )
    assert np.median(ratio) == pytest.approx(1.0, abs=0.01)
    assert np.mean(np.abs(ratio - 1.0) < 0.03) > 0.9
    registered = sorted((tmp_path / ".mean.skystack-cache" / "registered").glob("*.fits"))
    frame_fwhm = [float(np.nanmedian(find_stars(skystack.read(p).data).fwhm)) for p in registered]
    stack_fwhm = float(np.nanmedian(find_stars(clipped.result.image).fwhm))
    assert stack_fwhm <= 1.05 * float(np.mean(frame_fwhm))


def _to_frame(truth, xy, reference: int, index: int) -> np.ndarray:
    """Reference-grid points into light ``index``'s pixel grid (truth transforms)."""
    to_index = np.linalg.inv(truth.transforms[index]) @ truth.transforms[reference]
    pts = np.column_stack([xy, np.ones(len(xy))]) @ to_index.T
    return pts[:, :2] / pts[:, 2:]


def _aperture(image: np.ndarray, xy: np.ndarray, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    fluxes = []
    for x, y in xy:
        r = np.hypot(xx - x, yy - y)
        inner = r <= radius
        ring = (r > radius + 3) & (r <= radius + 8)
        sky = np.nanmedian(image[ring])
        fluxes.append(float(np.nansum(image[inner] - sky)))
    return np.array(fluxes)


def test_sidecar_and_fits_output(sixteen):
    truth, run = sixteen
    frame = skystack.read(run.output)
    assert frame.data.dtype == np.float32 and frame.meta.bit_depth == 32
    assert any("skystack stack" in str(v) for k, v, _ in frame.meta.header if k == "HISTORY")
    report = json.loads(run.sidecar.read_text())
    assert report["reference"] == str(run.reference)
    assert report["settings"]["stack"]["reject"] == "winsorized"
    rows = report["frames"]
    assert [r["path"] for r in rows] == [str(p) for p in truth.lights]
    for row in rows:
        for key in ("path", "accepted", "reason", "weight", "fwhm", "stars", "background",
                    "noise", "transform", "rejected_fraction"):  # fmt: skip
            assert key in row
        assert row["accepted"] and 0 < row["weight"] < 3
        assert 0 <= row["rejected_fraction"] < 0.05


def test_calibrated_colour_stack(tmp_path):
    truth = _session(tmp_path / "session", n_lights=5, n_bias=3, n_darks=3, n_flats=3,
                     bayer="RGGB", vignetting=0.3)  # fmt: skip
    calibration = CalibrationConfig(
        masters=MasterSources(bias=truth.bias, darks=truth.darks, flats=truth.flats)
    )
    run = stack_files(list(truth.lights), tmp_path / "colour.fits", calibration=calibration,
                      registration=RegistrationConfig(), stack=StackConfig())  # fmt: skip
    assert run.result.image.shape == (360, 480, 3)
    assert run.n_stacked == 5
    # the cache is gone, the outputs are there
    assert not (tmp_path / ".colour.skystack-cache").exists()
    assert (tmp_path / "colour.json").exists()
    # flat-fielded: the vignetting is gone from the background (corners vs centre within 1%)
    green = run.result.image[..., 1]
    centre = np.nanmedian(green[150:210, 210:270])
    corner = np.nanmedian(green[20:80, 20:80])
    assert corner == pytest.approx(centre, rel=0.01)


def _trail_line_in(truth, trail, reference: int) -> tuple[np.ndarray, np.ndarray]:
    """The trail's endpoints in the stack's reference grid."""
    to_reference = np.linalg.inv(truth.transforms[reference])
    ends = np.array([[*trail.start_ref, 1.0], [*trail.end_ref, 1.0]]) @ to_reference.T
    return ends[0, :2] / ends[0, 2], ends[1, :2] / ends[1, 2]


def _along(image: np.ndarray, start: np.ndarray, end: np.ndarray, half_width: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    direction = (end - start) / np.linalg.norm(end - start)
    normal = np.array([-direction[1], direction[0]])
    distance = (xx - start[0]) * normal[0] + (yy - start[1]) * normal[1]
    return np.abs(distance) <= half_width


@pytest.mark.parametrize(("n_lights", "trail_light"), [(16, 5), (4, 2)])
def test_a_satellite_trail_leaves_no_residual(tmp_path, n_lights, trail_light):
    truth = _session(tmp_path / "session", n_lights=n_lights, trail_lights=(trail_light,))
    lights = list(truth.lights)
    settings = dict(calibration=None, registration=RegistrationConfig(reference=lights[0]))
    run = stack_files(lights, tmp_path / "trail.fits", stack=StackConfig(), **settings)
    clean = stack_files([p for i, p in enumerate(lights) if i != trail_light],
                        tmp_path / "clean.fits", stack=StackConfig(), **settings)  # fmt: skip
    plain = stack_files(lights, tmp_path / "plain.fits", **settings,
                        stack=StackConfig(reject="none", trail_mask=False))  # fmt: skip
    trail = truth.trails[0]
    start, end = _trail_line_in(truth, trail, 0)
    path = _along(run.result.image, start, end, 1.0) & np.isfinite(clean.result.image)
    noise = _robust_sigma(clean.result.image - np.nanmedian(clean.result.image))
    excess = float(np.nanmean(run.result.image[path] - clean.result.image[path]))
    plain_excess = float(np.nanmean(plain.result.image[path] - clean.result.image[path]))
    assert excess < 1.0 * noise
    assert abs(excess) < 0.05 * plain_excess
    report = json.loads(run.sidecar.read_text())
    assert len(report["trails"]) == 1
    assert report["trails"][0]["path"] == str(lights[trail_light])


def test_drizzle_x2_from_bayer_frames(tmp_path):
    # a red or blue drop covers a quarter of the fine grid per frame: 16 dithered frames fill
    # all but (3/4)^16 = 1% of it
    truth = _session(tmp_path / "session", n_lights=16, bayer="GRBG", star_count=120,
                     width=240, height=180, shift_px=5.0)  # fmt: skip
    registration = RegistrationConfig(drizzle=2.0, pixfrac=1.0)
    run = stack_files(list(truth.lights), tmp_path / "drizzle.fits", calibration=None,
                      registration=registration, stack=StackConfig(maps=True))  # fmt: skip
    assert run.result.image.shape == (360, 480, 3)
    covered = run.result.count[20:-20, 20:-20] >= 1
    assert covered.mean() > 0.97  # the dithered drops fill the fine grid
    report = json.loads(run.sidecar.read_text())
    # transforms stay in the input frames' own pixel grid
    assert all(abs(row["transform"][0][2]) < 20 for row in report["frames"])
    stars = find_stars(np.nan_to_num(run.result.image[..., 1]))
    assert len(stars) > 40
    assert 2 * 2.0 < float(np.nanmedian(stars.fwhm)) < 2 * 4.5  # star widths doubled in px


def test_an_interrupted_stack_resumes_without_redoing_finished_steps(tmp_path, monkeypatch):
    from skystack.pipeline import stacking

    truth = _session(tmp_path / "session", n_lights=4, n_bias=2, n_darks=2, n_flats=2)
    calibration = CalibrationConfig(
        masters=MasterSources(bias=truth.bias, darks=truth.darks, flats=truth.flats)
    )
    settings = dict(calibration=calibration, registration=RegistrationConfig(),
                    stack=StackConfig())  # fmt: skip
    whole = stack_files(list(truth.lights), tmp_path / "whole.fits", **settings)

    real_stack_strips = stacking.stack_strips

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stacking, "stack_strips", interrupted)
    with pytest.raises(KeyboardInterrupt):
        stack_files(list(truth.lights), tmp_path / "again.fits", **settings)
    assert not (tmp_path / "again.fits").exists()
    monkeypatch.setattr(stacking, "stack_strips", real_stack_strips)
    calls = {"calibrate": 0, "register": 0}
    real_calibrate, real_register = stacking.calibrate_files, stacking.register_files

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(stacking, "calibrate_files", counting("calibrate", real_calibrate))
    monkeypatch.setattr(stacking, "register_files", counting("register", real_register))
    again = stack_files(list(truth.lights), tmp_path / "again.fits", **settings)
    assert calls == {"calibrate": 0, "register": 0}
    np.testing.assert_array_equal(again.result.image, whole.result.image)
    assert not (tmp_path / ".again.skystack-cache").exists()
