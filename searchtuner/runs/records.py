"""RunRecord and RunEvent: the JSON a run leaves in the store, and how events read as text."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from searchtuner.runs.request import RunRequest
from searchtuner.runs.states import TERMINAL_STATES, RunState

EventType = Literal["state", "progress", "log", "metrics", "checkpoint"]
EVENT_TYPES: tuple[str, ...] = ("state", "progress", "log", "metrics", "checkpoint")
LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds, e.g. ``2026-11-23T18:00:01.250Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> datetime:
    """Read a timestamp written by :func:`utc_now` (or any ISO 8601 form with a zone)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_run_id() -> str:
    """``run-<UTC yyyymmddHHMMSS>-<6 hex>``: unique, and sorted by creation to the second."""
    return f"run-{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


class RunRecord(BaseModel):
    """Everything known about one run, kept as ``runs/<run_id>/run.json``.

    Attributes:
        run_id: the run's id, ``run-<yyyymmddHHMMSS>-<6 hex>``.
        owner: who started it; the run lives in that owner's namespace.
        name: the name given in the request, if any.
        state: where the run is (see :class:`RunState`).
        created_at: when the run was created (ISO 8601 UTC).
        updated_at: when this record was last written.
        queued_at: when it entered QUEUED: its place in its owner's queue (a supervisor
            rebuilding its queue after a restart orders each owner's runs by it).
        started_at: when it left the queue: the supervisor launched its first worker, or
            (a multi-node run) its launcher moved it to PREPARING. Across owners, the order
            of ``started_at`` is the order in which the fair queue served them.
        finished_at: when it reached a terminal state.
        request: the request, as validated.
        reason: why it FAILED or was CANCELLED, in a sentence a person can act on.
        attempt: how many worker processes have been launched for it.
        crashes: how many of them died without finishing (crash, kill, OOM).
        progress: the latest training progress: epoch, epochs, step, total_steps, loss,
            learning_rate, samples_per_second, eta_seconds, fraction (0..1).
        model_handle: the published model's handle once FINISHED.
        summary: what validation found (model, item counts, parameter counts).
        metrics: the latest ``{"before": {...}, "after": {...}}`` retrieval metrics.
        trace_context: the W3C trace context (``traceparent``) of the request that queued
            the run, when tracing is on: every worker attempt traces under it, so the run is
            one trace (see ``searchtuner.telemetry``).
    """

    model_config = ConfigDict(extra="ignore")

    run_id: str
    owner: str
    name: str | None = None
    state: RunState
    created_at: str
    updated_at: str
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    request: RunRequest
    reason: str | None = None
    attempt: int = 0
    crashes: int = 0
    progress: dict[str, Any] = Field(default_factory=dict)
    model_handle: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    trace_context: dict[str, str] = Field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        """Whether the run has ended (FINISHED, FAILED or CANCELLED)."""
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        """JSON values, as stored and as the API shows them."""
        return self.model_dump(mode="json")


UPDATABLE_FIELDS = frozenset(RunRecord.model_fields) - {
    "run_id",
    "owner",
    "created_at",
    "updated_at",
    "state",
    "request",
}
"""Record fields that ``RunRegistry.update`` and ``transition`` may change."""


class RunEvent(BaseModel):
    """One thing that happened in a run: a state change, progress, a log line, metrics.

    Attributes:
        seq: 1, 2, 3, … per run; never reused, and continued by every later writer.
        time: when it happened (ISO 8601 UTC).
        type: ``state``, ``progress``, ``log``, ``metrics`` or ``checkpoint``.
        level: ``debug``, ``info``, ``warning`` or ``error``.
        message: one human-readable line (a traceback may span several).
        data: the same facts as JSON values (e.g. ``{"state": "TRAINING"}``, a progress
            record, ``{"before": {...}}``).
    """

    model_config = ConfigDict(extra="ignore")

    seq: int = Field(ge=1)
    time: str
    type: EventType
    level: str = "info"
    message: str
    data: dict[str, Any] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def render_events(events: Iterable[RunEvent], state: str = "") -> str:
    """Events as log lines: ``<time to the second> <STATE> [LEVEL] <message>``.

    The state column is the state the run was in when the event happened, followed from the
    ``state`` events; lines of a multi-line message (a traceback) are indented under it.

    Args:
        events: in ``seq`` order.
        state: the state before the first event (when rendering from the middle of a run).
    """
    lines = []
    for event in events:
        if event.type == "state":
            state = str(event.data.get("state", state))
        stamp = event.time[:19] + "Z" if len(event.time) >= 19 else event.time
        level = "" if event.level in ("info", "debug") else f"{event.level.upper()} "
        first, *rest = event.message.splitlines() or [""]
        lines.append(f"{stamp} {state:<10} {level}{first}".rstrip())
        lines.extend(f"    {line}" for line in rest)
    return "\n".join(lines) + ("\n" if lines else "")
