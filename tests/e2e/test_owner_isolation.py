"""Two owners on the real service: each sees only their own datasets, runs, events, metrics,
logs and models, over HTTP and gRPC; another owner's object fails exactly like one that does
not exist; no token, or a bad one, gets 401 / UNAUTHENTICATED everywhere but health checks.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from docarray import DocList
from jina.excepts import BadServer

from searchtuner.service.schemas import (
    DatasetDoc,
    Empty,
    EventDoc,
    IngestDoc,
    LogDoc,
    MetricsDoc,
    PublishRequest,
    PublishResponse,
    RunDoc,
    RunQuery,
    UploadRequest,
    UploadStatus,
)
from tests.e2e.service import Caller, Service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MISSING_RUN = "run-20000101-000000-deadbeef"
MISSING_DATASET = "std1:" + "0" * 64
RUN_CONFIG = {"epochs": 1, "batch_size": 16, "max_steps": 2}


class Owner(Caller):
    """One owner's view of the service (``None``: a caller without a token)."""

    def grpc_error(self, endpoint: str, docs: DocList[Any], out: type, **parameters: Any) -> Any:
        """The error status the call fails with (name, message)."""
        with pytest.raises(BadServer) as caught:
            self.grpc(endpoint, docs, out, **parameters)
        status = caught.value.args[0].status
        return status.exception.name, " ".join(status.exception.args)


def _shape(text: str, *names: str) -> str:
    """A message with the object named in it replaced, to compare two messages' shape."""
    for name in names:
        text = text.replace(name, "<id>")
    return re.sub(r"run-\d{14}-[0-9a-f]{6}", "<run>", text)  # the refused run's own id


@pytest.fixture(scope="module")
def alice(service: Service) -> Owner:
    return Owner(service, service.new_token("alice"))


@pytest.fixture(scope="module")
def bob(service: Service) -> Owner:
    return Owner(service, service.new_token("bob"))


