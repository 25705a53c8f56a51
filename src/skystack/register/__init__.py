"""Registration: transforms, star asterism matching, phase correlation, ORB features, warping."""

from __future__ import annotations

from skystack.register.features import ecc_refine, orb_match
from skystack.register.match import match_stars
from skystack.register.phase import phase_correlate
from skystack.register.transform import (
    TRANSFORM_MODELS,
    Match,
    RegisterMethod,
    Transform,
    TransformModel,
    fit_transform,
    residuals,
)
from skystack.register.warp import INTERPOLATIONS, Interpolation, Warped, warp_image

__all__ = [
    "INTERPOLATIONS",
    "TRANSFORM_MODELS",
    "Interpolation",
    "Match",
    "RegisterMethod",
    "Transform",
    "TransformModel",
    "Warped",
    "ecc_refine",
    "fit_transform",
    "match_stars",
    "orb_match",
    "phase_correlate",
    "residuals",
    "warp_image",
]
