"""Feature-based and intensity-based registration for frames without enough stars.

Two tools for scenes such as the Moon, the Sun, planets and landscapes, where a star list
cannot be built:

* :func:`orb_match` detects ORB keypoints (Rublee et al. 2011, "ORB: an efficient alternative
  to SIFT or SURF", ICCV), matches their binary descriptors by Hamming distance with Lowe's
  ratio test (Lowe 2004, IJCV 60, 91), and fits a transform to the matches with RANSAC
  (Fischler & Bolles 1981, CACM 24, 381). Keypoint positions are good to about 0.3 px;
* :func:`ecc_refine` polishes a transform to a few hundredths of a pixel by maximising the
  enhanced correlation coefficient of the two images (Evangelidis & Psarakis 2008, "Parametric
  image alignment using enhanced correlation coefficient maximization", IEEE TPAMI 30, 1858),
  OpenCV's ``findTransformECC``.

Both take ``(H, W)`` or ``(H, W, 3)`` float images (colour is reduced to the channel mean) in
which NaN marks missing data, and return transforms that map the frame's pixel coordinates
``(x, y)`` to the reference frame's.
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import numpy.typing as npt

from skystack.errors import GeometryError, RegistrationError
from skystack.register.transform import (
    TRANSFORM_MODELS,
    Match,
    Transform,
    TransformModel,
    fit_transform,
    residuals,
)

__all__ = ["orb_match", "ecc_refine", "MIN_ORB_INLIERS"]

_log = logging.getLogger(__name__)

MIN_ORB_INLIERS = 12
"""Fewest RANSAC-consistent ORB matches accepted as a registration."""

_RATIO = 0.75  # Lowe's ratio test
_RANSAC_THRESHOLD_PX = 3.0
_RANSAC_ITERATIONS = 5000
_RANSAC_CONFIDENCE = 0.999
_STRETCH_PERCENTILES = (0.5, 99.5)
_AFFINE_SCALE_TOLERANCE = 0.002  # ECC runs affine for similarities whose scale differs more
_ECC_GAUSS_SIZE = 5  # px, OpenCV's gaussFiltSize
_ECC_MAX_CHANGE_PX = 3.0  # an ECC refinement that moves the centre region more failed


def _mono(image: npt.ArrayLike, name: str) -> npt.NDArray[np.float32]:
    """A float32 ``(H, W)`` copy: the channel mean of colour, NaN and Inf kept as NaN."""
    data = np.asarray(image)
    if data.ndim == 3 and data.shape[2] in (3, 4):
        data = data[..., :3].astype(np.float32).mean(axis=2)
    if data.ndim != 2:
        raise GeometryError(f"{name} must be (H, W) or (H, W, 3), got shape {data.shape}")
    out = data.astype(np.float32, copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def _check_pair(
    image: npt.ArrayLike, reference: npt.ArrayLike
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    img, ref = _mono(image, "image"), _mono(reference, "reference")
    if img.shape != ref.shape:
        raise GeometryError(
            f"image and reference differ in shape: {img.shape} vs {ref.shape}; "
            "crop or resample the frame first"
        )
    for name, data in (("image", img), ("reference", ref)):
        finite = data[np.isfinite(data)]
        if finite.size == 0:
            raise RegistrationError(f"the {name} has no finite pixels")
        if float(finite.max() - finite.min()) <= 0.0:
            raise RegistrationError(f"the {name} is blank (constant {float(finite[0]):g})")
    return img, ref


def _filled(data: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """NaN replaced by the median of the finite pixels (a new array)."""
    bad = np.isnan(data)
    if not bad.any():
        return data.copy()
    out = data.copy()
    out[bad] = np.median(data[~bad])
    return out


def _normalised(data: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Zero median and unit robust spread (MAD), NaN filled with 0: ECC's input scale."""
    finite = data[np.isfinite(data)]
    median = float(np.median(finite))
    spread = 1.4826 * float(np.median(np.abs(finite - median)))
    if spread <= 0.0:
        spread = float(finite.std()) or 1.0
    out = (data - median) / spread
    out[np.isnan(out)] = 0.0
    return out.astype(np.float32)


