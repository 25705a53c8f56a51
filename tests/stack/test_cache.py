"""The on-disk frame cache returns exactly what was stored, band by band."""

from __future__ import annotations

import numpy as np
import pytest

from skystack.errors import GeometryError
from skystack.stack.cache import FrameCache, rows_per_band


@pytest.mark.parametrize("shape", [(17, 9), (10, 6, 3)])
def test_bands_reassemble_the_frames(tmp_path, rng, shape):
    frames = rng.normal(size=(5, *shape)).astype(np.float32)
    with FrameCache(tmp_path, shape=shape) as cache:
        for frame in frames:
            cache.append(frame)
        bands = [cache.read_rows(start, start + 4) for start in range(0, shape[0], 4)]
        np.testing.assert_array_equal(np.concatenate(bands, axis=1), frames)
        np.testing.assert_array_equal(cache.read_frame(3), frames[3])
        with pytest.raises(GeometryError):
            cache.append(np.zeros((2, 2), np.float32))
        path = cache.path
    assert not path.exists()


def test_rows_per_band_respects_the_budget():
    rows = rows_per_band(50, (4000, 6000), memory_bytes=1 << 30, copies=4)
    assert rows % 2 == 0 and 2 <= rows
    assert rows * 6000 * 4 * 50 * 4 <= 1 << 30
    assert rows_per_band(1, (10, 10), memory_bytes=1 << 30) == 10
