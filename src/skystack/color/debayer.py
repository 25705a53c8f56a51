"""Demosaicing: a Bayer mosaic ``(H, W)`` to an RGB image ``(H, W, 3)``, in float32.

Four methods, chosen with ``method=``:

``"bilinear"``
    Each missing colour is the mean of the nearest sites of that colour (2 or 4 of them), done as
    a normalised convolution in float32, so NaN (missing) sites are simply left out.
``"vng"``
    Variable Number of Gradients [1]_, the method of dcraw and LibRaw: eight directional
    gradients over a 5x5 window; the directions whose gradient is below a threshold are averaged
    as colour differences. Our own float32 implementation (a numba kernel, checked against a
    plain Python transcription of the paper's formulas): OpenCV's VNG only takes 8-bit data,
    which would destroy linear astronomical data.
``"ea"``
    OpenCV's edge-aware demosaicing [2]_ (green interpolated along the smaller gradient, then
    red and blue from colour differences). It only takes 8- or 16-bit data: the finite range of
    the frame is mapped onto 0..65535 and back: at most half a step (7.6e-6 of the range) from
    the quantisation, about as much again from OpenCV's integer arithmetic (measured: below
    1.5e-5 of the range on smooth data).
``"superpixel"``
    Every 2x2 cell becomes one RGB pixel (R, mean of the two G, B): half the resolution, no
    interpolation at all.

All methods take linear float data that may be negative or above 1 (calibrated frames) and may
hold NaN for missing pixels; no method clips, and none goes through 8 bits. The measured values
of a full-resolution method are returned unchanged at their own sites ("known pixels stay
exactly as measured"), except that a NaN site gets a value from its neighbours. The output is
finite wherever a colour has any finite site; a colour with no finite site at all stays NaN.

Star colours: ``"bilinear"`` and ``"superpixel"`` are linear with unit gain per channel, so the
aperture flux of a star, and its colour, are kept (0.5% on FWHM-3 stars). ``"vng"`` and ``"ea"``
choose interpolation directions from the data, which is not flux-conserving on undersampled
point sources: on FWHM-3 stars VNG gains ~3% of flux and shifts R/G and B/G by up to 5-25% for
strongly coloured stars (neutral, white-balanced stars stay within 1.5%), and OpenCV's EA loses
~7% of green (R/G and B/G ~7% high, whatever the colour). The errors fall with star size.
Prefer ``"bilinear"`` for photometry and colour calibration.

Image borders are handled by mirroring the mosaic about its edge pixels (``BORDER_REFLECT_101``,
``numpy.pad(mode="reflect")``), which keeps every mirrored pixel on a site of its own colour, so
borders, odd sizes and odd crops need no special cases.

References
----------
.. [1] E. Chang, S. Cheung and D. Y. Pan, "Color filter array recovery using a threshold-based
   variable number of gradients", Proc. SPIE 3650, Sensors, Cameras, and Applications for
   Digital Photography (1999).
.. [2] OpenCV, ``cv::demosaicing`` with ``COLOR_Bayer*2RGB_EA`` (edge-aware demosaicing),
   modules/imgproc/src/demosaicing.cpp.
.. [3] H. Knutsson and C.-F. Westin, "Normalized and differential convolution", Proc. IEEE CVPR
   (1993), 515-523 (normalised convolution for data with missing samples).
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import cv2
import numba
import numpy as np
import numpy.typing as npt
from scipy import ndimage

from skystack._typing import CfaPattern, Image
from skystack.color.bayer import as_pattern, channel_index, channel_map, pattern_offsets
from skystack.errors import ConfigError, GeometryError

__all__ = [
    "DebayerMethod",
    "DEBAYER_METHODS",
    "debayer",
    "fill_missing_cfa",
    "vng_reference",
]

DebayerMethod: TypeAlias = Literal["bilinear", "vng", "ea", "superpixel"]
DEBAYER_METHODS: tuple[DebayerMethod, ...] = ("bilinear", "vng", "ea", "superpixel")

# Bilinear kernels as weights of the same-colour sites in a 3x3 window. At any site exactly the
# sites of the wanted colour are non-zero in the masked plane, and their weights sum to 1 there,
# whatever the site's own colour: red/blue ([1/4 1/2 1/4; 1/2 1 1/2; 1/4 1/2 1/4], applied as
# the separable [1/2 1 1/2] x [1/2 1 1/2]) take 1 (own site), 2 x 1/2 (row or column) or
# 4 x 1/4 (diagonals); green takes 1 (own) or 4 x 1/4.
_K_RB_1D = np.array([0.5, 1.0, 0.5], dtype=np.float32)
_K_G = np.array([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]], dtype=np.float32)

_U16_MAX = 65535.0


def debayer(cfa: Image, *, pattern: CfaPattern, method: DebayerMethod = "bilinear") -> Image:
    """Demosaic a Bayer mosaic into an R, G, B image.

    Parameters
    ----------
    cfa : ndarray, (H, W)
        The mosaic, linear (float32 preferred; other real types are converted as they are).
        NaN or infinite values mark missing pixels.
    pattern : {"RGGB", "BGGR", "GRBG", "GBRG"}
        Colours of the 2x2 cell at ``cfa[0, 0]``, read row by row.
    method : {"bilinear", "vng", "ea", "superpixel"}
        The algorithm, see the module documentation.

    Returns
    -------
    ndarray float32
        ``(H, W, 3)`` R, G, B; for ``"superpixel"`` ``(H // 2, W // 2, 3)`` (a last odd row or
        column is dropped), where output pixel ``[i, j]`` is centred at full-resolution
        coordinates ``(x, y) = (2 j + 0.5, 2 i + 0.5)``.

    Raises
    ------
    GeometryError
        If ``cfa`` is not 2-D or smaller than 2x2.
    ConfigError
        For an unknown pattern or method.

    References
    ----------
    .. [1] E. Chang, S. Cheung and D. Y. Pan, Proc. SPIE 3650 (1999) ("vng").
    """
    pat = as_pattern(pattern)
    if method not in DEBAYER_METHODS:
        raise ConfigError(
            f"unknown debayer method {method!r}; expected one of {', '.join(DEBAYER_METHODS)}"
        )
    data = _as_cfa(cfa)
    if method == "bilinear":
        return _bilinear(data, pat)
    if method == "superpixel":
        return _superpixel(data, pat)
    if method == "vng":
        return _vng(data, pat)
    return _edge_aware(data, pat)


def _as_cfa(cfa: Image) -> Image:
    data = np.asarray(cfa)
    if data.ndim != 2:
        hint = " (it looks like colour data already)" if data.ndim == 3 else ""
        raise GeometryError(
            f"debayer needs a 2-D Bayer mosaic (H, W), got an array of shape {data.shape}{hint}"
        )
    if data.shape[0] < 2 or data.shape[1] < 2:
        raise GeometryError(
            f"debayer needs a mosaic of at least 2x2 pixels, got shape {data.shape}"
        )
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise TypeError(f"debayer needs real numbers, got dtype {data.dtype}")
    return np.ascontiguousarray(data, dtype=np.float32)


def _color_plane(data: Image, pattern: CfaPattern, color: int) -> Image:
    """``data`` at the sites of ``color``, zero elsewhere."""
    plane = np.zeros_like(data)
    lut = channel_index(pattern)
    for row in range(2):
        for col in range(2):
            if lut[row, col] == color:
                plane[row::2, col::2] = data[row::2, col::2]
    return plane


def _filter(image: Image, kernel: npt.NDArray[np.float32], border: int) -> Image:
    return cv2.filter2D(image, cv2.CV_32F, kernel, borderType=border)


def _interpolate(plane: Image, color: int) -> Image:
    """Bilinear kernel of ``color`` on a masked plane, mirrored borders (REFLECT_101)."""
    if color == 1:
        return _filter(plane, _K_G, cv2.BORDER_REFLECT_101)
    # The red/blue kernel is separable ([1/2, 1, 1/2] both ways): same sums, 5x faster.
    return cv2.sepFilter2D(plane, cv2.CV_32F, _K_RB_1D, _K_RB_1D, borderType=cv2.BORDER_REFLECT_101)


# -- bilinear ----------------------------------------------------------------------------------


def _bilinear(data: Image, pattern: CfaPattern) -> Image:
    # OpenCV's own demosaicing (cv2.demosaicing / COLOR_Bayer*2RGB) accepts only 8- and 16-bit
    # input, so bilinear interpolation is done here by hand in float32 with filter2D.
    if np.isfinite(data).all():
        return _bilinear_finite(data, pattern)
    return _bilinear_missing(data, pattern)


def _bilinear_finite(data: Image, pattern: CfaPattern) -> Image:
    # REFLECT_101 mirrors about the edge pixel (-1 -> 1), which keeps the colour parity, so the
    # kernels see a valid mosaic at the borders too.
    channels = [_interpolate(_color_plane(data, pattern, c), c) for c in range(3)]
    # The own-site weight is 1 and every other weight meets a zero, so measured values come out
    # bit for bit; no need to copy them back.
    return cv2.merge(channels)


def _bilinear_missing(data: Image, pattern: CfaPattern) -> Image:
    """Normalised convolution [3]_: finite same-colour sites only, weights renormalised."""
    valid = np.isfinite(data)
    clean = np.where(valid, data, np.float32(0.0))
    channels = []
    filled: Image | None = None
    fallback: Image | None = None
    for c in range(3):
        good = _color_plane(valid, pattern, c)
        num = _interpolate(np.where(good, clean, np.float32(0.0)), c)
        den = _interpolate(good.astype(np.float32), c)
        # den is a sum of 1/4, 1/2 and 1: exact, and exactly 0 where no finite site is near,
        # which includes every missing site of colour c itself (its own weight is the only one
        # on a site of its colour).
        empty = den <= 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            channel = num / den
        if empty.any():
            if filled is None:
                filled = fill_missing_cfa(data, pattern=pattern)
            own = empty & _color_plane(np.ones_like(valid), pattern, c)
            channel[own] = filled[own]
            rest = empty & ~own
            if rest.any():  # every site of colour c around is missing too
                if fallback is None:
                    fallback = _bilinear_finite(filled, pattern)
                channel[rest] = fallback[..., c][rest]
        channel[good] = data[good]
        channels.append(channel.astype(np.float32, copy=False))
    return cv2.merge(channels)


def _same_colour_offsets(green: bool) -> list[tuple[int, int]]:
    """Offsets of the sites of a site's own colour within its 5x5 window."""
    steps = range(-2, 3)
    if green:
        return [
            (dy, dx) for dy in steps for dx in steps if (dy + dx) % 2 == 0 and (dy, dx) != (0, 0)
        ]
    return [(dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2) if (dy, dx) != (0, 0)]