def _to_uint8(data: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """A linear stretch between robust percentiles to 0..255 for ORB; NaN becomes 0."""
    finite = data[np.isfinite(data)]
    lo, hi = np.percentile(finite, _STRETCH_PERCENTILES)
    if hi <= lo:
        lo, hi = float(finite.min()), float(finite.max())
    scaled = (data - lo) * (255.0 / (hi - lo))
    scaled[np.isnan(scaled)] = 0.0
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def _finite_mask(data: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """OpenCV mask: 255 where the pixel is finite, 0 elsewhere."""
    return np.where(np.isfinite(data), 255, 0).astype(np.uint8)


def _central_grid(
    shape: tuple[int, int], fraction: float = 0.6, n: int = 5
) -> npt.NDArray[np.float64]:
    """An ``n`` x ``n`` grid of points ``(x, y)`` over the central ``fraction`` of a frame."""
    h, w = shape
    xs = (w - 1) / 2 + np.linspace(-0.5, 0.5, n) * fraction * (w - 1)
    ys = (h - 1) / 2 + np.linspace(-0.5, 0.5, n) * fraction * (h - 1)
    gx, gy = np.meshgrid(xs, ys)
    return np.column_stack([gx.ravel(), gy.ravel()])


def _max_difference_px(a: Transform, b: Transform, shape: tuple[int, int]) -> float:
    """Largest distance, px, between where ``a`` and ``b`` put points of the central 60 %."""
    grid = _central_grid(shape)
    return float(np.max(np.hypot(*(a.apply(grid) - b.apply(grid)).T)))


def _project_to_similarity(transform: Transform, shape: tuple[int, int]) -> Transform:
    """The similarity closest (least squares over the frame) to an affine ``transform``."""
    grid = _central_grid(shape, fraction=1.0, n=9)
    return fit_transform(
        grid, transform.apply(grid), model="similarity", mirrored=transform.is_mirrored
    )


def ecc_refine(
    image: npt.ArrayLike,
    reference: npt.ArrayLike,
    initial: Transform,
    *,
    model: TransformModel = "similarity",
    iterations: int = 100,
    eps: float = 1e-6,
) -> Transform:
    """Refine a transform by maximising the enhanced correlation coefficient (ECC).

    Parameters
    ----------
    image, reference : array_like (H, W) or (H, W, 3)
        The frame and the reference frame, same shape; colour is reduced to the channel
        mean; NaN marks missing pixels, which are left out of the fit.
    initial : Transform
        A starting transform mapping ``image`` pixel coordinates to ``reference`` ones,
        good to a pixel or two (from :func:`orb_match`, phase correlation or star matching).
    model : {"translation", "similarity", "affine", "homography"}
        The motion model. OpenCV's ``MOTION_TRANSLATION`` for ``translation``,
        ``MOTION_EUCLIDEAN`` (rotation and shift) for ``similarity``, ``MOTION_AFFINE`` and
        ``MOTION_HOMOGRAPHY`` for the others. ECC has no similarity model: when the initial
        transform's scale differs from 1 by more than 0.2 % (a change of focal length), the
        similarity is refined as an affine transform and projected back onto the nearest
        similarity by least squares; otherwise the scale is fixed at 1. A mirrored initial
        similarity is refined as affine as well.
    iterations : int
        Most ECC iterations.
    eps : float
        Stop when the correlation coefficient improves by less than this.

    Returns
    -------
    Transform
        Maps ``image`` pixel coordinates to ``reference`` ones.

    Raises
    ------
    RegistrationError
        ECC did not converge (OpenCV raised), or the images are blank.
    GeometryError
        The images differ in shape.

    Notes
    -----
    ``findTransformECC(template, input)`` finds ``W`` with ``input(W x) ≈ template(x)``, so
    with the frame as the template and the reference as the input, ``W`` maps frame
    coordinates to reference coordinates: it is the transform itself, no inversion needed.
    Both images are scaled to zero median and unit robust spread and smoothed with OpenCV's
    5 px Gaussian (``gaussFiltSize``); ECC itself is invariant to gain and offset. The
    reference's missing pixels are masked out of the fit; the frame's are masked as well
    where OpenCV has ``findTransformECCWithMask`` (4.12 and later) and filled with the median
    before that.
    """
    if model not in TRANSFORM_MODELS:
        raise ValueError(f"unknown transform model {model!r}; expected one of {TRANSFORM_MODELS}")
    img, ref = _check_pair(image, reference)
    motion, matrix, project = _ecc_setup(initial, model)
    template, source = _normalised(img), _normalised(ref)
    template_mask, source_mask = _finite_mask(img), _finite_mask(ref)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, int(iterations), float(eps))
    try:
        if hasattr(cv2, "findTransformECCWithMask"):
            _, warp = cv2.findTransformECCWithMask(
                template,
                source,
                template_mask,
                source_mask,
                matrix,
                motion,
                criteria,
                _ECC_GAUSS_SIZE,
            )
        else:  # pragma: no cover - OpenCV < 4.12
            _, warp = cv2.findTransformECC(
                template, source, matrix, motion, criteria, source_mask, _ECC_GAUSS_SIZE
            )
    except cv2.error as err:
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else "no reason given"
        raise RegistrationError(f"ECC refinement did not converge ({reason})") from err
    full = np.eye(3)
    if warp.shape == (3, 3):
        full[:] = warp
    else:
        full[:2] = warp
    if not np.all(np.isfinite(full)):
        raise RegistrationError("ECC refinement diverged (non-finite warp)")
    result = Transform(full)
    if project:
        result = _project_to_similarity(result, img.shape)
    return result


def _ecc_setup(
    initial: Transform, model: TransformModel
) -> tuple[int, npt.NDArray[np.float32], bool]:
    """OpenCV motion type, starting warp matrix, and whether to project to a similarity."""
    project = False
    if model == "translation":
        motion = cv2.MOTION_TRANSLATION
    elif model == "similarity":
        if abs(initial.scale - 1.0) > _AFFINE_SCALE_TOLERANCE or initial.is_mirrored:
            motion, project = cv2.MOTION_AFFINE, True
        else:
            motion = cv2.MOTION_EUCLIDEAN
    elif model == "affine":
        motion = cv2.MOTION_AFFINE
    else:
        motion = cv2.MOTION_HOMOGRAPHY
    m = initial.matrix
    if motion == cv2.MOTION_HOMOGRAPHY:
        return motion, m.astype(np.float32), project
    if not initial.is_affine:
        raise ValueError(f"a {model} refinement needs an affine initial transform, got {initial!r}")
    start = m[:2].copy()
    if motion == cv2.MOTION_TRANSLATION:
        start[:, :2] = np.eye(2)
    elif motion == cv2.MOTION_EUCLIDEAN:
        # OpenCV's Euclidean update assumes a pure rotation in the linear part.
        angle = math.radians(initial.rotation_deg)
        start[:, :2] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    return motion, start.astype(np.float32), project


def _keypoints(
    data: npt.NDArray[np.float32], n_features: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8] | None]:
    orb = cv2.ORB_create(nfeatures=int(n_features))
    mask = cv2.erode(_finite_mask(data), np.ones((5, 5), np.uint8))
    keypoints, descriptors = orb.detectAndCompute(_to_uint8(data), mask)
    points = np.array([kp.pt for kp in keypoints], dtype=np.float32).reshape(-1, 2)
    return points, descriptors


