"""The HTML report of ``skystack process``: one static, self-contained file per run.

Everything is inline (CSS, JPEG data URIs, SVG plots), so the file can be mailed or archived
alone, and nothing needs JavaScript. The content follows what Siril and PixInsight
SubframeSelector users look for: per group the summary, the outputs, before/after previews,
the calibration masters, the pixel rejection map, the frame quality over the night, satellite
trails, and a table with one row per light; then the files not used and the recipe.

:func:`render_report` is pure (report in, HTML text out); :func:`write_report` writes it
atomically. Plots draw each series as one SVG ``<path>`` of zero-length segments with round
(accepted) or square (rejected) caps, so a night of thousands of frames stays small.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

import cv2
import numpy as np
import numpy.typing as npt

from skystack.errors import GeometryError
from skystack.io._atomic import atomic_path
from skystack.io.display import display_stretch

__all__ = [
    "GroupReport",
    "SessionReport",
    "image_data_uri",
    "render_report",
    "thumbnail",
    "write_report",
]

# Matplotlib's viridis sampled at 9 evenly spaced points (perceptually uniform, colour-blind safe).
_VIRIDIS = "440154 482878 3e4989 31688e 26828e 1f9e89 35b779 6ece58 fde725".split()
# Sidecar key, plot title, y axis label with unit.
_PLOTS = (
    ("fwhm", "FWHM", "FWHM (px)"),
    ("background", "Background", "background (fraction of full scale)"),
    ("stars", "Star count", "stars detected"),
    ("weight", "Weight", "stacking weight (relative)"),
    ("rms_px", "Registration residual", "residual RMS (px)"),
)
_COLUMNS = (
    "#||file|time|FWHM (px)|stars|background|noise|weight|reg. RMS (px)|rejected px (%)|status"
)
_MASTERS = ("bias", "dark", "flat", "dark-flat")
_TIME_STEPS = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_PREVIEW_SIDE, _MASTER_SIDE, _MAP_SIDE = 960, 240, 640
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 480, 260, 62, 12, 26, 44  # plot geometry (SVG units)
_TREND_MAX = 300  # join accepted points by a faint line up to this many (denser: just clutter)
_ACCEPTED, _REJECTED = "#1f77b4", "#d62728"
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;color:#222;background:#fff;margin:0 auto;
max-width:1400px;padding:0 16px 48px}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #ccd;padding-bottom:4px;
margin-top:2em}h3{margin:1.4em 0 .4em}code,pre{font-family:ui-monospace,monospace}
pre{background:#f4f4f6;padding:12px;overflow-x:auto;font-size:13px}.meta{color:#555}
table{border-collapse:collapse}th,td{padding:3px 6px;border-bottom:1px solid #e3e3e8;
text-align:left;vertical-align:middle}th{background:#f4f4f6;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.frames td{white-space:nowrap}table.frames td.status{white-space:normal;min-width:11em}
.scroll{overflow-x:auto;max-width:100%}tr.rejected{background:#fdecea}
tr.rejected td.status{color:#b00020;font-weight:600}dl{display:grid;
grid-template-columns:max-content auto;gap:2px 16px}dt{color:#555}dd{margin:0}
figure{margin:0}figcaption{font-size:.9em;color:#555}.figures{display:flex;flex-wrap:wrap;
gap:12px;align-items:flex-start}.previews{display:grid;gap:12px;
grid-template-columns:repeat(auto-fit,minmax(320px,1fr))}img.preview{max-width:100%;height:auto}
.plots{display:grid;gap:8px;grid-template-columns:repeat(auto-fill,minmax(380px,1fr))}
svg.plot{width:100%;max-width:560px;height:auto}svg text{font-size:11px;fill:#333}
img.thumb{width:96px;height:auto;display:block}img.map{max-width:100%;height:auto}
"""


@dataclass(frozen=True, eq=False)
class GroupReport:
    """What the report shows of one stacked group (one target, filter and exposure).

    ``summary`` is shown in its own order as a list of key/value pairs (``notes``, a list of
    lines, as a list). ``sidecar`` is the stack's sidecar JSON; ``frame_times`` and
    ``thumbnails`` are keyed by the input path as written in the sidecar's rows. Images are
    uint8 display images ``(H, W)`` or ``(H, W, 3)`` (R, G, B); ``rejection_map`` is float in
    [0, 1]. ``outputs`` maps a label to a path relative to the report.
    """

    name: str
    summary: dict[str, Any]
    sidecar: dict[str, Any]
    frame_times: Mapping[str, str | None]
    thumbnails: Mapping[str, np.ndarray]
    masters: Mapping[str, np.ndarray]
    rejection_map: np.ndarray | None
    before: np.ndarray | None
    after: np.ndarray | None
    outputs: Mapping[str, str]


