"""Siril 1.0.6 as a stacking peer: calibrate, register and stack a folder of FITS lights headless.

    python benchmarks/peers/siril_stack.py [--bias DIR] [--darks DIR] [--flats DIR]
        [--method wsc|ksc|mean|median] [--transforms FILE.json] [--keep] [--dry-run]
        LIGHTS_DIR OUT.fits

Needs ``siril-cli`` (Debian/Ubuntu: ``apt-get install -y siril``; ``benchmarks/run.py``
installs it when missing). Standard library only: the driver adds no Python import to the
time and memory measured. It writes a Siril script (``--dry-run`` prints it) like Siril's own
``Mono_Preprocessing.ssf``, runs ``siril-cli -s SCRIPT`` in a fresh work folder under /tmp, and
moves the result to ``OUT.fits``:

    master bias = stack bias rej w 3 3 -nonorm            (average, winsorized 3/3)
    master dark = stack dark rej w 3 3 -nonorm            (darks CONTAIN the bias: same exposure)
    master flat = preprocess flat -bias; stack pp_flat rej w 3 3 -norm=mul
    lights      = preprocess light -dark -flat            (-bias only when there are no darks)
    register    = register pp_light                       (global star alignment, homography)
    stack       = stack r_pp_light rej w 3 3 -norm=addscale  (--method wsc, the default)

``--method``: ``wsc`` winsorized sigma clipping, ``ksc`` kappa-sigma clipping, ``mean`` (Siril
1.0.6 has no "no rejection": kappa 100/100, which rejects nothing), ``median``.

Siril 1.0.6 pitfalls this driver handles (see ``benchmarks/peers/README.md``):

* the GUI binary needs a display: ``siril-cli`` does not; ``XDG_CONFIG_HOME`` points into the
  work folder so every run starts from Siril's defaults (no saved preferences leak in);
* float FITS are taken to be in [0, 1]: frames in ADU would be clipped to 1.0 without a word, so
  only integer FITS (BITPIX 8/16/32) are accepted (the simulator writes uint16);
* registration may drop frames it cannot match and still exit 0: the number of frames stacked
  (Siril's "Integration of N images") is printed as ``FRAMES_STACKED N/M``;
* a result Siril marks ``ROWORDER='TOP-DOWN'`` is stored bottom-up: it is flipped back (astropy,
  after the run) so that its pixels line up with the input arrays;
* the work folder must not contain spaces (``-out=`` is not quoted by Siril).

Output: ``OUT.fits``, 32-bit float in Siril's [0, 1] scale (ADU / 65535 for 16-bit input).
``--transforms FILE.json`` writes ``{"reference": i, "frames": [{"file", "transform"}, ...]}``:
per light (sorted file names, as Siril numbers them), the 3x3 matrix mapping its pixel ``(x, y,
1)`` (0-based, rows as numpy reads the file) onto the reference light's, parsed from the
"Transformation Matrix" blocks of Siril's log (printed with 5 decimals); null when Siril skipped
the frame. Printed at the end: ``SIRIL_STAGES masters= calibrate= register= stack=`` (Siril's
own "Execution time" per command), ``FRAMES_STACKED``, ``WALL_TIME_S total=``. Exit status:
Siril's (1 when the script failed), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FITS_EXTS = (".fit", ".fits", ".fts")
STACK_ARGS = {
    "wsc": "rej w 3 3 -norm=addscale",
    "ksc": "rej s 3 3 -norm=addscale",
    "mean": "rej s 100 100 -norm=addscale",
    "median": "median -norm=addscale",
}


def _fits_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FITS_EXTS)
    if not files:
        raise SystemExit(f"no FITS files (.fit/.fits/.fts) in {folder}")
    return files


def _check_integer(folder: Path) -> None:
    """Refuse float FITS: Siril 1.0.6 would clip ADU data to 1.0 silently."""
    first = _fits_files(folder)[0]
    head = first.read_bytes()[:2880].decode("ascii", errors="replace")
    match = re.search(r"BITPIX\s*=\s*(-?\d+)", head)
    if match is None or int(match.group(1)) < 0:
        raise SystemExit(
            f"{first}: float FITS (BITPIX {match.group(1) if match else '?'}); Siril 1.0.6 "
            "takes float data to be in [0,1] and clips ADU values, give integer frames"
        )


def _script(args: argparse.Namespace, seq: Path, result: Path) -> str:
    lines = ["requires 1.0.0", "setext fits"]
    for folder, name, stack in (
        (args.bias, "bias", "stack bias rej w 3 3 -nonorm -out=master_bias"),
        (args.darks, "dark", "stack dark rej w 3 3 -nonorm -out=master_dark"),
    ):
        if folder:
            lines += [f'cd "{folder}"', f"convert {name} -out={seq}", f"cd {seq}", stack]
    if args.flats:
        lines += [f'cd "{args.flats}"', f"convert flat -out={seq}", f"cd {seq}"]
        if args.bias:
            lines += ["preprocess flat -bias=master_bias", "stack pp_flat rej w 3 3 -norm=mul"]
        else:
            lines += ["stack flat rej w 3 3 -norm=mul"]
        lines[-1] += " -out=master_flat"
    lines += [f'cd "{args.lights}"', f"convert light -out={seq}", f"cd {seq}"]
    calibration = ""
    if args.darks:
        calibration += " -dark=master_dark"
    elif args.bias:
        calibration += " -bias=master_bias"
    if args.flats:
        calibration += " -flat=master_flat"
    sequence = "light"
    if calibration:
        lines.append(f"preprocess light{calibration}")
        sequence = "pp_light"
    lines += [
        f"register {sequence}",
        f"stack r_{sequence} {STACK_ARGS[args.method]} -out={result}",
        "close",
    ]
    return "\n".join(lines) + "\n"


def _seconds(text: str) -> float:
    """Seconds of an "Execution time" value: "850.00 ms", "7.12 s", "1 min 3.20 s"."""
    units = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
    return sum(float(v) * units[u] for v, u in re.findall(r"([0-9.]+)\s*(ms|min|s|h)\b", text))


def _stages(log: str) -> dict[str, float]:
    """Siril's own time per command, summed into masters / calibrate / register / stack."""
    timed: list[tuple[str, float]] = []
    command = ""
    for line in log.splitlines():
        if m := re.search(r"Running command: *(\w+)", line):
            command = m.group(1)
        elif m := re.search(r"Execution time: *(.+)$", line):
            timed.append((command, _seconds(m.group(1))))
    out = {"masters": 0.0, "calibrate": 0.0, "register": 0.0, "stack": 0.0}
    at = next((i for i, (c, _) in enumerate(timed) if c == "register"), None)
    for i, (c, seconds) in enumerate(timed):
        if at is None or i < at - 1 or (i == at - 1 and c != "preprocess"):
            out["masters"] += seconds
        elif i == at - 1:
            out["calibrate"] += seconds
        elif i == at:
            out["register"] += seconds
        else:
            out["stack"] += seconds
    return out


