"""Star-list registration: asterism (triangle) matching, RANSAC, least-squares refinement.

The method of Valdes et al. (1995, PASP 107, 1119) and astroalign (Beroiz et al. 2020, Astronomy
and Computing 32, 100384): triangles of neighbouring bright stars are described by their side
ratios, which do not change under shift, rotation, scale or mirroring; triangles with close
descriptors in the two lists propose a transform each; the proposal that maps the most control
stars onto stars of the other list wins, and a least-squares fit over every star matched by it
gives the final transform.

Written here rather than taken from astroalign's ``find_transform`` because that one fits only
proper similarities (a mirrored frame cannot be matched), draws from an unseeded global
generator, loops in Python per triangle, and stops at the first acceptable proposal; this one
scores every proposal at once with numpy and a KD-tree (measured in ``benchmarks/``).
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from skystack._typing import XY
from skystack.errors import RegistrationError
from skystack.register.transform import (
    Match,
    Transform,
    TransformModel,
    fit_transform,
    min_points,
    residuals,
)

__all__ = ["match_stars", "triangle_invariants"]

_NEIGHBOURS = 6
_INVARIANT_RADIUS = 0.015
_MAX_PROPOSALS = 4000


def triangle_invariants(
    points: XY, *, neighbours: int = _NEIGHBOURS
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Triangles of each point with its nearest neighbours, and their shape descriptors.

    Parameters
    ----------
    points : ndarray (N, 2)
    neighbours : int
        Each point forms triangles with every pair among its ``neighbours - 1`` nearest others.

    Returns
    -------
    invariants : ndarray (T, 2)
        ``(L_mid / L_max, L_min / L_max)`` of the sorted side lengths: unchanged by
        similarity transforms and mirroring.
    vertices : ndarray (T, 3) of int
        Point indices ordered by the length of the opposite side (shortest first), so that
        the same triangle in two lists lists corresponding vertices in the same order.
    orientation : ndarray (T,)
        +1 or -1: the turning sense of the ordered vertices (flips under mirroring).
    """
    n = len(points)
    if n < 3:
        return np.zeros((0, 2)), np.zeros((0, 3), dtype=np.intp), np.zeros(0)
    k = min(n, neighbours)
    _, nearest = cKDTree(points).query(points, k=k)
    combos = np.array(list(itertools.combinations(range(k), 3)))
    triangles = np.sort(nearest[:, combos].reshape(-1, 3), axis=1)
    triangles = np.unique(triangles, axis=0)
    p = points[triangles]  # (T, 3, 2)
    opposite = np.stack(
        [
            np.linalg.norm(p[:, 1] - p[:, 2], axis=1),
            np.linalg.norm(p[:, 0] - p[:, 2], axis=1),
            np.linalg.norm(p[:, 0] - p[:, 1], axis=1),
        ],
        axis=1,
    )
    order = np.argsort(opposite, axis=1)
    sides = np.take_along_axis(opposite, order, axis=1)
    vertices = np.take_along_axis(triangles, order, axis=1)
    valid = sides[:, 0] > 1e-6 * np.maximum(sides[:, 2], 1e-12)
    sides, vertices = sides[valid], vertices[valid]
    invariants = np.column_stack([sides[:, 1] / sides[:, 2], sides[:, 0] / sides[:, 2]])
    q = points[vertices]
    cross = (q[:, 1, 0] - q[:, 0, 0]) * (q[:, 2, 1] - q[:, 0, 1]) - (q[:, 1, 1] - q[:, 0, 1]) * (
        q[:, 2, 0] - q[:, 0, 0]
    )
    return invariants, vertices, np.sign(cross)


