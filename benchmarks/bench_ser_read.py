"""Time and peak memory of reading every frame of a SER file, for a large and a small file.

Writes temporary SER files in /tmp (16-bit mono 1920x1080 frames by default), iterates all their
frames with :class:`skystack.io.ser.SerReader` in a child process per file, and prints the time and
the child's peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` in the child: the number
``/usr/bin/time -v`` prints, which counts touched pages of mapped files). A reader that keeps the
file mapped grows with the file; skystack's stays flat.

The files are read right after being written, so they come from the page cache: the time measures
the reader, not the disk.

Usage::

    python benchmarks/bench_ser_read.py                 # 1024 MB against 100 MB
    python benchmarks/bench_ser_read.py --size-mb 4096 --compare-mb 256
    python benchmarks/bench_ser_read.py --quick         # 128 MB against 32 MB

``--json FILE`` also writes the table for ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["main"]

MIB = 1024 * 1024


def _frames(count: int, height: int, width: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(1)
    base = rng.integers(0, np.iinfo(dtype).max, size=(height, width), dtype=dtype, endpoint=True)
    for k in range(count):
        yield np.roll(base, k, axis=1)


def _write(path: Path, size_mb: float, args: argparse.Namespace) -> tuple[int, float]:
    from skystack.io.ser import write_ser

    dtype = np.dtype(np.uint8 if args.bit_depth == 8 else np.uint16)
    frame_bytes = args.height * args.width * dtype.itemsize
    count = max(1, round(size_mb * MIB / frame_bytes))
    start = time.perf_counter()
    write_ser(_frames(count, args.height, args.width, dtype), path, bit_depth=args.bit_depth)
    return count, time.perf_counter() - start


def _measure(path: Path | None, *, naive: bool = False) -> dict[str, float]:
    """Run a child that reads every frame of ``path`` (or only imports, if None)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child"]
    if path is not None:
        command.append(str(path))
    if naive:
        command.append("--naive")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout)


def _child(path: str | None, *, naive: bool) -> int:
    from skystack.io._scale import integer_to_float
    from skystack.io.ser import SER_HEADER_SIZE, SerReader

    frames = 0
    checksum = 0.0
    start = time.perf_counter()
    if path is not None and naive:
        # For comparison: one memory map of the whole file, kept open while iterating.
        with SerReader(path) as reader:
            header, count = reader.header, len(reader)
        stack = np.memmap(
            path, dtype=header.dtype, mode="r", offset=SER_HEADER_SIZE,
            shape=(count, *header.shape),
        )  # fmt: skip
        for samples in stack:
            checksum += float(integer_to_float(samples)[::97, ::97].sum())
            frames += 1
        del stack
    elif path is not None:
        with SerReader(path) as reader:
            for frame in reader:
                checksum += float(frame.data[::97, ::97].sum())
                frames += 1
    seconds = time.perf_counter() - start
    # The child's own peak RSS as the kernel counts it (what /usr/bin/time -v prints, touched
    # pages of mapped files included); ru_maxrss is in KiB on Linux, in bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mib = peak / MIB if sys.platform == "darwin" else peak / 1024
    result = {"frames": frames, "seconds": seconds, "checksum": checksum, "peak_rss_mib": peak_mib}
    print(json.dumps(result))
    return 0


def _json_row(label: str, frames: int, size_mib: float, result: dict) -> dict:
    rate = size_mib / result["seconds"] if result["seconds"] > 0 else 0.0
    return {"tool": label, "frames": frames, "size_mib": size_mib, "read_s": result["seconds"],
            "rate": rate, "peak_mb": result["peak_rss_mib"]}  # fmt: skip


