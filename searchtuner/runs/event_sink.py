"""EventSink: a worker's buffered writer of run events, and a logging handler that feeds it.

Training produces many small events (progress every few steps, log lines). Writing each as its
own store object would be slow on S3, so events are buffered and appended as one chunk at most
once per ``interval`` seconds, and at once before a state change (so the order of events is
the order things happened) and on :meth:`EventSink.close`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from searchtuner.errors import SearchTunerError
from searchtuner.runs.records import RunRecord, utc_now

if TYPE_CHECKING:
    from searchtuner.runs.registry import RunRegistry
    from searchtuner.runs.states import RunState

MAX_PENDING = 10_000
"""Events held while the store cannot be written; older ones are dropped beyond this."""


class EventSink:
    """Buffers one run's events and appends them in chunks from a background thread.

    Thread-safe: :meth:`emit` may be called from any thread (logging does).

    Args:
        registry: where the events go.
        owner: the run's owner.
        run_id: the run.
        interval: seconds between background flushes.

    Attributes:
        on_transition: called with the record after each state change this sink writes
            (the run's trace follows the phases this way).
    """

    def __init__(
        self, registry: RunRegistry, owner: str, run_id: str, interval: float = 1.0
    ) -> None:
        self.registry, self.owner, self.run_id, self.interval = registry, owner, run_id, interval
        self._pending: list[dict[str, Any]] = []
        self._dropped = 0
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.RLock()  # one writer of events at a time: seq order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_transition: list[Callable[[RunRecord], None]] = []

    def start(self) -> None:
        """Start flushing in the background every ``interval`` seconds."""
        self._thread = threading.Thread(
            target=self._loop, name=f"events-{self.run_id}", daemon=True
        )
        self._thread.start()

    def emit(
        self,
        type: str,
        message: str,
        *,
        level: str = "info",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Queue one event; it is written at the next flush."""
        event = {"type": type, "level": level, "message": message, "data": data or {},
                 "time": utc_now()}  # fmt: skip
        with self._lock:
            self._pending.append(event)
            if len(self._pending) > MAX_PENDING:
                del self._pending[0]
                self._dropped += 1

    def flush(self) -> None:
        """Write the queued events now, as one chunk.

        Raises:
            StoreError: the store cannot be written; the events stay queued.
        """
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
                dropped, self._dropped = self._dropped, 0
            if dropped:
                batch.insert(0, {"type": "log", "level": "warning", "time": utc_now(),
                                 "message": f"{dropped} event(s) were dropped while the store "
                                            "could not be written", "data": {}})  # fmt: skip
            if not batch:
                return
            try:
                self.registry.append_events(self.owner, self.run_id, batch)
            except BaseException:
                with self._lock:  # keep them for the next try
                    self._pending[:0] = batch
                raise

    def transition(
        self,
        state: RunState,
        *,
        reason: str | None = None,
        message: str | None = None,
        data: dict[str, Any] | None = None,
        **fields: Any,
    ) -> RunRecord:
        """Flush, then change the run's state (so events stay in the order they happened)."""
        with self._write_lock:
            self.flush()
            record = self.registry.transition(
                self.owner, self.run_id, state, reason=reason, message=message, data=data,
                **fields,
            )  # fmt: skip
        for observer in self.on_transition:
            observer(record)
        return record

    def close(self) -> None:
        """Stop the background thread and write what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.interval + 5)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except SearchTunerError as err:
                # The store is unreachable for now: the events stay queued for the next try.
                print(f"searchtuner worker: cannot write run events yet: {err}", file=sys.stderr)


class EventLogHandler(logging.Handler):
    """Turns Python logging records into ``log`` events of a run.

    Args:
        sink: where the events go.
        level: the lowest level passed on (default INFO).
    """

    def __init__(self, sink: EventSink, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.sink = sink
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            level = record.levelname.lower()
            if level not in ("debug", "info", "warning", "error"):
                level = "error" if record.levelno >= logging.ERROR else "info"
            self.sink.emit("log", message, level=level, data={"logger": record.name})
        except Exception:  # logging's contract: report through handleError, never raise
            self.handleError(record)
