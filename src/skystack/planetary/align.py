"""Global and multi-point alignment of planetary and lunar video frames.

Lucky imaging aligns every frame twice: first as a whole (the tip-tilt of the atmosphere moves
the entire image), then box by box at *alignment points* (APs), because seeing also warps the
image locally by a pixel or two (Fried 1978, JOSA 68, 1651). The multi-point scheme follows
AutoStakkert! and PlanetarySystemStacker (Heiland, https://github.com/Rolf-Hempel/
PlanetarySystemStacker): a grid of overlapping boxes, kept where the reference has structure,
each aligned by a local search.

* :func:`global_shift` measures the frame shift by phase correlation (Kuglin & Hines 1975) with
  the whitened cross-power spectrum weighted by a Gaussian low-pass of 0.15 cycles/px, as in
  :func:`skystack.register.phase.phase_correlate`. The correlation surface is then a Gaussian of
  1.06 px sigma centred on the shift, so a three-point Gaussian fit per axis gives the sub-pixel
  peak directly (no upsampled DFT): about 3-5 ms for 640 x 480 on two cores, where
  ``phase_correlate`` takes 60 ms. Or by the difference of the half-maximum disk centroids
  (``method="centroid"``), for a planet that lies wholly inside the frame.
* :func:`local_shifts` correlates every AP box of the reference with a search window of the
  frame by normalised cross-correlation (``TM_CCOEFF_NORMED``; Lewis 1995, "Fast normalized
  cross-correlation", Vision Interface), all APs at once: one batched real FFT per stack of
  windows, window sums from batched integral images, then a three-point parabola fit around
  each peak.

Sign convention: a shift ``(dx, dy)`` always means "move the image by ``(+dx, +dy)`` px to
align it with the reference", i.e. ``shift_image(image, dx, dy)`` lies on the reference. If the
content of ``image`` is the reference's moved by ``(+a, +b)``, the shift is ``(-a, -b)``; this
is also the translation of the :class:`~skystack.register.transform.Transform` that
``phase_correlate`` returns.
"""

from __future__ import annotations

import functools
from typing import Literal, TypeAlias

import cv2
import numpy as np
import numpy.typing as npt
import scipy.fft

from skystack._typing import XY, Image
from skystack.detect.stars import luminance
from skystack.errors import ConfigError, GeometryError, RegistrationError

__all__ = [
    "GlobalMethod",
    "Interpolation",
    "LowConfidenceFill",
    "global_shift",
    "shift_image",
    "place_alignment_points",
    "local_shifts",
    "LocalAligner",
    "DEFAULT_MIN_CONTRAST",
    "DEFAULT_MIN_BRIGHTNESS",
    "DEFAULT_MIN_CONFIDENCE",
]

GlobalMethod: TypeAlias = Literal["phase", "centroid"]
Interpolation: TypeAlias = Literal["nearest", "linear", "cubic", "lanczos"]
LowConfidenceFill: TypeAlias = Literal["median", "zero", "none"]

DEFAULT_MIN_CONTRAST = 0.005
"""Least rms gradient in an AP box, as a fraction of the object's peak brightness per px.

Measured on simulated frames: Jupiter's belts give 0.01-0.04, lunar maria 0.004-0.01 (at
640 x 480; gradients per px halve when the image scale doubles), a flat box with noise of 1 %
of the peak about 0.002.
"""
DEFAULT_MIN_BRIGHTNESS = 0.1
"""Least mean brightness of an AP box above the background, as a fraction of the peak."""
DEFAULT_MIN_CONFIDENCE = 0.4
"""Least normalised cross-correlation for a local shift to be trusted as measured."""

_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}
_LOWPASS_SIGMA = 0.15  # cycles/px, as in skystack.register.phase
_STAT_STRIDE = 4  # sub-sampling for the percentiles of a frame (speed)
_GRADIENT_SMOOTH = 1.0  # px, Gaussian before the gradient of place_alignment_points


