"""Calibration: master bias/dark/flat frames, their application, cosmetic correction."""

__all__: list[str] = []
