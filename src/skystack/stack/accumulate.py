"""Streaming drizzle: mono, colour and Bayer (CFA) frames onto a finer output grid.

Drizzle (variable-pixel linear reconstruction, Fruchter & Hook 2002 [1]_) shrinks every input
pixel to a "drop" ``pixfrac`` times its size, maps the drop onto an output grid ``scale`` times
finer than the reference frame's, and adds its value to the output pixels it overlaps with a
weight proportional to the overlap. With dithered frames this recovers resolution lost to
undersampling, which a plain interpolate-and-average stack blurs further.

The geometry and the weighted sums are done by STScI's ``drizzle`` package (its C ``tdriz``
routine); this module only turns our :class:`~skystack.register.transform.Transform` objects
into its pixel maps, band by band to bound memory, and handles masks, weights, colour and
Bayer mosaics.

Conventions
-----------
* The output grid is the reference frame's grid ``scale`` times finer: the reference pixel
  centre ``(x, y)`` sits at output ``((x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5)``, and
  the output has ``round(H * scale)`` rows and ``round(W * scale)`` columns.
* Output values are in the input's surface-brightness units: each output pixel is the
  weighted mean of the input values dropped on it (equations 4-5 of [1]_), so a constant input
  gives the same constant output. Flux is conserved as ``sum(output) / scale**2`` (for the
  ``square``, ``turbo`` and ``point`` kernels; ``gaussian`` and ``lanczos3`` are not
  flux-conserving).
* Bayer drizzle [2]_ drops each calibrated CFA pixel into its own colour channel, with
  ``pixfrac`` applied to the sensor pixel and no debayering, as DeepSkyStacker's and Siril's
  Bayer drizzle do; it needs enough dithered frames that every output pixel of every colour is
  hit (see :meth:`DrizzleAccumulator.add_cfa`).

References
----------
.. [1] A. S. Fruchter and R. N. Hook, "Drizzle: a method for the linear reconstruction of
   undersampled images", PASP 114, 144-152 (2002), https://doi.org/10.1086/338393
.. [2] D. Coffin's and DeepSkyStacker's "Bayer drizzle"; the same scheme in Siril
   (``-drizzle`` on undebayered CFA frames).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from skystack._typing import CfaPattern, Image, Mask
from skystack.color.bayer import as_pattern, cfa_planes, channel_index
from skystack.errors import ConfigError, GeometryError
from skystack.register.transform import Transform

__all__ = [
    "DrizzleKernel",
    "DRIZZLE_KERNELS",
    "DrizzleResult",
    "DrizzleAccumulator",
    "drizzle_output_shape",
]

DrizzleKernel: TypeAlias = Literal["square", "turbo", "gaussian", "lanczos3", "point"]
DRIZZLE_KERNELS: tuple[DrizzleKernel, ...] = ("square", "turbo", "gaussian", "lanczos3", "point")

# Input pixels per pixel-map band: 2M pixels make a 32 MB float64 (X, Y) map per band, which
# bounds the extra memory of an add() whatever the frame size.
_BAND_PIXELS = 2_000_000
# tdriz warns on every call about these two documented properties of the kernels.
_KNOWN_WARNINGS = (
    r"Kernel '.*' is not a flux-conserving kernel",
    r"In lanczos kernel, pixel_fraction is ignored",
)


@dataclass(frozen=True, eq=False)
class DrizzleResult:
    """A drizzled stack.

    Attributes
    ----------
    image : ndarray float32, (H * scale, W * scale) or (H * scale, W * scale, 3)
        Weighted mean of the drops on each output pixel, in the input's units; NaN where no
        data fell (weight 0).
    weight : ndarray float32, same shape as ``image``
        Accumulated weight: the sum over frames of frame weight times the fraction of each
        drop that fell on the pixel (1.0 is one full input pixel's worth). A coverage map.
    """

    image: Image
    weight: Image


def drizzle_output_shape(reference_shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """Output ``(rows, columns)`` for a reference frame of shape (H, W): ``round(H * scale)``."""
    height, width = reference_shape
    return int(round(height * scale)), int(round(width * scale))


class DrizzleAccumulator:
    """Drizzle frames one at a time onto a ``scale`` times finer copy of the reference grid.

    Parameters
    ----------
    reference_shape : (H, W)
        Shape of the reference frame, whose grid (refined ``scale`` times) is the output's.
    scale : float
        Output pixels per reference pixel along each axis (2 for "drizzle x2"); > 0.
    pixfrac : float
        Linear size of a drop as a fraction of an input (sensor) pixel, in (0, 1]. Smaller
        drops sharpen more but need more, well dithered frames to cover every output pixel.
        Ignored by the ``point`` kernel and by ``lanczos3``.
    kernel : {"square", "turbo", "gaussian", "lanczos3", "point"}
        How a drop spreads over output pixels [1]_: ``square`` (the exact overlap of the
        mapped, possibly rotated drop; the reference choice), ``turbo`` (an axis-aligned
        square, about 4x faster, exact for translations and scale changes), ``gaussian``
        (FWHM ``pixfrac`` input pixels), ``lanczos3`` (a Lanczos-3 interpolation kernel) or
        ``point`` (all of the value on the output pixel under the drop's centre). The last
        three do not conserve flux exactly.
    channels : {1, 3}
        1 for mono frames, 3 for colour frames and for Bayer drizzle (:meth:`add_cfa`).

    Raises
    ------
    ConfigError
        For an unknown kernel, a ``scale`` or ``pixfrac`` out of range or a channel count
        other than 1 or 3.
    GeometryError
        For a reference shape that is not two positive integers.

    Notes
    -----
    Memory: the output holds a float32 image and a float32 weight map per channel, padded
    by ``ceil(3 * scale) + 2`` pixels on each side (so that drops near the border are not
    clipped differently in each band), plus, during :meth:`add`, one float64 pixel map of at
    most about 2 M input pixels (32 MB) and float32 copies of the band. STScI's ``tdriz``
    holds the GIL, so two accumulators in two threads do not run in parallel.

    References
    ----------
    .. [1] A. S. Fruchter and R. N. Hook, PASP 114, 144 (2002), https://doi.org/10.1086/338393

    Examples
    --------
    >>> acc = DrizzleAccumulator((100, 120), scale=2.0, pixfrac=0.7)
    >>> acc.add(np.ones((100, 120), np.float32), Transform.translation(0.3, -0.2))
    >>> acc.result().image.shape
    (200, 240)
    """

    def __init__(
        self,
        reference_shape: tuple[int, int],
        *,
        scale: float = 2.0,
        pixfrac: float = 0.7,
        kernel: DrizzleKernel = "square",
        channels: int = 1,
    ) -> None:
        from drizzle.resample import Drizzle

        shape = tuple(int(v) for v in reference_shape)
        if len(shape) != 2 or min(shape) < 1 or tuple(reference_shape) != shape:
            raise GeometryError(
                f"reference_shape must be two positive integers (H, W), got {reference_shape!r}"
            )
        if not (math.isfinite(scale) and scale > 0.0):
            raise ConfigError(f"drizzle scale must be a finite number > 0, got {scale!r}")
        if not (math.isfinite(pixfrac) and 0.0 < pixfrac <= 1.0):
            raise ConfigError(f"pixfrac must be in (0, 1], got {pixfrac!r}")
        if kernel not in DRIZZLE_KERNELS:
            raise ConfigError(
                f"unknown drizzle kernel {kernel!r}; expected one of {', '.join(DRIZZLE_KERNELS)}"
            )
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (mono) or 3 (colour, CFA), got {channels!r}")
        self._reference_shape: tuple[int, int] = (shape[0], shape[1])
        self._scale = float(scale)
        self._pixfrac = float(pixfrac)
        self._kernel: DrizzleKernel = kernel
        self._channels = int(channels)
        self._shape = drizzle_output_shape(self._reference_shape, self._scale)
        self._margin = int(math.ceil(3.0 * self._scale)) + 2
        padded = (self._shape[0] + 2 * self._margin, self._shape[1] + 2 * self._margin)
        # Reference (x, y) -> padded output (X, Y).
        offset = 0.5 * self._scale - 0.5 + self._margin
        self._to_output = np.array(
            [[self._scale, 0.0, offset], [0.0, self._scale, offset], [0.0, 0.0, 1.0]]
        )
        self._drizzles = [
            Drizzle(kernel=kernel, out_shape=padded, disable_ctx=True) for _ in range(channels)
        ]
        self._n_frames = 0

    @property
    def shape(self) -> tuple[int, int]:
        """Output ``(rows, columns)``."""
        return self._shape

    @property
    def scale(self) -> float:
        """Output pixels per reference pixel."""
        return self._scale

    @property
    def pixfrac(self) -> float:
        """Drop size as a fraction of an input pixel."""
        return self._pixfrac

    @property
    def channels(self) -> int:
        """1 or 3."""
        return self._channels

    @property
    def n_frames(self) -> int:
        """Frames added with a weight > 0 and at least one usable pixel."""
        return self._n_frames

    def add(
        self,
        image: Image,
        transform: Transform,
        *,
        weight: float = 1.0,
        mask: Mask | None = None,
    ) -> None:
        """Drizzle one frame onto the output.

        Parameters
        ----------
        image : ndarray, (h, w) mono or (h, w, 3) colour
            The frame in its own pixel grid (registered but not warped); its size may differ
            from the reference's. NaN pixels are missing and get weight 0.
        transform : Transform
            Maps the frame's pixel coordinates to the reference frame's.
        weight : float
            The frame's weight (>= 0); a frame with weight 0 contributes nothing.
        mask : ndarray bool, (h, w), optional
            True where a pixel is bad (in every channel); those pixels get weight 0.

        Raises
        ------
        GeometryError
            If the image's channel count does not match the accumulator's, the image is
            smaller than 2x2 or the mask's shape differs from the image's.
        ConfigError
            For a negative or non-finite weight.
        """
        data = np.asarray(image)
        expected = "(h, w)" if self._channels == 1 else "(h, w, 3)"
        if data.ndim != (2 if self._channels == 1 else 3) or (
            self._channels == 3 and data.shape[2] != 3
        ):
            raise GeometryError(
                f"this drizzle accumulator has {self._channels} channel(s) and needs {expected} "
                f"images, got shape {data.shape}"
            )
        height, width = data.shape[:2]
        if height < 2 or width < 2:
            raise GeometryError(f"drizzle needs frames of at least 2x2 pixels, got {data.shape}")
        bad = _check_mask(mask, (height, width))
        if not self._check_weight(weight):
            return
        planes = data[:, :, None] if data.ndim == 2 else data
        matrix = self._to_output @ transform.matrix
        xs = np.arange(width, dtype=np.float64)
        added = False
        for r0, r1 in _bands(height, width):
            pixmap = _pixmap(matrix, xs, np.arange(r0, r1, dtype=np.float64))
            band_bad = None if bad is None else bad[r0:r1]
            for c, drizzle in enumerate(self._drizzles):
                added |= self._drop(
                    drizzle,
                    planes[r0:r1, :, c],
                    pixmap,
                    band_bad,
                    weight=weight,
                    pixfrac=self._pixfrac,
                    pixel_scale_ratio=1.0 / self._scale,
                )
        self._n_frames += int(added)

    def add_cfa(
        self,
        cfa: Image,
        transform: Transform,
        *,
        pattern: CfaPattern,
        weight: float = 1.0,
        mask: Mask | None = None,
    ) -> None:
        """Bayer drizzle: drop each pixel of a calibrated CFA mosaic into its own colour.

        Each sensor pixel becomes a drop ``pixfrac`` sensor pixels wide in the red, green or
        blue output channel, as its filter says; nothing is interpolated (no debayering).
        Internally each of the four CFA sub-images (r, g1, g2, b) is drizzled as an image of
        its own, whose pixels are 2 sensor pixels apart, with drops of ``pixfrac / 2`` of its
        pixel.

        Parameters
        ----------
        cfa : ndarray, (h, w)
            The calibrated, undebayered mosaic in its own pixel grid, at least 4x4.
        transform : Transform
            Maps the mosaic's pixel coordinates to the reference frame's.
        pattern : {"RGGB", "BGGR", "GRBG", "GBRG"}
            The Bayer pattern at ``cfa[0, 0]``.
        weight : float
            The frame's weight (>= 0).
        mask : ndarray bool, (h, w), optional
            True where a sensor pixel is bad.

        Raises
        ------
        ConfigError
            If the accumulator does not have 3 channels, or for a bad weight or pattern.
        GeometryError
            If ``cfa`` is not 2-D and at least 4x4, or the mask's shape differs from it.

        Notes
        -----
        Each colour channel samples only a quarter (red, blue) or a half (green) of the
        sensor, so Bayer drizzle needs more frames than mono drizzle to cover every output
        pixel: with random sub-pixel dithers of several pixels, about 12 frames at
        ``scale=1, pixfrac=0.7`` or ``scale=2, pixfrac=1`` leave no red or blue output pixel
        empty, and a ``scale=2, pixfrac=0.7`` stack needs more (about 20). The dithers must
        reach odd pixel offsets (at least a pixel or two): frames that all sit on the same
        2x2 phase leave the same holes in every frame.
        """
        if self._channels != 3:
            raise ConfigError(
                f"Bayer drizzle needs an accumulator with channels=3, this one has {self._channels}"
            )
        p = as_pattern(pattern)
        data = np.asarray(cfa)
        if data.ndim != 2:
            raise GeometryError(f"add_cfa needs a 2-D CFA mosaic (h, w), got shape {data.shape}")
        height, width = data.shape
        if height < 4 or width < 4:
            raise GeometryError(f"Bayer drizzle needs mosaics of at least 4x4, got {data.shape}")
        bad = _check_mask(mask, (height, width))
        if not self._check_weight(weight):
            return
        lut = channel_index(p)
        matrix = self._to_output @ transform.matrix
        added = False
        planes = cfa_planes(data, p)
        for name, plane in planes.items():
            row, col = planes.offsets[name]
            channel = int(lut[row, col])
            plane_bad = None if bad is None else bad[row::2, col::2]
            plane_h, plane_w = plane.shape
            xs = col + 2.0 * np.arange(plane_w, dtype=np.float64)
            for r0, r1 in _bands(plane_h, plane_w):
                ys = row + 2.0 * np.arange(r0, r1, dtype=np.float64)
                added |= self._drop(
                    self._drizzles[channel],
                    plane[r0:r1],
                    _pixmap(matrix, xs, ys),
                    None if plane_bad is None else plane_bad[r0:r1],
                    weight=weight,
                    pixfrac=0.5 * self._pixfrac,
                    pixel_scale_ratio=0.5 / self._scale,
                )
        self._n_frames += int(added)

    def result(self) -> DrizzleResult:
        """The drizzled image and its weight map so far (copies; adding may go on)."""
        m = self._margin
        rows, cols = slice(m, m + self._shape[0]), slice(m, m + self._shape[1])
        full = (*self._shape, self._channels)
        image = np.empty(full, dtype=np.float32)
        weight = np.empty(full, dtype=np.float32)
        for c, drizzle in enumerate(self._drizzles):
            weight[..., c] = drizzle.out_wht[rows, cols]
            image[..., c] = drizzle.out_img[rows, cols]
            image[..., c][~(weight[..., c] > 0.0)] = np.nan
        if self._channels == 1:
            return DrizzleResult(image=image[..., 0], weight=weight[..., 0])
        return DrizzleResult(image=image, weight=weight)

    def _check_weight(self, weight: float) -> bool:
        """Validate a frame weight; False when it is 0 (nothing to add)."""
        w = float(weight)
        if not (math.isfinite(w) and w >= 0.0):
            raise ConfigError(f"a frame weight must be a finite number >= 0, got {weight!r}")
        return w > 0.0

    def _drop(
        self,
        drizzle: Any,
        band: npt.NDArray[np.generic],
        pixmap: npt.NDArray[np.float64],
        bad: Mask | None,
        *,
        weight: float,
        pixfrac: float,
        pixel_scale_ratio: float,
    ) -> bool:
        """Drizzle one band of one channel; False if it has no usable pixel or misses the output."""
        if not _overlaps(pixmap, self._drizzles[0].out_wht.shape):
            return False
        data = np.ascontiguousarray(band, dtype=np.float32)
        missing = ~np.isfinite(data)
        if bad is not None:
            missing |= bad
        if missing.all():
            return False
        if missing.any():
            data = np.where(missing, np.float32(0.0), data)
        weight_map = (~missing).astype(np.float32)
        if self._kernel == "lanczos3":
            # tdriz's Lanczos weights grow as 1 / pixel_scale_ratio**2; rescale them so that an
            # input pixel brings a total weight of 1, as with the other kernels.
            weight = weight * pixel_scale_ratio**2
            pixfrac = 1.0
        with warnings.catch_warnings():
            for message in _KNOWN_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            drizzle.add_image(
                data,
                exptime=1.0,
                pixmap=pixmap,
                weight_map=weight_map,
                wht_scale=float(weight),
                pixfrac=pixfrac,
                pixel_scale_ratio=pixel_scale_ratio,
                in_units="cps",
            )
        return True


def _check_mask(mask: Mask | None, shape: tuple[int, int]) -> Mask | None:
    if mask is None:
        return None
    bad = np.asarray(mask, dtype=bool)
    if bad.shape != shape:
        raise GeometryError(f"the mask's shape {bad.shape} differs from the frame's {shape}")
    return bad


def _bands(height: int, width: int) -> list[tuple[int, int]]:
    """Row ranges of about ``_BAND_PIXELS`` pixels each, every one at least 2 rows high."""
    rows = max(2, _BAND_PIXELS // max(width, 1))
    starts = list(range(0, height, rows))
    bands = [(r0, min(height, r0 + rows)) for r0 in starts]
    if len(bands) > 1 and bands[-1][1] - bands[-1][0] < 2:
        # tdriz needs at least 2 rows to find the drop corners: merge a 1-row tail.
        bands[-2:] = [(bands[-2][0], height)]
    return bands


def _pixmap(
    matrix: npt.NDArray[np.float64], xs: npt.NDArray[np.float64], ys: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """``pixmap[i, j] = matrix @ (xs[j], ys[i], 1)``, dehomogenised: ``(len(ys), len(xs), 2)``."""
    out = np.empty((len(ys), len(xs), 2), dtype=np.float64)
    for k in range(2):
        np.add(
            matrix[k, 0] * xs[None, :], (matrix[k, 1] * ys + matrix[k, 2])[:, None], out=out[..., k]
        )
    if matrix[2, 0] != 0.0 or matrix[2, 1] != 0.0:
        w = matrix[2, 0] * xs[None, :] + (matrix[2, 1] * ys + matrix[2, 2])[:, None]
        out /= w[..., None]
    return out


def _overlaps(pixmap: npt.NDArray[np.float64], shape: tuple[int, ...]) -> bool:
    """Whether a band's mapped pixel centres come within 2 pixels of the (padded) output."""
    x, y = pixmap[..., 0], pixmap[..., 1]
    return bool(
        np.nanmax(x) > -2.0
        and np.nanmin(x) < shape[1] + 1.0
        and np.nanmax(y) > -2.0
        and np.nanmin(y) < shape[0] + 1.0
    )
