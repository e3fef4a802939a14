"""Core spans through the global provider, W3C carriers across processes, and nothing while off."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from searchtuner.telemetry import (
    TelemetryConfig,
    context_from,
    current_carrier,
    install_tracer_provider,
    span,
)
from searchtuner.telemetry.tracing import EXPORT_TIMEOUT, export_timeout, install_from_env, tracer

REPO = Path(__file__).resolve().parents[3]


def test_while_off_nothing_imports_opentelemetry_or_records() -> None:
    # A fresh interpreter: the test process itself has imported OpenTelemetry long ago.
    script = textwrap.dedent(
        """
        import sys
        from searchtuner.telemetry import span, current_carrier
        from searchtuner.telemetry.run_trace import RunTrace
        with span("searchtuner.publish", {"a": 1}) as current:
            assert current is None
        assert current_carrier() == {}
        modules = sorted(name for name in sys.modules if name.startswith("opentelemetry"))
        assert not modules, modules
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_without_a_provider_spans_are_no_ops(fresh_tracing: None) -> None:
    assert tracer() is None
    with span("searchtuner.publish") as current:
        assert current is None
    assert current_carrier() == {}


def test_spans_nest_under_the_current_span(spans: InMemorySpanExporter) -> None:
    with span("outer", {"searchtuner.run.id": "r1"}), span("inner") as inner:
        assert inner is not None and inner.is_recording()
    inner_span, outer_span = spans.get_finished_spans()
    assert (inner_span.name, outer_span.name) == ("inner", "outer")
    assert inner_span.parent is not None
    assert inner_span.parent.span_id == outer_span.context.span_id
    assert outer_span.parent is None and outer_span.attributes == {"searchtuner.run.id": "r1"}
    assert inner_span.instrumentation_scope.name == "searchtuner"


def test_a_carrier_continues_the_trace_elsewhere(spans: InMemorySpanExporter) -> None:
    with span("queue") as queued:
        carrier = current_carrier()
    assert queued is not None
    context = queued.get_span_context()
    version, trace_id, span_id, flags = carrier["traceparent"].split("-")
    assert (version, trace_id, span_id) == (
        "00",
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
    )
    assert int(flags, 16) & 1  # sampled
    # What a worker does, maybe hours later in another process.
    later = trace.get_tracer("test").start_span("run", context=context_from(carrier))
    later.end()
    run = spans.get_finished_spans()[-1]
    assert run.context.trace_id == context.trace_id
    assert run.parent is not None and run.parent.span_id == context.span_id


@pytest.mark.parametrize("carrier", [{}, {"traceparent": "not-a-traceparent"}])
def test_no_usable_carrier_starts_a_new_trace(
    spans: InMemorySpanExporter, carrier: dict[str, str]
) -> None:
    trace.get_tracer("test").start_span("run", context=context_from(carrier)).end()
    (run,) = spans.get_finished_spans()
    assert run.parent is None


def test_a_worker_installs_its_provider_only_when_tracing_is_on(fresh_tracing: None) -> None:
    assert install_tracer_provider(TelemetryConfig(metrics=True), "searchtuner-worker") is None
    assert tracer() is None
    exporter = InMemorySpanExporter()
    provider = install_tracer_provider(
        TelemetryConfig(), "searchtuner-worker", processor=SimpleSpanProcessor(exporter)
    )
    assert provider is not None and trace.get_tracer_provider() is provider
    with span("searchtuner.run"):
        pass
    (run,) = exporter.get_finished_spans()
    assert run.resource.attributes["service.name"] == "searchtuner-worker"
    assert run.resource.attributes["service.namespace"] == "searchtuner"
    provider.shutdown()


def test_bad_settings_leave_a_worker_untraced_with_a_warning(
    fresh_tracing: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SEARCHTUNER_OTLP_ENDPOINT", "collector:4317")
    with caplog.at_level(logging.WARNING, logger="searchtuner.telemetry"):
        assert install_from_env("searchtuner-worker") is None
    assert "tracing is off in this process" in caplog.text and "http://host:port" in caplog.text
    assert tracer() is None


def test_exports_give_up_after_seconds_unless_the_standard_timeout_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                 "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    assert export_timeout() == EXPORT_TIMEOUT == 3.0
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "20")
    assert export_timeout() is None  # the SDK reads the variable itself
