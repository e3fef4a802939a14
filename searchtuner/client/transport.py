"""What the SDK needs from a connection to the service, whichever protocol carries it.

:class:`Transport` is the one interface of the HTTP and the gRPC transports; both speak in the
documents of :mod:`searchtuner.service.schemas`, and both raise
:class:`~searchtuner.client.errors.ServiceError` subclasses for the service's errors.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Protocol

from searchtuner.artifacts import BlobReader
from searchtuner.client.errors import WaitTimeout
from searchtuner.data.readers import Source
from searchtuner.service.schemas import (
    DatasetDoc,
    EventDoc,
    FitRequest,
    MetricsDoc,
    RunDoc,
)

TERMINAL_STATES = frozenset({"FINISHED", "FAILED", "CANCELLED"})
"""States a run never leaves."""
EVENTS_PAGE = 1000
"""The most events the service answers with at once."""


class Transport(Protocol):
    """One connection to the service (HTTP or gRPC)."""

    url: str
    downloads_models: bool
    """Whether :meth:`model_reader` downloads through the service (HTTP) or there is no
    such route (gRPC: models are read from their store)."""

    def upload_dataset(
        self, data: Source, *, kind: str | None, name: str, batch_size: int, progress: bool
    ) -> DatasetDoc:
        """Upload a dataset (a CSV/JSONL path, a DocList or a list) in batches."""
        ...

    def list_datasets(self) -> list[DatasetDoc]:
        """The caller's datasets, newest first."""
        ...

    def create_run(self, request: FitRequest) -> RunDoc:
        """Start a fine-tuning run."""
        ...

    def get_run(self, run_id: str) -> RunDoc:
        """A run's record."""
        ...

    def list_runs(self) -> list[RunDoc]:
        """The caller's runs, newest first."""
        ...

    def cancel_run(self, run_id: str) -> RunDoc:
        """Cancel a run; its record after cancelling."""
        ...

    def delete_run(self, run_id: str) -> RunDoc:
        """Delete a run and what it stored; its last record."""
        ...

    def events(self, run_id: str, after: int = 0, limit: int = EVENTS_PAGE) -> list[EventDoc]:
        """Up to ``limit`` events with a sequence number above ``after``."""
        ...

    def follow_events(
        self, run_id: str, after: int, timeout: float | None, poll: float
    ) -> Iterator[EventDoc]:
        """Events as they happen, until the run reaches a final state.

        Raises:
            WaitTimeout: ``timeout`` seconds passed first.
        """
        ...

    def metrics(self, run_id: str) -> MetricsDoc:
        """Retrieval metrics before and after fine-tuning."""
        ...

    def logs(self, run_id: str) -> str:
        """The run's log as text."""
        ...

    def model_reader(self, run_id: str) -> BlobReader:
        """Downloads the run's model archive through the service.

        Raises:
            ConfigError: the transport has no download route (``downloads_models`` is false).
        """
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


class Deadline:
    """The time left of an optional timeout (``None``: no limit)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + max(timeout, 0.0)

    def remaining(self) -> float | None:
        """Seconds left (``None`` without a limit, never negative)."""
        return None if self._end is None else max(self._end - time.monotonic(), 0.0)

    @property
    def expired(self) -> bool:
        return self._end is not None and time.monotonic() >= self._end

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if the deadline comes first."""
        left = self.remaining()
        time.sleep(seconds if left is None else min(seconds, left))


def timed_out(run_id: str, state: str, timeout: float | None) -> WaitTimeout:
    """The error for a wait on ``run_id`` that ran out of time."""
    return WaitTimeout(
        f"run {run_id} is still {state or 'running'} after {timeout:g} s; it goes on in the "
        f"service: wait again, or follow it with `searchtuner logs {run_id} -f`"
    )


def poll_events(
    transport: Transport, run_id: str, after: int, timeout: float | None, poll: float
) -> Iterator[EventDoc]:
    """Follow a run's events by asking for new ones every ``poll`` seconds.

    After the run reaches a final state, the events are read once more, so that those
    written just before the end are not missed.

    Raises:
        WaitTimeout: ``timeout`` seconds passed before the run ended.
    """
    deadline = Deadline(timeout)
    final = False
    state = ""
    while True:
        page = transport.events(run_id, after=after, limit=EVENTS_PAGE)
        for event in page:
            after = max(after, event.seq)
            yield event
        if len(page) == EVENTS_PAGE:
            continue  # more are waiting
        if final:
            return
        state = transport.get_run(run_id).state
        if state in TERMINAL_STATES:
            final = True
            continue
        if deadline.expired:
            raise timed_out(run_id, state, timeout)
        deadline.sleep(poll)
