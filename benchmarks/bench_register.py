"""Registration speed and accuracy, side by side in one run on the same simulated frames.

N uint16 FITS lights (default 10 x 4000x3000 = 12 MP) are simulated with shifts up to
``--shift`` px per axis, a field rotation growing to ``--rotation`` degrees and a meridian flip
(the second half of the lights turned by 180 degrees). Each tool then runs in its own child
process (its peak RSS is the child's ``ru_maxrss``), one after the other:

* ``skystack detect+match``: per frame ``skystack.io.read``, ``find_stars`` and ``match_stars`` to
  light 0's stars (every frame, light 0 included, is detected once; read time is not counted).
* ``astroalign register``: ``astroalign.register(frame, light0)`` per frame (it detects both images
  and warps, bicubic); ``astroalign find_transform``: ``find_transform(frame, ref_points)`` with
  light 0's control points detected once (detection + matching only, what ``skystack
  detect+match`` does). Its transform gives astroalign's accuracy. Failures (MaxIterError,
  too few stars) are counted.
* ``skystack register``: the whole step as the CLI runs it (quality pass, reference choice,
  matching, Lanczos warp, float32 FITS written), wall time of the process including start-up.
* ``Siril 1.0.6``: ``convert`` + ``register`` (global star alignment, homography; writes
  ``r_light_*``) via ``siril-cli -s``; time of the ``register`` command from Siril's own
  "Execution time" line. Frames registered from "Total: F failed, R registered"; transforms
  parsed from the "Transformation Matrix" blocks of its log (printed with 5 decimals, which limits
  the accuracy measurable to ~0.02 px). Skipped when ``siril-cli`` is missing.

Accuracy of a frame: RMS over the truth star positions inside the frame of
``|recovered(p) - truth(p)|`` px in the registration reference's coordinates (the simulator's
truth transform, composed with the reference's when the reference is not light 0); the
median and the maximum over the registered frames are printed.

Usage: python benchmarks/bench_register.py [--quick] [--frames 10] [--width 4000]
       [--height 3000] [--shift 200] [--rotation 4] [--no-flip] [--star-count 1000] [--seed 1]
       [--skip astroalign siril] [--keep DIR] [--json FILE]
``--quick`` is the small set: 6 lights of 1024x1024 with shifts up to 100 px (explicit options
override it). ``--json FILE`` also writes the table for ``benchmarks/run.py`` (see there): s/frame,
peak RSS, frames registered and the accuracy per tool, with the ratios of astroalign to ``skystack
detect+match`` and of Siril to ``skystack register (whole)``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _child import run_child

SIRIL = "siril-cli"
TOOLS = ("skystack-dm", "astroalign", "skystack-register", "siril")


# --------------------------------------------------------------------------- child processes


def _worker_skystack(lights: list[Path]) -> dict[str, Any]:
    from skystack.detect import find_stars, luminance
    from skystack.errors import RegistrationError
    from skystack.io import read
    from skystack.register.match import match_stars

    # Warm-up on a corner of light 0: compiles (or loads from numba's cache) the kernels once,
    # as a long-running process would have done; its time is reported separately.
    t0 = time.perf_counter()
    corner = read(lights[0]).data[:1024, :1024]
    warm = find_stars(luminance(corner), threshold=5.0, min_stars=15, max_stars=500)
    if len(warm) >= 6:
        match_stars(warm.xy, warm.xy, model="similarity", rng=np.random.default_rng(0))
    warmup_s = time.perf_counter() - t0
    rows = []
    reference = None
    for index, path in enumerate(lights):
        t0 = time.perf_counter()
        image = read(path).data
        t1 = time.perf_counter()
        stars = find_stars(luminance(image), threshold=5.0, min_stars=15, max_stars=500)
        t2 = time.perf_counter()
        if reference is None:
            reference = stars.xy
        row: dict[str, Any] = {"index": index, "read_s": t1 - t0, "detect_s": t2 - t1}
        row["stars"] = len(stars)
        try:
            match = match_stars(
                stars.xy, reference, model="similarity", rng=np.random.default_rng(0)
            )
            row["transform"] = match.transform.matrix.tolist()
            row["n_inliers"] = match.n_inliers
            row["rms_px"] = match.rms_px
        except RegistrationError as err:
            row["transform"] = None
            row["error"] = str(err)
        row["match_s"] = time.perf_counter() - t2
        rows.append(row)
        del image
    return {"rows": rows, "warmup_s": warmup_s}


def _worker_astroalign(lights: list[Path]) -> dict[str, Any]:
    import astroalign
    import skimage.transform  # noqa: F401  (imported by astroalign's first warp: not timed)

    from skystack.io import read

    target = np.ascontiguousarray(read(lights[0]).data, dtype=np.float32)
    t0 = time.perf_counter()
    ref_points = astroalign._find_sources(target)[: 50 * 3]
    ref_detect_s = time.perf_counter() - t0
    rows = []
    for index, path in enumerate(lights):
        source = np.ascontiguousarray(read(path).data, dtype=np.float32)
        row: dict[str, Any] = {"index": index}
        t1 = time.perf_counter()
        try:
            astroalign.register(source, target)
            row["register_ok"] = True
        except Exception as err:  # MaxIterError, TooFewStarsError, ValueError
            row["register_ok"] = False
            row["register_error"] = f"{type(err).__name__}: {err}"
        t2 = time.perf_counter()
        try:
            transform, _ = astroalign.find_transform(source, ref_points)
            row["transform"] = np.asarray(transform.params).tolist()
        except Exception as err:
            row["transform"] = None
            row["error"] = f"{type(err).__name__}: {err}"
        t3 = time.perf_counter()
        row["register_s"] = t2 - t1
        row["find_transform_s"] = t3 - t2
        rows.append(row)
        del source
    return {"rows": rows, "ref_detect_s": ref_detect_s}


def _worker(name: str, folder: Path, out: Path) -> None:
    lights = sorted((folder / "lights").glob("*.fits"))
    result = _worker_skystack(lights) if name == "skystack-dm" else _worker_astroalign(lights)
    out.write_text(json.dumps(result))


# --------------------------------------------------------------------------- accuracy


def _truth_points(truth: Any, index: int, shape: tuple[int, int]) -> np.ndarray:
    """Truth star positions of light ``index`` inside the frame, homogeneous (K, 3)."""
    height, width = shape
    p = truth.star_positions(index)
    inside = (p[:, 0] >= 0) & (p[:, 0] <= width - 1) & (p[:, 1] >= 0) & (p[:, 1] <= height - 1)
    return np.column_stack([p[inside], np.ones(int(inside.sum()))])


def _rms_error(
    recovered: np.ndarray, truth: Any, index: int, reference: int, shape: tuple[int, int]
) -> float:
    """RMS of |recovered(p) - truth(p)| over light ``index``'s truth stars (px), where
    ``recovered`` maps light ``index`` to light ``reference``."""
    expected = np.linalg.inv(truth.transforms[reference]) @ truth.transforms[index]
    points = _truth_points(truth, index, shape)

    def apply(matrix: np.ndarray) -> np.ndarray:
        mapped = points @ np.asarray(matrix, dtype=np.float64).T
        return mapped[:, :2] / mapped[:, 2:3]

    diff = apply(recovered) - apply(expected)
    return float(np.sqrt(np.mean(np.sum(diff * diff, axis=1))))


# --------------------------------------------------------------------------- Siril


def _siril_seconds(text: str) -> float:
    """Seconds of an "Execution time: ..." value ("850.00 ms", "7.12 s", "1 min 3.20 s")."""
    total = 0.0
    for value, unit in re.findall(r"([0-9.]+)\s*(ms|min|s|h)\b", text):
        total += float(value) * {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}[unit]
    return total


def _parse_siril_log(log: str, height: int) -> dict[str, Any]:
    lines = log.splitlines()
    register_s = None
    command = None
    for line in lines:
        m = re.search(r"Running command: *(\w+)", line)
        if m:
            command = m.group(1)
        m = re.search(r"Execution time: *(.+)$", line)
        if m and command == "register" and register_s is None:
            register_s = _siril_seconds(m.group(1))
    total = re.search(r"Total: (\d+) failed, (\d+) registered", log)
    skipped = sorted({int(n) for n in re.findall(r"Image (\d+) skipped", log)})
    reference = None
    last_read = None
    for line in lines:
        m = re.search(r"Reading FITS: file \D*?(\d+)\.fits", line)
        if m:
            last_read = int(m.group(1))
        if "Reference Image" in line and reference is None:
            reference = last_read
    # Matrix blocks: "Transformation Matrix:", three rows, then "Matching stars in image N: done".
    # Siril's matrix maps image -> reference with y counted from the last row (y' = H-1-y).
    flip = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, height - 1.0], [0.0, 0.0, 1.0]])
    number = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
    row_re = re.compile(rf"^\s*({number})\s+({number})\s+({number})\s*$")
    transforms: dict[int, list[list[float]]] = {}
    for k, line in enumerate(lines):
        if not line.startswith("Transformation Matrix"):
            continue
        rows = [row_re.match(x) for x in lines[k + 1 : k + 4]]
        done = re.search(
            r"Matching stars in image (\d+): done", lines[k + 4] if k + 4 < len(lines) else ""
        )
        if all(rows) and done:
            matrix = np.array([[float(v) for v in r.groups()] for r in rows])  # type: ignore[union-attr]
            transforms[int(done.group(1)) - 1] = (flip @ matrix @ flip).tolist()
    return {
        "register_s": register_s,
        "failed": int(total.group(1)) if total else None,
        "registered": int(total.group(2)) if total else None,
        "skipped": skipped,
        "reference": reference - 1 if reference is not None else None,
        "transforms": transforms,
    }


def _run_siril(folder: Path, work: Path, height: int) -> dict[str, Any] | None:
    if shutil.which(SIRIL) is None:
        print(f"{SIRIL} not found (apt-get install -y siril): Siril skipped", flush=True)
        return None
    seq = work / "siril"
    seq.mkdir()
    script = work / "register.ssf"
    script.write_text(
        "requires 1.0.0\nsetext fits\n"
        f'cd "{folder / "lights"}"\nconvert light -out={seq}\n'
        f"cd {seq}\nregister light\nclose\n"
    )
    env = dict(os.environ, XDG_CONFIG_HOME=str(work / "xdg"))
    log = work / "siril.log"
    run = run_child([SIRIL, "-s", str(script)], log, env=env)
    text = log.read_text(errors="replace")
    run.update(_parse_siril_log(text, height))
    run["log"] = str(log)
    return run


# --------------------------------------------------------------------------- report


def _stats(errors: list[float]) -> tuple[str, str]:
    if not errors:
        return "-", "-"
    return f"{np.median(errors):.3f}", f"{max(errors):.3f}"


def _worker_run(name: str, folder: Path, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    out = work / f"{name}.json"
    command = [sys.executable, __file__, "--worker", name, "--folder", str(folder)]
    run = run_child([*command, "--out", str(out)], work / f"{name}.log")
    if run["rc"] != 0 or not out.exists():
        print((work / f"{name}.log").read_text()[-3000:])
        raise SystemExit(f"{name} worker failed (exit {run['rc']})")
    return run, json.loads(out.read_text())


class _Report:
    HEADER = ("tool", "s/frame det+match", "s/frame whole step", "peak RSS MB", "registered",
              "median px", "max px")  # fmt: skip

    def __init__(self, truth: Any, shape: tuple[int, int]) -> None:
        self.truth, self.shape = truth, shape
        self.rows: list[tuple[str, ...]] = []
        self.notes: list[str] = []
        self.data: list[dict[str, Any]] = []  # the same rows as numbers, for --json

    def add(self, tool: str, dm: float | None, whole: float | None, peak: float | None,
            registered: str, transforms: dict[int, Any], reference: int,
            baseline: str | None = None) -> None:  # fmt: skip
        """``transforms``: light index -> matrix onto light ``reference`` (None: failed);
        ``baseline``: the skystack row this tool's ratios are taken against."""
        errors = [
            _rms_error(np.array(m), self.truth, i, reference, self.shape)
            for i, m in transforms.items()
            if m is not None and i != reference
        ]
        med, mx = _stats(errors)
        row = {"tool": tool, "baseline": baseline, "dm_s": dm, "whole_s": whole,
               "peak_mb": peak, "registered": registered}  # fmt: skip
        if errors:
            row.update(reg_med_px=float(np.median(errors)), reg_max_px=float(max(errors)))
        self.data.append({k: v for k, v in row.items() if v is not None})
        self.rows.append((
            tool,
            "-" if dm is None else f"{dm:.2f}",
            "-" if whole is None else f"{whole:.2f}",
            "-" if peak is None else f"{peak:.0f}",
            registered, med, mx,
        ))  # fmt: skip

    def print(self, title: str) -> None:
        rows = [self.HEADER, *self.rows]
        widths = [max(len(row[k]) for row in rows) for k in range(len(self.HEADER))]
        print(f"\n{title}")
        for row in rows:
            cells = [c.ljust(w) if k == 0 else c.rjust(w)
                     for k, (c, w) in enumerate(zip(row, widths, strict=True))]  # fmt: skip
            print("  ".join(cells))
        print()


