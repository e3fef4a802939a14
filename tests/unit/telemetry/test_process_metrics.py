"""ProcessMetrics and the service's instruments: real values in the Prometheus text and OTLP."""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from searchtuner.runs import RunRegistry, RunState
from searchtuner.telemetry import ProcessMetrics, RunCensus, TelemetryConfig
from searchtuner.telemetry.instruments import EncodeMeter, IngestMeter, observe_runs
from tests.unit.runs.helpers import OWNER, mlp_request, queue_run

PROMETHEUS = TelemetryConfig(metrics=True)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_the_trainer_gauges_read_the_registry_and_the_supervisor(registry: RunRegistry) -> None:
    queued = queue_run(registry, mlp_request("std1:" + "a" * 64))
    registry.transition(OWNER, queued, RunState.QUEUED)
    training = queue_run(registry, mlp_request("std1:" + "b" * 64))
    for state in (RunState.QUEUED, RunState.PREPARING, RunState.TRAINING):
        registry.transition(OWNER, training, state)
    registry.update(OWNER, training, progress={"samples_per_second": 88.25})
    status = {"queued": [queued], "running": [training], "max_concurrent": 1}
    metrics = ProcessMetrics(PROMETHEUS, "searchtuner-trainer")
    observe_runs(metrics.meter, RunCensus(registry, [OWNER], min_interval=0.0), lambda: status)

    found = samples(metrics.exposition())
    runs = {
        labels[0][1]: value for (name, labels), value in found.items() if name == "searchtuner_runs"
    }
    assert runs == {**{state.value: 0.0 for state in RunState}, "QUEUED": 1.0, "TRAINING": 1.0}
    assert found[("searchtuner_queue_length", ())] == 1.0
    assert found[("searchtuner_workers", ())] == 1.0
    throughput = ("searchtuner_training_throughput_per_second", (("run_id", training),))
    assert found[throughput] == 88.25
    # The next collection reads the registry again: the numbers follow the runs.
    registry.transition(OWNER, queued, RunState.CANCELLED, reason="cancelled by the user")
    status["queued"] = []
    again = samples(metrics.exposition())
    assert again[("searchtuner_runs", (("state", "CANCELLED"),))] == 1.0
    assert again[("searchtuner_runs", (("state", "QUEUED"),))] == 0.0
    assert again[("searchtuner_queue_length", ())] == 0.0
    metrics.shutdown()


def test_ingest_counts_documents_and_their_rate() -> None:
    metrics = ProcessMetrics(PROMETHEUS, "searchtuner-ingest")
    meter = IngestMeter(metrics.meter, window=60.0)
    meter.record(5000)
    meter.record(1000)
    found = samples(metrics.exposition())
    assert found[("searchtuner_ingest_documents_total", ())] == 6000.0
    assert found[("searchtuner_ingest_throughput_per_second", ())] == pytest.approx(100.0)
    metrics.shutdown()


def test_encode_latency_is_a_histogram_per_backend() -> None:
    reader = InMemoryMetricReader()
    metrics = ProcessMetrics(PROMETHEUS, "searchtuner-encoder", readers=[reader])
    meter = EncodeMeter(metrics.meter, "onnx")
    for documents in (3, 4):
        with meter.measure(documents):
            time.sleep(0.003)
    with pytest.raises(RuntimeError), meter.measure(9):
        raise RuntimeError("the model failed")  # a failed call is not a latency
    found = samples(metrics.exposition())
    onnx = (("backend", "onnx"),)
    assert found[("searchtuner_encode_duration_seconds_count", onnx)] == 2.0
    assert 0.006 <= found[("searchtuner_encode_duration_seconds_sum", onnx)] < 1.0
    assert found[("searchtuner_encode_duration_seconds_bucket", (*onnx, ("le", "0.001")))] == 0.0
    assert found[("searchtuner_encode_duration_seconds_bucket", (*onnx, ("le", "+Inf")))] == 2.0
    assert found[("searchtuner_encode_documents_total", onnx)] == 7.0
    # The same instruments, as an OTLP exporter reads them.
    data = reader.get_metrics_data()
    assert data is not None
    (resource_metrics,) = data.resource_metrics
    assert resource_metrics.resource.attributes["service.name"] == "searchtuner-encoder"
    by_name: dict[str, Any] = {
        m.name: m for scope in resource_metrics.scope_metrics for m in scope.metrics
    }
    assert set(by_name) == {"searchtuner.encode.duration", "searchtuner.encode.documents"}
    (point,) = by_name["searchtuner.encode.duration"].data.data_points
    assert point.count == 2 and by_name["searchtuner.encode.duration"].unit == "s"
    metrics.shutdown()


def test_without_prometheus_there_is_no_text() -> None:
    reader = InMemoryMetricReader()
    metrics = ProcessMetrics(TelemetryConfig(), "searchtuner-ingest", readers=[reader])
    IngestMeter(metrics.meter).record(3)
    assert metrics.exposition() == ""
    assert reader.get_metrics_data() is not None
    metrics.shutdown()
