"""Runs of many owners: the per-owner live-run limit at ``/runs/create`` and the trainer's
census of every owner's runs, with the executors' methods called directly over a local store.

Requests carry a token, as the gateway passes it on; the tokens live in the store the
executors use (``SEARCHTUNER_STORE``). Requests use the tiny ``mlp`` backbone on feature
vectors, so validating one takes milliseconds; no worker process starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from docarray import DocList
from prometheus_client.parser import text_string_to_metric_families

from executors.converter.executor import Converter
from executors.trainer.executor import RunTrainer
from searchtuner.data import LabeledDoc
from searchtuner.data.stored import DatasetWriter
from searchtuner.errors import ConfigError
from searchtuner.runs import RunRegistry, RunState
from searchtuner.runs.registry import LIVE_INDEX, OWNER_INDEX, OWNER_INDEX_COMPLETE
from searchtuner.service.limits import TooManyRuns
from searchtuner.service.schemas import FitRequest, RunDoc, RunQuery, TelemetrySnapshot
from searchtuner.service.tokens import TokenStore
from searchtuner.store import LocalStore, open_store
from searchtuner.telemetry import RunCensus

DIM = 8
MLP = {"input_dim": DIM, "hidden_dims": [16]}
LIMIT = 2
S = RunState


@dataclass
class Service:
    """The converter and the trainer over one store; alice and bob each with a token and a
    training set."""

    converter: Converter
    trainer: RunTrainer
    registry: RunRegistry
    tokens: dict[str, str]
    train: dict[str, str]

    def create(self, owner: str, runs: int = 1) -> list[RunDoc]:
        """``/runs/create`` for ``owner`` with ``runs`` fit requests in one call."""
        request = FitRequest(
            model="mlp", model_options=MLP, train_data=self.train[owner], onnx=False,
            config={"batch_size": 8},
        )  # fmt: skip
        docs = DocList[FitRequest]([request] * runs)
        return list(self.converter.create(docs, {"token": self.tokens[owner]}))

    def cancel(self, owner: str, run_id: str) -> RunDoc:
        """``/runs/cancel`` of one run of ``owner``."""
        query = DocList[RunQuery]([RunQuery(run_id=run_id)])
        (answer,) = self.trainer.cancel(query, {"token": self.tokens[owner]})
        return answer


def _dataset(store: LocalStore, owner: str) -> str:
    rng = np.random.default_rng(0)
    writer = DatasetWriter(store.for_owner(owner), kind="labeled")
    writer.add(
        [
            LabeledDoc(tensor=rng.normal(size=DIM).astype(np.float32), label=f"c{i % 4}")
            for i in range(16)
        ]
    )
    return writer.commit().handle


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small limit, and nothing else from the environment running the tests."""
    for name in ("SEARCHTUNER_OWNER", "SEARCHTUNER_MAX_NODES", "SEARCHTUNER_METRICS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SEARCHTUNER_MAX_RUNS_PER_OWNER", str(LIMIT))


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    monkeypatch.setenv("SEARCHTUNER_STORE", store.uri())  # where executors resolve tokens
    return store


@pytest.fixture
def service(store: LocalStore, tmp_path: Path) -> Iterator[Service]:
    tokens = TokenStore(open_store(store.uri()))
    owners = ("alice", "bob")
    trainer = RunTrainer(
        store_uri=store.uri(), scratch_dir=str(tmp_path / "scratch"), cancel_grace=1.0
    )
    converter = Converter(store_uri=store.uri())
    yield Service(
        converter,
        trainer,
        RunRegistry(store),
        {owner: tokens.create(owner).token for owner in owners},
        {owner: _dataset(store, owner) for owner in owners},
    )
    converter.close()
    trainer.close()


def test_an_owner_at_the_limit_cannot_create_another_run(service: Service) -> None:
    first, second = service.create("alice"), service.create("alice")
    assert [run.state for run in first + second] == ["VALIDATING", "VALIDATING"]
    with pytest.raises(TooManyRuns) as refused:
        service.create("alice")
    message = str(refused.value)
    assert "alice has 2 live run(s)" in message
    assert "SEARCHTUNER_MAX_RUNS_PER_OWNER=2" in message and "at most 2 per owner" in message
    assert "wait for a run to end or cancel one" in message
    assert len(service.registry.list("alice")) == 2  # the refused run was not recorded
    assert service.registry.live_count("alice") == 2


def test_another_owners_runs_do_not_count(service: Service) -> None:
    service.create("alice", runs=2)
    (bobs,) = service.create("bob")
    assert bobs.state == "VALIDATING"
    assert service.registry.live_count("bob") == 1
    with pytest.raises(TooManyRuns):
        service.create("alice")