def fill_missing_cfa(cfa: Image, *, pattern: CfaPattern) -> Image:
    """Replace NaN and infinite sites of a mosaic by values from sites of the same colour.

    A missing site takes the mean of the finite same-colour sites in its 5x5 window (8 red or
    blue, 12 green sites); a site in a larger hole takes the value of the nearest finite
    same-colour site. A colour with no finite site at all stays NaN. The work is proportional to
    the number of missing sites (plus a distance transform around large holes).

    Parameters
    ----------
    cfa : ndarray, (H, W)
        The mosaic.
    pattern : {"RGGB", "BGGR", "GRBG", "GBRG"}

    Returns
    -------
    ndarray float32, (H, W)
        A new mosaic; finite sites are unchanged.
    """
    pat = as_pattern(pattern)
    data = np.asarray(cfa, dtype=np.float32)
    if data.ndim != 2:
        raise GeometryError(f"fill_missing_cfa needs a 2-D mosaic (H, W), got shape {data.shape}")
    valid = np.isfinite(data)
    out = data.copy()
    if valid.all():
        return out
    height, width = data.shape
    lut = channel_index(pat)
    ys, xs = np.nonzero(~valid)
    colours = lut[ys & 1, xs & 1]
    total = np.zeros(ys.size)
    count = np.zeros(ys.size)
    for green in (False, True):
        pick = np.flatnonzero((colours == 1) == green)
        for dy, dx in _same_colour_offsets(green):
            yy, xx = ys[pick] + dy, xs[pick] + dx
            inside = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
            values = data[yy[inside], xx[inside]].astype(np.float64)
            ok = np.isfinite(values)
            target = pick[inside][ok]
            total[target] += values[ok]
            count[target] += 1
    near = count > 0
    out[ys[near], xs[near]] = (total[near] / count[near]).astype(np.float32)
    far = ~near
    if far.any():
        for c in np.unique(colours[far]):
            holes = far & (colours == c)
            _fill_nearest(out, data, valid, pat, int(c), ys[holes], xs[holes])
    return out


