"""The HTML report of ``skystack process``: content, escaping, images, plots, size, browser."""

from __future__ import annotations

import base64
import math
import os
import shutil
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from skystack.pipeline.report import (
    GroupReport,
    SessionReport,
    image_data_uri,
    render_report,
    thumbnail,
    write_report,
)

_QUANTITIES = ("fwhm", "background", "stars", "weight", "rms_px")
_START = datetime(2024, 1, 5, 20, 0, 0, tzinfo=UTC)
_EVIL = "/night/<script>alert('x')</script>&.fits"


# --------------------------------------------------------------------------------------------
# synthetic data


def _linear(rng: np.random.Generator, height: int = 120, width: int = 180, colour: bool = False):
    """A faint linear frame: sky at 2 % of full scale, noise, a few Gaussian stars."""
    y, x = np.mgrid[:height, :width]
    image = 0.02 + 0.004 * x / width + rng.normal(0.0, 0.001, (height, width))
    for cx, cy in rng.uniform(0, 1, (12, 2)) * (width, height):
        image += 0.2 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 3.0)
    image = image.astype(np.float32)
    return np.stack([image, 0.9 * image, 0.8 * image], axis=-1) if colour else image


def _row(i: int, path: str) -> dict:
    """Accepted rows, registration failures, unreadable files (keys missing) and a bare reject."""
    if i % 7 == 5:
        return {"path": path, "accepted": False, "reason": "unreadable: truncated file"}
    row = {"path": path, "accepted": True, "reason": None, "stars": 200 + i, "fwhm": 2.0 + 0.01 * i,
           "eccentricity": 0.3, "background": 0.02 + 1e-5 * i, "noise": 1.2e-3, "score": 1.0,
           "method": "stars", "transform": [[1, 0, i], [0, 1, 0], [0, 0, 1]], "matched_stars": 50,
           "rms_px": 0.2 + 0.001 * i, "mirrored": False, "stats": None, "exposure": 300.0,
           "weight": 1.0 - 0.001 * i, "rejected_fraction": 0.012, "reference": i == 0}  # fmt: skip
    if i % 7 == 3:
        row.update(accepted=False, reason="registration failed: 3 stars matched, need 6",
                   rms_px=None, transform=None, weight=None, rejected_fraction=None)  # fmt: skip
    if i % 11 == 10:
        row.update(accepted=False, reason=None, weight=None, rejected_fraction=None)
    return row


def _group(n: int, rng: np.random.Generator, *, name: str = "M42-Ha-300s", times: str = "all",
           paths: list[str] | None = None, preview: int = 96) -> GroupReport:  # fmt: skip
    """A group of ``n`` lights; ``times`` is "all", "some" (a plotted frame lacks one) or "none"."""
    paths = paths or [f"/night/lights/M42_{i:05d}.fits" for i in range(n)]
    rows = [_row(i, p) for i, p in enumerate(paths)]
    thumbs = [thumbnail(_linear(rng), size=64) for _ in range(4)]
    frame_times = {}
    for i, p in enumerate(paths):
        if times == "all" or (times == "some" and i != 1):
            frame_times[p] = (_START + timedelta(seconds=10 * i)).isoformat()
    small = thumbnail(_linear(rng, colour=True), size=preview)
    rejection = rng.uniform(0.0, 0.04, (120, 180)).astype(np.float32)
    rejection[:10] = np.nan
    return GroupReport(
        name=name,
        summary={
            "target": "M42",
            "filter": "Ha",
            "exposure": 300.0,
            "gain": 100,
            "lights": n,
            "darks": 20,
            "flats": 0,
            "bias": 30,
            "dark-flats": 0,
            "notes": ["no flats found: not flat-fielded"],
        },  # fmt: skip
        sidecar={
            "reference": paths[0],
            "settings": {},
            "frames": rows,
            "trails": [
                {
                    "frame": 1,
                    "start": [0.0, 5.0],
                    "end": [179.0, 90.0],
                    "width": 7.5,
                    "path": paths[min(2, n - 1)],
                }
            ],
        },  # fmt: skip
        frame_times=frame_times,
        thumbnails={p: thumbs[i % 4] for i, p in enumerate(paths) if i % 7 != 5},
        masters={
            "bias": thumbnail(_linear(rng), size=48),
            "flat": thumbnail(_linear(rng), size=48),
        },
        rejection_map=rejection,
        before=small,
        after=small[::-1].copy(),
        outputs={"stack (FITS)": f"{name}/{name}.fits", "preview (JPEG)": f"{name}/{name}.jpg"},
    )