def _matmul(a: list[list[float]], b: list[list[float]]) -> list[list[float]]:
    return [[sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)] for i in range(3)]


def _transforms(log: str, count: int, height: int) -> dict[str, object]:
    """Per light, Siril's matrix onto the reference in numpy's row order (or None)."""
    lines = log.splitlines()
    start = next((i for i, x in enumerate(lines) if "Running command: register" in x), 0)
    reference, last_read = 0, None
    for line in lines[start:]:
        if m := re.search(r"Reading FITS: file \D*?(\d+)\.fits", line):
            last_read = int(m.group(1)) - 1
        if "Reference Image" in line and last_read is not None:
            reference = last_read
            break
    # Siril counts y from the last row: conjugate its matrix with y -> H - 1 - y.
    number = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
    row_re = re.compile(rf"^\s*({number})\s+({number})\s+({number})\s*$")
    matrices: list[list[list[float]] | None] = [None] * count
    for k, line in enumerate(lines[start:], start):
        if not line.startswith("Transformation Matrix"):
            continue
        rows = [row_re.match(x) for x in lines[k + 1 : k + 4]]
        done = re.search(r"Matching stars in image (\d+): done", " ".join(lines[k + 4 : k + 5]))
        if all(rows) and done and 0 < int(done.group(1)) <= count:
            m = [[float(v) for v in r.groups()] for r in rows]  # type: ignore[union-attr]
            flip = [[1.0, 0.0, 0.0], [0.0, -1.0, height - 1.0], [0.0, 0.0, 1.0]]
            flipped = _matmul(flip, _matmul(m, flip))
            matrices[int(done.group(1)) - 1] = flipped
    matrices[reference] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    skipped = {int(n) - 1 for n in re.findall(r"Image (\d+) skipped", log)}
    for index in skipped:
        if 0 <= index < count:
            matrices[index] = None
    return {"reference": reference, "matrices": matrices}


