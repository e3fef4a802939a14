"""Executor telemetry, with the executors' methods called directly: off by default, and with
metrics on, what each executor measures in its ``/telemetry/metrics`` snapshot; the trainer
keeps the queueing request's trace context in the run's record.

The whole chain (gateway ``/metrics``, spans from the gateway into the worker) is the subject
of tests/e2e/test_service_telemetry.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from docarray import DocList
from docarray.base_doc import AnyDoc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

import searchtuner
from executors.common.telemetry import ExecutorTelemetry
from executors.converter.executor import Converter
from executors.encoder.executor import Encoder
from executors.ingest.executor import Ingest
from executors.trainer.executor import RunTrainer
from searchtuner.data import LabeledDoc
from searchtuner.data.stored import DatasetWriter
from searchtuner.runs import RunRegistry, RunState
from searchtuner.service.schemas import (
    FitRequest,
    IngestDoc,
    RunDoc,
    TelemetrySnapshot,
    UploadRequest,
)
from searchtuner.store import LocalStore
from searchtuner.telemetry.run_census import LOOK_INTERVAL

OWNER = "local"  # the owner of the conftest's `token`
DIM = 8


@pytest.fixture(autouse=True)
def _no_telemetry_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the environment running the tests says: telemetry off."""
    for name in (
        "SEARCHTUNER_METRICS",
        "SEARCHTUNER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_SDK_DISABLED",
    ):
        monkeypatch.delenv(name, raising=False)


def _seed() -> DocList[TelemetrySnapshot]:
    return DocList[TelemetrySnapshot]([TelemetrySnapshot(service="gateway")])


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _vectors(n: int) -> DocList[IngestDoc]:
    rng = np.random.default_rng(0)
    return DocList[IngestDoc](
        IngestDoc(tensor=rng.normal(size=DIM).astype(np.float32), label=f"c{i % 2}")
        for i in range(n)
    )


def test_off_by_default_nothing_is_measured_and_snapshots_pass_through(
    store: LocalStore,
) -> None:
    telemetry = ExecutorTelemetry("ingest")
    assert telemetry.metrics is None and telemetry.meter is None
    with telemetry.span("searchtuner.queue", None) as span, telemetry.attached(None):
        assert span is None
    ingest = Ingest(store_uri=store.uri())
    try:
        assert ingest.ingest_meter is None
        docs = ingest.telemetry_metrics(_seed())
        assert [doc.service for doc in docs] == ["gateway"]
    finally:
        ingest.close()


