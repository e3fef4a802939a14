"""A stand-in for a transport: answers like the service from lists a test sets."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from searchtuner.client.transport import EVENTS_PAGE, poll_events
from searchtuner.data.readers import Source
from searchtuner.service.schemas import DatasetDoc, EventDoc, FitRequest, MetricsDoc, RunDoc

HANDLE = "std1:" + "ab" * 32


class FakeTransport:
    """Answers like the service, from lists the test sets; records what was asked."""

    url = "fake://service"

    def __init__(self, downloads_models: bool = True) -> None:
        self.downloads_models = downloads_models
        self.uploads: list[dict[str, Any]] = []
        self.created: list[FitRequest] = []
        self.states: list[str] = ["QUEUED"]  # get_run answers these in turn, then the last
        self.event_log: list[EventDoc] = []
        self.model_handle = ""
        self.archive: Path | None = None
        self.dataset_ok = True

    def upload_dataset(
        self, data: Source, *, kind: str | None, name: str, batch_size: int, progress: bool
    ) -> DatasetDoc:
        self.uploads.append({"data": data, "kind": kind, "name": name, "batch_size": batch_size})
        return DatasetDoc(
            handle=f"std1:{len(self.uploads):064x}",
            kind="labeled",
            n_items=2,
            ok=self.dataset_ok,
            report_text="row 3: no label",
        )

    def list_datasets(self) -> list[DatasetDoc]:
        return [DatasetDoc(handle=HANDLE, name="tickets", kind="labeled", n_items=5)]

    def create_run(self, request: FitRequest) -> RunDoc:
        self.created.append(request)
        return RunDoc(run_id="run-1", name=request.name, state="QUEUED")

    def _record(self) -> RunDoc:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        handle = self.model_handle if state == "FINISHED" else ""
        reason = "boom" if state == "FAILED" else ""
        return RunDoc(run_id="run-1", state=state, model_handle=handle, reason=reason)

    def get_run(self, run_id: str) -> RunDoc:
        return self._record()

    def list_runs(self) -> list[RunDoc]:
        return [RunDoc(run_id="run-1", state="FINISHED", model_handle=self.model_handle)]

    def cancel_run(self, run_id: str) -> RunDoc:
        return RunDoc(run_id=run_id, state="CANCELLED")

    def delete_run(self, run_id: str) -> RunDoc:
        return RunDoc(run_id=run_id, state="CANCELLED")

    def events(self, run_id: str, after: int = 0, limit: int = EVENTS_PAGE) -> list[EventDoc]:
        return [e for e in self.event_log if e.seq > after][:limit]

    def follow_events(
        self, run_id: str, after: int, timeout: float | None, poll: float
    ) -> Iterator[EventDoc]:
        return poll_events(self, run_id, after, timeout, poll)

    def metrics(self, run_id: str) -> MetricsDoc:
        return MetricsDoc(run_id=run_id, before={"map@10": 0.4}, after={"map@10": 0.5})

    def logs(self, run_id: str) -> str:
        return "a log\n"

    def model_reader(self, run_id: str) -> Any:
        transport = self

        class Reader:
            def download(self, key: str, path: Path) -> None:
                assert transport.archive is not None
                shutil.copyfile(transport.archive, path)

        return Reader()

    def close(self) -> None:
        pass


def event(seq: int, kind: str = "log", message: str = "", **data: Any) -> EventDoc:
    """An event of run-1 as the service records it."""
    time = f"2026-01-01T00:00:{seq % 60:02d}.000Z"
    return EventDoc(run_id="run-1", seq=seq, time=time, type=kind, message=message, data=data)
