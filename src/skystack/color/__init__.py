"""Colour: Bayer patterns, demosaicing and white balance, as pure functions on arrays.

* :mod:`.bayer` -- which colour each pixel of a mosaic measured, crops that keep track of the
  pattern, the four same-colour planes, RGB -> mosaic;
* :mod:`.debayer` -- mosaic -> RGB (``"bilinear"``, ``"vng"``, ``"ea"``, ``"superpixel"``) in
  float32, NaN-aware;
* :mod:`.balance` -- white-balance multipliers (RGB or in CFA space) and background
  neutralisation.
"""

from __future__ import annotations

from skystack.color.balance import (
    BackgroundReference,
    background_levels,
    background_levels_cfa,
    camera_multipliers,
    neutralize_background,
    neutralize_background_cfa,
    white_balance,
    white_balance_cfa,
)
from skystack.color.bayer import (
    CfaPlanes,
    as_pattern,
    cfa_planes,
    channel_index,
    channel_map,
    channel_masks,
    crop_cfa,
    mosaic,
    pattern_offsets,
    shift_pattern,
)
from skystack.color.debayer import DEBAYER_METHODS, DebayerMethod, debayer, fill_missing_cfa

__all__ = [
    # bayer
    "CfaPlanes",
    "as_pattern",
    "cfa_planes",
    "channel_index",
    "channel_map",
    "channel_masks",
    "crop_cfa",
    "mosaic",
    "pattern_offsets",
    "shift_pattern",
    # debayer
    "DEBAYER_METHODS",
    "DebayerMethod",
    "debayer",
    "fill_missing_cfa",
    # balance
    "BackgroundReference",
    "background_levels",
    "background_levels_cfa",
    "camera_multipliers",
    "neutralize_background",
    "neutralize_background_cfa",
    "white_balance",
    "white_balance_cfa",
]
