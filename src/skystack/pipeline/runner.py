"""Bookkeeping of ``skystack process``'s cache: what the inputs are, and which steps are done.

A step is identified by a key: a hash of the content of the files it reads and of its
settings (see :func:`skystack.recipe.settings_key`). A finished step records its key and its
outputs; a later run whose key matches, with every output still present, skips it. A step is
recorded only after all its outputs are written (atomically), so a run killed at any point
redoes at most the step it was in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from skystack.io._atomic import atomic_path

__all__ = ["ContentHashes", "StepRecords"]

_log = logging.getLogger(__name__)


class ContentHashes:
    """SHA-256 of files' content, remembered in a JSON file by size, mtime and inode.

    Hashing reads every byte once; a file whose size, modification time and inode are
    unchanged since it was last hashed is not read again (as ``git`` and ``rsync`` do).
    """

    def __init__(self, store: Path) -> None:
        self.store = Path(store)
        self._known: dict[str, dict[str, Any]] = {}
        if self.store.is_file():
            try:
                self._known = json.loads(self.store.read_text())
            except ValueError:
                _log.info("ignoring an unreadable %s", self.store)
        self._changed = False

    def of(self, path: Path) -> str:
        """Hex SHA-256 of ``path``'s content."""
        stat = os.stat(path)
        signature = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        key = str(Path(path).resolve())
        known = self._known.get(key)
        if known is not None and known["stat"] == signature:
            return str(known["sha256"])
        with open(path, "rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
        self._known[key] = {"stat": signature, "sha256": digest}
        self._changed = True
        return digest

    def of_all(self, paths: Iterable[Path]) -> list[str]:
        """Hashes of ``paths``, in order."""
        return [self.of(p) for p in paths]

    def save(self) -> None:
        """Write the remembered hashes (atomically) if any is new."""
        if self._changed:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.store) as tmp:
                Path(tmp).write_text(json.dumps(self._known))
            self._changed = False


class StepRecords:
    """Finished steps of one group: ``{step: {"key": KEY, "outputs": [PATH, ...]}}`` in JSON."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._steps: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                self._steps = json.loads(self.path.read_text())
            except ValueError:
                _log.info("ignoring an unreadable %s", self.path)

    def done(self, step: str, key: str) -> bool:
        """True when ``step`` finished with ``key`` and all its outputs still exist."""
        record = self._steps.get(step)
        return (
            record is not None
            and record.get("key") == key
            and all(Path(p).is_file() for p in record.get("outputs", []))
        )

    def record(self, step: str, key: str, outputs: Iterable[Path]) -> None:
        """Mark ``step`` finished with ``key`` (written at once, atomically)."""
        self._steps[step] = {"key": key, "outputs": [str(p) for p in outputs]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            Path(tmp).write_text(json.dumps(self._steps, indent=1))
