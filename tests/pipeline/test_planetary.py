"""Lucky imaging end to end on the simulator's planetary SER: closer to the truth than the best
frame; the command's outputs, options and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from skystack.cli.main import main
from skystack.io import read
from skystack.io.ser import SerReader
from skystack.pipeline.planetary import LuckyConfig, open_frames, planetary_file, sharpened_path
from skystack.planetary.align import global_shift, shift_image
from skystack.planetary.quality import sharpness
from skystack.sim import PlanetaryConfig, write_planetary_ser


@pytest.fixture(scope="module")
def jupiter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planetary")
    config = PlanetaryConfig(width=320, height=240, n_frames=120, target="jupiter")
    return write_planetary_ser(folder / "jupiter.ser", config, seed=4)


def _match(image: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` aligned onto ``clean`` (sub-pixel), both cropped to their common area, and the
    image's brightness fitted to the truth's (gain and offset by least squares)."""
    dx, dy = global_shift(clean, image)
    moved = shift_image(image, dx, dy)
    pad = int(np.ceil(max(abs(dx), abs(dy)))) + 2
    a = moved[pad:-pad, pad:-pad].astype(np.float64)
    b = clean[pad:-pad, pad:-pad].astype(np.float64)
    design = np.column_stack([a.ravel(), np.ones(a.size)])
    gain, offset = np.linalg.lstsq(design, b.ravel(), rcond=None)[0]
    return (gain * a + offset).astype(np.float32), b.astype(np.float32)


def _ssim(image: np.ndarray, clean_crop: np.ndarray) -> float:
    fitted, truth = _match(image, clean_crop)
    return float(structural_similarity(fitted, truth, data_range=float(truth.max() - truth.min())))


def test_stack_is_closer_to_the_truth_than_the_best_frame(jupiter, tmp_path):
    out = tmp_path / "jupiter.fits"
    run = planetary_file(jupiter.path, out, LuckyConfig(best=0.25, ap_size=48))
    stacked = read(out).data
    x0, y0, x1, y1 = run.roi
    assert stacked.shape == (y1 - y0, x1 - x0)
    clean = read(jupiter.clean).data
    # The truth in the first frame's grid: frame pixel (x, y) shows clean point (x + dx, y + dy).
    dx0, dy0 = jupiter.offsets[0]
    clean_in_first = shift_image(clean, -float(dx0), -float(dy0))[y0:y1, x0:x1]
    best_index = int(np.argmax(jupiter.quality))
    with SerReader(jupiter.path) as ser:
        best_frame = ser[best_index].data
        first_frame = ser[0].data
    best_crop = shift_image(best_frame, *global_shift(first_frame, best_frame))[y0:y1, x0:x1]
    stack_ssim, frame_ssim = _ssim(stacked, clean_in_first), _ssim(best_crop, clean_in_first)
    assert stack_ssim > frame_ssim + 0.02, (stack_ssim, frame_ssim)
    # Sharpness (brightness-normalised gradient energy) at least the best frame's, once the
    # stack is sharpened as the command does (the stack itself averages the residual blur).
    sharp = read(sharpened_path(out)).data
    assert sharpness(sharp) >= sharpness(best_crop)
    report = json.loads(out.with_suffix(".json").read_text())
    assert len(report["frames"]) == 120 and report["alignment_points"]
    used = [row for row in report["frames"] if row["accepted"]]
    assert 30 <= len(used) < 120


