"""Post-processing of a stacked image: background, colour, stretch, stars, sharpening, noise.

Every step is a pure function on numpy arrays (linear float32 in, float32 out) so it can be used on
its own; :mod:`skystack.pipeline.enhance` chains them for ``skystack enhance``.
"""
