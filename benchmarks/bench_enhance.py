"""``skystack enhance`` on a 24 MP colour stack: wall time and peak memory per setting.

A stacked colour image is simulated with :func:`skystack.sim.render_stack` (default 6000x4000,
a galaxy and a nebula, ``--stars`` stars, a sky gradient, the noise of a 20-frame mean) and
written as 32-bit FITS. Then ``skystack enhance IN.fits -o OUT.tif --jpeg OUT.jpg`` runs in a
child process once per setting (the defaults, each background model, each stretch, star
reduction, each sharpening method), and the wall time, CPU time and peak RSS of the child are
printed with the per-step times the command reports. Issue 6's target: under 30 s with the
defaults on this 2-core machine.

Usage: python benchmarks/bench_enhance.py [--width 6000] [--height 4000] [--stars 6000]
       [--seed 1] [--keep DIR] [--only default]
``--keep DIR`` works in DIR and keeps it (the simulated stack is reused when present).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _child import last_error, run_child

SETTINGS: dict[str, list[str]] = {
    "default": [],
    "rbf": ["--background", "rbf"],
    "tiles": ["--background", "tiles"],
    "asinh": ["--stretch", "asinh"],
    "ghs": ["--stretch", "ghs"],
    "reduce": ["--stars", "reduce"],
    "unsharp": ["--sharpen", "unsharp"],
    "log": ["--sharpen", "log"],
    "deconv": ["--sharpen", "deconv"],
    "linear": ["--stretch", "none"],
}


def simulate(path: Path, width: int, height: int, stars: int, seed: int) -> float:
    """Write the simulated stack to ``path``; return the seconds it took."""
    import numpy as np

    from skystack.io import write
    from skystack.sim import SessionConfig, make_session, render_stack

    start = time.perf_counter()
    config = SessionConfig(
        width=width,
        height=height,
        bayer="RGGB",
        star_count=stars,
        extended="both",
        galaxy_size=0.08,
        sky_gradient=(0.3, -0.2),
        sky_gradient_quadratic=0.1,
    )
    session = make_session(config, seed=seed)
    image = render_stack(session, 20, rng=np.random.default_rng(seed))
    write(image, path, overwrite=True)
    return time.perf_counter() - start


def skystack_binary() -> str:
    found = Path(sys.executable).with_name("skystack")
    return str(found) if found.exists() else "skystack"


def run_setting(source: Path, out_dir: Path, name: str, extra: list[str]) -> dict[str, object]:
    output = out_dir / f"{name}.tif"
    command = [
        skystack_binary(), "enhance", str(source), "-o", str(output),
        "--jpeg", str(out_dir / f"{name}.jpg"), "--overwrite", *extra,
    ]  # fmt: skip
    run = run_child(command, out_dir / f"{name}.log")
    lines = run["log"].read_text(errors="replace").splitlines()
    steps = [line for line in lines if line.startswith("steps:")]
    if run["rc"] != 0:
        sys.stderr.write(f"{name}: {last_error(run['log'])}\n")
    return {
        "name": name,
        "exit": run["rc"],
        "wall": run["wall_s"],
        "cpu": run["cpu_s"],
        "rss_mb": run["peak_mb"],
        "steps": steps[0][len("steps: ") :] if steps else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--stars", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--only", nargs="*", choices=sorted(SETTINGS), default=None)
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_enhance_"))
    work.mkdir(parents=True, exist_ok=True)
    source = work / f"stack_{args.width}x{args.height}_{args.stars}_{args.seed}.fits"
    try:
        if source.exists():
            print(f"reusing {source}")
        else:
            seconds = simulate(source, args.width, args.height, args.stars, args.seed)
            print(f"simulated {source.name} in {seconds:.1f} s")
        print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
        print(f"{'setting':<9} {'exit':>4} {'wall s':>7} {'cpu s':>7} {'peak MB':>8}  steps")
        failures = 0
        default_wall = None
        for name in args.only or list(SETTINGS):
            row = run_setting(source, work, name, SETTINGS[name])
            failures += row["exit"] != 0
            if name == "default" and row["exit"] == 0:
                default_wall = row["wall"]
            print(
                f"{row['name']:<9} {row['exit']:>4} {row['wall']:>7.1f} {row['cpu']:>7.1f} "
                f"{row['rss_mb']:>8.0f}  {row['steps']}",
                flush=True,
            )
        if default_wall is not None and args.width * args.height >= 24_000_000:
            verdict = "met" if default_wall < 30.0 else "NOT met"
            print(f"target: defaults under 30 s on 2 cores: {default_wall:.1f} s, {verdict}")
        return 1 if failures else 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
