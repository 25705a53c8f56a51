"""Time reading a 24-megapixel 16-bit FITS file (issue: well under a second).

Usage: python benchmarks/bench_fits_read.py [--repeat 5] [--json FILE]

``--json FILE`` also writes the result as a table for ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

import skystack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the table here (for run.py)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "24mp.fits"
        data = rng.integers(0, 65536, size=(4000, 6000), dtype=np.uint16)
        fits.PrimaryHDU(data).writeto(path)
        skystack.read(path)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            frame = skystack.read(path)
            times.append(time.perf_counter() - start)
        assert frame.data.shape == (4000, 6000)
    print(
        f"read 24 MP uint16 FITS: median {statistics.median(times):.3f} s, "
        f"min {min(times):.3f} s over {args.repeat} runs"
    )
    if args.json is not None:
        row = {"tool": "skystack.read", "median_s": statistics.median(times), "min_s": min(times)}
        table = {
            "benchmark": "fits_read",
            "title": f"read a 24 MP (6000x4000) uint16 FITS file, {args.repeat} runs",
            "columns": [["median_s", "median s", ".3f"], ["min_s", "min s", ".3f"]],
            "rows": [row],
        }
        args.json.write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
