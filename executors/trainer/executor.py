"""Trainer: queues runs, trains each in its own worker process group, answers about runs.

The second stage of ``/runs/create`` (it queues what the converter validated) and the home of
every other run operation: get, list, events, logs, metrics, cancel and delete. The work
happens in :class:`searchtuner.runs.RunSupervisor`: a background thread that starts one worker
process (``python -m searchtuner.runs.worker``) per run, in its own process group, at most
``max_concurrent`` at a time. A worker writes its state, events, metrics and checkpoints to
the store, so every answer here is read from the store: it survives a restart of this
executor, and a restarted executor resumes unfinished runs from their last checkpoint.
"""

import os
import sys
from pathlib import Path
from typing import Any

from docarray import DocList
from jina import requests

from searchtuner.runs import RunRegistry, RunState, RunSupervisor
from searchtuner.service.schemas import EventDoc, LogDoc, MetricsDoc, RunDoc, RunQuery
from searchtuner.store import open_store
from searchtuner.telemetry import RunCensus, current_carrier
from searchtuner.telemetry.instruments import observe_runs

try:
    from executors.common.errors import InvalidRequest
    from executors.common.runs import event_doc, run_doc
    from executors.common.service import ServiceExecutor, owner_of, store_uri_or_default
except ModuleNotFoundError:  # jina imports this file by path (py_modules), maybe from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from executors.common.errors import InvalidRequest
    from executors.common.runs import event_doc, run_doc
    from executors.common.service import ServiceExecutor, owner_of, store_uri_or_default

MAX_EVENTS = 1000  # per request; clients page with parameters['after']


