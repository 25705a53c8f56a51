"""Planar coordinate transforms between frames, and their least-squares fits.

A :class:`Transform` is a 3x3 matrix mapping a frame's pixel coordinates ``(x, y, 1)``
(0-based pixel centres) to the reference frame's, the convention of the stack sidecar JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from skystack._typing import XY

__all__ = [
    "Transform",
    "TransformModel",
    "TRANSFORM_MODELS",
    "RegisterMethod",
    "Match",
    "fit_transform",
    "residuals",
    "min_points",
]

TransformModel: TypeAlias = Literal["translation", "similarity", "affine", "homography"]
TRANSFORM_MODELS: tuple[TransformModel, ...] = ("translation", "similarity", "affine", "homography")
RegisterMethod: TypeAlias = Literal["stars", "phase", "orb", "none"]

_MIN_POINTS: dict[str, int] = {"translation": 1, "similarity": 2, "affine": 3, "homography": 4}


def min_points(model: TransformModel) -> int:
    """The number of point pairs that determine a ``model``."""
    return _MIN_POINTS[model]


@dataclass(frozen=True, eq=False)
class Transform:
    """A projective map of the plane, ``(x', y', w') = M @ (x, y, 1)``.

    Attributes
    ----------
    matrix : ndarray (3, 3) float64
        Maps this frame's pixel coordinates to the reference frame's. ``matrix[2, 2]`` is 1.
    """

    matrix: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        matrix = np.array(self.matrix, dtype=np.float64)
        if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
            raise ValueError(f"a transform needs a finite 3x3 matrix, got {matrix!r}")
        if matrix[2, 2] == 0.0:
            raise ValueError("a transform's matrix[2, 2] must not be 0")
        matrix /= matrix[2, 2]
        matrix.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)

    @classmethod
    def identity(cls) -> Transform:
        """The identity."""
        return cls(np.eye(3))

    @classmethod
    def translation(cls, dx: float, dy: float) -> Transform:
        """A shift by ``(dx, dy)`` px."""
        return cls(np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]]))

    @classmethod
    def similarity(
        cls,
        *,
        scale: float = 1.0,
        rotation_deg: float = 0.0,
        shift: tuple[float, float] = (0.0, 0.0),
        center: tuple[float, float] = (0.0, 0.0),
        mirrored: bool = False,
    ) -> Transform:
        """Rotate (counter-clockwise in ``x, y``) and scale about ``center``, then shift.

        With ``mirrored`` the frame is first flipped left-right about ``center``.
        """
        angle = math.radians(rotation_deg)
        c, s = scale * math.cos(angle), scale * math.sin(angle)
        linear = np.array([[c, -s], [s, c]])
        if mirrored:
            linear = linear @ np.diag([-1.0, 1.0])
        cx, cy = center
        offset = np.array([cx, cy]) - linear @ np.array([cx, cy]) + np.asarray(shift, float)
        matrix = np.eye(3)
        matrix[:2, :2] = linear
        matrix[:2, 2] = offset
        return cls(matrix)

    @classmethod
    def from_list(cls, rows: Sequence[Sequence[float]]) -> Transform:
        """Rebuild from :meth:`to_list` output."""
        return cls(np.asarray(rows, dtype=np.float64))

    def to_list(self) -> list[list[float]]:
        """The matrix as a list of rows (JSON-ready)."""
        return [[float(v) for v in row] for row in self.matrix]

    def apply(self, points: npt.ArrayLike) -> XY:
        """Map ``(N, 2)`` points ``(x, y)``; returns a new ``(N, 2)`` float64 array."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        mapped = pts @ self.matrix[:2, :2].T + self.matrix[:2, 2]
        if not self.is_affine:
            w = pts @ self.matrix[2, :2] + 1.0
            mapped /= w[:, None]
        return mapped

    def inverse(self) -> Transform:
        """The inverse map."""
        return Transform(np.linalg.inv(self.matrix))

    def then(self, other: Transform) -> Transform:
        """This map followed by ``other`` (``other ∘ self``)."""
        return Transform(other.matrix @ self.matrix)

    @property
    def is_affine(self) -> bool:
        """Whether the last row is ``(0, 0, 1)``."""
        return bool(self.matrix[2, 0] == 0.0 and self.matrix[2, 1] == 0.0)

    @property
    def is_mirrored(self) -> bool:
        """Whether the map flips the frame (negative determinant of the linear part)."""
        return bool(np.linalg.det(self.matrix[:2, :2]) < 0.0)

    @property
    def shift(self) -> tuple[float, float]:
        """Where the frame's origin lands, ``(dx, dy)`` px."""
        x, y = self.apply([[0.0, 0.0]])[0]
        return float(x), float(y)

    @property
    def scale(self) -> float:
        """Mean linear scale factor of the linear part (square root of ``|det|``)."""
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:2, :2]))))

    @property
    def rotation_deg(self) -> float:
        """Rotation angle in degrees, in (-180, 180] (of the unflipped part if mirrored)."""
        linear = self.matrix[:2, :2]
        if self.is_mirrored:
            linear = linear @ np.diag([-1.0, 1.0])
        return float(
            math.degrees(math.atan2(linear[1, 0] - linear[0, 1], linear[0, 0] + linear[1, 1]))
        )

    def __repr__(self) -> str:
        dx, dy = self.shift
        mirror = ", mirrored" if self.is_mirrored else ""
        return (
            f"Transform(shift=({dx:.3f}, {dy:.3f}), rotation={self.rotation_deg:.3f} deg, "
            f"scale={self.scale:.5f}{mirror})"
        )


