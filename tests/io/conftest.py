"""Helpers shared by the format tests: exactly quantisable data and the bad-file assertion."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import skystack.io
from skystack.errors import FormatError
from skystack.io._scale import integer_to_float


def _quantised(rng: np.random.Generator, shape: tuple[int, ...], bits: int) -> np.ndarray:
    """float32 data that are exactly representable in ``bits`` unsigned samples."""
    dtype = np.uint8 if bits == 8 else np.uint16
    return integer_to_float(rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype))


def _assert_format_error(path: Path, reader: Callable[[Path], Any]) -> None:
    """Both ``reader(path)`` and :func:`skystack.io.read` raise a FormatError naming ``path``."""
    pattern = re.escape(str(path))
    with pytest.raises(FormatError, match=pattern):
        reader(path)
    with pytest.raises(FormatError, match=pattern):
        skystack.io.read(path)


@pytest.fixture
def quantised() -> Callable[[np.random.Generator, tuple[int, ...], int], np.ndarray]:
    """``quantised(rng, shape, bits)``: float32 data exactly representable in ``bits`` bits."""
    return _quantised


@pytest.fixture
def assert_format_error() -> Callable[[Path, Callable[[Path], Any]], None]:
    """``assert_format_error(path, reader)``: the reader and the dispatcher refuse ``path``."""
    return _assert_format_error
