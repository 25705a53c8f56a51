"""Atomic output files: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from skystack.errors import FileAccessError, OutOfDiskError, OutputExistsError

__all__ = ["atomic_path", "check_writable", "format_bytes"]


def format_bytes(count: int) -> str:
    """A byte count for people: ``"812 bytes"``, ``"3.4 MB"``, ``"1.2 GB"`` (powers of 1000)."""
    if count < 1000:
        return f"{count} bytes"
    for unit, scale in (("kB", 1e3), ("MB", 1e6)):
        if count < scale * 1000:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e9:.1f} GB"


def check_writable(path: Path, *, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is False."""
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: output exists already; pass --overwrite to replace it")


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, overwrite: bool = True, needed_bytes: int | None = None
) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    On any error the temporary file is removed and ``path`` is left as it was, so a reader never
    sees a half-written output. A full disk becomes :class:`OutOfDiskError`, whose message
    names the file and, when ``needed_bytes`` is given, the space needed.

    Parameters
    ----------
    path : path-like
        The final output path.
    overwrite : bool
        Whether an existing ``path`` may be replaced.
    needed_bytes : int, optional
        An estimate of the output's size, quoted when the disk fills up.
    """
    target = Path(path)
    check_writable(target, overwrite=overwrite)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileAccessError(f"{target}: cannot write, folder {folder} does not exist")
    # The temporary name keeps the real suffix so that libraries choosing a format by extension
    # (tifffile, imageio, OpenCV) still see the right one.
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=folder
        )
    except PermissionError as err:
        raise FileAccessError(f"{target}: cannot write into {folder} (permission denied)") from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates owner-only files; give the output the permissions of a normal file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            need = f"; it needs about {format_bytes(needed_bytes)}" if needed_bytes else ""
            raise OutOfDiskError(
                f"{target}: no space left on the device while writing (the disk is full{need}); "
                f"free some space in {folder} and re-run"
            ) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
