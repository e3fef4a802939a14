"""Fixtures the executors' tests share: real access tokens on the test's store.

Every executor resolves ``parameters["token"]`` against the token records of the store that
``SEARCHTUNER_STORE`` names (:func:`searchtuner.service.owners.owner_of`), whatever store it
was built with. So issuing a token here also points ``SEARCHTUNER_STORE`` at the store the
token lives in, for the rest of the test (a Flow started then, by tests.flow_host, inherits
it). The Flows here have no SearchTuner gateway to put the caller's token into the
parameters: tests send it there themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from searchtuner.service.tokens import TokenStore
from searchtuner.store import LocalStore, Store

if TYPE_CHECKING:
    from executors.ingest.executor import Ingest

OWNER = "local"
"""The owner of the ``token`` fixture's token."""

IssueToken = Callable[..., str]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """An empty local store in tmp_path (test files with a seeded store define their own)."""
    return LocalStore(tmp_path / "store")


@pytest.fixture
def issue_token(monkeypatch: pytest.MonkeyPatch) -> IssueToken:
    """``issue_token(store, owner="local")``: a new token of ``owner``, created on ``store``
    (which becomes ``SEARCHTUNER_STORE``, where executors look tokens up)."""

    def issue(store: Store, owner: str = OWNER) -> str:
        monkeypatch.setenv("SEARCHTUNER_STORE", store.uri())
        return TokenStore(store).create(owner, name=f"tests ({owner})").token

    return issue


@pytest.fixture
def ingest(store: LocalStore) -> Iterator[Ingest]:
    """The ingest executor on the test's ``store``, closed after the test."""
    from executors.ingest.executor import Ingest

    executor = Ingest(store_uri=store.uri())
    yield executor
    executor.close()


@pytest.fixture
def token(issue_token: IssueToken, store: LocalStore) -> str:
    """A token of the owner ``local`` on the test's ``store``."""
    return issue_token(store)
