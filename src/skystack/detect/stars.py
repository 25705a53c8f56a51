"""Star detection: background subtraction, extraction, sub-pixel centroids and PSF widths.

:func:`find_stars` finds point sources with SEP [1]_ (the Source Extractor algorithms [2]_ as a
library), measures windowed centroids (``XWIN_IMAGE``), fits a circular Gaussian to every star in
one compiled loop for its FWHM, and rejects what is not a star: hot pixels, cosmic rays, trail
fragments, objects cut by the border or by missing data.

References
----------
.. [1] K. Barbary, "SEP: Source Extractor as a library", JOSS 1(6), 58 (2016).
.. [2] E. Bertin and S. Arnouts, "SExtractor: Software for source extraction", A&AS 117, 393
   (1996).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numba
import numpy as np
import numpy.typing as npt
import sep

from skystack._typing import XY, Image, Mask

__all__ = ["StarTable", "luminance", "find_stars", "GAUSSIAN_FWHM"]

logger = logging.getLogger(__name__)

GAUSSIAN_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""FWHM of a Gaussian in units of its sigma (2.3548)."""

_PIXSTACK = 5_000_000
"""SEP's pixel buffer: enough for a dense 24 MP field (memory is only touched as it is used)."""
_SUB_OBJECT_LIMIT = 4096
_BORDER = 2
"""Objects with a pixel within this many pixels of the frame edge are dropped."""
_MIN_FWHM = 1.0
"""Narrower than this (px) is a hot pixel or a cosmic-ray hit, not a star."""
_SPIKE_RATIO = 0.1
"""Neighbour-to-peak ratio below which an object is a single-pixel spike."""
_WINPOS_LIMIT = 1000
"""Brightest stars given SEP's windowed centroid; the others keep the fitted centre."""
_MAX_WINDOW_SIGMA = 4.0
"""Widest Gaussian window (px) of the windowed centroid (a star of FWHM 9.4 px)."""
_MAX_FIT_RADIUS = 10
"""Largest fit stamp radius (px): enough for FWHM up to about 7 px; wider blobs are not stars."""
_MAX_ELONGATION = 3.0
"""Objects with isophotal a/b above this are trail fragments or blends, not stars."""
_RETRY_FACTOR = 2.0
"""Threshold multiplier after SEP runs out of its pixel buffer or deblending slots."""
_SMOOTH_SIGMA = 1.2
"""Gaussian matched filter (px) of the adaptive retry on faint frames."""
_RETRY_THRESHOLDS = (3.0, 2.0)
"""Isophotal thresholds of the retry, in noise sigmas of the smoothed image (never below 2)."""
_MIN_RETRY_THRESHOLD = 2.0
_RETRY_PEAK_SIGMA = 6.0
"""In the retry an object's smoothed peak must reach this many sigmas of the smoothed noise.

For white noise smoothed by a Gaussian of sigma s, the expected number of noise peaks above t
sigmas (the Euler characteristic of the excursion set, Adler 1981) is about
``A / (2 s^2) t exp(-t^2 / 2) / (2 pi)^1.5`` for an area ``A``: with s = 1.2 px and t = 6, 5e-4
for 512 x 512 pixels and 0.05 for 24 MP. Noise is measured on the smoothed image itself, so
correlated noise (debayered data) raises the bar with it.
"""

_FIT_WINDOW = 1.5
"""The fit weights pixels by a Gaussian window of this many starting sigmas: it follows the core.

An unweighted Gaussian fit to a Moffat (beta = 3) star widens to reach the wings and reports a
FWHM ~8% above the pixel-integrated half-maximum width; with this window the excess is ~4%.
"""

_FULL_BACKGROUND_PIXELS = 4_000_000

_BAD = np.uint8(1)
_SATURATED = np.uint8(2)


