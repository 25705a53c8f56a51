"""Star populations: positions, brightness distributions and colours from temperatures.

Brightness follows a truncated power law in flux, ``N(>F) ∝ F ** -slope``. For a uniform
(Euclidean) population the slope is 1.5; real Galactic star counts grow more slowly with depth,
about 0.3-0.4 dex per magnitude (Bahcall & Soneira [1]_), i.e. slopes of 0.75-1.0. A few bright
stars are added explicitly so that the brightest stars of a frame are near or above saturation.

Colours come from effective temperatures: a black body is integrated over three broad bands
(B 400-490 nm, G 490-580 nm, R 580-700 nm) and normalised so that the mean of R, G and B is 1,
so a mono sensor (the mean of the channels) sees the star's nominal flux.

References
----------
.. [1] J. N. Bahcall, R. M. Soneira, "The universe at faint magnitudes. I. Models for the
   Galaxy and the predicted star counts", ApJS 44, 73 (1980).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["StarField", "planck_rgb", "power_law_fluxes", "draw_temperatures"]

_H = 6.62607015e-34
_C = 2.99792458e8
_K = 1.380649e-23
_BANDS_NM = ((580.0, 700.0), (490.0, 580.0), (400.0, 490.0))


@dataclass(frozen=True, eq=False)
class StarField:
    """A table of stars.

    Attributes
    ----------
    x, y : ndarray of float64
        Positions in pixels (0-based pixel centres) of the frame the field is defined in.
    flux : ndarray of float64
        Total flux in electrons per exposure as a mono sensor with a perfect flat collects it.
    temperature : ndarray of float64
        Effective temperature in kelvin.
    rgb : ndarray of float64, (N, 3)
        Relative R, G, B response, mean 1 per star.
    """

    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.float64]
    flux: npt.NDArray[np.float64]
    temperature: npt.NDArray[np.float64]
    rgb: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.x.shape[0])


def planck_rgb(temperature: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Return R, G, B photon-count ratios of black bodies, normalised to a mean of 1.

    Parameters
    ----------
    temperature : array_like
        Temperatures in kelvin.

    Returns
    -------
    ndarray, shape (..., 3)
        Photons per band (band-averaged Planck photon radiance), normalised per temperature.
    """
    t = np.asarray(temperature, dtype=np.float64)[..., None]
    columns = []
    for lo, hi in _BANDS_NM:
        lam = np.linspace(lo, hi, 9) * 1e-9
        # photon radiance: B_lambda / (h c / lambda) ∝ lambda^-4 / (exp(hc / lambda k T) - 1)
        x = (_H * _C) / (lam * _K * t)
        photons = lam**-4 / np.expm1(np.minimum(x, 700.0))
        columns.append(photons.mean(axis=-1))
    rgb = np.stack(columns, axis=-1)
    return rgb / rgb.mean(axis=-1, keepdims=True)


def power_law_fluxes(
    count: int, *, f_min: float, f_max: float, slope: float, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Draw fluxes from ``N(>F) ∝ F ** -slope`` truncated to ``[f_min, f_max]``.

    Inverse-transform sampling of the truncated Pareto distribution.
    """
    if count <= 0:
        return np.zeros(0)
    u = rng.random(count)
    a = f_min**-slope
    b = f_max**-slope
    return (a - u * (a - b)) ** (-1.0 / slope)


def draw_temperatures(
    count: int, *, median_k: float, spread_dex: float, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Draw log-normal effective temperatures, clipped to 2800-30000 K."""
    log_t = math.log10(median_k) + spread_dex * rng.standard_normal(count)
    return np.clip(10.0**log_t, 2800.0, 30000.0)
