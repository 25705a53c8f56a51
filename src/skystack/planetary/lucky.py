"""Multi-point lucky stacking: each alignment point keeps its own sharpest frames.

In a planetary video the seeing is not the same all over the disk at one instant: one region is
sharp while another is smeared, and each region is displaced by its own few tenths of a pixel.
AutoStakkert! and PlanetarySystemStacker (Rolf Hempel, 2020) therefore rate the frames at many
*alignment points* (APs), keep for every AP its own best frames, shift each AP's box by its local
displacement and blend the boxes. This module is that engine, as a streaming accumulator:

* :func:`select_per_point` turns a ``(n_frames, n_points)`` table of local sharpness into the
  ``(n_frames, n_points)`` choice of frames for every AP;
* :class:`PatchStacker` is fed one globally aligned frame at a time (``add`` with the APs it was
  chosen for and their local shifts; ``add_background`` for the globally best frames) and holds
  only arrays of the frame's size, so 10,000 frames cost no more memory than 10; stackers fed
  different frames (in different processes) add up with ``merge``;
* :func:`align_channels` corrects atmospheric dispersion (R and B displaced from G).

Resampling
----------
Output pixel ``u`` of the grid at scale ``d`` sits at input coordinate ``x = (u + 0.5) / d -
0.5``; a box translated by ``dx`` samples the frame at ``x - dx``. Two kernels:

* ``"cubic"`` (default): bicubic interpolation (Keys, OpenCV's), without a warp per box. A
  box's shift is rounded to a multiple of ``1 / phases`` px (default a third: at most 1/6 px
  off, 0.1 px rms) and split into whole pixels and a sub-pixel *phase*; the box, moved by the
  whole pixels (a copy) and weighted by its window, is added to the sum of its phase, and at
  the end each phase's sum is moved by its phase with one bicubic warp (interpolation is
  linear, so this is the sum of the boxes each warped by its own shift). The summed windows
  go through the same warps, so their bend at a window's edge divides out. At ``drizzle > 1``
  the phase sums are interpolated straight onto the fine grid: the many frames' different
  sub-pixel shifts sample it at different phases and fill it in.
* ``"drop"``: the drop-based drizzle of Fruchter & Hook (2002, PASP 114, 144) restricted to
  translations, per box as one separable product ``A_y @ patch @ A_x.T``: each input pixel,
  shrunk to ``pixfrac`` of its size and moved by the shift, is spread over the output pixels it
  overlaps, weighted by the overlap length per axis. With ``pixfrac < 1`` it keeps more
  resolution than interpolation but needs many well-dithered frames (a fine pixel no drop
  reaches gets its value from the background, or NaN).

Blending
--------
Every AP box is weighted by a separable ``sin**2`` (periodic Hann) window of the box size:
boxes at a step of half the box size sum exactly to one (``sin**2 + cos**2``), and any other
layout is normalised by the accumulated weight, so there are no seams. Where the summed windows
of the APs fall below one half (outside the AP grid, near its edge) the patch stack is blended
into the plain mean of the ``add_background`` frames with a smoothstep of the coverage.
"""

from __future__ import annotations

import math
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from skystack._typing import XY, Image
from skystack.errors import GeometryError
from skystack.planetary.align import shift_image

__all__ = ["select_per_point", "PatchStacker", "align_channels", "LuckyKernel"]

LuckyKernel = Literal["cubic", "drop"]
"""Resampling of the shifted boxes: bicubic remap by a blended shift field, or drop drizzle."""


_COVER_FULL = 0.5  # summed AP windows at and above which the patch stack is used alone


