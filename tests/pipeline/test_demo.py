"""The demo: a simulated session in, ``process`` outputs and a report out; re-runs resume."""

from __future__ import annotations

import numpy as np

import skystack
from skystack.cli.main import main
from skystack.detect import estimate_noise


def test_demo_processes_the_sample_session_end_to_end(tmp_path, capsys):
    from skystack.pipeline.demo import run_demo

    folder = tmp_path / "demo"
    result = run_demo(folder)
    # Registration of the calibrated lights matches the simulator's true transforms.
    assert len(result.registration_errors_px) == 12
    assert float(np.median(result.registration_errors_px)) < 0.05
    assert max(result.registration_errors_px) < 0.1

    lights = sorted((folder / "session" / "lights").glob("*.fits"))
    assert len(lights) == 12
    assert (folder / "session" / "truth" / "truth.json").exists()

    stack_path = next(p for p in result.outputs if p.suffix == ".fits")
    stack = skystack.read(stack_path).data
    assert stack.shape == (768, 1024, 3)  # calibrated, debayered, registered, stacked
    history = skystack.read(stack_path).meta.header
    assert any("recipe [stack]" in str(v) for k, v, _ in history if k == "HISTORY")
    # The stack is much less noisy than one registered light.
    registered = sorted(folder.glob("results/cache/work/*/registered/*.fits"))
    single = skystack.read(registered[0]).data
    single_noise = estimate_noise(single[100:-100, 100:-100, 1])
    stack_noise = estimate_noise(stack[100:-100, 100:-100, 1])
    assert stack_noise < single_noise / 2.5  # sqrt(12) = 3.5 for a perfect mean
    # The finished picture: a 16-bit TIFF with a grey, flat sky, and its JPEG.
    finished = skystack.read(next(p for p in result.outputs if p.suffix == ".tif"))
    assert finished.meta.bit_depth == 16 and finished.data.shape == (768, 1024, 3)
    assert 0.1 < np.median(finished.data) < 0.35
    assert any(p.suffix == ".jpg" and p.is_file() for p in result.outputs)
    html = result.report.read_text()
    assert result.report == folder / "results" / "report.html"
    assert all(light.name in html for light in lights)

    # A re-run through the command line reuses the session and the cache.
    before = [p.stat().st_mtime_ns for p in [*lights, stack_path]]
    capsys.readouterr()
    assert main(["demo", str(folder)]) == 0
    assert [p.stat().st_mtime_ns for p in [*lights, stack_path]] == before
    assert "open the report:" in capsys.readouterr().out