@dataclass(frozen=True, eq=False)
class SessionReport:
    """Everything :func:`render_report` needs for one ``skystack process`` run."""

    session: str
    recipe_toml: str
    groups: tuple[GroupReport, ...]
    unused: tuple[tuple[str, str], ...]
    timings: Mapping[str, float]
    created: str
    version: str


@dataclass(frozen=True)
class _XAxis:
    """Per-frame x values: seconds since ``start``, or 1-based frame numbers when start is None."""

    values: tuple[float | None, ...]
    label: str
    start: datetime | None


def thumbnail(image: npt.ArrayLike, *, size: int = 160) -> npt.NDArray[np.uint8]:
    """Small display version of a linear image: area downsampling, then the automatic stretch.

    Parameters
    ----------
    image : array_like
        Linear float image ``(H, W)`` or ``(H, W, 3)``; NaN and Inf are ignored.
    size : int
        Length of the longest side of the result (px).

    Returns
    -------
    ndarray uint8
        ``(h, w)`` or ``(h, w, 3)`` with ``max(h, w) == size`` and the input's aspect ratio,
        stretched with :func:`skystack.io.display.display_stretch` (median at a quarter of
        full brightness).
    """
    data = np.asarray(image, dtype=np.float32)
    if data.size == 0 or not (data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 3)):
        raise GeometryError(f"thumbnail: expected an (H, W) or (H, W, 3) image, got {data.shape}")
    if size < 1:
        raise ValueError(f"thumbnail: size must be at least 1 px, got {size}")
    finite = np.isfinite(data)
    if not finite.all():
        fill = float(np.median(data[finite])) if finite.any() else 0.0
        data = np.where(finite, data, np.float32(fill))
    small = _resized(data, size, exact=True)
    return np.clip(np.rint(display_stretch(small) * 255), 0, 255).astype(np.uint8)


def image_data_uri(image: npt.ArrayLike, *, quality: int = 85) -> str:
    """Encode a uint8 display image as a JPEG ``data:`` URI for an ``<img src=...>``.

    Parameters
    ----------
    image : array_like uint8
        ``(H, W)`` grey or ``(H, W, 3)`` R, G, B.
    quality : int
        JPEG quality, 0 to 100.

    Returns
    -------
    str
        ``"data:image/jpeg;base64,..."``.
    """
    data = np.asarray(image)
    if data.dtype != np.uint8:
        raise TypeError(f"image_data_uri: expected a uint8 display image, got {data.dtype}")
    if data.size == 0 or not (data.ndim == 2 or (data.ndim == 3 and data.shape[2] == 3)):
        raise GeometryError(f"image_data_uri: expected (H, W) or (H, W, 3), got {data.shape}")
    bgr = data if data.ndim == 2 else cv2.cvtColor(data, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"image_data_uri: OpenCV could not encode a {data.shape} image as JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode("ascii")


def render_report(report: SessionReport) -> str:
    """The report as one self-contained HTML document (no external resources, no JavaScript).

    Parameters
    ----------
    report : SessionReport
        What to show; every string from files or headers is escaped.

    Returns
    -------
    str
        The HTML text.
    """
    total = sum(float(s) for s in report.timings.values())
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>skystack report: {_e(report.session)}</title>\n<style>{_CSS}</style>\n</head>\n"
        "<body>\n<h1>skystack report</h1>\n"
        f'<p class="meta">Session <code>{_e(report.session)}</code> · created '
        f"{_e(report.created)} · skystack {_e(report.version)} · total time "
        f"{_duration(total)}</p>\n",
        _timings_html(report.timings, total),
        _groups_summary_html(report.groups),
    ]
    parts += [_group_html(group, i) for i, group in enumerate(report.groups)]
    parts.append(_unused_html(report.unused))
    parts.append(
        f'<section id="recipe">\n<h2>Recipe</h2>\n<p>Run it again with '
        f"<code>skystack process SESSION --recipe recipe.toml</code>:</p>\n"
        f"<pre>{_e(report.recipe_toml)}</pre>\n</section>\n</body>\n</html>\n"
    )
    return "".join(parts)


