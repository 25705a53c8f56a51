"""Planetary lucky imaging: ``skystack planetary`` against PlanetarySystemStacker (PSS 0.9.8),
side by side in one run on the same simulated SER video.

A video is simulated with :func:`skystack.sim.write_planetary_ser` (default 1000 mono 8-bit
frames of 640x480, Jupiter, seed 1; tip-tilt jitter, local seeing warps and a seeing quality
that drifts from frame to frame). Then, one after the other, each tool runs in its own child
process on the same file, with comparable settings (best 25% of the frames at each alignment
point, alignment boxes of 64 px, no drizzle, no sharpening):

* ``skystack``: ``skystack planetary VIDEO.ser -o OUT.tif --best 25% --ap-size 64 --sharpen none
  --overwrite``.
* ``PSS 0.9.8``: PlanetarySystemStacker's command-line mode (``PlanetarySystemStacker`` with any
  argument runs headless: a ``QCoreApplication``, no window):
  ``PlanetarySystemStacker VIDEO.ser -m Planet -a 64 -s 25 --drizzle Off --out_format tiff
  --protocol_detail 2`` with ``QT_QPA_PLATFORM=offscreen``; it writes ``VIDEO_pss.tiff`` beside
  the video (16-bit; no postprocessing in command-line mode), so the video is linked into a
  folder of its own first. PSS pins ``numpy<1.23``, which has no wheels for Python >= 3.11, so
  it is installed into its own venv made with a Python 3.8-3.10 (found on PATH or under pyenv;
  ``PSS_PYTHON`` overrides) in ``~/.cache/skystack-bench/pss_venv`` (created on first use;
  skystack's venv stays clean). When that fails PSS is skipped with the reason.

Per tool: wall time of the child process (start-up included), its CPU time (user + sys of the
child and its descendants), the 1-minute load average when it ended, its peak RSS (``ru_maxrss``
of the child, read in a fresh small wrapper process) and ``tree MB`` (peak of the summed RSS of
its process tree, sampled every 0.25 s from /proc), and the quality against the simulator's
truth (``<stem>_truth/clean.fits``, the sharp, undistorted, noise-free image):

* every result is registered to the clean image: whole-pixel position by normalised template
  matching (the tools crop their output differently), then sub-pixel phase correlation
  (``skimage.registration.phase_cross_correlation``, 1/50 px), and resampled onto the clean
  image's grid (Lanczos); all results are then compared on the **same** area: the rectangle
  covered by every result, less 2 px;
* each result is fitted to the clean image by least squares (``a * result + b``: the tools
  scale and offset differently), then ``SSIM`` (``skimage.metrics.structural_similarity``,
  data range of the clean area; higher is better, 1 = identical) and ``RMS`` of the residual in
  per mille of full scale (lower is better).

For reference the same figures are given for the single best frame of the video (lowest blur
in the simulator's truth), so a stack should beat it clearly.

``--memory-test`` instead writes a 10,000-frame 640x480 8-bit SER (a fixed banded disk with
whole-pixel jitter and noise: only memory matters, so no simulator) and runs ``skystack
planetary`` on it alone, printing its wall time and peak RSS (issue 7's target: under 1 GB).

Usage: python benchmarks/bench_planetary.py [--frames 1000] [--width 640] [--height 480]
       [--target jupiter|moon] [--seed 1] [--skip skystack pss] [--keep DIR]
       python benchmarks/bench_planetary.py --memory-test [--frames 10000] [--keep DIR]
``--keep DIR`` works in DIR and keeps it; a video already simulated there with the same size,
frame count, target and seed is reused.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _child import last_error, run_child

TOOLS = ("skystack", "pss")
LABELS = {"skystack": "skystack", "pss": "PSS 0.9.8", "best": "best single frame"}
PSS_REQUIREMENT = "planetary-system-stacker>=0.9.8,<0.9.9"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "skystack-bench"
PSS_VENV = CACHE / "pss_venv"

# --------------------------------------------------------------------------- PSS install


def _old_python() -> str | None:
    """A Python 3.8-3.10 interpreter (PSS pins numpy<1.23: no wheels for Python >= 3.11)."""
    candidates = [os.environ.get("PSS_PYTHON", "")]
    candidates += [shutil.which(f"python3.{minor}") or "" for minor in (10, 9, 8)]
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    for minor in (10, 9, 8):
        candidates += sorted(
            glob.glob(str(pyenv / "versions" / f"3.{minor}.*" / "bin" / "python3"))
        )
    candidates += [f"/usr/bin/python3.{minor}" for minor in (10, 9, 8)]
    for candidate in candidates:
        if not candidate:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys, venv; print(sys.version_info[:2] < (3, 11))"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue  # e.g. a pyenv shim for a version that is not selected
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


def _pss_command() -> tuple[list[str] | None, str]:
    """PSS's command line in its cached venv (installed on first use), or None and why not."""
    exe = PSS_VENV / "bin" / "PlanetarySystemStacker"
    python = PSS_VENV / "bin" / "python"
    stamp = PSS_VENV / ".skystack-bench-ok"
    if stamp.exists() and exe.exists():
        return [str(exe)], ""
    base = _old_python()
    note = ""
    if base is None:
        base = sys.executable
        note = " (no Python 3.8-3.10 found, so numpy<1.23 is built from source)"
    print(f"installing {PSS_REQUIREMENT} into {PSS_VENV} with {base}{note} ...", flush=True)
    shutil.rmtree(PSS_VENV, ignore_errors=True)
    PSS_VENV.parent.mkdir(parents=True, exist_ok=True)
    log = PSS_VENV.parent / "pss_install.log"
    with open(log, "wb") as out:
        steps = [
            [base, "-m", "venv", str(PSS_VENV)],
            [str(python), "-m", "pip", "install", "--quiet", PSS_REQUIREMENT],
            [str(python), "-c", "import numpy, cv2, scipy, skimage, astropy, PyQt5.QtCore"],
        ]
        for step in steps:
            try:
                rc = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, check=False)
            except OSError as exc:
                return None, f"installation failed: {exc}"
            if rc.returncode != 0:
                return None, f"installation failed at '{' '.join(step[-3:])}' (log {log})"
    if not exe.exists():
        return None, f"installation did not provide {exe} (log {log})"
    stamp.write_text(PSS_REQUIREMENT + "\n")
    return [str(exe)], ""


