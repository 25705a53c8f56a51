"""Stars of a stacked image: a soft star mask, the starless image, star reduction and boost.

The image is split into a *starless* image and a *star layer* that recombine into it exactly
(:func:`star_layer` and :func:`recombine` are inverses, by screen or by addition). Stars are
then changed on the layer alone, so everything that is not a star stays as it was:

* :func:`detect_stars` finds the stars (:func:`skystack.detect.find_stars`, with blobs that are
  much wider than the typical star dropped);
* :func:`star_mask` paints one soft-edged disc per star, shared by all channels: 1 out to where
  the star's measured radial profile falls below the noise, then a smoothstep to 0;
* :func:`remove_stars` fills every disc with the harmonic (Laplace) interpolation of the pixels
  around it, which follows gradients and extended objects under the star, and blends the fill
  in with the soft mask, so the starless image equals the input outside the mask;
* :func:`reduce_stars` shrinks stars by a morphological erosion of the star layer (the star
  reduction of Siril and of PixInsight's MorphologicalTransformation);
* :func:`boost_stars` gives each star a gain that falls with its peak, so faint stars gain the
  most contrast (the "adaptive enhancement that boosts dim stars more than bright ones" of the
  phone astrophotography workflow this project started from).

Everything works on linear data and on stretched (display) data in [0, 1], mono ``(H, W)`` and
colour ``(H, W, 3)``. Noise levels are measured on the image given, so the same thresholds hold
before and after a stretch.

References
----------
.. [1] E. Bertin and S. Arnouts, "SExtractor: Software for source extraction", A&AS 117, 393
   (1996) (the detection behind :func:`detect_stars`).
.. [2] J. Serra, "Image Analysis and Mathematical Morphology", Academic Press (1982) (erosion).
.. [3] W. H. Press et al., "Numerical Recipes", 3rd ed., section 20.5 (successive
   over-relaxation for Laplace's equation, used for the fill).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeAlias

import cv2
import numba
import numpy as np
import numpy.typing as npt
from scipy.ndimage import median_filter

from skystack._typing import Image
from skystack.detect.stars import StarTable, find_stars, luminance

__all__ = [
    "BlendMode",
    "BLEND_MODES",
    "detect_stars",
    "image_noise",
    "star_mask",
    "remove_stars",
    "star_layer",
    "recombine",
    "reduce_stars",
    "boost_stars",
]

BlendMode: TypeAlias = Literal["screen", "add"]
"""How the star layer combines with the starless image: ``1 - (1 - a)(1 - b)`` or ``a + b``."""
BLEND_MODES: tuple[BlendMode, ...] = ("screen", "add")

_SCREEN_FLOOR = 1e-3
"""Smallest ``1 - starless`` the screen inverse divides by (starless pixels at full scale)."""
_MODEL_BETA = 2.5
"""Moffat index of the star model used where no image is given and for the profile search range;
wider wings than the usual beta = 3-4 of real stars, so the model errs on the large side."""
_SEARCH_FACTOR = 1.5
"""A star's profile is searched out to this multiple of its model radius plus 2 px (at least
3 FWHM)."""
_SATURATED_SEARCH_FACTOR = 3.0
"""The same for saturated stars, whose clipped peaks understate their model radius (by a
third for a star peaking at 3 times the clip level)."""
_FWHM_PEERS = 15
"""Objects of similar peak whose median FWHM an object's FWHM is compared with."""
_DEFAULT_FWHM = 3.0
"""FWHM (px) assumed when no star of the table has a fitted FWHM."""
_MIN_EDGE = 2.0
"""Narrowest soft edge of a mask disc (px)."""
_NOISE_SCALE = 2.0
"""Gaussian sigma (px) of the high-pass on which the noise is measured."""
_NOISE_SAMPLE = 1_000_000
"""Pixels sampled (in full-width bands) for the noise estimate."""
_NOISE_FLOOR = 2e-6
"""Smallest noise sigma used, as a fraction of the image's largest value (an eighth of a 16-bit
step for data that reach full scale)."""
_SIGNIFICANCE = 2.0
"""Star-layer values of this many noise sigmas get half the boost or reduction (the weight is
``v^2 / (v^2 + (2 sigma)^2)``), so the noise inside the mask discs is hardly changed."""
_MAX_FILL_ITERATIONS = 400
_FILL_TOLERANCE = 0.5
"""The fill's relaxation stops when no pixel moves by more than this many noise sigmas."""
_STEP_Y = (1, -1, 0, 0)
_STEP_X = (0, 0, 1, -1)
"""The 4-connected neighbours of a pixel."""


# --------------------------------------------------------------------------------------------
# Checks and small helpers


def _as_image(image: npt.ArrayLike, what: str = "image") -> Image:
    data = np.asarray(image)
    if data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 3):
        return data.astype(np.float32, copy=False)
    raise ValueError(f"{what} must be (H, W) or (H, W, 3), got shape {data.shape}")


def _as_channels(image: Image) -> Image:
    """C-contiguous float32 ``(H, W, C)`` view (a copy only if needed) of an image."""
    data = np.ascontiguousarray(image, dtype=np.float32)
    return data[..., None] if data.ndim == 2 else data


def _check_mode(mode: str) -> bool:
    """Validate ``mode``; True for screen."""
    if mode not in BLEND_MODES:
        raise ValueError(f"mode must be one of {BLEND_MODES}, got {mode!r}")
    return mode == "screen"


def _check_amount(amount: float, upper: float | None = None) -> None:
    if not np.isfinite(amount) or amount < 0.0 or (upper is not None and amount > upper):
        expected = f"in [0, {upper:g}]" if upper is not None else ">= 0"
        raise ValueError(f"amount must be {expected}, got {amount}")


def _check_noise(noise: float) -> float:
    if not (np.isfinite(noise) and noise > 0.0):
        raise ValueError(f"noise must be a positive number, got {noise}")
    return float(noise)


