"""Terminal output shared by the subcommands: logging, warnings and progress reporting.

Progress goes to stderr as a rich bar on a terminal and as plain log lines otherwise (CI logs,
pipes), so standard output stays clean for results.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

__all__ = ["ProgressCallback", "configure_logging", "progress_reporter"]


from skystack._typing import ProgressCallback

_log = logging.getLogger("skystack")


def configure_logging(*, debug: bool) -> None:
    """Send skystack's log records and Python warnings to stderr, one line each."""
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_time=False, show_path=debug, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("numba", "distributed", "asyncio", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import warnings

    def one_line_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        where = f" ({filename}:{lineno})" if debug else ""
        _log.warning("%s%s", message, where)

    warnings.showwarning = one_line_warning


@contextlib.contextmanager
def progress_reporter(description: str) -> Iterator[ProgressCallback]:
    """Yield a progress callback: a rich progress bar on a terminal, log lines otherwise."""
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=None)

            def update(done: int, total: int, what: str) -> None:
                bar.update(task, completed=done, total=total, description=f"{description}: {what}")

            yield update
        return
    last: dict[str, int] = {}

    def log_line(done: int, total: int, what: str) -> None:
        # About ten lines per step, plus the last one: readable in a CI log.
        stride = max(1, total // 10)
        if done == total or done - last.get(what, -stride) >= stride:
            last[what] = done
            _log.info("%s: %s %d/%d", description, what, done, total)

    yield log_line
