"""Measurement helpers for the simulator tests: windowed centroids and Moffat fits."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.optimize import least_squares


def windowed_centroid(
    image: np.ndarray, x: float, y: float, *, fwhm: float, iterations: int = 30
) -> tuple[float, float]:
    """Iterative Gaussian-windowed centroid (SExtractor's XWIN), unbiased for symmetric stars.

    ``image`` must be background-subtracted.
    """
    sigma = fwhm / 2.3548
    half = int(math.ceil(4 * sigma)) + 2
    height, width = image.shape
    for _ in range(iterations):
        ix, iy = int(round(x)), int(round(y))
        xa, xb = max(ix - half, 0), min(ix + half + 1, width)
        ya, yb = max(iy - half, 0), min(iy + half + 1, height)
        yy, xx = np.mgrid[ya:yb, xa:xb]
        dx, dy = xx - x, yy - y
        w = np.exp(-(dx * dx + dy * dy) / (2 * sigma * sigma)) * image[ya:yb, xa:xb]
        total = w.sum()
        step_x = 2.0 * (w * dx).sum() / total
        step_y = 2.0 * (w * dy).sum() / total
        x += step_x
        y += step_y
        if abs(step_x) < 1e-6 and abs(step_y) < 1e-6:
            break
    return x, y


def fit_moffat(
    image: np.ndarray, x: float, y: float, *, half: int = 12, background: bool = False
) -> dict[str, float]:
    """Least-squares fit of a Moffat profile (free centre, amplitude, alpha, beta[, offset])."""
    ix, iy = int(round(x)), int(round(y))
    stamp = image[iy - half : iy + half + 1, ix - half : ix + half + 1].astype(np.float64)
    yy, xx = np.mgrid[iy - half : iy + half + 1, ix - half : ix + half + 1]

    def model(p: np.ndarray) -> np.ndarray:
        x0, y0, amp, alpha, beta = p[:5]
        r2 = (xx - x0) ** 2 + (yy - y0) ** 2
        out = amp * (1 + r2 / alpha**2) ** -beta
        return out + (p[5] if background else 0.0)

    p0 = [x, y, float(stamp.max()), 2.0, 3.0] + ([float(np.median(stamp))] if background else [])
    fit = least_squares(lambda p: (model(p) - stamp).ravel(), p0)
    x0, y0, amp, alpha, beta = fit.x[:5]
    fwhm = 2 * abs(alpha) * math.sqrt(2 ** (1 / beta) - 1)
    return {"x": x0, "y": y0, "amp": amp, "alpha": abs(alpha), "beta": beta, "fwhm": fwhm}


def isolated_bright(
    xy: np.ndarray,
    flux: np.ndarray,
    shape: tuple[int, int],
    *,
    count: int,
    margin: float = 20.0,
    isolation: float = 6.0,
    max_flux: float | None = None,
) -> list[int]:
    """Indices of up to ``count`` bright stars inside the frame with no disturbing neighbour.

    A neighbour disturbs when it is within ``isolation`` px and above 1% of the star's flux, or
    within twice that and brighter than 30% of the star.
    """
    height, width = shape
    inside = (
        (xy[:, 0] > margin)
        & (xy[:, 0] < width - 1 - margin)
        & (xy[:, 1] > margin)
        & (xy[:, 1] < height - 1 - margin)
    )
    order = np.argsort(-flux)
    chosen: list[int] = []
    for i in order:
        if not inside[i] or (max_flux is not None and flux[i] > max_flux):
            continue
        d = np.hypot(xy[:, 0] - xy[i, 0], xy[:, 1] - xy[i, 1])
        near = (d > 0) & (
            ((d < isolation) & (flux > 0.01 * flux[i]))
            | ((d < 2 * isolation) & (flux > 0.3 * flux[i]))
        )
        if not near.any():
            chosen.append(int(i))
        if len(chosen) == count:
            break
    return chosen


@pytest.fixture
def measure() -> SimpleNamespace:
    """Centroid and PSF-fit helpers."""
    return SimpleNamespace(
        centroid=windowed_centroid, fit_moffat=fit_moffat, isolated_bright=isolated_bright
    )
