"""Writing sessions to disk: layout, headers, byte-identical reruns and the truth round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import skystack
from skystack.errors import FormatError, MissingFileError
from skystack.sim import (
    SessionConfig,
    SessionTruth,
    light_star_positions,
    make_session,
    render_dark,
    render_light,
    write_session,
)

SMALL = SessionConfig(
    width=96,
    height=64,
    n_lights=3,
    n_bias=2,
    n_darks=2,
    n_flats=2,
    n_dark_flats=2,
    star_count=40,
    bayer="GRBG",
    trail_lights=(1,),
    cloudy_lights=(2,),
    cosmic_ray_rate=400.0,
    extended="both",
)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def default_session(tmp_path_factory):
    root = tmp_path_factory.mktemp("default")
    return write_session(root, seed=3)


def test_default_layout_and_headers(default_session):
    truth = default_session
    config = SessionConfig()
    assert truth.config == config
    root = truth.directory
    assert [p.name for p in truth.lights] == [f"light_{i:04d}.fits" for i in range(1, 13)]
    assert len(truth.darks) == len(truth.flats) == len(truth.bias) == 5
    assert truth.dark_flats == ()
    assert not (root / "darkflats").exists()
    frame = skystack.read(truth.lights[4])
    meta = frame.meta
    assert frame.data.shape == (384, 512) and frame.data.dtype == np.float32
    assert meta.kind == "light" and meta.exposure == config.exposure_s
    assert meta.camera == "skystack-sim" and meta.cfa is None
    assert meta.temperature == config.temperature_c and meta.gain == config.gain_setting
    assert meta.date_obs is not None and meta.date_obs.isoformat().startswith("2025-03-01T21:04")
    assert skystack.read(truth.darks[0]).meta.kind == "dark"
    assert skystack.read(truth.flats[0]).meta.kind == "flat"
    bias = skystack.read(truth.bias[0])
    assert bias.meta.kind == "bias" and bias.meta.exposure == 0.0


def test_files_hold_the_rendered_frames(default_session):
    truth = default_session
    session = make_session(truth.config, seed=truth.seed)
    light = np.rint(skystack.read(truth.lights[7]).data * 65535).astype(np.uint16)
    np.testing.assert_array_equal(light, render_light(session, 7))
    dark = np.rint(skystack.read(truth.darks[1]).data * 65535).astype(np.uint16)
    np.testing.assert_array_equal(dark, render_dark(session, 1))
    bias_map = skystack.read(truth.bias_map).data
    np.testing.assert_array_equal(bias_map, session.sensor.bias)
    flat = skystack.read(truth.flat_field).data
    np.testing.assert_array_equal(flat, session.sensor.flat_field)
    assert skystack.read(truth.scene).data.shape == (384, 512)


def test_truth_round_trip(default_session):
    truth = default_session
    session = make_session(truth.config, seed=truth.seed)
    np.testing.assert_array_equal(truth.transforms[0], np.eye(3))
    for plan, t, fwhm in zip(session.lights, truth.transforms, truth.fwhm_px, strict=True):
        np.testing.assert_allclose(t, plan.transform, atol=1e-12)
        assert fwhm == plan.fwhm_px
    assert len(truth.stars) == len(session.stars)
    np.testing.assert_allclose(truth.stars.x, session.stars.x, atol=1e-6)
    np.testing.assert_allclose(truth.stars.flux, session.stars.flux, rtol=1e-9)
    np.testing.assert_allclose(truth.star_positions(5), light_star_positions(session, 5), atol=1e-5)
    assert truth.hot_pixels.shape == (len(session.sensor.hot.x), 3)
    data = json.loads(truth.truth_json.read_text())
    assert data["lights"][0]["transform"] == np.eye(3).tolist()
    assert data["sensor"]["gain_e_per_adu"] == 1.0


def test_hot_pixels_in_the_written_darks(default_session):
    truth = default_session
    dark = skystack.read(truth.darks[0]).data
    saturated = np.array([k == "saturated" for k in truth.hot_pixel_kinds])
    xs = truth.hot_pixels[saturated, 0].astype(int)
    ys = truth.hot_pixels[saturated, 1].astype(int)
    assert len(xs) and (dark[ys, xs] == 1.0).all()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = write_session(tmp_path / "a", SMALL, seed=21)
    write_session(tmp_path / "b", SMALL, seed=21)
    write_session(tmp_path / "c", SMALL, seed=22)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert files_a == files_b
    files_c = _files(tmp_path / "c")
    assert files_a.keys() == files_c.keys()
    assert files_a["lights/light_0001.fits"] != files_c["lights/light_0001.fits"]
    assert len(a.dark_flats) == 2 and a.dark_flats[0].name == "darkflat_0001.fits"
    assert skystack.read(a.dark_flats[0]).meta.kind == "dark-flat"
    assert skystack.read(a.lights[0]).meta.cfa == "GRBG"
    assert skystack.read(a.scene).data.shape == (64, 96, 3)
    assert [t.light for t in a.trails] == [1]
    assert a.cloudy == (False, False, True)
    assert sum(len(c) for c in a.cosmic_rays) > 0
    reloaded = SessionTruth.load(tmp_path / "a")
    assert reloaded.config == SMALL and reloaded.trails == a.trails


def test_rng_argument_and_missing_truth(tmp_path):
    config = SessionConfig(width=48, height=32, n_lights=1, n_bias=0, n_darks=0, n_flats=0)
    truth = write_session(tmp_path / "r", config, rng=np.random.default_rng(5))
    assert truth.seed == make_session(config, rng=np.random.default_rng(5)).seed
    with pytest.raises(MissingFileError, match="no session truth"):
        SessionTruth.load(tmp_path / "nothing")
    (tmp_path / "bad" / "truth").mkdir(parents=True)
    (tmp_path / "bad" / "truth" / "truth.json").write_text('{"format": "other"}')
    with pytest.raises(FormatError, match="not a skystack-sim session truth"):
        SessionTruth.load(tmp_path / "bad")
