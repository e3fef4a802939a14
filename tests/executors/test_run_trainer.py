"""The RunTrainer executor at the cheap levels: its config loads, and its endpoint methods run
on DocLists over a local store in tmp_path, each request with a real token of that store (the
``token`` fixture of tests/executors/conftest.py).

The runs come from the Converter (called directly, as the Flow's first stage of
``/runs/create``) with the tiny ``mlp`` backbone. The runs that the read endpoints answer
about are brought to their end by hand, as a worker leaves them, so that no worker process
starts; one test lets the supervisor start a real worker and stops it again. The supervisor
itself (training, crashes, resume) is the subject of tests/unit/runs/test_supervisor.py, the
whole service that of tests/e2e.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from docarray import DocList
from jina import Executor

import executors.trainer.executor as trainer_module
from executors.common.errors import InvalidRequest
from executors.converter.executor import Converter
from executors.trainer.executor import RunTrainer
from searchtuner.data import LabeledDoc
from searchtuner.data.stored import DatasetWriter
from searchtuner.runs import RunNotFound, RunRegistry, RunState
from searchtuner.service.owners import Unauthenticated
from searchtuner.service.schemas import EventDoc, FitRequest, LogDoc, MetricsDoc, RunDoc, RunQuery
from searchtuner.store import LocalStore, OwnerStore
from tests.unit.runs.helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "executors" / "trainer" / "config.yml"
OWNER = "local"  # the owner of the conftest's `token`
DIM = 8
MLP = {"input_dim": DIM, "hidden_dims": [16]}
LONG = {"epochs": 50}  # a run that is still training when the test ends it
UNKNOWN = "run-20000101000000-abcdef"
ENDPOINTS = ["get", "cancel", "delete", "events", "metrics", "logs"]  # of one run each
METRICS = {
    "before": {"map@10": 0.25, "ndcg@10": 0.4},
    "after": {"map@10": 0.5, "ndcg@10": 0.6},
    "history": [{"step": 2, "epoch": 0, "loss": 0.9}, {"step": 4, "epoch": 1, "loss": 0.7}],
}
S = RunState


@dataclass
class Service:
    """The converter and the trainer over one store, with a training set uploaded, and a
    token of the owner the requests act for."""

    trainer: RunTrainer
    converter: Converter
    registry: RunRegistry
    store: LocalStore
    train: str
    scratch: Path
    token: str

    def parameters(self, **more: Any) -> dict[str, Any]:
        """A request's parameters: the token, and ``more``."""
        return {"token": self.token, **more}

    def validated(self, name: str = "", **config: Any) -> RunDoc:
        """A run the converter recorded and checked: VALIDATING, ready for the trainer."""
        request = FitRequest(
            model="mlp",
            model_options=MLP,
            train_data=self.train,
            name=name,
            onnx=False,
            config={"batch_size": 8, **config},
        )
        (run,) = self.converter.create(DocList[FitRequest]([request]), self.parameters())
        assert run.state == "VALIDATING"
        return run

    def finished(self, name: str = "") -> RunDoc:
        """A validated run brought to FINISHED as a worker leaves it: events, a checkpoint,
        metrics and a model handle (no worker runs: the supervisor never queued it)."""
        run_id = self.validated(name).run_id
        registry = self.registry
        for state in (S.QUEUED, S.PREPARING, S.TRAINING):
            registry.transition(OWNER, run_id, state)
        events = [
            {"type": "progress", "message": "step 2/4", "data": {"step": 2, "loss": 0.9}},
            {"type": "checkpoint", "message": "checkpoint saved at step 2", "data": {"step": 2}},
            {"type": "log", "level": "warning", "message": "the loss went up once"},
        ]
        registry.append_events(OWNER, run_id, events)
        self.mine.put_bytes(f"runs/{run_id}/checkpoints/step-00000002.pt", b"state")
        registry.put_metrics(OWNER, run_id, METRICS)
        registry.transition(OWNER, run_id, S.EVALUATING)
        registry.transition(OWNER, run_id, S.PUBLISHING)
        record = registry.transition(
            OWNER, run_id, S.FINISHED, model_handle="stm1:feedbeef", progress={"step": 4}
        )
        return RunDoc(run_id=record.run_id, state=str(record.state))

    @property
    def mine(self) -> OwnerStore:
        """The owner's namespace in the store."""
        return self.store.for_owner(OWNER)

    def run_keys(self, run_id: str) -> list[str]:
        return list(self.mine.keys(f"runs/{run_id}/"))

    def states(self, run_id: str) -> list[str]:
        events = self.registry.events(OWNER, run_id)
        return [e.data["state"] for e in events if e.type == "state"]