def select_per_point(quality: npt.ArrayLike, best: float | int) -> npt.NDArray[np.bool_]:
    """For every alignment point, its own best frames.

    Parameters
    ----------
    quality : array_like (n_frames, n_points)
        Local sharpness of every frame at every alignment point, larger is better (for example
        the Laplacian variance of the AP box). NaN counts as the worst.
    best : float or int
        A float in (0, 1] is the fraction of the frames to keep for each point (rounded, at
        least one); an int is the count of frames (at most ``n_frames``). ``1.0`` keeps every
        frame, ``1`` only the sharpest.

    Returns
    -------
    ndarray bool (n_frames, n_points)
        True where the frame is among the ``k`` sharpest for that point (exactly ``k`` per
        column; ties are broken by the frame order). Note that True here means *selected*.

    Raises
    ------
    GeometryError
        ``quality`` is not 2-D or has no frames.
    ValueError
        ``best`` is not a fraction in (0, 1] nor a positive count.
    """
    q = np.asarray(quality, dtype=np.float64)
    if q.ndim != 2 or q.shape[0] == 0:
        msg = f"quality: expected an (n_frames, n_points) array with frames, got shape {q.shape}"
        raise GeometryError(msg)
    n_frames, n_points = q.shape
    if isinstance(best, bool) or not isinstance(best, int | float | np.integer | np.floating):
        msg = f"best: expected a fraction in (0, 1] or a positive frame count, got {best!r}"
        raise ValueError(msg)
    if isinstance(best, int | np.integer):
        if best < 1:
            msg = f"best: expected a positive frame count, got {best}"
            raise ValueError(msg)
        k = min(int(best), n_frames)
    else:
        if not 0.0 < float(best) <= 1.0:
            msg = f"best: expected a fraction in (0, 1], got {best}"
            raise ValueError(msg)
        k = max(1, min(n_frames, int(round(float(best) * n_frames))))
    selected = np.zeros((n_frames, n_points), dtype=bool)
    if n_points == 0:
        return selected
    score = np.where(np.isfinite(q), q, -np.inf)
    # A stable sort on the negated score: the k largest, earlier frames first on ties.
    order = np.argsort(-score, axis=0, kind="stable")[:k]
    selected[order, np.arange(n_points)[None, :]] = True
    return selected


