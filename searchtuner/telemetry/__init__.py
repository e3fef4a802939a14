"""Telemetry: OpenTelemetry traces and metrics of the service, exported over OTLP and Prometheus.

Off unless configured (see :mod:`searchtuner.telemetry.config`); while off, nothing here imports
OpenTelemetry and every hook returns at once. The core library only *uses* a tracer provider
that its host process installed (OpenTelemetry's contract for libraries); the processes that
the service starts install theirs: the worker with :func:`install_tracer_provider`, the
executors through jina. ``docs/telemetry.md`` describes the traces, the metrics and the
settings.

Modules:
    config: :class:`TelemetryConfig` and :func:`config_from_env`.
    tracing: :func:`span`, W3C context carriers across processes, the worker's provider.
    run_trace: :class:`RunTrace`, the spans of one worker attempt at a run.
    metrics: :class:`ProcessMetrics`, one process's meter with Prometheus/OTLP readers.
    instruments: the metric names and the instruments the executors feed.
    run_census: :class:`RunCensus`, runs by state from the run registry.
    prometheus: :func:`merge_expositions` for the gateway's ``GET /metrics``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from searchtuner.telemetry.config import TelemetryConfig, config_from_env
from searchtuner.telemetry.tracing import (
    context_from,
    current_carrier,
    install_tracer_provider,
    span,
)

if TYPE_CHECKING:
    from searchtuner.telemetry.metrics import ProcessMetrics
    from searchtuner.telemetry.run_census import RunCensus
    from searchtuner.telemetry.run_trace import RunTrace

__all__ = [
    "ProcessMetrics",
    "RunCensus",
    "RunTrace",
    "TelemetryConfig",
    "config_from_env",
    "context_from",
    "current_carrier",
    "install_tracer_provider",
    "span",
]

_LAZY = {
    # Imported on first use: these import the run registry, which imports much of the core
    # library, and the core library's modules import this package for `span`.
    "ProcessMetrics": "searchtuner.telemetry.metrics",
    "RunCensus": "searchtuner.telemetry.run_census",
    "RunTrace": "searchtuner.telemetry.run_trace",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'searchtuner.telemetry' has no attribute {name!r}")