def _similarities(
    src: npt.NDArray[np.float64], dst: npt.NDArray[np.float64], mirrored: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Least-squares similarity per proposal from (P, 3, 2) point triples, as (P, 3, 3)."""
    # As complex numbers a proper similarity is z' = a z + b and a mirrored one z' = a z* + b,
    # which gives every proposal's fit in closed form at once.
    zs = src[..., 0] + 1j * src[..., 1]
    zd = dst[..., 0] + 1j * dst[..., 1]
    zs = np.where(mirrored[:, None], np.conj(zs), zs)
    cs = zs - zs.mean(axis=1, keepdims=True)
    cd = zd - zd.mean(axis=1, keepdims=True)
    a = (cd * np.conj(cs)).sum(axis=1) / np.maximum((np.abs(cs) ** 2).sum(axis=1), 1e-300)
    b = zd.mean(axis=1) - a * zs.mean(axis=1)
    sign = np.where(mirrored, -1.0, 1.0)
    matrices = np.zeros((len(a), 3, 3))
    matrices[:, 0, 0] = a.real
    matrices[:, 0, 1] = -a.imag * sign
    matrices[:, 1, 0] = a.imag
    matrices[:, 1, 1] = a.real * sign
    matrices[:, 0, 2] = b.real
    matrices[:, 1, 2] = b.imag
    matrices[:, 2, 2] = 1.0
    return matrices


def _best_proposal(
    source: XY,
    target: XY,
    *,
    tolerance_px: float,
    allow_mirror: bool,
    rng: np.random.Generator,
) -> tuple[Transform, int] | None:
    inv_s, tri_s, ori_s = triangle_invariants(source)
    inv_t, tri_t, ori_t = triangle_invariants(target)
    if len(inv_s) == 0 or len(inv_t) == 0:
        return None
    pairs = cKDTree(inv_s).query_ball_tree(cKDTree(inv_t), r=_INVARIANT_RADIUS)
    lengths = np.fromiter((len(p) for p in pairs), dtype=np.intp, count=len(pairs))
    if lengths.sum() == 0:
        return None
    first = np.repeat(np.arange(len(pairs)), lengths)
    second = np.fromiter(itertools.chain.from_iterable(pairs), dtype=np.intp, count=lengths.sum())
    mirrored = ori_s[first] != ori_t[second]
    if not allow_mirror:
        first, second, mirrored = first[~mirrored], second[~mirrored], mirrored[~mirrored]
    if len(first) > _MAX_PROPOSALS:
        keep = rng.choice(len(first), size=_MAX_PROPOSALS, replace=False)
        first, second, mirrored = first[keep], second[keep], mirrored[keep]
    if len(first) == 0:
        return None
    matrices = _similarities(source[tri_s[first]], target[tri_t[second]], mirrored)
    # Score every proposal by how many control stars it puts within tolerance of a target star.
    mapped = np.einsum("pij,nj->pni", matrices[:, :2, :2], source) + matrices[:, None, :2, 2]
    distance, _ = cKDTree(target).query(
        mapped.reshape(-1, 2), k=1, distance_upper_bound=tolerance_px
    )
    distance = distance.reshape(len(matrices), len(source))
    hits = np.isfinite(distance)
    counts = hits.sum(axis=1)
    spread = np.where(hits, distance, 0.0).sum(axis=1)
    best = int(np.lexsort((spread, -counts))[0])
    return Transform(matrices[best]), int(counts[best])


def _chance_hits(source: XY, target: XY, tolerance_px: float) -> float:
    """Expected control stars landing within tolerance of some target star by chance."""
    span = np.ptp(target, axis=0) if len(target) > 1 else np.ones(2)
    area = max(float(span[0]) * float(span[1]), 1.0)
    density = min(len(target) * np.pi * tolerance_px**2 / area, 1.0)
    return len(source) * density


def _refine(
    initial: Transform,
    source: XY,
    target: XY,
    *,
    model: TransformModel,
    radius_px: float,
    mirrored: bool,
) -> tuple[Transform, npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Pair each source star with its mutual nearest target star under the transform, refit."""
    transform = initial
    tree = cKDTree(target)
    src_idx = dst_idx = np.zeros(0, dtype=np.intp)
    radius = radius_px
    for _ in range(5):
        mapped = transform.apply(source)
        distance, nearest = tree.query(mapped, k=1, distance_upper_bound=radius)
        ok = np.isfinite(distance)
        # Mutual nearest: the target star's nearest mapped source star is this one.
        back_distance, back = cKDTree(mapped).query(target[nearest[ok]], k=1)
        candidates = np.flatnonzero(ok)
        mutual = back == candidates
        src_idx = candidates[mutual]
        dst_idx = nearest[ok][mutual]
        if len(src_idx) < max(min_points(model) + 1, 3):
            break
        fitted = fit_transform(
            source[src_idx],
            target[dst_idx],
            model=model,
            mirrored=mirrored if model == "similarity" else None,
        )
        error = residuals(fitted, source[src_idx], target[dst_idx])
        rms = float(np.sqrt(np.mean(error**2)))
        keep = error <= max(3.0 * rms, 0.05)
        if not keep.all() and keep.sum() >= min_points(model) + 1:
            fitted = fit_transform(
                source[src_idx[keep]],
                target[dst_idx[keep]],
                model=model,
                mirrored=mirrored if model == "similarity" else None,
            )
            src_idx, dst_idx = src_idx[keep], dst_idx[keep]
        transform = fitted
        radius = max(min(radius_px, 5.0 * rms), 1.0)
    return transform, src_idx, dst_idx


def match_stars(
    stars: npt.ArrayLike,
    reference: npt.ArrayLike,
    *,
    model: TransformModel = "similarity",
    control_points: int = 50,
    tolerance_px: float = 3.0,
    min_inliers: int = 6,
    allow_mirror: bool = True,
    rng: np.random.Generator | None = None,
) -> Match:
    """The transform mapping a frame's stars onto the reference frame's stars.

    Parameters
    ----------
    stars, reference : array_like (N, 2)
        Star positions ``(x, y)`` of the frame and of the reference, brightest first (as
        :class:`skystack.detect.StarTable` sorts them). The first ``control_points`` of each
        form the triangles; all of them take part in the final fit.
    model : {"translation", "similarity", "affine", "homography"}
        Model of the final least-squares fit. Matching itself always uses similarities.
    control_points : int
        Brightest stars used for triangle matching. If matching fails it is tried once more
        with three times as many (frames overlapping little, faint or crowded fields).
    tolerance_px : float
        Distance within which a mapped control star counts as matched while scoring
        proposals, px.
    min_inliers : int
        Stars that must agree for a match to be accepted. Chance agreement of 6 stars within
        a few pixels is vanishingly unlikely even in crowded fields, so a frame of noise or
        clouds is rejected rather than aligned wrongly.
    allow_mirror : bool
        Accept frames that are mirror images of the reference (reported in ``Match.mirrored``).
    rng : numpy.random.Generator, optional
        Picks proposals when there are more than can be scored at once.

    Returns
    -------
    Match
        ``n_inliers`` stars matched in the final fit and their RMS residual ``rms_px``.

    Raises
    ------
    RegistrationError
        Too few stars, no agreeing asterisms, or fewer than ``min_inliers`` matched stars.
    """
    src = np.asarray(stars, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(reference, dtype=np.float64).reshape(-1, 2)
    generator = rng if rng is not None else np.random.default_rng(0)
    need = max(min_inliers, min_points(model) + 1, 3)
    if len(src) < need or len(dst) < need:
        raise RegistrationError(
            f"too few stars to match: {len(src)} in the frame, {len(dst)} in the reference "
            f"(need {need})"
        )
    best: tuple[Transform, int] | None = None
    rejected = 0
    for count in (control_points, 3 * control_points):
        proposal = _best_proposal(
            src[:count],
            dst[:count],
            tolerance_px=tolerance_px,
            allow_mirror=allow_mirror,
            rng=generator,
        )
        if proposal is not None:
            # The proposing triangle's own 3 stars always agree; beyond them, demand clearly
            # more agreeing stars than chance would put within tolerance (dense small fields).
            chance = _chance_hits(src[:count], dst[:count], tolerance_px)
            required = 3 + max(need - 3, int(np.ceil(chance + 4.0 * np.sqrt(chance) + 1.0)))
            if proposal[1] >= required:
                best = proposal
            else:
                rejected = max(rejected, proposal[1])
        if best is not None:
            break
        if count >= max(len(src), len(dst)):
            break
    if best is None:
        raise RegistrationError(
            f"no star pattern in common with the reference: at most {rejected} of "
            f"{min(len(src), 3 * control_points)} bright stars agree, too few to rule out chance"
        )
    initial, _ = best
    transform, src_idx, dst_idx = _refine(
        initial,
        src,
        dst,
        model=model,
        radius_px=tolerance_px,
        mirrored=initial.is_mirrored,
    )
    if len(src_idx) < need:
        raise RegistrationError(
            f"only {len(src_idx)} stars match the reference after refinement (need {need})"
        )
    error = residuals(transform, src[src_idx], dst[dst_idx])
    return Match(
        transform=transform,
        n_inliers=len(src_idx),
        rms_px=float(np.sqrt(np.mean(error**2))),
        method="stars",
    )
