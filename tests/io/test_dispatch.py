"""Format detection, bad files, folder expansion, atomic and non-clobbering writes."""

from __future__ import annotations

import os

import numpy as np
import pytest

import skystack
from skystack.errors import FileAccessError, FormatError, MissingFileError, OutputExistsError
from skystack.io import detect_format, find_images
from skystack.io.display import display_stretch, midtones_transfer


def test_detects_format_from_magic_when_extension_is_unknown(tmp_path):
    path = tmp_path / "image.fits"
    skystack.write(np.zeros((4, 4), np.float32), path)
    renamed = tmp_path / "image.dat"
    os.replace(path, renamed)
    assert detect_format(renamed) == "fits"
    assert skystack.read(renamed).data.shape == (4, 4)


@pytest.mark.parametrize("name", ["frame.fits", "frame.cr2", "frame.nef", "frame.ser", "frame.png"])
def test_text_file_with_image_extension(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not an image\n")
    with pytest.raises(FormatError, match=rf"{name}: not a .*it holds text"):
        skystack.read(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.fits"
    path.touch()
    with pytest.raises(FormatError, match=r"empty\.fits: .*empty \(0 bytes\)"):
        skystack.read(path)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(MissingFileError, match=r"nothere\.fits: no such file"):
        skystack.read(tmp_path / "nothere.fits")
    with pytest.raises(FileAccessError, match="is a folder"):
        skystack.read(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path):
    path = tmp_path / "secret.fits"
    skystack.write(np.zeros((4, 4), np.float32), path)
    path.chmod(0)
    with pytest.raises(FileAccessError, match="permission denied"):
        skystack.read(path)


def test_unknown_binary_format(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(FormatError, match=r"blob\.bin: unknown image format"):
        skystack.read(path)


def test_write_refuses_unknown_extension_and_existing_output(tmp_path):
    with pytest.raises(FormatError, match=r"cannot write \.bmp"):
        skystack.write(np.zeros((2, 2), np.float32), tmp_path / "x.bmp")
    path = tmp_path / "x.fits"
    skystack.write(np.zeros((2, 2), np.float32), path)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        skystack.write(np.ones((2, 2), np.float32), path)
    skystack.write(np.ones((2, 2), np.float32), path, overwrite=True)
    assert skystack.read(path).data.max() == 1.0


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    import skystack.io.fits as fits_module

    def broken_writer(data, path, **kwargs):
        path.write_bytes(b"SIMPLE  = half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fits_module, "write_fits", broken_writer)
    from skystack.errors import OutOfDiskError

    with pytest.raises(OutOfDiskError, match=r"out\.fits: no space left"):
        skystack.write(np.zeros((2, 2), np.float32), tmp_path / "out.fits")
    assert list(tmp_path.iterdir()) == []


def test_find_images_expands_folders_and_globs(tmp_path):
    for name in ("b.fits", "a.fits", "notes.txt", ".hidden.fits"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in find_images([tmp_path])] == ["a.fits", "b.fits"]
    assert [p.name for p in find_images([str(tmp_path / "*.fits")])] == ["a.fits", "b.fits"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingFileError, match="folder holds no image files"):
        find_images([empty])
    with pytest.raises(MissingFileError, match="pattern matches no file"):
        find_images([str(tmp_path / "*.xisf")])


def test_integer_arrays_are_scaled_by_their_type(tmp_path):
    path = tmp_path / "u8.fits"
    skystack.write(np.array([[0, 255]], dtype=np.uint8), path)
    np.testing.assert_array_equal(skystack.read(path).data, [[0.0, 1.0]])


def test_midtones_transfer_fixed_points():
    x = np.array([0.0, 0.1, 0.5, 1.0], np.float32)
    y = midtones_transfer(x, 0.1)
    assert y[0] == 0.0 and y[-1] == pytest.approx(1.0)
    assert y[1] == pytest.approx(0.5)
    assert np.all(np.diff(y) > 0)


def test_display_stretch_puts_background_at_target(rng):
    sky = rng.normal(0.02, 0.001, size=(200, 300)).astype(np.float32)
    sky[100, 100] = 0.9  # a star stays bright
    out = display_stretch(sky)
    assert np.median(out) == pytest.approx(0.25, abs=0.01)
    assert out[100, 100] > 0.95
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_display_stretch_per_channel_neutralises_a_colour_cast(rng):
    sky = rng.normal(0.02, 0.001, size=(100, 100, 3)).astype(np.float32)
    sky[..., 1] += 0.03  # green light pollution
    out = display_stretch(sky)
    medians = np.median(out.reshape(-1, 3), axis=0)
    assert np.ptp(medians) < 0.01


def test_display_stretch_handles_adu_range_and_nan():
    data = np.linspace(0, 65535, 10000, dtype=np.float32).reshape(100, 100)
    data[0, 0] = np.nan
    out = display_stretch(data)
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def test_binary_garbage_named_raw_is_judged_by_libraw(tmp_path, rng):
    path = tmp_path / "frame.rw2"
    path.write_bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    with pytest.raises(FormatError, match=r"frame\.rw2: .*raw"):
        skystack.read(path)


def test_outputs_get_normal_file_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = skystack.write(np.zeros((2, 2), np.float32), tmp_path / "out.fits")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