@dataclass(frozen=True, eq=False)
class StarTable:
    """Detected stars, sorted by flux, brightest first. All arrays have length N.

    Attributes
    ----------
    x, y : ndarray float64
        Sub-pixel centroids (0-based pixel centres; x is the column, y the row).
    flux : ndarray float64
        Background-subtracted isophotal flux (image units x pixels).
    peak : ndarray float64
        Highest background-subtracted pixel value near the centroid (image units).
    fwhm : ndarray float64
        FWHM (px) of a circular Gaussian fitted to the star; NaN where the fit failed.
    eccentricity : ndarray float64
        ``sqrt(1 - (b/a)^2)`` of the isophotal second moments, in [0, 1).
    saturated : ndarray bool
        Whether a pixel of the star reaches the saturation level.
    """

    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    flux: npt.NDArray[np.float64]
    peak: npt.NDArray[np.float64]
    fwhm: npt.NDArray[np.float64]
    eccentricity: npt.NDArray[np.float64]
    saturated: npt.NDArray[np.bool_]

    def __post_init__(self) -> None:
        n = len(self.x)
        for name in ("y", "flux", "peak", "fwhm", "eccentricity", "saturated"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"StarTable.{name} has {len(getattr(self, name))} entries, x has {n}"
                )

    def __len__(self) -> int:
        return int(len(self.x))

    @property
    def xy(self) -> XY:
        """Centroids as an ``(N, 2)`` array of ``(x, y)``."""
        return np.column_stack([self.x, self.y]).astype(np.float64, copy=False)

    def select(self, index: npt.ArrayLike) -> StarTable:
        """Return the stars picked by a boolean mask or an index array, in the order given."""
        idx = np.asarray(index)
        if idx.dtype == np.bool_ and idx.shape != (len(self),):
            raise ValueError(f"boolean selection of shape {idx.shape} for {len(self)} stars")
        if idx.dtype != np.bool_:
            idx = idx.astype(np.intp, copy=False).reshape(-1)
        return StarTable(
            x=self.x[idx],
            y=self.y[idx],
            flux=self.flux[idx],
            peak=self.peak[idx],
            fwhm=self.fwhm[idx],
            eccentricity=self.eccentricity[idx],
            saturated=self.saturated[idx],
        )

    def brightest(self, n: int, *, unsaturated: bool = True) -> StarTable:
        """Return the ``n`` brightest stars (by flux), skipping saturated ones by default.

        Saturated stars have flat tops and poor centroids; leave them out of matching.
        """
        if n < 0:
            raise ValueError(f"brightest() needs n >= 0, got {n}")
        keep = np.flatnonzero(~self.saturated) if unsaturated else np.arange(len(self))
        return self.select(keep[:n])

    @classmethod
    def empty(cls) -> StarTable:
        """A table with no stars."""
        nothing = np.zeros(0, dtype=np.float64)
        return cls(
            x=nothing,
            y=nothing.copy(),
            flux=nothing.copy(),
            peak=nothing.copy(),
            fwhm=nothing.copy(),
            eccentricity=nothing.copy(),
            saturated=np.zeros(0, dtype=np.bool_),
        )


_CHANNEL_MEAN = np.full((1, 3), 1.0 / 3.0, dtype=np.float32)


def luminance(image: npt.ArrayLike) -> Image:
    """Return a 2-D float32 image to detect stars on.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, 3)
        Mono image (returned as float32, a view when it already is one) or colour image (the
        mean of its channels, a new array).

    Returns
    -------
    ndarray float32 (H, W)
    """
    data = np.asarray(image)
    if data.ndim == 2:
        return data.astype(np.float32, copy=False)
    if data.ndim == 3 and data.shape[2] == 3:
        # cv2.transform mixes interleaved channels in one threaded pass (strided numpy slices
        # take several times longer on large frames).
        rgb = np.ascontiguousarray(data, dtype=np.float32)
        return cv2.transform(rgb, _CHANNEL_MEAN).reshape(data.shape[:2])
    raise ValueError(f"star detection needs an (H, W) or (H, W, 3) image, got shape {data.shape}")


# --------------------------------------------------------------------------------------------
# The PSF fit.
#
# A circular Gaussian plus a constant is fitted to every star by Levenberg-Marquardt, all stars
# in one compiled loop. scipy.optimize.least_squares per star costs about 1 ms in Python
# overhead alone (argument checking, callbacks into Python for each residual and Jacobian), so
# 2000 stars would take 2 s; this loop does them in a few milliseconds.


@numba.njit(cache=True, nogil=True)
def _solve5(a, b, out):  # pragma: no cover - compiled
    """Solve the 5x5 symmetric positive system ``a x = b`` by Cholesky; False if singular."""
    n = 5
    chol = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= chol[i, k] * chol[j, k]
            if i == j:
                if s <= 0.0:
                    return False
                chol[i, i] = math.sqrt(s)
            else:
                chol[i, j] = s / chol[j, j]
    z = np.zeros(n)
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= chol[i, k] * z[k]
        z[i] = s / chol[i, i]
    for i in range(n - 1, -1, -1):
        s = z[i]
        for k in range(i + 1, n):
            s -= chol[k, i] * out[k]
        out[i] = s / chol[i, i]
    return True


