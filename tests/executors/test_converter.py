"""The Converter executor at the cheap levels: its config loads, and ``/runs/create`` runs on
DocLists over a local store in tmp_path, each request with a real token of that store (the
``token`` fixture of tests/executors/conftest.py). Every request uses the tiny ``mlp`` backbone on
feature vectors, so building a model takes milliseconds. A Flow serving the whole chain is the
subject of tests/e2e.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from docarray import DocList
from jina import Executor

from executors.common.errors import InvalidRequest
from executors.converter.executor import Converter
from searchtuner.data import LabeledDoc
from searchtuner.data.stored import DatasetWriter
from searchtuner.errors import ConfigError
from searchtuner.runs import RunRegistry, RunState
from searchtuner.service.owners import Unauthenticated, _token_store
from searchtuner.service.schemas import FitRequest, RunDoc
from searchtuner.service.tokens import TokenStore
from searchtuner.store import LocalStore

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "executors" / "converter" / "config.yml"
OWNER = "local"  # the owner of the conftest's `token`
DIM = 8
MLP = {"input_dim": DIM, "hidden_dims": [16]}


@pytest.fixture(autouse=True)
def _one_node_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment without a multi-node launcher, whatever the environment running the
    tests says."""
    monkeypatch.delenv("SEARCHTUNER_MAX_NODES", raising=False)


@pytest.fixture
def converter(store: LocalStore) -> Iterator[Converter]:
    executor = Converter(store_uri=store.uri())
    yield executor
    executor.close()


@pytest.fixture
def registry(store: LocalStore) -> RunRegistry:
    return RunRegistry(store)


def _vectors(n: int, *, labels: int = 4, seed: int = 0) -> list[LabeledDoc]:
    rng = np.random.default_rng(seed)
    return [
        LabeledDoc(tensor=rng.normal(size=DIM).astype(np.float32), label=f"c{i % labels}")
        for i in range(n)
    ]


def _dataset(store: LocalStore, docs: list[Any], owner: str = OWNER) -> str:
    writer = DatasetWriter(store.for_owner(owner), kind="labeled")
    writer.add(docs)
    return writer.commit().handle


@pytest.fixture
def train(store: LocalStore) -> str:
    return _dataset(store, _vectors(16))


def _fit(**fields: Any) -> DocList[FitRequest]:
    return DocList[FitRequest]([FitRequest(**fields)])


def _states(registry: RunRegistry, run_id: str) -> list[str]:
    return [e.data["state"] for e in registry.events(OWNER, run_id) if e.type == "state"]


def _only_run(registry: RunRegistry) -> Any:
    (record,) = registry.list(OWNER)
    return record


# jina imports every executor.py as the module "executor"; the ones after the first in a
# process come in as "user_module.executor", with a warning that says so.
@pytest.mark.filterwarnings(r"ignore:(?s).*shadows one of built-in Python module name")
def test_the_config_loads_with_the_store_uri(store: LocalStore) -> None:
    # Loaded once per process: jina imports py_modules by file path, and a second import of
    # executor.py warns that the name is taken.
    executor = Executor.load_config(str(CONFIG), uses_with={"store_uri": store.uri()})
    try:
        assert type(executor).__name__ == "Converter"
        assert executor.store.uri() == store.uri()  # type: ignore[attr-defined]
        assert executor.cache_size == 8  # type: ignore[attr-defined]
        assert executor.requests["/runs/create"].fn.__name__ == "create"
        assert executor.requests["/default"].fn.__name__ == "passthrough"
    finally:
        executor.close()


