"""Lucky imaging of planets, the Moon and the Sun: region of interest, frame quality, global and
multi-point alignment, and stacking of the sharpest moments of each part of the image.

Every function works on arrays; :mod:`skystack.pipeline.planetary` streams the frames of a SER,
video or folder through them for ``skystack planetary``.
"""
