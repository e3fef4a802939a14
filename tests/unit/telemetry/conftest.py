"""Fixtures of the telemetry tests: spans kept in memory, a store and a run registry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from searchtuner.runs import RunRegistry
from searchtuner.store import Store, open_store


@pytest.fixture
def fresh_tracing() -> Iterator[None]:
    """No global tracer provider during the test, and the one before it back afterwards.

    OpenTelemetry lets a process install its global provider once; like OpenTelemetry's own
    tests, this resets the private globals around the test, so that tests may install one
    and the rest of the suite still runs with tracing off.
    """
    saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE)
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, Once()
    try:
        yield
    finally:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = saved


@pytest.fixture
def spans(fresh_tracing: None) -> Iterator[InMemorySpanExporter]:
    """A global tracer provider whose finished spans stay in memory, for this test only."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(tmp_path / "store")


@pytest.fixture
def registry(store: Store) -> RunRegistry:
    return RunRegistry(store)