class RunTrainer(ServiceExecutor):
    """Queues and supervises fine-tuning runs; reads their state from the store.

    Args:
        store_uri: the artifact store; default ``SEARCHTUNER_STORE`` or ``./searchtuner-data``.
        max_concurrent: how many runs train at once; the rest wait in QUEUED. 0 reads
            ``SEARCHTUNER_MAX_CONCURRENT_RUNS`` (default 1).
        scratch_dir: where workers keep local copies (datasets, checkpoints); default a
            ``scratch`` folder in the executor's workspace.
        max_attempts: how often a run whose worker crashed is started again (from its last
            checkpoint) before it is FAILED.
        cancel_grace: seconds a cancelled worker gets to stop before it is killed.
        **kwargs: passed to :class:`jina.Executor`.
    """

    def __init__(
        self,
        store_uri: str = "",
        max_concurrent: int = 0,
        scratch_dir: str = "",
        max_attempts: int = 3,
        cancel_grace: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        uri = store_uri_or_default(store_uri)
        self.store = open_store(uri)
        self.registry = RunRegistry(self.store)
        scratch = Path(scratch_dir or Path(self.workspace or ".") / "scratch")
        concurrent = max_concurrent or int(os.environ.get("SEARCHTUNER_MAX_CONCURRENT_RUNS", "1"))
        self.supervisor = RunSupervisor(
            self.store.uri(),
            max_concurrent=concurrent,
            scratch_dir=scratch,
            max_attempts=max_attempts,
            cancel_grace=cancel_grace,
        )
        self.supervisor.start()
        if self.telemetry.meter is not None:
            # Every owner's runs, from the registry's owner index: the census acts for no
            # request, so it has no owner of its own to start from.
            census = RunCensus(self.registry, all_owners=True)
            observe_runs(self.telemetry.meter, census, self.supervisor.status)

    @requests(on="/runs/create")
    def create(
        self, docs: DocList[RunDoc], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[RunDoc]:
        """Queue the runs the converter validated; answers at once, in state QUEUED.

        With tracing on, the run's record keeps the trace context of this request: the
        worker's spans, however much later they start, join this request's trace.
        """
        owner = owner_of(parameters)
        queued = []
        for doc in docs:
            record = self.registry.get(owner, _run_id(doc, "/runs/create"))
            if record.state != RunState.VALIDATING:
                raise InvalidRequest(
                    f"run {doc.run_id} is {record.state}, not VALIDATING: only runs the "
                    "converter has checked can be queued; start runs with /runs/create"
                )
            attributes = {"searchtuner.run.id": doc.run_id}
            with self.telemetry.span(
                "searchtuner.queue", kwargs.get("tracing_context"), attributes
            ):
                carrier = current_carrier()  # {} while tracing is off
                if carrier:
                    self.registry.update(owner, doc.run_id, trace_context=carrier)
                queued.append(run_doc(self.supervisor.submit(owner, doc.run_id)))
        return DocList[RunDoc](queued)

    @requests(on="/runs/get")
    def get(
        self, docs: DocList[RunQuery], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[RunDoc]:
        """The record of each named run."""
        owner = owner_of(parameters)
        return DocList[RunDoc](
            [run_doc(self.registry.get(owner, _run_id(doc, "/runs/get"))) for doc in docs]
        )

    @requests(on="/runs/list")
    def list(
        self, docs: DocList[RunQuery], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[RunDoc]:
        """Every run of the owner, newest first."""
        owner = owner_of(parameters)
        return DocList[RunDoc]([run_doc(record) for record in self.registry.list(owner)])

    @requests(on="/runs/cancel")
    def cancel(
        self, docs: DocList[RunQuery], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[RunDoc]:
        """Cancel each named run: a queued one at once, a running one within seconds.

        What the run stored (events, checkpoints, metrics) stays. Cancelling a finished run
        changes nothing and answers with its record.
        """
        owner = owner_of(parameters)
        answers = []
        for doc in docs:
            run_id = _run_id(doc, "/runs/cancel")
            self.registry.get(owner, run_id)  # NotFound before anything is written
            answers.append(run_doc(self.supervisor.cancel(owner, run_id)))
        return DocList[RunDoc](answers)

    @requests(on="/runs/delete")
    def delete(
        self, docs: DocList[RunQuery], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[RunDoc]:
        """Delete each named run and everything it stored, cancelling it first if live.

        Published models stay: they are content-addressed and may be shared by other runs.
        """
        owner = owner_of(parameters)
        answers = []
        for doc in docs:
            run_id = _run_id(doc, "/runs/delete")
            record = self.registry.get(owner, run_id)
            if record.state not in (RunState.FINISHED, RunState.FAILED, RunState.CANCELLED):
                record = self.supervisor.cancel(owner, run_id)
            self.registry.delete(owner, run_id)
            answers.append(run_doc(record))
        return DocList[RunDoc](answers)

    @requests(on="/runs/events")
    def events(
        self, docs: DocList[RunQuery], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[EventDoc]:
        """Events of the named run after sequence number ``parameters['after']`` (default 0)."""
        owner = owner_of(parameters)
        after = _non_negative_int(parameters.get("after", 0), "after")
        limit = min(_non_negative_int(parameters.get("limit", MAX_EVENTS), "limit"), MAX_EVENTS)
        answers = []
        for doc in docs:
            run_id = _run_id(doc, "/runs/events")
            for event in self.registry.events(owner, run_id, after=after, limit=limit):
                answers.append(event_doc(run_id, event))
        return DocList[EventDoc](answers)

    @requests(on="/runs/metrics")
    def metrics(
        self, docs: DocList[RunQuery], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[MetricsDoc]:
        """Retrieval metrics before and after fine-tuning ({} until evaluated)."""
        owner = owner_of(parameters)
        answers = []
        for doc in docs:
            run_id = _run_id(doc, "/runs/metrics")
            self.registry.get(owner, run_id)
            stored = self.registry.metrics(owner, run_id)
            answers.append(
                MetricsDoc(
                    run_id=run_id,
                    before=stored.get("before") or {},
                    after=stored.get("after") or {},
                    history=stored.get("history") or [],
                )
            )
        return DocList[MetricsDoc](answers)

    @requests(on="/runs/logs")
    def logs(
        self, docs: DocList[RunQuery], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[LogDoc]:
        """The run's log as text, one line per event."""
        owner = owner_of(parameters)
        answers = []
        for doc in docs:
            run_id = _run_id(doc, "/runs/logs")
            self.registry.get(owner, run_id)
            answers.append(LogDoc(run_id=run_id, text=self.registry.logs(owner, run_id)))
        return DocList[LogDoc](answers)

    def close(self) -> None:
        """Stop the workers without ending their runs: the next start resumes them."""
        self.supervisor.stop()
        self.store.close()
        super().close()


def _run_id(doc: RunQuery, endpoint: str) -> str:
    if not doc.run_id:
        raise InvalidRequest(f"{endpoint} needs run_id in each document (a RunQuery)")
    return doc.run_id


def _non_negative_int(value: object, name: str) -> int:
    # JSON and protobuf's Struct carry every number as a float: 3.0 is the integer 3, but
    # 2.5, NaN and infinities are refused rather than rounded (or crashing int()).
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not value.is_integer())
        or value < 0
    ):
        raise InvalidRequest(f"parameters['{name}'] must be a non-negative integer, got {value!r}")
    return int(value)