def _fill_nearest(
    out: Image,
    data: Image,
    valid: npt.NDArray[np.bool_],
    pattern: CfaPattern,
    color: int,
    ys: npt.NDArray[np.intp],
    xs: npt.NDArray[np.intp],
) -> None:
    """Give the sites ``(ys, xs)`` of ``color`` the value of the nearest finite site of it."""
    good = _color_plane(valid, pattern, color)
    height, width = data.shape
    margin = 32
    while True:
        # Look in a box around the holes first; widen it until it holds a finite site.
        y0, y1 = max(int(ys.min()) - margin, 0), min(int(ys.max()) + margin + 1, height)
        x0, x1 = max(int(xs.min()) - margin, 0), min(int(xs.max()) + margin + 1, width)
        box = good[y0:y1, x0:x1]
        whole = (y0, x0, y1, x1) == (0, 0, height, width)
        if box.any() or whole:
            break
        margin *= 4
    if not box.any():
        out[ys, xs] = np.nan
        return
    rows, cols = ndimage.distance_transform_edt(~box, return_distances=False, return_indices=True)
    out[ys, xs] = data[y0 + rows[ys - y0, xs - x0], x0 + cols[ys - y0, xs - x0]]


# -- superpixel --------------------------------------------------------------------------------


def _superpixel(data: Image, pattern: CfaPattern) -> Image:
    height, width = data.shape[0] // 2, data.shape[1] // 2
    offsets = pattern_offsets(pattern)

    def plane(name: str) -> Image:
        row, col = offsets[name]  # type: ignore[index]
        return data[row : row + 2 * height : 2, col : col + 2 * width : 2]

    g1, g2 = plane("g1"), plane("g2")
    green = (g1 + g2) * np.float32(0.5)
    if not np.isfinite(green).all():
        # One green of the cell missing: use the other one.
        green = np.where(np.isfinite(g1), np.where(np.isfinite(g2), green, g1), g2)
    channels = [np.ascontiguousarray(plane("r")), green, np.ascontiguousarray(plane("b"))]
    channels = [_fill_plane(np.asarray(ch, dtype=np.float32)) for ch in channels]
    return cv2.merge(channels)


