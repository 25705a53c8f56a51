"""The strip engine on dask.distributed gives the local engine's result, on a LocalCluster."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

import skystack
from skystack.errors import ConfigError, MissingFileError
from skystack.io.fits import read_fits_rows
from skystack.stack.combine import stack_strips
from skystack.stack.distributed import (
    check_scheduler,
    is_distributed,
    probe_scheduler,
    stack_strips_distributed,
)
from skystack.stack.normalize import frame_stats, normalization
from skystack.stack.satellites import SatelliteTrail, trail_mask

HEIGHT, WIDTH = 90, 64
ROWS = 16  # 6 strips, the last one short
N_FRAMES = 6


@pytest.fixture(scope="module")
def scheduler_address():
    """A 2-process LocalCluster shared by the tests of this module (a few seconds to start)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


def _frames(tmp_path, *, channels: int | None = None, seed: int = 7):
    """Registered-like float32 FITS frames: a star field with other sky level and gain per
    frame, NaN borders of different widths (warped footprints), a few hot outliers, and a
    trail in frame 2. Returns the paths, the shape, the normalizations and the trails."""
    rng = np.random.default_rng(seed)
    shape = (HEIGHT, WIDTH) if channels is None else (HEIGHT, WIDTH, channels)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    sky = np.zeros((HEIGHT, WIDTH), np.float32)
    for x, y in rng.uniform((4, 4), (WIDTH - 4, HEIGHT - 4), size=(12, 2)):
        sky += np.float32(rng.uniform(0.05, 0.5)) * np.exp(
            -((xx - x) ** 2 + (yy - y) ** 2) / 4.0
        ).astype(np.float32)
    if channels is not None:
        sky = np.repeat(sky[..., None], channels, axis=-1) * np.float32([1.0, 0.8, 0.6])
    trail = SatelliteTrail(frame=2, start=(0.0, 10.0), end=(WIDTH - 1.0, 75.0), width=4.0)
    paths = []
    for i in range(N_FRAMES):
        level, gain = 0.1 + 0.01 * i, 1.0 + 0.05 * i
        data = (level + gain * sky + rng.normal(0, 0.01, shape)).astype(np.float32)
        data[: 1 + i % 3] = np.nan
        data[:, WIDTH - 1 - i :] = np.nan
        ys, xs = rng.integers(0, HEIGHT, 4), rng.integers(0, WIDTH, 4)
        data[ys, xs] = 0.9
        if i == trail.frame:
            data[trail_mask(shape, [trail])] += np.float32(0.3)
        path = tmp_path / f"frame_{i}.fits"
        skystack.write(data, path)
        paths.append(path)
    stats = [frame_stats(skystack.read(p).data) for p in paths]
    norms = [normalization(s, stats[0], method="additive-scale") for s in stats]
    return paths, shape, norms, [trail]


def _local(paths, shape, norms, trails, **options):
    by_frame = {i: [t for t in trails if t.frame == i] for i in range(len(paths))}

    def read_rows(i, start, stop):
        return read_fits_rows(paths[i], start, stop)

    def mask_rows(i, start, stop):
        if not by_frame[i]:
            return None
        return trail_mask(shape, by_frame[i], rows=slice(start, stop))

    return stack_strips(
        read_rows, len(paths), shape, normalizations=norms, mask_rows=mask_rows,
        rows_per_strip=ROWS, **options,
    )  # fmt: skip


