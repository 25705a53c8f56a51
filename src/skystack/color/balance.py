"""White balance and background neutralisation of linear colour data.

* :func:`white_balance` and :func:`white_balance_cfa` multiply each colour by a factor, on an RGB
  image or directly on the Bayer mosaic (each site by its colour's factor), as raw converters do
  before demosaicing [1]_.
* :func:`camera_multipliers` reads the camera's "as shot" multipliers from the frame metadata.
* :func:`neutralize_background` adds one offset per channel so that the sky background of every
  channel equals the reference channel's: a grey sky without touching colour ratios of stars
  above the background. The background is a sigma-clipped median [2]_ of the pixels outside an
  optional mask; the clipping drops stars and other bright pixels.

All functions return new float32 arrays and never clip.

References
----------
.. [1] D. Coffin, "dcraw" (2008), ``scale_colors``: multipliers applied to raw sites before
   interpolation; LibRaw documents the same as ``cam_mul``.
.. [2] F. R. Hampel, "The influence curve and its role in robust estimation", J. Amer.
   Statist. Assoc. 69, 383-393 (1974) (the median absolute deviation as a scale); the iterative
   clipping about the median is that of astropy's ``sigma_clipped_stats``.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from skystack._typing import CfaPattern, Image, Mask
from skystack.color.bayer import CHANNEL_NAMES, as_pattern, channel_index
from skystack.errors import ConfigError, GeometryError, MetadataWarning
from skystack.frame import FrameMeta

__all__ = [
    "BackgroundReference",
    "BACKGROUND_REFERENCES",
    "white_balance",
    "white_balance_cfa",
    "camera_multipliers",
    "background_levels",
    "background_levels_cfa",
    "neutralize_background",
    "neutralize_background_cfa",
]

BackgroundReference: TypeAlias = Literal["red", "green", "blue"]
BACKGROUND_REFERENCES: tuple[BackgroundReference, ...] = ("red", "green", "blue")

_MAD_TO_SIGMA = 1.4826
_DEFAULT_SAMPLES = 2_000_000


def _multipliers(multipliers: npt.ArrayLike) -> npt.NDArray[np.float32]:
    values = np.asarray(multipliers, dtype=np.float64).reshape(-1)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise ConfigError(
            f"white-balance multipliers {multipliers!r} are invalid; expected three finite "
            "positive numbers for R, G, B"
        )
    return values.astype(np.float32)


def _rgb(image: Image, what: str) -> Image:
    data = np.asarray(image)
    if data.ndim != 3 or data.shape[2] != 3:
        raise GeometryError(f"{what} needs an RGB image (H, W, 3), got shape {data.shape}")
    return np.asarray(data, dtype=np.float32)


def _cfa(cfa: Image, what: str) -> Image:
    data = np.asarray(cfa)
    if data.ndim != 2:
        raise GeometryError(f"{what} needs a 2-D Bayer mosaic (H, W), got shape {data.shape}")
    return np.asarray(data, dtype=np.float32)


def white_balance(image: Image, multipliers: npt.ArrayLike) -> Image:
    """Multiply the R, G and B channels of an ``(H, W, 3)`` image by their factors.

    Parameters
    ----------
    image : ndarray, (H, W, 3)
        Linear RGB data.
    multipliers : 3 floats
        Positive factors for R, G, B (for example from :func:`camera_multipliers`).

    Returns
    -------
    ndarray float32, (H, W, 3)
    """
    data = _rgb(image, "white_balance")
    return data * _multipliers(multipliers)


def white_balance_cfa(cfa: Image, pattern: CfaPattern, multipliers: npt.ArrayLike) -> Image:
    """Multiply every site of a Bayer mosaic by the factor of its colour.

    Parameters
    ----------
    cfa : ndarray, (H, W)
        The mosaic.
    pattern : {"RGGB", "BGGR", "GRBG", "GBRG"}
        Pattern at ``cfa[0, 0]``.
    multipliers : 3 floats
        Positive factors for R, G, B.

    Returns
    -------
    ndarray float32, (H, W)
    """
    lut = channel_index(pattern)
    data = _cfa(cfa, "white_balance_cfa")
    factors = _multipliers(multipliers)
    out = np.empty_like(data)
    for row in range(2):
        for col in range(2):
            np.multiply(data[row::2, col::2], factors[lut[row, col]], out=out[row::2, col::2])
    return out


def camera_multipliers(meta: FrameMeta) -> tuple[float, float, float] | None:
    """The camera's white-balance multipliers from the metadata, normalised to G = 1.

    Parameters
    ----------
    meta : FrameMeta
        Metadata whose ``white_balance`` is ``(R, G, B)`` (raw files fill it).

    Returns
    -------
    (r, 1.0, b) or None
        None when the file has no white balance, or when it holds unusable values (zero,
        negative or not finite; a :class:`~skystack.errors.MetadataWarning` says so).
    """
    if meta.white_balance is None:
        return None
    try:
        r, g, b = (float(v) for v in meta.white_balance)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"white balance {meta.white_balance!r} of {meta.path} is not three numbers"
        ) from err
    if not all(math.isfinite(v) and v > 0 for v in (r, g, b)):
        warnings.warn(
            f"{meta.path}: camera white balance {meta.white_balance!r} is unusable "
            "(expected three positive numbers); none used",
            MetadataWarning,
            stacklevel=2,
        )
        return None
    return (r / g, 1.0, b / g)


def _clipped_median(
    values: npt.NDArray[np.floating], *, kappa: float, max_iterations: int
) -> float:
    """Median of ``values`` after iterative kappa-sigma clipping about the median (MAD sigma)."""
    x = values[np.isfinite(values)].astype(np.float64)
    if x.size == 0:
        return math.nan
    for _ in range(max_iterations):
        center = float(np.median(x))
        sigma = _MAD_TO_SIGMA * float(np.median(np.abs(x - center)))
        if sigma == 0.0:
            break
        keep = np.abs(x - center) <= kappa * sigma
        if keep.all():
            break
        x = x[keep]
    return float(np.median(x))


def _samples(plane: Image, exclude: Mask | None, max_samples: int) -> npt.NDArray[np.float32]:
    """The pixels of a 2-D plane outside ``exclude``, on a regular grid of at most ~max_samples."""
    step = max(1, math.ceil(math.sqrt(plane.size / max_samples)))
    values = plane[::step, ::step]
    if exclude is None:
        return values.reshape(-1)
    return values[~exclude[::step, ::step]]


def _check_mask(mask: Mask | None, shape: tuple[int, int]) -> Mask | None:
    if mask is None:
        return None
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise GeometryError(f"mask of shape {m.shape} does not match the image's {shape}")
    return m


def background_levels(
    image: Image,
    *,
    mask: Mask | None = None,
    kappa: float = 3.0,
    max_iterations: int = 10,
    max_samples: int = _DEFAULT_SAMPLES,
) -> npt.NDArray[np.float64]:
    """Robust sky background of each channel of an RGB image.

    The sigma-clipped median of the finite pixels outside ``mask``: iteratively drop pixels more
    than ``kappa`` robust sigmas (1.4826 x MAD) from the median, which removes stars and other
    bright sources, and take the median of the rest.

    Parameters
    ----------
    image : ndarray, (H, W, 3)
        Linear RGB data.
    mask : ndarray of bool, (H, W), optional
        True for pixels to leave out (objects, bad pixels).
    kappa : float
        Clipping threshold in sigmas.
    max_iterations : int
        Clipping passes at most.
    max_samples : int
        Larger channels are sampled on a regular grid of about this many pixels (the median
        of 2 million samples is good to about 1e-3 sigma).

    Returns
    -------
    ndarray float64, (3,)
        Background of R, G, B; NaN for a channel with no finite pixel outside the mask.
    """
    data = _rgb(image, "background_levels")
    exclude = _check_mask(mask, data.shape[:2])
    levels = np.empty(3)
    for c in range(3):
        values = _samples(data[..., c], exclude, max_samples)
        levels[c] = _clipped_median(values, kappa=kappa, max_iterations=max_iterations)
    return levels


def background_levels_cfa(
    cfa: Image,
    pattern: CfaPattern,
    *,
    mask: Mask | None = None,
    kappa: float = 3.0,
    max_iterations: int = 10,
    max_samples: int = _DEFAULT_SAMPLES,
) -> npt.NDArray[np.float64]:
    """Robust sky background of the red, green (both sites) and blue sites of a Bayer mosaic.

    Same estimator and parameters as :func:`background_levels`; ``mask`` is ``(H, W)``.
    """
    pat = as_pattern(pattern)
    data = _cfa(cfa, "background_levels_cfa")
    exclude = _check_mask(mask, data.shape)
    lut = channel_index(pat)
    samples: list[list[npt.NDArray[np.float32]]] = [[], [], []]
    for row in range(2):
        for col in range(2):
            plane = data[row::2, col::2]
            sub_mask = None if exclude is None else exclude[row::2, col::2]
            share = max_samples // (2 if lut[row, col] == 1 else 1)
            samples[lut[row, col]].append(_samples(plane, sub_mask, share))
    levels = np.empty(3)
    for c in range(3):
        values = np.concatenate(samples[c])
        levels[c] = _clipped_median(values, kappa=kappa, max_iterations=max_iterations)
    return levels


def _offsets(levels: npt.NDArray[np.float64], reference: BackgroundReference) -> np.ndarray:
    if reference not in BACKGROUND_REFERENCES:
        raise ConfigError(
            f"unknown background reference {reference!r}; expected one of "
            f"{', '.join(BACKGROUND_REFERENCES)}"
        )
    missing = [CHANNEL_NAMES[c] for c in range(3) if not math.isfinite(levels[c])]
    if missing:
        raise ConfigError(
            f"cannot measure the background of channel {', '.join(missing)}: no finite pixel "
            "outside the mask"
        )
    ref = levels[BACKGROUND_REFERENCES.index(reference)]
    return ref - levels


def neutralize_background(
    image: Image,
    *,
    mask: Mask | None = None,
    reference: BackgroundReference = "green",
    kappa: float = 3.0,
) -> Image:
    """Make the sky background grey: add per-channel offsets so each equals the reference's.

    The offsets are ``level[reference] - level[c]`` with the levels of
    :func:`background_levels`; being additive they leave every source's signal above the
    background, and so star colours, unchanged.

    Parameters
    ----------
    image : ndarray, (H, W, 3)
        Linear RGB data.
    mask : ndarray of bool, (H, W), optional
        True for pixels not to use in measuring the background (all pixels are corrected).
    reference : {"red", "green", "blue"}
        The channel whose background the others are brought to.
    kappa : float
        Clipping threshold of the background estimate, in sigmas.

    Returns
    -------
    ndarray float32, (H, W, 3)
    """
    data = _rgb(image, "neutralize_background")
    offsets = _offsets(background_levels(data, mask=mask, kappa=kappa), reference)
    return data + offsets.astype(np.float32)


def neutralize_background_cfa(
    cfa: Image,
    pattern: CfaPattern,
    *,
    mask: Mask | None = None,
    reference: BackgroundReference = "green",
    kappa: float = 3.0,
) -> Image:
    """:func:`neutralize_background` on a Bayer mosaic: one offset per colour of site.

    Parameters
    ----------
    cfa : ndarray, (H, W)
        The mosaic.
    pattern : {"RGGB", "BGGR", "GRBG", "GBRG"}
        Pattern at ``cfa[0, 0]``.
    mask, reference, kappa
        As in :func:`neutralize_background`.

    Returns
    -------
    ndarray float32, (H, W)
    """
    lut = channel_index(pattern)
    data = _cfa(cfa, "neutralize_background_cfa")
    levels = background_levels_cfa(data, pattern, mask=mask, kappa=kappa)
    offsets = _offsets(levels, reference).astype(np.float32)
    out = np.empty_like(data)
    for row in range(2):
        for col in range(2):
            np.add(data[row::2, col::2], offsets[lut[row, col]], out=out[row::2, col::2])
    return out
