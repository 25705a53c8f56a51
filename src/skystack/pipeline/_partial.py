"""Output folders built as ``OUT_DIR.partial/`` and renamed when complete (resumable runs)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

__all__ = ["open_partial", "finish_partial"]

_log = logging.getLogger(__name__)
_STAMP = ".settings.json"


def open_partial(out_dir: Path, settings: str) -> Path:
    """Create ``OUT_DIR.partial``, or keep an earlier one only if made with the same ``settings``.

    Returns the partial folder; ``settings`` (any text, usually JSON) is stamped into it.
    """
    partial = out_dir.with_name(out_dir.name + ".partial")
    stamp = partial / _STAMP
    if partial.exists() and (not stamp.exists() or stamp.read_text() != settings):
        _log.info("discarding %s: made with other settings", partial)
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    stamp.write_text(settings)
    return partial


def finish_partial(partial: Path, out_dir: Path) -> None:
    """Drop the stamp and rename the complete partial folder to ``out_dir`` (replacing it)."""
    (partial / _STAMP).unlink(missing_ok=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
