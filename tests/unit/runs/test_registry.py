"""The run registry: records, events, metrics, cancel markers and deletion, in a local store."""

from __future__ import annotations

import pytest

from searchtuner.errors import ConfigError
from searchtuner.runs import (
    InvalidTransition,
    RunEvent,
    RunIsLive,
    RunNotFound,
    RunRegistry,
    RunState,
)
from searchtuner.runs import registry as registry_module
from searchtuner.store import NotFound, Store
from tests.unit.runs.helpers import OWNER, mlp_request

S = RunState
REQUEST = mlp_request("std1:" + "0" * 64)


def _events(n: int, start: int = 0) -> list[dict[str, object]]:
    return [{"type": "log", "message": f"line {start + i}"} for i in range(n)]


def test_create_get_and_list_newest_first(registry: RunRegistry) -> None:
    first = registry.create(OWNER, REQUEST)
    second = registry.create(OWNER, REQUEST.model_copy(update={"name": "second"}))
    assert first.run_id != second.run_id
    assert first.run_id.startswith("run-") and len(first.run_id) == len("run-20261123180001-abcdef")
    got = registry.get(OWNER, first.run_id)
    assert got == first
    assert got.state is S.CREATED and got.attempt == 0 and got.request == REQUEST
    assert got.created_at.endswith("Z") and "T" in got.created_at
    assert [r.run_id for r in registry.list(OWNER)] == [second.run_id, first.run_id]
    assert registry.list(OWNER)[0].name == "second"
    assert registry.list("bob") == []
    assert [e.type for e in registry.events(OWNER, first.run_id)] == ["state"]


def test_another_owners_run_is_not_found_like_a_missing_one(registry: RunRegistry) -> None:
    run_id = registry.create(OWNER, REQUEST).run_id
    with pytest.raises(RunNotFound) as foreign:
        registry.get("mallory", run_id)
    missing_id = run_id[:-6] + "000000"
    with pytest.raises(RunNotFound) as missing:
        registry.get(OWNER, missing_id)
    assert isinstance(foreign.value, NotFound)
    assert str(foreign.value) == str(missing.value).replace(missing_id, run_id)
    assert str(foreign.value).startswith(f"run {run_id} not found")
    for call in (registry.events, registry.metrics, registry.logs):
        with pytest.raises(RunNotFound):
            call("mallory", run_id)
    with pytest.raises(RunNotFound, match=r"run \.\./x not found"):
        registry.get(OWNER, "../x")


def test_transitions_update_fields_and_write_state_events(registry: RunRegistry) -> None:
    run_id = registry.create(OWNER, REQUEST).run_id
    for state in (S.VALIDATING, S.QUEUED, S.PREPARING, S.TRAINING):
        registry.transition(OWNER, run_id, state)
    progress = {"step": 3, "total_steps": 6, "fraction": 0.5}
    record = registry.transition(OWNER, run_id, S.PREPARING, message="resuming", progress=progress)
    assert record.state is S.PREPARING and record.progress == progress
    with pytest.raises(InvalidTransition, match="from PREPARING to FINISHED"):
        registry.transition(OWNER, run_id, S.FINISHED)
    with pytest.raises(ConfigError, match="created_at cannot be set; settable: attempt"):
        registry.update(OWNER, run_id, created_at="2020-01-01T00:00:00Z")
    record = registry.update(OWNER, run_id, attempt=2, summary={"model": "mlp"})
    assert (record.attempt, record.summary, record.state) == (2, {"model": "mlp"}, S.PREPARING)
    record = registry.transition(OWNER, run_id, S.FAILED, reason="the data is bad; fix it")
    assert record.reason == "the data is bad; fix it" and record.finished_at is not None
    states = [e.data["state"] for e in registry.events(OWNER, run_id) if e.type == "state"]
    assert states == ["CREATED", "VALIDATING", "QUEUED", "PREPARING", "TRAINING", "PREPARING",
                      "FAILED"]  # fmt: skip
    last = registry.events(OWNER, run_id)[-1]
    assert (last.level, last.data["previous"], last.data["reason"]) == (
        "error", "PREPARING", "the data is bad; fix it",
    )  # fmt: skip
    with pytest.raises(InvalidTransition, match="start a new run"):
        registry.transition(OWNER, run_id, S.QUEUED)


def test_event_numbers_continue_across_chunks_and_instances(
    registry: RunRegistry, store: Store
) -> None:
    run_id = registry.create(OWNER, REQUEST).run_id  # seq 1: the CREATED event
    appended = registry.append_events(OWNER, run_id, _events(3))
    assert [e.seq for e in appended] == [2, 3, 4]
    # A second writer (the worker process) continues the numbering, and so does the first.
    other = RunRegistry(store)
    assert [e.seq for e in other.append_events(OWNER, run_id, _events(2, 3))] == [5, 6]
    given = RunEvent(seq=99, time="2026-11-23T18:00:01.000Z", type="progress", message="p")
    stored = registry.append_events(OWNER, run_id, [given])
    assert (stored[0].seq, stored[0].time) == (7, given.time)  # seq assigned, time kept
    keys = list(store.for_owner(OWNER).keys(f"runs/{run_id}/events/"))
    assert [k.rsplit("/", 1)[1] for k in keys] == [
        "0000000001.jsonl", "0000000002.jsonl", "0000000005.jsonl", "0000000007.jsonl",
    ]  # fmt: skip
    assert [e.seq for e in registry.events(OWNER, run_id)] == list(range(1, 8))
    assert [e.seq for e in other.events(OWNER, run_id, after=3)] == [4, 5, 6, 7]
    assert [e.seq for e in registry.events(OWNER, run_id, after=1, limit=2)] == [2, 3]
    assert registry.events(OWNER, run_id, after=7) == []
    assert registry.append_events(OWNER, run_id, []) == []
    with pytest.raises(ConfigError, match="invalid run event"):
        registry.append_events(OWNER, run_id, [{"type": "chatter", "message": "x"}])