def write_report(report: SessionReport, path: str | os.PathLike[str]) -> Path:
    """Render ``report`` and write it to ``path`` atomically (an existing file is replaced).

    Parameters
    ----------
    report : SessionReport
        What to show.
    path : path-like
        The HTML file to write; its folder must exist.

    Returns
    -------
    Path
        ``path``.
    """
    text = render_report(report)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


# --------------------------------------------------------------------------------------------
# sections


def _timings_html(timings: Mapping[str, float], total: float) -> str:
    if not timings:
        return ""
    rows = "".join(
        f'<tr><td>{_e(step)}</td><td class="num">{_duration(float(s))}</td>'
        f'<td class="num">{100 * float(s) / total if total > 0 else 0:.0f} %</td></tr>'
        for step, s in timings.items()
    )
    return (
        f'<table class="timings"><thead><tr><th>step</th><th>time</th><th>share</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>\n"
    )


def _groups_summary_html(groups: Sequence[GroupReport]) -> str:
    items = []
    for group in groups:
        rows = _rows(group)
        used = sum(1 for r in rows if r.get("accepted") is True)
        items.append(
            f'<li><a href="#group-{_slug(group.name)}">{_e(group.name)}</a>: '
            f"{used} of {len(rows)} lights used</li>"
        )
    body = "".join(items) or "<li>no groups were stacked</li>"
    return f'<h2>Groups</h2>\n<ul class="groups">{body}</ul>\n'


def _group_html(group: GroupReport, index: int) -> str:
    rows = _rows(group)
    axis = _x_axis(rows, group.frame_times)
    return "".join(
        [
            f'<section id="group-{_slug(group.name)}">\n<h2>{_e(group.name)}</h2>\n',
            _summary_html(group, rows),
            _outputs_html(group.outputs),
            _previews_html(group),
            _masters_html(group.masters),
            _rejection_html(group.rejection_map, index),
            '<h3>Quality over the night</h3>\n<div class="plots">',
            *(_plot_svg(rows, axis, key, title, label) for key, title, label in _PLOTS),
            "</div>\n",
            _trails_html(group.sidecar.get("trails") or []),
            _frames_html(rows, group, axis),
            "</section>\n",
        ]
    )


def _summary_html(group: GroupReport, rows: Sequence[Mapping[str, Any]]) -> str:
    used = sum(1 for r in rows if r.get("accepted") is True)
    items = [("lights used", f"{used} of {len(rows)}")]
    if group.sidecar.get("reference"):
        items.append(("reference frame", _name(group.sidecar["reference"])))
    notes: list[str] = []
    for key, value in group.summary.items():
        if key == "notes":
            notes = [str(v) for v in (value if isinstance(value, list | tuple) else [value])]
        else:
            items.append((str(key), _value(key, value)))
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
    listed = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return f"<dl>{body}</dl>\n" + (f'<ul class="notes">{listed}</ul>\n' if listed else "")


def _outputs_html(outputs: Mapping[str, str]) -> str:
    if not outputs:
        return ""
    links = "".join(
        f'<li><a href="{_e(quote(str(p), safe="/"))}">{_e(label)}</a> <code>{_e(p)}</code></li>'
        for label, p in outputs.items()
    )
    return f"<h3>Outputs</h3>\n<ul>{links}</ul>\n"


def _previews_html(group: GroupReport) -> str:
    captions = {"Linear stack, automatic stretch": group.before, "Enhanced result": group.after}
    shown = [(img, text) for text, img in captions.items() if img is not None]
    if not shown:
        return ""
    figures = "".join(
        _figure(_resized(np.asarray(img), _PREVIEW_SIDE), text, "preview") for img, text in shown
    )
    return f'<h3>Result</h3>\n<div class="previews">{figures}</div>\n'


def _masters_html(masters: Mapping[str, np.ndarray]) -> str:
    order = [k for k in _MASTERS if k in masters] + [k for k in masters if k not in _MASTERS]
    if not order:
        return ""
    figures = "".join(
        _figure(_resized(np.asarray(masters[k]), _MASTER_SIDE), f"master {k}", "master")
        for k in order
    )
    return f'<h3>Calibration masters</h3>\n<div class="figures">{figures}</div>\n'