@pytest.fixture
def service(store: LocalStore, tmp_path: Path, token: str) -> Iterator[Service]:
    """A trainer with a live supervisor (one worker slot, scratch in tmp_path), a converter."""
    rng = np.random.default_rng(0)
    docs = [
        LabeledDoc(tensor=rng.normal(size=DIM).astype(np.float32), label=f"c{i % 4}")
        for i in range(32)
    ]
    writer = DatasetWriter(store.for_owner(OWNER), kind="labeled")
    writer.add(docs)
    scratch = tmp_path / "scratch"
    trainer = RunTrainer(
        store_uri=store.uri(), scratch_dir=str(scratch), max_concurrent=1, cancel_grace=3.0
    )
    converter = Converter(store_uri=store.uri())
    handle = writer.commit().handle
    yield Service(trainer, converter, RunRegistry(store), store, handle, scratch, token)
    converter.close()
    trainer.close()  # stops the supervisor's thread and any worker
    assert not trainer.supervisor.status()["alive"]


def _query(*run_ids: str) -> DocList[RunQuery]:
    return DocList[RunQuery]([RunQuery(run_id=run_id) for run_id in run_ids])


# jina imports every executor.py as the module "executor"; the ones after the first in a
# process come in as "user_module.executor", with a warning that says so.
@pytest.mark.filterwarnings(r"ignore:(?s).*shadows one of built-in Python module name")
def test_the_config_loads_with_its_arguments(store: LocalStore, tmp_path: Path) -> None:
    # Loaded once per process: jina imports py_modules by file path, and a second import of
    # executor.py warns that the name is taken.
    scratch = tmp_path / "scratch"
    executor = Executor.load_config(
        str(CONFIG),
        uses_with={"store_uri": store.uri(), "scratch_dir": str(scratch), "max_concurrent": 1},
    )
    try:
        assert type(executor).__name__ == "RunTrainer"
        supervisor = executor.supervisor  # type: ignore[attr-defined]
        status = supervisor.status()
        assert (status["alive"], status["max_concurrent"]) == (True, 1)
        assert (supervisor.store_uri, supervisor.scratch_dir) == (store.uri(), scratch)
        assert scratch.is_dir()
        endpoints = {"create", "get", "list", "cancel", "delete", "events", "metrics", "logs"}
        assert {f"/runs/{name}" for name in endpoints} | {"/default"} <= set(executor.requests)
        assert executor.requests["/runs/events"].fn.__name__ == "events"
    finally:
        executor.close()
    assert not executor.supervisor.status()["alive"]  # type: ignore[attr-defined]