def _ratio_matches(
    desc_img: npt.NDArray[np.uint8], desc_ref: npt.NDArray[np.uint8]
) -> list[tuple[int, int]]:
    """Pairs ``(image index, reference index)`` passing Lowe's ratio test."""
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = []
    for candidates in matcher.knnMatch(desc_img, desc_ref, k=2):
        if len(candidates) == 2 and candidates[0].distance < _RATIO * candidates[1].distance:
            pairs.append((candidates[0].queryIdx, candidates[0].trainIdx))
    return pairs


def _ransac(
    src: npt.NDArray[np.float32], dst: npt.NDArray[np.float32], model: TransformModel
) -> tuple[Transform | None, npt.NDArray[np.bool_]]:
    """RANSAC fit of ``model`` mapping ``src`` onto ``dst``; the transform and inlier flags."""
    none = np.zeros(len(src), dtype=bool)
    options = {
        "method": cv2.RANSAC,
        "ransacReprojThreshold": _RANSAC_THRESHOLD_PX,
        "maxIters": _RANSAC_ITERATIONS,
        "confidence": _RANSAC_CONFIDENCE,
    }
    if model == "homography":
        if len(src) < 4:
            return None, none
        matrix, inliers = cv2.findHomography(src, dst, **options)
    else:
        estimate = cv2.estimateAffine2D if model == "affine" else cv2.estimateAffinePartial2D
        matrix, inliers = estimate(src, dst, **options, refineIters=10)
    if matrix is None or inliers is None or not np.all(np.isfinite(matrix)):
        return None, none
    full = np.eye(3)
    if matrix.shape == (3, 3):
        full[:] = matrix
    else:
        full[:2] = matrix
    flags = inliers.ravel().astype(bool)
    if model == "translation":
        shift = np.median(dst[flags] - src[flags], axis=0) if flags.any() else np.zeros(2)
        return Transform.translation(float(shift[0]), float(shift[1])), flags
    try:
        return Transform(full), flags
    except ValueError:
        return None, none