def _fill_plane(plane: Image) -> Image:
    """Fill non-finite pixels of a single-colour plane from their finite neighbours."""
    valid = np.isfinite(plane)
    if valid.all() or not valid.any():
        return plane
    out = plane.copy()
    clean = np.where(valid, plane, np.float32(0.0))
    kernel = np.ones((3, 3), dtype=np.float32)
    num = _filter(clean, kernel, cv2.BORDER_CONSTANT)
    den = _filter(valid.astype(np.float32), kernel, cv2.BORDER_CONSTANT)
    near = ~valid & (den > 0.5)
    out[near] = num[near] / den[near]
    far = ~valid & ~near
    if far.any():
        rows, cols = ndimage.distance_transform_edt(
            ~valid, return_distances=False, return_indices=True
        )
        out[far] = plane[rows[far], cols[far]]
    return out


# -- edge-aware (OpenCV, 16-bit) ---------------------------------------------------------------

# OpenCV 5 names Bayer codes after the 2x2 cell at [0, 0] (COLOR_BayerRGGB2RGB_EA for an RGGB
# mosaic); the older two-letter names (COLOR_BayerBG2RGB_EA for RGGB) describe the second row's
# second and third pixels and are easy to get backwards. Both spellings give the same codes.
_EA_NAMES: dict[str, tuple[str, str]] = {
    "RGGB": ("COLOR_BayerRGGB2RGB_EA", "COLOR_BayerBG2RGB_EA"),
    "BGGR": ("COLOR_BayerBGGR2RGB_EA", "COLOR_BayerRG2RGB_EA"),
    "GRBG": ("COLOR_BayerGRBG2RGB_EA", "COLOR_BayerGB2RGB_EA"),
    "GBRG": ("COLOR_BayerGBRG2RGB_EA", "COLOR_BayerGR2RGB_EA"),
}
_EA_PAD = 2  # OpenCV replicates its outermost row and column; mirrored margins avoid that.


def _ea_code(pattern: CfaPattern) -> int:
    new, old = _EA_NAMES[pattern]
    return int(getattr(cv2, new, None) or getattr(cv2, old))


