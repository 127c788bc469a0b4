"""Fixtures of the store tests: a fresh DuckDB store and a stream of messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from materializer.store import Store
from tests.materializer.eventkit import Stream


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store in a temporary DuckDB file."""
    opened = Store.open(tmp_path / "pulse.duckdb")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def stream() -> Stream:
    """A stream of messages starting at sequence 1."""
    return Stream()
