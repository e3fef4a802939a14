"""An executor's telemetry: jina's tracer for spans, a meter for metrics, ``/telemetry/metrics``.

Jina makes the tracer: with ``Flow(tracing=True, ...)`` each executor gets ``self.tracer`` and
``self.tracer_provider``, a span per request named after the endpoint, and the gateway's trace
context arrives with each request (``tracing_context`` among an endpoint's keyword
arguments). Endpoints that do work worth a span of their own open it under that context
(:meth:`ExecutorTelemetry.span`), and the provider becomes the process's global one so the
core library's spans (``searchtuner.publish``) join the same traces.

Metrics come from :class:`searchtuner.telemetry.ProcessMetrics` (settings from the environment,
see ``docs/telemetry.md``). The gateway's ``GET /metrics`` sends one ``/telemetry/metrics``
request along the chain; each executor appends what it measures, in the Prometheus text
format, as one :class:`TelemetrySnapshot`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from docarray import DocList

from searchtuner.service.schemas import TelemetrySnapshot
from searchtuner.telemetry import ProcessMetrics, config_from_env
from searchtuner.telemetry.tracing import attached, use_tracer_provider

METRICS_ENDPOINT = "/telemetry/metrics"


class ExecutorTelemetry:
    """Tracing and metrics of one executor; every method is a no-op while telemetry is off.

    Args:
        name: the executor's name in the Flow (``trainer``), the ``service`` label of its
            metrics.
        tracer: jina's tracer for this executor (``None`` without ``tracing=True``).
        tracer_provider: jina's tracer provider for this executor (or ``None``).

    Raises:
        ConfigError: a telemetry setting in the environment that cannot be used.
    """

    def __init__(self, name: str, tracer: Any = None, tracer_provider: Any = None) -> None:
        self.name = name
        self.tracer = tracer
        self.config = config_from_env()
        self.metrics = (
            ProcessMetrics(self.config, f"searchtuner-{name}")
            if self.config.metrics_enabled
            else None
        )
        if tracer_provider is not None:
            use_tracer_provider(tracer_provider)

    @property
    def meter(self) -> Any:
        """The meter to create instruments on, or ``None`` while metrics are off."""
        return None if self.metrics is None else self.metrics.meter

    def span(
        self, name: str, tracing_context: Any, attributes: dict[str, Any] | None = None
    ) -> AbstractContextManager[Any]:
        """A span under the request's span (``tracing_context``), current for the block."""
        if self.tracer is None:
            return nullcontext()
        return self.tracer.start_as_current_span(
            name, context=tracing_context, attributes=attributes
        )

    def attached(self, tracing_context: Any) -> AbstractContextManager[None]:
        """Make the request's span current for the block, so core spans become its
        children (jina runs synchronous endpoints on a thread pool, outside its context)."""
        if self.tracer is None:
            return nullcontext()
        return attached(tracing_context)

    def append_snapshot(self, docs: DocList[TelemetrySnapshot]) -> DocList[TelemetrySnapshot]:
        """``docs`` with this executor's metrics appended (unchanged while metrics are off, or
        while it has measured nothing)."""
        text = "" if self.metrics is None else self.metrics.exposition()
        if text:
            docs.append(TelemetrySnapshot(service=self.name, text=text))
        return docs

    def close(self) -> None:
        """Push the metrics not yet sent and stop the readers."""
        if self.metrics is not None:
            self.metrics.shutdown()
            self.metrics = None