def test_a_valid_request_is_recorded_validating_with_the_conversion_summary(
    converter: Converter, registry: RunRegistry, store: LocalStore, train: str, token: str
) -> None:
    evaluation = _dataset(store, _vectors(8, seed=1))
    request = _fit(
        model="MLP",  # names match case-insensitively
        model_options={**MLP, "output_dim": 4, "freeze": True},
        train_data=train,
        eval_data=evaluation,
        config={"epochs": 2, "batch_size": 8},
        name="tiny",
    )

    (run,) = converter.create(request, {"token": token})

    assert isinstance(run, RunDoc)
    assert (run.state, run.name, run.reason, run.attempt) == ("VALIDATING", "tiny", "", 0)
    conversion = run.conversion
    assert (conversion["backbone"], conversion["modality"]) == ("mlp", "tensor")
    assert conversion["embedding_dim"] == 4
    # The frozen mlp (8*16+16) does not train; the projection head (16*4+4) does.
    assert (conversion["total_params"], conversion["trainable_params"]) == (144 + 68, 68)
    assert "backbone.layers.0" in conversion["table"] and "projection" in conversion["table"]
    assert conversion["data"] == {
        "model": "mlp", "embedding_dim": 4, "parameters": 212, "trainable_parameters": 68,
        "train_items": 16, "kind": "labeled", "eval_items": 8,
    }  # fmt: skip
    assert run.request["model"] == "MLP" and run.request["config"] == {"epochs": 2, "batch_size": 8}
    stored = registry.get(OWNER, run.run_id)
    assert stored.state is RunState.VALIDATING
    assert stored.summary["conversion"]["trainable_params"] == 68
    assert _states(registry, run.run_id) == ["CREATED", "VALIDATING"]


def test_conversions_are_cached_by_backbone_and_options(
    converter: Converter, train: str, token: str
) -> None:
    first = converter.create(
        _fit(model="mlp", model_options=MLP, train_data=train), {"token": token}
    )
    again = converter.create(
        _fit(model="mlp", model_options=MLP, train_data=train), {"token": token}
    )
    other = converter.create(
        _fit(model="mlp", model_options={**MLP, "output_dim": 4}, train_data=train),
        {"token": token},
    )

    assert first[0].run_id != again[0].run_id
    assert first[0].conversion == again[0].conversion
    assert (first[0].conversion["embedding_dim"], other[0].conversion["embedding_dim"]) == (16, 4)
    assert len(converter._summaries) == 2


def test_several_requests_in_one_call_each_get_a_run(
    converter: Converter, train: str, token: str
) -> None:
    docs = DocList[FitRequest](
        [FitRequest(model="mlp", model_options=MLP, train_data=train, name=n) for n in "ab"]
    )

    runs = converter.create(docs, {"token": token})

    assert [(r.name, r.state) for r in runs] == [("a", "VALIDATING"), ("b", "VALIDATING")]


def test_an_unknown_backbone_is_refused_with_a_suggestion_and_the_run_fails(
    converter: Converter, registry: RunRegistry, train: str, token: str
) -> None:
    with pytest.raises(InvalidRequest, match="cannot start: unknown model 'mpl'") as caught:
        converter.create(_fit(model="mpl", model_options=MLP, train_data=train), {"token": token})

    assert "did you mean 'mlp'?" in str(caught.value)
    record = _only_run(registry)
    assert str(caught.value).startswith(f"run {record.run_id} cannot start")
    assert record.state is RunState.FAILED
    assert record.reason.startswith("unknown model 'mpl'; allowed: ")
    assert _states(registry, record.run_id) == ["CREATED", "VALIDATING", "FAILED"]
    (failed,) = [e for e in registry.events(OWNER, record.run_id) if e.type == "state"][-1:]
    assert (failed.level, failed.data["reason"]) == ("error", record.reason)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"model": "./my-model"}, "looks like a file path"),
        ({"model_options": {"hidden_dims": [16]}}, "model_options do not fit mlp"),
        ({"config": {"epochs": -1}}, "invalid training config: epochs"),
        ({"config": {"device": "cuda:7"}}, "cuda"),
    ],
)
def test_requests_that_cannot_run_are_refused_and_recorded_failed(
    converter: Converter,
    registry: RunRegistry,
    train: str,
    fields: dict[str, Any],
    reason: str,
    token: str,
) -> None:
    request = {"model": "mlp", "model_options": MLP, "train_data": train, **fields}

    with pytest.raises(InvalidRequest, match=reason):
        converter.create(_fit(**request), {"token": token})

    record = _only_run(registry)
    assert record.state is RunState.FAILED and reason in record.reason


