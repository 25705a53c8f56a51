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
  ``phase_correlate`` takes 60 ms; :class:`PhaseCorrelator` keeps the reference's spectrum
  for many frames (OpenCV's packed real DFT, padded to a fast size). Or by the difference of
  the half-maximum disk centroids (``method="centroid"``), for a planet that lies wholly
  inside the frame.
* :func:`local_shifts` correlates every AP box of the reference with a search window of the
  frame by normalised cross-correlation (``TM_CCOEFF_NORMED``; Lewis 1995, "Fast normalized
  cross-correlation", Vision Interface) with OpenCV's ``matchTemplate``, then a 2-D quadratic
  fit around each peak.

Sign convention: a shift ``(dx, dy)`` always means "move the image by ``(+dx, +dy)`` px to
align it with the reference", i.e. ``shift_image(image, dx, dy)`` lies on the reference. If the
content of ``image`` is the reference's moved by ``(+a, +b)``, the shift is ``(-a, -b)``; this
is also the translation of the :class:`~skystack.register.transform.Transform` that
``phase_correlate`` returns.
"""

from __future__ import annotations

import functools
import math
from typing import Literal, TypeAlias

import cv2
import numpy as np
import numpy.typing as npt

from skystack._typing import XY, Image
from skystack.errors import ConfigError, GeometryError, RegistrationError

__all__ = [
    "GlobalMethod",
    "Interpolation",
    "LowConfidenceFill",
    "global_shift",
    "PhaseCorrelator",
    "shift_image",
    "place_alignment_points",
    "alignment_grid",
    "usable_alignment_points",
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
        # Imported here: skystack.detect loads numba and sep, which mono videos never need.
        from skystack.detect.stars import luminance

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
def _ccs_layout(height: int, width: int) -> tuple[npt.NDArray[np.float32], ...]:
    """Where the complex values sit in OpenCV's packed (CCS) spectrum of an (H, W) image.

    For even ``H`` and ``W``, ``cv2.dft`` of a real image packs the spectrum into an (H, W)
    real array: columns ``2k - 1`` and ``2k`` hold the real and imaginary parts of horizontal
    frequency ``k`` (``1 <= k < W / 2``) for every row frequency; columns 0 and ``W - 1``
    (horizontal frequencies 0 and ``W / 2``) are packed the same way down the rows, with real
    values in rows 0 and ``H - 1``. Returns the partner index arrays (for every entry, the
    flat index of the other part of its complex value, itself for a real value) and the
    Gaussian low-pass weight of every entry (0.15 cycles/px, as ``register.phase``).
    """
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    partner = np.empty((height, width), dtype=np.int64)
    fy = np.empty((height, width), dtype=np.float64)
    fx = np.empty((height, width), dtype=np.float64)
    inner = (cols > 0) & (cols < width - 1)
    # Interior: real at odd columns, imaginary at the even column after it.
    odd = inner & (cols % 2 == 1)
    partner[odd] = (rows * width + cols + 1)[odd]
    partner[inner & ~odd] = (rows * width + cols - 1)[inner & ~odd]
    fx[inner] = ((cols + 1) // 2 / width)[inner]
    fy[inner] = (np.where(rows <= height // 2, rows, rows - height) / height)[inner]
    for col, freq in ((0, 0.0), (width - 1, 0.5)):
        r = rows[:, col]
        real = (r == 0) | (r == height - 1)
        odd_r = ~real & (r % 2 == 1)
        mate = np.where(real, r, np.where(odd_r, r + 1, r - 1))
        partner[:, col] = mate * width + col
        fx[:, col] = freq
        fy[:, col] = np.where(r == height - 1, 0.5, (r + 1) // 2 / height)
    lowpass = np.exp(-0.5 * (fy**2 + fx**2) / _LOWPASS_SIGMA**2).astype(np.float32)
    partner.setflags(write=False)
    lowpass.setflags(write=False)
    return partner.reshape(-1), lowpass


def _even_dft_size(length: int) -> int:
    size = cv2.getOptimalDFTSize(length)
    while size % 2:
        size = cv2.getOptimalDFTSize(size + 1)
    return size


def _gaussian_peak(left: float, centre: float, right: float) -> float:
    """Sub-pixel offset of the maximum of three samples at -1, 0, +1, in [-0.5, 0.5].

    A Gaussian fit (a parabola through the logarithms) where all three are positive, a
    parabola otherwise; plain floats (one peak per call is cheaper than in NumPy).
    """
    if left > 0 and centre > 0 and right > 0:
        left, centre, right = math.log(left), math.log(centre), math.log(right)
    denom = left - 2.0 * centre + right
    offset = 0.5 * (left - right) / denom if denom < 0 else 0.0
    return min(0.5, max(-0.5, offset))


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
        return PhaseCorrelator(ref, window=window).shift(img, min_significance=min_significance)
    if method == "centroid":
        rx, ry = _disk_centroid(ref, "reference")
        ix, iy = _disk_centroid(img, "image")
        return rx - ix, ry - iy
    raise ConfigError(f"unknown global alignment method {method!r}; expected 'phase' or 'centroid'")


class PhaseCorrelator:
    """The reference side of ``global_shift(method="phase")``, prepared once for many frames.

    The reference's windowed spectrum does not change from frame to frame, so a lucky-imaging
    survey builds one ``PhaseCorrelator`` and calls :meth:`shift` per frame: two FFTs per frame
    instead of three. The FFTs run on one thread (callers run frames in parallel). Read-only
    after construction.

    Parameters
    ----------
    reference : array_like (H, W) or (H, W, 3)
        The reference frame; colour is reduced to the channel mean.
    window : bool
        As in :func:`global_shift`.

    Raises
    ------
    GeometryError
        The reference is not (H, W) or (H, W, 3).
    RegistrationError
        The reference has non-finite pixels.
    """

    def __init__(self, reference: npt.ArrayLike, *, window: bool = True) -> None:
        ref = _mono(reference, "reference")
        self.shape: tuple[int, int] = (int(ref.shape[0]), int(ref.shape[1]))
        self._taper = _hann(*self.shape) if window else None
        # Zero-padded to even sizes the FFT is fast at (a prime side is several times slower).
        self._fft_shape = (_even_dft_size(self.shape[0]), _even_dft_size(self.shape[1]))
        self._spectrum = self._transform(ref, "reference")

    def _transform(self, data: npt.NDArray[np.float32], name: str) -> npt.NDArray[np.float32]:
        """Packed spectrum of the mean-subtracted, tapered, zero-padded image."""
        if not math.isfinite(cv2.sumElems(data)[0]):
            raise RegistrationError(f"the {name} has non-finite pixels; fill them first")
        height, width = data.shape
        centred = cv2.subtract(data, cv2.mean(data)[0], dtype=cv2.CV_32F)
        if self._taper is not None:
            centred = cv2.multiply(centred, self._taper)
        padded = cv2.copyMakeBorder(
            centred,
            0,
            self._fft_shape[0] - height,
            0,
            self._fft_shape[1] - width,
            cv2.BORDER_CONSTANT,
            value=0.0,
        )
        return cv2.dft(padded)

    def shift(
        self, image: npt.ArrayLike, *, min_significance: float | None = None
    ) -> tuple[float, float]:
        """The shift ``(dx, dy)`` (px) that aligns ``image`` with the reference.

        See :func:`global_shift` (``method="phase"``) for the parameters, the result and the
        errors raised.
        """
        img = _mono(image, "image")
        if img.shape != self.shape:
            raise GeometryError(
                f"image and reference differ in shape: {img.shape} vs {self.shape}; "
                "crop the frames to the same region first"
            )
        height, width = self._fft_shape
        cross = cv2.mulSpectrums(self._spectrum, self._transform(img, "image"), 0, conjB=True)
        partner, lowpass = _ccs_layout(height, width)
        square = cv2.multiply(cross, cross).reshape(-1)
        magnitude = cv2.sqrt(square + square[partner])
        floor = float(magnitude.max()) * 1e-10
        if floor <= 0.0:
            raise RegistrationError("a frame is blank (constant): nothing to correlate")
        cross *= lowpass / np.maximum(magnitude, np.float32(floor)).reshape(height, width)
        surface = cv2.idft(cross, flags=cv2.DFT_REAL_OUTPUT)
        _, peak, _, (ix, iy) = cv2.minMaxLoc(surface)
        if min_significance is not None:
            spread = float(surface.std())
            significance = peak / spread if spread > 0 else 0.0
            if not significance >= min_significance:
                raise RegistrationError(
                    f"phase correlation found no significant peak ({significance:.1f} sigma < "
                    f"{min_significance:g}): no common structure, or noise only"
                )
        ym, yp = (iy - 1) % height, (iy + 1) % height
        xm, xp = (ix - 1) % width, (ix + 1) % width
        oy = _gaussian_peak(float(surface[ym, ix]), peak, float(surface[yp, ix]))
        ox = _gaussian_peak(float(surface[iy, xm]), peak, float(surface[iy, xp]))
        dy = (iy - height if iy > height // 2 else iy) + oy
        dx = (ix - width if ix > width // 2 else ix) + ox
        return float(dx), float(dy)


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
    if interpolation == "cubic" and abs(dx) < 2.0 and abs(dy) < 2.0 and min(height, width) >= 4:
        # The same bicubic (Keys, a = -0.75, as OpenCV's) as a separable 4-tap filter:
        # a quarter of the time of warpAffine.
        kx, ax = _cubic_taps(-float(dx))
        ky, ay = _cubic_taps(-float(dy))
        return cv2.sepFilter2D(data, -1, kx, ky, anchor=(ax, ay), borderType=cv2.BORDER_REPLICATE)
    matrix = np.array([[1.0, 0.0, float(dx)], [0.0, 1.0, float(dy)]], dtype=np.float64)
    out = cv2.warpAffine(data, matrix, (width, height), flags=flag, borderMode=cv2.BORDER_REPLICATE)
    return out.astype(np.float32, copy=False)


def _cubic_taps(offset: float) -> tuple[npt.NDArray[np.float32], int]:
    """Taps and anchor of the filter that samples ``f(x + offset)`` bicubically (|offset| < 2).

    The taps sit at ``floor(offset) - 1 ... floor(offset) + 2``; the anchor puts the output
    at ``x`` for ``cv2.filter2D``'s correlation ``out(x) = sum_j k_j in(x + j - anchor)``.
    """
    whole = math.floor(offset)
    t = offset - whole
    x = np.array([1.0 + t, t, 1.0 - t, 2.0 - t])
    a = -0.75
    near = (a + 2.0) * x**3 - (a + 3.0) * x**2 + 1.0
    far = a * x**3 - 5.0 * a * x**2 + 8.0 * a * x - 4.0 * a
    return np.where(x <= 1.0, near, far).astype(np.float32), 1 - whole


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
    centres = alignment_grid(mono.shape, ap_size, step=step)
    keep = usable_alignment_points(
        mono, centres, ap_size, min_contrast=min_contrast, min_brightness=min_brightness
    )
    return centres[keep]


def alignment_grid(shape: tuple[int, ...], ap_size: int, *, step: int | None = None) -> XY:
    """Centres of a grid of alignment point boxes, centred in a frame, every box inside it.

    Parameters
    ----------
    shape : tuple
        ``(H, W)`` or ``(H, W, 3)`` of the frame.
    ap_size : int
        Side of the square AP box (px), 8 to ``min(H, W)``.
    step : int, optional
        Grid spacing (px); default ``ap_size // 2``.

    Returns
    -------
    ndarray float64 (n, 2)
        Whole-pixel ``(x, y)`` centres, row by row, as :func:`place_alignment_points` places
        them before it leaves out the boxes without detail.
    """
    ap_size = _check_ap_size(ap_size, shape)
    step = ap_size // 2 if step is None else int(step)
    if step < 1:
        raise ConfigError(f"alignment point step {step} px is out of range; expected >= 1")
    height, width = shape[:2]
    y0, x0 = np.meshgrid(_grid(height, ap_size, step), _grid(width, ap_size, step), indexing="ij")
    half = ap_size // 2
    return np.column_stack([x0.ravel() + half, y0.ravel() + half]).astype(np.float64)


def usable_alignment_points(
    reference: npt.ArrayLike,
    centres: npt.ArrayLike,
    ap_size: int,
    *,
    min_contrast: float = DEFAULT_MIN_CONTRAST,
    min_brightness: float = DEFAULT_MIN_BRIGHTNESS,
) -> npt.NDArray[np.bool_]:
    """Which alignment point boxes lie inside the reference and hold enough detail to align.

    Parameters
    ----------
    reference : array_like (H, W) or (H, W, 3)
        The reference frame; colour is reduced to the channel mean.
    centres : array_like (n, 2)
        Whole-pixel ``(x, y)`` box centres (for example from :func:`alignment_grid`).
    ap_size : int
        Side of the square AP box (px).
    min_contrast, min_brightness : float
        As in :func:`place_alignment_points`.

    Returns
    -------
    ndarray bool (n,)
        True for a box wholly inside the frame that passes both thresholds.
    """
    mono = _mono(reference, "reference")
    ap_size = _check_ap_size(ap_size, mono.shape)
    points = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    height, width = mono.shape
    half = ap_size // 2
    x0 = np.rint(points[:, 0]).astype(np.int64) - half
    y0 = np.rint(points[:, 1]).astype(np.int64) - half
    keep = (x0 >= 0) & (y0 >= 0) & (x0 + ap_size <= width) & (y0 + ap_size <= height)
    background, peak = _robust_levels(mono)
    amplitude = peak - background
    if not amplitude > 0 or not keep.any():
        return np.zeros(len(points), dtype=bool)
    filled = np.nan_to_num(mono, nan=background)
    smooth = cv2.GaussianBlur(filled, (0, 0), _GRADIENT_SMOOTH)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    energy = cv2.integral(gx * gx + gy * gy, sdepth=cv2.CV_64F)
    level = cv2.integral(filled, sdepth=cv2.CV_64F)
    inside = np.flatnonzero(keep)
    brightness = (_box_means(level, y0[inside], x0[inside], ap_size) - background) / amplitude
    energy_mean = _box_means(energy, y0[inside], x0[inside], ap_size)
    contrast = np.sqrt(np.maximum(energy_mean, 0.0)) / amplitude
    keep[inside] = (brightness >= min_brightness) & (contrast >= min_contrast)
    return keep


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
    Every reference box is matched in its search window (``ap_size + 2 search`` square,
    reflected where it leaves the frame) by OpenCV's ``matchTemplate`` (``TM_CCOEFF_NORMED``:
    FFT correlation normalised with integral images, Lewis 1995); on two cores it took 80 us
    per 64 px box, where a batched NumPy/SciPy FFT of all boxes took more and a hand-made
    ``cv2.dft`` version with the templates' spectra kept 1.6x more. The peak is refined with
    a 2-D quadratic (error under 0.05 px for the blurred detail of planetary frames).
    """
    aligner = LocalAligner(reference, centres, ap_size, search=search, smooth=smooth)
    return aligner.shifts(image, min_confidence=min_confidence, fill=fill)


class LocalAligner:
    """The reference side of :func:`local_shifts`, prepared once for many frames.

    The AP boxes of the reference do not change from frame to frame, so a lucky-imaging run
    builds one ``LocalAligner`` and calls :meth:`shifts` per frame, for the points it needs.
    Read-only after construction (one aligner may serve several threads).

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
        ref = self._prepare(ref)
        self._templates = [
            np.ascontiguousarray(ref[y : y + ap_size, x : x + ap_size])
            for y, x in zip(self._y0.tolist(), self._x0.tolist(), strict=True)
        ]
        self._flat = np.array([float(t.std()) <= 0.0 for t in self._templates], dtype=bool)

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
        flat, centres = self._flat[chosen], self.centres[chosen]
        if self.smooth > 0:
            img = cv2.GaussianBlur(img, (0, 0), self.smooth)
        search, ap_size = self.search, self.ap_size
        size = ap_size + 2 * search
        lags = 2 * search + 1
        ncc = np.empty((n, lags, lags), dtype=np.float32)
        ya, xa = self._y0[chosen] - search - self._pad, self._x0[chosen] - search - self._pad
        for k, (p, y, x) in enumerate(zip(chosen.tolist(), ya.tolist(), xa.tolist(), strict=True)):
            window = _reflected(img, y, x, size)
            cv2.matchTemplate(window, self._templates[p], cv2.TM_CCOEFF_NORMED, result=ncc[k])

        index = np.argmax(ncc.reshape(n, -1), axis=1)
        py, px = np.divmod(index, lags)
        best = ncc[np.arange(n), py, px]
        on_edge = (py == 0) | (py == lags - 1) | (px == 0) | (px == lags - 1)
        ox, oy = _quadratic_peak(ncc, py, px)
        ox = np.where(on_edge, 0.0, ox)
        oy = np.where(on_edge, 0.0, oy)
        # Peak at lag m: image(x + m - search) = reference(x); the aligning shift is search - m.
        shifts = np.column_stack([search - (px + ox), search - (py + oy)]).astype(np.float64)
        confidence = np.where(on_edge | flat, 0.0, np.clip(best, 0.0, 1.0))
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


def _reflected(image: npt.NDArray[np.float32], y: int, x: int, size: int) -> Image:
    """The ``size`` square of ``image`` at top-left ``(y, x)``, reflected where it leaves it."""
    height, width = image.shape
    if y >= 0 and x >= 0 and y + size <= height and x + size <= width:
        return image[y : y + size, x : x + size]
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + size, height), min(x + size, width)
    return cv2.copyMakeBorder(
        image[y0:y1, x0:x1],
        y0 - y,
        y + size - y1,
        x0 - x,
        x + size - x1,
        cv2.BORDER_REFLECT_101,
    )


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
    cy = np.minimum(np.maximum(py, 1), height - 2)
    cx = np.minimum(np.maximum(px, 1), width - 2)
    d = np.arange(-1, 2)
    rows = np.arange(n)[:, None, None]
    patch = surface[rows, (cy[:, None] + d)[:, :, None], (cx[:, None] + d)[:, None, :]]
    # The least-squares coefficients are fixed combinations of the 9 samples: one product.
    b, c, dxx, dyy, e = (patch.reshape(n, 9).astype(np.float64) @ _QUADRATIC_FIT).T
    det = 4.0 * dxx * dyy - e * e
    with np.errstate(divide="ignore", invalid="ignore"):
        ox = (-2.0 * dyy * b + e * c) / det
        oy = (-2.0 * dxx * c + e * b) / det
        # 1-D parabolas through the middle row and column where the 2-D fit fails.
        row = patch[:, 1, 0] - 2.0 * patch[:, 1, 1] + patch[:, 1, 2]
        col = patch[:, 0, 1] - 2.0 * patch[:, 1, 1] + patch[:, 2, 1]
        fx = np.where(row < 0, 0.5 * (patch[:, 1, 0] - patch[:, 1, 2]) / row, 0.0)
        fy = np.where(col < 0, 0.5 * (patch[:, 0, 1] - patch[:, 2, 1]) / col, 0.0)
    good = (dxx < 0) & (det > 0) & (np.abs(ox) <= 1.0) & (np.abs(oy) <= 1.0)
    fx = np.minimum(np.maximum(fx, -0.5), 0.5)
    fy = np.minimum(np.maximum(fy, -0.5), 0.5)
    ox = np.where(good, ox, fx) + (cx - px)
    oy = np.where(good, oy, fy) + (cy - py)
    return np.minimum(np.maximum(ox, -1.0), 1.0), np.minimum(np.maximum(oy, -1.0), 1.0)


def _quadratic_fit_matrix() -> npt.NDArray[np.float64]:
    """(9, 5): samples ``[y, x]`` of a 3 x 3 patch, row by row, to ``b, c, dxx, dyy, e``."""
    y, x = np.divmod(np.arange(9), 3)
    y, x = y - 1.0, x - 1.0
    return np.column_stack(
        [x / 6.0, y / 6.0, (3.0 * x * x - 2.0) / 6.0, (3.0 * y * y - 2.0) / 6.0, x * y / 4.0]
    )


_QUADRATIC_FIT = _quadratic_fit_matrix()


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
