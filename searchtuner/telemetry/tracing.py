"""Spans from the core library, and trace context carried from one process to another.

The core library is instrumented the way OpenTelemetry asks libraries to be: it asks the
*global* tracer provider for its tracer and never installs one itself. The application installs
it: the trainer worker with :func:`install_tracer_provider`, the executors by handing jina's
provider on (``executors/common/telemetry.py``). Until one is installed, :func:`span` returns a
no-op context manager after one dictionary lookup, without importing OpenTelemetry at all.

A run is one trace although its work happens in other processes and maybe much later (a
queued run, a run resumed after a restart): the trainer stores the W3C trace context of the
request that queued the run in the run's record (:func:`current_carrier`), and every worker
attempt starts its spans under it (:func:`context_from`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from searchtuner.errors import ConfigError
from searchtuner.telemetry.config import TelemetryConfig, config_from_env

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger("searchtuner.telemetry")

TRACER_NAME = "searchtuner"
"""The instrumentation scope of every span the core library makes."""
SERVICE_NAMESPACE = "searchtuner"
"""``service.namespace`` of every SearchTuner process; ``service.name`` names the part."""

AttributeValue = str | bool | int | float
EXPORT_TIMEOUT = 3.0
"""Seconds one OTLP export may take, retries included, unless the standard
``OTEL_EXPORTER_OTLP_TIMEOUT`` says otherwise. Processes export as they exit (a worker, its
last spans; an executor, its last metrics): with the collector unreachable, the SDK's default
(10 s of retries) would hold a run's worker slot, or a Flow's shutdown, that long."""


def tracer() -> Tracer | None:
    """The core library's tracer, or ``None`` while no tracer provider is installed."""
    api = sys.modules.get("opentelemetry.trace")
    if api is None:  # nothing imported OpenTelemetry, so nothing installed a provider
        return None
    provider = api.get_tracer_provider()
    if isinstance(provider, api.ProxyTracerProvider | api.NoOpTracerProvider):
        return None
    return provider.get_tracer(TRACER_NAME)


def span(
    name: str, attributes: Mapping[str, AttributeValue] | None = None
) -> AbstractContextManager[Span | None]:
    """A span around a block, child of the current span; a no-op while tracing is off.

    Args:
        name: what the block does, e.g. ``searchtuner.publish`` (low cardinality: ids go into
            attributes).
        attributes: facts about this call (``searchtuner.run.id``...).
    """
    found = tracer()
    if found is None:
        return nullcontext()
    return found.start_as_current_span(name, attributes=attributes)


def current_carrier() -> dict[str, str]:
    """The current span's W3C trace context (``traceparent``, maybe ``tracestate``).

    Empty when there is no recording span, so callers can store it unconditionally.
    """
    api = sys.modules.get("opentelemetry.trace")
    if api is None or not api.get_current_span().get_span_context().is_valid:
        return {}
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    # W3C trace context whatever OTEL_PROPAGATORS says: the carrier is stored in run records
    # and read by other processes, possibly of a later release, so its format is fixed.
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def context_from(carrier: Mapping[str, str]) -> Context:
    """The context to start spans in, from a carrier made by :func:`current_carrier`.

    An empty or malformed carrier gives an empty context: the spans then start a new trace.
    """
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(dict(carrier))


def install_tracer_provider(
    config: TelemetryConfig,
    service_name: str,
    *,
    processor: SpanProcessor | None = None,
) -> TracerProvider | None:
    """Install the global tracer provider of a process the service starts (a worker).

    Spans are batched and pushed to ``config.otlp_endpoint`` over OTLP/gRPC; call
    ``shutdown()`` on the returned provider before the process exits, or the last batch is
    lost.

    Args:
        config: the process's telemetry settings; nothing is installed unless tracing is on
            (or a ``processor`` is given).
        service_name: ``service.name`` of the spans, e.g. ``searchtuner-worker``.
        processor: where spans go instead of the OTLP exporter (tests).

    Returns:
        The installed provider, or ``None`` when tracing is off.

    Raises:
        ConfigError: tracing is on but the OpenTelemetry SDK is not installed.
    """
    if processor is None and not config.tracing:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as err:
        raise ConfigError(
            "tracing is configured (SEARCHTUNER_OTLP_ENDPOINT) but the OpenTelemetry SDK is "
            "not installed: pip install 'searchtuner[service]'"
        ) from err
    provider = TracerProvider(resource=_resource(service_name))
    if processor is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        endpoint = config.otlp_endpoint or ""
        exporter = OTLPSpanExporter(
            endpoint=endpoint, insecure=endpoint.startswith("http://"), timeout=export_timeout()
        )
        processor = BatchSpanProcessor(exporter)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def install_from_env(service_name: str) -> TracerProvider | None:
    """:func:`install_tracer_provider` with this process's settings; ``None`` when tracing
    is off, or when its settings are unusable (a warning says why: telemetry never stops the
    work it watches)."""
    try:
        return install_tracer_provider(config_from_env(), service_name)
    except ConfigError as err:
        logger.warning("tracing is off in this process: %s", err)
        return None


def export_timeout() -> float | None:
    """The timeout to give an OTLP exporter: ``None`` (the SDK reads the standard variables)
    when one is set, else :data:`EXPORT_TIMEOUT`."""
    standard = ("OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
                "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT")  # fmt: skip
    return None if any(name in os.environ for name in standard) else EXPORT_TIMEOUT


def use_tracer_provider(provider: Any) -> None:
    """Make ``provider`` (e.g. the one jina made for an executor) the global one, so that the
    core library's spans join the executor's traces; does nothing if one is installed."""
    from opentelemetry import trace

    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)


@contextmanager
def attached(context: Context | None) -> Iterator[None]:
    """Make ``context`` current for a block (``None``: leave the current one)."""
    if context is None:
        yield
        return
    from opentelemetry import context as otel_context

    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def _resource(service_name: str) -> Any:
    from opentelemetry.sdk.resources import Resource

    # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES (k8s pod name, deployment...).
    return Resource.create({"service.name": service_name, "service.namespace": SERVICE_NAMESPACE})