def orb_match(
    image: npt.ArrayLike,
    reference: npt.ArrayLike,
    *,
    model: TransformModel = "similarity",
    n_features: int = 5000,
    refine: bool = True,
    rng: np.random.Generator | None = None,
) -> Match:
    """Register a frame to a reference by ORB features, RANSAC and (optionally) ECC.

    Parameters
    ----------
    image, reference : array_like (H, W) or (H, W, 3)
        The frame and the reference frame, same shape, linear float data in any scale;
        colour is reduced to the channel mean and NaN marks missing pixels. Each is
        stretched linearly between its 0.5 and 99.5 percentiles to 8 bits for ORB.
    model : {"translation", "similarity", "affine", "homography"}
        Similarity (rotation, uniform scale, shift; OpenCV's ``estimateAffinePartial2D``),
        affine (``estimateAffine2D``), homography (``findHomography``), all with RANSAC at a
        3 px threshold. ``translation`` takes the median displacement of the inliers of a
        RANSAC similarity fit.
    n_features : int
        Most ORB keypoints per image.
    refine : bool
        Polish the RANSAC result with :func:`ecc_refine` (ORB alone is good to about
        0.3 px; ECC to a few hundredths). If ECC fails or moves the central 60 % of the
        frame by more than 3 px, the RANSAC result is kept (logged at debug level).
    rng : numpy.random.Generator, optional
        Seeds OpenCV's random generator, for reproducible RANSAC.

    Returns
    -------
    Match
        ``transform`` maps ``image`` pixel coordinates ``(x, y)`` to ``reference`` ones;
        ``n_inliers`` counts the RANSAC inliers; ``rms_px`` is the RMS distance, px, between
        the inliers' reference keypoints and their image keypoints mapped by the returned
        transform (dominated by keypoint noise, about 0.3 px); ``method`` is ``"orb"``.

    Raises
    ------
    RegistrationError
        Fewer than ``MIN_ORB_INLIERS`` (12) matches agree on a transform (noise, clouds,
        too little overlap or texture), or an image is blank.
    GeometryError
        The images differ in shape or are not 2-D or 3-channel.

    Notes
    -----
    The frames must overlap by enough to share a dozen distinctive features; rotations of
    any angle and scale changes up to about a factor 1.5 (ORB's pyramid) are handled.
    """
    if model not in TRANSFORM_MODELS:
        raise ValueError(f"unknown transform model {model!r}; expected one of {TRANSFORM_MODELS}")
    img, ref = _check_pair(image, reference)
    generator = rng if rng is not None else np.random.default_rng()
    cv2.setRNGSeed(int(generator.integers(2**31)))
    pts_img, desc_img = _keypoints(img, n_features)
    pts_ref, desc_ref = _keypoints(ref, n_features)
    if desc_img is None or desc_ref is None or len(pts_img) < 2 or len(pts_ref) < 2:
        raise RegistrationError(
            f"ORB found too few features ({len(pts_img)} in the image, {len(pts_ref)} in the "
            f"reference; need {MIN_ORB_INLIERS})"
        )
    pairs = np.array(_ratio_matches(desc_img, desc_ref), dtype=np.intp).reshape(-1, 2)
    if len(pairs) < MIN_ORB_INLIERS:
        raise RegistrationError(
            f"only {len(pairs)} ORB matches pass the ratio test (need {MIN_ORB_INLIERS})"
        )
    src, dst = pts_img[pairs[:, 0]], pts_ref[pairs[:, 1]]
    transform, inliers = _ransac(src, dst, model)
    n_inliers = int(inliers.sum())
    if transform is None or n_inliers < MIN_ORB_INLIERS:
        raise RegistrationError(
            f"only {n_inliers} of {len(pairs)} ORB matches agree on a {model} transform "
            f"(need {MIN_ORB_INLIERS})"
        )
    if refine:
        try:
            refined = ecc_refine(img, ref, transform, model=model)
        except RegistrationError as err:
            _log.debug("keeping the ORB transform: %s", err)
        else:
            change = _max_difference_px(refined, transform, img.shape)
            if change <= _ECC_MAX_CHANGE_PX:
                transform = refined
            else:
                _log.debug("keeping the ORB transform: ECC moved it by %.1f px", change)
    rms = float(np.sqrt(np.mean(residuals(transform, src[inliers], dst[inliers]) ** 2)))
    return Match(transform=transform, n_inliers=n_inliers, rms_px=rms, method="orb")
