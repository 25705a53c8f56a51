"""Tests of the multi-point lucky stacking engine (skystack.planetary.lucky)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from skystack.errors import GeometryError
from skystack.planetary.lucky import PatchStacker, align_channels, select_per_point
from skystack.register.phase import phase_correlate
from skystack.sim.planetary import moon_image


def _grid(x0: float, x1: float, y0: float, y1: float, step: float) -> np.ndarray:
    xs = np.arange(x0, x1 + 1e-9, step)
    ys = np.arange(y0, y1 + 1e-9, step)
    return np.array([(x, y) for y in ys for x in xs], dtype=np.float64)


def _smooth(height: int, width: int, *, scale: float = 1.0) -> np.ndarray:
    """A smooth test image; ``scale`` samples it on a finer grid (``x = (u + 0.5) / s - 0.5``)."""
    y = (np.arange(round(height * scale)) + 0.5) / scale - 0.5
    x = (np.arange(round(width * scale)) + 0.5) / scale - 0.5
    y, x = y[:, None], x[None, :]
    img = (
        0.4
        + 0.2 * np.sin(x / 9.0) * np.cos(y / 13.0)
        + 0.1 * np.exp(-((x - width / 2) ** 2 + (y - height / 2) ** 2) / 400.0)
    )
    return img.astype(np.float32)


def _moon(height: int, width: int, seed: int) -> np.ndarray:
    return moon_image((height, width), rng=np.random.default_rng(seed)).mean(axis=2) * 0.6


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))


def _shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Content moved by (+dx, +dy): out(x, y) = image(x - dx, y - dy)."""
    mat = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    h, w = image.shape[:2]
    return cv2.warpAffine(image, mat, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


# -- select_per_point ---------------------------------------------------------------------------


def test_select_per_point_fraction_count_and_nan():
    q = np.array([[1.0, 5.0], [3.0, np.nan], [2.0, 4.0], [0.0, 6.0]])
    sel = select_per_point(q, 0.5)
    assert sel.dtype == bool and sel.shape == (4, 2)
    np.testing.assert_array_equal(sel[:, 0], [False, True, True, False])
    np.testing.assert_array_equal(sel[:, 1], [True, False, False, True])
    assert select_per_point(q, 1).sum(axis=0).tolist() == [1, 1]
    assert select_per_point(q, 1.0).all()
    assert select_per_point(q, 99).all()
    with pytest.raises(ValueError, match=r"best: expected a fraction in \(0, 1\], got 1.5"):
        select_per_point(q, 1.5)
    with pytest.raises(ValueError, match="positive frame count, got 0"):
        select_per_point(q, 0)
    with pytest.raises(GeometryError, match=r"quality: expected an \(n_frames, n_points\)"):
        select_per_point(np.ones(5), 0.5)


# -- blending -----------------------------------------------------------------------------------


@pytest.mark.parametrize("color", [False, True])
def test_identical_frames_reproduce_the_image_without_seams(color):
    image = _smooth(96, 128)
    if color:
        image = np.stack([image, image * 0.8, image * 0.6 + 0.1], axis=-1)
    # An irregular layout (not the step of half a box) must still be seamless.
    centres = _grid(30, 98, 28, 68, 13.0)
    stacker = PatchStacker(image.shape, centres, 32)
    for _ in range(4):
        stacker.add(image, np.arange(len(centres)), np.zeros((len(centres), 2)))
    alone = stacker.result()
    covered = np.isfinite(alone)
    if color:
        covered = covered.all(axis=-1)
    assert covered[48, 64] and not covered[2, 2]  # no background yet: NaN outside the APs
    assert covered.mean() > 0.3
    assert np.max(np.abs(alone[covered] - image[covered])) < 1e-4
    stacker.add_background(image)
    out = stacker.result()
    assert out.dtype == np.float32 and out.shape == image.shape
    assert np.max(np.abs(out - image)) < 1e-4


def test_patch_to_background_transition_is_smooth():
    image = _smooth(96, 128)
    level = 0.05  # the background frames differ from the patch frames by this much
    centres = _grid(40, 88, 32, 64, 16.0)
    stacker = PatchStacker(image.shape, centres, 32)
    for _ in range(3):
        stacker.add(image, np.arange(len(centres)), np.zeros((len(centres), 2)))
        stacker.add_background(image + np.float32(level))
    residual = stacker.result() - image
    assert np.max(np.abs(residual[48, 56:72])) < 1e-4  # deep inside the APs: the patches
    assert np.max(np.abs(residual[:8] - level)) < 1e-4  # far outside: the background
    step_x = np.abs(np.diff(residual, axis=1)).max()
    step_y = np.abs(np.diff(residual, axis=0)).max()
    # A hard mask would jump by the full level, a 2-px ramp by half; the blend takes ~8 px.
    assert max(step_x, step_y) < 0.35 * level


# -- local shifts -------------------------------------------------------------------------------


def test_local_shifts_are_honoured(rng):
    height, width, ap = 112, 144, 32
    clean = _moon(height, width, 3)
    centres = _grid(24, 120, 24, 88, 16.0)
    n_points = len(centres)
    stacker_ref = PatchStacker(clean.shape, centres, ap)
    win = stacker_ref._window  # the blending window: the frames' field uses the same layout
    # Per-AP mean displacement (a different one for every AP, up to 1.5 px, varying over the
    # disk like seeing does) plus independent per-frame, per-AP jitter of 0.3 px rms.
    cx, cy = centres[:, 0], centres[:, 1]
    mean_t = 1.5 * np.stack(
        [
            np.sin(2 * np.pi * (cx / 128 + cy / 256) + 0.3),
            np.cos(2 * np.pi * (cy / 112 - cx / 300) + 1.1),
        ],
        axis=1,
    )
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phi = np.zeros((n_points, height, width), dtype=np.float32)
    for i, (cx, cy) in enumerate(centres):
        x0, y0 = int(round(cx - (ap - 1) / 2)), int(round(cy - (ap - 1) / 2))
        phi[i, y0 : y0 + ap, x0 : x0 + ap] = np.outer(win, win)
    phi /= np.maximum(phi.sum(axis=0), 1e-6)
    good = PatchStacker(clean.shape, centres, ap)
    zero = PatchStacker(clean.shape, centres, ap)
    for _ in range(24):
        t = mean_t + rng.normal(0.0, 0.3, (n_points, 2))
        tx = np.tensordot(t[:, 0], phi, axes=1).astype(np.float32)
        ty = np.tensordot(t[:, 1], phi, axes=1).astype(np.float32)
        # Content displaced by t: frame(x) = clean(x - t(x)).
        frame = cv2.remap(clean, xx - tx, yy - ty, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        good.add(frame, np.arange(n_points), -t)
        zero.add(frame, np.arange(n_points), np.zeros_like(t))
    region = (slice(32, 80), slice(32, 112))
    rms_good = _rms(good.result()[region], clean[region])
    rms_zero = _rms(zero.result()[region], clean[region])
    assert rms_good < rms_zero / 5.0, (rms_good, rms_zero)
    # Residual displacement, measured on 48 x 40 blocks: within 0.1 px with the shifts.
    worst_good, worst_zero = 0.0, 0.0
    for ys in (slice(24, 72), slice(40, 88)):
        for xs in (slice(24, 64), slice(64, 104), slice(80, 120)):
            for stack, name in ((good, "good"), (zero, "zero")):
                m = phase_correlate(stack.result()[ys, xs], clean[ys, xs], refine=False)
                err = float(np.hypot(*m.transform.shift))
                if name == "good":
                    worst_good = max(worst_good, err)
                else:
                    worst_zero = max(worst_zero, err)
    assert worst_good < 0.1, worst_good
    assert worst_zero > 1.0, worst_zero


# -- per-point selection ------------------------------------------------------------------------


def test_per_point_selection_beats_global_best(rng):
    height, width, ap = 96, 160, 32
    clean = _moon(height, width, 5)
    centres = _grid(16, 144, 16, 80, 16.0)
    n_points, n_frames = len(centres), 24
    # Left and right halves see independent seeing: a smooth mask between them.
    mask = (1.0 / (1.0 + np.exp(-(np.arange(width) - width / 2) / 4.0)))[None, :]
    mask = np.broadcast_to(mask, (height, width)).astype(np.float32)
    sig_l = rng.uniform(0.3, 3.0, n_frames)
    sig_r = rng.uniform(0.3, 3.0, n_frames)
    frames = []
    for k in range(n_frames):
        left = cv2.GaussianBlur(clean, (0, 0), sig_l[k])
        right = cv2.GaussianBlur(clean, (0, 0), sig_r[k])
        noise = rng.normal(0.0, 0.004, clean.shape).astype(np.float32)
        frames.append((left * (1 - mask) + right * mask + noise).astype(np.float32))
    # Local quality: variance of the Laplacian of the (lightly smoothed) AP box.
    quality = np.empty((n_frames, n_points))
    for k, frame in enumerate(frames):
        lap = cv2.Laplacian(cv2.GaussianBlur(frame, (0, 0), 0.7), cv2.CV_32F)
        for i, (cx, cy) in enumerate(centres):
            x0, y0 = int(cx) - ap // 2, int(cy) - ap // 2
            quality[k, i] = lap[max(y0, 0) : y0 + ap, max(x0, 0) : x0 + ap].var()
    selected = select_per_point(quality, 0.25)
    k_best = 6
    left_pts = np.flatnonzero(centres[:, 0] <= 48)
    right_pts = np.flatnonzero(centres[:, 0] >= 112)
    best_l = set(np.argsort(sig_l)[:k_best].tolist())
    best_r = set(np.argsort(sig_r)[:k_best].tolist())
    overlap_l = [len(best_l & set(np.flatnonzero(selected[:, i]).tolist())) for i in left_pts]
    overlap_r = [len(best_r & set(np.flatnonzero(selected[:, i]).tolist())) for i in right_pts]
    assert min(overlap_l) >= 5 and min(overlap_r) >= 5, (overlap_l, overlap_r)

    global_q = np.array([cv2.Laplacian(f, cv2.CV_32F).var() for f in frames])
    best_global = np.argsort(-global_q)[:k_best]
    stacker = PatchStacker(clean.shape, centres, ap)
    for k, frame in enumerate(frames):
        points = np.flatnonzero(selected[k])
        stacker.add(frame, points, np.zeros((len(points), 2)))
        if k in best_global:
            stacker.add_background(frame)
    per_point = stacker.result()
    global_mean = np.mean([frames[k] for k in best_global], axis=0)
    inner = (slice(8, 88), slice(8, 152))
    rms_pp = _rms(per_point[inner], clean[inner])
    rms_gl = _rms(global_mean[inner], clean[inner])
    assert rms_pp < 0.75 * rms_gl, (rms_pp, rms_gl)


# -- drizzle ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drizzle", "kernel", "factor"),
    [(1.5, "cubic", 0.95), (2.0, "cubic", 0.95), (1.5, "drop", 0.85), (2.0, "drop", 0.85)],
)
def test_drizzle_recovers_detail_from_dithered_undersampled_frames(rng, drizzle, kernel, factor):
    height, width, fine = 40, 48, 6
    truth6 = _moon(height * fine + fine, width * fine + fine, 11)  # 6 fine px per frame px
    out_f = int(round(fine / drizzle))  # 4 for x1.5, 3 for x2
    crop = truth6[: height * fine, : width * fine]
    truth = cv2.resize(
        crop, (int(width * drizzle), int(height * drizzle)), interpolation=cv2.INTER_AREA
    )
    assert truth.shape == (height * fine // out_f, width * fine // out_f)
    centres = _grid(8, 40, 8, 32, 8.0)
    n_points = len(centres)
    st1 = PatchStacker((height, width), centres, 16)
    std = PatchStacker((height, width), centres, 16, drizzle=drizzle, kernel=kernel, pixfrac=0.6)
    for _ in range(36):
        ox, oy = rng.integers(0, fine, 2)
        # Pixel integration of the truth moved by a sixth-pixel multiple: undersampled frame.
        part = truth6[oy : oy + height * fine, ox : ox + width * fine]
        frame = cv2.resize(part, (width, height), interpolation=cv2.INTER_AREA)
        # frame(x) = clean(x + o / 6): translate by (+o / 6) to align.
        shifts = np.tile([ox / fine, oy / fine], (n_points, 1))
        st1.add(frame, np.arange(n_points), shifts)
        std.add(frame, np.arange(n_points), shifts)
        st1.add_background(frame)
        std.add_background(frame)
    out_d = std.result()
    assert out_d.shape == truth.shape == std.out_shape
    c = (drizzle - 1.0) / 2.0
    mat = np.array([[drizzle, 0.0, c], [0.0, drizzle, c]])
    up = cv2.warpAffine(
        st1.result(),
        mat,
        truth.shape[::-1],
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )
    inner = (slice(12, -12), slice(12, -12))
    rms_d, rms_up = _rms(out_d[inner], truth[inner]), _rms(up[inner], truth[inner])
    # RMS to the truth integrated on the fine grid: most of it is the frames' own pixel
    # integration, which no stacking undoes; drizzle must still beat upsampling the x1 stack.
    assert rms_d < factor * rms_up, (rms_d, rms_up)


@pytest.mark.parametrize("drizzle", [1.5, 2.0])
def test_drizzle_grid_is_centred_for_patches_and_background(drizzle):
    image = _smooth(48, 64)
    truth = _smooth(48, 64, scale=drizzle)  # the same function sampled on the output grid
    centres = _grid(20, 44, 16, 32, 8.0)
    st = PatchStacker(image.shape, centres, 16, drizzle=drizzle)
    for dx in (-0.3, 0.0, 0.4):
        moved = _shift(image, -dx, 0.0)  # translate by (+dx) to align
        st.add(moved, np.arange(len(centres)), np.tile([dx, 0.0], (len(centres), 1)))
        st.add_background(image)
    out = st.result()
    assert out.shape == truth.shape
    inner = (slice(4, -4), slice(4, -4))  # everywhere but the replicated border
    assert np.max(np.abs(out[inner] - truth[inner])) < 2e-3


def test_drop_kernel_shape_and_identity():
    image = _smooth(48, 64)
    centres = _grid(16, 48, 16, 32, 8.0)
    st = PatchStacker(image.shape, centres, 16, drizzle=2.0, kernel="drop", pixfrac=1.0)
    for _ in range(3):
        st.add(image, np.arange(len(centres)), np.zeros((len(centres), 2)))
    st.add_background(image)
    out = st.result()
    assert out.shape == (96, 128)
    ref = cv2.resize(image, (128, 128 * 96 // 128), interpolation=cv2.INTER_LINEAR)
    assert np.max(np.abs(out[24:72, 24:104] - ref[24:72, 24:104])) < 0.01


# -- dispersion ---------------------------------------------------------------------------------


def test_align_channels_recovers_dispersion():
    green = _moon(128, 160, 7)
    r_shift, b_shift = (0.37, -0.61), (-0.83, 0.44)  # content of R, B moved from G's
    rgb = np.stack(
        [_shift(green, *r_shift) * 1.1, green, _shift(green, *b_shift) * 0.8], axis=-1
    ).astype(np.float32)
    out, shifts = align_channels(rgb)
    assert shifts.shape == (3, 2) and out.shape == rgb.shape
    np.testing.assert_allclose(shifts[0], [-r_shift[0], -r_shift[1]], atol=0.1)
    np.testing.assert_allclose(shifts[2], [-b_shift[0], -b_shift[1]], atol=0.1)
    assert np.all(shifts[1] == 0)
    inner = (slice(8, -8), slice(8, -8))
    assert _rms(out[..., 0][inner], green[inner] * 1.1) < 0.2 * _rms(
        rgb[..., 0][inner], green[inner] * 1.1
    )
    with pytest.raises(GeometryError, match=r"expected an \(H, W, 3\) image"):
        align_channels(green)


# -- merging and phases --------------------------------------------------------------------------


@pytest.mark.parametrize(("color", "kernel"), [(False, "cubic"), (True, "cubic"), (False, "drop")])
def test_stackers_fed_apart_merge_into_one(rng, color, kernel):
    image = _moon(96, 128, 4)
    if color:
        image = np.stack([image, image * 0.8, image * 0.6 + 0.1], axis=-1)
    # Points near the edges too: their boxes, moved, read beyond the frame.
    centres = _grid(12, 116, 12, 84, 16.0)
    frames = [image + rng.normal(0, 0.01, image.shape).astype(np.float32) for _ in range(6)]
    picks = [rng.choice(len(centres), 9, replace=False) for _ in frames]
    moves = [rng.uniform(-3.0, 3.0, (9, 2)) for _ in frames]
    direct = PatchStacker(image.shape, centres, 24, kernel=kernel)
    halves = [PatchStacker(image.shape, centres, 24, kernel=kernel) for _ in range(2)]
    for k, (frame, points, shifts) in enumerate(zip(frames, picks, moves, strict=True)):
        direct.add(frame, points, shifts)
        halves[k // 3].add(frame, points, shifts)
        if k % 2:
            direct.add_background(frame)
            halves[k // 3].add_background(frame)
    halves[0].merge(halves[1])
    np.testing.assert_allclose(halves[0].result(), direct.result(), rtol=1e-5, atol=1e-6)
    assert halves[0].n_added.sum() == 6 * 9 and halves[0].n_background == 3


def test_stackers_of_other_layouts_do_not_merge():
    centres = _grid(12, 116, 12, 84, 16.0)
    stacker = PatchStacker((96, 128), centres, 24)
    with pytest.raises(ValueError, match="differ in their layout"):
        stacker.merge(PatchStacker((96, 128), centres, 32))
    with pytest.raises(ValueError, match="differ in their layout"):
        stacker.merge(PatchStacker((96, 128), centres[1:], 24))


@pytest.mark.parametrize("phases", [1, 2, 3, 6])
def test_shifts_are_rounded_to_the_phases(phases):
    image = _smooth(48, 64)
    centres = _grid(20, 44, 16, 32, 8.0)
    dx = 0.4  # rounded to the nearest multiple of 1 / phases
    st = PatchStacker(image.shape, centres, 16, phases=phases)
    st.add(_shift(image, -dx, 0.0), np.arange(len(centres)), np.tile([dx, 0.0], (len(centres), 1)))
    out = st.result()
    rounded = round(dx * phases) / phases
    expected = _shift(_shift(image, -dx, 0.0), rounded, 0.0)
    # Where the windows sum to less than a half the stack is blended into the background,
    # when there is one.
    covered = st.coverage() > 0.5
    assert np.isfinite(out[covered]).all() and covered.mean() > 0.2
    np.testing.assert_allclose(out[covered], expected[covered], atol=5e-4)
    with pytest.raises(ValueError, match="phases: expected a count of sub-pixel phases"):
        PatchStacker(image.shape, centres, 16, phases=0)


# -- memory and errors --------------------------------------------------------------------------


def _array_bytes(obj: object) -> int:
    return sum(v.nbytes for v in vars(obj).values() if isinstance(v, np.ndarray))


def test_memory_does_not_grow_with_frames(rng):
    shape = (64, 80)
    centres = _grid(16, 64, 16, 48, 8.0)
    st = PatchStacker(shape, centres, 16, drizzle=1.5)
    frame = rng.random(shape, dtype=np.float32)
    for _ in range(10):
        st.add(frame, [0, 3, 5], rng.normal(0, 0.5, (3, 2)))
        st.add_background(frame)
    before = _array_bytes(st)
    for _ in range(490):
        st.add(frame, rng.choice(len(centres), 8, replace=False), rng.normal(0, 0.5, (8, 2)))
        st.add_background(frame)
    assert _array_bytes(st) == before
    out_px = int(64 * 1.5) * int(80 * 1.5)
    assert before < 8 * (3 * out_px + 64 * 80) + 64 * len(centres)
    assert st.n_background == 500 and st.n_added.sum() == 30 + 490 * 8


def test_errors_name_the_value():
    st = PatchStacker((32, 32), [(16, 16)], 16)
    with pytest.raises(ValueError, match="no frame was added"):
        st.result()
    with pytest.raises(GeometryError, match=r"frame: expected shape \(32, 32\), got \(32, 31\)"):
        st.add(np.zeros((32, 31), np.float32), [0], [(0, 0)])
    with pytest.raises(ValueError, match=r"points: expected indices in \[0, 1\)"):
        st.add(np.zeros((32, 32), np.float32), [1], [(0, 0)])
    with pytest.raises(ValueError, match="shifts: expected 1 finite"):
        st.add(np.zeros((32, 32), np.float32), [0], [(0, np.nan)])
    with pytest.raises(ValueError, match=r"drizzle: expected a scale in \[1, 4\]"):
        PatchStacker((32, 32), [(16, 16)], 16, drizzle=0.5)
    with pytest.raises(GeometryError, match=r"shape: expected \(H, W\) or \(H, W, 3\)"):
        PatchStacker((32, 32, 4), [(16, 16)], 16)
