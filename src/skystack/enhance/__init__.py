"""Post-processing of a stacked image: background, colour, stretch, stars, sharpening, noise.

Every step is a pure function on numpy arrays (float32 in, float32 out) so it can be used on
its own; :mod:`skystack.pipeline.enhance` chains them for ``skystack enhance`` (and
:func:`skystack.enhance_image`).

* :mod:`~skystack.enhance.background` -- gradient and vignetting models (poly, rbf, tiles).
* :mod:`~skystack.enhance.color` -- white balance from the stars, saturation, star colour.
* :mod:`~skystack.enhance.stretch` -- linear, asinh, GHS, auto (STF), curves.
* :mod:`~skystack.enhance.stars` -- star mask, starless image, boost, reduction, blending.
* :mod:`~skystack.enhance.sharpen` -- starlet wavelets, unsharp mask, LoG, deconvolution.
* :mod:`~skystack.enhance.denoise` -- starlet noise reduction.
* :mod:`~skystack.enhance.noise` -- the local noise map of unevenly deep stacks.
"""
