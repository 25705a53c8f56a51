"""Region of interest of a planetary frame: a planet's disk with sky around it, or a surface.

A planet (or the whole Moon or Sun) is a bright disk on dark sky: it is found as the largest
connected region brighter than half the way from the sky to the robust maximum (half-maximum
threshold), its holes filled (dark belts, polar hoods). The disk's extent is then measured on the
Sobel gradient: the gradient magnitude summed across the disk gives one profile per axis whose
two peaks are the limbs, and the profile falling to half a peak's height outside it marks the
outer edge of the blurred limb (the peak-and-half-maximum edge finder of the seed notes). A close
up of the Moon or the Sun overflows the frame: there is no edge to find, and the region is the
whole frame but a thin border.

References
----------
.. [1] I. Sobel, G. Feldman, "A 3x3 isotropic gradient operator for image processing" (1968).
.. [2] M.-K. Hu, "Visual pattern recognition by moment invariants", IRE Trans. Inf. Theory 8,
   179 (1962): centroids from image moments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

import cv2
import numpy as np
import numpy.typing as npt

from skystack._typing import Image
from skystack.errors import ConfigError, GeometryError, RegistrationError
from skystack.planetary.quality import luminance

__all__ = ["Roi", "RoiKind", "RoiMode", "ROI_MODES", "disk_centre", "find_object"]

RoiKind: TypeAlias = Literal["disk", "surface"]
"""A planet's disk with an edge, or a lunar/solar surface filling the frame."""
RoiMode: TypeAlias = Literal["auto", "disk", "surface"]
"""How :func:`find_object` chooses the kind of region."""
ROI_MODES: tuple[RoiMode, ...] = get_args(RoiMode)

_SMOOTH_SIGMA = 1.5
"""Gaussian sigma (px) of the light smoothing before thresholds and edges."""
_MIN_SNR = 8.0
"""An object must rise this many noise sigmas (of a raw pixel) above the sky."""
_MIN_AREA = 9
"""Smallest disk (px) above the half-maximum threshold."""
_EDGE_TOUCH = 2
"""A region within this many pixels of the frame's edge is taken to overflow it."""
_SKY_RING_FRACTION = 0.05
"""A disk needs dark sky: at most this fraction of the frame's outermost pixel ring lit."""
_LIMB_FRACTION = 0.2
"""A limb peak of the gradient profile reaches at least this fraction of the profile's maximum."""
_SKY_LEVEL = 0.15
"""A ring pixel is lit above this fraction of the way from sky to maximum."""


@dataclass(frozen=True)
class Roi:
    """A region of interest: a half-open box ``[y0:y1, x0:x1]`` of a frame.

    Attributes
    ----------
    x0, y0, x1, y1 : int
        Half-open box in the frame's pixels (``x0 <= x < x1``, ``y0 <= y < y1``).
    kind : {"disk", "surface"}
        A planet's disk with an edge, or a lunar/solar surface filling the frame.
    centre : (float, float) or None
        Disk centre ``(x, y)`` (px, sub-pixel); None for a surface.
    radius : float or None
        Disk radius (px): half the larger limb-to-limb distance (the equatorial radius of an
        oblate planet); None for a surface.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    kind: RoiKind
    centre: tuple[float, float] | None = None
    radius: float | None = None

    def __post_init__(self) -> None:
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            msg = f"empty region of interest x {self.x0}:{self.x1}, y {self.y0}:{self.y1}"
            raise ConfigError(msg)
        if self.kind not in ("disk", "surface"):
            raise ConfigError(f"Roi kind must be 'disk' or 'surface', got {self.kind!r}")

    def crop(self, image: npt.NDArray[np.generic]) -> Image:
        """Return ``image[y0:y1, x0:x1]`` (a view), for ``(H, W)`` and ``(H, W, 3)`` frames."""
        return image[self.y0 : self.y1, self.x0 : self.x1]

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the box (px)."""
        return (self.y1 - self.y0, self.x1 - self.x0)


@dataclass(frozen=True)
class _Analysis:
    smooth: Image
    sky: float
    threshold: float
    disk: npt.NDArray[np.uint8] | None  # filled largest component, or None if no object
    bbox: tuple[int, int, int, int] | None  # x0, y0, x1, y1 (half-open) of the component


