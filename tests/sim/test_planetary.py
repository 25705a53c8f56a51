"""Planetary SER videos: frame count, reproducibility, truth, and sharp frames being closest."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest
from scipy.stats import spearmanr

import skystack
from skystack.errors import ConfigError
from skystack.io.ser import SerReader
from skystack.sim import (
    PlanetaryConfig,
    PlanetaryTruth,
    make_planetary,
    render_planetary_frame,
    write_planetary_ser,
)

CONFIG = PlanetaryConfig(width=160, height=120, n_frames=48)


def _aligned_error(frame: np.ndarray, clean: np.ndarray, offset: np.ndarray) -> float:
    """rms difference to the clean image after undoing the frame's global offset."""
    dx, dy = offset
    shift = np.array([[1.0, 0.0, -dx], [0.0, 1.0, -dy]])
    back = cv2.warpAffine(
        frame.astype(np.float32),
        shift,
        frame.shape[1::-1],
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
    )
    # back(x, y) = frame(x - dx, y - dy), which shows the clean image at (x, y)
    m = 16
    diff = back[m:-m, m:-m] - clean[m:-m, m:-m]
    return float(np.sqrt(np.mean(diff**2)))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("planetary") / "jupiter.ser"
    return write_planetary_ser(path, CONFIG, seed=4)


def test_ser_has_the_configured_frames(video):
    raw = video.path.read_bytes()
    assert raw[:14] == b"LUCAM-RECORDER"
    width, height, depth, count = struct.unpack("<4i", raw[26:42])
    assert (width, height, depth, count) == (160, 120, 8, 48)
    with SerReader(video.path) as ser:
        assert len(ser) == 48
        stamps = ser.timestamps
        assert stamps is not None and len(stamps) == 48
        session = make_planetary(CONFIG, seed=4)
        for k in (0, 17, 47):
            np.testing.assert_array_equal(ser.raw(k), render_planetary_frame(session, k))
    assert video.offsets.shape == (48, 2) and video.blur_sigma.shape == (48,)


def test_sharpest_frames_are_closest_to_truth(video):
    clean = skystack.read(video.clean).data
    assert clean.shape == (120, 160)
    errors = []
    with SerReader(video.path) as ser:
        for k in range(len(ser)):
            errors.append(_aligned_error(ser[k].data, clean, video.offsets[k]))
    errors = np.array(errors)
    order = np.argsort(video.blur_sigma)
    assert errors[order[:8]].mean() < 0.7 * errors[order[-8:]].mean()
    assert spearmanr(video.blur_sigma, errors).statistic > 0.8
    assert video.blur_sigma.min() < 0.8 < 2.0 < video.blur_sigma.max()


def test_same_seed_same_bytes(tmp_path, video):
    again = write_planetary_ser(tmp_path / "again.ser", CONFIG, seed=4)
    assert again.path.read_bytes() == video.path.read_bytes()
    assert again.clean.read_bytes() == video.clean.read_bytes()
    other = write_planetary_ser(tmp_path / "other.ser", CONFIG, seed=5)
    assert other.path.read_bytes() != video.path.read_bytes()
    loaded = PlanetaryTruth.load(video.path)
    assert loaded.config == CONFIG
    np.testing.assert_array_equal(loaded.offsets, video.offsets)


def test_moon_rgb_16_bit_and_bayer(tmp_path):
    moon = PlanetaryConfig(
        width=96, height=64, n_frames=3, target="moon", color="rgb", bit_depth=16
    )
    truth = write_planetary_ser(tmp_path / "moon.ser", moon, seed=1)
    frame = skystack.read(truth.path, index=1)
    assert frame.data.shape == (64, 96, 3)
    clean = skystack.read(truth.clean).data
    assert clean.shape == (64, 96, 3)
    lit = clean.mean(axis=2) > 0.05
    assert lit.mean() > 0.8  # the surface fills the frame
    bayer = PlanetaryConfig(width=64, height=48, n_frames=2, color="bayer", bayer="BGGR")
    truth = write_planetary_ser(tmp_path / "bayer.ser", bayer, seed=1)
    frame = skystack.read(truth.path)
    assert frame.data.shape == (48, 64) and frame.meta.cfa == "BGGR"


def test_invalid_planetary_config():
    with pytest.raises(ConfigError, match="bit_depth"):
        PlanetaryConfig(bit_depth=12)
    with pytest.raises(ConfigError, match="blur_px"):
        PlanetaryConfig(blur_px=(3.0, 1.0))