@numba.njit(cache=True, nogil=True)
def _gauss_cost(px, py, val, wt, n, p):  # pragma: no cover - compiled
    """Weighted sum of squared residuals of the Gaussian ``p`` over ``n`` stamp pixels."""
    amp, cx, cy, sig, const = p[0], p[1], p[2], p[3], p[4]
    inv = 0.5 / (sig * sig)
    cost = 0.0
    for k in range(n):
        dx = px[k] - cx
        dy = py[k] - cy
        r = val[k] - (const + amp * math.exp(-(dx * dx + dy * dy) * inv))
        cost += wt[k] * r * r
    return cost


@numba.njit(cache=True, nogil=True)
def _lm_fit(px, py, val, wt, n, p, max_radius, iterations):  # pragma: no cover - compiled
    """Levenberg-Marquardt on ``p = amp, x, y, s, const`` in place; False if it broke down."""
    jtj = np.zeros((5, 5))
    jtr = np.zeros(5)
    a = np.zeros((5, 5))
    step = np.zeros(5)
    trial = np.zeros(5)
    grad = np.zeros(5)
    lam = 1e-3
    cost = _gauss_cost(px, py, val, wt, n, p)
    if not np.isfinite(cost):
        return False
    for _ in range(iterations):
        jtj[:, :] = 0.0
        jtr[:] = 0.0
        amp, cx, cy, sig = p[0], p[1], p[2], p[3]
        inv_s2 = 1.0 / (sig * sig)
        for k in range(n):
            dx = px[k] - cx
            dy = py[k] - cy
            r2 = dx * dx + dy * dy
            g = math.exp(-0.5 * r2 * inv_s2)
            res = val[k] - (p[4] + amp * g)
            ag = amp * g
            grad[0] = g
            grad[1] = ag * dx * inv_s2
            grad[2] = ag * dy * inv_s2
            grad[3] = ag * r2 * inv_s2 / sig
            grad[4] = 1.0
            w = wt[k]
            for j in range(5):
                jtr[j] += w * grad[j] * res
                for m in range(j + 1):
                    jtj[j, m] += w * grad[j] * grad[m]
        for j in range(5):
            for m in range(j + 1, 5):
                jtj[j, m] = jtj[m, j]
        improved = False
        converged = False
        for _attempt in range(8):
            for j in range(5):
                for m in range(5):
                    a[j, m] = jtj[j, m]
                a[j, j] = jtj[j, j] * (1.0 + lam) + 1e-30
            if not _solve5(a, jtr, step):
                lam *= 10.0
                continue
            for j in range(5):
                trial[j] = p[j] + step[j]
            if trial[3] < 0.2 or trial[3] > max_radius or trial[0] <= 0.0:
                lam *= 10.0
                continue
            new_cost = _gauss_cost(px, py, val, wt, n, trial)
            if new_cost <= cost:
                converged = abs(step[1]) < 2e-4 and abs(step[2]) < 2e-4
                converged = converged and abs(step[3]) < 1e-3 * trial[3]
                for j in range(5):
                    p[j] = trial[j]
                cost = new_cost
                lam = max(lam * 0.1, 1e-7)
                improved = True
                break
            lam *= 10.0
        if not improved or converged:
            break
    return True