def test_a_dataset_with_errors_is_refused(
    converter: Converter, registry: RunRegistry, store: LocalStore, train: str, token: str
) -> None:
    flawed = _dataset(store, [*_vectors(8), {"tensor": np.ones(DIM, dtype=np.float32)}])

    with pytest.raises(InvalidRequest, match="validation report has errors") as caught:
        converter.create(
            _fit(model="mlp", model_options=MLP, train_data=train, eval_data=flawed),
            {"token": token},
        )

    assert f"dataset {flawed} (the request's eval_data)" in str(caught.value)
    assert "missing_label" in str(caught.value) and "upload it again" in str(caught.value)
    assert _only_run(registry).state is RunState.FAILED


@pytest.mark.parametrize(
    "handle", ["std1:" + "0" * 64, "not-a-handle"], ids=["unknown", "malformed"]
)
def test_a_missing_dataset_is_refused(
    converter: Converter, registry: RunRegistry, handle: str, token: str
) -> None:
    with pytest.raises(InvalidRequest, match="not found \\(the request's train_data\\)"):
        converter.create(_fit(model="mlp", model_options=MLP, train_data=handle), {"token": token})

    record = _only_run(registry)
    assert record.state is RunState.FAILED and "upload it first" in record.reason


def test_another_owners_dataset_is_not_found(
    converter: Converter, registry: RunRegistry, store: LocalStore, token: str
) -> None:
    theirs = _dataset(store, _vectors(16), owner="bob")
    unknown = "std1:" + "0" * 64

    with pytest.raises(InvalidRequest, match="not found") as caught:
        converter.create(_fit(model="mlp", model_options=MLP, train_data=theirs), {"token": token})
    with pytest.raises(InvalidRequest, match="not found") as missing:
        converter.create(_fit(model="mlp", model_options=MLP, train_data=unknown), {"token": token})

    # The same answer as for a dataset that does not exist, but for the run id and the handle.
    failed, absent = sorted(registry.list(OWNER), key=lambda r: r.request.train_data != theirs)
    assert str(caught.value).replace(failed.run_id, "R").replace(theirs, "H") == str(
        missing.value
    ).replace(absent.run_id, "R").replace(unknown, "H")
    assert failed.reason.replace(theirs, "H") == absent.reason.replace(unknown, "H")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"train_data": ""}, "train_data: String should have at least 1 character"),
        ({"model": ""}, "model: String should have at least 1 character"),
        ({"model_options": {**MLP, "device": "cpu"}}, "unknown option.*device.*set device"),
        ({"config": {"checkpoint_dir": "/tmp"}}, "checkpoint_dir is set by the service"),
        ({"checkpoint_every_steps": -5}, "checkpoint_every_steps"),
    ],
)
def test_malformed_requests_are_refused_without_recording_a_run(
    converter: Converter,
    registry: RunRegistry,
    train: str,
    fields: dict[str, Any],
    message: str,
    token: str,
) -> None:
    request = {"model": "mlp", "model_options": MLP, "train_data": train, **fields}

    with pytest.raises(InvalidRequest, match=f"the fit request is invalid: .*{message}"):
        converter.create(_fit(**request), {"token": token})

    assert registry.list(OWNER) == []


