"""Fixtures of the core tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_pipeline as tiny


@pytest.fixture
def release_stuck_calls() -> Iterator[None]:
    """Lets plugin calls stuck on ``tiny.RELEASE`` return when the test ends."""
    tiny.RELEASE.clear()
    yield
    tiny.RELEASE.set()
