"""Fixtures of the run lifecycle tests: a local store and a registry over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchtuner.runs import RunRegistry
from searchtuner.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "store")


@pytest.fixture
def registry(store: Store) -> RunRegistry:
    return RunRegistry(store)
