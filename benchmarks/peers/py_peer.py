"""astroalign + ccdproc as a stacking peer: the pipeline a Python user would write from them.

    python benchmarks/peers/py_peer.py [--bias DIR] [--darks DIR] [--flats DIR]
        [--method wsc|ksc|mean|median] [--transforms FILE.json] LIGHTS_DIR OUT.fits

Needs ``astroalign`` (which brings ``sep`` and scikit-image) and ``ccdproc`` (which brings
astropy): ``pip install astroalign ccdproc``. Same inputs and steps as ``siril_stack.py``, so the
two run side by side on the same FITS folders (mono ``(H, W)`` or colour ``(3, H, W)``):

* masters: ``ccdproc.combine`` average with a 3/3 sigma clip about the median with ``mad_std``
  (Siril's ``rej w 3 3``); flats bias-subtracted and scaled by ``1/median`` before combining;
* lights: ``ccdproc.subtract_dark`` (darks contain the bias: exposures taken as equal) or
  ``subtract_bias`` when there are no darks, then ``flat_correct`` (flat normalised by its mean);
* registration: ``astroalign.find_transform`` of each light against light 0's control points
  (detected once, ``astroalign._find_sources``), ``astroalign.apply_transform`` (scikit-image
  bicubic warp) per channel with NaN outside the footprint; colour is matched on green. A light
  whose transform fails is dropped with a message, as Siril does;
* normalisation (Siril's ``addscale``): ``x' = (x - median_i) * mad_0 / mad_i + median_0``, the
  statistics taken on the calibrated frames *before* warping (interpolation smooths the noise
  of every frame but the reference, which would bias a noise-based scale by ~10 %);
* combine: ``wsc`` = ``ccdproc.combine`` average with one pass of 3/3 sigma clipping about the
  median with ``mad_std`` (ccdproc has no winsorized clipping and its clipping is single-pass),
  ``ksc`` the same with ``std``, ``mean`` and ``median`` without rejection. Uncovered pixels 0.

Output: ``OUT.fits``, 32-bit float in ADU. ``--transforms FILE.json`` writes ``{"reference": 0,
"frames": [{"file", "transform"}, ...]}``: per light (sorted file names) the 3x3 matrix mapping
its pixel ``(x, y, 1)`` onto light 0's (null if dropped). Printed at the end: ``stages:`` wall
seconds per step, ``FRAMES_STACKED R/N`` and ``WALL_TIME_S total= PEAK_RSS_MB=``. The tool is
single-process (numpy and scikit-image mostly single-threaded).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings
from pathlib import Path
from typing import Any

T_START = time.perf_counter()

import numpy as np  # noqa: E402

FITS_EXTS = (".fit", ".fits", ".fts")


def _frames(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FITS_EXTS)
    if not files:
        raise SystemExit(f"no FITS files in {folder}")
    return files


def _read(path: Path) -> np.ndarray:
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        for hdu in hdul:
            if hdu.data is not None and hdu.data.ndim >= 2:
                return np.ascontiguousarray(hdu.data, dtype=np.float32)
    raise SystemExit(f"no image in {path}")


def _planes(image: np.ndarray) -> list[np.ndarray]:
    return [image] if image.ndim == 2 else list(image)


def _clip(method: str) -> dict[str, Any]:
    from astropy.stats import mad_std

    if method not in ("wsc", "ksc"):
        return {}
    return {
        "sigma_clip": True,
        "sigma_clip_low_thresh": 3.0,
        "sigma_clip_high_thresh": 3.0,
        "sigma_clip_func": np.ma.median,
        "sigma_clip_dev_func": mad_std if method == "wsc" else np.ma.std,
    }


def _combine(
    images: list[np.ndarray],
    masks: list[np.ndarray] | None,
    method: str,
    clip: dict[str, Any],
    mem_limit: float,
    scale: Any = None,
) -> np.ndarray:
    """``ccdproc.combine`` channel by channel; masked pixels are ignored, uncovered ones 0."""
    import ccdproc
    from astropy.nddata import CCDData

    out = []
    for c in range(len(_planes(images[0]))):
        ccds = [
            CCDData(_planes(a)[c], unit="adu", mask=None if masks is None else _planes(masks[k])[c])
            for k, a in enumerate(images)
        ]
        result = ccdproc.combine(
            ccds, method=method, mem_limit=mem_limit, dtype=np.float32, scale=scale, **clip
        )
        plane = np.asarray(result.data, dtype=np.float32)
        if result.mask is not None:
            plane = np.where(result.mask, np.float32(0), plane)
        out.append(np.nan_to_num(plane, nan=0.0))
    return out[0] if images[0].ndim == 2 else np.stack(out)


def _master(
    folder: Path, mem_limit: float, subtract: np.ndarray | None = None, mulscale: bool = False
) -> np.ndarray:
    images = [_read(p) for p in _frames(folder)]
    if subtract is not None:
        images = [a - subtract for a in images]
    scale = (lambda x: 1.0 / np.median(x)) if mulscale else None
    return _combine(images, None, "average", _clip("wsc"), mem_limit, scale=scale)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("lights", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--bias", type=Path)
    parser.add_argument("--darks", type=Path)
    parser.add_argument("--flats", type=Path)
    parser.add_argument("--method", choices=["wsc", "ksc", "mean", "median"], default="wsc")
    parser.add_argument("--transforms", type=Path, help="write the registration matrices here")
    parser.add_argument("--mem-limit", type=float, default=4e9, help="ccdproc.combine, bytes")
    parser.add_argument("--max-control-points", type=int, default=50)
    parser.add_argument("--detection-sigma", type=float, default=5.0)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)  # astropy/ccdproc chatter

    import astroalign
    import astropy.units as u
    import ccdproc
    import sep
    from astropy.io import fits
    from astropy.nddata import CCDData
    from astropy.stats import mad_std

    sep.set_extract_pixstack(5_000_000)
    sep.set_sub_object_limit(4096)
    times = {"import": time.perf_counter() - T_START}

    t = time.perf_counter()
    bias = _master(args.bias, args.mem_limit) if args.bias else None
    dark = _master(args.darks, args.mem_limit) if args.darks else None
    flat = _master(args.flats, args.mem_limit, bias, mulscale=True) if args.flats else None
    times["masters"] = time.perf_counter() - t

    files = _frames(args.lights)
    t_cal = t_reg = 0.0
    registered: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    stats: list[list[tuple[float, float]]] = []
    matrices: list[list[list[float]] | None] = []
    ref_points = ref_plane = None
    for path in files:
        t = time.perf_counter()
        ccd = CCDData(_read(path), unit="adu")
        if dark is not None:
            one = 1 * u.s
            ccd = ccdproc.subtract_dark(
                ccd, CCDData(dark, unit="adu"), dark_exposure=one, data_exposure=one
            )
        elif bias is not None:
            ccd = ccdproc.subtract_bias(ccd, CCDData(bias, unit="adu"))
        if flat is not None:
            ccd = ccdproc.flat_correct(
                ccd, CCDData(flat, unit="adu"), min_value=1e-3 * float(np.mean(flat))
            )
        image = np.asarray(ccd.data, dtype=np.float32)
        del ccd
        # Sky level and spread per channel, every 4th pixel, before any warp.
        frame_stats = []
        for plane in _planes(image):
            v = plane.ravel()[::4]
            v = v[np.isfinite(v)]
            frame_stats.append((float(np.median(v)), float(mad_std(v))))
        t_cal += time.perf_counter() - t

        t = time.perf_counter()
        detect = image if image.ndim == 2 else image[1]
        if ref_points is None:  # light 0 is the reference: its control points, once
            try:
                found = astroalign._find_sources(detect, detection_sigma=args.detection_sigma)
                ref_points = found[: args.max_control_points]
            except Exception:  # too few sources: let astroalign detect in the image itself
                ref_points = detect.copy()
            ref_plane = detect
            registered.append(image)
            masks.append(np.zeros(image.shape, dtype=bool))
            matrices.append(np.eye(3).tolist())
            stats.append(frame_stats)
            t_reg += time.perf_counter() - t
            continue
        try:
            transform, _ = astroalign.find_transform(
                detect,
                ref_points,
                max_control_points=args.max_control_points,
                detection_sigma=args.detection_sigma,
            )
        except Exception as err:  # MaxIterError, TooFewStarsError, ValueError: dropped
            print(f"registration failed for {path.name}: {err}", file=sys.stderr)
            matrices.append(None)
            t_reg += time.perf_counter() - t
            continue
        warped = [
            astroalign.apply_transform(transform, p, ref_plane, fill_value=np.nan)
            for p in _planes(image)
        ]
        planes = [w.astype(np.float32) for w, _ in warped]
        footprints = [f for _, f in warped]
        registered.append(planes[0] if image.ndim == 2 else np.stack(planes))
        masks.append(footprints[0] if image.ndim == 2 else np.stack(footprints))
        matrices.append(np.asarray(transform.params, dtype=np.float64).tolist())
        stats.append(frame_stats)
        del image, planes, warped
        t_reg += time.perf_counter() - t
    times["calibrate"], times["register"] = t_cal, t_reg
    print(f"registered {len(registered)}/{len(files)} frames")

    t = time.perf_counter()
    for k, image in enumerate(registered):
        for c, plane in enumerate(_planes(image)):
            (loc, spread), (loc0, spread0) = stats[k][c], stats[0][c]
            plane -= loc
            plane *= spread0 / spread
            plane += loc0
            plane[_planes(masks[k])[c]] = np.nan  # masked pixels: NaN, so clipping ignores them
    times["normalise"] = time.perf_counter() - t

    t = time.perf_counter()
    method = "median" if args.method == "median" else "average"
    result = _combine(registered, masks, method, _clip(args.method), args.mem_limit)
    times["combine"] = time.perf_counter() - t
    del registered, masks

    t = time.perf_counter()
    hdu = fits.PrimaryHDU(result.astype(np.float32))
    hdu.header["STACKCNT"] = (len(stats), "frames combined")
    hdu.header["PROGRAM"] = "py_peer (astroalign + ccdproc)"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    hdu.writeto(args.output, overwrite=True)
    if args.transforms is not None:
        frames = [{"file": p.name, "transform": m} for p, m in zip(files, matrices, strict=True)]
        args.transforms.write_text(json.dumps({"reference": 0, "frames": frames}))
    times["write"] = time.perf_counter() - t

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("stages: " + " ".join(f"{k}={v:.2f}" for k, v in times.items()))
    print(f"FRAMES_STACKED {len(stats)}/{len(files)}")
    print(f"output: {args.output}")
    print(f"WALL_TIME_S total={time.perf_counter() - T_START:.2f}  PEAK_RSS_MB={peak_mb:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