def _bench(args: Any, config: Any, root: Path) -> None:
    from skystack.sim.write import SessionTruth, write_session

    n, height, width = config.n_lights, config.height, config.width
    shape = (height, width)
    start = time.perf_counter()
    folder = root / "session"
    truth = None
    if (folder / "truth" / "truth.json").exists():  # --keep: reuse the same simulated session
        truth = SessionTruth.load(folder)
        if (truth.config, truth.seed) != (config, args.seed):
            shutil.rmtree(folder)
            truth = None
    verb = "reused" if truth is not None else "simulated"
    if truth is None:
        truth = write_session(folder, config, seed=args.seed)
    flip = "off" if args.no_flip else f"from light {n // 2}"
    print(
        f"{verb} {n} lights of {width}x{height} ({width * height / 1e6:.1f} MP, uint16) in "
        f"{time.perf_counter() - start:.0f} s: shifts up to {args.shift:g} px, rotation to "
        f"{args.rotation:g} deg, meridian flip {flip}, hot pixel fraction {args.hot_pixels:g}",
        flush=True,
    )
    for i, plan in enumerate(truth.data["lights"]):
        dx, dy = plan["shift_px"]
        print(
            f"  light {i}: rotation {plan['rotation_deg']:7.2f} deg, shift ({dx:7.1f}, "
            f"{dy:7.1f}) px, FWHM {plan['fwhm_px']:.2f} px",
            flush=True,
        )
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)  # outputs of an earlier run with --keep
    work.mkdir()
    report = _Report(truth, shape)
    notes = report.notes
    aligned = slice(1, None) if n > 1 else slice(None)  # timing over the frames aligned to light 0

    # a. skystack detection + matching
    run, result = _worker_run("skystack-dm", folder, work)
    rows = result["rows"]
    detect = [r["detect_s"] for r in rows][aligned]
    match = [r["match_s"] for r in rows][aligned]
    dm_per_frame = float(np.mean(detect) + np.mean(match))
    ok = sum(1 for r in rows if r["transform"])
    report.add("skystack detect+match", dm_per_frame, None, run["peak_mb"], f"{ok}/{n}",
               {r["index"]: r["transform"] for r in rows}, 0)  # fmt: skip
    notes.append(
        f"skystack detect+match, per frame: find_stars {np.mean(detect):.2f} s, match_stars "
        f"{np.mean(match):.3f} s (read {np.mean([r['read_s'] for r in rows]):.2f} s, not counted;"
        f" one-off warm-up {result['warmup_s']:.1f} s, not counted); stars "
        f"{[r['stars'] for r in rows]}, matched {[r.get('n_inliers') for r in rows]}"
    )
    for r in rows:
        if not r["transform"]:
            notes.append(f"skystack detect+match failed on light {r['index']}: {r['error']}")
    print("done: skystack detect+match", flush=True)

    # b. astroalign
    aa_register = aa_find = None
    if "astroalign" not in args.skip:
        run, result = _worker_run("astroalign", folder, work)
        rows = result["rows"]
        aa_register = float(np.mean([r["register_s"] for r in rows][aligned]))
        aa_find = float(np.mean([r["find_transform_s"] for r in rows][aligned]))
        reg_ok = sum(r["register_ok"] for r in rows)
        find_ok = sum(1 for r in rows if r["transform"])
        report.add("astroalign register", aa_register, None, run["peak_mb"], f"{reg_ok}/{n}",
                   {}, 0, baseline="skystack detect+match")  # fmt: skip
        report.add("astroalign find_transform", aa_find, None, None, f"{find_ok}/{n}",
                   {r["index"]: r["transform"] for r in rows}, 0,
                   baseline="skystack detect+match")  # fmt: skip
        good = [r["register_s"] for r in rows[aligned] if r["register_ok"]]
        notes.append(
            "astroalign register = find_transform(frame, light 0 image: both detected) + "
            "bicubic warp; find_transform here takes light 0's control points detected once "
            f"({result['ref_detect_s']:.2f} s); register over successful calls only: "
            + (f"{np.mean(good):.2f} s/frame ({len(good)} calls)" if good else "none")
        )
        for r in rows:
            if not r["register_ok"]:
                notes.append(f"astroalign register failed on light {r['index']}: "
                             f"{r['register_error']}")  # fmt: skip
            if not r["transform"]:
                notes.append(f"astroalign find_transform failed on light {r['index']}: "
                             f"{r['error']}")  # fmt: skip
        stuck = [
            r["index"] for r in rows[aligned]
            if r["transform"] and np.allclose(r["transform"], np.eye(3), atol=0.05)
            and not np.allclose(truth.transforms[r["index"]], truth.transforms[0], atol=0.5)
        ]  # fmt: skip
        if stuck:
            notes.append(
                f"astroalign find_transform returned (nearly) the identity for moving lights "
                f"{stuck}: it matched the fixed hot-pixel pattern of the raw lights (hot pixel "
                f"fraction {args.hot_pixels:g}; --hot-pixels 0 simulates dark-subtracted lights)"
            )
        print("done: astroalign", flush=True)

    # c. skystack register (whole step)
    lights = [str(p) for p in truth.lights]
    names = [Path(p).name for p in lights]
    out_dir = work / "skystack-registered"
    skystack = Path(sys.executable).with_name("skystack")
    log = work / "skystack-register.log"
    run = run_child([str(skystack), "register", *lights, "-o", str(out_dir)], log)
    json_path = out_dir / "registration.json"
    if run["rc"] != 0 or not json_path.exists():
        print(log.read_text()[-3000:])
        raise SystemExit(f"skystack register failed (exit {run['rc']})")
    data = json.loads(json_path.read_text())
    ref = names.index(Path(data["reference"]).name)
    frames = {names.index(Path(r["path"]).name): r for r in data["frames"]}
    accepted = sum(r["accepted"] for r in frames.values())
    reg_per_frame = run["wall_s"] / n
    report.add("skystack register (whole)", None, reg_per_frame, run["peak_mb"],
               f"{accepted}/{n}",
               {i: r["transform"] if r["accepted"] else None for i, r in frames.items()},
               ref)  # fmt: skip
    notes.append(
        f"skystack register: {run['wall_s']:.1f} s wall for {n} frames (the CLI process, start-up"
        f" included), reference light {ref} (chosen by quality); matched stars "
        f"{[frames[i]['matched_stars'] for i in range(n)]}, rms_px "
        f"{[round(frames[i]['rms_px'] or 0, 3) for i in range(n)]}"
    )
    for i, r in sorted(frames.items()):
        if not r["accepted"]:
            notes.append(f"skystack register rejected light {i}: {r['reason']}")
    print("done: skystack register", flush=True)

    # d. Siril 1.0.6
    siril_register = None
    siril = None if "siril" in args.skip else _run_siril(folder, work, height)
    if siril is not None:
        if siril["rc"] != 0 or siril["register_s"] is None:
            notes.append(f"Siril failed (exit {siril['rc']}), see its log {siril['log']}")
        else:
            sref = siril["reference"] if siril["reference"] is not None else 0
            siril_register = siril["register_s"] / n
            registered = "?" if siril["registered"] is None else siril["registered"]
            report.add("Siril 1.0.6 register", None, siril_register, siril["peak_mb"],
                       f"{registered}/{n}", siril["transforms"], sref,
                       baseline="skystack register (whole)")  # fmt: skip
            notes.append(
                f"Siril: register command {siril['register_s']:.1f} s (its log's Execution time), "
                f"process {siril['wall_s']:.1f} s with start-up and convert; reference light "
                f"{sref}; accuracy from {len(siril['transforms'])} matrices parsed from its log"
            )
            if siril["skipped"]:
                notes.append(
                    "Siril skipped (silently, exit 0) lights "
                    f"{[k - 1 for k in siril['skipped']]} (0-based)"
                )
        print("done: Siril", flush=True)

    title = f"registration of {n} x {width}x{height} uint16 frames, {os.cpu_count()} cores"
    report.print(title)
    if aa_register is not None and aa_find is not None:
        print(f"astroalign register / skystack detect+match: "
              f"{aa_register / dm_per_frame:.1f}x (goal >= 3x)")  # fmt: skip
        print(f"astroalign find_transform / skystack detect+match: {aa_find / dm_per_frame:.1f}x")
    if siril_register is not None:
        print(f"skystack register whole step / Siril register step: "
              f"{reg_per_frame / siril_register:.2f} (goal <= 0.5)")  # fmt: skip
    print(
        "s/frame det+match: mean over lights 1..N-1 (those aligned to light 0); whole step: "
        "total / N; accuracy: RMS px over truth stars per frame, reference frame excluded"
    )
    for note in notes:
        print("note: " + note)
    if args.json is not None:
        columns = [
            ["dm_s", "s/frame det+match", ".2f"], ["whole_s", "s/frame whole step", ".2f"],
            ["peak_mb", "peak RSS MB", ".0f"], ["registered", "registered", ""],
            ["reg_med_px", "reg err px (median)", ".3f"], ["reg_max_px", "reg err px (max)", ".3f"],
        ]  # fmt: skip
        table = {
            "benchmark": "register",
            "title": f"{title}: shifts <= {args.shift:g} px, rotation to {args.rotation:g} deg"
            + ("" if args.no_flip else ", meridian flip"),
            "columns": columns,
            "ratios": ["dm_s", "whole_s", "peak_mb", "reg_med_px"],
            "rows": report.data,
            "notes": notes,
        }
        args.json.write_text(json.dumps(table, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the small set: 6 x 1024x1024")
    parser.add_argument("--json", type=Path, help="also write the table here (for run.py)")
    parser.add_argument("--frames", type=int, default=None, help="10 (6 with --quick)")
    parser.add_argument("--width", type=int, default=None, help="4000 (1024 with --quick)")
    parser.add_argument("--height", type=int, default=None, help="3000 (1024 with --quick)")
    parser.add_argument("--shift", type=float, default=None, help="max shift per axis (px): 200")
    parser.add_argument("--rotation", type=float, default=4.0, help="field rotation (deg)")
    parser.add_argument("--no-flip", action="store_true", help="no meridian flip")
    parser.add_argument("--star-count", type=int, default=1000)
    parser.add_argument("--hot-pixels", type=float, default=3e-4,
                        help="hot pixel fraction (simulator default 3e-4: raw lights; "
                             "0: as after dark subtraction)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], choices=["astroalign", "siril"])
    parser.add_argument("--keep", type=Path, help="keep the frames and outputs in this folder")
    parser.add_argument("--worker", choices=["skystack-dm", "astroalign"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.folder, args.out)
        return
    args.frames = args.frames or (6 if args.quick else 10)
    args.width = args.width or (1024 if args.quick else 4000)
    args.height = args.height or (1024 if args.quick else 3000)
    args.shift = args.shift if args.shift is not None else (100.0 if args.quick else 200.0)
    if args.json is not None:
        args.json = args.json.resolve()

    from skystack.sim.session import SessionConfig

    config = SessionConfig(
        width=args.width, height=args.height, n_lights=args.frames, n_bias=0, n_darks=0,
        n_flats=0, shift_px=args.shift, rotation_deg=args.rotation,
        meridian_flip=not args.no_flip, fwhm_px=(1.8, 4.0), star_count=args.star_count,
        extended="galaxy", hot_pixel_fraction=args.hot_pixels,
    )  # fmt: skip
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        _bench(args, config, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-register-") as tmp:
            _bench(args, config, Path(tmp))


if __name__ == "__main__":
    main()
