"""Telemetry end to end: the real service with OTLP export and Prometheus metrics on, a local
OTLP receiver on 127.0.0.1, and one small run; then the search Flow's encoder, timed.

The run must be one trace: the gateway's ``POST /runs`` span at the root, the converter's and
the trainer's request spans below it, and under the trainer's ``searchtuner.queue`` span the
worker's ``searchtuner.run`` with a span per phase, ``searchtuner.publish`` inside the
publishing phase. The gateway's ``/metrics`` and the OTLP metrics carry real values: runs by
state, queue length, workers, training samples/s while it trains, ingested documents.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests
import torch
from docarray import BaseDoc, DocList
from docarray.base_doc import AnyDoc
from docarray.typing import NdArray
from jina import Client
from prometheus_client.parser import text_string_to_metric_families

import searchtuner
from searchtuner.service.processes import ProcessGroup, free_port
from tests.e2e.otlp_receiver import REPO, Receiver
from tests.e2e.service import Service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIM = 8
TRAIN_ITEMS, EVAL_ITEMS = 3200, 24
STEPS = 400  # one epoch of batches of 8: a tiny mlp stays seconds in TRAINING, seen by /metrics
PHASES = ["preparing", "training", "evaluating", "publishing"]
Spans = list[dict[str, Any]]


def _jsonl(n: int, seed: int) -> bytes:
    centres = np.random.default_rng(1).normal(size=(4, DIM))
    rng = np.random.default_rng(seed)
    rows = [
        {"tensor": (centres[i % 4] + rng.normal(scale=0.5, size=DIM)).round(4).tolist(),
         "label": f"c{i % 4}"}
        for i in range(n)
    ]  # fmt: skip
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _prometheus(service: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = service.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _trainer(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"service": "trainer", **labels}.items()))


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    running = Receiver(tmp_path_factory.mktemp("otlp")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("traced")
    service = Service(
        root / "data",
        root / "service.log",
        SEARCHTUNER_OTLP_ENDPOINT=receiver.endpoint,
        SEARCHTUNER_METRICS="true",
        OTEL_METRIC_EXPORT_INTERVAL="1000",  # ms: OTLP metric pushes every second
        OTEL_BSP_SCHEDULE_DELAY="200",  # ms: spans leave each process quickly
    ).start()
    yield service
    service.stop()


def _upload(service: Service, n: int, seed: int) -> str:
    response = service.post(
        "/datasets?kind=labeled",
        data=_jsonl(n, seed),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["n_items"] == n
    return str(response.json()["handle"])


def test_one_run_is_one_trace_and_the_metrics_are_real(traced: Service, receiver: Receiver) -> None:
    train, evaluation = _upload(traced, TRAIN_ITEMS, 2), _upload(traced, EVAL_ITEMS, 3)
    response = traced.post(
        "/runs",
        json={
            "model": "mlp",
            "model_options": {"input_dim": DIM, "hidden_dims": [16]},
            "train_data": train,
            "eval_data": evaluation,
            "config": {"batch_size": 8, "samples_per_label": 2, "max_steps": STEPS,
                       "log_every_steps": 20},
            "onnx": False,
        },
    )  # fmt: skip
    assert response.status_code == 201, response.text
    run_id = response.json()["run_id"]

    # While it trains, /metrics shows it training, with its samples/s (from its progress).
    speed_key = ("searchtuner_training_throughput_per_second", _trainer(run_id=run_id))

    def training_metrics() -> dict[Any, float] | None:
        values = _prometheus(traced)
        return values if values.get(speed_key, 0.0) > 0 else None

    while_training = wait_for(training_metrics, 60, "a training throughput in /metrics", 0.3)
    assert while_training[("searchtuner_runs", _trainer(state="TRAINING"))] == 1.0
    assert while_training[("searchtuner_workers", _trainer())] == 1.0
    assert while_training[("searchtuner_queue_length", _trainer())] == 0.0

    def ended() -> dict[str, Any] | None:
        record = traced.get(f"/runs/{run_id}").json()
        return record if record["state"] in ("FINISHED", "FAILED", "CANCELLED") else None

    record = wait_for(ended, 120, f"run {run_id} to end")
    assert record["state"] == "FINISHED", record

    # -- the trace -------------------------------------------------------------------------
    def worker_spans_arrived() -> Spans | None:
        spans = receiver.spans()
        names = {s["name"] for s in spans if s["attributes"].get("searchtuner.run.id") == run_id}
        return spans if {"searchtuner.run", "searchtuner.run.publishing"} <= names else None

    spans = receiver.wait_for("the worker's spans", worker_spans_arrived, 30)
    (run,) = [
        s for s in spans
        if s["name"] == "searchtuner.run" and s["attributes"]["searchtuner.run.id"] == run_id
    ]  # fmt: skip
    trace = [s for s in spans if s["trace_id"] == run["trace_id"]]
    by_id = {s["span_id"]: s for s in trace}

    def one(name: str, service: str) -> dict[str, Any]:
        found = [s for s in trace if s["name"] == name and s["service"].startswith(service)]
        assert len(found) == 1, (name, service, found)
        return found[0]

    def ancestors(span: dict[str, Any]) -> list[str]:
        chain = []
        while span["parent_span_id"]:
            span = by_id[span["parent_span_id"]]  # KeyError: a parent outside the trace
            chain.append(span["name"])
        return chain

    root = one("POST /runs", "gateway")
    assert root["parent_span_id"] == "" and root["scope"].endswith("fastapi")
    converter = one("/runs/create", "converter")
    validate = one("searchtuner.validate", "converter")
    trainer = one("/runs/create", "trainer")
    queue = one("searchtuner.queue", "trainer")
    phases = [one(f"searchtuner.run.{phase}", "searchtuner-worker") for phase in PHASES]
    publish = one("searchtuner.publish", "searchtuner-worker")
    assert run["service"] == "searchtuner-worker"

    # gateway → converter, gateway → trainer (the chain calls them in turn) → worker → phases
    assert ancestors(converter)[-1] == "POST /runs" and ancestors(trainer)[-1] == "POST /runs"
    assert converter["start_ns"] < trainer["start_ns"] < root["end_ns"]
    assert validate["parent_span_id"] == converter["span_id"]
    assert validate["attributes"]["searchtuner.run.id"] == run_id
    assert queue["parent_span_id"] == trainer["span_id"]
    assert queue["attributes"]["searchtuner.run.id"] == run_id
    assert run["parent_span_id"] == queue["span_id"]
    assert ancestors(run)[-1] == "POST /runs"
    assert [p["parent_span_id"] for p in phases] == [run["span_id"]] * len(PHASES)
    starts = [p["start_ns"] for p in phases]
    assert starts == sorted(starts)
    assert all(a["end_ns"] <= b["start_ns"] for a, b in itertools.pairwise(phases))
    assert publish["parent_span_id"] == phases[-1]["span_id"]
    assert publish["attributes"]["searchtuner.model.sha256"] in record["model_handle"]
    assert run["attributes"]["searchtuner.run.state"] == "FINISHED"
    assert run["attributes"]["searchtuner.run.attempt"] == 1
    training = phases[1]["attributes"]
    assert training["searchtuner.training.step"] == STEPS
    assert training["searchtuner.training.samples_per_second"] > 0
    assert all(s["status"] != 2 for s in trace)  # no span ended in error
    # The run's worker spans are all in this one trace.
    of_run = [s for s in spans if s["attributes"].get("searchtuner.run.id") == run_id]
    assert {s["trace_id"] for s in of_run} == {root["trace_id"]}

    # -- Prometheus: the run counted as FINISHED once the census looks again (within 1 s), and
    # no worker once the supervisor has reaped the one that ran it (within a poll, 0.5 s).
    def finished_metrics() -> dict[Any, float] | None:
        values = _prometheus(traced)
        done = values[("searchtuner_runs", _trainer(state="FINISHED"))] == 1
        return values if done and values[("searchtuner_workers", _trainer())] == 0 else None

    after = wait_for(finished_metrics, 15, "FINISHED and no worker in /metrics")
    live = ("CREATED", "VALIDATING", "QUEUED", "PREPARING", "TRAINING", "EVALUATING", "PUBLISHING")
    assert all(after[("searchtuner_runs", _trainer(state=state))] == 0 for state in live)
    assert speed_key not in after  # no run is training now
    ingested = (("service", "ingest"),)
    assert after[("searchtuner_ingest_documents_total", ingested)] == TRAIN_ITEMS + EVAL_ITEMS
    assert after[("searchtuner_ingest_throughput_per_second", ingested)] > 0

    # -- OTLP metrics: the same instruments pushed to the receiver, and jina's own ------------
    def pushed_finished() -> list[dict[str, Any]] | None:
        rows = [
            m for m in receiver.metrics()
            if m["name"] == "searchtuner.runs" and m["attributes"] == {"state": "FINISHED"}
        ]  # fmt: skip
        rows.sort(key=lambda m: m["time_ns"])
        return receiver.metrics() if rows and rows[-1]["value"] == 1 else None

    metrics = receiver.wait_for("FINISHED pushed over OTLP", pushed_finished, 15)
    services = {m["service"] for m in metrics if m["name"].startswith("searchtuner.")}
    assert {"searchtuner-trainer", "searchtuner-ingest"} <= services
    documents = [m for m in metrics if m["name"] == "searchtuner.ingest.documents"]
    assert max(m["value"] for m in documents) == TRAIN_ITEMS + EVAL_ITEMS
    speeds = [m["value"] for m in metrics if m["name"] == "searchtuner.training.throughput"]
    assert speeds and all(value > 0 for value in speeds)
    assert any(m["name"] == "jina_process_request_seconds" for m in metrics)


def test_the_endpoint_and_its_help_describe_every_metric(traced: Service) -> None:
    text = traced.get("/metrics").text
    for family in (
        "searchtuner_runs",
        "searchtuner_queue_length",
        "searchtuner_workers",
        "searchtuner_ingest_documents_total",
        "searchtuner_ingest_throughput_per_second",
    ):
        assert f"# HELP {family} " in text and f"# TYPE {family} " in text, family
    assert "/metrics" in traced.get("/openapi.json").json()["paths"]


class Vector(BaseDoc):
    tensor: NdArray


@pytest.fixture(scope="module")
def search_flow(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[tuple[int, int]]:
    """``python -m flows.search`` over a tiny mlp bundle, traced, with ``--metrics-port``:
    ``(gRPC port, metrics port)``."""
    root = tmp_path_factory.mktemp("search")
    torch.manual_seed(0)
    model = searchtuner.build_model("mlp", input_dim=DIM, hidden_dims=[16], output_dim=4)
    bundle = searchtuner.save_bundle(model, root / "bundle", onnx=False)
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    command = [
        sys.executable, "-m", "flows.search", "--model", str(bundle),
        "--port", str(grpc_port), "--http-port", str(http_port),
        "--otlp-endpoint", receiver.endpoint, "--metrics-port", str(metrics_port),
    ]  # fmt: skip
    env = {**os.environ, "OTEL_METRIC_EXPORT_INTERVAL": "1000", "OTEL_BSP_SCHEDULE_DELAY": "200"}
    group = ProcessGroup(command, cwd=REPO, log=root / "flow.log", env=env, name="the search Flow")
    # The metrics server starts once the Flow is up: its answer means both are ready.
    group.start().wait_until(
        lambda: requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).ok, 180
    )
    yield grpc_port, metrics_port
    group.stop()


def test_the_search_flow_times_encoding_for_prometheus_and_otlp(
    search_flow: tuple[int, int], receiver: Receiver
) -> None:
    grpc_port, metrics_port = search_flow
    client = Client(host=f"grpc://127.0.0.1:{grpc_port}")
    rng = np.random.default_rng(0)
    for n in (3, 5):
        docs = DocList[Vector](
            [Vector(tensor=rng.normal(size=DIM).astype(np.float32)) for _ in range(n)]
        )
        assert len(client.post("/encode", inputs=docs, return_type=DocList[AnyDoc])) == n

    response = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    encoder = (("backend", "torch"), ("service", "encoder"))
    assert values[("searchtuner_encode_duration_seconds_count", encoder)] == 2.0
    assert values[("searchtuner_encode_duration_seconds_sum", encoder)] > 0
    assert values[("searchtuner_encode_documents_total", encoder)] == 8.0
    assert requests.get(f"http://127.0.0.1:{metrics_port}/nothing", timeout=30).status_code == 404

    def pushed() -> list[dict[str, Any]] | None:
        rows = [m for m in receiver.metrics() if m["name"] == "searchtuner.encode.duration"]
        return rows if rows and max(m["count"] for m in rows) == 2 else None

    rows = receiver.wait_for("the encode histogram over OTLP", pushed, 15)
    assert {m["service"] for m in rows} == {"searchtuner-encoder"}

    def encode_spans() -> list[dict[str, Any]] | None:
        spans = [
            s
            for s in receiver.spans()
            if s["name"] == "/encode" and s["service"].startswith("encoder")
        ]
        return spans if len(spans) >= 2 else None

    spans = receiver.wait_for("the encoder's request spans", encode_spans, 15)
    by_id = {s["span_id"]: s for s in receiver.spans()}
    for span in spans:  # each below the gateway's span of its request, in the same trace
        services = []
        while span["parent_span_id"]:
            parent = by_id[span["parent_span_id"]]
            assert parent["trace_id"] == span["trace_id"]
            services.append(parent["service"])
            span = parent
        assert services and services[-1].startswith("gateway"), services