def _quantize_u16(data: Image) -> tuple[npt.NDArray[np.uint16], float, float]:
    """Map the finite range of ``data`` onto 0..65535: returns ``(q, offset, step)``.

    ``data ~ offset + q * step``, with an error of at most ``step / 2`` (plus float32 rounding),
    that is 7.6e-6 of the range. Non-finite values map to 0.
    """
    finite = data[np.isfinite(data)]
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    step = (high - low) / _U16_MAX if high > low else 1.0
    scaled = (data - np.float32(low)) * np.float32(1.0 / step)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=_U16_MAX, neginf=0.0)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0.0, _U16_MAX, out=scaled)
    return scaled.astype(np.uint16), low, step


def _edge_aware(data: Image, pattern: CfaPattern) -> Image:
    valid = np.isfinite(data)
    all_valid = bool(valid.all())
    filled = data if all_valid else fill_missing_cfa(data, pattern=pattern)
    if not all_valid and not np.isfinite(filled).all():
        return _bilinear(data, pattern)  # a colour has no data at all
    q, offset, step = _quantize_u16(filled)
    padded = np.pad(q, _EA_PAD, mode="reflect")
    rgb16 = cv2.cvtColor(padded, _ea_code(pattern))[_EA_PAD:-_EA_PAD, _EA_PAD:-_EA_PAD]
    out = rgb16.astype(np.float32)
    out *= np.float32(step)
    out += np.float32(offset)
    _restore_known(out, data, pattern, valid if not all_valid else None)
    return out


def _restore_known(out: Image, data: Image, pattern: CfaPattern, valid: Image | None) -> None:
    """Put the measured values back at their own sites (in place on ``out``)."""
    lut = channel_index(pattern)
    for row in range(2):
        for col in range(2):
            c = lut[row, col]
            measured = data[row::2, col::2]
            if valid is None:
                out[row::2, col::2, c] = measured
            else:
                target = out[row::2, col::2, c]
                keep = valid[row::2, col::2]
                target[keep] = measured[keep]


# -- VNG ---------------------------------------------------------------------------------------

_VNG_PAD = 2  # the 5x5 window


def _rggb_padding(pattern: CfaPattern) -> tuple[int, int]:
    """Rows and columns to add at the top and left so that the padded mosaic starts with RGGB."""
    row, col = pattern_offsets(pattern)["r"]
    return _VNG_PAD + row, _VNG_PAD + col


def _pad_rggb(data: Image, pattern: CfaPattern) -> tuple[Image, int, int]:
    top, left = _rggb_padding(pattern)
    # numpy's "reflect" is OpenCV's REFLECT_101 (no repeated edge): it keeps the colour parity.
    padded = np.pad(data, ((top, _VNG_PAD), (left, _VNG_PAD)), mode="reflect")
    return np.ascontiguousarray(padded, dtype=np.float32), top, left


def _vng(data: Image, pattern: CfaPattern) -> Image:
    valid = np.isfinite(data)
    all_valid = bool(valid.all())
    filled = data if all_valid else fill_missing_cfa(data, pattern=pattern)
    if not all_valid and not np.isfinite(filled).all():
        return _bilinear(data, pattern)  # a colour has no data at all
    padded, top, left = _pad_rggb(filled, pattern)
    out = np.empty((*data.shape, 3), dtype=np.float32)
    _vng_kernel(padded, top, left, out)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _threshold(n, ne, e, se, s, sw, w, nw):  # pragma: no cover - compiled
    """VNG threshold ``min + max / 2`` (the paper's 1.5 min + 0.5 (max - min)); -1 if flat."""
    gmin = min(min(min(n, ne), min(e, se)), min(min(s, sw), min(w, nw)))
    gmax = max(max(max(n, ne), max(e, se)), max(max(s, sw), max(w, nw)))
    if gmax == 0.0:
        return -1.0
    return gmin + 0.5 * gmax