def _session(*groups: GroupReport, recipe: str = '[stack]\ncombine = "mean"\n') -> SessionReport:
    return SessionReport(
        session="/night", recipe_toml=recipe, groups=groups,
        unused=(("/night/notes.txt", "not an image"), ("/night/x<b>.fits", "unreadable")),
        timings={"calibrate": 12.5, "register": 80.0, "stack": 30.25},
        created="2024-01-06T08:00:00+00:00", version="0.1.0",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# a small parser for what users see


class _Page(HTMLParser):
    """Frame table rows (attributes, cell texts, images), plots and all images of a report."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[dict] = []
        self.plots: list[dict] = []
        self.images: list[dict] = []
        self.pre: list[str] = []
        self._in_frames = self._in_pre = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "table" and "frames" in classes:
            self._in_frames = True
        elif tag == "tr" and self._in_frames:
            self.rows.append({"class": classes, "cells": [], "images": []})
        elif tag in ("td", "th") and self._in_frames and self.rows:
            self._cell = []
        elif tag == "img":
            self.images.append(a)
            if self._in_frames and self.rows:
                self.rows[-1]["images"].append(a)
        elif tag == "svg" and "plot" in classes:
            self.plots.append({"quantity": a.get("data-quantity"), "series": {}, "text": []})
        elif tag == "path" and "points" in classes and self.plots:
            self.plots[-1]["series"][classes[-1]] = a
        elif tag == "pre":
            self._in_pre = True
            self.pre.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_frames = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1]["cells"].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "pre":
            self._in_pre = False
        elif tag == "svg" and self.plots:
            self.plots[-1]["closed"] = True

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_pre:
            self.pre[-1] += data
        if self.plots and not self.plots[-1].get("closed"):
            self.plots[-1]["text"].append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _frame_rows(page: _Page) -> list[dict]:
    return [r for r in page.rows if r["cells"] and r["cells"][0] != "#"]


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/jpeg;base64,")
    raw = np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), dtype=np.uint8)
    image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    assert image is not None, "not a JPEG"
    return image


def _has_value(row: dict, key: str) -> bool:
    value = row.get(key)
    return isinstance(value, int | float) and math.isfinite(value)


# --------------------------------------------------------------------------------------------
# thumbnail and image_data_uri


@pytest.mark.parametrize(("shape", "expected"), [((300, 450), (107, 160)), ((450, 300), (160, 107)),
                         ((90, 60, 3), (160, 107, 3)), ((1000, 1000), (160, 160))])  # fmt: skip
def test_thumbnail_keeps_aspect_and_longest_side(rng, shape, expected):
    height, width = shape[:2]
    image = _linear(rng, height, width, colour=len(shape) == 3)
    small = thumbnail(image)
    assert small.dtype == np.uint8
    assert small.shape == expected
    assert max(small.shape[:2]) == 160
    assert thumbnail(image, size=40).shape[:2] == tuple(round(s * 40 / 160) for s in expected[:2])


def test_thumbnail_spreads_a_faint_linear_image_over_the_display_range(rng):
    image = _linear(rng, 400, 600)  # everything below 25 % of full scale, sky at 2 %
    image[:20, :20] = np.nan  # missing data must not spoil the stretch
    small = thumbnail(image)
    assert 30 < np.median(small) < 120  # the sky is visible, not black, not white
    assert small.max() > 200  # stars are bright
    assert np.percentile(small, 1) < 40  # and there is a dark end
    assert np.isnan(image[0, 0])  # the input is not modified


def test_thumbnail_rejects_a_cube():
    with pytest.raises(ValueError, match=r"expected an \(H, W\) or \(H, W, 3\) image"):
        thumbnail(np.zeros((4, 10, 10), np.float32))


def test_image_data_uri_is_a_jpeg_in_rgb_order():
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    decoded = _decode(image_data_uri(red))
    assert decoded.shape == (20, 30, 3)
    b, g, r = decoded[10, 15]  # OpenCV decodes to BGR
    assert r > 240 and g < 20 and b < 20
    grey = _decode(image_data_uri(np.full((7, 9), 128, np.uint8)))
    assert grey.shape == (7, 9)
    with pytest.raises(TypeError, match="uint8"):
        image_data_uri(np.zeros((4, 4), np.float32))


# --------------------------------------------------------------------------------------------
# content


@pytest.fixture
def group(rng) -> GroupReport:
    return _group(30, rng, times="some")


def test_every_frame_has_one_row_with_its_name_and_status(group):
    page = _parse(render_report(_session(group)))
    rows = _frame_rows(page)
    frames = group.sidecar["frames"]
    assert len(rows) == len(frames)
    for cells, frame in zip((r["cells"] for r in rows), frames, strict=True):
        assert cells[2] == Path(frame["path"]).name
    for row, frame in zip(rows, frames, strict=True):
        status = row["cells"][-1]
        if frame["accepted"]:
            assert status.startswith("accepted") and "rejected" not in row["class"]
        else:
            assert status == (frame["reason"] or "rejected")
            assert "rejected" in row["class"]
    # Values are formatted; missing ones (keys absent or None) are blank cells.
    first, unreadable = rows[0]["cells"], rows[5]["cells"]
    assert first[4:11] == ["2.00", "200", "0.02", "0.0012", "1.000", "0.20", "1.2"]
    assert first[-1] == "accepted (reference)"
    assert unreadable[4:11] == [""] * 7
    assert rows[1]["cells"][3] == ""  # no time known
    assert rows[0]["cells"][3] == "2024-01-05 20:00:00 UTC"
    assert len(rows[0]["images"]) == 1 and not rows[5]["images"]  # no thumbnail, no image


def test_report_shows_the_sections_in_order(group):
    text = render_report(_session(group))
    keys = [
        "<h1>skystack report</h1>", "Session <code>/night</code>", "2024-01-06T08:00:00+00:00",
        "0.1.0", "2 min 03 s", "register", "M42-Ha-300s</a>: 21 of 30 lights used",
        '<section id="group-M42-Ha-300s">', "no flats found",
        'href="M42-Ha-300s/M42-Ha-300s.fits"', "Linear stack", "master bias", "master flat",
        "rejected at each pixel: mean", 'class="plot"', "M42_00002.fits: from (0, 5) to (179, 90)",
        'class="frames"', '<section id="unused">', "notes.txt", "not an image",
        '<section id="recipe">',
    ]  # fmt: skip
    positions = [text.find(k) for k in keys]
    assert all(p >= 0 for p in positions), [
        k for k, p in zip(keys, positions, strict=True) if p < 0
    ]
    assert positions == sorted(positions)
    assert _parse(text).pre == ['[stack]\ncombine = "mean"\n']
    assert "<script" not in text and "http://" not in text and "https://" not in text


def test_strings_from_files_are_escaped(rng):
    paths = [f"/night/ok_{i}.fits" for i in range(6)]
    paths[2] = _EVIL
    group = _group(6, rng, name="M<42>", paths=paths)
    frames = group.sidecar["frames"]
    frames[3]["reason"] = "bad header <script>x</script>"
    group.summary["target"] = "<img src=x onerror=alert(1)>"
    recipe = '[note]\ntext = "</pre><script>alert(1)</script>"\n'
    text = render_report(_session(group, recipe=recipe))
    assert "<script" not in text and "<img src=x" not in text
    page = _parse(text)
    rows = _frame_rows(page)
    assert rows[2]["cells"][2] == Path(_EVIL).name
    assert rows[3]["cells"][-1] == "bad header <script>x</script>"
    assert page.pre == [recipe]
    assert "x&lt;b&gt;.fits" in text


@pytest.mark.parametrize(("times", "label"), [("all", "time (UTC)"), ("some", "frame number")])
def test_one_plot_per_quantity_with_a_point_per_frame_that_has_a_value(rng, times, label):
    group = _group(30, rng, times=times)
    page = _parse(render_report(_session(group)))
    assert [p["quantity"] for p in page.plots] == list(_QUANTITIES)
    frames = group.sidecar["frames"]
    for plot in page.plots:
        key = plot["quantity"]
        counts = {}
        for status in ("accepted", "rejected"):
            series = plot["series"].get(status)
            count = 0 if series is None else int(series["data-points"])
            if series is not None:
                assert series["d"].count("M") == count
            counts[status] = count
        assert counts["accepted"] == sum(f["accepted"] and _has_value(f, key) for f in frames)
        assert counts["rejected"] == sum(not f["accepted"] and _has_value(f, key) for f in frames)
        assert label in "".join(plot["text"])
    # Rejected frames with quality figures are shown; the unregistered ones have no residual.
    assert int(page.plots[0]["series"]["rejected"]["data-points"]) == 5
    assert int(page.plots[4]["series"]["rejected"]["data-points"]) == 1


def test_images_are_jpeg_data_uris_of_the_right_size(group):
    page = _parse(render_report(_session(group)))
    assert page.images
    for image in page.images:
        decoded = _decode(image["src"])
        assert decoded.shape[:2] == (int(image["height"]), int(image["width"]))
    rows = _frame_rows(page)
    thumb = group.thumbnails[group.sidecar["frames"][0]["path"]]
    assert _decode(rows[0]["images"][0]["src"]).shape == thumb.shape
    previews = [i for i in page.images if i.get("class") == "preview"]
    assert [_decode(i["src"]).shape for i in previews] == [group.before.shape, group.after.shape]
    (rejection,) = [i for i in page.images if i.get("class") == "map"]
    assert _decode(rejection["src"]).shape == (120, 180, 3)


def test_large_previews_are_scaled_down_and_rendering_is_pure(rng, group):
    big = np.zeros((2000, 3000, 3), np.uint8)
    report = _session(replace(group, before=big, after=None, rejection_map=np.zeros((3000, 2000))))
    text = render_report(report)
    assert text == render_report(report)
    page = _parse(text)
    (preview,) = [i for i in page.images if i.get("class") == "preview"]
    assert max(_decode(preview["src"]).shape[:2]) < 1000
    assert big.shape == (2000, 3000, 3) and not big.any()


def test_a_session_without_groups_renders():
    text = render_report(_session())
    assert "no groups were stacked" in text and 'class="frames"' not in text


def test_two_thousand_frames_stay_a_reasonable_size(rng):
    n = 2000
    group = _group(n, rng, times="all")
    text = render_report(_session(group))
    page = _parse(text)
    assert len(_frame_rows(page)) == n
    thumbs = sum(len(image_data_uri(group.thumbnails[f["path"]])) for f in group.sidecar["frames"]
                 if f["path"] in group.thumbnails)  # fmt: skip
    # Beyond the thumbnails themselves, under 1.5 kB per frame (table row plus plot points).
    assert len(text) - thumbs < 1500 * n
    assert len(text) < 20_000_000
    assert max(len(p["series"]["accepted"]["d"]) for p in page.plots) < 20 * n


# --------------------------------------------------------------------------------------------
# writing


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "report.html")


def test_write_report_writes_atomically(tmp_path, group):
    report = _session(group)
    out = tmp_path / "report.html"
    out.write_text("old report")
    assert write_report(report, out) == out
    assert out.read_text(encoding="utf-8") == render_report(report)
    assert _leftovers(tmp_path) == []


def test_write_report_keeps_the_old_file_when_rendering_fails(tmp_path, group):
    out = tmp_path / "report.html"
    out.write_text("old report")
    broken = replace(group, before=np.zeros((10, 10), np.float32))  # not a display image
    with pytest.raises(TypeError, match="uint8"):
        write_report(_session(broken), out)
    assert out.read_text() == "old report"
    assert _leftovers(tmp_path) == []


def test_write_report_keeps_the_old_file_when_writing_fails(tmp_path, group, monkeypatch):
    out = tmp_path / "report.html"
    out.write_text("old report")
    original = Path.write_text

    def half_then_fail(self, data, *args, **kwargs):
        original(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError("simulated I/O error")

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(OSError, match="simulated"):
        write_report(_session(group), out)
    monkeypatch.undo()
    assert out.read_text() == "old report"
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# a real browser


def _chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={cwd / 'profile'}", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd, check=True)


def _colour_pixels(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    bgr = np.array(rgb[::-1], dtype=np.int16)
    return int(np.all(np.abs(image[..., :3].astype(np.int16) - bgr) <= tolerance, axis=-1).sum())


def test_the_report_renders_in_a_headless_browser(tmp_path, rng):
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed")
    group = _group(24, rng, times="all", preview=64)
    page = write_report(_session(group), tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri(), cwd=tmp_path)
    image = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (2400, 1280)
    # The plots drew their markers (accepted blue, rejected red) and the table its rejected rows.
    assert _colour_pixels(image, (0x1F, 0x77, 0xB4)) > 500
    assert _colour_pixels(image, (0xD6, 0x27, 0x28)) > 100
    assert _colour_pixels(image, (0xFD, 0xEC, 0xEA), tolerance=3) > 5000
    bands = [image[y : y + 200].std() for y in range(0, 1600, 200)]
    assert min(bands) > 5, bands  # content all the way down, nothing blank
    if os.environ.get("SKYSTACK_WRITE_SCREENSHOT") == "1":
        _write_docs_screenshot(shot)

    dom = _chromium("--dump-dom", page.as_uri(), cwd=tmp_path).stdout
    rendered = _parse(dom)
    assert len(_frame_rows(rendered)) == 24
    assert [p["quantity"] for p in rendered.plots] == list(_QUANTITIES)
    assert dom.count('<svg class="plot"') == 5


def _write_docs_screenshot(shot: Path) -> None:
    """Keep the browser's picture as the docs' illustration (asked for by the environment)."""
    docs = Path(__file__).resolve().parents[2] / "docs"
    docs.mkdir(exist_ok=True)
    shutil.copyfile(shot, docs / "report_screenshot.png")