def test_ingest_reports_the_documents_it_stored(
    store: LocalStore, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_METRICS", "true")
    ingest = Ingest(store_uri=store.uri(), metas={"name": "ingest"})
    try:
        begin = DocList[UploadRequest]([UploadRequest(kind="labeled")])
        (status,) = ingest.begin(begin, {"token": token})
        for _ in range(3):
            ingest.append(_vectors(40), {"token": token, "upload_id": status.upload_id})
        docs = ingest.telemetry_metrics(_seed())
        assert [doc.service for doc in docs] == ["gateway", "ingest"]
        values = _values(docs[1].text)
        assert values[("searchtuner_ingest_documents_total", ())] == 120.0
        assert values[("searchtuner_ingest_throughput_per_second", ())] == pytest.approx(2.0)
    finally:
        ingest.close()


def test_the_trainer_reports_runs_by_state_and_its_queue(
    store: LocalStore, token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_METRICS", "true")
    registry = RunRegistry(store)
    trainer = RunTrainer(store_uri=store.uri(), scratch_dir=str(tmp_path / "scratch"))
    try:
        before = _values(trainer.telemetry_metrics(_seed())[1].text)
        assert before[("searchtuner_runs", (("state", "FINISHED"),))] == 0.0
        converter = Converter(store_uri=store.uri())
        (run,) = converter.create(DocList[FitRequest]([_fit(store)]), {"token": token})
        converter.close()
        for state in (RunState.QUEUED, RunState.PREPARING, RunState.TRAINING):
            registry.transition(OWNER, run.run_id, state)
        registry.update(OWNER, run.run_id, progress={"samples_per_second": 12.5})
        time.sleep(LOOK_INTERVAL + 0.1)  # the first look is reused until then
        values = _values(trainer.telemetry_metrics(_seed())[1].text)
        assert values[("searchtuner_runs", (("state", "TRAINING"),))] == 1.0
        assert values[("searchtuner_runs", (("state", "VALIDATING"),))] == 0.0
        speed = ("searchtuner_training_throughput_per_second", (("run_id", run.run_id),))
        assert values[speed] == 12.5
        assert values[("searchtuner_queue_length", ())] == 0.0
        assert values[("searchtuner_workers", ())] == 0.0  # it never queued this one
    finally:
        trainer.close()


def test_the_trainer_stores_the_queueing_requests_trace_context(
    store: LocalStore, token: str, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    trainer = RunTrainer(store_uri=store.uri(), scratch_dir=str(tmp_path / "scratch"))
    converter = Converter(store_uri=store.uri())
    try:
        (run,) = converter.create(DocList[FitRequest]([_fit(store)]), {"token": token})
        trainer.telemetry.tracer = tracer  # what jina hands over with Flow(tracing=True)
        with tracer.start_as_current_span("/runs/create") as request_span:
            request_context = otel_context.get_current()
        (queued,) = trainer.create(
            DocList[RunDoc]([run]), {"token": token}, tracing_context=request_context
        )
        assert queued.state == "QUEUED"
        queue_span = next(s for s in exporter.get_finished_spans() if s.name == "searchtuner.queue")
        assert queue_span.parent is not None
        assert queue_span.parent.span_id == request_span.get_span_context().span_id
        assert (queue_span.attributes or {})["searchtuner.run.id"] == run.run_id
        carrier = RunRegistry(store).get(OWNER, run.run_id).trace_context
        trace_id, span_id = carrier["traceparent"].split("-")[1:3]
        assert trace_id == f"{queue_span.context.trace_id:032x}"
        assert span_id == f"{queue_span.context.span_id:016x}"
        assert not trace.get_current_span().get_span_context().is_valid  # nothing left current
    finally:
        converter.close()
        trainer.close()


@pytest.fixture(scope="module")
def mlp_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = searchtuner.build_model("mlp", input_dim=DIM, hidden_dims=[16], output_dim=4)
    return searchtuner.save_bundle(model, tmp_path_factory.mktemp("mlp") / "bundle", onnx=False)


def test_the_encoder_reports_its_latency_and_documents(
    mlp_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_METRICS", "true")
    encoder = Encoder(model=str(mlp_bundle))
    try:
        rng = np.random.default_rng(1)
        for n in (3, 5):
            docs = DocList[AnyDoc](
                [AnyDoc(tensor=rng.normal(size=DIM).astype(np.float32)) for _ in range(n)]
            )
            encoder.encode(docs)
        (_, snapshot) = encoder.telemetry_metrics(_seed())
        assert snapshot.service == "Encoder"
        values = _values(snapshot.text)
        torch_backend = (("backend", "torch"),)
        assert values[("searchtuner_encode_duration_seconds_count", torch_backend)] == 2.0
        assert values[("searchtuner_encode_duration_seconds_sum", torch_backend)] > 0
        assert values[("searchtuner_encode_documents_total", torch_backend)] == 8.0
    finally:
        encoder.close()


def _fit(store: LocalStore) -> FitRequest:
    rng = np.random.default_rng(0)
    writer = DatasetWriter(store.for_owner(OWNER), kind="labeled")
    writer.add(
        [
            LabeledDoc(tensor=rng.normal(size=DIM).astype(np.float32), label=f"c{i % 4}")
            for i in range(32)
        ]
    )
    handle = writer.commit().handle
    return FitRequest(
        model="mlp",
        model_options={"input_dim": DIM, "hidden_dims": [16]},
        train_data=handle,
        onnx=False,
        config={"batch_size": 8, "max_steps": 1},
    )