@numba.njit(cache=True, nogil=True)
def _fit_stars_kernel(
    data, flags, use_flags, xs, ys, sigmas, radii, iterations, wscale, out
):  # pragma: no cover - compiled
    """Fit ``const + amp exp(-r^2 / 2 s^2)`` to each star's stamp; measure peak and flags.

    Levenberg-Marquardt on ``amp, x, y, s, const``, with residuals weighted by a Gaussian window
    of ``wscale`` sigmas; flagged pixels are left out. Two rounds: the window of the first is set
    by the starting sigma and centre, that of the second by the first round's fit.
    ``out[i]`` receives ``amp, x, y, s, ok, peak, n_saturated, n_bad_core``.
    """
    height, width = data.shape
    size = 2 * int(radii.max()) + 1 if radii.shape[0] else 1
    px = np.empty(size * size)
    py = np.empty(size * size)
    val = np.empty(size * size)
    wt = np.empty(size * size)
    p = np.zeros(5)
    for i in range(xs.shape[0]):
        rad = radii[i]
        ix = int(math.floor(xs[i] + 0.5))
        iy = int(math.floor(ys[i] + 0.5))
        x0 = max(ix - rad, 0)
        x1 = min(ix + rad, width - 1)
        y0 = max(iy - rad, 0)
        y1 = min(iy + rad, height - 1)
        # Gather the usable pixels; peak, saturated and missing pixels near the centre; the
        # starting constant from the stamp's edge.
        peak = -np.inf
        n_sat = 0
        n_bad = 0
        core2 = max(2.0, 1.5 * sigmas[i]) ** 2
        edge_sum = 0.0
        edge_n = 0
        n = 0
        for yy in range(y0, y1 + 1):
            for xx in range(x0, x1 + 1):
                f = flags[yy, xx] if use_flags else 0
                r2 = (xx - xs[i]) ** 2 + (yy - ys[i]) ** 2
                if f & 2:
                    n_sat += 1
                if f & 1:
                    if r2 <= core2:
                        n_bad += 1
                    continue
                v = data[yy, xx]
                if r2 <= 2.25 and v > peak:
                    peak = v
                if yy == y0 or yy == y1 or xx == x0 or xx == x1:
                    edge_sum += v
                    edge_n += 1
                if f == 0:
                    px[n] = xx
                    py[n] = yy
                    val[n] = v
                    n += 1
        out[i, 5] = peak
        out[i, 6] = n_sat
        out[i, 7] = n_bad
        const = edge_sum / edge_n if edge_n > 0 else 0.0
        p[0] = max(peak - const, 1e-30)
        p[1] = xs[i]
        p[2] = ys[i]
        p[3] = max(sigmas[i], 0.4)
        p[4] = const
        ok = n >= 8
        for _round in range(2):
            if not ok:
                break
            window = max(wscale * p[3], 1.0)
            winv = 0.5 / (window * window) if wscale > 0.0 else 0.0
            m = 0
            for k in range(n):
                w = math.exp(-((px[k] - p[1]) ** 2 + (py[k] - p[2]) ** 2) * winv)
                if w > 1e-4:  # drop pixels the window ignores anyway
                    px[m] = px[k]
                    py[m] = py[k]
                    val[m] = val[k]
                    wt[m] = w
                    m += 1
            n = m
            if n < 8:
                ok = False
                break
            ok = _lm_fit(px, py, val, wt, n, p, 2.0 * rad, iterations)
        moved = math.hypot(p[1] - xs[i], p[2] - ys[i])
        ok = ok and p[0] > 0.0 and 0.2 <= p[3] <= 2.0 * rad and moved <= 0.5 * rad + 0.5
        out[i, 0] = p[0]
        out[i, 1] = p[1]
        out[i, 2] = p[2]
        out[i, 3] = p[3]
        out[i, 4] = 1.0 if ok else 0.0