def test_chunks_are_compacted_without_losing_or_repeating_events(
    registry: RunRegistry, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "COMPACT_AFTER", 4)
    run_id = registry.create(OWNER, REQUEST).run_id
    other = RunRegistry(store)
    for i in range(12):
        (registry if i % 3 else other).append_events(OWNER, run_id, _events(2, 2 * i))
    keys = list(store.for_owner(OWNER).keys(f"runs/{run_id}/events/"))
    assert len(keys) <= 4
    events = RunRegistry(store).events(OWNER, run_id)
    assert [e.seq for e in events] == list(range(1, 26))
    assert [e.message for e in events[1:]] == [f"line {i}" for i in range(24)]
    assert [e.seq for e in registry.append_events(OWNER, run_id, _events(1))] == [26]
    assert [e.seq for e in registry.events(OWNER, run_id, after=20, limit=3)] == [21, 22, 23]


def test_logs_render_time_state_and_message(registry: RunRegistry) -> None:
    run_id = registry.create(OWNER, REQUEST).run_id
    registry.transition(OWNER, run_id, S.VALIDATING)
    registry.append_events(OWNER, run_id, [
        {"type": "progress", "message": "epoch 1/1 step 10/60 loss 0.5120",
         "time": "2026-11-23T18:00:01.250Z"},
        {"type": "log", "level": "error", "message": "Traceback:\n  boom"},
    ])  # fmt: skip
    lines = registry.logs(OWNER, run_id).splitlines()
    assert lines[0].endswith("CREATED    run created")
    assert lines[1].endswith("VALIDATING validating")
    assert lines[2] == "2026-11-23T18:00:01Z VALIDATING epoch 1/1 step 10/60 loss 0.5120"
    assert lines[3].endswith("VALIDATING ERROR Traceback:") and lines[4] == "      boom"
    assert registry.logs(OWNER, run_id, after=2).splitlines()[0] == lines[2]


def test_metrics_and_cancel_marker(registry: RunRegistry) -> None:
    run_id = registry.create(OWNER, REQUEST).run_id
    assert registry.metrics(OWNER, run_id) == {}
    metrics = {"before": {"map@10": 0.2}, "after": {"map@10": 0.5}, "history": [{"step": 1}]}
    registry.put_metrics(OWNER, run_id, metrics)
    assert registry.metrics(OWNER, run_id) == metrics
    assert not registry.cancel_requested(OWNER, run_id)
    registry.request_cancel(OWNER, run_id)
    assert registry.cancel_requested(OWNER, run_id)
    assert not registry.cancel_requested("mallory", run_id)


def test_delete_refuses_live_runs_and_keeps_published_models(
    registry: RunRegistry, store: Store
) -> None:
    run_id = registry.create(OWNER, REQUEST).run_id
    mine = store.for_owner(OWNER)
    mine.put_bytes(f"runs/{run_id}/checkpoints/step-00000002.pt", b"state")
    mine.put_bytes("models/" + "a" * 64 + ".tar", b"bundle")
    with pytest.raises(RunIsLive, match="is CREATED; cancel it first") as caught:
        registry.delete(OWNER, run_id)
    assert isinstance(caught.value, ConfigError)
    registry.transition(OWNER, run_id, S.CANCELLED, reason="cancelled by the user")
    with pytest.raises(RunNotFound):
        registry.delete("mallory", run_id)
    registry.delete(OWNER, run_id)
    assert list(mine.keys(f"runs/{run_id}/")) == []
    assert mine.exists("models/" + "a" * 64 + ".tar")
    assert registry.list(OWNER) == []
    with pytest.raises(RunNotFound):
        registry.get(OWNER, run_id)


def test_live_runs_of_all_owners_from_the_index(registry: RunRegistry, store: Store) -> None:
    a = registry.create(OWNER, REQUEST).run_id
    b = registry.create("bob", REQUEST).run_id
    done = registry.create(OWNER, REQUEST).run_id
    registry.transition(OWNER, done, S.FAILED, reason="x")
    assert registry.live_runs() == [(OWNER, a), ("bob", b)]
    # A marker left behind by a crash between the terminal record and its removal is cleaned.
    store.put_json(f"index/live/{OWNER}/{done}", {"created_at": "2026-01-01T00:00:00.000Z"})
    assert registry.live_runs() == [(OWNER, a), ("bob", b)]
    assert not store.exists(f"index/live/{OWNER}/{done}")
