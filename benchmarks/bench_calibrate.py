"""Calibration throughput and peak memory: N lights of W x H (default 50 x 24 MP) with 5 bias,
5 darks and 5 flats, through ``skystack calibrate`` in a child process.

Peak memory is the child's maximum resident set size (what ``/usr/bin/time -v`` reports); run
with two frame counts to see that it does not grow with N.

Usage: python benchmarks/bench_calibrate.py [--quick] [--frames 50 10] [--width 6000]
       [--height 4000] [--debayer none|bilinear|vng] [--json FILE]

``--quick``: 10 and 5 lights of 2000x1500 (explicit options override it). ``--json FILE`` also
writes the table for ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits


def _write_frames(
    folder: Path, count: int, shape: tuple[int, int], kind: str, level: float
) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(kind))
    base = 800.0 + rng.normal(0, 3, shape[1]).astype(np.float32)[None, :]
    for index in range(count):
        noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(max(5.0, level**0.5))
        data = np.clip(base + level + noise, 0, 65535).astype(np.uint16)
        header = fits.Header({"IMAGETYP": kind, "EXPTIME": 60.0, "BAYERPAT": "RGGB"})
        fits.PrimaryHDU(data, header).writeto(folder / f"{kind}_{index:04d}.fits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, nargs="+", default=None, help="50 10")
    parser.add_argument("--width", type=int, default=None, help="6000")
    parser.add_argument("--height", type=int, default=None, help="4000")
    parser.add_argument("--debayer", default="none")
    parser.add_argument("--quick", action="store_true", help="10 and 5 lights of 2000x1500")
    parser.add_argument("--json", type=Path, help="also write the table here (for run.py)")
    args = parser.parse_args()
    args.frames = args.frames or ([10, 5] if args.quick else [50, 10])
    args.width = args.width or (2000 if args.quick else 6000)
    args.height = args.height or (1500 if args.quick else 4000)
    rows = []
    shape = (args.height, args.width)
    skystack = Path(sys.executable).with_name("skystack")
    with tempfile.TemporaryDirectory(prefix="bench-calibrate-") as tmp:
        root = Path(tmp)
        _write_frames(root / "bias", 5, shape, "Bias Frame", 0.0)
        _write_frames(root / "darks", 5, shape, "Dark Frame", 30.0)
        _write_frames(root / "flats", 5, shape, "Flat Field", 25000.0)
        _write_frames(root / "lights", max(args.frames), shape, "Light Frame", 1500.0)
        lights = sorted((root / "lights").glob("*.fits"))
        for count in args.frames:
            out = root / f"out{count}"
            command = [str(skystack), "calibrate", *map(str, lights[:count]), "--bias",
                       str(root / "bias"), "--darks", str(root / "darks"), "--flats",
                       str(root / "flats"), "--debayer", args.debayer, "-o", str(out)]  # fmt: skip
            # A fresh wrapper process per run, so each peak is that run's own.
            probe = (
                "import resource, subprocess, sys; "
                "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
            )
            start = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-c", probe, *command], check=True, capture_output=True, text=True
            )
            elapsed = time.perf_counter() - start
            peak_mb = int(result.stdout.split()[-1]) / 1024
            rows.append({"tool": f"skystack calibrate, {count} lights", "wall_s": elapsed,
                         "s_per_frame": elapsed / count, "peak_mb": peak_mb})  # fmt: skip
            print(
                f"calibrate {count} x {args.width}x{args.height} (debayer {args.debayer}): "
                f"{elapsed:.1f} s, {elapsed / count:.2f} s/frame, peak RSS {peak_mb:.0f} MB",
                flush=True,
            )
            shutil.rmtree(out)
    if args.json is not None:
        table = {
            "benchmark": "calibrate",
            "title": f"calibrate: lights of {args.width}x{args.height} uint16 with 5 bias, 5 "
            f"darks, 5 flats (debayer {args.debayer}); peak RSS must not grow with N",
            "columns": [
                ["wall_s", "wall s", ".1f"],
                ["s_per_frame", "s/frame", ".2f"],
                ["peak_mb", "peak RSS MB", ".0f"],
            ],
            "rows": rows,
        }
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
