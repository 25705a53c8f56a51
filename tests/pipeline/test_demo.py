"""The demo: simulated session in, a FITS and a PNG showing a star field out; re-runs resume."""

from __future__ import annotations

import json

import numpy as np
from scipy import ndimage

import skystack
from skystack.cli.main import main
from skystack.detect import estimate_noise


def test_demo_writes_fits_and_png_of_a_star_field(tmp_path, capsys):
    from skystack.pipeline.demo import run_demo

    folder = tmp_path / "demo"
    result = run_demo(folder)
    # Registration of the calibrated lights matches the simulator's true transforms.
    assert len(result.registration_errors_px) == 12
    assert float(np.median(result.registration_errors_px)) < 0.05
    assert max(result.registration_errors_px) < 0.1

    fits_frame = skystack.read(folder / "demo_light.fits")
    assert fits_frame.data.dtype == np.float32 and fits_frame.meta.bit_depth == 32
    assert fits_frame.data.shape == (768, 1024, 3)  # calibrated and debayered
    assert (folder / "calibrated" / "masters" / "master_flat.fits").exists()
    assert any("skystack demo" in str(v) for k, v, _ in fits_frame.meta.header if k == "HISTORY")

    picture = skystack.read(folder / "demo_light.png")
    assert picture.meta.bit_depth == 8
    image = picture.data.mean(axis=2)
    # Stretched for display: a grey sky, and many separate bright stars on it.
    assert 0.1 < np.median(image) < 0.4
    peaks = (image == ndimage.maximum_filter(image, size=9)) & (image > 0.5)
    _, star_count = ndimage.label(ndimage.binary_dilation(peaks, iterations=2))
    assert star_count > 100

    lights = sorted((folder / "session" / "lights").glob("*.fits"))
    assert len(lights) == 12
    truth = folder / "session" / "truth" / "truth.json"
    assert truth.exists()

    # Every calibrated light is registered and stacked; the stack is much less noisy.
    report = json.loads((folder / "demo_stack.json").read_text())
    assert all(row["accepted"] for row in report["frames"])
    stack = skystack.read(folder / "demo_stack.fits").data
    assert stack.shape == (768, 1024, 3)
    single_noise = estimate_noise(fits_frame.data[100:-100, 100:-100, 1])
    stack_noise = estimate_noise(stack[100:-100, 100:-100, 1])
    assert stack_noise < single_noise / 2.5  # sqrt(12) = 3.5 for a perfect mean
    assert (folder / "demo_stack.png").exists()
    # The stack, finished by skystack enhance: a 16-bit picture with a grey, flat sky.
    finished = skystack.read(folder / "demo_enhanced.tif")
    assert finished.meta.bit_depth == 16 and finished.data.shape == (768, 1024, 3)
    assert 0.1 < np.median(finished.data) < 0.35
    assert (folder / "demo_enhanced.jpg").exists()

    # Outputs are not replaced silently.
    capsys.readouterr()
    assert main(["demo", str(folder)]) == 2
    assert "--overwrite" in capsys.readouterr().err

    # With --overwrite the simulated session is reused, not simulated again.
    before = [p.stat().st_mtime_ns for p in lights]
    assert main(["demo", str(folder), "--overwrite"]) == 0
    assert [p.stat().st_mtime_ns for p in lights] == before