# fmt: off
@numba.njit(cache=True, nogil=True, inline="always")
def _vng_cross(
    p00, p01, p02, p03, p04, p10, p11, p12, p13, p14, p20, p21, p22, p23, p24,
    p30, p31, p32, p33, p34, p40, p41, p42, p43, p44,
):  # pragma: no cover - compiled
    """VNG at a red or blue site ``p22`` (window ``pRC``, R = row, C = column).

    Returns ``(green, other)``: the green and the other of red/blue at the centre.
    """
    # Gradients, in the paper's weights (terms shared by opposite directions computed once).
    av = abs(p12 - p32)
    bv = abs(p11 - p31) + abs(p13 - p33)
    ah = abs(p23 - p21)
    bh = abs(p13 - p11) + abs(p33 - p31)
    ane = abs(p13 - p31)
    cne = abs(p12 - p21) + abs(p23 - p32)
    anw = abs(p11 - p33)
    cnw = abs(p12 - p23) + abs(p21 - p32)
    gn = av + abs(p02 - p22) + 0.5 * (bv + abs(p01 - p21) + abs(p03 - p23))
    gs = av + abs(p42 - p22) + 0.5 * (bv + abs(p41 - p21) + abs(p43 - p23))
    ge = ah + abs(p24 - p22) + 0.5 * (bh + abs(p14 - p12) + abs(p34 - p32))
    gw = ah + abs(p20 - p22) + 0.5 * (bh + abs(p10 - p12) + abs(p30 - p32))
    gne = ane + abs(p04 - p22) + 0.5 * (cne + abs(p03 - p12) + abs(p14 - p23))
    gsw = ane + abs(p40 - p22) + 0.5 * (cne + abs(p41 - p32) + abs(p30 - p21))
    gnw = anw + abs(p00 - p22) + 0.5 * (cnw + abs(p01 - p12) + abs(p10 - p21))
    gse = anw + abs(p44 - p22) + 0.5 * (cnw + abs(p43 - p32) + abs(p34 - p23))
    t = _threshold(gn, gne, ge, gse, gs, gsw, gw, gnw)
    if t < 0.0:
        return 0.25 * (p12 + p32 + p21 + p23), 0.25 * (p11 + p13 + p31 + p33)
    # Per chosen direction, the colours at the neighbour: own colour O, green G, other X.
    so = 0.0
    sg = 0.0
    sx = 0.0
    n = 0
    if gn <= t:
        so += 0.5 * (p22 + p02)
        sg += p12
        sx += 0.5 * (p11 + p13)
        n += 1
    if gs <= t:
        so += 0.5 * (p22 + p42)
        sg += p32
        sx += 0.5 * (p31 + p33)
        n += 1
    if ge <= t:
        so += 0.5 * (p22 + p24)
        sg += p23
        sx += 0.5 * (p13 + p33)
        n += 1
    if gw <= t:
        so += 0.5 * (p22 + p20)
        sg += p21
        sx += 0.5 * (p11 + p31)
        n += 1
    if gne <= t:
        so += 0.5 * (p22 + p04)
        sg += 0.25 * (p03 + p23 + p12 + p14)
        sx += p13
        n += 1
    if gnw <= t:
        so += 0.5 * (p22 + p00)
        sg += 0.25 * (p01 + p21 + p10 + p12)
        sx += p11
        n += 1
    if gse <= t:
        so += 0.5 * (p22 + p44)
        sg += 0.25 * (p23 + p43 + p32 + p34)
        sx += p33
        n += 1
    if gsw <= t:
        so += 0.5 * (p22 + p40)
        sg += 0.25 * (p21 + p41 + p30 + p32)
        sx += p31
        n += 1
    return p22 + (sg - so) / n, p22 + (sx - so) / n
# fmt: on


