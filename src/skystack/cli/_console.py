"""Terminal output shared by the subcommands: logging, warnings and progress reporting.

Progress goes to stderr as a rich bar on a terminal and as plain log lines otherwise (CI logs,
pipes), so standard output stays clean for results.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Literal, TypeAlias

__all__ = ["ProgressCallback", "configure_logging", "progress_reporter", "LogFormat"]


from skystack._typing import ProgressCallback

_log = logging.getLogger("skystack")

LogFormat: TypeAlias = Literal["text", "json"]


class _JsonLines(logging.Formatter):
    """One JSON object per record: ``{"event": "log", "time", "level", "message"}``."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({
            "event": "log", "time": round(record.created, 3), "level": record.levelname,
            "message": record.getMessage(),
        })  # fmt: skip


def configure_logging(*, debug: bool, log_format: LogFormat = "text", quiet: bool = False) -> None:
    """Send skystack's log records and Python warnings to stderr, one line each.

    ``quiet`` keeps warnings and errors only; ``log_format="json"`` writes JSON lines.
    """
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonLines())
    elif sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_time=False, show_path=debug, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    for noisy in ("numba", "distributed", "asyncio", "PIL", "matplotlib", "tifffile"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import warnings

    def one_line_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        where = f" ({filename}:{lineno})" if debug else ""
        _log.warning("%s%s", message, where)

    warnings.showwarning = one_line_warning


@contextlib.contextmanager
def progress_reporter(
    description: str, *, log_format: LogFormat = "text", quiet: bool = False
) -> Iterator[ProgressCallback]:
    """Yield a progress callback for ``progress(done, total, step)``.

    On a terminal: one rich display with a bar and an ETA per step. Otherwise: plain log lines
    (about ten per step), or JSON lines ``{"event": "progress", ...}`` with ``log_format="json"``;
    nothing when ``quiet``.
    """
    if quiet:
        yield lambda done, total, what: None
        return
    if log_format == "text" and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            tasks: dict[str, object] = {}

            def update(done: int, total: int, what: str) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(f"{description}: {what}", total=total)
                bar.update(tasks[what], completed=done, total=total)  # type: ignore[arg-type]

            yield update
        return
    last: dict[str, int] = {}

    def throttled(done: int, total: int, what: str) -> bool:
        # About ten lines per step, plus the last one: readable in a CI log.
        stride = max(1, total // 10)
        if done == total or done - last.get(what, -stride) >= stride:
            last[what] = done
            return True
        return False

    def log_line(done: int, total: int, what: str) -> None:
        if throttled(done, total, what):
            _log.info("%s: %s %d/%d", description, what, done, total)

    def json_line(done: int, total: int, what: str) -> None:
        if throttled(done, total, what):
            event = {"event": "progress", "time": round(time.time(), 3), "command": description,
                     "step": what, "done": done, "total": total}  # fmt: skip
            print(json.dumps(event), file=sys.stderr, flush=True)

    yield json_line if log_format == "json" else log_line