def _assert_same(result, expected):
    np.testing.assert_allclose(result.image, expected.image, rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(result.count, expected.count)
    np.testing.assert_array_equal(result.low, expected.low)
    np.testing.assert_array_equal(result.high, expected.high)
    np.testing.assert_allclose(result.rejected_fraction, expected.rejected_fraction, rtol=1e-12)


@pytest.mark.parametrize(
    ("channels", "options"),
    [
        (None, {"method": "mean", "reject": "winsorized", "weights": np.linspace(0.5, 1.5, 6)}),
        (3, {"method": "median", "reject": "sigma", "low": 2.5, "high": 2.5}),
    ],
    ids=["mono-winsorized-weighted", "colour-sigma-median"],
)
def test_cluster_result_equals_local(tmp_path, scheduler_address, channels, options):
    paths, shape, norms, trails = _frames(tmp_path, channels=channels)
    expected = _local(paths, shape, norms, trails, **options)
    calls = []
    result = stack_strips_distributed(
        paths, shape, scheduler=scheduler_address, normalizations=norms, trails=trails,
        rows_per_strip=ROWS, progress=lambda *a: calls.append(a), **options,
    )  # fmt: skip
    _assert_same(result, expected)
    # the same bits, not only the same within rounding: each strip runs the same code
    np.testing.assert_array_equal(result.image, expected.image)
    assert result.image.dtype == np.float32 and result.count.dtype == np.uint16
    # the data is really there: outliers rejected, the trail masked, NaN outside every frame
    assert expected.high.sum() > 0 and result.rejected_fraction[2] > 0
    assert np.isnan(result.image[0]).all() and np.isfinite(result.image[HEIGHT // 2, :20]).all()
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    assert calls[-1] == (HEIGHT, HEIGHT, "stack") and len(calls) == -(-HEIGHT // ROWS)


def test_processes_starts_and_stops_a_local_cluster(tmp_path):
    paths, shape, norms, trails = _frames(tmp_path, seed=11)
    expected = _local(paths, shape, norms, trails)
    result = stack_strips_distributed(
        paths, shape, scheduler="processes", normalizations=norms, trails=trails,
        rows_per_strip=ROWS,
    )  # fmt: skip
    _assert_same(result, expected)


def test_frame_missing_on_the_workers(tmp_path, scheduler_address):
    paths, shape, norms, _ = _frames(tmp_path)
    paths[3].unlink()
    with pytest.raises(MissingFileError, match="frame_3.fits: not found on the Dask worker"):
        stack_strips_distributed(
            paths, shape, scheduler=scheduler_address, normalizations=norms, rows_per_strip=ROWS
        )


def test_unreachable_scheduler_is_a_one_line_config_error(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    began = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        stack_strips_distributed(
            [tmp_path / "a.fits"], (4, 4), scheduler=address, rows_per_strip=4,
            connect_timeout=1.0,
        )  # fmt: skip
    assert time.monotonic() - began < 8.0
    message = str(caught.value)
    assert message.startswith(f"cannot connect to the Dask scheduler at {address}: ")
    assert "\n" not in message


def test_options_checked_before_connecting(tmp_path):
    # an invalid rejection is reported at once, without reaching the (absent) scheduler
    with pytest.raises(ConfigError):
        stack_strips_distributed(
            [tmp_path / "a.fits"] * 3, (4, 4), scheduler="tcp://127.0.0.1:9", reject="bogus",
            rows_per_strip=4,
        )  # fmt: skip
    with pytest.raises(ConfigError, match="'threads' is skystack.stack.combine.stack_strips"):
        stack_strips_distributed([tmp_path / "a.fits"], (4, 4), scheduler="threads")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("threads", False),
        ("processes", True),
        ("tcp://node01:8786", True),
        (" tcp://10.0.0.5:8786 ", True),
        ("tcp://[::1]:8786", True),
    ],
)
def test_check_scheduler_accepts(value, expected):
    assert check_scheduler(value) == value.strip()
    assert is_distributed(value) is expected


@pytest.mark.parametrize(
    "value", ["thread", "node01:8786", "tcp://node01", "tcp://node01:0", "http://node01:8786", ""]
)
def test_check_scheduler_rejects(value):
    with pytest.raises(ConfigError, match="--scheduler must be threads, processes or"):
        check_scheduler(value)


def test_probe_scheduler(scheduler_address, tmp_path):
    probe_scheduler(scheduler_address, timeout=5.0)
    probe_scheduler("processes")  # nothing to check: no cluster is started
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConfigError, match="cannot connect to the Dask scheduler at tcp://"):
        probe_scheduler(f"tcp://127.0.0.1:{port}", timeout=1.0)


def test_scheduler_without_workers_is_an_error_not_a_hang(tmp_path):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=0, processes=False, protocol="tcp://", dashboard_address=":0"
    ) as cluster:
        with pytest.raises(ConfigError, match="has no workers after 1 s; start them with"):
            stack_strips_distributed(
                [tmp_path / "a.fits"], (4, 4), scheduler=cluster.scheduler_address,
                rows_per_strip=4, connect_timeout=1.0,
            )  # fmt: skip
