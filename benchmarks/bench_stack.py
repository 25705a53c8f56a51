"""Whole-pipeline stacking (calibrate + register + winsorized stack): skystack against Siril 1.0.6
and astroalign + ccdproc, side by side in one run on the same simulated frames.

A session is simulated with :func:`skystack.sim.write_session` (default 30 lights of 4000x3000
uint16 with 5 bias, 5 darks and 5 flats; pointing shifts up to ``--shift`` px per axis, a field
rotation growing to ``--rotation`` degrees, the default hot pixels, and a satellite trail across
light 7). Then, one after the other, each tool runs in its own child process on the same folders:

* ``skystack``: ``skystack stack LIGHTS --bias --darks --flats -o OUT.fits`` (the whole command);
  frames stacked = rows of ``OUT.json`` with ``"accepted": true``.
* ``Siril 1.0.6``: ``peers/siril_stack.py --bias --darks --flats LIGHTS OUT.fits`` (this
  folder's driver of ``siril-cli -s``: master bias/dark/flat, ``preprocess``, ``register``,
  ``stack rej w 3 3 -norm=addscale``); frames stacked from Siril's "Integration of N images" (it
  silently skips frames it cannot match). Skipped when ``siril-cli`` is missing.
* ``astroalign+ccdproc``: ``peers/py_peer.py`` with the same arguments, run by this interpreter;
  frames stacked from its ``FRAMES_STACKED`` line. Skipped when astroalign, ccdproc or sep cannot
  be imported (``benchmarks/run.py`` installs them).

Per tool: wall time of the child process (start-up included), its CPU time (user + sys of the
child and its descendants) and the 1-minute load average when it ended (other work on the machine
inflates wall times; CPU time is less sensitive to it), its peak RSS (``ru_maxrss`` of the child,
read in a fresh small wrapper process so the figure is the tool's own; this is the largest
single process), ``tree MB``: the peak of the summed RSS of the tool's whole process tree, sampled
every 0.25 s from /proc (skystack runs worker processes for large sets; shared pages such as
memory-mapped cache files count once per process, so it is an upper bound), frames stacked of N, the
reference light (``ref``, 0-based), and four quality figures against the simulator's truth:

* ``noise``: the result is fitted robustly (iteratively 3-sigma clipped least squares on a pixel
  grid) as ``a * scene + quadratic(x, y)`` where ``scene`` is ``truth/scene.fits`` (clean sky,
  e- per light exposure, light 0's frame) resampled into the tool's reference frame with the
  truth transforms (Siril and py_peer register on light 0; skystack's reference is the one named
  in ``OUT.json``). The quadratic absorbs the tools' different background levels, gradients and
  flat normalisations. ``noise`` = 1.4826 * MAD of the residual over the inner overlap (a border
  of ``shift + rotation`` pixels is left out), divided by ``a``: background noise in e- per
  exposure, comparable between tools (lower is better; warping smooths noise, more so for
  bicubic than for Lanczos). For scale the ideal ``sqrt(sky + read_noise^2) / sqrt(N)`` is printed.
* ``trail``: median of that residual along the truth trail's centre line (``truth.trails``,
  mapped into the reference frame), in e- and in units of ``noise``; a trail left in the stack
  shows as a clear positive excess (the unrejected level, ``peak_e / N``, is printed for scale).
* ``FWHM``: median FWHM (px) of a circular Gaussian plus constant fitted (least squares) to the
  result around up to 150 of the brightest truth stars that are unsaturated in a light,
  isolated and inside the inner overlap. The stars are Moffat profiles, so the figure is a
  consistent yardstick rather than the truth's FWHM; the same fit on ``truth/scene.fits`` is
  printed for scale. Lower is sharper (registration errors and warps widen stars).
* ``reg px``: registration error, the median and maximum over the registered lights (the
  reference excluded) of the RMS over the truth stars inside a light of ``|recovered(p) -
  truth(p)|`` px, where ``recovered`` is the tool's transform of that light onto its reference
  (skystack: the ``transform`` rows of ``OUT.json``; the peers: their ``--transforms`` JSON;
  Siril prints its matrices with 5 decimals, which limits its figure to ~0.02 px).

``--memory-test`` instead writes 100 lights of 6000x4000 (24 MP, uint16; a fixed Gaussian star
field plus noise with integer shifts of up to 8 px: only memory matters, so no simulator) and
runs ``skystack stack`` on them alone (no calibration frames), printing its wall time and peak
RSS (issue 5's target: under 2 GB).

Usage: python benchmarks/bench_stack.py [--quick] [--frames 30] [--width 4000] [--height 3000]
       [--shift 50] [--rotation 0.5] [--star-count 1000] [--seed 1]
       [--skip siril astroalign] [--keep DIR] [--json FILE]
       python benchmarks/bench_stack.py --memory-test [--frames 100] [--width 6000]
       [--height 4000] [--keep DIR]
``--quick`` is the small set: 8 lights of 1024x1024 (explicit sizes override it). ``--keep DIR``
works in DIR and keeps it; a session already simulated there with the same size, frame count
and seed is reused. ``--json FILE`` also writes the table for ``benchmarks/run.py`` (see there).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _child import last_error, run_child

PEERS = Path(__file__).resolve().parent / "peers"
SIRIL_PEER = PEERS / "siril_stack.py"
PY_PEER = PEERS / "py_peer.py"
TOOLS = ("skystack", "siril", "astroalign")
LABELS = {"skystack": "skystack", "siril": "Siril 1.0.6", "astroalign": "astroalign+ccdproc"}

# --------------------------------------------------------------------------- session


def _simulate(root: Path, args: argparse.Namespace) -> Any:
    from skystack.sim import SessionConfig
    from skystack.sim.write import SessionTruth, write_session

    if (root / "truth" / "truth.json").exists():
        truth = SessionTruth.load(root)
        c = truth.config
        if (c.n_lights, c.width, c.height, truth.seed) == (
            args.frames,
            args.width,
            args.height,
            args.seed,
        ):
            print(f"reusing the session in {root}", flush=True)
            return truth
    config = SessionConfig(
        width=args.width,
        height=args.height,
        n_lights=args.frames,
        n_bias=5,
        n_darks=5,
        n_flats=5,
        star_count=args.star_count,
        shift_px=args.shift,
        rotation_deg=args.rotation,
        trail_lights=(min(7, args.frames - 1),),
    )
    start = time.perf_counter()
    truth = write_session(root, config, seed=args.seed)
    print(
        f"simulated {args.frames} lights of {args.width}x{args.height} + 5 bias, 5 darks, "
        f"5 flats in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return truth


# --------------------------------------------------------------------------- tools


def _available(tool: str) -> str | None:
    """None when ``tool`` can run, else why not."""
    if tool == "siril":
        if shutil.which("siril-cli") is None:
            return "siril-cli not found (apt-get install -y siril)"
        if not SIRIL_PEER.exists():
            return f"{SIRIL_PEER} not found"
    if tool == "astroalign":
        if not PY_PEER.exists():
            return f"{PY_PEER} not found"
        missing = [
            m for m in ("astroalign", "ccdproc", "sep") if importlib.util.find_spec(m) is None
        ]
        if missing:
            return f"{', '.join(missing)} not installed (pip install {' '.join(missing)})"
    return None


def _command(tool: str, root: Path, out: Path) -> list[str]:
    lights, cal = str(root / "lights"), ["--bias", str(root / "bias")]
    cal += ["--darks", str(root / "darks"), "--flats", str(root / "flats")]
    if tool == "skystack":
        skystack = str(Path(sys.executable).with_name("skystack"))
        return [skystack, "stack", lights, *cal, "-o", str(out), "--overwrite"]
    peer = SIRIL_PEER if tool == "siril" else PY_PEER
    transforms = ["--transforms", str(out.with_suffix(".transforms.json"))]
    return [sys.executable, str(peer), *cal, *transforms, lights, str(out)]


def _frames_stacked(tool: str, out: Path, log: str) -> tuple[int | None, int | None]:
    """(frames stacked, reference light index or None when it is light 0 by construction)."""
    if tool == "skystack":
        report = json.loads(out.with_suffix(".json").read_text())
        stacked = sum(1 for row in report["frames"] if row["accepted"])
        return stacked, _light_index(report["reference"])
    found = re.findall(r"FRAMES_STACKED (\d+)/\d+", log)
    if found:
        return int(found[-1]), 0
    from astropy.io import fits

    count = fits.getheader(out).get("STACKCNT")
    return (int(count) if count is not None else None), 0


def _light_index(path: str) -> int:
    match = re.search(r"light_(\d+)\.", Path(path).name)
    if match is None:
        raise ValueError(f"cannot tell the light index of reference {path}")
    return int(match.group(1)) - 1


# --------------------------------------------------------------------------- quality


def _scene_in(truth: Any, reference: int) -> np.ndarray:
    """Truth scene (light 0's frame) resampled into light ``reference``'s pixel grid."""
    from astropy.io import fits
    from scipy import ndimage

    scene = np.asarray(fits.getdata(truth.scene), dtype=np.float32)
    if reference == 0:
        return scene
    m = truth.transforms[reference]  # reference pixel (x, y, 1) -> light 0 pixel
    matrix = np.array([[m[1, 1], m[1, 0]], [m[0, 1], m[0, 0]]])  # (row, col) order
    offset = np.array([m[1, 2], m[0, 2]])
    return ndimage.affine_transform(scene, matrix, offset, order=3, cval=np.nan)


def _quality(
    image: np.ndarray, scene: np.ndarray, margin: int, trail: np.ndarray | None
) -> dict[str, float]:
    """Background noise (e- per exposure) and trail excess of ``image`` against ``scene``."""
    height, width = image.shape
    valid = np.isfinite(image) & (image != 0) & np.isfinite(scene)
    valid[:margin] = valid[height - margin :] = False
    valid[:, :margin] = valid[:, width - margin :] = False
    if valid.sum() < 1000:
        return {}

    def design(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        u = (xs - width / 2) / (width / 2)
        v = (ys - height / 2) / (height / 2)
        s = scene[ys, xs].astype(np.float64)
        return np.column_stack([s, np.ones_like(u), u, v, u * u, u * v, v * v])

    step = max(1, int(np.sqrt(height * width / 2e6)))
    ys, xs = np.nonzero(valid[::step, ::step])
    ys, xs = ys * step, xs * step
    a_mat = design(ys, xs)
    y = image[ys, xs].astype(np.float64)
    keep = np.ones(len(y), dtype=bool)
    for _ in range(6):
        coef, *_ = np.linalg.lstsq(a_mat[keep], y[keep], rcond=None)
        resid = y - a_mat @ coef
        centre = np.median(resid[keep])
        sigma = 1.4826 * np.median(np.abs(resid[keep] - centre))
        keep = np.abs(resid - centre) < 3 * sigma
    scale = coef[0]
    if not scale > 0:  # the scene does not line up with the result: wrong reference frame
        return {"misaligned": 1.0}
    # Full-resolution residual in scene units (e- per exposure), row by row to bound memory.
    resid_full = np.full(image.shape, np.nan, dtype=np.float32)
    for row in range(0, height, 256):
        sl = slice(row, min(height, row + 256))
        rr, cc = np.nonzero(valid[sl])
        rr += row
        fit = design(rr, cc) @ coef
        resid_full[rr, cc] = (image[rr, cc] - fit) / scale
    values = resid_full[valid]
    noise = float(1.4826 * np.median(np.abs(values - np.median(values))))
    out = {"noise_e": noise, "scale": float(scale)}
    if trail is not None:
        (x0, y0), (x1, y1) = trail
        n = int(np.hypot(x1 - x0, y1 - y0) * 2) + 2
        t = np.linspace(0, 1, n)
        px = np.rint(x0 + (x1 - x0) * t).astype(int)
        py = np.rint(y0 + (y1 - y0) * t).astype(int)
        inside = (px >= 0) & (px < width) & (py >= 0) & (py < height)
        pix = np.unique(np.column_stack([py[inside], px[inside]]), axis=0)
        along = resid_full[pix[:, 0], pix[:, 1]]
        along = along[np.isfinite(along)]
        if len(along) > 20:
            out["trail_e"] = float(np.median(along))
            out["trail_sigma"] = out["trail_e"] / noise
            out["trail_px"] = float(len(along))
    return out


def _trail_in(truth: Any, reference: int) -> np.ndarray | None:
    if not truth.trails:
        return None
    trail = truth.trails[0]
    inv = np.linalg.inv(truth.transforms[reference])
    ends = np.array([[*trail.start_ref, 1.0], [*trail.end_ref, 1.0]]) @ inv.T
    return ends[:, :2] / ends[:, 2:3]


def _fwhm(image: np.ndarray, truth: Any, reference: int, margin: int) -> dict[str, float]:
    """Median Gaussian-fit FWHM (px) at isolated, unsaturated truth stars (see the docstring)."""
    from scipy.optimize import least_squares
    from scipy.spatial import cKDTree

    sensor = truth.data["sensor"]
    height, width = image.shape
    typical = float(np.median(truth.fwhm_pixel_px))
    half = int(np.ceil(1.5 * typical)) + 2
    xy = truth.star_positions(reference)
    flux = np.asarray(truth.stars.flux, dtype=np.float64)
    # Peak of a light in e- (a Gaussian of the typical FWHM; Moffat cores are higher: margin 3x).
    peak = flux / (1.1331 * typical * typical)
    headroom = (sensor["saturation_adu"] - sensor["bias_adu"]) * sensor["gain_e_per_adu"]
    headroom -= max(truth.background_e)
    noise = np.sqrt(float(np.mean(truth.background_e)) + sensor["read_noise_e"] ** 2)
    edge = margin + half
    ok = (xy[:, 0] > edge) & (xy[:, 0] < width - 1 - edge)
    ok &= (xy[:, 1] > edge) & (xy[:, 1] < height - 1 - edge)
    ok &= (peak < headroom / 3) & (peak > 20 * noise)
    tree = cKDTree(xy)
    for k in np.flatnonzero(ok):  # isolated: no star above 1% of its flux within 3 * half px
        near = tree.query_ball_point(xy[k], 3 * half)
        ok[k] = not any(j != k and flux[j] > 0.01 * flux[k] for j in near)
    chosen = np.flatnonzero(ok)
    chosen = chosen[np.argsort(-flux[chosen])][:150]
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    values = []
    for k in chosen:
        cx, cy = int(round(xy[k, 0])), int(round(xy[k, 1]))
        box = image[cy - half : cy + half + 1, cx - half : cx + half + 1].astype(np.float64)
        if box.shape != yy.shape or not np.isfinite(box).all() or (box == 0).any():
            continue
        dx0, dy0 = xy[k, 0] - cx, xy[k, 1] - cy
        base = float(np.median(np.concatenate([box[0], box[-1], box[:, 0], box[:, -1]])))
        start = [float(box.max() - base), dx0, dy0, typical / 2.3548, base]

        def resid(p: np.ndarray, box: np.ndarray = box) -> np.ndarray:
            g = np.exp(-((xx - p[1]) ** 2 + (yy - p[2]) ** 2) / (2 * p[3] * p[3]))
            return (p[0] * g + p[4] - box).ravel()

        lower = [0.0, dx0 - 2, dy0 - 2, 0.3, -np.inf]
        upper = [np.inf, dx0 + 2, dy0 + 2, 3.0 * typical, np.inf]
        fit = least_squares(resid, start, bounds=(lower, upper))
        if fit.success and fit.x[0] > 0:
            values.append(2.3548 * fit.x[3])
    if len(values) < 5:
        return {}
    return {"fwhm_px": float(np.median(values)), "fwhm_stars": float(len(values))}


def _transforms(tool: str, out: Path) -> tuple[int, list[Any]] | None:
    """(reference light, per light its 3x3 matrix onto the reference or None) of a run."""
    if tool == "skystack":
        report = json.loads(out.with_suffix(".json").read_text())
        rows = report["frames"]
        return _light_index(report["reference"]), [
            r.get("transform") if r.get("accepted") else None for r in rows
        ]
    path = out.with_suffix(".transforms.json")
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return int(data["reference"]), [f["transform"] for f in data["frames"]]


def _registration_error(truth: Any, reference: int, matrices: list[Any]) -> dict[str, float]:
    """Median and max over lights of the RMS px error of the tool's transforms vs the truth."""
    width, height = truth.config.width, truth.config.height
    errors = []
    for index, matrix in enumerate(matrices):
        if matrix is None or index == reference:
            continue
        p = truth.star_positions(index)
        inside = (p[:, 0] >= 0) & (p[:, 0] <= width - 1) & (p[:, 1] >= 0) & (p[:, 1] <= height - 1)
        points = np.column_stack([p[inside], np.ones(int(inside.sum()))])
        expected = np.linalg.inv(truth.transforms[reference]) @ truth.transforms[index]
        got = points @ np.asarray(matrix, dtype=np.float64).T
        want = points @ expected.T
        diff = got[:, :2] / got[:, 2:3] - want[:, :2] / want[:, 2:3]
        errors.append(float(np.sqrt(np.mean(np.sum(diff * diff, axis=1)))))
    if not errors:
        return {}
    return {"reg_med_px": float(np.median(errors)), "reg_max_px": float(max(errors))}


# --------------------------------------------------------------------------- comparison run


def _compare(args: argparse.Namespace, root: Path) -> int:
    from astropy.io import fits

    truth = _simulate(root, args)
    n = args.frames
    results: dict[str, dict[str, Any]] = {}
    for tool in TOOLS:
        if tool in args.skip:
            print(f"{LABELS[tool]}: skipped (--skip)", flush=True)
            results[tool] = {"skipped": "--skip"}
            continue
        why = _available(tool)
        if why is not None:
            print(f"{LABELS[tool]}: skipped, {why}", flush=True)
            results[tool] = {"skipped": why}
            continue
        out = root / f"out_{tool}.fits"
        out.unlink(missing_ok=True)
        print(f"running {LABELS[tool]} ...", flush=True)
        run = run_child(_command(tool, root, out), root / f"log_{tool}.txt")
        log = run["log"].read_text(errors="replace")
        if run["rc"] != 0 or not out.exists():
            run["error"] = last_error(run["log"])
            print(
                f"{LABELS[tool]}: FAILED (exit {run['rc']}) after {run['wall_s']:.1f} s: "
                f"{run['error']} (log {run['log']})",
                flush=True,
            )
            results[tool] = run
            continue
        run["stacked"], run["reference"] = _frames_stacked(tool, out, log)
        own = re.findall(r"WALL_TIME_S total=([0-9.]+)", log)
        run["own_s"] = float(own[-1]) if own else None
        stages = re.findall(r"^(?:SIRIL_STAGES|stages:) (.*)$", log, re.MULTILINE)
        run["stages"] = stages[-1] if stages else None
        print(
            f"{LABELS[tool]}: {run['wall_s']:.1f} s, peak RSS {run['peak_mb']:.0f} MB, "
            f"{run['stacked']} of {n} frames stacked, reference light {run['reference']}",
            flush=True,
        )
        t0 = time.perf_counter()
        image = np.asarray(fits.getdata(out), dtype=np.float32)
        quality: dict[str, float] = {}
        found = _transforms(tool, out)
        if found is not None:
            quality.update(_registration_error(truth, *found))
        if image.ndim != 2:
            print(f"  quality skipped: result shape {image.shape} is not a mono image")
        else:
            reference = int(run["reference"])
            margin = int(args.shift + np.radians(args.rotation) * max(image.shape) / 2) + 8
            quality.update(
                _quality(image, _scene_in(truth, reference), margin, _trail_in(truth, reference))
            )
            quality.update(_fwhm(image, truth, reference, margin))
            print(f"  quality measured in {time.perf_counter() - t0:.1f} s", flush=True)
        run["quality"] = quality
        results[tool] = run
        del image

    scene = np.asarray(fits.getdata(truth.scene), dtype=np.float32)
    scene_fwhm = _fwhm(scene, truth, 0, 8).get("fwhm_px")
    notes = _print_table(results, truth, n, scene_fwhm)
    if args.json is not None:
        _write_json(args.json, results, truth, n, notes)
    return 0 if all(r.get("rc", 0) == 0 for r in results.values()) else 1


def _title(truth: Any, n: int) -> str:
    c = truth.config
    return (
        f"stack: {n} lights {c.width}x{c.height} uint16 + 5 bias, 5 darks, 5 flats "
        f"(shift <= {c.shift_px:g} px, rotation {c.rotation_deg:g} deg, trail in light "
        f"{c.trail_lights[0]}), calibrate + register + winsorized 3/3 stack"
    )


def _print_table(
    results: dict[str, dict[str, Any]], truth: Any, n: int, scene_fwhm: float | None
) -> list[str]:
    """Print the table and the notes under it; return the notes."""
    print()
    print(_title(truth, n))
    header = (
        f"| {'tool':<20} | {'wall s':>7} | {'CPU s':>6} | {'load':>4} | {'peak RSS MB':>11} | "
        f"{'tree MB':>7} | {'stacked':>8} | {'ref':>3} | {'noise e-':>8} | {'FWHM px':>7} | "
        f"{'trail e-':>8} | {'trail/noise':>11} | {'reg px med/max':>14} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(p)) for p in header.split("|")[1:-1]) + "|")

    def num(q: dict[str, float], key: str, fmt: str) -> str:
        return format(q[key], fmt) if key in q else "-"

    for tool, r in results.items():
        if "skipped" in r:
            print(f"| {LABELS[tool]:<20} | skipped: {r['skipped']}")
            continue
        if r["rc"] != 0 or "stacked" not in r:
            print(
                f"| {LABELS[tool]:<20} | {r['wall_s']:>7.1f} | {r['cpu_s']:>6.1f} | "
                f"{r['load']:>4.1f} | {r['peak_mb']:>11.0f} | {r['tree_mb']:>7.0f} | FAILED: "
                f"{r.get('error', '')}"
            )
            continue
        q = r.get("quality", {})
        stacked = f"{r['stacked']}/{n}" if r["stacked"] is not None else "?"
        reg = f"{num(q, 'reg_med_px', '.3f')}/{num(q, 'reg_max_px', '.3f')}"
        print(
            f"| {LABELS[tool]:<20} | {r['wall_s']:>7.1f} | {r['cpu_s']:>6.1f} | "
            f"{r['load']:>4.1f} | {r['peak_mb']:>11.0f} | {r['tree_mb']:>7.0f} | {stacked:>8} | "
            f"{r['reference']:>3} | {num(q, 'noise_e', '.2f'):>8} | "
            f"{num(q, 'fwhm_px', '.2f'):>7} | {num(q, 'trail_e', '+.2f'):>8} | "
            f"{num(q, 'trail_sigma', '+.2f'):>11} | {reg:>14} |"
        )
    notes = []
    for tool, r in results.items():
        extra = []
        if r.get("own_s") is not None:
            extra.append(f"own WALL_TIME_S {r['own_s']:.1f}")
        if r.get("stages"):
            extra.append(r["stages"].strip())
        if extra:
            notes.append(f"{LABELS[tool]}: " + "; ".join(extra))
    sky = float(np.mean(truth.background_e))
    read = float(truth.data["sensor"]["read_noise_e"])
    line = (
        f"ideal noise for {n} frames: sqrt(sky {sky:.0f} + read {read:g}^2) / sqrt({n}) = "
        f"{np.sqrt(sky + read * read) / np.sqrt(n):.2f} e- (no warp smoothing)"
    )
    if truth.trails:
        unrejected = truth.trails[0].peak_e / n
        line += f"; a trail left in a plain mean adds ~{unrejected:.0f} e- at its centre"
    notes.append(line)
    line = f"lights' FWHM in the truth (Moffat): median {np.median(truth.fwhm_pixel_px):.2f} px"
    if scene_fwhm is not None:
        line += (
            f"; the same Gaussian fit on the noise-free truth scene (Moffat FWHM "
            f"{truth.scene_fwhm_px:.2f} px) gives {scene_fwhm:.2f} px"
        )
    notes.append(line)
    sk, si = results.get("skystack", {}), results.get("siril", {})
    if sk.get("rc") == 0:
        line = (
            f"skystack peak RSS {sk['peak_mb']:.0f} MB, process tree {sk['tree_mb']:.0f} MB "
            "(target < 1024 MB)"
        )
        if si.get("rc") == 0:
            line = (
                f"skystack / Siril wall time = {sk['wall_s']:.1f} / {si['wall_s']:.1f} = "
                f"{sk['wall_s'] / si['wall_s']:.2f} (target <= 0.5); " + line
            )
        notes.append(line + f"; frames stacked {sk['stacked']}/{n} (target {n}/{n})")
    for line in notes:
        print(line)
    return notes


def _write_json(
    path: Path, results: dict[str, dict[str, Any]], truth: Any, n: int, notes: list[str]
) -> None:
    """The table for ``benchmarks/run.py``: its format is described in run.py's docstring."""
    rows = []
    for tool, r in results.items():
        row: dict[str, Any] = {"tool": LABELS[tool]}
        if tool != "skystack":
            row["baseline"] = LABELS["skystack"]
        if "skipped" in r:
            row["skipped"] = r["skipped"]
        elif r["rc"] != 0 or "stacked" not in r:
            row["error"] = f"exit {r['rc']}: {r.get('error', '')}"
        if "wall_s" in r:
            row.update({k: r[k] for k in ("wall_s", "cpu_s", "peak_mb", "tree_mb", "load")})
        if r.get("stacked") is not None:
            row["stacked"] = f"{r['stacked']}/{n}"
        row.update(r.get("quality", {}))
        rows.append(row)
    columns = [
        ["wall_s", "wall s", ".1f"], ["cpu_s", "CPU s", ".1f"],
        ["peak_mb", "peak RSS MB", ".0f"], ["stacked", "stacked", ""],
        ["noise_e", "noise e-", ".2f"], ["fwhm_px", "FWHM px", ".2f"],
        ["trail_e", "trail e-", "+.2f"], ["trail_sigma", "trail/noise", "+.2f"],
        ["reg_med_px", "reg err px (median)", ".3f"], ["reg_max_px", "reg err px (max)", ".3f"],
    ]  # fmt: skip
    table = {
        "benchmark": "stack",
        "title": _title(truth, n),
        "columns": columns,
        "ratios": ["wall_s", "cpu_s", "peak_mb", "noise_e", "fwhm_px"],
        "rows": rows,
        "notes": notes,
    }
    path.write_text(json.dumps(table, indent=1))


# --------------------------------------------------------------------------- memory test


def _write_cheap_lights(folder: Path, count: int, shape: tuple[int, int], seed: int) -> None:
    """Noise + one fixed Gaussian star field, shifted by whole pixels (<= 8 px) per light."""
    from astropy.io import fits

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pad = 8
    height, width = shape
    canvas = np.zeros((height + 2 * pad, width + 2 * pad), dtype=np.float32)
    n_stars = max(300, int(height * width / 8000))
    sx = rng.uniform(10, width + 2 * pad - 10, n_stars)
    sy = rng.uniform(10, height + 2 * pad - 10, n_stars)
    peak = np.minimum(30000.0, 150.0 * rng.uniform(0.0, 1.0, n_stars) ** -1.2)
    off = np.arange(-5, 6)
    ix = np.rint(sx).astype(int)[:, None, None] + off[None, None, :]
    iy = np.rint(sy).astype(int)[:, None, None] + off[None, :, None]
    values = peak[:, None, None] * np.exp(
        -((ix - sx[:, None, None]) ** 2 + (iy - sy[:, None, None]) ** 2) / (2 * 1.3**2)
    )
    np.add.at(canvas, (iy, np.broadcast_to(ix, values.shape)), values.astype(np.float32))
    canvas += np.float32(1000.0)
    for index in range(count):
        if (folder / f"light_{index + 1:04d}.fits").exists():
            continue
        dx, dy = (0, 0) if index == 0 else rng.integers(-pad, pad + 1, 2)
        frame = canvas[pad + dy : pad + dy + height, pad + dx : pad + dx + width].copy()
        frame += rng.standard_normal(shape, dtype=np.float32) * np.float32(25.0)
        data = np.clip(frame, 0, 65535).astype(np.uint16)
        header = fits.Header({"IMAGETYP": "Light Frame", "EXPTIME": 60.0})
        tmp = folder / f".light_{index + 1:04d}.fits"
        fits.PrimaryHDU(data, header).writeto(tmp, overwrite=True)
        tmp.rename(folder / f"light_{index + 1:04d}.fits")


def _memory_test(args: argparse.Namespace, root: Path) -> int:
    shape = (args.height, args.width)
    lights = root / "lights"
    start = time.perf_counter()
    _write_cheap_lights(lights, args.frames, shape, args.seed)
    print(
        f"wrote {args.frames} lights of {args.width}x{args.height} uint16 in "
        f"{time.perf_counter() - start:.0f} s",
        flush=True,
    )
    out = root / "out_memory.fits"
    skystack = str(Path(sys.executable).with_name("skystack"))
    run = run_child(
        [skystack, "stack", str(lights), "-o", str(out), "--overwrite"], root / "log_memory.txt"
    )
    mp = args.width * args.height / 1e6
    if run["rc"] != 0 or not out.exists():
        print(
            f"skystack stack {args.frames} x {mp:.0f} MP: FAILED (exit {run['rc']}) after "
            f"{run['wall_s']:.1f} s, peak RSS {run['peak_mb']:.0f} MB: {last_error(run['log'])}"
        )
        return 1
    report = json.loads(out.with_suffix(".json").read_text())
    stacked = sum(1 for row in report["frames"] if row["accepted"])
    print(
        f"skystack stack {args.frames} x {mp:.0f} MP ({args.width}x{args.height}) uint16, no "
        f"calibration: {run['wall_s']:.1f} s (CPU {run['cpu_s']:.0f} s, load {run['load']:.1f}), "
        f"peak RSS {run['peak_mb']:.0f} MB, process tree {run['tree_mb']:.0f} MB "
        f"(target < 2048 MB), {stacked} of {args.frames} frames stacked"
    )
    return 0


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=None, help="30 (100 with --memory-test)")
    parser.add_argument("--width", type=int, default=None, help="4000 (6000 with --memory-test)")
    parser.add_argument("--height", type=int, default=None, help="3000 (4000 with --memory-test)")
    parser.add_argument("--shift", type=float, default=50.0, help="max pointing shift, px")
    parser.add_argument("--rotation", type=float, default=0.5, help="field rotation, degrees")
    parser.add_argument("--star-count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], choices=["siril", "astroalign"])
    parser.add_argument("--memory-test", action="store_true")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--quick", action="store_true", help="the small set: 8 x 1024x1024")
    parser.add_argument("--json", type=Path, help="also write the table here (for run.py)")
    args = parser.parse_args()
    big = args.memory_test
    args.frames = args.frames or (100 if big else 8 if args.quick else 30)
    args.width = args.width or (6000 if big else 1024 if args.quick else 4000)
    args.height = args.height or (4000 if big else 1024 if args.quick else 3000)
    if args.json is not None:
        args.json = args.json.resolve()
    if args.frames < 2:
        parser.error("--frames must be at least 2")
    task = _memory_test if big else _compare
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return task(args, args.keep.resolve())
    with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
        return task(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
