"""Registering simulated sessions end to end: accuracy against the simulator's truth, rejection
of frames that cannot be aligned, the fallbacks for the Moon, CFA frames, resume."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from astropy.io import fits

import skystack
from skystack.config import RegistrationConfig
from skystack.pipeline import registration as registration_module
from skystack.pipeline.registration import plan_registration, register_files
from skystack.sim import SessionConfig, write_session

pytestmark = pytest.mark.filterwarnings("ignore::skystack.errors.FrameSkippedWarning")


def _truth_error(truth, row_transform, index: int, reference: int) -> float:
    """RMS px between where the recovered and the true transform put frame ``index``'s stars."""
    points = truth.star_positions(index)
    height, width = truth.config.height, truth.config.width
    inside = (
        (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    )
    points = points[inside]
    true = np.linalg.inv(truth.transforms[reference]) @ truth.transforms[index]
    homogeneous = np.column_stack([points, np.ones(len(points))])
    expected = homogeneous @ true.T
    found = homogeneous @ np.asarray(row_transform).T
    expected = expected[:, :2] / expected[:, 2:]
    found = found[:, :2] / found[:, 2:]
    mapped_inside = (
        (expected[:, 0] >= 0)
        & (expected[:, 0] < width)
        & (expected[:, 1] >= 0)
        & (expected[:, 1] < height)
    )
    diff = (found - expected)[mapped_inside]
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=1))))


def _session(folder, **overrides):
    base = dict(width=1024, height=768, n_lights=6, n_bias=0, n_darks=0, n_flats=0,
                extended="none", shift_px=200.0, rotation_deg=3.0, meridian_flip=True,
                fwhm_px=(1.8, 4.0), hot_pixel_fraction=0.0, dust_count=0)  # fmt: skip
    base.update(overrides)
    return write_session(folder, SessionConfig(**base), seed=17)


@pytest.mark.parametrize("star_count", [50, 2000])
def test_simulated_frames_register_to_truth(tmp_path, star_count):
    truth = _session(tmp_path / "session", star_count=star_count)
    run = register_files(list(truth.lights), tmp_path / "out", RegistrationConfig())
    report = json.loads(run.report.read_text())
    rows = report["frames"]
    assert all(row["accepted"] for row in rows), [row["reason"] for row in rows]
    reference = [str(p) for p in truth.lights].index(report["reference"])
    errors = [
        _truth_error(truth, row["transform"], i, reference)
        for i, row in enumerate(rows)
        if i != reference
    ]
    assert np.median(errors) < 0.1, errors
    assert max(errors) < 0.2, errors
    # half of the frames are flipped by 180 degrees (meridian flip)
    rotations = [
        np.degrees(np.arctan2(row["transform"][1][0], row["transform"][0][0])) for row in rows
    ]
    assert sum(abs(abs(r) - 180.0) < 5.0 for r in rotations) >= 2
    assert len(run.outputs) == 6
    warped = skystack.read(run.outputs[0])
    assert warped.data.shape == (768, 1024)
    assert np.isnan(warped.data).any() or all(
        row["transform"] == report["frames"][0]["transform"] for row in rows[:1]
    )


def test_noise_and_cloud_frames_are_rejected_with_a_reason(tmp_path):
    truth = _session(tmp_path / "session", star_count=300, n_lights=5, meridian_flip=False)
    rng = np.random.default_rng(3)
    noise = rng.normal(2000, 30, (768, 1024)).clip(0, 65535).astype(np.uint16)
    fits.PrimaryHDU(noise).writeto(tmp_path / "noise.fits")
    yy, xx = np.mgrid[0:768, 0:1024]
    cloud = 2000 + 8000 * np.exp(-((xx - 500) ** 2 + (yy - 300) ** 2) / (2 * 300.0**2))
    cloud = (cloud + rng.normal(0, 40, cloud.shape)).astype(np.uint16)
    fits.PrimaryHDU(cloud).writeto(tmp_path / "cloud.fits")
    paths = [*truth.lights, tmp_path / "noise.fits", tmp_path / "cloud.fits"]
    run = register_files(paths, tmp_path / "out", RegistrationConfig())
    rows = {row.path.name: row for row in run.rows}
    assert rows["noise.fits"].accepted is False and rows["cloud.fits"].accepted is False
    assert "stars" in rows["noise.fits"].reason and "stars" in rows["cloud.fits"].reason
    assert all(rows[p.name].accepted for p in truth.lights)
    assert len(run.outputs) == 5


def test_selection_by_percent_and_fwhm(tmp_path):
    truth = _session(tmp_path / "session", star_count=300, n_lights=6, meridian_flip=False)
    plan = plan_registration(list(truth.lights), RegistrationConfig(select_percent=50))
    assert len(plan.selected) == 3
    reasons = [row.reason for row in plan.rows if row.reason]
    assert len(reasons) == 3 and all("best 50%" in r for r in reasons)
    # the reference is the frame with the best score
    scores = [row.score for row in plan.rows]
    assert plan.reference == int(np.argmax(scores))
    fwhms = [row.quality.fwhm for row in plan.rows]
    limit = float(np.median(fwhms))
    plan = plan_registration(list(truth.lights), RegistrationConfig(max_fwhm=limit))
    for row in plan.rows:
        if row.quality.fwhm > limit and row.path != plan.rows[plan.reference].path:
            assert "--max-fwhm" in row.reason


def test_reference_can_be_chosen(tmp_path):
    truth = _session(tmp_path / "session", star_count=200, n_lights=3, meridian_flip=False)
    config = RegistrationConfig(reference=truth.lights[2])
    plan = plan_registration(list(truth.lights), config)
    assert plan.reference == 2