def test_the_defaults_come_from_the_environment_and_the_workspace(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_STORE", store.uri())
    monkeypatch.setenv("SEARCHTUNER_MAX_CONCURRENT_RUNS", "3")
    executor = RunTrainer(metas={"workspace": str(tmp_path / "ws")})
    try:
        assert executor.store.uri() == store.uri()
        assert executor.supervisor.max_concurrent == 3
        assert executor.supervisor.scratch_dir == tmp_path / "ws" / "RunTrainer" / "scratch"
    finally:
        executor.close()


def test_create_queues_runs_and_a_worker_of_its_own_takes_the_first(service: Service) -> None:
    trainer = service.trainer
    first, second = service.validated("first", **LONG), service.validated("second")

    queued = trainer.create(DocList[RunDoc]([first, second]), service.parameters())

    assert [(r.run_id, r.state) for r in queued] == [
        (first.run_id, "QUEUED"),
        (second.run_id, "QUEUED"),
    ]
    assert queued[0].conversion == first.conversion  # the converter's summary stays
    wait_for(
        "the first run's worker",
        lambda: trainer.supervisor.status()["running"] == [first.run_id],
        timeout=30,
    )
    pid = trainer.supervisor.status()["workers"][first.run_id]
    assert os.getpgid(pid) == pid  # a process group of its own
    log = service.scratch / OWNER / first.run_id / "worker-1.log"
    assert log.is_file()
    # One slot, taken: the second waits, and a cancel ends it at once.
    (waiting,) = trainer.get(_query(second.run_id), service.parameters())
    assert waiting.state == "QUEUED"
    (cancelled,) = trainer.cancel(_query(second.run_id), service.parameters())
    assert (cancelled.state, cancelled.reason) == ("CANCELLED", "cancelled by the user")
    assert service.states(second.run_id) == ["CREATED", "VALIDATING", "QUEUED", "CANCELLED"]
    assert trainer.supervisor.status()["queued"] == []

    # Deleting the running one cancels it first: its worker's process group is stopped.
    (deleted,) = trainer.delete(_query(first.run_id), service.parameters())

    assert deleted.state == "CANCELLED"
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert service.run_keys(first.run_id) == []
    with pytest.raises(RunNotFound):
        trainer.get(_query(first.run_id), service.parameters())
    assert log.is_file()  # the worker's output stays in the scratch folder


def test_only_runs_the_converter_validated_are_queued(service: Service) -> None:
    run = service.validated()
    service.registry.transition(OWNER, run.run_id, S.FAILED, reason="refused elsewhere")

    with pytest.raises(InvalidRequest, match="is FAILED, not VALIDATING"):
        service.trainer.create(DocList[RunDoc]([run]), service.parameters())
    with pytest.raises(RunNotFound, match=f"run {UNKNOWN} not found"):
        service.trainer.create(DocList[RunDoc]([RunDoc(run_id=UNKNOWN)]), service.parameters())
    assert service.trainer.supervisor.status()["queued"] == []


def test_get_and_list_answer_from_the_store(service: Service) -> None:
    done = service.finished("done")
    failed = service.validated("failed")
    service.registry.transition(OWNER, failed.run_id, S.FAILED, reason="the data was wrong")

    answer = service.trainer.get(_query(failed.run_id, done.run_id), service.parameters())
    listed = service.trainer.list(DocList[RunQuery](), service.parameters())

    assert [(r.name, r.state, r.reason) for r in answer] == [
        ("failed", "FAILED", "the data was wrong"),
        ("done", "FINISHED", ""),
    ]
    assert (answer[1].model_handle, answer[1].progress) == ("stm1:feedbeef", {"step": 4})
    assert answer[1].conversion["backbone"] == "mlp"
    assert answer[1].request["train_data"] == service.train
    assert {r.run_id for r in listed} == {done.run_id, failed.run_id}
    assert [r.created_at for r in listed] == sorted((r.created_at for r in listed), reverse=True)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_query_without_a_run_id_is_refused(service: Service, endpoint: str) -> None:
    with pytest.raises(InvalidRequest, match=f"/runs/{endpoint} needs run_id in each document"):
        getattr(service.trainer, endpoint)(DocList[RunQuery]([RunQuery()]), service.parameters())


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_unknown_run_is_not_found_and_nothing_is_written(
    service: Service, endpoint: str
) -> None:
    before = sorted(service.store.keys(""))

    with pytest.raises(RunNotFound, match=f"run {UNKNOWN} not found"):
        getattr(service.trainer, endpoint)(_query(UNKNOWN), service.parameters())

    assert sorted(service.store.keys("")) == before


@pytest.mark.parametrize("endpoint", ["create", "list", *ENDPOINTS])
def test_every_endpoint_refuses_a_request_without_a_token(service: Service, endpoint: str) -> None:
    run = service.validated()
    docs = DocList[RunDoc]([run]) if endpoint == "create" else _query(run.run_id)
    before = sorted(service.store.keys(""))
    forged = service.token[:-43] + "x" * 43  # another secret

    for parameters in ({}, {"token": ""}, {"owner": OWNER}):
        with pytest.raises(Unauthenticated, match="needs a token: send it as `Authorization"):
            getattr(service.trainer, endpoint)(docs, parameters)
    with pytest.raises(Unauthenticated, match="the token is not valid"):
        getattr(service.trainer, endpoint)(docs, {"token": forged})

    assert sorted(service.store.keys("")) == before
    assert service.registry.get(OWNER, run.run_id).state is S.VALIDATING


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_another_owners_run_is_not_found_as_if_it_did_not_exist(
    service: Service, endpoint: str, issue_token: Callable[..., str]
) -> None:
    done = service.finished()
    bob = {"token": issue_token(service.store, "bob"), "owner": OWNER}
    call = getattr(service.trainer, endpoint)

    with pytest.raises(RunNotFound) as theirs:
        call(_query(done.run_id), bob)
    with pytest.raises(RunNotFound) as unknown:
        call(_query(UNKNOWN), bob)

    assert str(theirs.value) == str(unknown.value).replace(UNKNOWN, done.run_id)
    assert len(service.trainer.list(DocList[RunQuery](), bob)) == 0
    with pytest.raises(RunNotFound):
        service.trainer.create(DocList[RunDoc]([service.validated()]), bob)
    (mine,) = service.trainer.get(_query(done.run_id), service.parameters())
    assert mine.state == "FINISHED" and service.run_keys(done.run_id)


def test_events_page_with_after_and_limit(service: Service) -> None:
    run_id = service.finished().run_id
    stored = service.registry.events(OWNER, run_id)
    events = service.trainer.events

    everything = events(_query(run_id), service.parameters())
    page = events(_query(run_id), service.parameters(after=2, limit=3))
    # gRPC clients' parameters travel as protobuf Structs, whose numbers are all floats.
    from_grpc = events(_query(run_id), service.parameters(after=2.0, limit=3.0))
    tail = events(_query(run_id), service.parameters(after=stored[-1].seq))

    assert all(isinstance(e, EventDoc) and e.run_id == run_id for e in everything)
    assert [e.seq for e in everything] == list(range(1, len(stored) + 1))
    assert [e.seq for e in page] == [e.seq for e in from_grpc] == [3, 4, 5]
    assert len(tail) == 0
    first, last = everything[0], everything[-1]
    assert (first.type, first.data["state"], first.message) == ("state", "CREATED", "run created")
    assert (last.type, last.data["state"]) == ("state", "FINISHED")
    warning = next(e for e in everything if e.type == "log")
    assert (warning.level, warning.message) == ("warning", "the loss went up once")


def test_one_request_returns_at_most_max_events(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = service.finished().run_id
    monkeypatch.setattr(trainer_module, "MAX_EVENTS", 4)

    assert len(service.trainer.events(_query(run_id), service.parameters())) == 4
    assert len(service.trainer.events(_query(run_id), service.parameters(limit=100))) == 4
    assert len(service.trainer.events(_query(run_id), service.parameters(limit=2))) == 2


@pytest.mark.parametrize("name", ["after", "limit"])
@pytest.mark.parametrize("value", [-1, 2.5, "3", True, None, float("nan"), float("inf")], ids=repr)
def test_event_paging_parameters_must_be_non_negative_integers(
    service: Service, name: str, value: object
) -> None:
    run = service.validated()

    with pytest.raises(InvalidRequest, match=rf"parameters\['{name}'\] must be a non-negative"):
        service.trainer.events(_query(run.run_id), {**service.parameters(), name: value})


def test_metrics_and_logs_of_a_finished_run(service: Service) -> None:
    done, fresh = service.finished(), service.validated()

    (metrics, none_yet) = service.trainer.metrics(
        _query(done.run_id, fresh.run_id), service.parameters()
    )
    (log,) = service.trainer.logs(_query(done.run_id), service.parameters())

    assert isinstance(metrics, MetricsDoc) and metrics.run_id == done.run_id
    assert (metrics.before, metrics.after) == (METRICS["before"], METRICS["after"])
    assert metrics.history == METRICS["history"]
    assert (none_yet.before, none_yet.after, none_yet.history) == ({}, {}, [])
    assert isinstance(log, LogDoc) and log.run_id == done.run_id
    lines = log.text.splitlines()
    assert len(lines) == len(service.registry.events(OWNER, done.run_id))
    assert lines[0].endswith("CREATED    run created")
    assert any(line.endswith("TRAINING   WARNING the loss went up once") for line in lines)
    assert "FINISHED" in lines[-1]


def test_cancel_ends_a_run_that_waits_and_leaves_a_finished_one_as_it_is(
    service: Service,
) -> None:
    waiting = service.validated()  # validated, not queued yet
    done = service.finished()

    cancelled, unchanged = service.trainer.cancel(
        _query(waiting.run_id, done.run_id), service.parameters()
    )

    assert (cancelled.state, cancelled.reason) == ("CANCELLED", "cancelled by the user")
    assert service.registry.get(OWNER, waiting.run_id).state is S.CANCELLED
    assert unchanged.state == "FINISHED"
    assert unchanged.updated_at == service.registry.get(OWNER, done.run_id).updated_at
    with pytest.raises(InvalidRequest, match="is CANCELLED, not VALIDATING"):
        service.trainer.create(DocList[RunDoc]([waiting]), service.parameters())


def test_delete_removes_a_finished_runs_objects_but_not_its_model(service: Service) -> None:
    done = service.finished()
    kept = service.validated()
    service.mine.put_bytes("models/feedbeef.tar", b"a published model")
    assert f"runs/{done.run_id}/checkpoints/step-00000002.pt" in service.run_keys(done.run_id)

    (deleted,) = service.trainer.delete(_query(done.run_id), service.parameters())

    assert (deleted.run_id, deleted.state) == (done.run_id, "FINISHED")
    assert service.run_keys(done.run_id) == []
    assert not service.mine.exists(f"run-index/{done.run_id}")
    assert [r.run_id for r in service.trainer.list(DocList[RunQuery](), service.parameters())] == [
        kept.run_id
    ]
    assert service.mine.exists("models/feedbeef.tar")
    with pytest.raises(RunNotFound):
        service.trainer.delete(_query(done.run_id), service.parameters())
