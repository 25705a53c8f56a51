"""Videos through OpenCV: frame counts, RGB order, grey detection, seeking and bad files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import skystack.io as skio
import skystack.io.video as video_module
from skystack.errors import FormatError, MissingFileError
from skystack.io.video import VideoReader, read_video

N_FRAMES = 10
HEIGHT, WIDTH = 48, 64
TOL = 12 / 255  # MJPG is lossy


def write_avi(path: Path, frames_bgr: list[np.ndarray]) -> Path:
    height, width = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG AVI files here")
    for frame in frames_bgr:
        writer.write(frame)
    writer.release()
    return path


def square_frame(k: int) -> np.ndarray:
    """A B, G, R frame: dark grey with a pure red 16x16 square whose x position encodes k."""
    image = np.full((HEIGHT, WIDTH, 3), 40, dtype=np.uint8)
    x = 2 + 4 * k
    image[16:32, x : x + 16] = (0, 0, 255)  # red in OpenCV's B, G, R order
    return image


@pytest.fixture
def colour_avi(tmp_path) -> Path:
    return write_avi(tmp_path / "colour.avi", [square_frame(k) for k in range(N_FRAMES)])


@pytest.fixture
def grey_avi(tmp_path, rng) -> Path:
    frames = []
    for _ in range(4):
        grey = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8), (5, 5), 0)
        frames.append(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
    return write_avi(tmp_path / "grey.avi", frames)


def square_position(frame) -> int:
    red = (frame.data[..., 0] > 0.7) & (frame.data[..., 1] < 0.3) & (frame.data[..., 2] < 0.3)
    columns = np.flatnonzero(red[24])
    return int(columns[0])


def test_colour_video(colour_avi):
    with VideoReader(colour_avi) as video:
        assert len(video) == N_FRAMES
        assert video.shape == (HEIGHT, WIDTH, 3) and not video.mono
        frames = list(video)
    assert len(frames) == N_FRAMES
    for k, frame in enumerate(frames):
        assert frame.data.dtype == np.float32 and frame.data.shape == (HEIGHT, WIDTH, 3)
        assert frame.meta.format == "video" and frame.meta.bit_depth == 8
        assert frame.meta.frame_index == k and frame.meta.notes == ()
        # The square is red (R high, G and B low): OpenCV's BGR was converted.
        red = frame.data[20:28, 8 + 4 * k : 14 + 4 * k].reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(red, [1.0, 0.0, 0.0], atol=TOL)
        assert abs(square_position(frame) - (2 + 4 * k)) <= 1
    assert frames[0].meta.header_value("FOURCC") == "MJPG"


def test_random_access_matches_sequential_decoding(colour_avi):
    with VideoReader(colour_avi) as video:
        sequential = [f.data for f in video]
        for index in (7, 2, 3, 9, 0, -1, -10, 5):
            frame = video[index]
            np.testing.assert_array_equal(frame.data, sequential[index])
            assert frame.meta.frame_index == index % N_FRAMES


class _NoSeekCapture:
    """A capture whose seeking fails and whose declared frame count is wrong."""

    def __init__(self, capture, declared):
        self._capture = capture
        self._declared = declared

    def set(self, prop, value):
        return False if prop == cv2.CAP_PROP_POS_FRAMES else self._capture.set(prop, value)

    def get(self, prop):
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(self._declared)
        return self._capture.get(prop)

    def __getattr__(self, name):
        return getattr(self._capture, name)


@pytest.mark.parametrize("declared", [0, 25])
def test_falls_back_to_decoding_when_seeking_or_counting_fails(colour_avi, monkeypatch, declared):
    with VideoReader(colour_avi) as video:
        expected = [f.data for f in video]
    real_open = video_module._open_capture

    def open_without_seeking(path):
        capture = real_open(path)
        return None if capture is None else _NoSeekCapture(capture, declared)

    monkeypatch.setattr(video_module, "_open_capture", open_without_seeking)
    with VideoReader(colour_avi) as video:
        assert len(video) == N_FRAMES  # counted by decoding, not the declared value
        for index in (6, 2, 8):
            np.testing.assert_array_equal(video[index].data, expected[index])


def test_truncated_video_is_counted_honestly(colour_avi, tmp_path):
    data = colour_avi.read_bytes()
    cut = tmp_path / "cut.avi"
    movi, index = data.find(b"movi"), data.find(b"idx1")
    assert 0 < movi < index
    # Keep about half of the frames; the index at the end (the frame count's source) is gone.
    cut.write_bytes(data[: (movi + index) // 2])
    with VideoReader(cut) as video:
        count = len(video)
        assert 0 < count < N_FRAMES
        assert len(list(video)) == count


def test_grey_video_reads_as_mono(grey_avi):
    frame = read_video(grey_avi, index=2)
    assert frame.data.shape == (HEIGHT, WIDTH)
    assert frame.meta.frame_index == 2
    assert any("grey video" in note for note in frame.meta.notes)
    with VideoReader(grey_avi, mono=False) as video:
        assert video[0].data.shape == (HEIGHT, WIDTH, 3)


def test_colour_video_forced_to_mono(colour_avi):
    with VideoReader(colour_avi, mono=True) as video:
        frame = video[1]
    assert frame.data.shape == (HEIGHT, WIDTH)
    assert any("averaged to mono" in note for note in frame.meta.notes)
    np.testing.assert_allclose(frame.data[20, 10], 1 / 3, atol=TOL)


def test_index_out_of_range(colour_avi):
    with pytest.raises(
        FormatError, match=r"colour\.avi: frame index 10 is out of range; the video holds 10 frames"
    ):
        read_video(colour_avi, index=N_FRAMES)
    with pytest.raises(FormatError, match="frame index -11 is out of range"):
        skio.read(colour_avi, index=-11)
    with VideoReader(colour_avi) as video, pytest.raises(IndexError, match="holds 10 frames"):
        video[12]


def test_not_a_video(tmp_path):
    fake = tmp_path / "notes.avi"
    fake.write_text("this is not a video\n" * 10)
    with pytest.raises(FormatError, match=r"notes\.avi: cannot be opened as a video"):
        read_video(fake)
    with pytest.raises(FormatError, match=r"notes\.avi: "):
        skio.read(fake)
    with pytest.raises(MissingFileError, match="no such file"):
        VideoReader(tmp_path / "missing.avi")


def test_video_without_frames(tmp_path):
    path = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (WIDTH, HEIGHT))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG AVI files here")
    writer.release()
    with pytest.raises(
        FormatError, match=r"empty\.avi: (the video holds no frame|cannot be opened)"
    ):
        read_video(path)


def test_closed_reader(colour_avi):
    video = VideoReader(colour_avi)
    video.close()
    assert video.closed
    with pytest.raises(ValueError, match="closed"):
        video[3]


@pytest.mark.parametrize(
    ("name", "count"), [("short_video.avi", 101), ("another_short_video.avi", 45)]
)
def test_real_videos(shared_data: Path, name, count):
    path = shared_data / "pss_moon_avi" / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with VideoReader(path) as video:
        assert len(video) == count
        assert video.shape[:2] == (960, 1280)
        last = video[count - 1]
        middle = video[count // 2]
    assert last.meta.frame_index == count - 1
    assert middle.data.shape[:2] == (960, 1280)
    assert 0.05 < float(middle.data.mean()) < 0.95
    frame = skio.read(path)
    assert frame.meta.format == "video" and frame.data.shape[:2] == (960, 1280)