@pytest.fixture(scope="module")
def alices(alice: Owner, wordnet_csv: dict[str, Path]) -> dict[str, Any]:
    """Alice's objects: a dataset, a finished run with a model, and an upload left open."""
    with open(wordnet_csv["train"], "rb") as handle:
        uploaded = alice.http(
            "POST", "/datasets?kind=labeled&name=alice-train", data=handle.read(),
            headers={"Content-Type": "text/csv"},
        )  # fmt: skip
    assert uploaded.status_code == 201, uploaded.text
    dataset = uploaded.json()["handle"]
    created = alice.http(
        "POST", "/runs",
        json={"model": "all-MiniLM-L6-v2", "model_options": {"max_length": 32},
              "train_data": dataset, "config": RUN_CONFIG, "name": "alice-run", "onnx": False},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    run_id = created.json()["run_id"]
    record = wait_for(
        lambda: (r := alice.http("GET", f"/runs/{run_id}").json())["state"]
        in {"FINISHED", "FAILED"} and r,
        900, "alice's run to end",
    )  # fmt: skip
    assert record["state"] == "FINISHED", record
    begun = alice.grpc(
        "/datasets/begin", DocList[UploadRequest]([UploadRequest(kind="labeled")]), UploadStatus
    )
    download = alice.http("GET", f"/runs/{run_id}/model/download")
    assert download.status_code == 200
    return {
        "dataset": dataset,
        "run_id": run_id,
        "record": record,
        "upload_id": begun[0].upload_id,
        "model_sha256": hashlib.sha256(download.content).hexdigest(),
    }


RUN_ROUTES = [
    ("GET", "/runs/{}"),
    ("GET", "/runs/{}/metrics"),
    ("GET", "/runs/{}/logs"),
    ("GET", "/runs/{}/events?follow=false"),
    ("GET", "/runs/{}/model"),
    ("GET", "/runs/{}/model/download"),
    ("POST", "/runs/{}/cancel"),
    ("DELETE", "/runs/{}"),
]


@pytest.mark.parametrize(("method", "route"), RUN_ROUTES)
def test_another_owners_run_is_not_found_over_http(
    bob: Owner, alices: dict[str, Any], method: str, route: str
) -> None:
    theirs = bob.http(method, route.format(alices["run_id"]))
    missing = bob.http(method, route.format(MISSING_RUN))
    assert theirs.status_code == missing.status_code == 404, theirs.text
    assert theirs.json()["error"] == missing.json()["error"] == "RunNotFound"
    shapes = {_shape(r.json()["detail"], alices["run_id"], MISSING_RUN) for r in (theirs, missing)}
    assert len(shapes) == 1, shapes


def test_listings_show_only_the_callers_objects_over_http(
    alice: Owner, bob: Owner, alices: dict[str, Any]
) -> None:
    assert alices["dataset"] in {d["handle"] for d in alice.http("GET", "/datasets").json()}
    assert alices["run_id"] in {r["run_id"] for r in alice.http("GET", "/runs").json()}
    assert alices["dataset"] not in {d["handle"] for d in bob.http("GET", "/datasets").json()}
    assert alices["run_id"] not in {r["run_id"] for r in bob.http("GET", "/runs").json()}
    assert all(r["name"] != "alice-run" for r in bob.http("GET", "/runs").json())


def test_another_owners_dataset_cannot_be_trained_on(bob: Owner, alices: dict[str, Any]) -> None:
    answers = []
    for handle in (alices["dataset"], MISSING_DATASET):
        body = {"model": "all-MiniLM-L6-v2", "train_data": handle, "config": RUN_CONFIG}
        answers.append(bob.http("POST", "/runs", json=body))
    theirs, missing = answers
    assert theirs.status_code == missing.status_code, (theirs.text, missing.text)
    assert theirs.status_code in {400, 404}
    assert theirs.json()["error"] == missing.json()["error"]
    shapes = {
        _shape(r.json()["detail"], alices["dataset"], MISSING_DATASET) for r in (theirs, missing)
    }
    assert len(shapes) == 1, shapes


@pytest.mark.parametrize(
    ("endpoint", "out"),
    [
        ("/runs/get", RunDoc),
        ("/runs/cancel", RunDoc),
        ("/runs/delete", RunDoc),
        ("/runs/events", EventDoc),
        ("/runs/metrics", MetricsDoc),
        ("/runs/logs", LogDoc),
    ],
)
def test_another_owners_run_is_not_found_over_grpc(
    bob: Owner, alices: dict[str, Any], endpoint: str, out: type
) -> None:
    errors = [
        bob.grpc_error(endpoint, DocList[RunQuery]([RunQuery(run_id=run_id)]), out)
        for run_id in (alices["run_id"], MISSING_RUN)
    ]
    (name, theirs), (missing_name, missing) = errors
    assert name == missing_name == "RunNotFound"
    assert _shape(theirs, alices["run_id"]) == _shape(missing, MISSING_RUN)


def test_another_owners_upload_and_checkpoint_are_not_found_over_grpc(
    bob: Owner, alices: dict[str, Any]
) -> None:
    other, unknown = alices["upload_id"], "0" * len(alices["upload_id"])
    docs = DocList[IngestDoc]([IngestDoc(text="x", label="a")])

    def append(upload_id: str) -> Any:
        return bob.grpc_error("/datasets/append", docs, UploadStatus, upload_id=upload_id)

    def commit(upload_id: str) -> Any:
        request = DocList[UploadRequest]([UploadRequest(upload_id=upload_id)])
        return bob.grpc_error("/datasets/commit", request, DatasetDoc)

    for call in (append, commit):
        (name, theirs), (missing_name, missing) = call(other), call(unknown)
        assert name == missing_name and name.endswith("NotFound"), (call, name, theirs)
        assert _shape(theirs, other) == _shape(missing, unknown), call
    key = f"runs/{alices['run_id']}/best.safetensors"
    errors = [
        bob.grpc_error(
            "/publish",
            DocList[PublishRequest]([PublishRequest(owner=owner, checkpoint_key=key)]),
            PublishResponse,
        )
        for owner in ("alice", "")
    ]
    assert errors[0][0] == errors[1][0] == "NotFound"
    assert errors[0][1] == errors[1][1]


def test_listings_show_only_the_callers_objects_over_grpc(
    alice: Owner, bob: Owner, alices: dict[str, Any]
) -> None:
    query = DocList[RunQuery]([RunQuery()])
    assert alices["run_id"] in {r.run_id for r in alice.grpc("/runs/list", query, RunDoc)}
    bobs_runs = {r.run_id for r in bob.grpc("/runs/list", query, RunDoc)}
    assert alices["run_id"] not in bobs_runs
    bobs_datasets = bob.grpc("/datasets/list", DocList[Empty]([Empty()]), DatasetDoc)
    assert alices["dataset"] not in {d.handle for d in bobs_datasets}
    # A token written into the parameters is replaced by the metadata's: bob stays bob.
    smuggled = bob.jina.post(
        "/runs/list", inputs=query, metadata=bob.metadata, return_type=DocList[RunDoc],
        parameters={"token": alice.metadata[0][1].split()[1]},
    )  # fmt: skip
    assert {r.run_id for r in smuggled} == bobs_runs


def test_alices_objects_are_intact_after_bobs_attempts(
    alice: Owner, bob: Owner, alices: dict[str, Any]
) -> None:
    # (runs after the tests above, which tried to cancel and delete alice's run as bob)
    record = alice.http("GET", f"/runs/{alices['run_id']}").json()
    assert record["state"] == "FINISHED"
    assert record["model_handle"] == alices["record"]["model_handle"]
    download = alice.http("GET", f"/runs/{alices['run_id']}/model/download")
    assert hashlib.sha256(download.content).hexdigest() == alices["model_sha256"]
    assert alices["dataset"] in {d["handle"] for d in alice.http("GET", "/datasets").json()}
    events = alice.http("GET", f"/runs/{alices['run_id']}/events?follow=false").text
    assert "CANCELLED" not in events


@pytest.mark.parametrize("token", [None, "", "st_0000000000000000_" + "A" * 43, "not-a-token"])
def test_every_route_but_health_needs_a_valid_token(
    service: Service, alices: dict[str, Any], token: str | None
) -> None:
    anonymous = Owner(service, token)
    run_id = alices["run_id"]
    routes = [
        ("GET", "/datasets"), ("POST", "/datasets"), ("GET", "/runs"), ("POST", "/runs"),
        *[(m, r.format(run_id)) for m, r in RUN_ROUTES],
        ("POST", "/runs/list"), ("POST", "/datasets/list"), ("GET", "/status"),
    ]  # fmt: skip
    for method, path in routes:
        answer = anonymous.http(method, path, json={"data": [{}]} if method == "POST" else None)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.json()["error"] == "Unauthenticated"
        detail = answer.json()["detail"]
        assert "Authorization: Bearer" in detail or "token is not valid" in detail, detail
        assert answer.headers["www-authenticate"] == "Bearer"
    for path in ("/healthz", "/", "/docs", "/openapi.json"):
        assert anonymous.http("GET", path).status_code == 200, path
    for endpoint, out in (("/runs/list", RunDoc), ("/datasets/list", DatasetDoc)):
        with pytest.raises(Exception, match="UNAUTHENTICATED") as caught:
            anonymous.grpc(endpoint, DocList[RunQuery]([RunQuery()]), out)
        assert re.search(r"token", str(caught.value))
    assert requests.get(f"{service.http}/healthz", timeout=10).status_code == 200  # serving