def _row(label: str, frames: int, size_mib: float, write_s: float | None, result: dict) -> str:
    write = "-" if write_s is None else f"{write_s:.2f}"
    rate = size_mib / result["seconds"] if result["seconds"] > 0 else 0.0
    return (
        f"{label:>22} {frames:>7} {size_mib:>9.1f} {write:>8} {result['seconds']:>7.2f} "
        f"{rate:>10.0f} {result['peak_rss_mib']:>13.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0 when peak memory does not grow with the file size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=None, help="large file (MiB): 1024")
    parser.add_argument(
        "--compare-mb", type=float, default=None, help="small file (MiB): 100; 0 to skip"
    )
    parser.add_argument("--quick", action="store_true", help="128 MiB against 32 MiB")
    parser.add_argument("--json", type=Path, help="also write the table here (for run.py)")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), default=16)
    parser.add_argument("--tmp", default="/tmp", help="folder for the temporary files")
    parser.add_argument(
        "--no-naive", action="store_true", help="skip the whole-file np.memmap comparison"
    )
    parser.add_argument("--child", nargs="?", const="", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--naive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        return _child(args.child or None, naive=args.naive)
    if args.size_mb is None:
        args.size_mb = 128.0 if args.quick else 1024.0
    if args.compare_mb is None:
        args.compare_mb = 32.0 if args.quick else 100.0
    table_rows = []

    sizes = sorted({s for s in (args.compare_mb, args.size_mb) if s > 0})
    frame_mib = args.width * args.height * (1 if args.bit_depth == 8 else 2) / MIB
    print(
        f"SER read benchmark: {args.width}x{args.height} mono {args.bit_depth}-bit frames "
        f"({frame_mib:.2f} MiB each), files in {args.tmp} (read from the page cache)"
    )
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} cores")
    header = (
        f"{'reader, file':>22} {'frames':>7} {'size MiB':>9} {'write s':>8} {'read s':>7} "
        f"{'read MiB/s':>10} {'peak RSS MiB':>13}"
    )
    print(header)
    print("-" * len(header))
    base = _measure(None)
    print(f"{'imports only':>22} {'-':>7} {'-':>9} {'-':>8} {'-':>7} {'-':>10} "
          f"{base['peak_rss_mib']:>13.1f}")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory(prefix="skystack-bench-", dir=args.tmp) as folder:
        for size in sizes:
            path = Path(folder) / f"bench_{size:g}MiB.ser"
            count, write_s = _write(path, size, args)
            size_mib = path.stat().st_size / MIB
            result = _measure(path)
            if result["frames"] != count:
                raise SystemExit(f"read {result['frames']} frames of {count}")
            rows.append((size_mib, result["peak_rss_mib"]))
            print(_row(f"SerReader, {size:g} MiB", count, size_mib, write_s, result))
            table_rows.append(_json_row(f"SerReader, {size:g} MiB", count, size_mib, result))
            if size == sizes[-1] and not args.no_naive:
                naive = _measure(path, naive=True)
                print(_row(f"np.memmap, {size:g} MiB", count, size_mib, None, naive))
                table_rows.append(_json_row(f"np.memmap, {size:g} MiB", count, size_mib, naive))
            path.unlink()
    if args.json is not None:
        table_rows.insert(0, {"tool": "imports only", "peak_mb": base["peak_rss_mib"]})
        table = {
            "benchmark": "ser_read",
            "title": f"read every frame of a SER file: {args.width}x{args.height} mono "
            f"{args.bit_depth}-bit, from the page cache; peak RSS must not grow with the file",
            "columns": [
                ["frames", "frames", ""],
                ["size_mib", "size MiB", ".0f"],
                ["read_s", "read s", ".2f"],
                ["rate", "MiB/s", ".0f"],
                ["peak_mb", "peak RSS MiB", ".1f"],
            ],
            "rows": table_rows,
        }
        args.json.write_text(json.dumps(table, indent=1))
    if len(rows) == 2:
        (small_mib, small_rss), (big_mib, big_rss) = rows
        print(
            f"SerReader: file {big_mib / small_mib:.1f}x larger -> peak RSS "
            f"{big_rss - small_rss:+.1f} MiB ({big_rss / small_rss:.2f}x); above the imports: "
            f"{small_rss - base['peak_rss_mib']:.1f} vs {big_rss - base['peak_rss_mib']:.1f} MiB"
        )
        flat = big_rss - small_rss < 4 * frame_mib + 16
        print("memory stays flat" if flat else "MEMORY GROWS WITH THE FILE")
        return 0 if flat else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
