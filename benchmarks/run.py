"""Run every benchmark script in this folder and print their figures (``make bench``).

Each ``bench_*.py`` is a standalone script that prints its own measurements; this runner only
starts them one after the other with the same interpreter, so ``make bench`` is one command.
Peers (Siril, astroalign + ccdproc) join as the stacking benchmarks land.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    folder = Path(__file__).resolve().parent
    failures = 0
    for script in sorted(folder.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(script)], check=False)
        print(f"   ({time.perf_counter() - start:.1f} s, exit {result.returncode})", flush=True)
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
