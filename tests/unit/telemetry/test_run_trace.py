"""RunTrace: a worker attempt's spans, one per phase, in the trace the run's record names."""

from __future__ import annotations

import itertools
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from searchtuner.runs import RunRegistry, RunState
from searchtuner.runs.worker import EXIT_OK, run_worker
from searchtuner.store import Store
from searchtuner.telemetry import current_carrier, span
from searchtuner.telemetry.run_trace import RunTrace
from tests.unit.runs.helpers import OWNER, clusters, mlp_request, queue_run, upload

S = RunState
PHASE_SPANS = [
    "searchtuner.run.preparing",
    "searchtuner.run.training",
    "searchtuner.run.evaluating",
    "searchtuner.run.publishing",
]


def _queued(registry: RunRegistry, store: Store, *, traced: bool = True) -> str:
    """A run in QUEUED whose record holds the trace context of a ``searchtuner.queue`` span."""
    run_id = queue_run(registry, mlp_request(upload(store, clusters(32))))
    with span("searchtuner.queue"):
        carrier = current_carrier()
    if traced:
        registry.update(OWNER, run_id, trace_context=carrier)
    registry.transition(OWNER, run_id, S.QUEUED)
    return run_id


def _by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans.get_finished_spans()}


def _parent(child: ReadableSpan) -> int | None:
    return None if child.parent is None else child.parent.span_id


def test_off_it_records_nothing(fresh_tracing: None, registry: RunRegistry, store: Store) -> None:
    run_id = _queued(registry, store)
    run_trace = RunTrace(registry.get(OWNER, run_id)).start()
    assert not run_trace.enabled
    run_trace.phase(registry.transition(OWNER, run_id, S.PREPARING))
    run_trace.end()
    assert registry.get(OWNER, run_id).trace_context == {}  # nothing to carry either


def test_one_span_per_phase_under_the_run_span_in_the_queued_trace(
    spans: InMemorySpanExporter, registry: RunRegistry, store: Store
) -> None:
    run_id = _queued(registry, store)
    record = registry.update(OWNER, run_id, attempt=1)
    run_trace = RunTrace(record).start()
    for state in (S.PREPARING, S.TRAINING):
        run_trace.phase(registry.transition(OWNER, run_id, state))
    progress = {"step": 12, "total_steps": 12, "samples_per_second": 250.5, "loss": 0.25}
    run_trace.phase(registry.transition(OWNER, run_id, S.EVALUATING, progress=progress))
    run_trace.phase(registry.transition(OWNER, run_id, S.PUBLISHING))
    with span("searchtuner.publish"):  # what publish_checkpoint makes, in the worker's thread
        pass
    run_trace.phase(registry.transition(OWNER, run_id, S.FINISHED))
    run_trace.end()

    found = _by_name(spans)
    queue, run = found["searchtuner.queue"], found["searchtuner.run"]
    assert {s.context.trace_id for s in found.values()} == {queue.context.trace_id}
    assert _parent(run) == queue.context.span_id
    assert dict(run.attributes or {}) == {
        "searchtuner.run.id": run_id,
        "searchtuner.run.owner": OWNER,
        "searchtuner.run.attempt": 1,
        "searchtuner.run.model": "mlp",
        "searchtuner.run.resumed": False,
        "searchtuner.run.state": "FINISHED",
    }
    phases = sorted((found[name] for name in PHASE_SPANS), key=lambda s: s.start_time or 0)
    assert [s.name for s in phases] == PHASE_SPANS
    assert all(_parent(s) == run.context.span_id for s in phases)
    for before, after in itertools.pairwise(phases):
        assert (before.end_time or 0) <= (after.start_time or 0)  # one after the other
    training = found["searchtuner.run.training"].attributes or {}
    assert training["searchtuner.training.samples_per_second"] == 250.5
    assert training["searchtuner.training.step"] == 12
    assert "searchtuner.training.step" not in (found["searchtuner.run.evaluating"].attributes or {})
    assert (
        _parent(found["searchtuner.publish"]) == found["searchtuner.run.publishing"].context.span_id
    )
    assert run.status.status_code is StatusCode.UNSET
    # Nothing stays current after the attempt.
    assert not trace.get_current_span().get_span_context().is_valid


