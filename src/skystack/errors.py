"""The skystack error tree and warnings.

Every error subclasses :class:`SkystackError` and also the builtin exception a caller would
naturally catch (``ValueError``, ``OSError``, ...), so ``except OSError`` still works around an
I/O failure. Messages name the file, the value found and what was expected; the command line
prints them as one line and exits with code 2.
"""

from __future__ import annotations

__all__ = [
    "SkystackError",
    "FormatError",
    "MissingFileError",
    "FileAccessError",
    "GeometryError",
    "RegistrationError",
    "OutputExistsError",
    "OutOfDiskError",
    "ConfigError",
    "ColorCalibrationError",
    "SkystackWarning",
    "MetadataWarning",
    "FrameSkippedWarning",
]


class SkystackError(Exception):
    """Root of every error skystack raises on purpose."""


class FormatError(SkystackError, ValueError):
    """A file is not in a format skystack reads, or is corrupt or truncated."""


class MissingFileError(SkystackError, FileNotFoundError):
    """A path given as input does not exist, or a folder holds no usable file."""


class FileAccessError(SkystackError, PermissionError):
    """A file exists but cannot be opened (permissions, a folder where a file was expected)."""


class GeometryError(SkystackError, ValueError):
    """Frames or masters whose shape, channel count or CFA layout do not match."""


class RegistrationError(SkystackError, RuntimeError):
    """A frame could not be aligned to the reference."""


class OutputExistsError(SkystackError, FileExistsError):
    """An output exists already and ``--overwrite`` was not given."""


class OutOfDiskError(SkystackError, OSError):
    """The disk filled up while writing; the message says how much space was needed."""


class ColorCalibrationError(SkystackError, RuntimeError):
    """Colour calibration is impossible on this image (for example too few usable stars)."""


class ConfigError(SkystackError, ValueError):
    """An option or recipe value is invalid."""


class SkystackWarning(UserWarning):
    """Root of skystack's warnings."""


class MetadataWarning(SkystackWarning):
    """Metadata is missing, inconsistent or had to be interpreted (for example no Bayer pattern)."""


class FrameSkippedWarning(SkystackWarning):
    """A frame in a set was skipped; the run goes on without it."""
