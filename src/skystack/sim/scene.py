"""Extended objects of the simulated sky: a Sérsic galaxy and an emission nebula.

Extended objects are rendered once per session as small RGB cutouts in the reference frame's pixel
grid (electrons per exposure, quantum efficiency 1), already convolved with the sharpest PSF of the
session. Each frame warps a cutout into its own pixel grid after a little extra Gaussian blur that
brings it to that frame's seeing.

Galaxy: a bulge (Sérsic index 4) plus an exponential disk (index 1) with two logarithmic spiral
arms, using ``b_n`` from Ciotti & Bertin [1]_ so that ``r_e`` encloses half the light [2]_.
Nebula: log-normal density from fractal noise (sums of upsampled white noise, octave by octave),
filaments from ridged noise, Hα red and [O III] teal emission, under a soft irregular envelope.

References
----------
.. [1] L. Ciotti, G. Bertin, "Analytical properties of the R^(1/m) law", A&A 352, 447 (1999).
.. [2] J. L. Sérsic, "Influence of the atmospheric and instrumental dispersion on the brightness
   distribution in a galaxy", Boletín de la Asociación Argentina de Astronomía 6, 41 (1963).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from skystack._typing import Image
from skystack.sim.psf import moffat_kernel
from skystack.sim.stars import planck_rgb

__all__ = [
    "Cutout",
    "fractal_noise",
    "sersic_b",
    "galaxy_cutout",
    "nebula_cutout",
    "convolve_psf",
    "gaussian_sigma_between",
    "warp_cutout",
    "GAUSS_FWHM",
]

GAUSS_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""FWHM of a unit-sigma Gaussian, 2.3548."""

_HALPHA_RGB = np.array([1.0, 0.13, 0.12]) * 3.0 / 1.25
_OIII_RGB = np.array([0.06, 0.95, 0.85]) * 3.0 / 1.86


@dataclass(frozen=True, eq=False)
class Cutout:
    """An RGB image patch placed in the reference frame.

    Attributes
    ----------
    rgb : ndarray, (h, w, 3) float32
        Electrons per exposure per pixel for each colour (quantum efficiency 1).
    x0, y0 : int
        Reference-frame pixel of ``rgb[0, 0]``.
    fwhm : float
        FWHM (px) of the Moffat PSF already applied.
    name : str
        ``"galaxy"`` or ``"nebula"``.
    """

    rgb: Image
    x0: int
    y0: int
    fwhm: float
    name: str

    @property
    def luminance(self) -> Image:
        """The mono signal, the mean of the three colours."""
        return self.rgb.mean(axis=2, dtype=np.float32)


def fractal_noise(
    shape: tuple[int, int],
    *,
    scale_px: float,
    rng: np.random.Generator,
    octaves: int = 5,
    persistence: float = 0.55,
) -> Image:
    """Return smooth fractal noise with zero mean and unit standard deviation.

    Octave ``k`` is white noise on a grid of cell ``scale_px / 2**k`` pixels, upsampled with
    bicubic interpolation and weighted by ``persistence**k``.
    """
    height, width = shape
    total = np.zeros(shape, dtype=np.float32)
    for octave in range(octaves):
        cell = max(scale_px / 2.0**octave, 2.0)
        gh = int(math.ceil(height / cell)) + 4
        gw = int(math.ceil(width / cell)) + 4
        grid = rng.standard_normal((gh, gw), dtype=np.float32)
        up = cv2.resize(
            grid, (int(round(gw * cell)), int(round(gh * cell))), interpolation=cv2.INTER_CUBIC
        )
        off = int(1.5 * cell)
        total += np.float32(persistence**octave) * up[off : off + height, off : off + width]
    total -= total.mean(dtype=np.float64)
    std = float(total.std(dtype=np.float64))
    if std > 0:
        total /= np.float32(std)
    return total


