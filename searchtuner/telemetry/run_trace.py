"""RunTrace: the spans of one worker attempt at a run, in the trace of the request that made it.

::

    <the request's trace: gateway → converter → trainer /runs/create → searchtuner.queue>
      searchtuner.run                  one per worker attempt (a resumed run adds another)
        searchtuner.run.preparing      load data, build the model, resume from a checkpoint
        searchtuner.run.training       Trainer.fit
        searchtuner.run.evaluating     metrics before/after into the store
        searchtuner.run.publishing     checkpoint → bundle → archive
          searchtuner.publish          (made by searchtuner.artifacts.publish_checkpoint)

The parent is the W3C context the trainer stored in the run's record when it queued the run,
so a run queued for hours, or resumed by the next service after a restart, stays one trace.
The phase spans follow the run's state changes (the worker's :class:`EventSink` reports each
one), so the worker's code needs no span per step.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from searchtuner.runs.records import RunRecord
from searchtuner.runs.states import RunState
from searchtuner.telemetry import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

RUN_SPAN = "searchtuner.run"
PHASES: tuple[RunState, ...] = (
    RunState.PREPARING,
    RunState.TRAINING,
    RunState.EVALUATING,
    RunState.PUBLISHING,
)
"""The states that get a span of their own, in the order a run goes through them."""
_PROGRESS_ATTRIBUTES = ("step", "total_steps", "epoch", "samples_per_second", "loss")


def phase_span_name(state: RunState) -> str:
    """``searchtuner.run.training`` for TRAINING, and so on."""
    return f"{RUN_SPAN}.{state.value.lower()}"


class RunTrace:
    """The run span of one worker attempt and a span per phase under it.

    Call :meth:`start` before the first state change, :meth:`phase` after each one (with the
    record as written), and :meth:`end` when the attempt is over, whatever happened. While
    tracing is off every method returns at once.

    The open span is made the current one in the thread that called :meth:`start`, so spans
    the core library makes meanwhile (publishing) become its children.

    Args:
        record: the run's record as the worker found it (``trace_context`` is the parent).
        tracer: where spans come from (default: the core library's, if a provider is
            installed).
    """

    def __init__(self, record: RunRecord, tracer: Tracer | None = None) -> None:
        self.record = record
        self._tracer = tracer if tracer is not None else tracing.tracer()
        self._run: Span | None = None
        self._phase: Span | None = None
        self._phase_state: RunState | None = None
        self._thread: int | None = None
        self._run_token: object | None = None
        self._phase_token: object | None = None
        self._state: RunState = record.state

    @property
    def enabled(self) -> bool:
        """Whether spans are recorded."""
        return self._tracer is not None

    def start(self) -> RunTrace:
        """Open the run span under the context stored in the record."""
        if self._tracer is None or self._run is not None:
            return self
        record = self.record
        attributes: dict[str, tracing.AttributeValue] = {
            "searchtuner.run.id": record.run_id,
            "searchtuner.run.owner": record.owner,
            "searchtuner.run.attempt": record.attempt,
            "searchtuner.run.model": record.request.model,
            "searchtuner.run.resumed": record.state is not RunState.QUEUED,
        }
        parent = tracing.context_from(record.trace_context)
        self._run = self._tracer.start_span(RUN_SPAN, context=parent, attributes=attributes)
        self._thread = threading.get_ident()
        self._run_token = self._attach(self._run)
        return self

    def phase(self, record: RunRecord) -> None:
        """Follow a state change: close the phase span that ends, open the one that begins."""
        if self._tracer is None or self._run is None:
            return
        self._state = record.state
        self._close_phase(record)
        if record.state in PHASES:
            attributes = {"searchtuner.run.id": record.run_id}
            context = _in(self._run)
            self._phase = self._tracer.start_span(
                phase_span_name(record.state), context=context, attributes=attributes
            )
            self._phase_state = record.state
            self._phase_token = self._attach(self._phase)
        elif record.state is RunState.FAILED:
            from opentelemetry.trace import Status, StatusCode

            self._run.set_status(Status(StatusCode.ERROR, record.reason or "failed"))

    def end(self) -> None:
        """Close the open spans (the run span records the last state it saw)."""
        if self._run is None:
            return
        self._close_phase(None)
        self._run.set_attribute("searchtuner.run.state", self._state.value)
        self._detach(self._run_token)
        self._run_token = None
        self._run.end()
        self._run = None

    # -- helpers -----------------------------------------------------------------------------

    def _close_phase(self, record: RunRecord | None) -> None:
        if self._phase is None:
            return
        training = self._phase_state is RunState.TRAINING
        progress = (record.progress if record is not None and training else None) or {}
        for name in _PROGRESS_ATTRIBUTES:
            value = progress.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                self._phase.set_attribute(f"searchtuner.training.{name}", value)
        if record is not None and record.state is RunState.FAILED:
            from opentelemetry.trace import Status, StatusCode

            self._phase.set_status(Status(StatusCode.ERROR, record.reason or "failed"))
        self._detach(self._phase_token)
        self._phase_token = None
        self._phase.end()
        self._phase, self._phase_state = None, None

    def _attach(self, span: Span) -> object | None:
        # Contexts are per thread: only the thread that started the trace makes its spans
        # current, and it detaches them in reverse order (the run span first in, last out).
        if threading.get_ident() != self._thread:
            return None
        from opentelemetry import context

        return context.attach(_in(span))

    def _detach(self, token: object | None) -> None:
        if token is None or threading.get_ident() != self._thread:
            return
        from opentelemetry import context

        context.detach(token)  # type: ignore[arg-type]


def _in(span: Span) -> Any:
    from opentelemetry.trace import set_span_in_context

    return set_span_in_context(span)
