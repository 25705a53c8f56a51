"""``skystack process`` on a simulated night: first run, a second run, and a stretch-only re-run.

A session with two filters and two exposures (one-shot-colour camera; lights, darks, flats and
bias per folder) is simulated, then ``skystack process SESSION`` runs in a child process three
times: from scratch, again with the same settings (issue 8's target: under 10 % of the first
run's time), and with only ``--stretch asinh`` changed (the stacks must be reused). Wall time,
CPU time and peak RSS of each run are printed.

Usage: python benchmarks/bench_process.py [--width 2048] [--height 1536] [--lights 10]
       [--keep DIR]
``--keep DIR`` works in DIR and keeps it (the simulated session is reused when present).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _child import last_error, run_child

FILTERS = {"Ha": 6.0, "OIII": 4.0}
EXPOSURES = (60.0, 120.0)


def simulate(session: Path, width: int, height: int, lights: int) -> float:
    """Write the session under ``session``; return the seconds it took."""
    from skystack.sim import SessionConfig, write_session

    start = time.perf_counter()
    for name, rate in FILTERS.items():
        for exposure in EXPOSURES:
            folder = session / f"{name}_{exposure:.0f}s"
            if (folder / "truth" / "truth.json").is_file():
                continue
            config = SessionConfig(
                width=width, height=height, n_lights=lights, n_bias=5, n_darks=5, n_flats=5,
                star_count=width * height // 2000, exposure_s=exposure,
                sky_level_e=rate * exposure, filter=name, target="M42", bayer="RGGB",
            )  # fmt: skip
            write_session(folder, config, seed=3)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--lights", type=int, default=10)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_process_"))
    work.mkdir(parents=True, exist_ok=True)
    session = work / "night"
    seconds = simulate(session, args.width, args.height, args.lights)
    frames = len(FILTERS) * len(EXPOSURES) * args.lights
    print(f"session: {frames} lights of {args.width}x{args.height} (RGGB) in 4 groups, "
          f"simulated in {seconds:.1f} s")  # fmt: skip
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    found = Path(sys.executable).with_name("skystack")
    executable = str(found) if found.exists() else "skystack"
    command = [executable, "process", str(session), "-o", str(out)]
    runs = {}
    for label, extra in (("first run", []), ("same settings", []),
                         ("--stretch asinh", ["--stretch", "asinh"])):  # fmt: skip
        result = run_child([*command, *extra], work / f"{label.replace(' ', '_')}.log")
        if result["rc"] != 0:
            print(f"{label}: failed ({last_error(result['log'])})")
            return 1
        runs[label] = result
        print(f"{label:>16}: {result['wall_s']:7.1f} s wall, {result['cpu_s']:7.1f} s CPU, "
              f"peak RSS {result['peak_mb']:6.0f} MB, load {result['load']:.1f}")  # fmt: skip
    ratio = runs["same settings"]["wall_s"] / runs["first run"]["wall_s"]
    verdict = "met" if ratio < 0.10 else "NOT met"
    print(f"second run / first run: {ratio:.1%} (target under 10 %: {verdict})")
    print(f"report: {out / 'report.html'}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
