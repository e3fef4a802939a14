"""The durable lifecycle of fine-tuning runs, kept in the artifact store.

A run is created from a :class:`RunRequest`, validated, queued, trained by a worker process
(``python -m searchtuner.runs.worker``) that a :class:`RunSupervisor` launches, and ends
FINISHED with a model handle, FAILED with a reason, or CANCELLED. Every state change, progress
record, log line and metric is an event in the store, so any process can answer for a run,
and a restarted service resumes its runs from their last checkpoint.

Typical use (what the trainer executor does)::

    from searchtuner.runs import RunRequest, RunState, RunSupervisor, validate_request

    supervisor = RunSupervisor("s3://artifacts/searchtuner", scratch_dir="/tmp/runs")
    supervisor.start()
    registry = supervisor.registry
    request = RunRequest.from_dict(parameters)        # ConfigError: tell the user
    record = registry.create("alice", request)
    registry.transition("alice", record.run_id, RunState.VALIDATING)
    summary = validate_request(request, registry.owner_store("alice"))
    registry.update("alice", record.run_id, summary=summary)
    supervisor.submit("alice", record.run_id)          # QUEUED; a worker starts soon
    registry.events("alice", record.run_id, after=0)   # progress, logs, metrics
"""

from searchtuner.runs.errors import InvalidTransition, RunIsLive, RunNotFound
from searchtuner.runs.records import RunEvent, RunRecord, render_events
from searchtuner.runs.registry import RunRegistry
from searchtuner.runs.request import RunRequest, registered_model_name, validate_request
from searchtuner.runs.states import (
    LIVE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    RunState,
    check_transition,
)
from searchtuner.runs.supervisor import RunSupervisor

__all__ = [
    "LIVE_STATES",
    "TERMINAL_STATES",
    "TRANSITIONS",
    "InvalidTransition",
    "RunEvent",
    "RunIsLive",
    "RunNotFound",
    "RunRecord",
    "RunRegistry",
    "RunRequest",
    "RunState",
    "RunSupervisor",
    "check_transition",
    "registered_model_name",
    "render_events",
    "validate_request",
]
