"""Run a tool in a child process and measure it: shared by the ``bench_*.py`` scripts.

Not a benchmark itself (``run.py`` runs only ``bench_*.py``); the scripts import it as
``from _child import run_child, last_error`` (their own folder is first on ``sys.path``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["run_child", "last_error"]

# A fresh small process runs each tool and reports its children's peak RSS: a child forked
# straight from a (large) benchmark process would inherit that process's peak as its own on Linux.
_PROBE = (
    "import resource, subprocess, sys; "
    "rc = subprocess.call(sys.argv[2:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "open(sys.argv[1], 'w').write(f'{u.ru_maxrss} {u.ru_utime + u.ru_stime}'); "
    "sys.exit(rc)"
)


def _tree_rss_kib(root: int) -> int:
    """Summed RSS (KiB) of process ``root`` and all its descendants, from /proc."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(text[text.rindex(")") + 2 :].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        frontier = [pid for pid, ppid in parent.items() if ppid in frontier and pid not in tree]
        tree.update(frontier)
    total = 0
    for pid in tree:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total * (os.sysconf("SC_PAGE_SIZE") // 1024)


def run_child(
    command: list[str], log: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``command`` with stdout+stderr to ``log``; wall time, exit code, CPU time, its peak
    RSS (largest single process) and the peak of the summed RSS of its process tree (sampled
    every 0.25 s: tools that run worker processes use more than their largest process)."""
    rss = log.with_suffix(".rss")
    rss.unlink(missing_ok=True)
    tree_peak = 0
    with open(log, "wb") as out:
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", _PROBE, str(rss), *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
        )
        while child.poll() is None:
            tree_peak = max(tree_peak, _tree_rss_kib(child.pid))
            time.sleep(0.25)
        wall = time.perf_counter() - start
    peak = cpu = float("nan")
    if rss.exists():
        kib, seconds = rss.read_text().split()
        peak, cpu = int(kib) / 1024, float(seconds)
    load = os.getloadavg()[0]  # 1-minute load at the end: other work on the machine skews times
    return {"wall_s": wall, "rc": child.returncode, "peak_mb": peak, "cpu_s": cpu,
            "tree_mb": tree_peak / 1024, "load": load, "log": log}  # fmt: skip


def last_error(log: Path) -> str:
    """The last line of ``log`` that looks like an error, else its last line."""
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    errors = [x for x in lines if re.search(r"error|failed|Traceback|No such", x, re.IGNORECASE)]
    return (errors or lines or ["(no output)"])[-1].strip()