@dataclass(frozen=True)
class Match:
    """A registration result.

    Attributes
    ----------
    transform : Transform
        Maps the frame's pixel coordinates to the reference frame's.
    n_inliers : int
        Matched stars (``stars``), inlier feature matches (``orb``), 0 for ``phase``.
    rms_px : float
        RMS residual of the matched points after the fit, px (NaN where not defined).
    method : RegisterMethod
        Which method produced it.
    """

    transform: Transform
    n_inliers: int
    rms_px: float
    method: RegisterMethod = "stars"

    @property
    def mirrored(self) -> bool:
        """Whether the frame is mirrored relative to the reference."""
        return self.transform.is_mirrored


def _normalizer(points: XY) -> npt.NDArray[np.float64]:
    """Hartley normalisation: centre on the mean, mean distance √2."""
    center = points.mean(axis=0)
    spread = np.sqrt(((points - center) ** 2).sum(axis=1)).mean()
    k = math.sqrt(2.0) / spread if spread > 0 else 1.0
    return np.array([[k, 0.0, -k * center[0]], [0.0, k, -k * center[1]], [0.0, 0.0, 1.0]])


def _fit_similarity(src: XY, dst: XY, *, mirrored: bool) -> npt.NDArray[np.float64]:
    # Umeyama (1991) least squares: the rotation from the SVD of the cross-covariance.
    flip = np.diag([-1.0, 1.0]) if mirrored else np.eye(2)
    src_f = src @ flip
    mu_s, mu_d = src_f.mean(axis=0), dst.mean(axis=0)
    a, b = src_f - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    u, sv, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1.0
    rotation = u @ d @ vt
    var_s = (a**2).sum() / len(src)
    scale = float(np.trace(np.diag(sv) @ d) / var_s) if var_s > 0 else 1.0
    linear = scale * rotation @ flip
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = mu_d - (scale * rotation) @ mu_s
    return matrix


def _fit_affine(src: XY, dst: XY) -> npt.NDArray[np.float64]:
    design = np.column_stack([src, np.ones(len(src))])
    params, *_ = np.linalg.lstsq(design, dst, rcond=None)
    matrix = np.eye(3)
    matrix[:2, :] = params.T
    return matrix


def _fit_homography(src: XY, dst: XY) -> npt.NDArray[np.float64]:
    # Normalised DLT (Hartley & Zisserman, Multiple View Geometry, alg. 4.2); with more than
    # 4 points it minimises the algebraic error, which on sub-pixel star positions differs
    # from the geometric optimum by far less than the centroid noise.
    t_src, t_dst = _normalizer(src), _normalizer(dst)
    s = src @ t_src[:2, :2].T + t_src[:2, 2]
    d = dst @ t_dst[:2, :2].T + t_dst[:2, 2]
    n = len(src)
    rows = np.zeros((2 * n, 9))
    rows[0::2, 0:2] = s
    rows[0::2, 2] = 1.0
    rows[0::2, 6:8] = -d[:, :1] * s
    rows[0::2, 8] = -d[:, 0]
    rows[1::2, 3:5] = s
    rows[1::2, 5] = 1.0
    rows[1::2, 6:8] = -d[:, 1:] * s
    rows[1::2, 8] = -d[:, 1]
    _, _, vt = np.linalg.svd(rows)
    h = vt[-1].reshape(3, 3)
    matrix = np.linalg.inv(t_dst) @ h @ t_src
    return matrix / matrix[2, 2]


def fit_transform(
    source: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    model: TransformModel = "similarity",
    mirrored: bool | None = None,
) -> Transform:
    """Least-squares fit of a ``model`` mapping ``source`` points onto ``target`` points.

    Parameters
    ----------
    source, target : array_like (N, 2)
        Corresponding points ``(x, y)``.
    model : {"translation", "similarity", "affine", "homography"}
        Translation (2 parameters), similarity (rotation, uniform scale and shift, 4),
        affine (6) or homography (8). Similarity uses Umeyama's closed form; homography the
        normalised DLT.
    mirrored : bool or None
        For ``similarity`` only: fit a mirrored (flipped) similarity (True), a proper one
        (False), or whichever fits better (None). Affine and homography fits include
        mirroring anyway.

    Returns
    -------
    Transform

    Raises
    ------
    ValueError
        Too few points for the model, or degenerate points (all on one spot or one line).
    """
    src = np.asarray(source, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape:
        raise ValueError(f"source and target differ in shape: {src.shape} vs {dst.shape}")
    if model not in _MIN_POINTS:
        raise ValueError(f"unknown transform model {model!r}; expected one of {TRANSFORM_MODELS}")
    if len(src) < _MIN_POINTS[model]:
        raise ValueError(
            f"a {model} transform needs at least {_MIN_POINTS[model]} point pairs, got {len(src)}"
        )
    if model == "translation":
        shift = (dst - src).mean(axis=0)
        return Transform.translation(float(shift[0]), float(shift[1]))
    if model == "similarity":
        if mirrored is None:
            fits = [_fit_similarity(src, dst, mirrored=m) for m in (False, True)]
            errors = [float(np.sum(residuals(Transform(f), src, dst) ** 2)) for f in fits]
            matrix = fits[int(np.argmin(errors))]
        else:
            matrix = _fit_similarity(src, dst, mirrored=mirrored)
    elif model == "affine":
        matrix = _fit_affine(src, dst)
    else:
        matrix = _fit_homography(src, dst)
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix[:2, :2])) < 1e-12:
        raise ValueError(f"the points do not determine a {model} transform (degenerate layout)")
    return Transform(matrix)


def residuals(
    transform: Transform, source: npt.ArrayLike, target: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Distance in px between each mapped ``source`` point and its ``target``."""
    mapped = transform.apply(source)
    dst = np.asarray(target, dtype=np.float64).reshape(-1, 2)
    return np.sqrt(((mapped - dst) ** 2).sum(axis=1))