def test_colour_cfa_frames_are_debayered_and_registered(tmp_path):
    truth = _session(tmp_path / "session", star_count=300, n_lights=3, bayer="RGGB",
                     meridian_flip=False, width=640, height=480, shift_px=40.0)  # fmt: skip
    run = register_files(list(truth.lights), tmp_path / "out", RegistrationConfig())
    assert all(row.accepted for row in run.rows)
    frame = skystack.read(run.outputs[1])
    assert frame.data.shape == (480, 640, 3)
    reference = run.rows.index(next(r for r in run.rows if r.path == run.reference))
    for i, row in enumerate(run.rows):
        assert _truth_error(truth, row.match.transform.matrix, i, reference) < 0.15


def _moon_frames(folder, transforms):
    from skimage import data as skdata

    moon = skdata.moon().astype(np.float32) / 255.0
    moon = cv2.resize(moon, (640, 640), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(5)
    paths = []
    for i, matrix in enumerate(transforms):
        # frame i sees the moon such that its pixels map onto frame 0's by ``matrix``
        frame = cv2.warpAffine(moon, np.linalg.inv(matrix)[:2], (640, 640), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        frame = frame + rng.normal(0, 0.005, frame.shape).astype(np.float32)
        path = folder / f"moon_{i}.fits"
        fits.PrimaryHDU((frame.clip(0, 1) * 65535).astype(np.uint16)).writeto(path)
        paths.append(path)
    return paths


def test_lunar_frames_register_by_the_fallbacks(tmp_path):
    from skystack.register.transform import Transform

    transforms = [
        np.eye(3),
        Transform.translation(12.4, -7.7).matrix,
        Transform.similarity(rotation_deg=4.0, shift=(-9.3, 5.1), center=(320, 320)).matrix,
    ]
    paths = _moon_frames(tmp_path, transforms)
    config = RegistrationConfig(reference=paths[0])
    run = register_files(paths, tmp_path / "out", config)
    grid = np.stack(np.meshgrid(np.linspace(160, 480, 5), np.linspace(160, 480, 5)), -1)
    grid = np.column_stack([grid.reshape(-1, 2), np.ones(25)])
    for row, truth in zip(run.rows, transforms, strict=True):
        assert row.accepted, row.reason
        assert row.match.method in ("phase", "orb", "stars")
        found = grid @ row.match.transform.matrix.T
        expected = grid @ truth.T
        assert np.abs(found[:, :2] - expected[:, :2]).max() < 0.2


def test_an_interrupted_run_resumes(tmp_path, monkeypatch):
    truth = _session(tmp_path / "session", star_count=200, n_lights=4, meridian_flip=False,
                     width=512, height=384, shift_px=20.0)  # fmt: skip
    out = tmp_path / "out"
    real_warp = registration_module.warp_image
    calls = {"n": 0}

    def failing_warp(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_warp(*args, **kwargs)

    monkeypatch.setattr(registration_module, "warp_image", failing_warp)
    with pytest.raises(KeyboardInterrupt):
        register_files(list(truth.lights), out, RegistrationConfig())
    partial = tmp_path / "out.partial"
    assert not out.exists() and len(list(partial.glob("*.fits"))) == 2
    monkeypatch.setattr(registration_module, "warp_image", real_warp)
    counted = {"n": 0}

    def counting_warp(*args, **kwargs):
        counted["n"] += 1
        return real_warp(*args, **kwargs)

    monkeypatch.setattr(registration_module, "warp_image", counting_warp)
    run = register_files(list(truth.lights), out, RegistrationConfig())
    assert counted["n"] == 2  # only the frames not written before
    assert all(row.accepted for row in run.rows)
    assert not partial.exists()
    rows = json.loads(run.report.read_text())["frames"]
    assert all(row["transform"] is not None for row in rows)


def test_real_seestar_frames_register_across_a_rotation(shared_data, tmp_path):
    folder = shared_data / "seestar_s50_ngc7023"
    if not folder.is_dir():
        pytest.skip("no Seestar frames")
    frames = sorted(folder.glob("*.fit"))
    # two frames of 2024 and one of 2025, rotated by about -121.5 degrees against them
    paths = [frames[0], frames[1], frames[-1]]
    run = register_files(paths, tmp_path / "out", RegistrationConfig(reference=paths[0]))
    assert all(row.accepted for row in run.rows), [row.reason for row in run.rows]
    same_night, other_year = run.rows[1].match, run.rows[2].match
    assert same_night.n_inliers > 50 and same_night.rms_px < 0.4
    assert other_year.n_inliers > 50 and other_year.rms_px < 0.4
    assert abs(abs(other_year.transform.rotation_deg) - 121.5) < 1.0
    assert abs(same_night.transform.rotation_deg) < 0.5
    assert skystack.read(run.outputs[2]).data.shape == (1920, 1080, 3)


def test_worker_processes_give_the_same_result(tmp_path):
    truth = _session(tmp_path / "session", star_count=200, n_lights=4, meridian_flip=True,
                     width=512, height=384, shift_px=30.0)  # fmt: skip
    serial = register_files(list(truth.lights), tmp_path / "serial", RegistrationConfig(jobs=1))
    parallel = register_files(list(truth.lights), tmp_path / "parallel", RegistrationConfig(jobs=2))
    for a, b in zip(serial.rows, parallel.rows, strict=True):
        assert a.accepted and b.accepted
        np.testing.assert_array_equal(a.match.transform.matrix, b.match.transform.matrix)
    for a, b in zip(serial.outputs, parallel.outputs, strict=True):
        np.testing.assert_array_equal(skystack.read(a).data, skystack.read(b).data)