# --------------------------------------------------------------------------- video


def _simulate(root: Path, args: argparse.Namespace) -> Any:
    from skystack.sim import PlanetaryConfig, write_planetary_ser
    from skystack.sim.planetary import PlanetaryTruth

    video = root / "video.ser"
    if video.exists() and (root / "video_truth" / "truth.json").exists():
        truth = PlanetaryTruth.load(video)
        c = truth.config
        if (c.n_frames, c.width, c.height, c.target, truth.seed) == (
            args.frames,
            args.width,
            args.height,
            args.target,
            args.seed,
        ):
            print(f"reusing the video {video}", flush=True)
            return truth
    config = PlanetaryConfig(
        width=args.width, height=args.height, n_frames=args.frames, target=args.target
    )
    start = time.perf_counter()
    truth = write_planetary_ser(video, config, seed=args.seed)
    print(
        f"simulated {args.frames} frames of {args.width}x{args.height} mono 8-bit "
        f"({args.target}) in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return truth


# --------------------------------------------------------------------------- tools


def _run_tool(tool: str, video: Path, root: Path) -> dict[str, Any]:
    """Run ``tool`` on ``video``; the run's figures plus ``out`` (result path) or ``error``."""
    if tool == "skystack":
        out = root / "out_skystack.tif"
        out.unlink(missing_ok=True)
        skystack = str(Path(sys.executable).with_name("skystack"))
        command = [skystack, "planetary", str(video), "-o", str(out), "--best", "25%"]
        command += ["--ap-size", "64", "--sharpen", "none", "--overwrite"]
        run = run_child(command, root / "log_skystack.txt")
        if run["rc"] != 0 or not out.exists():
            run["error"] = f"skystack planetary not available or failed: {last_error(run['log'])}"
        run["out"] = out
        return run
    command, why = _pss_command()
    if command is None:
        return {"skipped": why}
    folder = root / "pss"
    folder.mkdir(exist_ok=True)
    linked = folder / video.name
    linked.unlink(missing_ok=True)
    linked.symlink_to(video.resolve())
    out = folder / f"{video.stem}_pss.tiff"
    out.unlink(missing_ok=True)
    command += [linked.name, "-m", "Planet", "-a", "64", "-s", "25", "--drizzle", "Off"]
    command += ["--out_format", "tiff", "--protocol_detail", "2"]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    run = run_child(command, root / "log_pss.txt", cwd=folder, env=env)
    log = run["log"].read_text(errors="replace")
    if run["rc"] != 0 or not out.exists() or "Traceback" in log:
        run["error"] = f"PSS failed: {last_error(run['log'])}"
    own = re.findall(r"Execution over all\s+([0-9.]+)", log)
    run["own_s"] = float(own[-1]) if own else None
    aps = re.findall(r"Number of alignment points[^0-9]*(\d+)", log, re.IGNORECASE)
    run["aps"] = int(aps[-1]) if aps else None
    run["out"] = out
    return run


# --------------------------------------------------------------------------- quality


def _mono(data: np.ndarray) -> np.ndarray:
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 3:
        data = data.mean(axis=2) if data.shape[2] in (3, 4) else data.mean(axis=0)
    return np.ascontiguousarray(data, dtype=np.float32)


def _read_mono(path: Path, index: int = 0) -> np.ndarray:
    from skystack.io import read

    return _mono(read(path, index=index).data)


def _onto_clean(image: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """``image`` registered and resampled onto ``clean``'s grid (NaN outside it), and the
    (x, y) position of ``image``'s pixel (0, 0) in ``clean``."""
    import cv2
    from skimage.registration import phase_cross_correlation

    height, width = clean.shape
    # Crop a result larger than the clean image (in either axis) to its centre.
    y0 = max(0, (image.shape[0] - height) // 2)
    x0 = max(0, (image.shape[1] - width) // 2)
    image = np.ascontiguousarray(image[y0 : y0 + height, x0 : x0 + width])
    h, w = image.shape
    # Whole-pixel position: normalised cross-correlation is blind to the tools' scale/offset.
    match = cv2.matchTemplate(clean, image, cv2.TM_CCOEFF_NORMED)
    _, _, _, (ox, oy) = cv2.minMaxLoc(match)
    crop = clean[oy : oy + h, ox : ox + w]
    shift, _, _ = phase_cross_correlation(crop, image, upsample_factor=50, normalization=None)
    dy, dx = float(shift[0]), float(shift[1])
    # The shift registers image with crop: image pixel (x, y) shows clean point
    # (x + ox + dx, y + oy + dy).
    px, py = ox + dx - x0, oy + dy - y0
    matrix = np.array([[1.0, 0.0, ox + dx], [0.0, 1.0, oy + dy]], dtype=np.float64)
    warped = cv2.warpAffine(
        image,
        matrix,
        (width, height),
        flags=cv2.INTER_LANCZOS4,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=float("nan"),
    )
    valid = cv2.warpAffine(
        np.ones_like(image), matrix, (width, height), flags=cv2.INTER_NEAREST, borderValue=0.0
    )
    warped[valid < 0.5] = np.nan
    return warped, (px, py)


def _common_box(images: list[np.ndarray], margin: int = 2) -> tuple[slice, slice] | None:
    """The rectangle where every image is finite, less ``margin`` px on each side."""
    finite = np.logical_and.reduce([np.isfinite(x) for x in images])
    rows = np.flatnonzero(finite.any(axis=1))
    cols = np.flatnonzero(finite.any(axis=0))
    if rows.size < 4 * margin + 16 or cols.size < 4 * margin + 16:
        return None
    box = (
        slice(rows[0] + margin, rows[-1] + 1 - margin),
        slice(cols[0] + margin, cols[-1] + 1 - margin),
    )
    if not finite[box].all():  # not a rectangle: keep shrinking until it is
        for extra in range(1, 64):
            box = (
                slice(rows[0] + margin + extra, rows[-1] + 1 - margin - extra),
                slice(cols[0] + margin + extra, cols[-1] + 1 - margin - extra),
            )
            if finite[box].all():
                break
        else:
            return None
    return box


def _score(aligned: np.ndarray, clean: np.ndarray, box: tuple[slice, slice]) -> dict[str, float]:
    """SSIM and RMS (per mille of full scale) of ``a * aligned + b`` against ``clean``."""
    from skimage.metrics import structural_similarity

    x = aligned[box].astype(np.float64)
    y = clean[box].astype(np.float64)
    design = np.column_stack([x.ravel(), np.ones(x.size)])
    (a, b), *_ = np.linalg.lstsq(design, y.ravel(), rcond=None)
    fitted = a * x + b
    rms = float(np.sqrt(np.mean((fitted - y) ** 2)))
    span = float(y.max() - y.min())
    ssim = float(structural_similarity(y, fitted, data_range=span))
    return {"ssim": ssim, "rms_permille": 1000.0 * rms, "scale": float(a)}


# --------------------------------------------------------------------------- comparison run


def _compare(args: argparse.Namespace, root: Path) -> int:
    truth = _simulate(root, args)
    video = truth.path
    results: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        if tool in args.skip:
            print(f"{LABELS[tool]}: skipped (--skip)", flush=True)
            continue
        print(f"running {LABELS[tool]} ...", flush=True)
        run = _run_tool(tool, video, root)
        if "skipped" in run:
            print(f"{LABELS[tool]}: skipped, {run['skipped']}", flush=True)
            continue
        if "error" in run:
            print(
                f"{LABELS[tool]}: FAILED (exit {run['rc']}) after {run['wall_s']:.1f} s: "
                f"{run['error']} (log {run['log']})",
                flush=True,
            )
        else:
            print(
                f"{LABELS[tool]}: {run['wall_s']:.1f} s (CPU {run['cpu_s']:.1f} s), "
                f"peak RSS {run['peak_mb']:.0f} MB -> {run['out']}",
                flush=True,
            )
        results[tool] = run

    clean = _read_mono(truth.clean)
    best = int(np.argmin(truth.blur_sigma))
    images = {"best": _read_mono(video, index=best)}
    for tool, run in results.items():
        if "error" not in run:
            images[tool] = _read_mono(run["out"])
    aligned: dict[str, np.ndarray] = {}
    for name, image in images.items():
        aligned[name], position = _onto_clean(image, clean)
        results.setdefault(name, {})["shape"] = image.shape
        results[name]["position"] = position
    box = _common_box(list(aligned.values()))
    if box is None:
        print("quality skipped: the results share no common area with the clean image")
    else:
        for name, image in aligned.items():
            results[name]["quality"] = _score(image, clean, box)
    _print_table(results, truth, best, box)
    return 0 if all("error" not in r for r in results.values()) else 1


def _print_table(
    results: dict[str, dict[str, Any]], truth: Any, best: int, box: tuple[slice, slice] | None
) -> None:
    c = truth.config
    print()
    print(
        f"planetary: {c.n_frames} frames {c.width}x{c.height} mono {c.bit_depth}-bit "
        f"({c.target}, seed {truth.seed}), best 25%, AP box 64 px, no drizzle"
    )
    header = (
        f"| {'tool':<18} | {'wall s':>7} | {'CPU s':>6} | {'load':>4} | {'peak RSS MB':>11} | "
        f"{'tree MB':>7} | {'output':>9} | {'SSIM':>6} | {'RMS o/oo':>8} |"
    )
    print(header)
    print("|" + "|".join("-" * len(p) for p in header.split("|")[1:-1]) + "|")
    order = [t for t in (*TOOLS, "best") if t in results]
    for name in order:
        r = results[name]
        q = r.get("quality", {})
        ssim = f"{q['ssim']:.4f}" if q else "-"
        rms = f"{q['rms_permille']:.2f}" if q else "-"
        shape = f"{r['shape'][1]}x{r['shape'][0]}" if "shape" in r else "-"
        if name == "best":
            timing = f"{'-':>7} | {'-':>6} | {'-':>4} | {'-':>11} | {'-':>7}"
        else:
            timing = (
                f"{r['wall_s']:>7.1f} | {r['cpu_s']:>6.1f} | {r['load']:>4.1f} | "
                f"{r['peak_mb']:>11.0f} | {r['tree_mb']:>7.0f}"
            )
        label = LABELS[name] if name != "best" else f"best frame #{best}"
        if "error" in r:
            print(f"| {label:<18} | {timing} | FAILED: {r['error']}")
            continue
        print(f"| {label:<18} | {timing} | {shape:>9} | {ssim:>6} | {rms:>8} |")
    if box is not None:
        rows, cols = box
        print(
            f"quality on the common area x {cols.start}..{cols.stop - 1}, "
            f"y {rows.start}..{rows.stop - 1} of the clean image (after a least-squares "
            "scale/offset fit); RMS in per mille of full scale"
        )
    pss = results.get("pss", {})
    if pss.get("own_s") is not None:
        line = f"PSS's own 'Execution over all': {pss['own_s']:.1f} s"
        if pss.get("aps"):
            line += f", {pss['aps']} alignment points"
        print(line)
    sk = results.get("skystack", {})
    if "error" not in sk and "wall_s" in sk and "error" not in pss and "wall_s" in pss:
        line = (
            f"PSS / skystack wall time = {pss['wall_s']:.1f} / {sk['wall_s']:.1f} = "
            f"{pss['wall_s'] / sk['wall_s']:.2f}x (target >= 3)"
        )
        qs, qp = sk.get("quality"), pss.get("quality")
        if qs and qp:
            line += (
                f"; SSIM {qs['ssim']:.4f} vs {qp['ssim']:.4f}, RMS {qs['rms_permille']:.2f} vs "
                f"{qp['rms_permille']:.2f} o/oo (target: skystack at least as close)"
            )
        print(line)


# --------------------------------------------------------------------------- memory test


def _write_cheap_ser(path: Path, count: int, shape: tuple[int, int], seed: int) -> None:
    """A fixed banded disk with whole-pixel jitter (<= 6 px) and noise, written as 8-bit SER."""
    from skystack.io.ser import write_ser

    rng = np.random.default_rng(seed)
    height, width = shape
    pad = 6
    yy, xx = np.mgrid[0 : height + 2 * pad, 0 : width + 2 * pad].astype(np.float32)
    cy, cx = (height + 2 * pad - 1) / 2, (width + 2 * pad - 1) / 2
    radius = 0.32 * min(height, width)
    rho2 = ((xx - cx) / radius) ** 2 + ((yy - cy) / (0.935 * radius)) ** 2
    bands = 0.8 + 0.2 * np.sin((yy - cy) / radius * 12.0)
    disk = np.where(rho2 < 1, np.sqrt(np.clip(1 - rho2, 0, 1)) ** 0.45 * bands, 0.0)
    canvas = (8.0 + 180.0 * disk).astype(np.float32)
    noise = [rng.normal(0.0, 4.0, shape).astype(np.float32) for _ in range(8)]

    def frames() -> Any:
        for k in range(count):
            dx, dy = rng.integers(0, 2 * pad + 1, 2)
            frame = canvas[dy : dy + height, dx : dx + width] + noise[k % len(noise)]
            yield np.clip(frame, 0, 255).astype(np.uint8)

    tmp = path.with_name(f".{path.name}")
    write_ser(frames(), tmp, bit_depth=8)
    tmp.rename(path)


def _memory_test(args: argparse.Namespace, root: Path) -> int:
    video = root / f"memory_{args.frames}_{args.width}x{args.height}.ser"
    if video.exists():
        print(f"reusing the video {video}", flush=True)
    else:
        start = time.perf_counter()
        _write_cheap_ser(video, args.frames, (args.height, args.width), args.seed)
        print(
            f"wrote {args.frames} frames of {args.width}x{args.height} uint8 "
            f"({video.stat().st_size / 1e9:.1f} GB) in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
    run = _run_tool("skystack", video, root)
    label = f"skystack planetary {args.frames} x {args.width}x{args.height} uint8"
    if "error" in run:
        print(
            f"{label}: FAILED (exit {run['rc']}) after {run['wall_s']:.1f} s, peak RSS "
            f"{run['peak_mb']:.0f} MB: {run['error']}"
        )
        return 1
    verdict = "OK" if run["peak_mb"] < 1024 else "OVER"
    print(
        f"{label}: {run['wall_s']:.1f} s (CPU {run['cpu_s']:.0f} s, load {run['load']:.1f}), "
        f"peak RSS {run['peak_mb']:.0f} MB, process tree {run['tree_mb']:.0f} MB "
        f"(target < 1024 MB: {verdict})"
    )
    return 0 if verdict == "OK" else 1


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=None, help="1000 (10000 with --memory-test)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--target", choices=["jupiter", "moon"], default="jupiter")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], choices=list(TOOLS))
    parser.add_argument("--memory-test", action="store_true")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    args.frames = args.frames or (10000 if args.memory_test else 1000)
    if args.frames < 4:
        parser.error("--frames must be at least 4")
    task = _memory_test if args.memory_test else _compare
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return task(args, args.keep.resolve())
    with tempfile.TemporaryDirectory(prefix="bench-planetary-") as tmp:
        return task(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
