"""RunRegistry: runs, their events, metrics and cancel requests, kept in the artifact store.

Layout in each owner's namespace (``owners/<owner>/`` of the root store)::

    runs/<run_id>/run.json                     the RunRecord
    runs/<run_id>/events/<first_seq:010d>.jsonl  events, one JSON object per line
    runs/<run_id>/metrics.json                 {"before", "after", "history", "evaluations"}
    runs/<run_id>/checkpoints/step-<n:08d>.pt  training state for resume (the worker's)
    runs/<run_id>/model.safetensors            the final model, given to the publisher
    runs/<run_id>/cancel.json                  present once a cancel was requested
    run-index/<run_id>                         one small object per run, for listing

and in the root store::

    index/live/<owner>/<run_id>                present while the run is live
    index/owners/<owner>                       present once the owner has created a run
    index/owners.json                          present once the owner index is complete

**Events.** Store objects cannot be appended to, so each append writes a new chunk named by
the first ``seq`` it holds; the next ``seq`` is found from the last chunk, so numbering
continues across processes and restarts. Every :data:`COMPACT_AFTER` chunks the writer merges
all chunks into the first one and deletes the rest (newest first), which keeps reading a long
run's log to a few objects. Readers drop duplicate ``seq`` values, retry when a chunk vanishes
under them, and return events only up to the first gap, so a reader never sees an event twice
or out of order, only, at worst, an older prefix.

**Indexes.** ``run-index/`` lets :meth:`RunRegistry.list` list one small key per run instead
of every event chunk and checkpoint. ``index/live/`` lets :meth:`RunRegistry.live_runs` (what a
starting supervisor must resume) list only live runs of all owners instead of every object in
the store; S3 can list by prefix but not by suffix, so listing ``run.json`` keys would mean
listing everything. The record stays the truth: a marker is written before a run's first
record and removed after its terminal one, so every live run has a marker, and markers left
by a crash in between are checked against the record and cleaned up. The same markers count
one owner's live runs (:meth:`RunRegistry.live_count`, for the per-owner limit) with one
listing of ``index/live/<owner>/``. ``index/owners/`` names every owner that ever created a
run (:meth:`RunRegistry.owners`, for counting runs of all owners); a store written before it
existed is indexed once, by one listing of ``owners/``.

**Concurrency.** A run's record is written by one party at a time: the executor while the
run is CREATED/VALIDATING/QUEUED, the worker process while it runs, and the supervisor after
the worker has exited. So no cross-process locking is needed. A state change appends its
event before it writes the record, so a reader that sees a terminal record finds every event
of the run already stored. Within one process, a registry may be shared by threads: its
writes are serialised by a lock.
"""

from __future__ import annotations

import builtins
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from searchtuner.errors import ConfigError, DataError, shorten
from searchtuner.runs.errors import RunIsLive, RunNotFound
from searchtuner.runs.records import (
    UPDATABLE_FIELDS,
    RunEvent,
    RunRecord,
    new_run_id,
    parse_time,
    render_events,
    utc_now,
)
from searchtuner.runs.request import RunRequest
from searchtuner.runs.states import LIVE_STATES, TERMINAL_STATES, RunState, check_transition
from searchtuner.store.base import Store
from searchtuner.store.errors import NotFound
from searchtuner.store.prefixed import OWNERS_PREFIX, OwnerStore

RUN_ID = re.compile(r"run-\d{14}-[0-9a-f]{6}")
"""The form of every run id (see :func:`~searchtuner.runs.records.new_run_id`)."""
RUNS = "runs"
RUN_INDEX = "run-index"
LIVE_INDEX = "index/live"
OWNER_INDEX = "index/owners"
OWNER_INDEX_COMPLETE = "index/owners.json"
"""Written once every owner with runs has a marker in ``index/owners/`` (stores from before
the owner index get theirs from one scan of ``owners/``)."""
COMPACT_AFTER = 64
"""Event chunks of one run after which the writer merges them into one."""
MAX_REASON_CHARS = 4000
"""A reason is a sentence or a few; one that echoes megabytes of a request is cut."""
_READ_ATTEMPTS = 4
"""Reads of a run's events that may be retried because a compaction removed a chunk."""
_ORPHAN_MARKER_AGE = 60.0
"""Seconds after which a live marker without a record is a leftover of a crashed create."""