def _rejection_html(fraction: np.ndarray | None, index: int) -> str:
    if fraction is None:
        return ""
    data = np.asarray(fraction, dtype=np.float32)
    finite = data[np.isfinite(data)]
    mean = float(finite.mean()) if finite.size else 0.0
    top = _nice_ceil(float(np.percentile(finite, 99.5)) if finite.size else 0.0)
    data = _resized(data, _MAP_SIDE)
    image = _colormap(np.clip(data / top, 0.0, 1.0))
    image[~np.isfinite(data)] = 96  # no data: grey
    stops = enumerate(_VIRIDIS)
    gradient = "".join(f'<stop offset="{i / 8:.3f}" stop-color="#{c}"/>' for i, c in stops)
    bar = (
        f'<svg class="colorbar" viewBox="0 0 340 40" width="340" height="40">'
        f'<defs><linearGradient id="ramp-{index}">{gradient}</linearGradient></defs>'
        f'<rect x="10" y="4" width="320" height="14" fill="url(#ramp-{index})"/>'
        f'<text x="10" y="34">0 %</text><text x="170" y="34" text-anchor="middle">'
        f'{50 * top:g} %</text><text x="330" y="34" text-anchor="end">≥ {100 * top:g} %</text>'
        "</svg>"
    )
    caption = f"Fraction of frames rejected at each pixel: mean {100 * mean:.2f} %. Grey: no data."
    return (
        f"<h3>Pixel rejection</h3>\n<figure>{_img(image, 'map', 'rejection map')}<br>{bar}"
        f"<figcaption>{caption}</figcaption></figure>\n"
    )


def _trails_html(trails: Sequence[Mapping[str, Any]]) -> str:
    items = []
    for t in trails:
        where = str(t.get("path") or f"frame {t.get('frame')}")
        start, end = t.get("start") or (), t.get("end") or ()
        line = _name(where)
        if len(start) == 2 and len(end) == 2:
            line += f": from ({_fmt(start[0], '.0f')}, {_fmt(start[1], '.0f')}) to "
            line += f"({_fmt(end[0], '.0f')}, {_fmt(end[1], '.0f')})"
        line += f", width {_fmt(t.get('width'), '.1f')} px masked"
        items.append(f"<li>{_e(line)}</li>")
    if not items:
        return "<h3>Satellite and aircraft trails</h3>\n<p>None found.</p>\n"
    return f"<h3>Satellite and aircraft trails ({len(items)})</h3>\n<ul>{''.join(items)}</ul>\n"


def _frames_html(rows: Sequence[Mapping[str, Any]], group: GroupReport, axis: _XAxis) -> str:
    head = "".join(f"<th>{h}</th>" for h in _COLUMNS.split("|"))
    body = []
    for i, row in enumerate(rows):
        path = str(row.get("path", ""))
        accepted = row.get("accepted") is True
        status = (
            ("accepted (reference)" if row.get("reference") else "accepted")
            if accepted
            else str(row.get("reason") or "rejected")
        )
        thumb = group.thumbnails.get(path)
        img = "" if thumb is None else _img(thumb, "thumb", "")
        fraction = _number(row.get("rejected_fraction"))
        cells = [
            f'<td class="num">{i + 1}</td><td>{img}</td>',
            f'<td title="{_e(path)}">{_e(_name(path))}</td>',
            f"<td>{_e(_time_text(group.frame_times.get(path)))}</td>",
            _num(row.get("fwhm"), ".2f"), _num(row.get("stars"), ".0f"),
            _num(row.get("background"), ".4g"), _num(row.get("noise"), ".4g"),
            _num(row.get("weight"), ".3f"), _num(row.get("rms_px"), ".2f"),
            _num(None if fraction is None else 100 * fraction, ".1f"),
            f'<td class="status">{_e(status)}</td>',
        ]  # fmt: skip
        opening = "<tr>" if accepted else '<tr class="rejected">'
        body.append(f"{opening}{''.join(cells)}</tr>\n")
    return (
        f'<h3>Frames ({len(rows)})</h3>\n<div class="scroll"><table class="frames">'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{''.join(body)}</tbody></table></div>\n"
    )


def _unused_html(unused: Sequence[tuple[str, str]]) -> str:
    if not unused:
        return '<section id="unused">\n<h2>Files not used</h2>\n<p>None.</p>\n</section>\n'
    rows = "".join(
        f'<tr><td title="{_e(p)}">{_e(p)}</td><td>{_e(r)}</td></tr>\n' for p, r in unused
    )
    return (
        '<section id="unused">\n<h2>Files not used</h2>\n<div class="scroll"><table '
        f'class="unused"><thead><tr><th>file</th><th>reason</th></tr></thead><tbody>{rows}'
        "</tbody></table></div>\n</section>\n"
    )