def _noise_or_measure(image: Image, noise: float | None) -> float:
    """The given noise sigma (checked), or the measured one with a floor for noise-free data."""
    if noise is not None:
        return _check_noise(noise)
    flat = image.reshape(-1)
    if flat.size == 0:
        return 1e-12
    top = max(abs(float(np.fmax.reduce(flat))), abs(float(np.fmin.reduce(flat))))
    if not np.isfinite(top):  # all NaN, or infinities
        finite = flat[np.isfinite(flat)]
        top = float(np.max(np.abs(finite))) if finite.size else 0.0
    # Noise-free (synthetic) data measure float32 rounding; keep the thresholds above it.
    floor = max(_NOISE_FLOOR * top, 1e-12)
    measured = image_noise(image)
    return max(measured, floor) if np.isfinite(measured) else floor


def _worker_count() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, 8))


def _in_threads(kernel: Callable[..., None], *args: object) -> None:
    """Run ``kernel(*args, first, step)`` in one thread per CPU, each on every ``step``-th item.

    The kernels are compiled without the GIL; each thread writes its own items of the output.
    """
    workers = _worker_count()
    if workers == 1:
        kernel(*args, 0, 1)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(kernel, *args, k, workers) for k in range(workers)]:
            future.result()


def _typical_fwhm(stars: StarTable) -> float:
    finite = stars.fwhm[np.isfinite(stars.fwhm)]
    return float(np.median(finite)) if finite.size else _DEFAULT_FWHM


def _filled_fwhm(stars: StarTable) -> npt.NDArray[np.float64]:
    fwhm = np.where(np.isfinite(stars.fwhm), stars.fwhm, _typical_fwhm(stars))
    return np.maximum(fwhm, 1.0)


def image_noise(image: npt.ArrayLike) -> float:
    """Per-pixel noise sigma of an image (its luminance for colour), robust to stars and nebulae.

    The median absolute deviation of the image minus its Gaussian blur (sigma 2 px), on bands
    of rows sampling about a million pixels, corrected for the part of white noise the blur
    removes. Unlike differences of neighbouring pixels it also sees most of the noise of
    debayered (spatially correlated) data.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, 3)

    Returns
    -------
    float
        Noise sigma in the image's units; NaN if there are fewer than 16 finite pixels.
    """
    data = _as_image(image)
    height, width = data.shape[:2]
    band = min(height, 64)
    n_bands = max(1, min(_NOISE_SAMPLE // max(band * width, 1), height // band))
    starts = np.linspace(0, height - band, n_bands).astype(np.intp)
    kernel = cv2.getGaussianKernel(int(2 * math.ceil(4 * _NOISE_SCALE) + 1), _NOISE_SCALE)
    centre = float(kernel.max()) ** 2
    energy = float(np.sum(kernel**2)) ** 2
    # Variance of (x - blur(x)) for white noise of unit variance.
    kept_variance = 1.0 - 2.0 * centre + energy
    samples = []
    for start in starts:
        rows = luminance(data[start : start + band])
        finite = np.isfinite(rows)
        rows = np.where(finite, rows, np.float32(0.0))
        highpass = rows - cv2.GaussianBlur(rows, (0, 0), _NOISE_SCALE)
        samples.append(highpass[finite])
    values = np.concatenate(samples)
    if values.size < 16:
        return float("nan")
    mad = float(np.median(np.abs(values - np.median(values))))
    sigma = 1.4826 * mad
    if sigma == 0.0:  # coarsely quantised data: most differences are exactly 0
        low, high = np.percentile(values, [1.0, 99.0])
        sigma = float(np.std(values[(values >= low) & (values <= high)]))
    return sigma / math.sqrt(kept_variance)


def _channel_noise(image: Image) -> npt.NDArray[np.float64]:
    """Noise sigma of each channel (a tiny positive floor where it cannot be measured)."""
    planes = image[..., None] if image.ndim == 2 else image
    sigmas = [image_noise(planes[..., c]) for c in range(planes.shape[2])]
    return np.array([s if np.isfinite(s) and s > 0 else 1e-12 for s in sigmas])


# --------------------------------------------------------------------------------------------
# Detection


def detect_stars(
    image: npt.ArrayLike,
    *,
    threshold: float = 5.0,
    max_stars: int | None = None,
    max_fwhm_ratio: float = 1.5,
) -> StarTable:
    """Find the stars of a stacked image (linear or stretched) for the functions of this module.

    :func:`skystack.detect.find_stars` on the luminance, then unsaturated objects that are much
    wider than stars of similar peak are dropped: knots of nebulae and galaxy cores, which
    would otherwise be cut out with the stars. An object is too wide when its FWHM exceeds
    ``max_fwhm_ratio`` times the median FWHM of the 15 objects nearest to it in peak (stars
    look wider the brighter they are on a stretched image), or twice that ratio times the
    median FWHM of all.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, 3)
    threshold : float
        Detection threshold in noise sigmas (of the 3 x 3 smoothed image, as in find_stars).
    max_stars : int, optional
        Keep only the brightest ``max_stars``.
    max_fwhm_ratio : float
        Widest accepted FWHM as a multiple of the median FWHM of stars of similar peak.

    Returns
    -------
    StarTable
        Sorted by flux, brightest first.
    """
    if not max_fwhm_ratio > 1.0:
        raise ValueError(f"max_fwhm_ratio must be above 1, got {max_fwhm_ratio}")
    stars = find_stars(_as_image(image), threshold=threshold, max_stars=max_stars)
    if len(stars) < 3:
        return stars
    fwhm = _filled_fwhm(stars)
    by_peak = np.argsort(stars.peak, kind="stable")
    similar = np.empty(len(stars))
    similar[by_peak] = median_filter(
        fwhm[by_peak], size=min(_FWHM_PEERS, len(stars)), mode="nearest"
    )
    too_wide = (fwhm > max_fwhm_ratio * similar) | (
        fwhm > 2.0 * max_fwhm_ratio * _typical_fwhm(stars)
    )
    return stars.select(~(too_wide & ~stars.saturated))


# --------------------------------------------------------------------------------------------
# The mask


def _peak_estimate(stars: StarTable, fwhm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Peak above the sky from the table: ``peak``, or from ``flux`` where the core is clipped."""
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / _MODEL_BETA) - 1.0))
    from_flux = stars.flux * (_MODEL_BETA - 1.0) / (math.pi * alpha * alpha)
    peak = np.asarray(stars.peak, dtype=np.float64)
    return np.where(stars.saturated, np.maximum(peak, from_flux), peak)


def _measured_peaks(
    image: Image, stars: StarTable, fwhm: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Each star's peak above the local sky on ``image`` (H, W, C), in luminance.

    The highest of the 3 x 3 pixels at the centre, minus the median of 16 pixels on a circle
    of radius ``3 fwhm + 2``.
    """
    height, width = image.shape[:2]

    def lum_at(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]):
        col = np.clip(np.rint(x), 0, width - 1).astype(np.intp)
        row = np.clip(np.rint(y), 0, height - 1).astype(np.intp)
        return image[row, col].mean(axis=-1, dtype=np.float64)

    x, y = stars.x[:, None], stars.y[:, None]
    step = np.array([-1.0, 0.0, 1.0])
    core = lum_at(x + np.repeat(step, 3)[None, :], y + np.tile(step, 3)[None, :])
    angle = np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False)[None, :]
    radius = (3.0 * fwhm + 2.0)[:, None]
    ring = lum_at(x + radius * np.cos(angle), y + radius * np.sin(angle))
    peak = np.max(np.where(np.isfinite(core), core, -np.inf), axis=1)
    sky = np.full(len(stars), np.nan)
    seen = np.isfinite(ring).any(axis=1)
    sky[seen] = np.nanmedian(ring[seen], axis=1)
    with np.errstate(invalid="ignore"):
        above = peak - sky
    return np.where(np.isfinite(above), np.maximum(above, 0.0), 0.0)


def _model_radius(
    peak: npt.NDArray[np.float64], fwhm: npt.NDArray[np.float64], level: float
) -> npt.NDArray[np.float64]:
    """Radius (px) where a Moffat star (beta 2.5) of ``peak`` and ``fwhm`` falls to ``level``."""
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / _MODEL_BETA) - 1.0))
    ratio = np.maximum(np.asarray(peak, dtype=np.float64) / max(level, 1e-30), 1.0)
    return alpha * np.sqrt(np.maximum(ratio ** (1.0 / _MODEL_BETA) - 1.0, 0.0))