@dataclass(frozen=True)
class _Tail:
    """The last event chunk this registry wrote for a run, to skip re-reading it."""

    key: str
    sha256: str
    next_seq: int


def run_key(run_id: str, name: str = "") -> str:
    """The key of ``name`` in a run's folder (in the owner's namespace)."""
    return f"{RUNS}/{run_id}/{name}"


class RunRegistry:
    """The durable record of every fine-tuning run, for every owner, in one store.

    Args:
        store: the root store (not an owner's view); each method works in
            ``store.for_owner(owner)``.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.RLock()
        self._tails: dict[tuple[str, str], _Tail] = {}
        self._indexed_owners: set[str] = set()
        self._owner_index_complete = False

    # -- records ---------------------------------------------------------------------------

    def owner_store(self, owner: str) -> OwnerStore:
        """The owner's view of the store (raises InvalidKeyError for a bad owner name)."""
        return self.store.for_owner(owner)

    def create(
        self,
        owner: str,
        request: RunRequest,
        summary: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Record a new run in state CREATED, with a first ``state`` event.

        Args:
            owner: who starts it.
            request: what it is to do.
            summary: what validation found, if it ran already.

        Returns:
            The new record.
        """
        mine = self.owner_store(owner)
        with self._lock:
            run_id = new_run_id()
            while mine.exists(run_key(run_id, "run.json")):  # two creates in one second
                run_id = new_run_id()
            now = utc_now()
            record = RunRecord(
                run_id=run_id,
                owner=owner,
                name=request.name,
                state=RunState.CREATED,
                created_at=now,
                updated_at=now,
                request=request,
                summary=dict(summary or {}),
            )
            # The live marker goes first, so that no live record is ever without one.
            self.store.put_json(_live_key(owner, run_id), {"created_at": now})
            if owner not in self._indexed_owners:  # one write per owner and process
                self.store.put_json(f"{OWNER_INDEX}/{owner}", {"created_at": now})
                self._indexed_owners.add(owner)
            self._write(mine, record)
            mine.put_json(f"{RUN_INDEX}/{run_id}", {"created_at": now})
            self.append_events(
                owner, run_id, [_state_event(RunState.CREATED, None, None, "run created")]
            )
        return record

    def get(self, owner: str, run_id: str) -> RunRecord:
        """The run's record.

        Raises:
            RunNotFound: no such run for this owner (the same message whether it never
                existed or is another owner's).
        """
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise _not_found(run_id)
        try:
            data = self.owner_store(owner).get_json(run_key(run_id, "run.json"))
        except NotFound as err:
            raise _not_found(run_id) from err
        try:
            return RunRecord.model_validate(data)
        except ValidationError as err:
            raise DataError(
                f"the record of run {run_id} is damaged ({err.error_count()} problem(s): "
                f"{err.errors()[0]['msg']}); delete the run and start it again"
            ) from err

    def list(self, owner: str, *, limit: int | None = None) -> builtins.list[RunRecord]:
        """The owner's runs, newest first.

        Args:
            owner: whose runs.
            limit: at most this many (the newest).
        """
        mine = self.owner_store(owner)
        prefix = f"{RUN_INDEX}/"
        run_ids = sorted((key[len(prefix) :] for key in mine.keys(prefix)), reverse=True)
        records: builtins.list[RunRecord] = []
        for run_id in run_ids:
            if limit is not None and len(records) >= limit:
                break
            try:
                records.append(self.get(owner, run_id))
            except RunNotFound:  # deleted while listing
                continue
        records.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return records

    def transition(
        self,
        owner: str,
        run_id: str,
        state: RunState | str,
        *,
        reason: str | None = None,
        message: str | None = None,
        data: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> RunRecord:
        """Move a run to ``state``, update ``fields``, and append a ``state`` event.

        Args:
            owner: the run's owner.
            run_id: the run.
            state: the new state.
            reason: why (required in spirit for FAILED and CANCELLED: a sentence a person
                can act on).
            message: the event's message (default: the state and the reason).
            data: more facts for the event's ``data`` (e.g. ``{"resumed_from_step": 40}``).
            **fields: other record fields to set (progress, summary, model_handle, ...).

        Returns:
            The record as written.

        Raises:
            RunNotFound: no such run. InvalidTransition: the lifecycle forbids the change.
            ConfigError: a field that cannot be set.
        """
        new_state = RunState(state)
        if reason is not None:
            reason = shorten(reason, MAX_REASON_CHARS)
        with self._lock:
            record = self.get(owner, run_id)
            check_transition(record.state, new_state)
            now = utc_now()
            values = {**record.to_dict(), **_checked(fields), "state": new_state, "updated_at": now}
            if reason is not None:
                values["reason"] = reason
            if new_state is RunState.QUEUED and "queued_at" not in fields:
                values["queued_at"] = now
            if new_state is RunState.PREPARING and values.get("started_at") is None:
                # A supervisor sets it at launch; a multi-node launcher's rank 0 gets it here.
                values["started_at"] = now
            if new_state in TERMINAL_STATES:
                values["finished_at"] = now
            updated = RunRecord.model_validate(values)
            event = _state_event(new_state, record.state, reason, message)
            event["data"].update({"attempt": updated.attempt, **(data or {})})
            # The event goes first: whoever reads a terminal record finds every event stored.
            self.append_events(owner, run_id, [event])
            self._write(self.owner_store(owner), updated)
            if new_state in TERMINAL_STATES:
                self.store.delete(_live_key(owner, run_id))
        return updated

    def update(self, owner: str, run_id: str, **fields: Any) -> RunRecord:
        """Set record fields without changing the state (no event is written).

        Raises:
            RunNotFound: no such run. ConfigError: a field that cannot be set.
        """
        with self._lock:
            record = self.get(owner, run_id)
            data = {**record.to_dict(), **_checked(fields), "updated_at": utc_now()}
            updated = RunRecord.model_validate(data)
            self._write(self.owner_store(owner), updated)
        return updated

    def _write(self, mine: Store, record: RunRecord) -> None:
        mine.put_json(run_key(record.run_id, "run.json"), record.to_dict())

    def _require(self, owner: str, run_id: str) -> OwnerStore:
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            raise _not_found(run_id)
        mine = self.owner_store(owner)
        if not mine.exists(run_key(run_id, "run.json")):
            raise _not_found(run_id)
        return mine

    # -- events ----------------------------------------------------------------------------

    def append_events(
        self, owner: str, run_id: str, events: Sequence[Mapping[str, Any] | RunEvent]
    ) -> builtins.list[RunEvent]:
        """Append events as one new chunk; ``seq`` is always assigned here, ``time`` if absent.

        Args:
            owner: the run's owner.
            run_id: the run.
            events: RunEvents or dicts with ``type``, ``message`` and optionally ``level``,
                ``data`` and ``time``.

        Returns:
            The events as stored, with their ``seq``.

        Raises:
            RunNotFound: no such run. ConfigError: an event that is not valid.
        """
        if not events:
            return []
        with self._lock:
            mine = self._require(owner, run_id)
            chunks = self._chunks(mine, run_id)
            next_seq = self._next_seq(mine, owner, run_id, chunks)
            now = utc_now()
            built = [_event(item, next_seq + i, now) for i, item in enumerate(events)]
            key = _chunk_key(run_id, next_seq)
            text = "".join(event.model_dump_json() + "\n" for event in built)
            info = mine.put_bytes(key, text.encode("utf-8"))
            self._tails[(owner, run_id)] = _Tail(key, info.sha256, next_seq + len(built))
            if len(chunks) + 1 > COMPACT_AFTER:
                self._compact(mine, owner, run_id)
        return built

    def events(
        self, owner: str, run_id: str, after: int = 0, limit: int | None = None
    ) -> builtins.list[RunEvent]:
        """The run's events with ``seq > after``, in order, at most ``limit`` of them.

        Poll with ``after`` = the last ``seq`` seen to follow a run.

        Raises:
            RunNotFound: no such run.
        """
        mine = self._require(owner, run_id)
        after = max(0, int(after))
        for attempt in range(_READ_ATTEMPTS):
            try:
                return self._read_events(mine, run_id, after, limit)
            except NotFound:
                # A compaction removed a chunk between listing and reading: list again.
                if attempt == _READ_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_events(
        self, mine: Store, run_id: str, after: int, limit: int | None
    ) -> builtins.list[RunEvent]:
        chunks = self._chunks(mine, run_id)
        found: dict[int, RunEvent] = {}
        for i, (_first, key) in enumerate(chunks):
            # Chunk i holds seqs below the next chunk's first one (a compacted chunk holds
            # more, which only makes skipping it safe when its successors are read).
            if i + 1 < len(chunks) and chunks[i + 1][0] - 1 <= after:
                continue
            for event in self._read_chunk(mine, key):
                if event.seq > after:
                    found.setdefault(event.seq, event)
            if limit is not None and _contiguous(found, after) >= limit:
                break
        result = []
        expected = after + 1
        for seq in sorted(found):
            if seq != expected:
                break  # a gap: what follows is from a newer state than what precedes
            result.append(found[seq])
            expected += 1
        return result if limit is None else result[:limit]

    def logs(self, owner: str, run_id: str, after: int = 0) -> str:
        """The run's events as text lines ``<time> <STATE> <message>``.

        Raises:
            RunNotFound: no such run.
        """
        events = self.events(owner, run_id)
        state = ""
        for event in events:
            if event.seq > after:
                break
            if event.type == "state":
                state = str(event.data.get("state", state))
        return render_events([e for e in events if e.seq > after], state=state)

    def _chunks(self, mine: Store, run_id: str) -> builtins.list[tuple[int, str]]:
        prefix = run_key(run_id, "events/")
        found = []
        for key in mine.keys(prefix):
            name = key[len(prefix) :]
            if name.endswith(".jsonl") and name[: -len(".jsonl")].isdigit():
                found.append((int(name[: -len(".jsonl")]), key))
        return sorted(found)

    def _read_chunk(self, mine: Store, key: str) -> builtins.list[RunEvent]:
        text = mine.get_bytes(key).decode("utf-8")
        try:
            return [RunEvent.model_validate_json(line) for line in text.splitlines() if line]
        except ValidationError as err:
            raise DataError(
                f"the event chunk {mine.uri(key)} is damaged ({err.errors()[0]['msg']}); "
                "delete it to read the rest of the run's events"
            ) from err

    def _next_seq(
        self, mine: Store, owner: str, run_id: str, chunks: builtins.list[tuple[int, str]]
    ) -> int:
        if not chunks:
            return 1
        first, key = chunks[-1]
        tail = self._tails.get((owner, run_id))
        if tail is not None and tail.key == key:
            try:
                if mine.stat(key).sha256 == tail.sha256:  # nobody else appended since
                    return tail.next_seq
            except NotFound:
                pass  # compacted by another writer: read what is there now
        events = self._read_chunk(mine, key)
        return max((e.seq for e in events), default=first - 1) + 1

    def _compact(self, mine: Store, owner: str, run_id: str) -> None:
        chunks = self._chunks(mine, run_id)
        if len(chunks) < 2:
            return
        merged: dict[int, RunEvent] = {}
        for _first, key in chunks:
            for event in self._read_chunk(mine, key):
                merged.setdefault(event.seq, event)
        text = "".join(merged[seq].model_dump_json() + "\n" for seq in sorted(merged))
        first_key = chunks[0][1]
        info = mine.put_bytes(first_key, text.encode("utf-8"))
        for _first, key in reversed(chunks[1:]):
            mine.delete(key)
        self._tails[(owner, run_id)] = _Tail(first_key, info.sha256, max(merged) + 1)

    # -- metrics, cancel, delete -------------------------------------------------------------

    def put_metrics(self, owner: str, run_id: str, metrics: Mapping[str, Any]) -> None:
        """Store the run's metrics (``{"before": {...}, "after": {...}, "history": [...]}``)."""
        with self._lock:
            self._require(owner, run_id).put_json(run_key(run_id, "metrics.json"), dict(metrics))

    def metrics(self, owner: str, run_id: str) -> dict[str, Any]:
        """The run's metrics, or ``{}`` before there are any.

        Raises:
            RunNotFound: no such run.
        """
        mine = self._require(owner, run_id)
        try:
            data = mine.get_json(run_key(run_id, "metrics.json"))
        except NotFound:
            return {}
        return dict(data)

    def request_cancel(self, owner: str, run_id: str) -> None:
        """Leave the cancel marker, which the supervisor and the worker both heed."""
        with self._lock:
            self._require(owner, run_id).put_json(
                run_key(run_id, "cancel.json"), {"requested_at": utc_now()}
            )

    def cancel_requested(self, owner: str, run_id: str) -> bool:
        """Whether a cancel was requested for the run."""
        return self.owner_store(owner).exists(run_key(run_id, "cancel.json"))

    def delete(self, owner: str, run_id: str) -> None:
        """Remove everything under ``runs/<run_id>/``; published model archives stay.

        Raises:
            RunNotFound: no such run.
            RunIsLive: the run is still live; cancel it first.
        """
        with self._lock:
            record = self.get(owner, run_id)
            if record.state in LIVE_STATES:
                raise RunIsLive(
                    f"run {run_id} is {record.state.value}; cancel it first (POST "
                    f"/runs/{run_id}/cancel or searchtuner.Client.cancel), then delete it"
                )
            mine = self.owner_store(owner)
            record_key = run_key(run_id, "run.json")
            for key in builtins.list(mine.keys(run_key(run_id))):
                if key != record_key:
                    mine.delete(key)
            mine.delete(record_key)  # last: a half-done delete can be finished by another
            mine.delete(f"{RUN_INDEX}/{run_id}")
            self.store.delete(_live_key(owner, run_id))
            self._tails.pop((owner, run_id), None)

    # -- all owners --------------------------------------------------------------------------

    def live_runs(self) -> builtins.list[tuple[str, str]]:
        """``(owner, run_id)`` of every live run of every owner, oldest first.

        Reads the live index, checks each marker against its record, and removes markers
        whose run is terminal or was never created.
        """
        prefix = f"{LIVE_INDEX}/"
        found: builtins.list[tuple[str, str, str]] = []
        for key in builtins.list(self.store.keys(prefix)):
            owner, _, run_id = key[len(prefix) :].partition("/")
            record = self._live_record(key, owner, run_id)
            if record is not None:
                found.append((record.created_at, owner, run_id))
        return [(owner, run_id) for _created, owner, run_id in sorted(found)]

    def live_count(self, owner: str) -> int:
        """How many live runs (any state but FINISHED, FAILED, CANCELLED) ``owner`` has.

        Costs one listing of the owner's live markers and one read per marker (so about as
        many reads as the owner has live runs, whatever the number of runs ever made); markers
        left by a crash are checked against their record and cleaned up, as in
        :meth:`live_runs`.

        Raises:
            InvalidKeyError: ``owner`` is not a valid owner name.
        """
        self.owner_store(owner)  # refuses a name that could reach outside the owner's markers
        prefix = f"{LIVE_INDEX}/{owner}/"
        count = 0
        for key in builtins.list(self.store.keys(prefix)):
            if self._live_record(key, owner, key[len(prefix) :]) is not None:
                count += 1
        return count

    def owners(self) -> builtins.list[str]:
        """Every owner that has created a run (and every owner with a live run), sorted.

        Reads the owner index (one small object per owner). A store written before the index
        existed is indexed on the first call, by one listing of everything under ``owners/``;
        later calls, from any process, only read the index.
        """
        if not self._owner_index_complete:
            # Two processes indexing at once write the same markers: no lock is needed.
            if not self.store.exists(OWNER_INDEX_COMPLETE):
                self._index_owners()
            self._owner_index_complete = True
        prefix = f"{OWNER_INDEX}/"
        found = {key[len(prefix) :] for key in self.store.keys(prefix)}
        # Markers are written before the owner's first record, so a run being created by a
        # process that has not yet written the owner marker is live: its owner is found here.
        live = f"{LIVE_INDEX}/"
        found.update(key[len(live) :].partition("/")[0] for key in self.store.keys(live))
        return sorted(found)

    def _index_owners(self) -> None:
        """Give every owner with a run in the store a marker in the owner index."""
        prefix = f"{OWNERS_PREFIX}/"
        owners: set[str] = set()
        for key in self.store.keys(prefix):
            owner, _, rest = key[len(prefix) :].partition("/")
            if rest.startswith(f"{RUN_INDEX}/"):
                owners.add(owner)
        now = utc_now()
        for owner in sorted(owners - self._indexed_owners):
            self.store.put_json(f"{OWNER_INDEX}/{owner}", {"created_at": now})
            self._indexed_owners.add(owner)
        self.store.put_json(OWNER_INDEX_COMPLETE, {"indexed_at": now})

    def _live_record(self, key: str, owner: str, run_id: str) -> RunRecord | None:
        """The record of a live marker's run if it is live, else None (cleaning the marker
        up when its run ended, or was never created and the marker is old)."""
        try:
            record = self.get(owner, run_id)
        except RunNotFound:
            if _marker_age(self.store, key) > _ORPHAN_MARKER_AGE:
                self.store.delete(key)
            return None
        except ConfigError:  # an owner name or record this version cannot read
            return None
        if record.state in TERMINAL_STATES:
            self.store.delete(key)
            return None
        return record


def _live_key(owner: str, run_id: str) -> str:
    return f"{LIVE_INDEX}/{owner}/{run_id}"


def _chunk_key(run_id: str, first_seq: int) -> str:
    return run_key(run_id, f"events/{first_seq:010d}.jsonl")


def _not_found(run_id: object) -> RunNotFound:
    # a megabyte of id is not worth echoing back
    return RunNotFound(f"run {shorten(str(run_id))} not found; list your runs with GET /runs")


def _marker_age(store: Store, key: str) -> float:
    try:
        created = parse_time(str(store.get_json(key)["created_at"]))
    except (NotFound, KeyError, TypeError, ValueError):
        return float("inf")
    return (datetime.now(UTC) - created).total_seconds()


def _checked(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - UPDATABLE_FIELDS)
    if unknown:
        raise ConfigError(
            f"run record field(s) {', '.join(unknown)} cannot be set; settable: "
            f"{', '.join(sorted(UPDATABLE_FIELDS))}"
        )
    return dict(fields)


def _contiguous(found: Mapping[int, Any], after: int) -> int:
    count = 0
    while after + count + 1 in found:
        count += 1
    return count


def _event(item: Mapping[str, Any] | RunEvent, seq: int, now: str) -> RunEvent:
    data = item.to_dict() if isinstance(item, RunEvent) else dict(item)
    data["seq"] = seq
    if not data.get("time"):
        data["time"] = now
    try:
        return RunEvent.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid run event {data!r}: {problems}") from err


def _state_event(
    state: RunState, previous: RunState | None, reason: str | None, message: str | None
) -> dict[str, Any]:
    if message is None:
        message = state.value.lower() if reason is None else f"{state.value.lower()}: {reason}"
    return {
        "type": "state",
        "level": "error" if state is RunState.FAILED else "info",
        "message": message,
        "data": {
            "state": state.value,
            "previous": None if previous is None else previous.value,
            "reason": reason,
        },
    }
