"""Registration: transforms, star asterism matching, phase correlation, ORB features, warping."""

from __future__ import annotations

from skystack.register.transform import (
    TRANSFORM_MODELS,
    Match,
    RegisterMethod,
    Transform,
    TransformModel,
    fit_transform,
    residuals,
)

__all__ = [
    "TRANSFORM_MODELS",
    "Match",
    "RegisterMethod",
    "Transform",
    "TransformModel",
    "fit_transform",
    "residuals",
]