@numba.njit(cache=True, nogil=True)
def _median(values):  # pragma: no cover - compiled
    """Median of a 1-D float64 array, reordering it in place (Hoare's quickselect)."""
    n = values.shape[0]
    half = n // 2
    upper = _select(values, half)
    if n % 2 == 1:
        return upper
    lower = values[0]
    for k in range(1, half):
        if values[k] > lower:
            lower = values[k]
    return 0.5 * (lower + upper)


@numba.njit(cache=True, nogil=True)
def _select(values, k):  # pragma: no cover - compiled
    """The ``k``-th smallest value; afterwards ``values[:k]`` holds the ones below it."""
    lo = 0
    hi = values.shape[0] - 1
    while hi > lo:
        pivot = values[(lo + hi) // 2]
        i = lo
        j = hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return values[k]


@numba.njit(cache=True, nogil=True)
def _extent_kernel(image, xs, ys, caps, level, out, first, step):  # pragma: no cover - compiled
    """Radius where each star's radial profile falls below ``level`` above its local sky.

    Works on the luminance (mean of the channels of ``image``, ``(H, W, C)``). The sky is the
    median of the annulus from ``caps[i]`` to ``1.2 caps[i] + 3`` px; the profile is the
    median of 1 px wide rings (medians ignore neighbouring stars). ``out[i]`` is the first
    ring radius whose median is below sky + level, or, beyond the half maximum, falls by less
    than half the level over the next 2 px; ``caps[i]`` if there is none.
    """
    height, width, n_channels = image.shape
    for i in range(first, xs.shape[0], step):
        cap = caps[i]
        n_rings = int(cap) + 1
        outer = 1.2 * cap + 3.0
        box = int(math.ceil(outer))
        ix = int(math.floor(xs[i] + 0.5))
        iy = int(math.floor(ys[i] + 0.5))
        x0, x1 = max(ix - box, 0), min(ix + box, width - 1)
        y0, y1 = max(iy - box, 0), min(iy + box, height - 1)
        size = (y1 - y0 + 1) * (x1 - x0 + 1)
        ring = np.empty(size, dtype=np.int64)
        value = np.empty(size)
        counts = np.zeros(n_rings + 1, dtype=np.int64)
        n = 0
        for yy in range(y0, y1 + 1):
            for xx in range(x0, x1 + 1):
                v = 0.0
                for c in range(n_channels):
                    v += image[yy, xx, c]
                if not np.isfinite(v):
                    continue
                r = math.hypot(xx - xs[i], yy - ys[i])
                k = int(r + 0.5)
                if k >= n_rings:
                    if r < cap or r > outer:
                        continue
                    k = n_rings
                ring[n] = k
                value[n] = v / n_channels
                counts[k] += 1
                n += 1
        starts = np.zeros(n_rings + 2, dtype=np.int64)
        for k in range(n_rings + 1):
            starts[k + 1] = starts[k] + counts[k]
        grouped = np.empty(n)
        filled = starts[:-1].copy()
        for m in range(n):
            grouped[filled[ring[m]]] = value[m]
            filled[ring[m]] += 1
        medians = np.full(n_rings, np.inf)
        for k in range(n_rings):
            if counts[k] > 0:
                medians[k] = _median(grouped[starts[k] : starts[k + 1]])
        if counts[n_rings] >= 8:
            sky = _median(grouped[starts[n_rings] : starts[n_rings + 1]])
        else:
            sky = medians.min()
        # Beyond half its height a star's profile keeps falling; where it stops falling
        # (by less than half the level over 2 px) a nebula or a halo has taken over.
        half = sky + 0.5 * (max(medians[0], medians[1]) - sky)
        extent = cap
        for k in range(1, n_rings):
            flat = k + 2 < n_rings and medians[k] < half
            flat = flat and medians[k] - medians[k + 2] < 0.5 * level
            if medians[k] - sky < level or flat:
                extent = float(k)
                break
        out[i] = extent


def _disc_radii(
    image: Image | None,
    stars: StarTable,
    *,
    noise: float,
    threshold: float = 1.0,
    scale: float = 1.0,
    edge: float = 0.3,
    max_radius: float = 64.0,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Inner (mask 1) and outer (mask 0) radius of each star's disc; ``image`` is (H, W, C).

    With an image the peaks are measured on it, so a table found on the linear image serves
    its stretched version too.
    """
    fwhm = _filled_fwhm(stars)
    level = threshold * noise
    if image is None:
        model = _model_radius(_peak_estimate(stars, fwhm), fwhm, level)
        inner = model
    else:
        model = _model_radius(_measured_peaks(image, stars, fwhm), fwhm, level)
        # The sky annulus sits just beyond the search range, close enough to see the local
        # level of a nebula the star lies on. Clipped cores hide how bright a star is.
        factor = np.where(stars.saturated, _SATURATED_SEARCH_FACTOR, _SEARCH_FACTOR)
        caps = np.clip(factor * model + 2.0, 3.0 * fwhm, max_radius)
        inner = np.empty(len(stars))
        _in_threads(
            _extent_kernel,
            image,
            np.ascontiguousarray(stars.x, dtype=np.float64),
            np.ascontiguousarray(stars.y, dtype=np.float64),
            caps.astype(np.float64),
            float(level),
            inner,
        )
    # The model radius is a floor: a neighbour's halo in the sky annulus can stop the profile early.
    inner = np.clip(np.maximum(inner, model), 0.75 * fwhm, max_radius) * scale
    outer = inner + np.maximum(edge * inner, _MIN_EDGE)
    return inner, outer


@numba.njit(cache=True, nogil=True)
def _paint_kernel(out, xs, ys, inner, outer, values):  # pragma: no cover - compiled
    """``out = max(out, max_i values_i m_i)`` over smoothstep discs ``m_i`` (1 inside
    ``inner[i]``, 0 beyond ``outer[i]``)."""
    height, width = out.shape
    for i in range(xs.shape[0]):
        r_in = inner[i]
        r_out = outer[i]
        box = int(math.ceil(r_out))
        ix = int(math.floor(xs[i] + 0.5))
        iy = int(math.floor(ys[i] + 0.5))
        edge = r_out - r_in
        for yy in range(max(iy - box, 0), min(iy + box, height - 1) + 1):
            dy = yy - ys[i]
            for xx in range(max(ix - box, 0), min(ix + box, width - 1) + 1):
                dx = xx - xs[i]
                r = math.sqrt(dx * dx + dy * dy)
                if r >= r_out:
                    continue
                m = 1.0
                if r > r_in:
                    t = (r_out - r) / edge
                    m = t * t * (3.0 - 2.0 * t)
                m *= values[i]
                if m > out[yy, xx]:
                    out[yy, xx] = m


def _paint(
    shape: tuple[int, int],
    stars: StarTable,
    inner: npt.NDArray[np.float64],
    outer: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64] | None = None,
) -> Image:
    """The discs of ``stars`` painted on a zero float32 image (the star mask by default)."""
    out = np.zeros(shape, dtype=np.float32)
    _paint_kernel(
        out,
        np.ascontiguousarray(stars.x, dtype=np.float64),
        np.ascontiguousarray(stars.y, dtype=np.float64),
        np.ascontiguousarray(inner, dtype=np.float64),
        np.ascontiguousarray(outer, dtype=np.float64),
        np.ones(len(stars)) if values is None else np.ascontiguousarray(values, dtype=np.float64),
    )
    return out


def star_mask(
    image_or_shape: npt.ArrayLike | tuple[int, ...],
    stars: StarTable,
    *,
    scale: float = 1.0,
    threshold: float = 1.0,
    edge: float = 0.3,
    max_radius: float = 64.0,
    noise: float | None = None,
) -> Image:
    """Soft star mask: one disc per star, 1 where the star is above the noise, a smooth edge.

    Each disc is 1 out to the radius where the star falls below ``threshold`` noise sigmas,
    so bright stars get wider discs that take in their halos; then it falls to 0 by a
    smoothstep over ``edge`` times that radius (at least 2 px). Overlapping discs take the
    maximum. That radius is the larger of two: where a Moffat star (beta 2.5, wider wings than
    most real stars) of the star's FWHM and of its peak measured on the image would fall to
    that level; and where the star's radial profile (medians of 1 px rings of the luminance,
    less the median of an annulus beyond the searched range) does, searched out to 1.5 times
    the Moffat radius plus 2 px (3 times for saturated stars; at least 3 FWHM). Without an
    image (``image_or_shape`` a shape) the Moffat radius of the table's peak is used.

    Parameters
    ----------
    image_or_shape : array_like (H, W) or (H, W, 3), or tuple
        The image the stars were found in (linear or stretched), or its shape.
    stars : StarTable
        Stars in the image's pixel coordinates, e.g. from :func:`detect_stars`.
    scale : float
        Multiplies every radius: above 1 for a more generous mask.
    threshold : float
        Level, in noise sigmas of the luminance, where a disc's full-strength part ends.
    edge : float
        Width of the soft edge as a fraction of the inner radius (at least 2 px).
    max_radius : float
        Largest inner radius (px), before ``scale``.
    noise : float, optional
        Per-pixel noise sigma of the luminance; measured with :func:`image_noise` when an image
        is given. Required with a shape.

    Returns
    -------
    ndarray float32 (H, W)
        Values in [0, 1], 1 on stars; the same mask serves every channel.
    """
    if not (scale > 0.0 and threshold > 0.0 and edge >= 0.0 and max_radius >= 1.0):
        raise ValueError(
            "star_mask needs scale > 0, threshold > 0, edge >= 0 and max_radius >= 1, got "
            f"scale={scale}, threshold={threshold}, edge={edge}, max_radius={max_radius}"
        )
    if isinstance(image_or_shape, tuple):
        shape = (int(image_or_shape[0]), int(image_or_shape[1]))
        data = None
        if noise is None:
            raise ValueError("star_mask of a shape needs noise= (the luminance noise sigma)")
    else:
        image = _as_image(image_or_shape)
        shape = (int(image.shape[0]), int(image.shape[1]))
        data = _as_channels(image)
        noise = _noise_or_measure(image, noise)
    if len(stars) == 0:
        return np.zeros(shape, dtype=np.float32)
    inner, outer = _disc_radii(
        data,
        stars,
        noise=_check_noise(noise),
        threshold=threshold,
        scale=scale,
        edge=edge,
        max_radius=max_radius,
    )
    return _paint(shape, stars, inner, outer)


# --------------------------------------------------------------------------------------------
# The starless image


@numba.njit(cache=True, nogil=True)
def _det3(a, b, c, d, e, f, g, h, i):  # pragma: no cover - compiled
    """Determinant of the 3 x 3 matrix with rows (a, b, c), (d, e, f), (g, h, i)."""
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


@numba.njit(cache=True, nogil=True)
def _fill_kernel(
    image, mask, labels, boxes, order, tolerance, out, first, step
):  # pragma: no cover - compiled
    """Fill each labelled region with the harmonic interpolation of the pixels around it.

    Region ``j`` (label ``j + 1``, bounding box ``boxes[j] = x0, y0, x1, y1``) starts from a
    least-squares plane through its 4-connected outside neighbours and is relaxed by successive
    over-relaxation of Laplace's equation with those neighbours fixed, until no pixel moves by
    more than ``tolerance``. Then ``out = image + mask (fill - image)`` on the region. Regions
    never touch (8-connected labels), so threads may solve different regions at once.
    """
    height, width, n_channels = image.shape
    for t in range(first, order.shape[0], step):
        j = order[t]
        label = j + 1
        x0, y0, x1, y1 = boxes[j, 0], boxes[j, 1], boxes[j, 2], boxes[j, 3]
        bw = x1 - x0 + 1
        local = np.full((y1 - y0 + 1, bw), -1, dtype=np.int64)
        npix = 0
        for yy in range(y0, y1 + 1):
            for xx in range(x0, x1 + 1):
                if labels[yy, xx] == label:
                    local[yy - y0, xx - x0] = npix
                    npix += 1
        py = np.empty(npix, dtype=np.int64)
        px = np.empty(npix, dtype=np.int64)
        for yy in range(y0, y1 + 1):
            for xx in range(x0, x1 + 1):
                k = local[yy - y0, xx - x0]
                if k >= 0:
                    py[k] = yy
                    px[k] = xx
        # Per pixel: its unknown neighbours, the sum of its known (fixed) neighbours, and how
        # many neighbours it averages; the known ones also feed the starting plane.
        neighbours = np.full((npix, 4), -1, dtype=np.int64)
        known = np.zeros((npix, n_channels))
        count = np.zeros(npix)
        a = np.zeros((3, 3))
        b = np.zeros((3, n_channels))
        cx = 0.5 * (x0 + x1)
        cy = 0.5 * (y0 + y1)
        for k in range(npix):
            for d in range(4):
                yy = py[k] + _STEP_Y[d]
                xx = px[k] + _STEP_X[d]
                if yy < 0 or yy >= height or xx < 0 or xx >= width:
                    continue
                if labels[yy, xx] == label:
                    neighbours[k, d] = local[yy - y0, xx - x0]
                    count[k] += 1.0
                    continue
                finite = True
                for c in range(n_channels):
                    if not np.isfinite(image[yy, xx, c]):
                        finite = False
                if not finite:
                    continue
                count[k] += 1.0
                u = xx - cx
                v = yy - cy
                a[0, 0] += 1.0
                a[0, 1] += u
                a[0, 2] += v
                a[1, 1] += u * u
                a[1, 2] += u * v
                a[2, 2] += v * v
                for c in range(n_channels):
                    val = image[yy, xx, c]
                    known[k, c] += val
                    b[0, c] += val
                    b[1, c] += u * val
                    b[2, c] += v * val
        # Cramer's rule on the symmetric normal equations; the mean if they are degenerate.
        coef = np.zeros((3, n_channels))
        n0, su, sv, suu, suv, svv = a[0, 0], a[0, 1], a[0, 2], a[1, 1], a[1, 2], a[2, 2]
        det = _det3(n0, su, sv, su, suu, suv, sv, suv, svv)
        for c in range(n_channels):
            b0, b1, b2 = b[0, c], b[1, c], b[2, c]
            if n0 >= 6.0 and abs(det) > 1e-9 * n0 * suu * svv:
                coef[0, c] = _det3(b0, su, sv, b1, suu, suv, b2, suv, svv) / det
                coef[1, c] = _det3(n0, b0, sv, su, b1, suv, sv, b2, svv) / det
                coef[2, c] = _det3(n0, su, b0, su, suu, b1, sv, suv, b2) / det
            elif n0 > 0.0:
                coef[0, c] = b0 / n0
        fill = np.empty((npix, n_channels))
        for k in range(npix):
            for c in range(n_channels):
                fill[k, c] = coef[0, c] + coef[1, c] * (px[k] - cx) + coef[2, c] * (py[k] - cy)
        # Relaxation converges in about a region's width of sweeps: a disc's width from its
        # area, or the box's if that is narrower (long thin chains of discs).
        side = min(float(max(x1 - x0, y1 - y0)), 1.13 * math.sqrt(npix)) + 2.0
        omega = 2.0 / (1.0 + math.sin(math.pi / side))
        iterations = min(int(2.0 * side) + 20, _MAX_FILL_ITERATIONS)
        for _ in range(iterations):
            largest = 0.0
            for k in range(npix):
                if count[k] == 0.0:
                    continue
                for c in range(n_channels):
                    total = known[k, c]
                    for d in range(4):
                        nb = neighbours[k, d]
                        if nb >= 0:
                            total += fill[nb, c]
                    change = omega * (total / count[k] - fill[k, c])
                    fill[k, c] += change
                    if abs(change) > largest:
                        largest = abs(change)
            if largest < tolerance:
                break
        for k in range(npix):
            weight = mask[py[k], px[k]]
            for c in range(n_channels):
                val = image[py[k], px[k], c]
                if np.isfinite(val):
                    out[py[k], px[k], c] = val + weight * (fill[k, c] - val)
                else:
                    out[py[k], px[k], c] = fill[k, c]


def _fill_under_mask(image: Image, mask: Image, noise: float) -> Image:
    """``image`` with every region where ``mask > 0`` filled from around it (see kernel)."""
    out = np.array(image, dtype=np.float32, order="C", copy=True)
    support = (mask > 0.0).view(np.uint8)
    if not support.any():
        return out
    n_labels, labels, stats, _ = cv2.connectedComponentsWithStats(
        support, connectivity=8, ltype=cv2.CV_32S
    )
    del support
    boxes = np.empty((n_labels - 1, 4), dtype=np.int64)
    boxes[:, 0] = stats[1:, cv2.CC_STAT_LEFT]
    boxes[:, 1] = stats[1:, cv2.CC_STAT_TOP]
    boxes[:, 2] = stats[1:, cv2.CC_STAT_LEFT] + stats[1:, cv2.CC_STAT_WIDTH] - 1
    boxes[:, 3] = stats[1:, cv2.CC_STAT_TOP] + stats[1:, cv2.CC_STAT_HEIGHT] - 1
    # Largest regions first, dealt round the threads, to share the work evenly.
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA], kind="stable").astype(np.int64)
    _in_threads(
        _fill_kernel,
        _as_channels(image),
        np.ascontiguousarray(mask, dtype=np.float32),
        labels,
        boxes,
        order,
        _FILL_TOLERANCE * noise,
        out[..., None] if out.ndim == 2 else out,
    )
    return out


def _resolve_mask(
    image: Image, stars_or_mask: StarTable | npt.ArrayLike | None, *, scale: float, noise: float
) -> Image:
    if stars_or_mask is None:
        stars_or_mask = detect_stars(image)
    if isinstance(stars_or_mask, StarTable):
        return star_mask(image, stars_or_mask, scale=scale, noise=noise)
    mask = np.asarray(stars_or_mask, dtype=np.float32)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask of shape {mask.shape} for an image of shape {image.shape}")
    in_range = mask.size == 0 or (mask.min() >= 0.0 and mask.max() <= 1.0)
    if not (in_range and np.all(np.isfinite(mask))):
        raise ValueError("mask values must be finite and in [0, 1]")
    return mask


def remove_stars(
    image: npt.ArrayLike,
    stars_or_mask: StarTable | npt.ArrayLike | None = None,
    *,
    scale: float = 1.0,
    noise: float | None = None,
    rng: np.random.Generator | None = None,
) -> Image:
    """Starless image: the stars under the mask replaced by what surrounds them.

    Each connected region of the mask's support (``mask > 0``) is filled by the harmonic
    interpolation of the pixels bordering it: a least-squares plane through them, relaxed by
    successive over-relaxation of Laplace's equation (to 0.5 noise sigma), so gradients and
    extended objects carry through the hole without seams. The fill is blended in with the
    soft mask, ``starless = image + mask (fill - image)``: outside the mask the starless image
    is the input itself. The work is proportional to the masked pixels.

    The fill is smooth and, being harmonic, cannot rebuild a peak of a nebula hidden under a
    large star; it interpolates across it. On a noisy image smooth discs show: pass ``rng``
    to give them the image's noise (Gaussian, each channel's measured sigma, weighted so that
    the soft edge keeps the total variance). :func:`boost_stars` and :func:`reduce_stars`
    use the smooth fill, which keeps the star layer free of added noise.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, 3)
        Linear or stretched image.
    stars_or_mask : StarTable or array_like (H, W), optional
        The stars (a mask is made with :func:`star_mask` and ``scale``), or a soft mask in
        [0, 1] shared by all channels. Default: :func:`detect_stars` on ``image``.
    scale : float
        Radius scale of the mask made from a star table.
    noise : float, optional
        Luminance noise sigma (:func:`image_noise`), measured when None.
    rng : numpy.random.Generator, optional
        Adds noise to the fill (see above); None leaves it smooth.

    Returns
    -------
    ndarray float32, the shape of ``image``
    """
    data = _as_image(image)
    noise = _noise_or_measure(data, noise)
    mask = _resolve_mask(data, stars_or_mask, scale=scale, noise=noise)
    starless = _fill_under_mask(data, mask, noise)
    if rng is not None:
        inside = np.flatnonzero(mask > 0.0)
        kept = 1.0 - mask.reshape(-1)[inside].astype(np.float64)
        weight = np.sqrt(np.maximum(1.0 - kept * kept, 0.0))[:, None]
        sigma = _channel_noise(data)[None, :]
        grain = weight * sigma * rng.standard_normal((inside.size, sigma.shape[1]))
        flat = starless.reshape(-1, sigma.shape[1])
        flat[inside] += grain.astype(np.float32)
    return starless


# --------------------------------------------------------------------------------------------
# Star layer and recombination


def star_layer(
    image: npt.ArrayLike, starless: npt.ArrayLike, *, mode: BlendMode = "screen"
) -> Image:
    """The star layer that :func:`recombine` puts on ``starless`` to give back ``image``.

    ``add``: ``image - starless``. ``screen``: the inverse of the screen blend
    ``1 - (1 - starless)(1 - stars)``, i.e. ``(image - starless) / (1 - starless)``, with
    ``starless`` capped at ``1 - 1e-3`` in both functions so that they stay exact inverses (up
    to float32 rounding) even where the starless image reaches full scale.

    Parameters
    ----------
    image, starless : array_like, same shape
    mode : {"screen", "add"}

    Returns
    -------
    ndarray float32
        Zero wherever ``image == starless``; negative where noise leaves the image below the
        starless fill.
    """
    _check_mode(mode)
    data = _as_image(image)
    base = _as_image(starless, "starless")
    if data.shape != base.shape:
        raise ValueError(f"starless of shape {base.shape} for an image of shape {data.shape}")
    if mode == "add":
        return np.subtract(data, base, dtype=np.float32)
    capped = np.minimum(base, np.float32(1.0 - _SCREEN_FLOOR))
    out = np.subtract(data, capped, dtype=np.float32)
    out /= np.float32(1.0) - capped
    return out


def recombine(
    starless: npt.ArrayLike, stars: npt.ArrayLike, *, mode: BlendMode = "screen"
) -> Image:
    """Put a star layer back on a starless image: the inverse of :func:`star_layer`.

    ``add``: ``starless + stars``. ``screen``: ``1 - (1 - starless)(1 - stars)``, computed as
    ``starless + stars (1 - starless)`` with ``starless`` capped at ``1 - 1e-3``.

    Parameters
    ----------
    starless, stars : array_like, same shape
    mode : {"screen", "add"}

    Returns
    -------
    ndarray float32
    """
    _check_mode(mode)
    base = _as_image(starless, "starless")
    layer = _as_image(stars, "stars")
    if layer.shape != base.shape:
        raise ValueError(f"star layer of shape {layer.shape} for a starless image of {base.shape}")
    if mode == "add":
        return np.add(base, layer, dtype=np.float32)
    capped = np.minimum(base, np.float32(1.0 - _SCREEN_FLOOR))
    out = np.float32(1.0) - capped
    out *= layer
    out += capped
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _layer_px(value, base, screen):  # pragma: no cover - compiled
    """One pixel of :func:`star_layer`."""
    if not screen:
        return value - base
    capped = min(base, 1.0 - _SCREEN_FLOOR)
    return (value - capped) / (1.0 - capped)


@numba.njit(cache=True, nogil=True, inline="always")
def _recombine_px(base, layer, screen):  # pragma: no cover - compiled
    """One pixel of :func:`recombine`."""
    if not screen:
        return base + layer
    capped = min(base, 1.0 - _SCREEN_FLOOR)
    return capped + layer * (1.0 - capped)


@numba.njit(cache=True, nogil=True, inline="always")
def _significant_px(layer, noise, base, screen):  # pragma: no cover - compiled
    """The part of a star-layer value that stands out of the image noise (0 below zero).

    The screen layer divides the image by ``1 - starless``, and its noise with it.
    """
    if not layer > 0.0:
        return 0.0
    if screen:
        noise /= 1.0 - min(base, 1.0 - _SCREEN_FLOOR)
    square = layer * layer
    return layer * square / (square + (_SIGNIFICANCE * noise) ** 2)


# --------------------------------------------------------------------------------------------
# Reduction and boost


def _prepare(
    image: npt.ArrayLike,
    stars: StarTable | None,
    starless: npt.ArrayLike | None,
    noise: float | None,
) -> tuple[Image, StarTable, Image | None, float]:
    data = _as_image(image)
    if stars is None:
        stars = detect_stars(data)
    base = None
    if starless is not None:
        base = _as_image(starless, "starless")
        if base.shape != data.shape:
            raise ValueError(f"starless of shape {base.shape} for an image of shape {data.shape}")
    return data, stars, base, _noise_or_measure(data, noise)


@numba.njit(cache=True, nogil=True)
def _strong_kernel(
    image, starless, mask, channel, noise, screen, out, first, step
):  # pragma: no cover - compiled
    """``out`` = the significant star layer of one channel under the mask, 0 elsewhere."""
    height, width = mask.shape
    for y in range(first, height, step):
        for x in range(width):
            value = 0.0
            if mask[y, x] > 0.0:
                v = image[y, x, channel]
                b = starless[y, x, channel]
                if np.isfinite(v) and np.isfinite(b):
                    value = _significant_px(_layer_px(v, b, screen), noise, b, screen)
            out[y, x] = value


@numba.njit(cache=True, nogil=True)
def _reduce_kernel(
    image, starless, mask, strong, eroded, channel, amount, screen, out, first, step
):  # pragma: no cover - compiled
    """Take ``amount`` of what the erosion removed off the star layer; recombine.

    Every pixel of ``out`` is written (the image where the mask is 0), so ``out`` may be
    ``starless`` itself.
    """
    height, width = mask.shape
    for y in range(first, height, step):
        for x in range(width):
            m = mask[y, x]
            v = image[y, x, channel]
            b = starless[y, x, channel]
            if m <= 0.0 or not (np.isfinite(v) and np.isfinite(b)):
                out[y, x, channel] = v
                continue
            layer = _layer_px(v, b, screen) - amount * m * (strong[y, x] - eroded[y, x])
            out[y, x, channel] = _recombine_px(b, layer, screen)


def reduce_stars(
    image: npt.ArrayLike,
    stars: StarTable | None = None,
    *,
    amount: float = 0.5,
    size: int | None = None,
    mode: BlendMode = "screen",
    starless: npt.ArrayLike | None = None,
    noise: float | None = None,
) -> Image:
    """Make stars smaller and fainter, leaving everything else unchanged.

    Morphological star reduction on the star layer: the significant part of the layer (its
    positive values, weighted by ``v^2 / (v^2 + (2 sigma)^2)`` so that noise is left alone) is
    eroded by a disc of radius ``size`` px, and ``amount`` times what the erosion took away is
    removed from the layer under the star mask; the layer is then recombined with the
    starless image. An erosion of ``size`` px trims about ``2 size`` px off a star's width.
    The layer only ever loses positive values, so no dark rings appear.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, 3)
        Linear or stretched image.
    stars : StarTable, optional
        Default: :func:`detect_stars` on ``image``.
    amount : float
        Strength in [0, 1]: 0 changes nothing, 1 replaces the stars by their eroded versions.
    size : int, optional
        Erosion radius (px); default ``max(1, round(median FWHM / 3))``.
    mode : {"screen", "add"}
        How the star layer is split off and put back.
    starless : array_like, optional
        The starless image from :func:`remove_stars` with the same stars, to save its work.
    noise : float, optional
        Luminance noise sigma (:func:`image_noise`), measured when None.

    Returns
    -------
    ndarray float32, the shape of ``image``
    """
    screen = _check_mode(mode)
    _check_amount(amount, 1.0)
    if size is not None and size < 1:
        raise ValueError(f"size must be at least 1 px, got {size}")
    data, stars, base, noise = _prepare(image, stars, starless, noise)
    if len(stars) == 0 or amount == 0.0:
        return data.copy()
    if size is None:
        size = max(1, int(round(_typical_fwhm(stars) / 3.0)))
    channels = _as_channels(data)
    inner, outer = _disc_radii(channels, stars, noise=noise)
    mask = _paint(channels.shape[:2], stars, inner, outer)
    if base is None:
        # Written over in place: each pixel is read before its result is stored.
        base = out = _fill_under_mask(data, mask, noise)
    else:
        out = np.empty(data.shape, dtype=np.float32)
    starless_channels = _as_channels(base)
    out_channels = out[..., None] if out.ndim == 2 else out
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * size + 1, 2 * size + 1))
    strong = np.empty(mask.shape, dtype=np.float32)
    eroded = np.empty(mask.shape, dtype=np.float32)
    for channel, sigma in enumerate(_channel_noise(data)):
        _in_threads(
            _strong_kernel, channels, starless_channels, mask, channel, sigma, screen, strong
        )
        cv2.erode(strong, kernel, dst=eroded, borderType=cv2.BORDER_REPLICATE)
        _in_threads(
            _reduce_kernel,
            channels,
            starless_channels,
            mask,
            strong,
            eroded,
            channel,
            amount,
            screen,
            out_channels,
        )
    return out


@numba.njit(cache=True, nogil=True)
def _boost_kernel(
    image, starless, gain, noise, screen, out, first, step
):  # pragma: no cover - compiled
    """``layer + gain * significant(layer)`` recombined, capped at ``max(image, 1)``.

    Every pixel of ``out`` is written (the image where the gain is 0), so ``out`` may be
    ``starless`` itself.
    """
    height, width, n_channels = image.shape
    for y in range(first, height, step):
        for x in range(width):
            g = gain[y, x]
            for c in range(n_channels):
                v = image[y, x, c]
                b = starless[y, x, c]
                if g <= 0.0 or not (np.isfinite(v) and np.isfinite(b)):
                    out[y, x, c] = v
                    continue
                layer = _layer_px(v, b, screen)
                layer += g * _significant_px(layer, noise[c], b, screen)
                out[y, x, c] = min(_recombine_px(b, layer, screen), max(v, 1.0))


def boost_stars(
    image: npt.ArrayLike,
    stars: StarTable | None = None,
    *,
    amount: float = 1.0,
    pivot: float | None = None,
    mode: BlendMode = "screen",
    starless: npt.ArrayLike | None = None,
    noise: float | None = None,
) -> Image:
    """Raise the contrast of faint stars more than that of bright ones.

    Each star gets an extra gain ``amount / (1 + peak / pivot)`` on its star layer, where
    ``peak`` is its peak above the local sky measured on ``image`` (so the stars may come from
    the linear image and the boost act on the stretched one): stars much fainter than
    ``pivot`` gain about ``1 + amount`` times their contrast, stars much brighter
    about 1. The extra gains are painted with the star-mask discs (the largest where discs
    overlap, fading with the soft edge) and applied to the significant part of the layer only
    (positive values weighted by ``v^2 / (v^2 + (2 sigma)^2)``, so that the noise inside the
    discs is hardly amplified); the layer is recombined with the starless image. Pixels
    outside the mask do not change, and no pixel is pushed above 1.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, 3)
        Linear or stretched image.
    stars : StarTable, optional
        Default: :func:`detect_stars` on ``image``; positions and FWHM are used.
    amount : float
        Extra gain of the faintest stars (>= 0).
    pivot : float, optional
        Peak (``image`` units above the sky) at which the extra gain is halved; default the
        median peak of the stars (of those above their sky).
    mode : {"screen", "add"}
        How the star layer is split off and put back.
    starless : array_like, optional
        The starless image from :func:`remove_stars` with the same stars, to save its work.
    noise : float, optional
        Luminance noise sigma (:func:`image_noise`), measured when None.

    Returns
    -------
    ndarray float32, the shape of ``image``
    """
    screen = _check_mode(mode)
    _check_amount(amount)
    data, stars, base, noise = _prepare(image, stars, starless, noise)
    if len(stars) == 0 or amount == 0.0:
        return data.copy()
    channels = _as_channels(data)
    peaks = _measured_peaks(channels, stars, _filled_fwhm(stars))
    if pivot is None:
        if not np.any(peaks > 0.0):  # no star stands above its sky on this image
            return data.copy()
        pivot = float(np.median(peaks[peaks > 0.0]))
    if not (np.isfinite(pivot) and pivot > 0.0):
        raise ValueError(f"pivot must be a positive peak level, got {pivot}")
    extra = amount / (1.0 + peaks / pivot)
    inner, outer = _disc_radii(channels, stars, noise=noise)
    if base is None:
        # Written over in place: each pixel is read before its result is stored.
        mask = _paint(channels.shape[:2], stars, inner, outer)
        base = out = _fill_under_mask(data, mask, noise)
        del mask
    else:
        out = np.empty(data.shape, dtype=np.float32)
    gain = _paint(channels.shape[:2], stars, inner, outer, extra)
    _in_threads(
        _boost_kernel,
        channels,
        _as_channels(base),
        gain,
        _channel_noise(data),
        screen,
        out[..., None] if out.ndim == 2 else out,
    )
    return out
