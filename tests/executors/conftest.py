"""Fixtures the executors' tests share: a local store, and requests that act for the default
owner in a one-node deployment, whatever the environment running the tests says."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchtuner.store import LocalStore


@pytest.fixture(autouse=True)
def _one_local_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SEARCHTUNER_OWNER", "SEARCHTUNER_MAX_NODES", "SEARCHTUNER_GPUS_PER_NODE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")
