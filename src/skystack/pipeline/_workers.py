"""Worker processes for per-frame steps of large sets (calibration, registration)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

__all__ = ["worker_count", "process_pool", "PARALLEL_INPUT_BYTES"]

PARALLEL_INPUT_BYTES = 100 << 20
"""Input size from which frames are processed by one worker process per CPU."""


def worker_count(jobs: int | None, paths: Sequence[Path]) -> int:
    """``jobs`` if given, else one per CPU for sets of 3+ frames and 100 MB+, else 1."""
    if jobs is not None:
        return max(1, int(jobs))
    total = sum(p.stat().st_size for p in paths if p.is_file())
    cpus = os.cpu_count() or 1
    return cpus if len(paths) >= 3 and total >= PARALLEL_INPUT_BYTES else 1


def _single_threaded(initializer: Callable[..., None] | None, *args: Any) -> None:
    # Each worker handles one frame at a time; the CPUs are shared by the workers instead of
    # by numba's threads inside one frame's kernels.
    import numba

    numba.set_num_threads(1)
    if initializer is not None:
        initializer(*args)


@contextlib.contextmanager
def process_pool(
    workers: int,
    *,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
) -> Iterator[Executor | None]:
    """A process pool of ``workers`` (None for 1: run in this process).

    Workers are forked when that is safe (they start at once, with everything imported): while
    no numba parallel kernel has run in this process, or when numba runs on TBB, which is
    fork-safe. Otherwise (numba's built-in workqueue layer) they are spawned, which re-imports
    the main module: a script calling the pipeline must then do so under
    ``if __name__ == "__main__":`` (or pass ``jobs=1``).
    """
    if workers <= 1:
        yield None
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numba

    try:
        layer: str | None = numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        layer = None
    fork_safe = layer in (None, "tbb") and sys.platform.startswith("linux")
    context = multiprocessing.get_context("fork" if fork_safe else "spawn")
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_single_threaded,
        initargs=(initializer, *initargs),
    ) as pool:
        yield pool
