"""Stacking: rejection, normalisation, weights and bounded-memory combination of frames."""

__all__: list[str] = []