def _height(path: Path) -> int:
    head = path.read_bytes()[:2880].decode("ascii", errors="replace")
    match = re.search(r"NAXIS2\s*=\s*(\d+)", head)
    if match is None:
        raise SystemExit(f"{path}: no NAXIS2 in the first header block")
    return int(match.group(1))


def _finish(result: Path, out: Path) -> bool:
    """Move Siril's result to ``out``, flipped to numpy row order if Siril stored it top-down."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if b"ROWORDER= 'TOP-DOWN'" not in result.read_bytes()[:28800]:
        shutil.move(result, out)
        return False
    import numpy as np
    from astropy.io import fits

    with fits.open(result) as hdul:
        data = np.ascontiguousarray(np.asarray(hdul[0].data, dtype=np.float32)[..., ::-1, :])
        header = hdul[0].header.copy()
    del header["ROWORDER"]
    fits.PrimaryHDU(data, header=header).writeto(out, overwrite=True)
    return True


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("lights", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--bias", type=Path)
    parser.add_argument("--darks", type=Path)
    parser.add_argument("--flats", type=Path)
    parser.add_argument("--method", choices=sorted(STACK_ARGS), default="wsc")
    parser.add_argument("--transforms", type=Path, help="write the registration matrices here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--dry-run", action="store_true", help="print the Siril script only")
    args = parser.parse_args(argv)
    for name in ("lights", "bias", "darks", "flats"):
        folder = getattr(args, name)
        if folder is not None:
            if not folder.is_dir():
                parser.error(f"not a folder: {folder}")
            setattr(args, name, folder.resolve())
    if args.dry_run:
        print(_script(args, Path("/tmp/siril_stack.WORK/seq"), Path("/tmp/siril_stack.WORK/r")))
        return 0
    if shutil.which("siril-cli") is None:
        print("siril-cli not found (apt-get install -y siril)", file=sys.stderr)
        return 2
    for folder in (args.lights, args.bias, args.darks, args.flats):
        if folder is not None:
            _check_integer(folder)

    work = Path(tempfile.mkdtemp(prefix="siril_stack.", dir="/tmp"))
    seq, result = work / "seq", work / "result"
    seq.mkdir()
    script = work / "script.ssf"
    script.write_text(_script(args, seq, result))
    log_path = work / "siril.log"
    env = dict(os.environ, XDG_CONFIG_HOME=str(work / "xdg"))
    t0 = time.perf_counter()
    with open(log_path, "wb") as log_file:
        rc = subprocess.call(
            ["siril-cli", "-s", str(script)], stdout=log_file, stderr=subprocess.STDOUT, env=env
        )
    siril_s = time.perf_counter() - t0
    log = log_path.read_text(errors="replace")
    summary = re.compile(
        r"^log: (Found \d+ stars in reference|Total: .*registered|Integration of|"
        r"Cannot perform star matching|.*skipped|Error|Script execution)"
    )
    for line in log.splitlines():
        if summary.match(line):
            print("siril: " + line[5:])
    stages = _stages(log)
    print("SIRIL_STAGES " + " ".join(f"{k}={v:.2f}" for k, v in stages.items()))
    done = result.with_suffix(".fits")
    if rc != 0 or not done.exists():
        print(f"Siril failed (exit {rc}); log kept: {log_path}", file=sys.stderr)
        print("\n".join(log.splitlines()[-20:]), file=sys.stderr)
        return rc or 1

    lights = _fits_files(args.lights)
    stacked = re.findall(r"Integration of (\d+) images", log)
    print(f"FRAMES_STACKED {stacked[-1] if stacked else '?'}/{len(lights)}")
    if args.transforms is not None:
        found = _transforms(log, len(lights), _height(lights[0]))
        frames = [
            {"file": p.name, "transform": m}
            for p, m in zip(lights, found["matrices"], strict=True)  # type: ignore[arg-type]
        ]
        args.transforms.write_text(json.dumps({"reference": found["reference"], "frames": frames}))
    if _finish(done, args.output.resolve()):
        print("result flipped vertically (Siril marked it ROWORDER='TOP-DOWN')")
    if args.keep:
        print(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"output: {args.output}")
    print(f"WALL_TIME_S total={time.perf_counter() - start:.2f} siril={siril_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
