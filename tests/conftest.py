"""Shared fixtures: seeded random generators and the real sample frames in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

_REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    configured = os.environ.get("SKYSTACK_DATA")
    return Path(configured) if configured else _REPO.parent / "shared" / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every test run sees the same data."""
    return np.random.default_rng(20261130)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real sample frames (``$SKYSTACK_DATA`` or ``../shared/data``); skips when absent."""
    folder = _shared_data_dir()
    if not folder.is_dir():
        pytest.skip(f"real sample data not found at {folder}")
    return folder
