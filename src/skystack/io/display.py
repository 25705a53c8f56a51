"""Display stretch for 8-bit previews of linear data.

The automatic screen transfer function (STF) of PixInsight, also Siril's autostretch: per channel,
clip the shadows a few MADs below the median, then a midtones transfer function that puts the
median background at a fixed target brightness. The enhance step has fuller stretches; this one
only makes linear data visible when it is written to JPEG or 8-bit PNG/TIFF.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import numpy as np

from skystack._typing import Image

__all__ = ["DisplayStretch", "display_stretch", "midtones_transfer"]

DisplayStretch: TypeAlias = Literal["auto", "stf", "linear"]

_MAD_TO_SIGMA = 1.4826


def midtones_transfer(x: Image, midtones: float) -> Image:
    """Midtones transfer function MTF(m, x) = (m - 1) x / ((2m - 1) x - m), for x in [0, 1].

    Maps 0 to 0, 1 to 1 and ``midtones`` to 0.5.
    """
    m = np.float32(midtones)
    x = np.asarray(x, dtype=np.float32)
    denominator = (2 * m - 1) * x - m
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (m - 1) * x / denominator
    return np.where(denominator == 0, np.float32(0.5), out).astype(np.float32)


def display_stretch(
    image: Image, *, target_background: float = 0.25, shadows_clip: float = -2.8
) -> Image:
    """Stretch linear data to display range [0, 1] with the automatic STF, channel by channel.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` or ``(H, W, 3)`` linear data; NaN is ignored in the statistics and becomes 0.
    target_background : float
        Brightness the median is mapped to.
    shadows_clip : float
        Black point in normalised MADs relative to the median (negative: below it).

    Returns
    -------
    ndarray
        float32 in [0, 1], same shape.
    """
    data = np.asarray(image, dtype=np.float32)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros_like(data)
    top = float(data[finite].max())
    bottom = float(data[finite].min())
    if top > 1.0 or bottom < 0.0:
        # Float files outside [0, 1] (ADU, calibrated negatives): map their range onto [0, 1].
        scale = top - min(bottom, 0.0)
        data = (data - min(bottom, 0.0)) / np.float32(scale if scale > 0 else 1.0)
    data = np.clip(np.nan_to_num(data, nan=0.0), 0.0, 1.0)
    channels = [data] if data.ndim == 2 else [data[..., c] for c in range(data.shape[2])]
    stretched = [_stretch_channel(c, target_background, shadows_clip) for c in channels]
    return stretched[0] if data.ndim == 2 else np.stack(stretched, axis=-1)


def _stretch_channel(channel: Image, target: float, shadows_clip: float) -> Image:
    # Statistics from a subsample: the median of a 24 MP frame to 3 digits needs far fewer pixels.
    step = max(1, int(np.sqrt(channel.size / 1_000_000)))
    sample = channel[::step, ::step]
    median = float(np.median(sample))
    mad = float(np.median(np.abs(sample - median))) * _MAD_TO_SIGMA
    black = min(max(median + shadows_clip * mad, 0.0), 1.0)
    if black >= 1.0:
        return np.zeros_like(channel)
    rescaled = np.clip((channel - black) / np.float32(1.0 - black), 0.0, 1.0)
    level = (median - black) / (1.0 - black)
    if level <= 0.0:
        return rescaled.astype(np.float32)
    # The midtones balance that maps `level` to `target` is MTF(target, level).
    midtones = float(midtones_transfer(np.float32(level), target))
    return midtones_transfer(rescaled, midtones)