def test_a_cancelled_run_frees_a_place(service: Service) -> None:
    first, _second = service.create("alice", runs=2)
    with pytest.raises(TooManyRuns):
        service.create("alice")
    assert service.cancel("alice", first.run_id).state == "CANCELLED"
    (again,) = service.create("alice")
    assert again.state == "VALIDATING"
    with pytest.raises(TooManyRuns):
        service.create("alice")


def test_a_call_over_the_limit_records_nothing(service: Service) -> None:
    service.create("alice")
    with pytest.raises(TooManyRuns, match="so 2 new runs cannot start"):
        service.create("alice", runs=2)
    assert len(service.registry.list("alice")) == 1


def test_ended_runs_do_not_count_and_stale_markers_are_cleaned(
    service: Service, store: LocalStore
) -> None:
    first, second = service.create("alice", runs=2)
    registry = service.registry
    registry.transition("alice", first.run_id, S.FAILED, reason="the data is bad")
    assert registry.live_count("alice") == 1
    # A marker whose run ended (a crash between the record and the marker's removal).
    registry.transition("alice", second.run_id, S.CANCELLED, reason="cancelled by the user")
    store.put_json(f"{LIVE_INDEX}/alice/{second.run_id}", {"created_at": "2030-01-01T00:00:00Z"})
    assert registry.live_count("alice") == 0
    assert not list(store.keys(f"{LIVE_INDEX}/alice/"))
    assert [run.state for run in service.create("alice", runs=2)] == ["VALIDATING"] * 2


def test_a_limit_that_is_not_a_positive_number_stops_the_converter(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_MAX_RUNS_PER_OWNER", "none")
    with pytest.raises(ConfigError, match="SEARCHTUNER_MAX_RUNS_PER_OWNER"):
        Converter(store_uri=store.uri())


# -- the census of every owner -------------------------------------------------------------


def _end(registry: RunRegistry, owner: str, run_id: str, state: RunState) -> None:
    registry.transition(owner, run_id, state, reason=f"ended as {state.value} by the test")


def test_the_census_counts_every_owners_runs(service: Service, store: LocalStore) -> None:
    registry = service.registry
    (alices,) = service.create("alice")
    (bobs,) = service.create("bob")
    _end(registry, "alice", alices.run_id, S.FAILED)
    _end(registry, "bob", bobs.run_id, S.CANCELLED)  # neither has a live run now
    service.create("bob")  # live: VALIDATING
    assert registry.owners() == ["alice", "bob"]
    census = RunCensus(registry, all_owners=True).look()
    assert census is not None
    assert (census.states[S.FAILED], census.states[S.CANCELLED]) == (1, 1)
    assert census.states[S.VALIDATING] == 1
    # Without all_owners, an owner without a live run is left out (alice).
    partial = RunCensus(registry).look()
    assert partial is not None and partial.states[S.FAILED] == 0

    # A store from before the owner index: the first look indexes it.
    for key in [*store.keys(f"{OWNER_INDEX}/"), OWNER_INDEX_COMPLETE]:
        store.delete(key)
    fresh = RunRegistry(store)
    assert fresh.owners() == ["alice", "bob"]
    assert store.exists(OWNER_INDEX_COMPLETE)
    assert RunRegistry(store).owners() == ["alice", "bob"]  # now read from the index


def _metric(text: str, name: str, state: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("state") == state:
                return float(sample.value)
    raise AssertionError(f"no {name}{{state={state!r}}} in the metrics")


def test_the_trainers_census_needs_no_request_owner(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_METRICS", "true")
    registry = RunRegistry(store)
    tokens = TokenStore(open_store(store.uri()))
    train = {owner: _dataset(store, owner) for owner in ("alice", "bob")}
    converter = Converter(store_uri=store.uri())
    for owner in ("alice", "bob"):
        request = FitRequest(model="mlp", model_options=MLP, train_data=train[owner], onnx=False)
        token = tokens.create(owner).token
        (run,) = converter.create(DocList[FitRequest]([request]), {"token": token})
        _end(registry, owner, run.run_id, S.FAILED)
    converter.close()
    # Built with metrics on and no request to take an owner from (no token anywhere).
    trainer = RunTrainer(store_uri=store.uri(), scratch_dir=str(tmp_path / "scratch"))
    try:
        seed: Any = DocList[TelemetrySnapshot]([TelemetrySnapshot(service="gateway")])
        text = trainer.telemetry_metrics(seed)[1].text
        assert _metric(text, "searchtuner_runs", "FAILED") == 2.0
    finally:
        trainer.close()