def _noise_sigma(lum: Image) -> float:
    """Per-pixel noise from the MAD of horizontal neighbour differences."""
    step = max(1, lum.size // 65536)
    diff = np.diff(lum[::step], axis=1).ravel()
    if diff.size == 0:
        return 0.0
    mad = float(np.median(np.abs(diff - np.median(diff))))
    sigma = 1.4826 * mad / math.sqrt(2.0)
    if sigma <= 0.0:
        sigma = float(diff.std()) / math.sqrt(2.0)
    return sigma


def _analyse(image: npt.ArrayLike, threshold: float) -> _Analysis:
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold must be a fraction in (0, 1), got {threshold!r}")
    lum = luminance(image)
    height, width = lum.shape
    if height < 3 or width < 3:
        raise GeometryError(f"frame of {width} x {height} px is too small for an object search")
    clean = cv2.medianBlur(lum, 3)  # kills hot pixels and single-pixel noise spikes
    smooth = cv2.GaussianBlur(clean, (0, 0), _SMOOTH_SIGMA, borderType=cv2.BORDER_REFLECT)
    peak = float(smooth.max())
    step = max(1, int(math.sqrt(lum.size / 65536)))
    sky = float(np.percentile(smooth[::step, ::step], 5.0))
    level = sky + threshold * (peak - sky)
    contrast = peak - sky
    if not contrast > max(_MIN_SNR * _noise_sigma(lum), 1e-12 * max(abs(peak), 1.0)):
        return _Analysis(smooth, sky, level, None, None)
    above = (smooth > level).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(above, connectivity=8)
    if n < 2:
        return _Analysis(smooth, sky, level, None, None)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < _MIN_AREA:
        return _Analysis(smooth, sky, level, None, None)
    component = (labels == best).astype(np.uint8)
    contours, _ = cv2.findContours(component, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(component)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    filled |= component
    x, y, w, h = (int(v) for v in stats[best, :4])
    return _Analysis(smooth, sky, level, filled, (x, y, x + w, y + h))


def _centroid(disk: npt.NDArray[np.uint8]) -> tuple[float, float]:
    moments = cv2.moments(disk, binaryImage=True)
    return (moments["m10"] / moments["m00"], moments["m01"] / moments["m00"])


def disk_centre(image: npt.ArrayLike, *, threshold: float = 0.5) -> tuple[float, float] | None:
    """Return the centre of the brightest object of a frame, or None if there is none.

    The frame's luminance is cleaned of hot pixels (3x3 median) and lightly smoothed (Gaussian,
    sigma 1.5 px); its robust maximum is the maximum of that, the sky level its 5th percentile.
    The largest connected region above ``sky + threshold * (max - sky)`` is the object; its
    holes (dark belts) are filled and the centroid of the filled region is returned.

    Parameters
    ----------
    image : array_like (H, W) or (H, W, 3)
        Frame in linear units (colour is measured on the mean of the channels).
    threshold : float
        Fraction of the way from sky to maximum, in (0, 1); 0.5 is half maximum.

    Returns
    -------
    (float, float) or None
        Centre ``(x, y)`` (px, sub-pixel); None when nothing rises ``8`` noise sigmas above the
        sky (a blank or pure-noise frame). On a surface overflowing the frame this is the
        centroid of its bright part, which has no physical meaning.
    """
    analysis = _analyse(image, float(threshold))
    if analysis.disk is None:
        return None
    return _centroid(analysis.disk)


def _limbs(profile: npt.NDArray[np.float64], lo: int, mid: int, hi: int) -> tuple[int, int]:
    """Outer half-maximum edges of the outermost limb peaks of a gradient profile.

    Scanning inward from each end of ``[lo, hi)``, the limb is the first local maximum above
    ``_LIMB_FRACTION`` of the window's maximum (bands and spots lie inside the limb); the edge
    is where the profile falls to half that peak's height outside it. Returns
    ``(outer_left, outer_right)``, both inclusive.
    """
    n = profile.size
    lo, hi = max(0, lo), min(n, hi)
    mid = min(max(mid, lo + 1), hi - 1)
    floor = _LIMB_FRACTION * float(profile[lo:hi].max())
    left = lo + int(np.argmax(profile[lo:mid]))
    for i in range(lo, mid):
        if profile[i] >= floor and (i + 1 >= n or profile[i] >= profile[i + 1]):
            left = i
            break
    right = mid + int(np.argmax(profile[mid:hi]))
    for i in range(hi - 1, mid - 1, -1):
        if profile[i] >= floor and (i == 0 or profile[i] >= profile[i - 1]):
            right = i
            break
    half_left, half_right = 0.5 * profile[left], 0.5 * profile[right]
    outer_left = left
    while outer_left > 0 and profile[outer_left - 1] >= half_left:
        outer_left -= 1
    outer_right = right
    while outer_right < n - 1 and profile[outer_right + 1] >= half_right:
        outer_right += 1
    return outer_left, outer_right


def _fit_span(a: float, b: float, size: int, min_size: int) -> tuple[int, int]:
    """Half-open integer span covering ``[a, b)``, >= ``min_size`` long, inside ``[0, size)``."""
    lo, hi = max(0, math.floor(a)), min(size, math.ceil(b))
    need = min(min_size, size)
    if hi - lo < need:
        centre = 0.5 * (lo + hi)
        lo = int(round(centre - need / 2.0))
        lo = min(max(lo, 0), size - need)
        hi = lo + need
    return lo, hi


def _surface(shape: tuple[int, int], border: int, min_size: int) -> Roi:
    height, width = shape
    bx = min(max(border, 0), max(0, (width - min(min_size, width)) // 2))
    by = min(max(border, 0), max(0, (height - min(min_size, height)) // 2))
    return Roi(bx, by, width - bx, height - by, "surface")


def find_object(
    image: npt.ArrayLike,
    *,
    mode: RoiMode = "auto",
    margin: float = 0.15,
    min_size: int = 32,
    border: int = 8,
    threshold: float = 0.5,
) -> Roi:
    """Find the planet (or the lunar surface) in a frame and return a box around it.

    Parameters
    ----------
    image : array_like (H, W) or (H, W, 3)
        Frame in linear units; use a typical (or an averaged) frame of the video.
    mode : {"auto", "disk", "surface"}
        ``"disk"``: a box around the disk found by half maximum and refined on the Sobel limb
        profiles, enlarged by ``margin`` times the disk's larger size on each side. ``"surface"``:
        the whole frame but ``border`` pixels on each side (a close-up of the Moon or the Sun
        that fills or overflows the frame). ``"auto"``: a disk when a bright object lies fully
        inside the frame with dark sky around it (its half-maximum region keeps 2 px from the
        frame's edges and at most 5 % of the outermost pixel ring is brighter than 15 % of the
        way from sky to maximum), a surface otherwise -- including a blank or pure-noise frame.
    margin : float
        Sky margin around a disk, as a fraction (>= 0) of the disk's size, on each side.
    min_size : int
        Smallest side of the box (px), as far as the frame allows.
    border : int
        Pixels dropped on each side for a surface (edges of a video are often damaged).
    threshold : float
        Fraction of the way from sky to maximum that separates the object (0.5: half maximum).

    Returns
    -------
    Roi
        The box, clipped to the frame; for a disk also its centre (as :func:`disk_centre`) and
        radius (half the larger distance between opposite limb gradient peaks).

    Raises
    ------
    ConfigError
        If an option is out of range.
    RegistrationError
        If ``mode="disk"`` and the frame holds no object (blank or pure noise).
    """
    if mode not in ROI_MODES:
        raise ConfigError(f"mode must be one of {ROI_MODES}, got {mode!r}")
    if not (margin >= 0.0 and math.isfinite(margin)):
        raise ConfigError(f"margin must be a fraction >= 0, got {margin!r}")
    if isinstance(min_size, bool) or int(min_size) != min_size or min_size < 1:
        raise ConfigError(f"min_size must be an integer >= 1 (px), got {min_size!r}")
    min_size = int(min_size)
    analysis = _analyse(image, float(threshold))
    height, width = analysis.smooth.shape
    if mode == "surface":
        return _surface((height, width), int(border), min_size)
    if analysis.disk is None or analysis.bbox is None:
        if mode == "disk":
            msg = (
                "no bright object found in the frame (nothing rises above the sky noise); "
                "check the frame or use mode='surface'"
            )
            raise RegistrationError(msg)
        return _surface((height, width), int(border), min_size)
    bx0, by0, bx1, by1 = analysis.bbox
    if mode == "auto":
        touches = (
            bx0 < _EDGE_TOUCH
            or by0 < _EDGE_TOUCH
            or bx1 > width - _EDGE_TOUCH
            or by1 > height - _EDGE_TOUCH
        )
        s = analysis.smooth
        ring = np.concatenate([s[0], s[-1], s[1:-1, 0], s[1:-1, -1]])
        sky, level = analysis.sky, analysis.threshold
        lit = sky + _SKY_LEVEL / threshold * (level - sky)
        lit_ring = float(np.mean(ring > lit))
        if touches or lit_ring > _SKY_RING_FRACTION:
            return _surface((height, width), int(border), min_size)
    cx, cy = _centroid(analysis.disk)
    # Limb profiles: Sobel gradient magnitude outside the disk's core, summed across the disk.
    smooth = analysis.smooth
    half_w, half_h = 0.5 * (bx1 - bx0), 0.5 * (by1 - by0)
    core = int(0.1 * min(half_w, half_h))
    outside = analysis.disk
    if core >= 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * core + 1, 2 * core + 1))
        outside = cv2.erode(analysis.disk, kernel)
    keep = (1 - outside).astype(np.float32)
    gx = np.abs(cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE))
    gy = np.abs(cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE))
    pad = int(math.ceil(0.5 * max(half_w, half_h))) + 3
    prof_x = (gx * keep)[by0:by1].sum(axis=0, dtype=np.float64)
    prof_y = (gy * keep)[:, bx0:bx1].sum(axis=1, dtype=np.float64)
    ox0, ox1 = _limbs(prof_x, bx0 - pad, int(round(cx)), bx1 + pad)
    oy0, oy1 = _limbs(prof_y, by0 - pad, int(round(cy)), by1 + pad)
    # The half-maximum region bounds the disk from inside; the gradient edges from outside.
    ex0, ex1 = min(ox0, bx0), max(ox1 + 1, bx1)
    ey0, ey1 = min(oy0, by0), max(oy1 + 1, by1)
    size = max(ex1 - ex0, ey1 - ey0)
    grow = margin * size
    x0, x1 = _fit_span(ex0 - grow, ex1 + grow, width, min_size)
    y0, y1 = _fit_span(ey0 - grow, ey1 + grow, height, min_size)
    radius = 0.5 * max(ox1 - ox0, oy1 - oy0)
    return Roi(x0, y0, x1, y1, "disk", centre=(float(cx), float(cy)), radius=float(radius))