# --------------------------------------------------------------------------------------------
# plots


def _plot_svg(
    rows: Sequence[Mapping[str, Any]], axis: _XAxis, key: str, title: str, label: str
) -> str:
    points = [
        (x, y, row.get("accepted") is True)
        for row, x in zip(rows, axis.values, strict=True)
        if x is not None and (y := _number(row.get(key))) is not None
    ]
    out = [
        f'<svg class="plot" data-quantity="{key}" viewBox="0 0 {_W} {_H}" width="{_W}" '
        f'height="{_H}" role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>',
        f'<text x="{_LEFT}" y="16" font-weight="bold">{_e(title)}</text>',
    ]
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    bottom = _TOP + ph
    if not points:
        out.append(
            f'<text x="{_LEFT + pw / 2}" y="{_TOP + ph / 2}" text-anchor="middle">'
            "no data</text></svg>"
        )
        return "".join(out)
    x0, x1 = _padded(min(p[0] for p in points), max(p[0] for p in points))
    y0, y1 = _padded(min(p[1] for p in points), max(p[1] for p in points))

    def px(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return _TOP + (y1 - y) / (y1 - y0) * ph

    step, yticks = _ticks(y0, y1)
    for t in yticks:
        out.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
            f'stroke="#e6e6ea"/><text x="{_LEFT - 5}" y="{py(t) + 4:.1f}" '
            f'text-anchor="end">{_tick_label(t, step)}</text>'
        )
    for t, text in _x_ticks(x0, x1, axis):
        out.append(
            f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{bottom}" y2="{bottom + 4}" '
            f'stroke="#333"/><text x="{px(t):.1f}" y="{bottom + 16}" '
            f'text-anchor="middle">{text}</text>'
        )
    out.append(
        f'<path d="M{_LEFT} {_TOP}V{bottom}H{_LEFT + pw}" fill="none" stroke="#333"/>'
        f'<text x="{_LEFT + pw / 2}" y="{_H - 6}" text-anchor="middle">{_e(axis.label)}'
        f'</text><text transform="translate(13 {_TOP + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">{_e(label)}</text>'
    )
    trend = sorted((px(x), py(y)) for x, y, ok in points if ok)
    if 1 < len(trend) <= _TREND_MAX:
        coords = " ".join(f"{a:.1f},{b:.1f}" for a, b in trend)
        out.append(
            f'<polyline class="trend" points="{coords}" fill="none" stroke="{_ACCEPTED}" '
            'stroke-opacity="0.35"/>'
        )
    for ok, cls, color, cap, width in (
        (True, "accepted", _ACCEPTED, "round", 5),
        (False, "rejected", _REJECTED, "square", 6),
    ):
        series = [(px(x), py(y)) for x, y, a in points if a is ok]
        if series:
            d = "".join(f"M{a:.1f} {b:.1f}h0" for a, b in series)
            out.append(
                f'<path class="points {cls}" data-points="{len(series)}" d="{d}" '
                f'stroke="{color}" stroke-width="{width}" stroke-linecap="{cap}"/>'
            )
    out.append(
        f'<path d="M{_W - 140} 12h0" stroke="{_ACCEPTED}" stroke-width="5" '
        f'stroke-linecap="round"/><text x="{_W - 133}" y="16">accepted</text>'
        f'<path d="M{_W - 70} 12h0" stroke="{_REJECTED}" stroke-width="6" '
        f'stroke-linecap="square"/><text x="{_W - 63}" y="16">rejected</text></svg>'
    )
    return "".join(out)


def _x_axis(rows: Sequence[Mapping[str, Any]], times: Mapping[str, str | None]) -> _XAxis:
    """Times of observation when every plotted frame has one, else frame numbers."""
    parsed = [_parse_time(times.get(str(r.get("path", "")))) for r in rows]
    plotted = [any(_number(r.get(k)) is not None for k, _, _ in _PLOTS) for r in rows]
    needed = [t for t, p in zip(parsed, plotted, strict=True) if p]
    if not needed or any(t is None for t in needed):
        return _XAxis(tuple(float(i + 1) for i in range(len(rows))), "frame number", None)
    aware = all(t is not None and t.tzinfo is not None for t in needed)
    utc = [None if t is None else _naive_utc(t) for t in parsed]
    start = min(t for t, p in zip(utc, plotted, strict=True) if p and t is not None)
    values = tuple(None if t is None else (t - start).total_seconds() for t in utc)
    return _XAxis(values, "time (UTC)" if aware else "time of observation", start)