def test_multi_node_runs_need_a_deployment_that_launches_them(
    store: LocalStore,
    registry: RunRegistry,
    train: str,
    monkeypatch: pytest.MonkeyPatch,
    token: str,
) -> None:
    request = {"model": "mlp", "model_options": MLP, "train_data": train, "nnodes": 2}
    single = Converter(store_uri=store.uri())
    try:
        with pytest.raises(InvalidRequest, match=r"nnodes=2, but .* \(SEARCHTUNER_MAX_NODES=1\)"):
            single.create(_fit(**request), {"token": token})
    finally:
        single.close()
    assert _only_run(registry).state is RunState.FAILED

    monkeypatch.setenv("SEARCHTUNER_MAX_NODES", "2")
    multi = Converter(store_uri=store.uri())
    try:
        (accepted,) = multi.create(_fit(**request, processes_per_node=2), {"token": token})
        with pytest.raises(InvalidRequest, match=r"nnodes=3, .* \(SEARCHTUNER_MAX_NODES=2\)"):
            multi.create(_fit(**{**request, "nnodes": 3}), {"token": token})
    finally:
        multi.close()
    record = registry.get(OWNER, accepted.run_id)
    assert record.state is RunState.VALIDATING
    assert (record.request.nnodes, record.request.processes_per_node) == (2, 2)


def test_a_bad_max_nodes_setting_stops_the_converter_at_start(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_MAX_NODES", "many")
    with pytest.raises(ConfigError, match="SEARCHTUNER_MAX_NODES='many' is not a positive"):
        Converter(store_uri=store.uri())


def test_a_request_without_documents_is_refused(converter: Converter, token: str) -> None:
    with pytest.raises(InvalidRequest, match="got no documents: send one FitRequest per run"):
        converter.create(DocList[FitRequest](), {"token": token})


def test_when_one_run_of_a_call_is_refused_the_others_fail_too(
    converter: Converter, registry: RunRegistry, train: str, token: str
) -> None:
    docs = DocList[FitRequest](
        [
            FitRequest(model="mlp", model_options=MLP, train_data=train, name="good"),
            FitRequest(model="mpl", model_options=MLP, train_data=train, name="bad"),
        ]
    )

    with pytest.raises(InvalidRequest, match="unknown model 'mpl'"):
        converter.create(docs, {"token": token})

    # The call fails as a whole, so the good run never reaches the trainer: it must not stay
    # VALIDATING.
    records = {r.name: r for r in registry.list(OWNER)}
    assert {name: r.state for name, r in records.items()} == {
        "good": RunState.FAILED, "bad": RunState.FAILED,
    }  # fmt: skip
    assert records["good"].reason.startswith("not queued: another run of the same request")


def test_runs_are_recorded_for_the_tokens_owner(
    converter: Converter,
    registry: RunRegistry,
    store: LocalStore,
    issue_token: Callable[..., str],
    token: str,
) -> None:
    alice = issue_token(store, "alice")
    theirs = _dataset(store, _vectors(16), owner="alice")

    (run,) = converter.create(
        _fit(model="mlp", model_options=MLP, train_data=theirs), {"token": alice, "owner": "bob"}
    )

    assert registry.get("alice", run.run_id).state is RunState.VALIDATING
    assert registry.list("bob") == [] and registry.list(OWNER) == []


@pytest.mark.parametrize("parameters", [{}, {"token": ""}, {"owner": "local"}], ids=repr)
def test_a_request_without_a_token_is_refused_and_nothing_is_recorded(
    converter: Converter, registry: RunRegistry, train: str, parameters: dict[str, Any], token: str
) -> None:
    with pytest.raises(Unauthenticated, match="needs a token: send it as `Authorization: Bearer"):
        converter.create(_fit(model="mlp", model_options=MLP, train_data=train), parameters)

    assert registry.list(OWNER) == []


def test_a_revoked_or_forged_token_is_refused(
    converter: Converter, registry: RunRegistry, store: LocalStore, train: str, token: str
) -> None:
    forged = token[:-43] + "x" * 43  # the right id, another secret
    request = _fit(model="mlp", model_options=MLP, train_data=train)
    with pytest.raises(Unauthenticated, match="the token is not valid"):
        converter.create(request, {"token": forged})
    (run,) = converter.create(request, {"token": token})

    TokenStore(store).revoke(token)
    _token_store.cache_clear()  # the executor's cached answer would last a few more seconds

    with pytest.raises(Unauthenticated, match="the token is not valid"):
        converter.create(request, {"token": token})
    assert [r.run_id for r in registry.list(OWNER)] == [run.run_id]
