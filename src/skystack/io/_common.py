"""Small pieces shared by the format modules: error text, the software tag, reader lifetime."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from skystack.errors import FormatError
from skystack.frame import Frame

__all__ = ["one_line", "software_name", "ClosingReader", "read_and_close"]


def one_line(err: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


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