def test_a_failed_run_marks_its_run_and_phase_spans(
    spans: InMemorySpanExporter, registry: RunRegistry, store: Store
) -> None:
    run_id = _queued(registry, store)
    run_trace = RunTrace(registry.get(OWNER, run_id)).start()
    run_trace.phase(registry.transition(OWNER, run_id, S.PREPARING))
    reason = "dataset std1:e not found; upload it first"
    run_trace.phase(registry.transition(OWNER, run_id, S.FAILED, reason=reason))
    run_trace.end()
    found = _by_name(spans)
    for name in ("searchtuner.run", "searchtuner.run.preparing"):
        assert found[name].status.status_code is StatusCode.ERROR
        assert found[name].status.description == reason
    assert (found["searchtuner.run"].attributes or {})["searchtuner.run.state"] == "FAILED"


def test_a_resumed_attempt_joins_the_same_trace(
    spans: InMemorySpanExporter, registry: RunRegistry, store: Store
) -> None:
    run_id = _queued(registry, store)
    first = RunTrace(registry.update(OWNER, run_id, attempt=1)).start()
    first.phase(registry.transition(OWNER, run_id, S.PREPARING))
    first.phase(registry.transition(OWNER, run_id, S.TRAINING))
    first.end()  # the worker was killed, or the service restarted
    second = RunTrace(registry.update(OWNER, run_id, attempt=2)).start()
    second.phase(registry.transition(OWNER, run_id, S.PREPARING))
    second.end()
    finished = spans.get_finished_spans()
    runs = [s for s in finished if s.name == "searchtuner.run"]
    queue = next(s for s in finished if s.name == "searchtuner.queue")
    assert len(runs) == 2
    assert {s.context.trace_id for s in finished} == {queue.context.trace_id}
    assert {_parent(s) for s in runs} == {queue.context.span_id}
    attributes = [dict(s.attributes or {}) for s in runs]
    assert [(a["searchtuner.run.attempt"], a["searchtuner.run.resumed"]) for a in attributes] == [
        (1, False),
        (2, True),
    ]
    assert attributes[0]["searchtuner.run.state"] == "TRAINING"  # where the first one stopped


def test_a_run_without_a_stored_context_gets_a_trace_of_its_own(
    spans: InMemorySpanExporter, registry: RunRegistry, store: Store
) -> None:
    run_id = _queued(registry, store, traced=False)
    RunTrace(registry.get(OWNER, run_id)).start().end()
    run = _by_name(spans)["searchtuner.run"]
    assert run.parent is None


def test_the_worker_traces_a_real_run(
    spans: InMemorySpanExporter, registry: RunRegistry, store: Store, tmp_path: Path
) -> None:
    run_id = _queued(registry, store)
    registry.update(OWNER, run_id, attempt=1)
    code = run_worker(store, OWNER, run_id, tmp_path / "scratch", flush_interval=0.2)
    assert code == EXIT_OK, registry.logs(OWNER, run_id)
    found = _by_name(spans)
    run = found["searchtuner.run"]
    assert _parent(run) == found["searchtuner.queue"].context.span_id
    assert all(_parent(found[name]) == run.context.span_id for name in PHASE_SPANS)
    publish = found["searchtuner.publish"]
    assert _parent(publish) == found["searchtuner.run.publishing"].context.span_id
    handle = registry.get(OWNER, run_id).model_handle or ""
    assert (publish.attributes or {})["searchtuner.model.sha256"] in handle
    training = found["searchtuner.run.training"].attributes or {}
    assert training["searchtuner.training.step"] == training["searchtuner.training.total_steps"]
    assert float(training["searchtuner.training.samples_per_second"]) > 0
