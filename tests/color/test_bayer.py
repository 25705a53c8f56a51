"""Bayer pattern helpers: colour maps, pattern shifts, crops, planes and mosaicking."""

from __future__ import annotations

import numpy as np
import pytest

from skystack._typing import CFA_PATTERNS
from skystack.color.bayer import (
    as_pattern,
    cfa_planes,
    channel_index,
    channel_map,
    channel_masks,
    crop_cfa,
    mosaic,
    pattern_offsets,
    shift_pattern,
)
from skystack.errors import ConfigError, GeometryError
from skystack.sim.sensor import cfa_channel_map
from skystack.sim.sensor import mosaic as sim_mosaic

EXPECTED_INDEX = {
    "RGGB": [[0, 1], [1, 2]],
    "BGGR": [[2, 1], [1, 0]],
    "GRBG": [[1, 0], [2, 1]],
    "GBRG": [[1, 2], [0, 1]],
}


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_channel_index(pattern):
    np.testing.assert_array_equal(channel_index(pattern), EXPECTED_INDEX[pattern])


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
@pytest.mark.parametrize("shape", [(4, 6), (5, 7), (1, 3)])
def test_channel_map_matches_the_simulator(pattern, shape):
    cmap = channel_map(shape, pattern)
    assert cmap.dtype == np.int8 and cmap.shape == shape
    np.testing.assert_array_equal(cmap, cfa_channel_map(shape, pattern))


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_channel_masks_partition_the_sites(pattern):
    masks = channel_masks((6, 9), pattern)
    assert masks.shape == (3, 6, 9) and masks.dtype == bool
    np.testing.assert_array_equal(masks.sum(axis=0), 1)
    # A quarter red, half green, a quarter blue (6 x 8 even part).
    assert masks[:, :, :8].sum(axis=(1, 2)).tolist() == [12, 24, 12]
    np.testing.assert_array_equal(masks.argmax(axis=0), channel_map((6, 9), pattern))


def test_shift_pattern_table():
    assert shift_pattern("RGGB", dx=1) == "GRBG"
    assert shift_pattern("RGGB", dy=1) == "GBRG"
    assert shift_pattern("RGGB", dx=1, dy=1) == "BGGR"
    assert shift_pattern("GRBG", dx=1, dy=1) == "GBRG"
    for pattern in CFA_PATTERNS:
        assert shift_pattern(pattern, dx=0, dy=0) == pattern
        assert shift_pattern(pattern, dx=2, dy=4) == pattern
        assert shift_pattern(pattern, dx=-1, dy=3) == shift_pattern(pattern, dx=1, dy=1)
        # Shifting back undoes a shift.
        assert shift_pattern(shift_pattern(pattern, dx=1, dy=0), dx=-1, dy=0) == pattern


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
@pytest.mark.parametrize(("x0", "y0"), [(0, 0), (1, 0), (0, 1), (3, 5), (2, 2)])
def test_crop_cfa_keeps_colours(pattern, x0, y0, rng):
    rgb = rng.random((12, 15, 3), dtype=np.float32)
    full = mosaic(rgb, pattern)
    cropped, new_pattern = crop_cfa(full, pattern, x0=x0, y0=y0, width=7, height=6)
    assert cropped.shape == (6, 7)
    assert new_pattern == shift_pattern(pattern, dx=x0, dy=y0)
    # The crop is what the new pattern says it is.
    np.testing.assert_array_equal(cropped, mosaic(rgb[y0 : y0 + 6, x0 : x0 + 7], new_pattern))
    cropped[0, 0] = -1.0  # a copy: the input is untouched
    assert full[y0, x0] != -1.0


def test_crop_cfa_rejects_boxes_outside():
    image = np.zeros((10, 12), dtype=np.float32)
    with pytest.raises(
        GeometryError, match=r"x0=8, y0=0, width=5, height=3 does not fit in a 12x10"
    ):
        crop_cfa(image, "RGGB", x0=8, y0=0, width=5, height=3)
    with pytest.raises(GeometryError, match="non-empty"):
        crop_cfa(image, "RGGB", x0=0, y0=0, width=0, height=3)
    with pytest.raises(GeometryError, match=r"2-D mosaic \(H, W\), got shape \(10, 12, 3\)"):
        crop_cfa(np.zeros((10, 12, 3)), "RGGB", x0=0, y0=0, width=2, height=2)


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_cfa_planes_are_labelled_by_colour(pattern):
    rgb = np.empty((6, 7, 3), dtype=np.float32)
    rgb[...] = (1.0, 2.0, 3.0)
    image = mosaic(rgb, pattern)
    planes = cfa_planes(image, pattern)
    assert np.all(planes.r == 1.0) and np.all(planes.b == 3.0)
    assert np.all(planes.g1 == 2.0) and np.all(planes.g2 == 2.0)
    for name, plane in planes.items():
        row, col = planes.offsets[name]
        np.testing.assert_array_equal(plane, image[row::2, col::2])
        assert not plane.flags.writeable
        assert planes[name] is plane
    # g1 shares the red sites' row, g2 the blue sites' row.
    assert planes.offsets["g1"][0] == planes.offsets["r"][0]
    assert planes.offsets["g2"][0] == planes.offsets["b"][0]
    assert pattern_offsets(pattern) == planes.offsets
    with pytest.raises(KeyError, match="no CFA plane 'g'"):
        planes["g"]  # type: ignore[index]


@pytest.mark.parametrize("pattern", CFA_PATTERNS)
def test_mosaic_matches_the_simulator(pattern, rng):
    rgb = rng.random((9, 11, 3), dtype=np.float32)
    out = mosaic(rgb, pattern)
    assert out.dtype == np.float32 and out.shape == (9, 11)
    np.testing.assert_array_equal(out, sim_mosaic(rgb, pattern))
    cmap = channel_map(out.shape, pattern)
    np.testing.assert_array_equal(out, np.take_along_axis(rgb, cmap[..., None], axis=2)[..., 0])


def test_mosaic_needs_rgb():
    with pytest.raises(GeometryError, match=r"RGB image \(H, W, 3\), got shape \(4, 4\)"):
        mosaic(np.zeros((4, 4)), "RGGB")


def test_pattern_validation():
    assert as_pattern("gbrg") == "GBRG"
    with pytest.raises(ConfigError, match="unknown CFA pattern 'RGBG'; expected one of RGGB, BGGR"):
        channel_index("RGBG")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown CFA pattern None"):
        as_pattern(None)
    with pytest.raises(ConfigError, match="unknown CFA pattern 'XTRANS'"):
        shift_pattern("XTRANS", dx=1)  # type: ignore[arg-type]