class PatchStacker:
    """Streaming multi-point stack of alignment-point boxes, blended into a background mean.

    Parameters
    ----------
    shape : (H, W) or (H, W, 3)
        Shape of the globally aligned (and cropped) frames that will be added.
    centres : array_like (n_points, 2)
        Alignment points ``(x, y)`` in frame pixels.
    ap_size : int
        Side of the square box around each point (frame px); at least 4.
    drizzle : float
        Scale of the output grid: 1, 1.5 or 2 (any value in [1, 4] is accepted).
    kernel : {"cubic", "drop"}
        Resampling of the shifted boxes (see the module notes): bicubic interpolation
        (default), or translation-only drop drizzle.
    pixfrac : float
        Drop size in input pixels for ``kernel="drop"`` (0 < pixfrac <= 1.5); ignored otherwise.
    phases : int
        Sub-pixel phases per axis of the cubic kernel (1 to 8): shifts are rounded to
        ``1 / phases`` px. Memory holds ``phases**2`` float32 sums of the frame's size.

    Attributes
    ----------
    shape : tuple
        Input frame shape.
    out_shape : tuple
        Output shape, ``(round(H d), round(W d)[, 3])``.
    n_added : ndarray int64 (n_points,)
        Frames accumulated for each point.
    n_background : int
        Frames accumulated by :meth:`add_background`.

    Notes
    -----
    Memory is, for the cubic kernel, ``phases**2`` float32 sums on the input grid (for the drop
    kernel the weighted sum and weight on the output grid, float64), the background sum on the
    input grid (float32) and a few numbers per point: it does not grow with the number of
    frames. A point's weight in the blend is its window times the number of frames (times the
    optional frame weights) it received, which is the same for every point when the frames
    come from :func:`select_per_point`.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        centres: npt.ArrayLike,
        ap_size: int,
        *,
        drizzle: float = 1.0,
        kernel: LuckyKernel = "cubic",
        pixfrac: float = 1.0,
        phases: int = 3,
    ) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] != 3) or min(shape) < 1:
            msg = f"shape: expected (H, W) or (H, W, 3), got {shape}"
            raise GeometryError(msg)
        pts = (
            np.asarray(centres, dtype=np.float64).reshape(-1, 2)
            if np.size(centres)
            else (np.zeros((0, 2)))
        )
        if not np.all(np.isfinite(pts)):
            msg = "centres: expected finite (x, y) points, got NaN or infinity"
            raise ValueError(msg)
        if int(ap_size) < 4:
            msg = f"ap_size: expected a box of at least 4 px, got {ap_size}"
            raise ValueError(msg)
        d = float(drizzle)
        if not 1.0 <= d <= 4.0:
            msg = f"drizzle: expected a scale in [1, 4] (1, 1.5 or 2), got {drizzle}"
            raise ValueError(msg)
        if kernel not in ("cubic", "drop"):
            msg = f"kernel: expected 'cubic' or 'drop', got {kernel!r}"
            raise ValueError(msg)
        if not 0.0 < float(pixfrac) <= 1.5:
            msg = f"pixfrac: expected a drop size in (0, 1.5] px, got {pixfrac}"
            raise ValueError(msg)
        if (
            isinstance(phases, bool)
            or not isinstance(phases, int | np.integer)
            or not (1 <= phases <= 8)
        ):
            msg = f"phases: expected a count of sub-pixel phases from 1 to 8, got {phases!r}"
            raise ValueError(msg)
        self.shape = shape
        self.centres: XY = pts
        self.ap_size = int(ap_size)
        self.drizzle = d
        self.kernel: LuckyKernel = kernel
        self.pixfrac = float(pixfrac)
        height, width = shape[:2]
        out_h, out_w = int(round(height * d)), int(round(width * d))
        self.out_shape = (out_h, out_w, *shape[2:])
        box = int(round(self.ap_size * d))
        self._box = box
        # Output box of every point: [v0, v0 + box) x [u0, u0 + box), clipped to the grid.
        uc = (pts[:, 0] + 0.5) * d - 0.5
        vc = (pts[:, 1] + 0.5) * d - 0.5
        self._u0 = np.rint(uc - (box - 1) / 2.0).astype(np.int64)
        self._v0 = np.rint(vc - (box - 1) / 2.0).astype(np.int64)
        k = np.arange(box, dtype=np.float64)
        self._window = np.sin(np.pi * (k + 0.5) / box) ** 2
        self.phases = int(phases)
        if kernel == "cubic":
            # Frames moved by whole pixels, summed per sub-pixel phase on the input grid.
            self._bins = np.zeros((self.phases, self.phases, *shape), dtype=np.float32)
            self._wsum = np.zeros((len(pts), self.phases, self.phases), dtype=np.float64)
            self._xa, self._wx = self._phase_windows(self._u0, width)
            self._ya, self._wy = self._phase_windows(self._v0, height)
        else:
            self._sum = np.zeros(self.out_shape, dtype=np.float64)
            self._weight = np.zeros((out_h, out_w), dtype=np.float64)
        self._bg_sum = np.zeros(shape, dtype=np.float32)
        self.n_added = np.zeros(len(pts), dtype=np.int64)
        self.n_background = 0

    def _phase_windows(
        self, start: npt.NDArray[np.int64], n_in: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Every point's blending window along one axis, on the input grid, per phase.

        The window of output box ``[u0, u0 + box)`` is ``sin**2(pi (u + 0.5 - u0) / box)``
        of the output coordinate ``u = (x + 0.5) d - 0.5``. A frame stacked at phase ``c``
        is accumulated at ``x`` and later moved by ``+c``, so its window is sampled at
        ``x + c``. Returns the first input pixel ``(n_points, phases)`` and the samples
        ``(n_points, phases, L)``, zero beyond the window.
        """
        d, box, phases = self.drizzle, self._box, self.phases
        length = int(math.ceil(box / d)) + 2
        centre = np.arange(phases) / phases
        low = start[:, None] / d - 0.5 - centre[None, :]  # window support begins at x + c
        first = np.ceil(low - 1e-9).astype(np.int64)
        x = first[:, :, None] + np.arange(length)[None, None, :] + centre[None, :, None]
        t = ((x + 0.5) * d - start[:, None, None]) / box
        window = np.where((t > 0.0) & (t < 1.0), np.sin(np.pi * t) ** 2, 0.0)
        del n_in
        return first, window.astype(np.float32)

    # -- resampling ---------------------------------------------------------------------------

    def _axis_matrix(
        self, start: int, stop: int, shift: float, n_in: int
    ) -> tuple[npt.NDArray[np.float32], int, npt.NDArray[np.float64]]:
        """Banded resampling matrix of output pixels ``[start, stop)`` along one axis.

        Returns the matrix ``(stop - start, m)`` (float32), the first input pixel ``i0`` of its
        ``m`` columns (within ``[0, n_in)``) and the per-row weight: the summed drop
        overlaps, 0 where the output pixel lies beyond the frame.
        """
        d = self.drizzle
        n_out = stop - start
        pos = (np.arange(start, stop, dtype=np.float64) + 0.5) / d - 0.5 - shift
        base = np.floor(pos)
        offsets = np.arange(-2, 3, dtype=np.float64)
        t = (pos - base)[:, None] - offsets[None, :]
        half_out, half_in = 0.5 / d, 0.5 * self.pixfrac
        overlap = np.minimum(t + half_out, half_in) - np.maximum(t - half_out, -half_in)
        taps = np.clip(overlap, 0.0, None) * d
        cols = base[:, None] + offsets[None, :]
        inside = (pos >= -0.5) & (pos <= n_in - 0.5)
        outside = (cols < 0) | (cols > n_in - 1)
        taps = np.where(outside, 0.0, taps)
        cols = np.clip(cols, 0, n_in - 1)
        taps[~inside] = 0.0
        icols = cols.astype(np.int64)
        i0 = int(icols.min())
        m = int(icols.max()) - i0 + 1
        mat = np.zeros((n_out, m), dtype=np.float32)
        np.add.at(mat, (np.arange(n_out)[:, None], icols - i0), taps.astype(np.float32))
        return mat, i0, taps.sum(axis=1)

    def _resample(
        self, frame: Image, rows: tuple[int, int], cols: tuple[int, int], shift: tuple[float, float]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The frame's box at output ``rows`` x ``cols`` moved by ``shift`` (dx, dy).

        Returns the resampled (unnormalised) box and the per-row and per-column weights.
        """
        height, width = self.shape[:2]
        ay, y0, ry = self._axis_matrix(rows[0], rows[1], shift[1], height)
        ax, x0, rx = self._axis_matrix(cols[0], cols[1], shift[0], width)
        patch = frame[y0 : y0 + ay.shape[1], x0 : x0 + ax.shape[1]]
        if patch.ndim == 2:
            out = ay @ patch @ ax.T
        else:
            tmp = (ay @ patch.reshape(patch.shape[0], -1)).reshape(ay.shape[0], patch.shape[1], 3)
            out = ax @ tmp  # (rows, cols, 3): a stack of (cols_in, 3) products
        return out, ry, rx

    # -- accumulation -------------------------------------------------------------------------

    def _check_frame(self, frame: npt.ArrayLike) -> Image:
        data = np.asarray(frame)
        if data.shape != self.shape:
            msg = f"frame: expected shape {self.shape}, got {data.shape}"
            raise GeometryError(msg)
        return data.astype(np.float32, copy=False)

    def add(
        self,
        frame: npt.ArrayLike,
        points: npt.ArrayLike,
        shifts: npt.ArrayLike,
        *,
        weights: npt.ArrayLike | None = None,
    ) -> None:
        """Accumulate the boxes of ``frame`` at the alignment points it was selected for.

        Parameters
        ----------
        frame : array_like (H, W) or (H, W, 3)
            A globally aligned frame, the shape given at construction.
        points : array_like of int (k,)
            Indices of the alignment points for which this frame is among the best (for
            example ``np.flatnonzero(selected[i])`` from :func:`select_per_point`).
        shifts : array_like (k, 2)
            Local ``(dx, dy)`` of each of those points, frame px: the box is translated by
            ``(dx, dy)`` to align it with the reference (``aligned(x, y) = frame(x - dx,
            y - dy)``).
        weights : array_like (k,), optional
            Weight of this frame at each point (default 1), e.g. from its local quality.

        Raises
        ------
        GeometryError
            The frame's shape differs from the stacker's.
        ValueError
            ``points`` out of range, or ``shifts``/``weights`` do not match ``points`` or are
            not finite.
        """
        data = self._check_frame(frame)
        idx = np.asarray(points, dtype=np.int64).reshape(-1)
        n = len(idx)
        sh = np.asarray(shifts, dtype=np.float64).reshape(-1, 2) if n else np.zeros((0, 2))
        if sh.shape != (n, 2) or not np.all(np.isfinite(sh)):
            msg = f"shifts: expected {n} finite (dx, dy) pairs, got an array of shape {sh.shape}"
            raise ValueError(msg)
        if n and (idx.min() < 0 or idx.max() >= len(self.centres)):
            msg = f"points: expected indices in [0, {len(self.centres)}), got {idx.tolist()}"
            raise ValueError(msg)
        w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
            msg = f"weights: expected {n} finite weights >= 0, got {w.tolist()}"
            raise ValueError(msg)
        if self.kernel == "cubic":
            self._add_phased(data, idx, sh, w)
            return
        out_h, out_w = self.out_shape[:2]
        box = self._box
        win = self._window
        for j in range(n):
            p = int(idx[j])
            u0, v0 = int(self._u0[p]), int(self._v0[p])
            ua, ub = max(u0, 0), min(u0 + box, out_w)
            va, vb = max(v0, 0), min(v0 + box, out_h)
            if ua >= ub or va >= vb or w[j] == 0.0:
                continue
            res, ry, rx = self._resample(data, (va, vb), (ua, ub), (sh[j, 0], sh[j, 1]))
            wy = win[va - v0 : vb - v0] * w[j]
            wx = win[ua - u0 : ub - u0]
            # Drop: the box is a sum of drops; its weight is the window times the drops.
            win2 = np.outer(wy, wx)
            self._sum[va:vb, ua:ub] += res * (win2 if res.ndim == 2 else win2[..., None])
            self._weight[va:vb, ua:ub] += np.outer(wy * ry, wx * rx)
            self.n_added[p] += 1

    def _add_phased(
        self,
        data: Image,
        idx: npt.NDArray[np.int64],
        sh: npt.NDArray[np.float64],
        w: npt.NDArray[np.float64],
    ) -> None:
        """Cubic kernel: each box moved by whole pixels into the sum of its sub-pixel phase.

        A shift ``s`` is rounded to the nearest multiple of ``1 / phases`` and split into whole
        pixels ``n`` and a phase ``c`` in ``{0, 1 / phases, ...}``: ``s`` lies within
        ``0.5 / phases`` px of ``n + c``. The box moved by ``n`` (no resampling), times its
        window sampled at ``x + c``, goes to the sum of its phase; :meth:`result` moves each
        phase's sum by ``+c`` with one bicubic warp. That is the stack of the boxes each
        warped by its own shift (the warp is linear), for the cost of an addition per box.
        Pixels a moved box reads beyond the frame repeat its edge.
        """
        height, width = self.shape[:2]
        phases = self.phases
        length = self._wx.shape[2]
        nx, bx = np.divmod(np.rint(sh[:, 0] * phases).astype(np.int64), phases)
        ny, by = np.divmod(np.rint(sh[:, 1] * phases).astype(np.int64), phases)
        xa, ya = self._xa[idx, bx], self._ya[idx, by]
        # Windows of every box, (k, L, L), times the frame's weight at the point.
        windows = (self._wy[idx, by] * w[:, None].astype(np.float32))[:, :, None]
        windows = windows * self._wx[idx, bx][:, None, :]
        rows_j = zip(
            idx.tolist(), w.tolist(), by.tolist(), bx.tolist(), ya.tolist(), xa.tolist(),
            ny.tolist(), nx.tolist(), strict=True,
        )  # fmt: skip
        for j, (p, weight_j, by_j, bx_j, ya_j, xa_j, ny_j, nx_j) in enumerate(rows_j):
            if weight_j == 0.0:
                continue
            x0, x1 = max(xa_j, 0), min(xa_j + length, width)
            y0, y1 = max(ya_j, 0), min(ya_j + length, height)
            if x0 >= x1 or y0 >= y1:
                continue
            if 0 <= y0 - ny_j and y1 - ny_j <= height and 0 <= x0 - nx_j and x1 - nx_j <= width:
                box = data[y0 - ny_j : y1 - ny_j, x0 - nx_j : x1 - nx_j]
            else:
                rows = np.clip(np.arange(y0, y1) - ny_j, 0, height - 1)
                cols = np.clip(np.arange(x0, x1) - nx_j, 0, width - 1)
                box = data[np.ix_(rows, cols)]
            weight = windows[j, y0 - ya_j : y1 - ya_j, x0 - xa_j : x1 - xa_j]
            target = self._bins[by_j, bx_j, y0:y1, x0:x1]
            if box.ndim == 2:
                cv2.accumulateProduct(box, weight, target)  # in place, += box * weight
            else:
                target += box * weight[..., None]
            self._wsum[p, by_j, bx_j] += weight_j
            self.n_added[p] += 1

    def merge(self, other: PatchStacker) -> None:
        """Add the sums of ``other``, a stacker made with the same arguments and fed other
        frames (in another process, say); the sums are additive, so the result is that of one
        stacker fed all the frames, to float32 rounding.

        Raises
        ------
        ValueError
            ``other`` was made with other arguments.
        """
        layout = ("shape", "ap_size", "drizzle", "kernel", "pixfrac", "phases")
        if any(getattr(self, name) != getattr(other, name) for name in layout) or not (
            np.array_equal(self.centres, other.centres)
        ):
            mine = {name: getattr(self, name) for name in layout}
            theirs = {name: getattr(other, name) for name in layout}
            msg = f"merge: the stackers differ in their layout: {mine} vs {theirs} (or centres)"
            raise ValueError(msg)
        if self.kernel == "cubic":
            self._bins += other._bins
            self._wsum += other._wsum
        else:
            self._sum += other._sum
            self._weight += other._weight
        self._bg_sum += other._bg_sum
        self.n_added += other.n_added
        self.n_background += other.n_background

    def add_background(self, frame: npt.ArrayLike) -> None:
        """Accumulate a globally aligned frame into the plain mean used outside the APs.

        Parameters
        ----------
        frame : array_like (H, W) or (H, W, 3)
            One of the globally best frames, the shape given at construction.
        """
        self._bg_sum += self._check_frame(frame)
        self.n_background += 1

    # -- result -------------------------------------------------------------------------------

    def coverage(self) -> npt.NDArray[np.float64]:
        """Summed blending windows of the points that received frames, on the output grid.

        About 1 inside a grid of APs at a step of half the box, falling to 0 outside.
        """
        return self._windows((self.n_added > 0).astype(np.float64))

    def _windows(self, weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Sum over the points of ``weights[p]`` times the point's window, on the output grid."""
        out_h, out_w = self.out_shape[:2]
        cover = np.zeros((out_h, out_w), dtype=np.float64)
        box, win = self._box, self._window
        for p in np.flatnonzero(weights):
            u0, v0 = int(self._u0[p]), int(self._v0[p])
            ua, ub = max(u0, 0), min(u0 + box, out_w)
            va, vb = max(v0, 0), min(v0 + box, out_h)
            if ua < ub and va < vb:
                wy = win[va - v0 : vb - v0] * weights[p]
                cover[va:vb, ua:ub] += np.outer(wy, win[ua - u0 : ub - u0])
        return cover

    def _phase_weight(self, by: int, bx: int) -> npt.NDArray[np.float32]:
        """The summed windows of phase ``(by, bx)`` on the input grid, as its sum holds them."""
        height, width = self.shape[:2]
        length = self._wx.shape[2]
        weight = np.zeros((height, width), dtype=np.float32)
        for p in np.flatnonzero(self._wsum[:, by, bx]):
            xa, ya = int(self._xa[p, bx]), int(self._ya[p, by])
            x0, x1 = max(xa, 0), min(xa + length, width)
            y0, y1 = max(ya, 0), min(ya + length, height)
            if x0 < x1 and y0 < y1:
                wy = self._wy[p, by, y0 - ya : y1 - ya] * np.float32(self._wsum[p, by, bx])
                weight[y0:y1, x0:x1] += np.outer(wy, self._wx[p, bx, x0 - xa : x1 - xa])
        return weight

    def _patch_sums(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """The windowed sum of the boxes and the summed windows, on the output grid.

        For the cubic kernel every phase's sum and its summed windows are moved by the same
        bicubic warp, so the warp's error near the edge of a window (where the window bends
        most) divides out of their ratio.
        """
        if self.kernel == "drop":
            return self._sum, self._weight
        out_h, out_w = self.out_shape[:2]
        total = np.zeros(self.out_shape, dtype=np.float32)
        weight = np.zeros((out_h, out_w), dtype=np.float32)
        d, phases = self.drizzle, self.phases
        for by in range(phases):
            for bx in range(phases):
                if not self._wsum[:, by, bx].any():
                    continue
                # Output u samples input x = (u + 0.5) / d - 0.5, and the phase's sum moved
                # by +c there: part(x - c).
                cx, cy = bx / phases, by / phases
                mat = np.array(
                    [[1.0 / d, 0.0, 0.5 / d - 0.5 - cx], [0.0, 1.0 / d, 0.5 / d - 0.5 - cy]]
                )
                for part, into in (
                    (self._bins[by, bx], total),
                    (self._phase_weight(by, bx), weight),
                ):
                    if d == 1.0:  # a translation: the same bicubic as a separable filter
                        into += shift_image(part, cx, cy)
                        continue
                    into += cv2.warpAffine(
                        part,
                        mat,
                        (out_w, out_h),
                        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REPLICATE,
                    )
        return total.astype(np.float64), weight.astype(np.float64)

    def background(self) -> Image | None:
        """The mean of the background frames on the output grid (cubic), or None if none."""
        if self.n_background == 0:
            return None
        mean = (self._bg_sum / self.n_background).astype(np.float32)
        d = self.drizzle
        if d == 1.0:
            return mean
        out_h, out_w = self.out_shape[:2]
        c = (d - 1.0) / 2.0  # input pixel centre x maps to output u = d x + (d - 1) / 2
        mat = np.array([[d, 0.0, c], [0.0, d, c]], dtype=np.float64)
        up = cv2.warpAffine(
            mean, mat, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
        )
        return up.astype(np.float32, copy=False)

    def result(self) -> Image:
        """The stack: patches where the APs cover, blended smoothly into the background mean.

        Returns
        -------
        ndarray float32, ``out_shape``
            Same units as the frames. Pixels reached neither by a patch nor by a background
            frame are NaN.

        Raises
        ------
        ValueError
            Nothing was added.
        """
        if self.n_background == 0 and not self.n_added.any():
            msg = "PatchStacker.result: no frame was added (call add or add_background first)"
            raise ValueError(msg)
        total, weight = self._patch_sums()
        has = weight > 1e-12
        safe = np.where(has, weight, 1.0)
        patch = total / (safe[..., None] if total.ndim == 3 else safe)
        background = self.background()
        if background is None:
            alpha = has.astype(np.float64)
            background_f = np.full(self.out_shape, np.nan)
        else:
            t = np.clip(self.coverage() / _COVER_FULL, 0.0, 1.0)
            alpha = np.where(has, t * t * (3.0 - 2.0 * t), 0.0)
            background_f = background.astype(np.float64)
        if patch.ndim == 3:
            alpha = alpha[..., None]
            has = has[..., None]
        out = np.where(has, alpha * patch, 0.0) + np.where(
            alpha < 1.0, (1.0 - alpha) * background_f, 0.0
        )
        return out.astype(np.float32)


def align_channels(
    rgb: npt.ArrayLike, *, max_shift: float | None = None
) -> tuple[Image, npt.NDArray[np.float64]]:
    """Correct atmospheric dispersion: register R and B on G by phase correlation.

    Near the horizon the atmosphere acts as a weak prism: the red image sits a fraction of a
    pixel (to a few pixels) towards the zenith of the blue one. The shifts are measured with
    :func:`skystack.register.phase.phase_correlate` (upsampled-DFT peak, ~0.02 px) and applied
    with a cubic sub-pixel translation.

    Parameters
    ----------
    rgb : array_like (H, W, 3)
        R, G, B image (a stack or a good frame).
    max_shift : float, optional
        Largest plausible dispersion (px); a larger measured shift raises.

    Returns
    -------
    image : ndarray float32 (H, W, 3)
        R and B translated onto G (edges replicated); G unchanged.
    shifts : ndarray (3, 2)
        Translation ``(dx, dy)`` applied to each channel (``corrected(x, y) = channel(x - dx,
        y - dy)``), the same convention as :meth:`PatchStacker.add`; row 1 (G) is zero. A red
        image displaced by ``(+0.3, -0.5)`` from the green one gives ``(-0.3, +0.5)``.

    Raises
    ------
    GeometryError
        The image is not ``(H, W, 3)``.
    RegistrationError
        A channel is blank or its correlation peak is not significant, or a shift exceeds
        ``max_shift``.
    """
    from skystack.errors import RegistrationError
    from skystack.register.phase import phase_correlate

    data = np.asarray(rgb, dtype=np.float32)
    if data.ndim != 3 or data.shape[2] != 3:
        msg = f"rgb: expected an (H, W, 3) image, got shape {data.shape}"
        raise GeometryError(msg)
    green = np.ascontiguousarray(data[..., 1])
    out = data.copy()
    shifts = np.zeros((3, 2), dtype=np.float64)
    height, width = green.shape
    for c in (0, 2):
        channel = np.ascontiguousarray(data[..., c])
        match = phase_correlate(channel, green, refine=False)
        dx, dy = match.transform.shift
        if max_shift is not None and math.hypot(dx, dy) > max_shift:
            name = "RGB"[c]
            msg = (
                f"align_channels: {name} is displaced by ({-dx:.2f}, {-dy:.2f}) px from G, "
                f"more than max_shift={max_shift}"
            )
            raise RegistrationError(msg)
        mat = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float64)
        out[..., c] = cv2.warpAffine(
            channel, mat, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
        )
        shifts[c] = (dx, dy)
    return out, shifts
