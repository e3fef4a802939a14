"""End to end over gRPC with a plain jina ``Client`` and DocLists against the real service:
stream a labelled dataset in, fine-tune to FINISHED, read status, events and metrics, pull
the model by its handle and encode with it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from docarray import DocList
from jina import Client
from jina.excepts import BadServer

import searchtuner
from searchtuner.service.schemas import (
    DatasetDoc,
    EventDoc,
    FitRequest,
    IngestDoc,
    MetricsDoc,
    RunDoc,
    RunQuery,
    UploadRequest,
    UploadStatus,
)
from tests.e2e.service import Service

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class AuthClient:
    """A plain jina Client whose every call carries the service's token as gRPC metadata."""

    def __init__(self, service: Service, metadata: tuple[tuple[str, str], ...]) -> None:
        self.jina = Client(host="127.0.0.1", port=service.grpc_port, protocol="grpc")
        self.metadata = metadata

    def post(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("metadata", self.metadata)
        return self.jina.post(*args, **kwargs)


def client(service: Service) -> AuthClient:
    return AuthClient(service, service.metadata)


def stream_dataset(jc: AuthClient, rows: list[tuple[str, str]], name: str) -> DatasetDoc:
    begun = jc.post(
        "/datasets/begin",
        inputs=DocList[UploadRequest]([UploadRequest(kind="labeled", name=name)]),
        return_type=DocList[UploadStatus],
    )
    upload_id = begun[0].upload_id
    docs = DocList[IngestDoc]([IngestDoc(text=text, label=label) for text, label in rows])
    answers = jc.post(
        "/datasets/append",
        inputs=docs,
        request_size=25,  # streamed as several requests
        parameters={"upload_id": upload_id},
        return_type=DocList[UploadStatus],
    )
    assert sum(answer.received for answer in answers) == len(rows)
    done = jc.post(
        "/datasets/commit",
        inputs=DocList[UploadRequest]([UploadRequest(upload_id=upload_id)]),
        return_type=DocList[DatasetDoc],
    )
    return done[0]


def get_run(jc: AuthClient, run_id: str) -> RunDoc:
    query = DocList[RunQuery]([RunQuery(run_id=run_id)])
    return jc.post("/runs/get", inputs=query, return_type=DocList[RunDoc])[0]


def test_fine_tune_over_grpc_with_a_plain_jina_client(
    service: Service, wordnet_rows: dict[str, list[tuple[str, str]]]
) -> None:
    jc = client(service)
    train = stream_dataset(jc, wordnet_rows["train"], "grpc-train")
    evaluation = stream_dataset(jc, wordnet_rows["eval"], "grpc-eval")
    assert train.n_items == len(wordnet_rows["train"]) and train.ok, train.report_text
    assert train.handle.startswith("std1:")

    request = FitRequest(
        model="all-MiniLM-L6-v2",
        model_options={"max_length": 32},
        train_data=train.handle,
        eval_data=evaluation.handle,
        config={"epochs": 1, "batch_size": 16, "max_steps": 4, "learning_rate": 5e-5},
        name="grpc-e2e",
        onnx=True,
    )
    created = jc.post(
        "/runs/create", inputs=DocList[FitRequest]([request]), return_type=DocList[RunDoc]
    )[0]
    assert created.state == "QUEUED" and created.run_id

    deadline = time.monotonic() + 600
    run = created
    while run.state not in {"FINISHED", "FAILED", "CANCELLED"}:
        assert time.monotonic() < deadline, f"run still {run.state} after 600 s"
        time.sleep(1)
        run = get_run(jc, created.run_id)
    assert run.state == "FINISHED", run.reason
    assert run.model_handle.startswith("stm1:")

    query = DocList[RunQuery]([RunQuery(run_id=run.run_id)])
    events = jc.post("/runs/events", inputs=query, return_type=DocList[EventDoc])
    states = [event.data["state"] for event in events if event.type == "state"]
    assert states[0] == "CREATED" and states[-1] == "FINISHED" and "TRAINING" in states
    later = jc.post(
        "/runs/events", inputs=query, parameters={"after": events[2].seq},
        return_type=DocList[EventDoc],
    )  # fmt: skip
    assert [event.seq for event in later] == [event.seq for event in events[3:]]

    metrics = jc.post("/runs/metrics", inputs=query, return_type=DocList[MetricsDoc])[0]
    assert "map@10" in metrics.before and "map@10" in metrics.after

    listed = jc.post("/runs/list", inputs=query, return_type=DocList[RunDoc])
    assert run.run_id in {doc.run_id for doc in listed}

    model = searchtuner.get_model(run.model_handle)
    vectors = searchtuner.encode(model, ["a domestic cat", "a large feline"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_grpc_errors_name_the_problem_and_the_service_keeps_serving(service: Service) -> None:
    jc = client(service)
    bad = FitRequest(model="no-such-backbone", train_data="std1:" + "0" * 64)
    with pytest.raises(BadServer) as caught:
        jc.post("/runs/create", inputs=DocList[FitRequest]([bad]), return_type=DocList[RunDoc])
    status = caught.value.args[0].status
    assert "no-such-backbone" in " ".join(status.exception.args)
    with pytest.raises(BadServer) as caught:
        get_run(jc, "run-that-does-not-exist")
    assert caught.value.args[0].status.exception.name == "RunNotFound"
    # Still serving; the refused request is on record as FAILED with its reason.
    listed = jc.post(
        "/runs/list", inputs=DocList[RunQuery]([RunQuery()]), return_type=DocList[RunDoc]
    )
    assert any(doc.state == "FAILED" and "no-such-backbone" in doc.reason for doc in listed)