# fmt: off
@numba.njit(cache=True, nogil=True, inline="always")
def _vng_green(
    p00, p01, p02, p03, p04, p10, p11, p12, p13, p14, p20, p21, p22, p23, p24,
    p30, p31, p32, p33, p34, p40, p41, p42, p43, p44,
):  # pragma: no cover - compiled
    """VNG at a green site ``p22``; ``a`` is the colour left and right, ``b`` above and below.

    Returns ``(a, b)`` at the centre.
    """
    av = abs(p12 - p32)
    bv = abs(p11 - p31) + abs(p13 - p33)
    ah = abs(p23 - p21)
    bh = abs(p13 - p11) + abs(p33 - p31)
    ane = abs(p13 - p31)
    anw = abs(p11 - p33)
    gn = av + abs(p02 - p22) + 0.5 * (bv + abs(p01 - p21) + abs(p03 - p23))
    gs = av + abs(p42 - p22) + 0.5 * (bv + abs(p41 - p21) + abs(p43 - p23))
    ge = ah + abs(p24 - p22) + 0.5 * (bh + abs(p14 - p12) + abs(p34 - p32))
    gw = ah + abs(p20 - p22) + 0.5 * (bh + abs(p10 - p12) + abs(p30 - p32))
    gne = ane + abs(p04 - p22) + abs(p03 - p21) + abs(p14 - p32)
    gsw = ane + abs(p40 - p22) + abs(p41 - p23) + abs(p30 - p12)
    gnw = anw + abs(p00 - p22) + abs(p01 - p23) + abs(p10 - p32)
    gse = anw + abs(p44 - p22) + abs(p43 - p21) + abs(p34 - p12)
    t = _threshold(gn, gne, ge, gse, gs, gsw, gw, gnw)
    if t < 0.0:
        return 0.5 * (p21 + p23), 0.5 * (p12 + p32)
    sg = 0.0
    sa = 0.0
    sb = 0.0
    n = 0
    if gn <= t:
        sg += 0.5 * (p22 + p02)
        sb += p12
        sa += 0.25 * (p01 + p03 + p21 + p23)
        n += 1
    if gs <= t:
        sg += 0.5 * (p22 + p42)
        sb += p32
        sa += 0.25 * (p21 + p23 + p41 + p43)
        n += 1
    if ge <= t:
        sg += 0.5 * (p22 + p24)
        sa += p23
        sb += 0.25 * (p12 + p14 + p32 + p34)
        n += 1
    if gw <= t:
        sg += 0.5 * (p22 + p20)
        sa += p21
        sb += 0.25 * (p10 + p12 + p30 + p32)
        n += 1
    # Diagonal neighbours are green: "b" lies left/right of them, "a" above/below.
    if gne <= t:
        sg += p13
        sb += 0.5 * (p12 + p14)
        sa += 0.5 * (p03 + p23)
        n += 1
    if gnw <= t:
        sg += p11
        sb += 0.5 * (p10 + p12)
        sa += 0.5 * (p01 + p21)
        n += 1
    if gse <= t:
        sg += p33
        sb += 0.5 * (p32 + p34)
        sa += 0.5 * (p23 + p43)
        n += 1
    if gsw <= t:
        sg += p31
        sb += 0.5 * (p30 + p32)
        sa += 0.5 * (p21 + p41)
        n += 1
    return p22 + (sa - sg) / n, p22 + (sb - sg) / n
# fmt: on


@numba.njit(cache=True, parallel=False, nogil=True)
def _vng_kernel(p, top, left, out):  # pragma: no cover - compiled
    """VNG [1]_ of the RGGB mosaic ``p``: ``out[y, x]`` is pixel ``p[y + top, x + left]``.

    ``p`` has at least 2 rows and columns of margin around the output region.
    """
    height, width = out.shape[0], out.shape[1]
    for y in range(height):
        py = y + top
        r0 = p[py - 2].astype(np.float64)
        r1 = p[py - 1].astype(np.float64)
        r2 = p[py].astype(np.float64)
        r3 = p[py + 1].astype(np.float64)
        r4 = p[py + 2].astype(np.float64)
        red_row = (py & 1) == 0
        for x in range(width):
            c = x + left
            u = c - 2
            v = c - 1
            w = c + 1
            z = c + 2
            centre = r2[c]
            if ((py + c) & 1) == 0:
                green, other = _vng_cross(
                    r0[u], r0[v], r0[c], r0[w], r0[z], r1[u], r1[v], r1[c], r1[w], r1[z],
                    r2[u], r2[v], r2[c], r2[w], r2[z], r3[u], r3[v], r3[c], r3[w], r3[z],
                    r4[u], r4[v], r4[c], r4[w], r4[z],
                )  # fmt: skip
                if red_row:
                    out[y, x, 0] = centre
                    out[y, x, 1] = green
                    out[y, x, 2] = other
                else:
                    out[y, x, 0] = other
                    out[y, x, 1] = green
                    out[y, x, 2] = centre
            else:
                a, b = _vng_green(
                    r0[u], r0[v], r0[c], r0[w], r0[z], r1[u], r1[v], r1[c], r1[w], r1[z],
                    r2[u], r2[v], r2[c], r2[w], r2[z], r3[u], r3[v], r3[c], r3[w], r3[z],
                    r4[u], r4[v], r4[c], r4[w], r4[z],
                )  # fmt: skip
                out[y, x, 1] = centre
                if red_row:
                    out[y, x, 0] = a
                    out[y, x, 2] = b
                else:
                    out[y, x, 0] = b
                    out[y, x, 2] = a