def sersic_b(n: float) -> float:
    """``b_n`` of the Sérsic profile ``exp(-b_n ((r / r_e)**(1/n) - 1))`` (Ciotti & Bertin 1999)."""
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n)


def convolve_psf(image: Image, *, fwhm: float, beta: float) -> Image:
    """Convolve an image (2-D or ``(h, w, C)``) with a normalised Moffat kernel, zero outside."""
    kernel = moffat_kernel(fwhm, beta=beta)
    return cv2.filter2D(
        np.ascontiguousarray(image, dtype=np.float32), -1, kernel, borderType=cv2.BORDER_CONSTANT
    )


def gaussian_sigma_between(fwhm_from: float, fwhm_to: float) -> float:
    """Sigma (px) of the Gaussian that broadens a PSF of ``fwhm_from`` to about ``fwhm_to``."""
    return math.sqrt(max(fwhm_to**2 - fwhm_from**2, 0.0)) / GAUSS_FWHM


def _supersampled_grid(
    size_x: int, size_y: int, x0: int, y0: int, oversample: int
) -> tuple[np.ndarray, np.ndarray]:
    sub = (np.arange(size_x * oversample) + 0.5) / oversample - 0.5 + x0
    suby = (np.arange(size_y * oversample) + 0.5) / oversample - 0.5 + y0
    return np.meshgrid(sub, suby)


def _bin(image: np.ndarray, oversample: int) -> np.ndarray:
    h = image.shape[0] // oversample
    w = image.shape[1] // oversample
    return image.reshape(h, oversample, w, oversample, *image.shape[2:]).mean(axis=(1, 3))