# --------------------------------------------------------------------------- helpers


def _mono(image: npt.ArrayLike, name: str) -> npt.NDArray[np.float32]:
    """A float32 (H, W) view or copy of ``image``; colour reduced to the channel mean."""
    data = np.asarray(image)
    if data.ndim == 3 and data.shape[2] == 3:
        return luminance(data)
    if data.ndim != 2:
        raise GeometryError(f"the {name} has shape {data.shape}; expected (H, W) or (H, W, 3)")
    return data.astype(np.float32, copy=False)


def _pair(
    reference: npt.ArrayLike, image: npt.ArrayLike
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    ref, img = _mono(reference, "reference"), _mono(image, "image")
    if ref.shape != img.shape:
        raise GeometryError(
            f"image and reference differ in shape: {img.shape} vs {ref.shape}; "
            "crop the frames to the same region first"
        )
    return ref, img


@functools.lru_cache(maxsize=8)
def _hann(height: int, width: int) -> npt.NDArray[np.float32]:
    window = cv2.createHanningWindow((width, height), cv2.CV_32F)
    window.setflags(write=False)
    return window


@functools.lru_cache(maxsize=8)
def _rfft_lowpass(height: int, width: int) -> npt.NDArray[np.float32]:
    """``exp(-f^2 / 2 sigma_f^2)`` in the layout of ``rfft2`` of an (H, W) image."""
    fy = scipy.fft.fftfreq(height).astype(np.float32)[:, None]
    fx = scipy.fft.rfftfreq(width).astype(np.float32)[None, :]
    weight = np.exp(-0.5 * (fy**2 + fx**2) / np.float32(_LOWPASS_SIGMA) ** 2)
    weight.setflags(write=False)
    return weight


def _peak_offset(left: npt.NDArray, centre: npt.NDArray, right: npt.NDArray, *, gaussian: bool):
    """Sub-pixel offset of the maximum of three samples at -1, 0, +1 (vectorised).

    A Gaussian fit (parabola through the logarithms) where all three samples are positive and
    ``gaussian`` is set, a parabola otherwise; clipped to [-0.5, 0.5].
    """
    left = np.asarray(left, dtype=np.float64)
    centre = np.asarray(centre, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    if gaussian:
        positive = (left > 0) & (centre > 0) & (right > 0)
        tiny = np.finfo(np.float64).tiny
        ll = np.log(np.maximum(left, tiny))
        lc = np.log(np.maximum(centre, tiny))
        lr = np.log(np.maximum(right, tiny))
        left = np.where(positive, ll, left)
        centre = np.where(positive, lc, centre)
        right = np.where(positive, lr, right)
    denom = left - 2.0 * centre + right
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(denom < 0, 0.5 * (left - right) / denom, 0.0)
    return np.clip(offset, -0.5, 0.5)


def _robust_levels(mono: npt.NDArray[np.float32]) -> tuple[float, float]:
    """Background (1st percentile) and peak (99.9th percentile) of a sub-sampled frame."""
    sample = mono[::_STAT_STRIDE, ::_STAT_STRIDE]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        raise RegistrationError("the image has no finite pixels")
    background, peak = np.percentile(sample, [1.0, 99.9])
    return float(background), float(peak)


# --------------------------------------------------------------------------- global


def global_shift(
    reference: npt.ArrayLike,
    image: npt.ArrayLike,
    *,
    method: GlobalMethod = "phase",
    window: bool = True,
    min_significance: float | None = None,
) -> tuple[float, float]:
    """The shift ``(dx, dy)`` (px) that aligns ``image`` with ``reference``.

    Parameters
    ----------
    reference, image : array_like (H, W) or (H, W, 3)
        Frames of the same shape; colour is reduced to the channel mean. Any dtype; the
        scale does not matter.
    method : {"phase", "centroid"}
        ``"phase"``: phase correlation of the whole frame with a Gaussian low-pass (0.15
        cycles/px) that keeps the seeing blur and the noise from moving the peak; works for a
        planet and for a surface (the Moon, the Sun) filling the frame. Good to 0.01-0.03 px
        for a pure shift; 3-5 ms at 640 x 480. ``"centroid"``: difference of the centroids of
        the disk, weighted by a ramp from a quarter to half of the peak above the
        background (so the limb decides, at sub-pixel precision); only for an object that lies
        wholly inside both frames on a dark sky. About 2 ms at 640 x 480.
    window : bool
        Taper both frames with a Hann window before phase correlation, so that the frame
        edges, which do not move with the content, do not pull the peak to zero.
    min_significance : float, optional
        With ``method="phase"``, raise :class:`~skystack.errors.RegistrationError` when the
        correlation peak is fewer than this many standard deviations of the correlation
        surface (noise alone gives 5-6 at 640 x 480; real planetary frames give tens to
        hundreds). Not checked by default.

    Returns
    -------
    (dx, dy) : tuple of float
        ``shift_image(image, dx, dy)`` is aligned with ``reference``. Shifts are found modulo
        the frame size (beyond half of it they wrap around).

    Raises
    ------
    GeometryError
        The frames differ in shape or are not (H, W) or (H, W, 3).
    RegistrationError
        A frame is blank, has no object above the background (centroid), or the correlation
        peak is not significant.
    ConfigError
        ``method`` is unknown.
    """
    ref, img = _pair(reference, image)
    if method == "phase":
        (dx, dy), significance = _phase_shift(ref, img, window=window)
        if min_significance is not None and not significance >= min_significance:
            raise RegistrationError(
                f"phase correlation found no significant peak ({significance:.1f} sigma < "
                f"{min_significance:g}): no common structure, or noise only"
            )
        return dx, dy
    if method == "centroid":
        rx, ry = _disk_centroid(ref, "reference")
        ix, iy = _disk_centroid(img, "image")
        return rx - ix, ry - iy
    raise ConfigError(f"unknown global alignment method {method!r}; expected 'phase' or 'centroid'")


def _phase_shift(
    ref: npt.NDArray[np.float32], img: npt.NDArray[np.float32], *, window: bool
) -> tuple[tuple[float, float], float]:
    height, width = ref.shape
    for name, data in (("reference", ref), ("image", img)):
        if not np.isfinite(data).all():
            raise RegistrationError(f"the {name} has non-finite pixels; fill them first")
    taper = _hann(height, width) if window else None
    spectra = []
    for data in (ref, img):
        centred = data - np.float32(data.mean(dtype=np.float64))
        if taper is not None:
            centred *= taper
        spectra.append(scipy.fft.rfft2(centred, workers=-1))
    cross = spectra[0] * np.conj(spectra[1])
    magnitude = np.abs(cross)
    floor = float(magnitude.max()) * 1e-10
    if floor <= 0.0:
        raise RegistrationError("a frame is blank (constant): nothing to correlate")
    cross /= np.maximum(magnitude, np.float32(floor))
    cross *= _rfft_lowpass(height, width)
    surface = scipy.fft.irfft2(cross, s=(height, width), workers=-1)
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
    peak = float(surface[iy, ix])
    spread = float(surface.std())
    significance = peak / spread if spread > 0 else 0.0
    ym, yp = (iy - 1) % height, (iy + 1) % height
    xm, xp = (ix - 1) % width, (ix + 1) % width
    oy = float(_peak_offset(surface[ym, ix], peak, surface[yp, ix], gaussian=True))
    ox = float(_peak_offset(surface[iy, xm], peak, surface[iy, xp], gaussian=True))
    dy = (iy - height if iy > height // 2 else iy) + oy
    dx = (ix - width if ix > width // 2 else ix) + ox
    return (float(dx), float(dy)), significance


def _disk_centroid(mono: npt.NDArray[np.float32], name: str) -> tuple[float, float]:
    """Centroid ``(x, y)`` of the pixels above half maximum, with a soft ramp at the limb."""
    background, peak = _robust_levels(mono)
    amplitude = peak - background
    if not amplitude > 0:
        raise RegistrationError(f"the {name} is blank: no object above the background")
    low = background + 0.25 * amplitude
    weight = (mono - np.float32(low)) * np.float32(1.0 / (0.25 * amplitude))
    np.clip(weight, 0.0, 1.0, out=weight)
    weight[~np.isfinite(weight)] = 0.0
    moments = cv2.moments(weight)
    total = moments["m00"]
    if not total > 0:
        raise RegistrationError(f"the {name} has no pixels above half maximum")
    return moments["m10"] / total, moments["m01"] / total


def shift_image(
    image: npt.ArrayLike, dx: float, dy: float, *, interpolation: Interpolation = "cubic"
) -> Image:
    """Translate ``image`` by ``(+dx, +dy)`` px (sub-pixel), replicating the border.

    Parameters
    ----------
    image : array_like (H, W) or (H, W, 3)
        The frame; converted to float32.
    dx, dy : float
        Shift (px): the content at ``(x, y)`` moves to ``(x + dx, y + dy)``.
    interpolation : {"nearest", "linear", "cubic", "lanczos"}
        OpenCV interpolation kernel.

    Returns
    -------
    ndarray float32, the shape of ``image``
        A new array. Pixels that came from beyond the frame repeat the nearest edge pixel.
    """
    data = np.asarray(image)
    if not (data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 3)):
        raise GeometryError(f"the image has shape {data.shape}; expected (H, W) or (H, W, 3)")
    try:
        flag = _INTERPOLATION[interpolation]
    except KeyError as err:
        raise ConfigError(
            f"unknown interpolation {interpolation!r}; expected one of {tuple(_INTERPOLATION)}"
        ) from err
    data = np.ascontiguousarray(data, dtype=np.float32)
    height, width = data.shape[:2]
    matrix = np.array([[1.0, 0.0, float(dx)], [0.0, 1.0, float(dy)]], dtype=np.float64)
    out = cv2.warpAffine(data, matrix, (width, height), flags=flag, borderMode=cv2.BORDER_REPLICATE)
    return out.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- alignment points


def _check_ap_size(ap_size: int, shape: tuple[int, ...]) -> int:
    ap_size = int(ap_size)
    if ap_size < 8 or ap_size > min(shape[:2]):
        raise ConfigError(
            f"alignment point size {ap_size} px is out of range; expected 8 to "
            f"{min(shape[:2])} px (the smaller side of the frame)"
        )
    return ap_size


def _box_means(integral: npt.NDArray[np.float64], y0, x0, size: int) -> npt.NDArray[np.float64]:
    """Mean of ``size`` x ``size`` boxes with top-left corners ``(y0, x0)`` from an integral."""
    y1, x1 = y0 + size, x0 + size
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return total / float(size * size)


def _grid(length: int, ap_size: int, step: int) -> npt.NDArray[np.int64]:
    """Top-left corners of boxes along one axis, centred in ``length``, all inside it."""
    span = length - ap_size
    count = span // step + 1
    start = (span - (count - 1) * step) // 2
    return start + step * np.arange(count, dtype=np.int64)


def place_alignment_points(
    reference: npt.ArrayLike,
    ap_size: int,
    *,
    step: int | None = None,
    min_contrast: float = DEFAULT_MIN_CONTRAST,
    min_brightness: float = DEFAULT_MIN_BRIGHTNESS,
) -> XY:
    """Centres of the alignment points: a grid of overlapping boxes where the object has detail.

    Parameters
    ----------
    reference : array_like (H, W) or (H, W, 3)
        The reference frame (ideally a stack of the best frames); colour is reduced to the
        channel mean.
    ap_size : int
        Side of the square AP box (px), 8 to ``min(H, W)``.
    step : int, optional
        Grid spacing (px); default ``ap_size // 2``, so neighbouring boxes overlap by half.
        The grid is centred in the frame and every box lies wholly inside it.
    min_contrast : float
        Least rms gradient of the box (after a 1 px Gaussian smoothing, which keeps noise out),
        as a fraction of the object's peak brightness (above the background) per pixel. Boxes
        below it (a featureless disk centre, empty sky) cannot be aligned and are left out.
    min_brightness : float
        Least mean brightness of the box above the background, as a fraction of the peak
        (empty sky, and boxes that only touch the limb, are left out).

    Returns
    -------
    ndarray float64 (n, 2)
        ``(x, y)`` centres, row by row (y, then x, increasing). The box of centre ``(cx, cy)``
        covers pixels ``cx - ap_size // 2`` to ``cx - ap_size // 2 + ap_size - 1`` in x (the
        same in y); centres are whole pixels. Possibly empty.

    Notes
    -----
    The background is the 1st and the peak the 99.9th percentile of the frame, so the
    thresholds do not depend on the data scale. Like PlanetarySystemStacker's structure
    threshold, but relative to the peak brightness, not to the most structured box.
    """
    mono = _mono(reference, "reference")
    ap_size = _check_ap_size(ap_size, mono.shape)
    step = ap_size // 2 if step is None else int(step)
    if step < 1:
        raise ConfigError(f"alignment point step {step} px is out of range; expected >= 1")
    background, peak = _robust_levels(mono)
    amplitude = peak - background
    if not amplitude > 0:
        return np.empty((0, 2), dtype=np.float64)
    filled = np.nan_to_num(mono, nan=background)
    smooth = cv2.GaussianBlur(filled, (0, 0), _GRADIENT_SMOOTH)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    energy = cv2.integral(gx * gx + gy * gy, sdepth=cv2.CV_64F)
    level = cv2.integral(filled, sdepth=cv2.CV_64F)
    height, width = mono.shape
    y0, x0 = np.meshgrid(_grid(height, ap_size, step), _grid(width, ap_size, step), indexing="ij")
    y0, x0 = y0.ravel(), x0.ravel()
    brightness = (_box_means(level, y0, x0, ap_size) - background) / amplitude
    contrast = np.sqrt(np.maximum(_box_means(energy, y0, x0, ap_size), 0.0)) / amplitude
    keep = (brightness >= min_brightness) & (contrast >= min_contrast)
    half = ap_size // 2
    return np.column_stack([x0[keep] + half, y0[keep] + half]).astype(np.float64)


# --------------------------------------------------------------------------- local shifts


def local_shifts(
    reference: npt.ArrayLike,
    image: npt.ArrayLike,
    centres: npt.ArrayLike,
    ap_size: int,
    *,
    search: int | None = None,
    smooth: float = 0.0,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    fill: LowConfidenceFill = "median",
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per alignment point, the sub-pixel shift that aligns ``image``'s box with the reference's.

    Parameters
    ----------
    reference, image : array_like (H, W) or (H, W, 3)
        The reference and a frame already aligned globally (:func:`global_shift`), same shape;
        colour is reduced to the channel mean.
    centres : array_like (n, 2)
        AP centres ``(x, y)``, as :func:`place_alignment_points` returns (rounded to whole
        pixels). Boxes may reach beyond the frame, which is then extended by reflection.
    ap_size : int
        Side of the AP box (px).
    search : int, optional
        Largest shift searched per axis (px); default ``max(1, ap_size // 4)``.
    smooth : float
        Gaussian sigma (px) applied to both frames before matching; 0 (default) for none. A
        little (0.7-1.5 px) helps very noisy frames; it does not bias the shifts.
    min_confidence : float
        APs whose confidence is below this are *filled* (see ``fill``).
    fill : {"median", "zero", "none"}
        What an AP with low confidence gets as its shift: ``"median"`` (default), the median
        shift of the confident APs within ``1.5 * ap_size`` px (centre to centre), or
        ``(0, 0)`` if there is none; ``"zero"``, ``(0, 0)``; ``"none"``, the measured shift.

    Returns
    -------
    shifts : ndarray float64 (n, 2)
        ``(dx, dy)`` per AP: moving the image by ``(+dx, +dy)`` aligns its box with the
        reference's (the sign convention of :func:`global_shift`).
    confidence : ndarray float64 (n,)
        The measured peak normalised cross-correlation (Pearson r of the two boxes at the
        best shift), clipped to [0, 1]; 0 where the peak lies on the edge of the search range
        (the true shift is probably larger) or where a box is flat. Not changed by ``fill``.
        Noise-only boxes give about 0.05-0.2, real detail 0.8-1.

    Notes
    -----
    All APs are matched at once: the reference boxes, zero-mean and zero-padded, and the
    image search windows (``ap_size + 2 search`` square) are stacked and correlated with one
    batched real FFT (circular correlation of that length equals the linear one at the lags
    searched); the window sums that normalise the correlation come from batched integral
    images (Lewis 1995). The peak is refined with a parabola per axis (error under 0.05 px
    for the blurred detail of planetary frames).
    """
    aligner = LocalAligner(reference, centres, ap_size, search=search, smooth=smooth)
    return aligner.shifts(image, min_confidence=min_confidence, fill=fill)


class LocalAligner:
    """The reference side of :func:`local_shifts`, prepared once for many frames.

    The AP boxes of the reference and their spectra do not change from frame to frame, so a
    lucky-imaging run builds one ``LocalAligner`` and calls :meth:`shifts` per frame, which
    saves a third of the work of :func:`local_shifts`. Read-only after construction.

    Parameters
    ----------
    reference, centres, ap_size, search, smooth
        As in :func:`local_shifts`.
    """

    def __init__(
        self,
        reference: npt.ArrayLike,
        centres: npt.ArrayLike,
        ap_size: int,
        *,
        search: int | None = None,
        smooth: float = 0.0,
    ) -> None:
        ref = _mono(reference, "reference")
        ap_size = _check_ap_size(ap_size, ref.shape)
        points = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(points).all():
            raise ConfigError("alignment point centres must be finite (x, y) pairs")
        search = max(1, ap_size // 4) if search is None else int(search)
        if search < 1:
            raise ConfigError(f"search range {search} px is out of range; expected >= 1")
        self.shape: tuple[int, int] = (int(ref.shape[0]), int(ref.shape[1]))
        self.ap_size = ap_size
        self.search = search
        self.smooth = float(smooth)
        self.centres = points
        half = ap_size // 2
        height, width = self.shape
        cx = np.rint(points[:, 0]).astype(np.int64)
        cy = np.rint(points[:, 1]).astype(np.int64)
        pad = 0
        if points.shape[0]:
            # Pad so that every search window is inside the (reflected) frame.
            pad = int(
                max(
                    0,
                    -(cx - half - search).min(),
                    -(cy - half - search).min(),
                    (cx - half + ap_size + search - width).max(),
                    (cy - half + ap_size + search - height).max(),
                )
            )
        if pad >= min(height, width):
            raise ConfigError("alignment point centres lie too far outside the frame")
        self._pad = pad
        self._x0 = cx - half + pad
        self._y0 = cy - half + pad
        size = ap_size + 2 * search
        fft_len = scipy.fft.next_fast_len(size, real=True)
        self._fft_shape = (fft_len, fft_len)
        ref = self._prepare(ref)
        templates = np.lib.stride_tricks.sliding_window_view(ref, (ap_size, ap_size))[
            self._y0, self._x0
        ]
        # Zero-mean templates: the numerator of the NCC then needs no window means.
        means = templates.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
        templates = templates - means.astype(np.float32)
        self._t_norm = np.sqrt(np.einsum("nij,nij->n", templates, templates, dtype=np.float64))
        self._t_spectra = np.conj(
            scipy.fft.rfft2(templates, s=self._fft_shape, axes=(1, 2), workers=-1)
        )

    def _prepare(self, mono: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if self.smooth > 0:
            mono = cv2.GaussianBlur(mono, (0, 0), self.smooth)
        if self._pad:
            p = self._pad
            mono = cv2.copyMakeBorder(mono, p, p, p, p, cv2.BORDER_REFLECT_101)
        return mono

    def shifts(
        self,
        image: npt.ArrayLike,
        *,
        points: npt.ArrayLike | None = None,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        fill: LowConfidenceFill = "median",
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Local shifts and confidences of ``image``; see :func:`local_shifts`.

        ``points`` (indices into the centres) measures only those alignment points -- a lucky
        imaging run needs each frame's shifts only where the frame is among the best; a
        low-confidence point is then filled from the other measured points.
        """
        if fill not in ("median", "zero", "none"):
            raise ConfigError(f"unknown fill {fill!r}; expected 'median', 'zero' or 'none'")
        img = _mono(image, "image")
        if img.shape != self.shape:
            raise GeometryError(
                f"image and reference differ in shape: {img.shape} vs {self.shape}; "
                "crop the frames to the same region first"
            )
        chosen = (
            np.arange(self.centres.shape[0])
            if points is None
            else np.asarray(points, dtype=np.intp).reshape(-1)
        )
        n = chosen.size
        if n == 0:
            return np.empty((0, 2), dtype=np.float64), np.empty(0, dtype=np.float64)
        t_norm, centres = self._t_norm[chosen], self.centres[chosen]
        img = self._prepare(img)
        search, ap_size = self.search, self.ap_size
        size = ap_size + 2 * search
        lags = 2 * search + 1
        ya, xa = self._y0[chosen] - search, self._x0[chosen] - search
        windows = np.lib.stride_tricks.sliding_window_view(img, (size, size))[ya, xa]
        spectra = scipy.fft.rfft2(windows, s=self._fft_shape, axes=(1, 2), workers=-1)
        spectra *= self._t_spectra[chosen]
        numerator = scipy.fft.irfft2(spectra, s=self._fft_shape, axes=(1, 2), workers=-1)
        numerator = numerator[:, :lags, :lags]

        # Sums of the image and its square over the box at every lag (box filters).
        sums, sumsq = _lag_box_sums(img, ya, xa, ap_size, lags)
        area = float(ap_size * ap_size)
        variance = np.maximum(sumsq - sums * sums / area, 0.0)
        denominator = t_norm[:, None, None] * np.sqrt(variance)
        scale = max(float(np.abs(img).max()), 1e-30)
        flat = denominator <= 1e-9 * scale * scale * area
        ncc = np.where(flat, 0.0, numerator / np.where(flat, 1.0, denominator))

        index = np.argmax(ncc.reshape(n, -1), axis=1)
        py, px = np.divmod(index, lags)
        best = ncc[np.arange(n), py, px]
        on_edge = (py == 0) | (py == lags - 1) | (px == 0) | (px == lags - 1)
        ox, oy = _quadratic_peak(ncc, py, px)
        ox = np.where(on_edge, 0.0, ox)
        oy = np.where(on_edge, 0.0, oy)
        # Peak at lag m: image(x + m - search) = reference(x); the aligning shift is search - m.
        shifts = np.column_stack([search - (px + ox), search - (py + oy)]).astype(np.float64)
        confidence = np.where(on_edge | (t_norm <= 0), 0.0, np.clip(best, 0.0, 1.0))
        confidence = confidence.astype(np.float64)
        if fill != "none":
            shifts = _fill_low_confidence(
                shifts,
                confidence,
                centres,
                min_confidence,
                1.5 * ap_size,
                median=fill == "median",
            )
        return shifts, confidence


def _lag_box_sums(
    image: npt.NDArray[np.float32],
    y0: npt.NDArray[np.int64],
    x0: npt.NDArray[np.int64],
    size: int,
    lags: int,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Sum and sum of squares of the ``size`` box at top-left ``(y0 + ky, x0 + kx)``, k < lags.

    Returns two (n, lags, lags) arrays, from two box filters of the whole (mean-subtracted,
    for precision) image.
    """
    centred = image - np.float32(image.mean(dtype=np.float64))
    out = []
    for data in (centred, centred * centred):
        boxes = cv2.boxFilter(
            data,
            cv2.CV_64F,
            (size, size),
            anchor=(0, 0),
            normalize=False,
            borderType=cv2.BORDER_CONSTANT,
        )
        view = np.lib.stride_tricks.sliding_window_view(boxes, (lags, lags))
        out.append(view[y0, x0])
    return out[0], out[1]


def _quadratic_peak(
    surface: npt.NDArray[np.float64], py: npt.NDArray[np.int64], px: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Sub-pixel vertex of a 2-D quadratic fitted to the 3 x 3 samples around each peak.

    ``f = a + b x + c y + d x^2 + e x y + g y^2`` by least squares; the cross term follows
    peaks elongated along a diagonal (oblique lighting), which separate 1-D parabolas do not.
    Where the fit is not a maximum, or its vertex lies beyond one pixel, each axis falls back
    to a 1-D parabola. Peaks on the border of the surface get 0 (callers mask them).
    """
    n, height, width = surface.shape
    cy = np.clip(py, 1, height - 2)
    cx = np.clip(px, 1, width - 2)
    d = np.arange(-1, 2)
    rows = np.arange(n)[:, None, None]
    patch = surface[rows, (cy[:, None] + d)[:, :, None], (cx[:, None] + d)[:, None, :]]
    patch = patch.astype(np.float64)  # (n, 3, 3) indexed [y, x]
    b = (patch[:, :, 2] - patch[:, :, 0]).sum(axis=1) / 6.0
    c = (patch[:, 2, :] - patch[:, 0, :]).sum(axis=1) / 6.0
    dxx = (patch[:, :, 2] + patch[:, :, 0] - 2.0 * patch[:, :, 1]).sum(axis=1) / 6.0
    dyy = (patch[:, 2, :] + patch[:, 0, :] - 2.0 * patch[:, 1, :]).sum(axis=1) / 6.0
    e = (patch[:, 2, 2] - patch[:, 0, 2] - patch[:, 2, 0] + patch[:, 0, 0]) / 4.0
    det = 4.0 * dxx * dyy - e * e
    with np.errstate(divide="ignore", invalid="ignore"):
        ox = (-2.0 * dyy * b + e * c) / det
        oy = (-2.0 * dxx * c + e * b) / det
    good = (dxx < 0) & (det > 0) & (np.abs(ox) <= 1.0) & (np.abs(oy) <= 1.0)
    fx = _peak_offset(patch[:, 1, 0], patch[:, 1, 1], patch[:, 1, 2], gaussian=False)
    fy = _peak_offset(patch[:, 0, 1], patch[:, 1, 1], patch[:, 2, 1], gaussian=False)
    ox = np.where(good, ox, fx) + (cx - px)
    oy = np.where(good, oy, fy) + (cy - py)
    return np.clip(ox, -1.0, 1.0), np.clip(oy, -1.0, 1.0)


def _fill_low_confidence(
    shifts: npt.NDArray[np.float64],
    confidence: npt.NDArray[np.float64],
    points: npt.NDArray[np.float64],
    min_confidence: float,
    radius: float,
    *,
    median: bool,
) -> npt.NDArray[np.float64]:
    low = confidence < min_confidence
    if not low.any():
        return shifts
    out = shifts.copy()
    out[low] = 0.0
    good = ~low
    if not median or not good.any():
        return out
    distance = np.hypot(
        points[low, None, 0] - points[None, good, 0], points[low, None, 1] - points[None, good, 1]
    )
    good_shifts = shifts[good]
    for row, target in zip(distance, np.flatnonzero(low), strict=True):
        near = row <= radius
        if near.any():
            out[target] = np.median(good_shifts[near], axis=0)
    return out