def _x_ticks(lo: float, hi: float, axis: _XAxis) -> list[tuple[float, str]]:
    if axis.start is None:
        step, ticks = _ticks(lo, hi)
        return [(t, f"{t:.0f}") for t in ticks if step >= 1 or t == round(t)]
    span = hi - lo
    step = next((s for s in _TIME_STEPS if span / s <= 7), 86400 * math.ceil(span / 86400 / 7))
    start = axis.start
    clock = start.hour * 3600 + start.minute * 60 + start.second + start.microsecond / 1e6
    first = math.ceil((lo + clock) / step) * step - clock
    form = "%H:%M:%S" if step < 60 else "%H:%M" if step < 86400 else "%m-%d"
    count = int((hi - first) // step) + 1
    return [
        (first + i * step, (start + timedelta(seconds=first + i * step)).strftime(form))
        for i in range(max(0, count))
    ]


def _ticks(lo: float, hi: float, n: int = 5) -> tuple[float, list[float]]:
    """A 1-2-2.5-5 step giving about ``n`` ticks inside [lo, hi], and the ticks."""
    raw = (hi - lo) / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * 0.999)
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    return step, [i * step for i in range(first, last + 1)]


def _tick_label(value: float, step: float) -> str:
    """``value`` with as many decimals as ``step`` needs; scientific when tiny or huge."""
    text = f"{step:.6g}"
    if "e" in text or abs(value) >= 1e6:
        return f"{value:.2e}"
    return f"{value:.{len(text.partition('.')[2])}f}"


def _padded(lo: float, hi: float) -> tuple[float, float]:
    pad = (hi - lo) * 0.05 if hi > lo else (abs(lo) * 0.1 or 1.0)
    return lo - pad, hi + pad


def _nice_ceil(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 1 %)."""
    value = min(max(value, 0.01), 1.0)
    magnitude = 10 ** math.floor(math.log10(value))
    return min(1.0, next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= value * 0.999))


# --------------------------------------------------------------------------------------------
# small helpers


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _rows(group: GroupReport) -> list[Mapping[str, Any]]:
    return [r for r in group.sidecar.get("frames") or [] if isinstance(r, Mapping)]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name) or "group"


def _name(path: object) -> str:
    """The last component of a path written by any OS (the file name; never opened)."""
    return PurePath(str(path).replace("\\", "/")).name or str(path)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: object, spec: str) -> str:
    number = _number(value)
    return "" if number is None else format(number, spec)


def _num(value: object, spec: str) -> str:
    return f'<td class="num">{_fmt(value, spec)}</td>'


def _value(key: str, value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if key == "exposure" and _number(value) is not None:
        return f"{value:g} s"
    return str(value)


def _parse_time(text: str | None) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def _naive_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def _time_text(text: str | None) -> str:
    moment = _parse_time(text)
    if moment is None:
        return text if isinstance(text, str) else ""
    suffix = " UTC" if moment.tzinfo is not None else ""
    return _naive_utc(moment).strftime("%Y-%m-%d %H:%M:%S") + suffix


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _resized(image: np.ndarray, side: int, *, exact: bool = False) -> np.ndarray:
    """``image`` scaled so its longest side is ``side`` (area average when shrinking); with
    ``exact=False`` only images larger than ``side`` are scaled."""
    scale = side / max(image.shape[:2])
    if scale >= 1 and not exact:
        return image
    shape = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, shape, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _img(image: np.ndarray, cls: str, alt: str) -> str:
    size = f'width="{image.shape[1]}" height="{image.shape[0]}"'
    return f'<img class="{cls}" src="{image_data_uri(image)}" {size} alt="{_e(alt)}">'


def _figure(image: np.ndarray, caption: str, cls: str) -> str:
    return f"<figure>{_img(image, cls, caption)}<figcaption>{_e(caption)}</figcaption></figure>"


def _colormap(values: np.ndarray) -> npt.NDArray[np.uint8]:
    """Viridis colours for values in [0, 1] (NaN gives the lowest colour)."""
    anchors = np.linspace(0.0, 1.0, len(_VIRIDIS))
    table = np.array([[int(c[i : i + 2], 16) for i in (0, 2, 4)] for c in _VIRIDIS], float)
    clean = np.nan_to_num(values, nan=0.0)
    rgb = [np.interp(clean, anchors, table[:, c]) for c in range(3)]
    return np.rint(np.stack(rgb, axis=-1)).astype(np.uint8)