def test_command_writes_outputs_and_refuses_to_overwrite(jupiter, tmp_path, capsys):
    out = tmp_path / "stack.tif"
    code = main(["planetary", str(jupiter.path), "-o", str(out), "--best", "40", "--drizzle",
                 "1.5", "--ap-size", "48", "--workers", "2"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.exists() and sharpened_path(out).exists() and out.with_suffix(".json").exists()
    assert "alignment points" in captured.out
    stacked = read(out).data
    report = json.loads(out.with_suffix(".json").read_text())
    x0, y0, x1, y1 = report["roi"]
    assert stacked.shape == (round((y1 - y0) * 1.5), round((x1 - x0) * 1.5))
    assert main(["planetary", str(jupiter.path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--best", "0%"], "--best"), (["--best", "abc"], "--best"), (["--drizzle", "3"], "--drizzle"),
     (["--ap-size", "4"], "--ap-size"), (["--workers", "-1"], "workers")],
)  # fmt: skip
def test_bad_options_are_one_line_errors(jupiter, tmp_path, capsys, args, message):
    code = main(["planetary", str(jupiter.path), "-o", str(tmp_path / "o.tif"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_a_single_image_is_not_a_video(tmp_path, capsys):
    from skystack.io import write

    image = tmp_path / "moon.png"
    write(np.zeros((32, 32), dtype=np.float32), image)
    assert main(["planetary", str(image), "-o", str(tmp_path / "o.tif")]) == 2
    assert "moon.png" in capsys.readouterr().err


def test_bayer_video_is_debayered_and_stacked_in_colour(tmp_path):
    config = PlanetaryConfig(width=240, height=180, n_frames=40, target="jupiter", color="bayer",
                             bit_depth=16)  # fmt: skip
    truth = write_planetary_ser(tmp_path / "colour.ser", config, seed=2)
    out = tmp_path / "colour.tif"
    run = planetary_file(truth.path, out, LuckyConfig(ap_size=32, sharpen="none"))
    stacked = read(out).data
    assert stacked.ndim == 3 and stacked.shape[2] == 3 and run.sharpened is None
    clean = read(truth.clean).data
    # Jupiter's colour survives: the stack's channel ratios on the disk match the truth's.
    disk = stacked.mean(axis=2) > 0.5 * stacked.mean(axis=2).max()
    truth_disk = clean.mean(axis=2) > 0.5 * clean.mean(axis=2).max()
    ratio = stacked[disk].mean(axis=0) / stacked[disk].mean(axis=0)[1]
    truth_ratio = clean[truth_disk].mean(axis=0) / clean[truth_disk].mean(axis=0)[1]
    np.testing.assert_allclose(ratio, truth_ratio, rtol=0.05)


@pytest.mark.filterwarnings("ignore::skystack.errors.FrameSkippedWarning")
def test_a_bad_frame_in_a_folder_is_skipped_and_reported(jupiter, tmp_path, capsys):
    from skystack.errors import FrameSkippedWarning
    from skystack.io import write

    folder = tmp_path / "frames"
    folder.mkdir()
    with SerReader(jupiter.path) as ser:
        for index in range(24):
            write(ser[index].data, folder / f"frame_{index:03d}.png", bit_depth=16)
    (folder / "frame_007.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write(np.zeros((50, 60), dtype=np.float32), folder / "frame_030.png", bit_depth=16)
    out = tmp_path / "stack.fits"
    with pytest.warns(FrameSkippedWarning, match="frame_007.png"):
        planetary_file(folder, out, LuckyConfig(ap_size=48, sharpen="none"))
    rows = json.loads(out.with_suffix(".json").read_text())["frames"]
    assert len(rows) == 25
    bad = {row["index"]: row for row in rows if row["reason"]}
    assert set(bad) == {7, 24} and not any(row["accepted"] for row in bad.values())
    assert "frame_007.png" in bad[7]["reason"] and "frame_030.png" in bad[24]["reason"]
    assert sum(row["accepted"] for row in rows) >= 6
    assert np.isfinite(read(out).data).all()


@pytest.mark.parametrize(("color", "bit_depth"), [("mono", 8), ("rgb", 16), ("bayer", 16)])
def test_frame_crops_read_like_whole_frames(tmp_path, color, bit_depth):
    config = PlanetaryConfig(width=64, height=48, n_frames=3, color=color, bit_depth=bit_depth)
    truth = write_planetary_ser(tmp_path / "crop.ser", config, seed=1)
    with open_frames(truth.path) as frames:
        whole = frames.image(2)
        for box in [(5, 4, 60, 40), (-6, -3, 20, 10), (50, 40, 70, 55)]:
            x0, y0, x1, y1 = box
            rows = np.clip(np.arange(y0, y1), 0, 47)
            cols = np.clip(np.arange(x0, x1), 0, 63)
            crop = frames.crop(2, box)
            assert crop.dtype == np.float32 and crop.shape[:2] == (y1 - y0, x1 - x0)
            np.testing.assert_array_equal(crop, whole[np.ix_(rows, cols)])


# -- several processes ---------------------------------------------------------------------------


@pytest.fixture
def few_frames_per_process(monkeypatch):
    """Every 10 frames worth a process, so small inputs run in two."""
    import skystack.pipeline.planetary as pipeline

    monkeypatch.setattr(pipeline, "_FRAMES_PER_PROCESS", 10)


def _video(truth, path):
    import cv2

    with SerReader(truth.path) as ser:
        height, width = ser.header.height, ser.header.width
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (width, height))
        for index in range(len(ser)):
            grey = np.clip(ser[index].data * 255.0 + 0.5, 0, 255).astype(np.uint8)
            writer.write(np.repeat(grey[..., None], 3, axis=2))
        writer.release()
    return path


def _folder(truth, folder):
    from skystack.io import write

    folder.mkdir()
    with SerReader(truth.path) as ser:
        for index in range(len(ser)):
            write(ser[index].data, folder / f"frame_{index:03d}.png", bit_depth=16)
    # A bad frame in each process's run: unreadable in the first, another size in the second.
    (folder / "frame_007.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write(np.zeros((50, 60), dtype=np.float32), folder / "frame_050.png", bit_depth=16,
          overwrite=True)  # fmt: skip
    return folder


def _recorder(seen):
    return lambda done, total, what: seen.append((done, total, what))


@pytest.mark.usefixtures("few_frames_per_process")
@pytest.mark.filterwarnings("ignore::skystack.errors.FrameSkippedWarning")
@pytest.mark.parametrize("kind", ["ser", "video", "folder"])
def test_two_processes_stack_like_one(tmp_path, kind):
    config = PlanetaryConfig(width=160, height=120, n_frames=60, target="jupiter")
    truth = write_planetary_ser(tmp_path / "jupiter.ser", config, seed=5)
    source = {
        "ser": lambda: truth.path,
        "video": lambda: _video(truth, tmp_path / "jupiter.avi"),
        "folder": lambda: _folder(truth, tmp_path / "frames"),
    }[kind]()
    settings = LuckyConfig(best=0.5, ap_size=32, sharpen="none")
    runs, reports = {}, {}
    for workers in (1, 2):
        out = tmp_path / f"stack_{workers}.fits"
        seen: list[tuple[int, int, str]] = []
        planetary_file(source, out, settings, workers=workers, progress=_recorder(seen))
        runs[workers] = (read(out).data, json.loads(out.with_suffix(".json").read_text()))
        reports[workers] = seen
    (one, one_report), (two, two_report) = runs[1], runs[2]
    np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-7)
    assert two_report["frames"] == one_report["frames"]
    assert two_report["roi"] == one_report["roi"]
    if kind == "folder":
        bad = {row["index"] for row in two_report["frames"] if row["reason"]}
        assert bad == {7, 50} and not any(two_report["frames"][i]["accepted"] for i in bad)
    for seen in reports.values():
        finals = {what: (done, total) for done, total, what in seen}
        assert finals["survey"] == (60, 60) and finals["stack"][0] == finals["stack"][1]
        assert all(done <= total for done, total, _ in seen)


@pytest.mark.usefixtures("few_frames_per_process")
def test_an_error_in_another_process_is_raised_here(jupiter, tmp_path, monkeypatch):
    import os

    import skystack.pipeline.planetary as pipeline

    parent = os.getpid()
    opened = pipeline.open_frames

    def failing(path):
        if os.getpid() != parent:
            raise MemoryError(f"{path}: out of memory in a worker")
        return opened(path)

    monkeypatch.setattr(pipeline, "open_frames", failing)
    with pytest.raises(MemoryError, match="out of memory in a worker"):
        planetary_file(jupiter.path, tmp_path / "o.fits", LuckyConfig(ap_size=48), workers=2)
    assert not (tmp_path / "o.fits").exists()


def test_workers_must_be_positive(jupiter, tmp_path):
    from skystack.errors import ConfigError

    with pytest.raises(ConfigError, match="workers must be at least 1, not 0"):
        planetary_file(jupiter.path, tmp_path / "o.fits", workers=0)


def test_stack_processes_keep_their_sums_within_the_budget():
    from skystack.pipeline.planetary import _STACKERS_BUDGET, _phases, _stack_processes

    assert _stack_processes((383, 404), 2) == 2
    for shape in [(1080, 1920), (2000, 3000, 3), (6000, 8000, 3)]:
        count = _stack_processes(shape, 64)
        size = (_phases(shape) ** 2 + 1) * 4 * np.prod(shape)
        assert count >= 1 and (count == 1 or count * size <= _STACKERS_BUDGET)