# The paper's formulas [1]_, transcribed literally for the reference implementation. Positions
# in the 5x5 window are numbered 1..25 row by row (13 is the centre); a term (w, a, b) adds
# w * |v[a] - v[b]|. "cross" holds the terms of a red or blue centre, "green" of a green one.
_VNG_TERMS_AXIAL = {
    "N": ((1, 8, 18), (1, 3, 13), (0.5, 7, 17), (0.5, 9, 19), (0.5, 2, 12), (0.5, 4, 14)),
    "E": ((1, 14, 12), (1, 15, 13), (0.5, 9, 7), (0.5, 19, 17), (0.5, 10, 8), (0.5, 20, 18)),
    "S": ((1, 18, 8), (1, 23, 13), (0.5, 19, 9), (0.5, 17, 7), (0.5, 24, 14), (0.5, 22, 12)),
    "W": ((1, 12, 14), (1, 11, 13), (0.5, 17, 19), (0.5, 7, 9), (0.5, 16, 18), (0.5, 6, 8)),
}
_VNG_TERMS = {
    "cross": {
        **_VNG_TERMS_AXIAL,
        "NE": ((1, 9, 17), (1, 5, 13), (0.5, 8, 12), (0.5, 14, 18), (0.5, 4, 8), (0.5, 10, 14)),
        "SE": ((1, 19, 7), (1, 25, 13), (0.5, 14, 8), (0.5, 18, 12), (0.5, 20, 14), (0.5, 24, 18)),
        "NW": ((1, 7, 19), (1, 1, 13), (0.5, 12, 18), (0.5, 8, 14), (0.5, 6, 12), (0.5, 2, 8)),
        "SW": ((1, 17, 9), (1, 21, 13), (0.5, 18, 14), (0.5, 12, 8), (0.5, 22, 18), (0.5, 16, 12)),
    },
    "green": {
        **_VNG_TERMS_AXIAL,
        "NE": ((1, 9, 17), (1, 5, 13), (1, 4, 12), (1, 10, 18)),
        "SE": ((1, 19, 7), (1, 25, 13), (1, 24, 12), (1, 20, 8)),
        "NW": ((1, 7, 19), (1, 1, 13), (1, 2, 14), (1, 6, 18)),
        "SW": ((1, 17, 9), (1, 21, 13), (1, 22, 14), (1, 16, 8)),
    },
}
_VNG_STEPS = {
    "N": (-1, 0), "NE": (-1, 1), "E": (0, 1), "SE": (1, 1),
    "S": (1, 0), "SW": (1, -1), "W": (0, -1), "NW": (-1, -1),
}  # fmt: skip


def vng_reference(cfa: Image, *, pattern: CfaPattern) -> Image:
    """Plain Python VNG, the paper's formulas written out; slow, for checking the kernel.

    Same contract as ``debayer(cfa, pattern=pattern, method="vng")`` for finite data. Each
    direction's colour estimate is the bilinear value (:func:`debayer` ``"bilinear"``) at the
    neighbouring pixel, except the centre's own colour, which is the mean of the centre and the
    same-colour pixel two steps away when the neighbour is of another colour [1]_.
    """
    pat = as_pattern(pattern)
    data = _as_cfa(cfa)
    padded, top, left = _pad_rggb(data, pat)
    colors = channel_map(padded.shape, "RGGB")
    bil = _bilinear(padded, "RGGB").astype(np.float64)
    values = padded.astype(np.float64)
    out = np.empty((*data.shape, 3), dtype=np.float32)
    for y in range(data.shape[0]):
        for x in range(data.shape[1]):
            py, px = y + top, x + left
            window = values[py - 2 : py + 3, px - 2 : px + 3].reshape(-1)
            own = int(colors[py, px])
            terms = _VNG_TERMS["green" if own == 1 else "cross"]
            grads = {
                name: sum(w * abs(window[a - 1] - window[b - 1]) for w, a, b in items)
                for name, items in terms.items()
            }
            low, high = min(grads.values()), max(grads.values())
            if high == 0:
                out[y, x] = bil[py, px]
                continue
            threshold = low + high / 2
            chosen = [name for name, g in grads.items() if g <= threshold]
            sums = np.zeros(3)
            for name in chosen:
                dy, dx = _VNG_STEPS[name]
                estimate = bil[py + dy, px + dx].copy()
                if colors[py + dy, px + dx] != own:
                    estimate[own] = (values[py, px] + values[py + 2 * dy, px + 2 * dx]) / 2
                sums += estimate
            result = values[py, px] + (sums - sums[own]) / len(chosen)
            result[own] = values[py, px]
            out[y, x] = result
    return out
