"""Small pieces shared by the format modules: error text, the software tag, reader lifetime."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Self

from skystack.errors import FormatError
from skystack.frame import Frame

__all__ = [
    "one_line",
    "software_name",
    "ClosingReader",
    "read_and_close",
    "physical_memory",
    "check_claimed_size",
    "ANY_CODEC_MAX_RATIO",
]

ANY_CODEC_MAX_RATIO = 100_000.0
"""Bytes of samples one stored byte may decode to when the codec gives no tighter bound.

Generous for every codec images use (zstd's run-length blocks reach about 43,690 to 1, LZMA
about 7,000, arithmetic-coded JPEG less), yet it stops a file of a few hundred bytes from
claiming gigabytes: decoders allocate the claimed image before they find the data missing.
"""


def one_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def physical_memory() -> int | None:
    """The machine's physical memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_claimed_size(
    path: str | os.PathLike[str],
    what: str,
    nbytes: int,
    *,
    stored: int,
    max_ratio: float | None,
) -> None:
    """Refuse, before anything is allocated, an image size a header claims but cannot back.

    Parameters
    ----------
    path : path-like
        The file, named in the message.
    what : str
        The claim as the message shows it, e.g. ``"PNG header claims 100000x100000 pixels"``.
    nbytes : int
        Bytes the decoded samples would take.
    stored : int
        Bytes of (compressed) sample data the file holds.
    max_ratio : float or None
        The most bytes of samples one stored byte can decode to (1 for uncompressed data, about
        1032 for deflate); None for codecs without a tighter bound: :data:`ANY_CODEC_MAX_RATIO`.

    Raises
    ------
    FormatError
        When the stored bytes cannot hold that many samples, or they would not fit in the
        machine's memory.
    """
    ratio = ANY_CODEC_MAX_RATIO if max_ratio is None else max_ratio
    if nbytes > ratio * max(stored, 1):
        raise FormatError(
            f"{path}: {what} ({nbytes} bytes of samples), more than the {stored} bytes of image "
            "data in the file can hold; the header is corrupt or the file truncated"
        )
    memory = physical_memory()
    if memory is not None and nbytes > memory:
        raise FormatError(
            f"{path}: {what} ({nbytes / 2**30:.1f} GiB of samples), more than this machine's "
            f"memory ({memory / 2**30:.1f} GiB); the header is corrupt or the image too large"
        )


def software_name() -> str:
    """``"skystack VERSION"`` for a file's software/creator field (``"skystack"`` if unknown)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"skystack {version('skystack')}"
    except PackageNotFoundError:
        return "skystack"


class ClosingReader:
    """Context-manager behaviour of the frame readers: leaving a ``with`` block closes them.

    Subclasses implement :meth:`close`, which must be safe to call more than once, and
    ``reader[index]``.
    """

    def close(self) -> None:
        """Release the file; frames already returned stay valid."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Frame:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_and_close(reader: ClosingReader, index: int) -> Frame:
    """``reader[index]``, closing ``reader`` afterwards; an index out of range is a FormatError."""
    with reader:
        try:
            return reader[index]
        except IndexError as err:
            raise FormatError(str(err)) from err
