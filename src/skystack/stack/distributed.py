"""The strip engine on ``dask.distributed``: the same strips, combined by Dask workers.

:func:`stack_strips_distributed` cuts the frames into the same horizontal strips as
:func:`skystack.stack.combine.stack_strips` and submits one task per strip to a Dask cluster:
a local one (``scheduler="processes"``, one single-threaded worker process per CPU) or a
running scheduler (``scheduler="tcp://HOST:PORT"``, as printed by ``dask scheduler``). The
client sends only the frame paths and the settings; each task reads its rows of every frame
itself (the frames must be on storage every worker sees under the same path), normalises
them, masks the satellite trails, combines them and returns the strip. The client assembles
the strips into the output arrays as they arrive, so its memory is the output arrays only.

Each strip goes through exactly the code of the local engine (the same
:func:`~skystack.stack.combine._load_strip` and :func:`~skystack.stack.rejection.combine`,
per pixel), so the result equals the local one bit for bit.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from skystack._typing import Image, ProgressCallback
from skystack.errors import ConfigError, MissingFileError
from skystack.io.fits import read_fits_rows
from skystack.stack.combine import StackResult, _load_strip
from skystack.stack.normalize import Normalization
from skystack.stack.rejection import CombineMethod, RejectMethod, combine
from skystack.stack.satellites import SatelliteTrail, trail_mask

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "SCHEDULER_HELP",
    "check_scheduler",
    "is_distributed",
    "local_workers",
    "probe_scheduler",
    "stack_strips_distributed",
]

SCHEDULER_HELP = "threads, processes or a Dask scheduler address tcp://HOST:PORT"
"""The accepted ``--scheduler`` values, for messages and help texts."""

_ADDRESS = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d{1,5})$")


def check_scheduler(value: str) -> str:
    """Validate a ``--scheduler`` value: ``threads``, ``processes`` or ``tcp://HOST:PORT``.

    Parameters
    ----------
    value : str

    Returns
    -------
    str
        ``value`` stripped of surrounding blanks.

    Raises
    ------
    ConfigError
        If ``value`` is none of the accepted forms.
    """
    text = str(value).strip()
    if text in ("threads", "processes"):
        return text
    match = _ADDRESS.match(text)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ConfigError(f"--scheduler must be {SCHEDULER_HELP}, not {value!r}")
    return text


def probe_scheduler(scheduler: str, *, timeout: float = 10.0) -> None:
    """Check that a ``tcp://`` scheduler answers (and has workers), before hours of work.

    Connects a client and closes it again; nothing is done for ``threads`` and ``processes``.

    Raises
    ------
    ConfigError
        ``scheduler`` is malformed, cannot be reached within ``timeout`` seconds, or has no
        worker within another ``timeout`` seconds.
    """
    if check_scheduler(scheduler) in ("threads", "processes"):
        return
    with _connect(scheduler, timeout=timeout):
        pass


def is_distributed(scheduler: str) -> bool:
    """Whether ``scheduler`` runs the strips on Dask (anything but ``threads``)."""
    return check_scheduler(scheduler) != "threads"


def local_workers() -> int:
    """Worker processes that ``scheduler="processes"`` starts: one per CPU available here.

    Each holds one strip at a time, so a memory budget for the whole machine is shared by
    this many strips (divide it by this number before :func:`~skystack.stack.combine.strip_rows`).
    """
    return _cpu_count()


@dataclass(frozen=True)
class _StripJob:
    """Everything a strip task needs besides its rows: sent to the cluster once."""

    paths: tuple[str, ...]
    shape: tuple[int, ...]
    method: CombineMethod
    reject: RejectMethod
    low: float
    high: float
    weights: npt.NDArray[np.float64] | None
    normalizations: tuple[Normalization, ...] | None
    trails: tuple[tuple[SatelliteTrail, ...], ...]
    numba_threads: int | None


_StripOutput = tuple[
    Image,
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    npt.NDArray[np.int32],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
]


def stack_strips_distributed(
    frame_paths: Sequence[Path],
    shape: tuple[int, ...],
    *,
    scheduler: str,
    method: CombineMethod = "mean",
    reject: RejectMethod = "winsorized",
    low: float = 3.0,
    high: float = 3.0,
    weights: npt.ArrayLike | None = None,
    normalizations: Sequence[Normalization] | None = None,
    trails: Sequence[SatelliteTrail] = (),
    rows_per_strip: int = 256,
    progress: ProgressCallback | None = None,
    connect_timeout: float = 10.0,
) -> StackResult:
    """Combine registered FITS frames strip by strip on a Dask cluster.

    The same computation as :func:`skystack.stack.combine.stack_strips` with
    ``read_rows = read_fits_rows(frame_paths[i], start, stop)`` and the trails masked, with one
    Dask task per strip; the result is identical.

    Parameters
    ----------
    frame_paths : sequence of Path
        Registered, uncompressed FITS frames of ``shape``, all on the reference grid. Workers
        open them by these paths (made absolute here): on a cluster they must be on storage
        every worker mounts at the same place.
    shape : tuple
        ``(H, W)`` or ``(H, W, C)`` of every frame.
    scheduler : str
        ``"processes"``: a :class:`distributed.LocalCluster` with one single-threaded worker
        process per CPU is started and closed here. ``"tcp://HOST:PORT"``: a client connects
        to that running scheduler (started with ``dask scheduler``, workers with
        ``dask worker``), which is left running.
    method, reject, low, high, weights
        Passed to :func:`skystack.stack.rejection.combine` (checked here before anything is
        sent to the cluster).
    normalizations : sequence of Normalization, optional
        Per-frame gain and offset applied before combining.
    trails : sequence of SatelliteTrail
        Satellite trails to leave out; ``trail.frame`` indexes ``frame_paths``.
    rows_per_strip : int
        Strip height. Each worker thread holds one strip of all frames and the combine's
        working copies at a time: with ``"processes"`` that is :func:`local_workers` strips
        on this machine at once.
    progress : callable, optional
        ``progress(done_rows, total_rows, "stack")`` as strips arrive (in any order).
    connect_timeout : float
        Seconds to wait for the scheduler at a ``tcp://`` address, and then for its first
        worker.

    Returns
    -------
    StackResult

    Raises
    ------
    ConfigError
        ``scheduler`` is not ``processes`` or ``tcp://HOST:PORT``, the scheduler cannot be
        reached within ``connect_timeout`` or has no worker within another
        ``connect_timeout``, or an option is invalid.
    MissingFileError
        A worker cannot see one of the frames.

    Notes
    -----
    The numba kernels of a task run on one thread with ``"processes"`` (the CPUs are shared
    by the worker processes) and on ``CPUs // worker threads`` threads on a remote worker (one
    worker per machine is expected; ``NUMBA_NUM_THREADS`` in the worker's environment caps
    it). Errors raised by a task (an unreadable frame) are raised here with their own type;
    the strips still queued are cancelled.
    """
    scheduler = check_scheduler(scheduler)
    if scheduler == "threads":
        raise ConfigError(
            "stack_strips_distributed runs on Dask: scheduler must be 'processes' or "
            "tcp://HOST:PORT ('threads' is skystack.stack.combine.stack_strips)"
        )
    n_frames = len(frame_paths)
    if n_frames < 1:
        raise ValueError("stack_strips_distributed needs at least one frame")
    if rows_per_strip < 1:
        raise ValueError(f"rows_per_strip must be at least 1, not {rows_per_strip}")
    if normalizations is not None and len(normalizations) != n_frames:
        raise ValueError(
            f"{len(normalizations)} normalizations for {n_frames} frames: one per frame needed"
        )
    weight_array = None if weights is None else np.asarray(weights, dtype=np.float64)
    # the options are checked here, on a one-pixel cube, not by the first task on a worker
    combine(
        np.zeros((n_frames, 1, 1), dtype=np.float32),
        method=method, reject=reject, low=low, high=high, weights=weight_array,
    )  # fmt: skip
    by_frame: list[list[SatelliteTrail]] = [[] for _ in range(n_frames)]
    for trail in trails:
        if not 0 <= trail.frame < n_frames:
            raise ValueError(f"trail of frame {trail.frame}, but there are {n_frames} frames")
        by_frame[trail.frame].append(trail)
    job = _StripJob(
        paths=tuple(str(Path(p).absolute()) for p in frame_paths),
        shape=tuple(int(s) for s in shape),
        method=method,
        reject=reject,
        low=float(low),
        high=float(high),
        weights=weight_array,
        normalizations=None if normalizations is None else tuple(normalizations),
        trails=tuple(tuple(t) for t in by_frame),
        numba_threads=1 if scheduler == "processes" else None,
    )
    with _client(scheduler, connect_timeout=connect_timeout) as client:
        return _run(client, job, rows_per_strip=rows_per_strip, progress=progress)


@contextlib.contextmanager
def _client(scheduler: str, *, connect_timeout: float) -> Iterator[Client]:
    """A client of a fresh local cluster or of the scheduler at ``scheduler``, closed after
    use (the client before its cluster)."""
    import logging

    from distributed import Client, LocalCluster

    if scheduler == "processes":
        # One single-threaded worker per CPU, numba kept to one thread inside each task: the
        # CPUs are shared by the workers (reading overlaps combining across workers).
        with (
            LocalCluster(
                n_workers=local_workers(),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            yield client
        return
    with _connect(scheduler, timeout=connect_timeout) as client:
        yield client


def _connect(address: str, *, timeout: float) -> Client:
    """A client of the scheduler at ``address`` once it has a worker (``timeout`` seconds
    for each), so that a wrong address or an empty cluster is an error, not a hang."""
    from distributed import Client

    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot connect to the Dask scheduler at {address}: {reason}") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError:
        client.close()
        raise ConfigError(
            f"the Dask scheduler at {address} has no workers after {timeout:g} s; start them "
            f"with 'dask worker {address} --nthreads 1'"
        ) from None
    return client


def _run(
    client: Client, job: _StripJob, *, rows_per_strip: int, progress: ProgressCallback | None
) -> StackResult:
    from distributed import as_completed

    shape = job.shape
    height, n_frames = shape[0], len(job.paths)
    image = np.empty(shape, dtype=np.float32)
    count = np.zeros(shape, dtype=np.uint16)
    low_map = np.zeros(shape, dtype=np.uint16)
    high_map = np.zeros(shape, dtype=np.uint16)
    rejected = np.zeros(n_frames, dtype=np.int64)
    valid = np.zeros(n_frames, dtype=np.int64)
    run = uuid.uuid4().hex  # task keys unique on a scheduler shared by several runs
    job_future = client.scatter(job, hash=False)
    futures = {}
    for start in range(0, height, rows_per_strip):
        stop = min(height, start + rows_per_strip)
        future = client.submit(
            _stack_strip, job_future, start, stop, key=f"skystack-strip-{start}-{run}"
        )
        futures[future.key] = (future, start, stop)
    done = 0
    try:
        for future in as_completed([f for f, _, _ in futures.values()], loop=client.loop):
            _, start, stop = futures.pop(future.key)
            strip_image, strip_count, strip_low, strip_high, strip_rejected, strip_valid = (
                future.result()
            )
            future.release()
            image[start:stop] = strip_image
            count[start:stop] = strip_count
            low_map[start:stop] = strip_low
            high_map[start:stop] = strip_high
            rejected += strip_rejected
            valid += strip_valid
            done += stop - start
            if progress is not None:
                progress(done, height, "stack")
    finally:
        if futures:  # an error or an interrupt: drop the strips still queued
            client.cancel([f for f, _, _ in futures.values()])
        job_future.release()
    rejected_f = rejected.astype(np.float64)
    valid_f = valid.astype(np.float64)
    fraction = np.divide(rejected_f, valid_f, out=np.zeros_like(rejected_f), where=valid_f > 0)
    return StackResult(
        image=image, count=count, low=low_map, high=high_map, rejected_fraction=fraction
    )


def _stack_strip(job: _StripJob, start: int, stop: int) -> _StripOutput:
    """The task: rows ``start:stop`` of every frame, read, normalised, masked and combined.

    Returns the strip's image, count, low and high maps, and per frame the values rejected
    and the values with data (for the rejected fractions).
    """
    n_frames = len(job.paths)

    def read_rows(i: int, a: int, b: int) -> Image:
        return _read_rows(job.paths[i], a, b)

    def mask_rows(i: int, a: int, b: int) -> npt.NDArray[np.bool_] | None:
        if not job.trails[i]:
            return None
        return trail_mask(job.shape, job.trails[i], rows=slice(a, b))

    with _numba_threads(job.numba_threads):
        cube = _load_strip(
            read_rows,
            n_frames,
            start,
            stop,
            job.normalizations,
            mask_rows if any(job.trails) else None,
        )
        result = combine(
            cube, method=job.method, reject=job.reject, low=job.low, high=job.high,
            weights=job.weights,
        )  # fmt: skip
    valid = np.isfinite(cube).reshape(n_frames, -1).sum(axis=1, dtype=np.int64)
    return (
        result.image,
        result.count,
        result.low,
        result.high,
        result.rejected_per_frame.astype(np.int64),
        valid,
    )


def _read_rows(path: str, start: int, stop: int) -> Image:
    if not os.path.isfile(path):
        import socket

        raise MissingFileError(
            f"{path}: not found on the Dask worker on {socket.gethostname()}; the frames must "
            "be on storage that every worker sees under the same path"
        )
    return read_fits_rows(Path(path), start, stop)


@contextlib.contextmanager
def _numba_threads(requested: int | None) -> Iterator[None]:
    """Run the block's numba kernels on ``requested`` threads (numba's setting is per
    thread). ``None``: this machine's CPUs shared among the worker's threads."""
    import numba

    if requested is None:
        requested = max(1, _cpu_count() // _worker_threads())
    wanted = max(1, min(int(requested), numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _worker_threads() -> int:
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError):  # not inside a Dask worker
        return 1


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