def galaxy_cutout(
    center: tuple[float, float],
    *,
    r_eff: float,
    axis_ratio: float,
    pa_deg: float,
    disk_center_e: float,
    fwhm: float,
    beta: float,
    bulge_fraction: float = 0.3,
    arm_amplitude: float = 0.45,
    pitch_deg: float = 18.0,
    oversample: int = 3,
) -> Cutout:
    """Render a spiral galaxy: Sérsic-4 bulge plus exponential disk with two spiral arms.

    Parameters
    ----------
    center : (x, y)
        Centre in reference-frame pixels.
    r_eff : float
        Half-light radius of the disk in pixels (the bulge's is ``0.2 r_eff``).
    axis_ratio : float
        Minor to major axis ratio of the disk (inclination), 0 < q <= 1.
    pa_deg : float
        Position angle of the major axis, degrees from +x towards +y.
    disk_center_e : float
        Central mono surface brightness of the disk (without arms, bulge and PSF), electrons per
        pixel per exposure; the bulge adds a brighter core.
    fwhm, beta : float
        The Moffat PSF applied to the cutout.
    bulge_fraction : float
        Bulge share of the total light.
    arm_amplitude : float
        Relative modulation of the disk by the arms.
    pitch_deg : float
        Pitch angle of the logarithmic spirals.
    oversample : int
        Sub-pixel samples per axis.
    """
    cx, cy = center
    half = int(math.ceil(6.0 * r_eff + 4.0 * fwhm))
    x0 = int(round(cx)) - half
    y0 = int(round(cy)) - half
    size = 2 * half + 1
    pa = math.radians(pa_deg)
    cos_pa, sin_pa = np.float32(math.cos(pa)), np.float32(math.sin(pa))
    q_bulge = min(1.0, axis_ratio + 0.3)
    re_b = 0.2 * r_eff
    b1 = sersic_b(1.0)
    b4 = sersic_b(4.0)
    # Total light of each part (analytic integrals of the unmodulated profiles).
    disk_total = 2.0 * math.pi * r_eff**2 * axis_ratio * math.exp(b1) / b1**2
    bulge_total = 2.0 * math.pi * 4.0 * re_b**2 * q_bulge * math.exp(b4) * math.gamma(8.0) / b4**8
    disk_rgb = planck_rgb(6800.0).astype(np.float32)
    bulge_rgb = planck_rgb(4300.0).astype(np.float32)
    tan_pitch = math.tan(math.radians(pitch_deg))

    def profile(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
        dx = gx - np.float32(cx)
        dy = gy - np.float32(cy)
        u = dx * cos_pa + dy * sin_pa
        v = (dy * cos_pa - dx * sin_pa) / np.float32(axis_ratio)
        r = np.hypot(u, v)
        theta = np.arctan2(v, u)
        disk = np.exp(np.float32(-b1) * (r / np.float32(r_eff) - np.float32(1.0)))
        phase = 2.0 * theta - 2.0 * np.log(np.maximum(r, 1e-3) / np.float32(r_eff)) / tan_pitch
        fade = 1.0 - np.exp(-((r / np.float32(0.5 * r_eff)) ** 2))
        disk *= 1.0 + np.float32(arm_amplitude) * np.cos(phase) * fade
        disk *= np.float32((1.0 - bulge_fraction) / disk_total)
        rb = np.hypot(u, v * np.float32(axis_ratio / q_bulge))
        bulge = np.exp(np.float32(-b4) * ((rb / np.float32(re_b)) ** 0.25 - np.float32(1.0)))
        bulge *= np.float32(bulge_fraction / bulge_total)
        return (disk[..., None] * disk_rgb + bulge[..., None] * bulge_rgb).astype(np.float32)

    # Sample pixel centres, then integrate the cuspy core over the pixel area by supersampling.
    axis = np.arange(size, dtype=np.float32)
    rgb = profile(axis[None, :] + np.float32(x0), axis[:, None] + np.float32(y0))
    hb = min(half, int(math.ceil(4.0 * re_b)) + 3)
    c0 = half - hb
    gx, gy = _supersampled_grid(2 * hb + 1, 2 * hb + 1, x0 + c0, y0 + c0, oversample)
    core = _bin(profile(gx.astype(np.float32), gy.astype(np.float32)), oversample)
    rgb[c0 : c0 + 2 * hb + 1, c0 : c0 + 2 * hb + 1] = core
    rgb = convolve_psf(rgb, fwhm=fwhm, beta=beta)
    disk_center = (1.0 - bulge_fraction) * math.exp(b1) / disk_total
    rgb *= np.float32(disk_center_e / disk_center)
    return Cutout(rgb=rgb, x0=x0, y0=y0, fwhm=fwhm, name="galaxy")


def nebula_cutout(
    center: tuple[float, float],
    *,
    radius: tuple[float, float],
    peak_e: float,
    fwhm: float,
    beta: float,
    rng: np.random.Generator,
) -> Cutout:
    """Render an emission nebula: Hα filaments and an [O III] core under a soft envelope.

    Parameters
    ----------
    center : (x, y)
        Centre in reference-frame pixels.
    radius : (rx, ry)
        Envelope semi-axes in pixels.
    peak_e : float
        Peak mono surface brightness, electrons per pixel per exposure.
    fwhm, beta : float
        The Moffat PSF applied to the cutout.
    rng : numpy.random.Generator
        Source of the noise fields.
    """
    rx, ry = radius
    hx = int(math.ceil(1.35 * rx + 4.0 * fwhm))
    hy = int(math.ceil(1.35 * ry + 4.0 * fwhm))
    x0 = int(round(center[0])) - hx
    y0 = int(round(center[1])) - hy
    shape = (2 * hy + 1, 2 * hx + 1)
    scale = 0.5 * min(rx, ry)
    warp_x = fractal_noise(shape, scale_px=scale, rng=rng, octaves=3)
    warp_y = fractal_noise(shape, scale_px=scale, rng=rng, octaves=3)
    density = fractal_noise(shape, scale_px=scale, rng=rng, octaves=6, persistence=0.6)
    ridge = fractal_noise(shape, scale_px=0.7 * scale, rng=rng, octaves=5, persistence=0.5)
    core = fractal_noise(shape, scale_px=0.6 * scale, rng=rng, octaves=4)
    yy = np.arange(shape[0], dtype=np.float32)[:, None]
    xx = np.arange(shape[1], dtype=np.float32)[None, :]
    u = (xx + np.float32(x0 - center[0])) / np.float32(rx) + 0.25 * warp_x
    v = (yy + np.float32(y0 - center[1])) / np.float32(ry) + 0.25 * warp_y
    rho2 = u * u + v * v
    envelope = np.exp(-(rho2**1.5))
    # Taper to exactly zero at the cutout edge.
    ex = np.minimum(xx, shape[1] - 1 - xx) / (2.0 * fwhm + 1.0)
    ey = np.minimum(yy, shape[0] - 1 - yy) / (2.0 * fwhm + 1.0)
    envelope *= np.clip(np.minimum(ex, ey) - 1.0, 0.0, 1.0)
    filaments = (1.0 - np.abs(np.tanh(ridge))) ** 6
    halpha = envelope * np.exp(0.9 * density) * (0.35 + 1.6 * filaments)
    oiii = np.exp(-2.5 * rho2) * np.exp(0.6 * core) * 0.8
    rgb = halpha[..., None] * _HALPHA_RGB + oiii[..., None] * _OIII_RGB
    rgb = convolve_psf(rgb.astype(np.float32), fwhm=fwhm, beta=beta)
    np.maximum(rgb, 0.0, out=rgb)
    peak = float(rgb.mean(axis=2).max())
    rgb *= np.float32(peak_e / peak)
    return Cutout(rgb=rgb, x0=x0, y0=y0, fwhm=fwhm, name="nebula")


def warp_cutout(
    image: Image,
    *,
    x0: int,
    y0: int,
    transform: npt.ArrayLike,
    frame_shape: tuple[int, int],
) -> tuple[Image, int, int] | None:
    """Resample a reference-frame cutout into a frame's pixel grid (bilinear).

    Parameters
    ----------
    image : ndarray, (h, w) or (h, w, C)
        The cutout; pixel ``[0, 0]`` is reference pixel ``(x0, y0)``.
    x0, y0 : int
        Placement of the cutout in the reference frame.
    transform : (3, 3) array_like
        Maps the frame's pixel coordinates ``(x, y, 1)`` to the reference frame's.
    frame_shape : (H, W)
        The frame's size.

    Returns
    -------
    (patch, bx, by) or None
        The resampled patch and the frame pixel of its ``[0, 0]``; None when the cutout misses
        the frame.
    """
    t = np.asarray(transform, dtype=np.float64)
    inv = np.linalg.inv(t)
    h, w = image.shape[:2]
    corners = np.array(
        [
            [x0 - 0.5, y0 - 0.5, 1],
            [x0 + w - 0.5, y0 - 0.5, 1],
            [x0 - 0.5, y0 + h - 0.5, 1],
            [x0 + w - 0.5, y0 + h - 0.5, 1],
        ]
    )
    mapped = corners @ inv.T
    height, width = frame_shape
    bx0 = max(0, int(math.floor(mapped[:, 0].min())))
    by0 = max(0, int(math.floor(mapped[:, 1].min())))
    bx1 = min(width - 1, int(math.ceil(mapped[:, 0].max())))
    by1 = min(height - 1, int(math.ceil(mapped[:, 1].max())))
    if bx1 < bx0 or by1 < by0:
        return None
    shift_in = np.array([[1.0, 0.0, bx0], [0.0, 1.0, by0], [0.0, 0.0, 1.0]])
    shift_out = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    m = shift_out @ t @ shift_in
    patch = cv2.warpAffine(
        np.ascontiguousarray(image, dtype=np.float32),
        m[:2],
        (bx1 - bx0 + 1, by1 - by0 + 1),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return patch, bx0, by0
