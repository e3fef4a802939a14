"""A fine-tuning run in the service, as the SDK shows it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from searchtuner.client.formatting import LogFormatter
from searchtuner.client.transport import EVENTS_PAGE, TERMINAL_STATES, Deadline, timed_out
from searchtuner.errors import ConfigError
from searchtuner.service.schemas import EventDoc, RunDoc

if TYPE_CHECKING:
    import torch

    from searchtuner.client.client import Client
    from searchtuner.models import EmbeddingModel

DEFAULT_LOG_TIMEOUT = 3600.0


class Run:
    """One fine-tuning run: its record as last read, and what can be done with it.

    ``state``, ``progress`` and ``model_handle`` are the values last read from the service
    (when the run was created or fetched, and after :meth:`status`, :meth:`wait` or a
    stream of events); :meth:`status` reads them again.
    """

    def __init__(self, client: Client, record: RunDoc) -> None:
        self._client = client
        self._record = record

    @property
    def id(self) -> str:
        return self._record.run_id

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def state(self) -> str:
        """The state as last read (see :meth:`status` for a fresh one)."""
        return self._record.state

    @property
    def reason(self) -> str:
        """Why the run FAILED or was CANCELLED (as last read), else ``""``."""
        return self._record.reason

    @property
    def progress(self) -> dict[str, Any]:
        """Training progress as last read: step, total_steps, epoch, loss, fraction..."""
        return dict(self._record.progress)

    @property
    def created_at(self) -> str:
        return self._record.created_at

    @property
    def model_handle(self) -> str | None:
        """The published model's handle once FINISHED (as last read), else ``None``."""
        return self._record.model_handle or None

    @property
    def is_final(self) -> bool:
        """Whether the run has ended (FINISHED, FAILED or CANCELLED), as last read."""
        return self.state in TERMINAL_STATES

    @property
    def record(self) -> dict[str, Any]:
        """The whole record as last read (the service's ``RunDoc`` fields)."""
        return _plain(self._record)

    def refresh(self) -> Run:
        """Read the run's record again; returns this run."""
        self._record = self._client.transport.get_run(self.id)
        return self

    def status(self) -> dict[str, Any]:
        """The run's current state, progress, reason, attempt and model handle."""
        self.refresh()
        record = self._record
        return {
            "state": record.state,
            "progress": dict(record.progress),
            "reason": record.reason,
            "attempt": record.attempt,
            "model_handle": record.model_handle or None,
            "updated_at": record.updated_at,
        }

    def logs(self) -> str:
        """The run's log so far, one line per event."""
        return self._client.transport.logs(self.id)

    def events(self, after: int = 0, limit: int = EVENTS_PAGE) -> list[dict[str, Any]]:
        """Events after sequence number ``after``: dicts with seq, time, type, level,
        message and data (at most ``limit``, at most 1000 at once)."""
        return [_plain(e) for e in self._client.transport.events(self.id, after, limit)]

    def stream_events(
        self, after: int = 0, timeout: float | None = None, poll: float = 1.0
    ) -> Iterator[dict[str, Any]]:
        """Events as they happen, until the run ends (or at once, if it has ended).

        Args:
            after: start after this sequence number (0: from the first event).
            timeout: seconds to follow at most; ``None`` follows until the run ends.
            poll: seconds between polls where the transport polls (gRPC).

        Raises:
            WaitTimeout: ``timeout`` passed before the run ended (the run goes on).
        """
        _check_poll(poll)
        stream = self._client.transport.follow_events(self.id, after, timeout, poll)
        for event in stream:
            self._observe(event)
            yield _plain(event)
        self.refresh()

    def stream_logs(
        self, follow: bool = True, timeout: float | None = DEFAULT_LOG_TIMEOUT, poll: float = 1.0
    ) -> Iterator[str]:
        """The run's log lines, as :meth:`logs` shows them; with ``follow``, new lines as
        they come until the run ends.

        Raises:
            WaitTimeout: following for ``timeout`` seconds did not reach the end of the run.
        """
        formatter = LogFormatter()
        if follow:
            for event in self.stream_events(0, timeout, poll):
                yield from formatter.lines(event)
            return
        after = 0
        while True:
            page = self.events(after)
            for event in page:
                after = max(after, int(event["seq"]))
                yield from formatter.lines(event)
            if len(page) < EVENTS_PAGE:
                return

    def metrics(self) -> dict[str, dict[str, float]]:
        """Retrieval metrics on the evaluation data: ``{"before": {...}, "after": {...}}``
        (empty until the run has evaluated)."""
        found = self._client.transport.metrics(self.id)
        return {"before": dict(found.before), "after": dict(found.after)}

    def cancel(self) -> Run:
        """Cancel the run (a queued one at once, a training one within seconds); what it
        stored stays. Cancelling an ended run changes nothing."""
        self._record = self._client.transport.cancel_run(self.id)
        return self

    def delete(self) -> None:
        """Delete the run and what it stored (cancelling it first if it is still going)."""
        self._record = self._client.transport.delete_run(self.id)

    def wait(self, timeout: float | None = None, poll: float = 1.0) -> Run:
        """Wait until the run is FINISHED, FAILED or CANCELLED; returns this run.

        A FAILED run is returned, not raised: check ``run.state`` and ``run.reason``.

        Args:
            timeout: seconds to wait at most; ``None`` waits until the run ends.
            poll: seconds between reads of the run's state.

        Raises:
            WaitTimeout: ``timeout`` passed first (the run goes on in the service).
        """
        _check_poll(poll)
        deadline = Deadline(timeout)
        while self.refresh().state not in TERMINAL_STATES:
            if deadline.expired:
                raise timed_out(self.id, self.state, timeout)
            deadline.sleep(poll)
        return self

    def save_artifact(self, directory: str | os.PathLike[str]) -> Path:
        """Download the run's model and write it as a bundle folder.

        ``searchtuner.load_bundle(folder)`` (and sentence-transformers, for text models)
        loads the folder.

        Args:
            directory: the folder to create; it must not exist or be empty.

        Returns:
            The folder.
        """
        return self._client.pull(self, directory)

    def get_model(self, device: str | torch.device | None = None) -> EmbeddingModel:
        """Download (once; it is cached), verify and load the run's model."""
        return self._client.get_model(self, device=device)

    def _observe(self, event: EventDoc) -> None:
        if event.type == "state" and isinstance(event.data.get("state"), str):
            self._record.state = event.data["state"]
        elif event.type == "progress" and event.data:
            self._record.progress = dict(event.data)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r}, state={self.state!r})"


def _plain(doc: Any) -> dict[str, Any]:
    data: dict[str, Any] = doc.dict()
    data.pop("id", None)
    return data


def _check_poll(poll: float) -> None:
    if not poll > 0:
        raise ConfigError(f"poll must be a positive number of seconds, got {poll!r}")