def _fit_stars(
    data: Image,
    flags: npt.NDArray[np.uint8] | None,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    sigma: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Run the fit kernel; returns ``(N, 8)``: amp, x, y, s, ok, peak, n_saturated, n_bad."""
    radii = np.clip(np.ceil(3.0 * sigma) + 1, 4, _MAX_FIT_RADIUS).astype(np.int64)
    out = np.zeros((x.size, 8), dtype=np.float64)
    use_flags = flags is not None
    flag_array = flags if flags is not None else np.zeros((1, 1), dtype=np.uint8)
    if x.size:
        _fit_stars_kernel(
            data,
            flag_array,
            use_flags,
            np.ascontiguousarray(x, dtype=np.float64),
            np.ascontiguousarray(y, dtype=np.float64),
            np.ascontiguousarray(sigma, dtype=np.float64),
            radii,
            15,
            _FIT_WINDOW,
            out,
        )
    return out


# --------------------------------------------------------------------------------------------
# Detection.


def _extract(
    data: Image, threshold: float, noise: float, mask: Mask | None, min_area: int, smoothed: bool
) -> np.ndarray:
    """``sep.extract``, growing its pixel buffer, then raising the threshold, on overflows.

    SEP clears its whole pixel buffer on every call (about 25 ms per million entries), so the
    buffer is sized to the image: a sixth of its pixels covers very dense fields.
    """
    pixels = int(data.size)
    pixstack = int(np.clip(pixels // 6, 100_000, _PIXSTACK))
    sep.set_sub_object_limit(max(sep.get_sub_object_limit(), _SUB_OBJECT_LIMIT))
    kwargs: dict[str, object] = {"err": noise, "mask": mask, "minarea": min_area}
    if smoothed:
        kwargs["filter_kernel"] = None
    current = threshold
    for _ in range(8):
        sep.set_extract_pixstack(pixstack)
        try:
            return sep.extract(data, current, **kwargs)
        except Exception as err:  # SEP raises a plain Exception for its buffer overflows
            text = str(err).lower()
            if "pixel buffer full" in text and pixstack < min(pixels, _PIXSTACK):
                pixstack = min(4 * pixstack, max(pixels, 100_000), _PIXSTACK)
                logger.info("sep: %s; growing the pixel buffer to %d", err, pixstack)
                continue
            if "pixel buffer full" not in text and "overflow" not in text:
                raise
            logger.info("sep: %s at threshold %.3g; retrying at %.3g", err, current, current * 2.0)
            current *= _RETRY_FACTOR
    raise RuntimeError(
        f"star extraction kept overflowing SEP's buffers up to threshold {current:.3g} sigma"
    )


def _subtract_background(data: Image, bad: Mask | None, box: int) -> float:
    """Subtract SEP's background from ``data`` in place; return the global background RMS.

    Frames above 4 MP are measured on every second pixel of every second row (a quarter of the
    pixels, ``box / 2`` meshes, the same per-pixel noise) and the background map is upsampled
    bilinearly: SEP's mesh statistics are most of the detection time otherwise (0.35 s at
    12 MP), and a map that is smooth over ``box`` pixels loses nothing.
    """
    height, width = data.shape
    if data.size <= _FULL_BACKGROUND_PIXELS or box < 16:
        box = int(min(box, max(height, width)))
        bkg = sep.Background(data, mask=bad, bw=box, bh=box)
        bkg.subfrom(data)
    else:
        small = np.ascontiguousarray(data[::2, ::2])
        small_bad = None if bad is None else np.ascontiguousarray(bad[::2, ::2])
        half = int(min(box // 2, max(small.shape)))
        bkg = sep.Background(small, mask=small_bad, bw=half, bh=half)
        back = bkg.back(dtype=np.float32)
        # Full-resolution pixel x sits at small-grid coordinate x / 2; cv2.resize samples at
        # (x + 0.5) / 2 - 0.5, a quarter-pixel offset of the small grid: negligible for a map
        # that varies over tens of pixels.
        data -= cv2.resize(back, (width, height), interpolation=cv2.INTER_LINEAR)
    if bad is not None:
        data[bad] = 0.0
    return float(bkg.globalrms)


def _saturation_level(data: Image) -> float | None:
    """Infer a clip level: the image maximum if it is a plateau of at least 3 pixels."""
    finite_max = float(np.nanmax(data)) if data.size else float("nan")
    if not np.isfinite(finite_max) or finite_max <= 0.0:
        return None
    count = int(np.count_nonzero(data >= finite_max * (1.0 - 1e-3)))
    if count >= 3:
        return finite_max * 0.999
    return None


def _single_pixel_spikes(sub: Image, objects: np.ndarray) -> npt.NDArray[np.bool_]:
    """Objects whose peak pixel stands alone: hot pixels and cosmic rays.

    The mean of the four neighbours of a star's peak pixel is at least ~15% of the peak for any
    FWHM above 1.1 px (and the fit rejects narrower ones anyway); a hot pixel's neighbours hold
    only noise. Dropping these before the fits saves most of the detection time on raw frames
    with thousands of hot pixels.
    """
    height, width = sub.shape
    xp = np.clip(np.asarray(objects["xpeak"], dtype=np.intp), 1, width - 2)
    yp = np.clip(np.asarray(objects["ypeak"], dtype=np.intp), 1, height - 2)
    peak = sub[yp, xp]
    neighbours = (sub[yp - 1, xp] + sub[yp + 1, xp] + sub[yp, xp - 1] + sub[yp, xp + 1]) / 4.0
    return (peak > 0.0) & (neighbours < _SPIKE_RATIO * peak)


def _measure(
    sub: Image,
    objects: np.ndarray,
    flags: npt.NDArray[np.uint8] | None,
    bad: Mask | None,
    shape: tuple[int, int],
    noise: float,
    limit: int | None = None,
) -> StarTable:
    """Reject junk among SEP's objects and measure the rest on the unsmoothed image ``sub``.

    With ``limit``, only the ``limit`` brightest candidates (by isophotal flux, after the
    geometric cuts) are fitted, with a margin of half as many again for the ones the fit
    rejects.

    A successful fit must be at least 1 px FWHM with an amplitude of 2 noise sigmas (5 when
    saturated pixels were left out of it: a saturated hot pixel leaves only noise to fit). A
    failed fit keeps the object only if it is unsaturated, has 3 or more pixels above the
    threshold and second moments at least 1 px FWHM.
    """
    height, width = shape
    if objects.size == 0:
        return StarTable.empty()
    a = np.asarray(objects["a"], dtype=np.float64)
    b = np.asarray(objects["b"], dtype=np.float64)
    keep = (
        ((objects["flag"] & (sep.OBJ_DOVERFLOW | sep.OBJ_TRUNC)) == 0)
        & (objects["xmin"] >= _BORDER)
        & (objects["ymin"] >= _BORDER)
        & (objects["xmax"] <= width - 1 - _BORDER)
        & (objects["ymax"] <= height - 1 - _BORDER)
        & (a <= _MAX_ELONGATION * b)
        & (b > 0.0)
        & np.isfinite(objects["x"])
        & np.isfinite(objects["y"])
    )
    objects = objects[keep]
    a, b = a[keep], b[keep]
    if objects.size == 0:
        return StarTable.empty()
    single = _single_pixel_spikes(sub, objects)
    if single.any():
        objects, a, b = objects[~single], a[~single], b[~single]
        if objects.size == 0:
            return StarTable.empty()
    if limit is not None and objects.size > limit + limit // 2:
        brightest = np.argsort(-np.asarray(objects["flux"], dtype=np.float64), kind="stable")
        chosen = np.sort(brightest[: limit + limit // 2])
        objects, a, b = objects[chosen], a[chosen], b[chosen]
    x_iso = np.asarray(objects["x"], dtype=np.float64)
    y_iso = np.asarray(objects["y"], dtype=np.float64)
    # Isophotal moments shrink for faint stars (the isophote cuts the wings), so start the fit a
    # little wider than sqrt(ab).
    sigma0 = np.clip(1.2 * np.sqrt(a * b), 0.6, 6.0)
    fit = _fit_stars(sub, flags, x_iso, y_iso, sigma0)
    fit_ok = fit[:, 4] > 0.5
    fwhm = np.where(fit_ok, GAUSSIAN_FWHM * fit[:, 3], np.nan)
    size = np.where(fit_ok, fwhm, GAUSSIAN_FWHM * np.sqrt(a * b))
    saturated = fit[:, 6] > 0
    strong = fit[:, 0] >= np.where(saturated, 5.0, 2.0) * noise
    keep = np.where(fit_ok, strong, ~saturated & (objects["tnpix"] >= 3))
    keep &= (size >= _MIN_FWHM) & (fit[:, 7] == 0) & (fit[:, 5] > 0.0)
    if not keep.any():
        return StarTable.empty()
    objects, a, b, fit, fit_ok, fwhm = (
        objects[keep],
        a[keep],
        b[keep],
        fit[keep],
        fit_ok[keep],
        fwhm[keep],
    )
    x_start = np.where(fit_ok, fit[:, 1], objects["x"])
    y_start = np.where(fit_ok, fit[:, 2], objects["y"])
    sig = np.where(fit_ok, fit[:, 3], np.sqrt(a * b))
    # Windowed centroids cost ~0.2 ms per object (a wide window on big blobs): the brightest
    # _WINPOS_LIMIT get them; fainter ones keep the fitted centre, which is sub-pixel too.
    x = np.array(x_start, dtype=np.float64)
    y = np.array(y_start, dtype=np.float64)
    refine = np.argsort(-np.asarray(objects["flux"], dtype=np.float64), kind="stable")
    refine = refine[:_WINPOS_LIMIT]
    window = np.clip(sig[refine], 0.5, _MAX_WINDOW_SIGMA)
    xw, yw, wflag = sep.winpos(sub, x[refine], y[refine], window, mask=bad)
    good = (wflag == 0) & np.isfinite(xw) & np.isfinite(yw)
    good &= np.hypot(xw - x[refine], yw - y[refine]) < np.maximum(2.0 * window, 1.0)
    x[refine[good]] = xw[good]
    y[refine[good]] = yw[good]
    order = np.argsort(-np.asarray(objects["flux"], dtype=np.float64), kind="stable")
    eccentricity = np.sqrt(np.clip(1.0 - (b / a) ** 2, 0.0, 1.0 - 1e-12))
    return StarTable(
        x=np.ascontiguousarray(x[order], dtype=np.float64),
        y=np.ascontiguousarray(y[order], dtype=np.float64),
        flux=np.asarray(objects["flux"], dtype=np.float64)[order],
        peak=fit[order, 5].astype(np.float64),
        fwhm=fwhm[order].astype(np.float64),
        eccentricity=eccentricity[order],
        saturated=fit[order, 6] > 0,
    )


def find_stars(
    image: npt.ArrayLike,
    *,
    threshold: float = 5.0,
    min_area: int = 5,
    mask: Mask | None = None,
    max_stars: int | None = None,
    saturation: float | None = None,
    min_stars: int = 0,
    fit_fwhm: bool = True,
    background_box: int = 64,
) -> StarTable:
    """Find stars and measure their sub-pixel positions, fluxes and widths.

    Steps: the sky background (SEP's mesh of ``background_box`` pixel boxes, median-filtered) is
    subtracted; SEP extracts objects from the image convolved with its default 3x3 kernel, at
    ``threshold`` times the global background RMS per pixel; each candidate gets a circular
    Gaussian fit (its FWHM) and a windowed centroid (``XWIN_IMAGE`` of SExtractor, Gaussian window
    of the fitted sigma, falling back to the fitted centre and then the isophotal barycentre when
    the window iteration fails or runs away). Rejected: objects within 2 px of the border, cut by
    SEP's buffers, more elongated than a/b = 3 (trail fragments), narrower than FWHM 1 px (hot
    pixels, cosmic rays) and objects with a missing pixel within ~1.5 sigma of their centre.

    Parameters
    ----------
    image : array_like, (H, W) or (H, W, 3)
        Linear image; colour images are reduced with :func:`luminance`. NaN and infinite pixels
        are treated as masked.
    threshold : float
        Detection threshold in units of the global background RMS (per pixel, applied to the
        image after SEP's 3x3 smoothing, as ``DETECT_THRESH`` in Source Extractor).
    min_area : int
        Minimum number of connected pixels above the threshold.
    mask : ndarray bool, optional
        True marks bad pixels: excluded from the background, the detection and the fits.
    max_stars : int, optional
        Keep only the brightest ``max_stars`` stars; only about 1.5 times as many candidates
        are measured, which saves most of the time on crowded or busy frames.
    saturation : float, optional
        Saturation level in the image's units: stars with a pixel at or above it within their fit
        stamp are flagged ``saturated`` (and those pixels are left out of the FWHM fit). When
        None, the level is inferred: if at least 3 pixels lie within 0.1% of the image maximum
        (the plateau of clipped stars), the level is 0.999 x that maximum; otherwise no star is
        flagged. Data that were flat-fielded after clipping do not have an exact plateau; pass
        the level explicitly for them.
    min_stars : int
        If fewer stars are found, retry on a faint-star detection image: the background-subtracted
        image smoothed by a Gaussian of sigma 1.2 px (near the matched filter of a 3 px FWHM
        star), segmented at isophotes of 3.0, then 2.0 sigma of the smoothed image's own noise
        (never lower). A candidate is kept only if its smoothed peak reaches 6 sigma of that
        noise: pure white noise then gives essentially no false stars (expected count 5e-4 for
        512 x 512 pixels, 0.05 for 24 MP), while stars with a peak S/N per pixel of about 3
        (against about 7 at the default threshold) are found. The result with the most stars is
        returned. Positions, FWHM and flags are always measured on the unsmoothed image.
    fit_fwhm : bool
        Report the fitted FWHM; when False, ``fwhm`` is all NaN (the fit still runs, since it
        is used to reject hot pixels).
    background_box : int
        Size of the background mesh boxes (px).

    Returns
    -------
    StarTable
        Sorted by flux, brightest first.
    """
    if threshold <= 0 or not np.isfinite(threshold):
        raise ValueError(f"threshold must be a positive number of sigmas, got {threshold}")
    if min_area < 1:
        raise ValueError(f"min_area must be at least 1 pixel, got {min_area}")
    if max_stars is not None and max_stars < 0:
        raise ValueError(f"max_stars must be None or >= 0, got {max_stars}")
    if background_box < 4:
        raise ValueError(f"background_box must be at least 4 px, got {background_box}")
    lum = luminance(image)
    shape = (int(lum.shape[0]), int(lum.shape[1]))
    if mask is not None:
        mask = np.asarray(mask, dtype=np.bool_)
        if mask.shape != shape:
            raise ValueError(f"mask of shape {mask.shape} for an image of shape {shape}")
    # One C-contiguous float32 working copy, background-subtracted in place.
    data = np.array(lum, dtype=np.float32, order="C", copy=True)
    finite = np.isfinite(data)
    bad: Mask | None = None
    if not finite.all():
        bad = ~finite
    if mask is not None:
        bad = mask.copy() if bad is None else (bad | mask)
    if bad is not None:
        if bad.all():
            return StarTable.empty()
        data[bad] = 0.0
    if saturation is None:
        saturation = _saturation_level(data if bad is None else np.where(bad, -np.inf, data))
    flags: npt.NDArray[np.uint8] | None = None
    if bad is not None or saturation is not None:
        flags = np.zeros(shape, dtype=np.uint8)
        if bad is not None:
            flags[bad] = _BAD
        if saturation is not None:
            flags[data >= np.float32(saturation)] |= _SATURATED
            if bad is not None:
                flags[bad] = _BAD
    noise = _subtract_background(data, bad, background_box)
    if not np.isfinite(noise) or noise <= 0.0:
        return StarTable.empty()

    objects = _extract(data, threshold, noise, bad, min_area, smoothed=False)
    stars = _measure(data, objects, flags, bad, shape, noise, limit=max_stars)
    if min_stars > 0 and len(stars) < min_stars:
        stars = _adaptive_retry(data, stars, noise, bad, flags, shape, min_area, min_stars)
    if max_stars is not None and len(stars) > max_stars:
        stars = stars.select(np.arange(max_stars))
    if not fit_fwhm:
        stars = StarTable(
            x=stars.x,
            y=stars.y,
            flux=stars.flux,
            peak=stars.peak,
            fwhm=np.full(len(stars), np.nan),
            eccentricity=stars.eccentricity,
            saturated=stars.saturated,
        )
    return stars


def _adaptive_retry(
    data: Image,
    stars: StarTable,
    noise: float,
    bad: Mask | None,
    flags: npt.NDArray[np.uint8] | None,
    shape: tuple[int, int],
    min_area: int,
    min_stars: int,
) -> StarTable:
    """Detect on a Gaussian-smoothed copy at lower thresholds; measure on ``data``.

    Isophotes at 3, then 2 sigmas of the smoothed image's noise segment the objects; only those
    whose smoothed peak reaches :data:`_RETRY_PEAK_SIGMA` sigmas are kept (false-alarm control).
    """
    smooth = cv2.GaussianBlur(data, (0, 0), _SMOOTH_SIGMA, borderType=cv2.BORDER_REFLECT)
    sample = smooth[::4, ::4] if bad is None else smooth[::4, ::4][~bad[::4, ::4]]
    center = float(np.median(sample))
    smooth_noise = 1.4826 * float(np.median(np.abs(sample - center)))
    if not np.isfinite(smooth_noise) or smooth_noise <= 0.0:
        return stars
    best = stars
    for level in _RETRY_THRESHOLDS:
        level = max(level, _MIN_RETRY_THRESHOLD)
        objects = _extract(smooth, level, smooth_noise, bad, min_area, smoothed=True)
        objects = objects[objects["peak"] >= _RETRY_PEAK_SIGMA * smooth_noise]
        found = _measure(data, objects, flags, bad, shape, noise)
        logger.debug("adaptive retry at %.2g sigma: %d stars", level, len(found))
        if len(found) > len(best):
            best = found
        if len(best) >= min_stars:
            break
    return best
