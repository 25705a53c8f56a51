"""A long fuzzing run of every reader: the strategies of tests/trust/test_fuzz_readers.py, many more
examples.

The test suite runs 1,000 examples per format (``tests/trust/test_fuzz_readers.py``, a few
seconds each). This script imports that module and runs the same mutations (header bytes and
fields, text-header numbers, random bytes, truncation, splices; compressed FITS mutated inside and
out) for as many examples as asked, format after format, under an address-space limit so that an
attempt to allocate a huge image fails loudly instead of swapping. Each example must end in a
:class:`~skystack.frame.Frame` of float32 ``(H, W)``/``(H, W, 3)`` data or a
:class:`~skystack.errors.SkystackError` with a one-line message naming the file, not caused by a
``MemoryError``, and without allocating more than 64 MiB (``tracemalloc``).

A failure is shrunk by hypothesis to a minimal mutation list, printed, and the damaged file is kept
as ``OUT/failing.<format>`` (``OUT/failing.imh`` with its ``.pix`` for IRAF) for a regression
test in ``tests/trust/test_bad_inputs.py``; the run goes on with the next format and exits with
code 1 if any format failed.

Usage (from the repository root, with the project's venv)::

    .venv/bin/python benchmarks/fuzz_long.py                       # 100,000 examples per format
    .venv/bin/python benchmarks/fuzz_long.py --examples 20000 --formats fits ser xisf
    .venv/bin/python benchmarks/fuzz_long.py --seed 7 --out /tmp/fuzz --memory-gb 4

Formats (``--formats``): ``fits fits.gz fits.bz2 fits.fz tif dng png jpg ser xisf imh avi`` and
``pix`` (the IRAF pixel file behind a valid header). An example takes 2-10 ms (tile-compressed
FITS and AVI are the slowest), so the default run, 100,000 examples of each of the 13 targets,
takes two to three hours on one core; ``--no-trace`` is faster but skips the allocation check.
``--seed`` makes a run repeatable; without it every run explores new inputs. ``--memory-gb`` is
an absolute address-space limit (``RLIMIT_AS``), 4 GB by default, well above what the process
needs with every reader loaded. Set ``OPENCV_LOG_LEVEL=SILENT`` to quieten OpenCV's complaints
about the damaged videos and images; LibRaw and libpng print theirs regardless.
"""

from __future__ import annotations

import argparse
import faulthandler
import importlib.util
import logging
import resource
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

__all__ = ["main"]

_ROOT = Path(__file__).resolve().parents[1]
_FUZZ_MODULE = _ROOT / "tests" / "trust" / "test_fuzz_readers.py"


def _load_fuzz_module() -> Any:
    spec = importlib.util.spec_from_file_location("skystack_trust_fuzz", _FUZZ_MODULE)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {_FUZZ_MODULE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _limit_address_space(gigabytes: float) -> None:
    if gigabytes <= 0:
        return
    limit = int(gigabytes * 2**30)
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _run_format(
    fuzz: Any, target: Any, folder: Path, good: dict[str, bytes], args: argparse.Namespace
) -> bool:
    from hypothesis import HealthCheck, given, seed, settings

    out = Path(args.out)
    counts = {"frame": 0, "error": 0}

    @settings(
        max_examples=args.examples,
        deadline=None,
        database=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(fuzz.mutations(target))
    def run(pair: Any) -> None:
        if target.suffix == "pix":
            path = folder / "fuzzpix.imh"
            path.with_suffix(".pix").unlink(missing_ok=True)
            path.with_suffix(".pix").write_bytes(fuzz.mutated_bytes(target, pair))
        else:
            path = fuzz.write_case(folder, target, fuzz.mutated_bytes(target, pair), good)
        try:
            counts[fuzz.check_outcome(path, trace=not args.no_trace)] += 1
        except BaseException:
            out.mkdir(parents=True, exist_ok=True)
            keep = out / f"failing.{path.name.split('.', 1)[1]}"
            shutil.copyfile(path, keep)
            if path.suffix == ".imh":
                shutil.copyfile(path.with_suffix(".pix"), keep.with_suffix(".pix"))
            raise

    if args.seed is not None:
        run = seed(args.seed)(run)
    start = time.perf_counter()
    try:
        run()
    except Exception:  # a finding: report it and go on with the next format
        print(f"FAIL {target.suffix}: failing file kept in {out}", flush=True)
        traceback.print_exc(limit=-8)
        return False
    finally:
        seconds = time.perf_counter() - start
        print(
            f"{target.suffix:9s} {sum(counts.values()):7d} examples in {seconds:7.1f} s: "
            f"{counts['frame']} frames, {counts['error']} skystack errors",
            flush=True,
        )
    return True


def main(argv: list[str] | None = None) -> int:
    """Run the long fuzzing session; exit code 0 when every format held."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="examples per format")
    parser.add_argument("--formats", nargs="*", help="suffixes to fuzz (default: all, and pix)")
    parser.add_argument("--seed", type=int, default=None, help="repeatable run")
    parser.add_argument("--out", default="fuzz-findings", help="folder for failing files")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="RLIMIT_AS; 0: none")
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc check")
    args = parser.parse_args(argv)

    faulthandler.enable()  # a crash in native code prints the Python traceback
    fuzz = _load_fuzz_module()
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)  # the readers' complaints about damaged files
    with tempfile.TemporaryDirectory(prefix="skystack-fuzz-") as tmp:
        folder = Path(tmp)
        good = fuzz.good_bytes_with_pixels(folder / "good")
        targets = fuzz.make_targets(good)
        targets["pix"] = fuzz.pixel_target(good)
        fuzz.builders.write_iraf(
            folder / "fuzzpix.imh", write_pixels=False, pixfile="HDR$fuzzpix.pix"
        )
        chosen = args.formats or list(targets)
        unknown = [name for name in chosen if name not in targets]
        if unknown:
            parser.error(f"unknown formats {unknown}; choose from {', '.join(targets)}")
        _limit_address_space(args.memory_gb)
        failed = [
            name for name in chosen if not _run_format(fuzz, targets[name], folder, good, args)
        ]
    if failed:
        print(f"failing formats: {', '.join(failed)}")
        return 1
    print("all formats held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
