"""The supervisor with real worker processes: queueing, cancel, crash and restart recovery.

Every run trains a tiny mlp on feature vectors, so a worker's time goes mostly to starting
Python; each wait is bounded and fails with the run's log.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from searchtuner.runs import RunRegistry, RunState, RunSupervisor
from searchtuner.runs.records import RunRecord
from searchtuner.store import Store
from tests.unit.runs.helpers import OWNER, clusters, mlp_request, queue_run, upload, wait_for

S = RunState
LONG = {"epochs": 12, "checkpoint_every_steps": 16}  # 384 steps of a tiny mlp: seconds
Factory = Callable[..., RunSupervisor]


@pytest.fixture
def make_supervisor(tmp_path: Path) -> Iterator[Factory]:
    started: list[RunSupervisor] = []

    def make(**options: Any) -> RunSupervisor:
        options = {"scratch_dir": tmp_path / "scratch", "poll_interval": 0.1,
                   "cancel_grace": 3.0, **options}  # fmt: skip
        supervisor = RunSupervisor(str(tmp_path / "store"), **options)
        started.append(supervisor)
        return supervisor

    yield make
    for supervisor in started:
        supervisor.stop(timeout=10)


def _terminal(registry: RunRegistry, run_id: str, timeout: float = 60.0) -> RunRecord:
    def check() -> RunRecord | None:
        record = registry.get(OWNER, run_id)
        return record if record.is_terminal else None

    try:
        return wait_for(f"run {run_id} to end", check, timeout)
    except pytest.fail.Exception:
        print(registry.logs(OWNER, run_id))
        raise


def _checkpointed(registry: RunRegistry, run_id: str) -> int:
    """Wait for the run's first checkpoint event; returns its step."""
    seen: list[int] = []

    def check() -> int | None:
        events = registry.events(OWNER, run_id, after=seen[-1] if seen else 0)
        if events:
            seen.append(events[-1].seq)
        steps = [e.data["step"] for e in events if e.type == "checkpoint"]
        if registry.get(OWNER, run_id).is_terminal:
            pytest.fail(f"run {run_id} ended before a checkpoint:\n{registry.logs(OWNER, run_id)}")
        return steps[0] if steps else None

    return wait_for(f"a checkpoint of run {run_id}", check)


def _states(registry: RunRegistry, run_id: str) -> list[str]:
    return [e.data["state"] for e in registry.events(OWNER, run_id) if e.type == "state"]


def test_runs_wait_their_turn_and_a_running_one_can_be_cancelled(
    make_supervisor: Factory, registry: RunRegistry, store: Store
) -> None:
    long_run = queue_run(registry, mlp_request(upload(store, clusters(256)), **LONG))
    next_run = queue_run(registry, mlp_request(upload(store, clusters(64))))
    supervisor = make_supervisor(max_concurrent=1)
    supervisor.start()
    assert supervisor.submit(OWNER, long_run).state is S.QUEUED
    message = _submit_message(supervisor, registry, next_run)
    # Whether the first has been launched yet or not, the second waits for it.
    assert message in ("queued; 1 run(s) ahead", "queued; waiting for one of 1 worker slot(s)")
    _checkpointed(registry, long_run)
    assert registry.get(OWNER, next_run).state is S.QUEUED  # one slot, taken
    assert supervisor.status()["running"] == [long_run]
    assert supervisor.status()["queued"] == [next_run]

    started = time.monotonic()
    cancelled = supervisor.cancel(OWNER, long_run)
    assert time.monotonic() - started < 3.0 + 5.0
    assert (cancelled.state, cancelled.reason) == (S.CANCELLED, "cancelled by the user")
    assert supervisor.cancel(OWNER, long_run) == cancelled  # idempotent
    mine = store.for_owner(OWNER)
    assert list(mine.keys(f"runs/{long_run}/checkpoints/")), "checkpoints stay after a cancel"
    assert any(e.type == "progress" for e in registry.events(OWNER, long_run))
    assert _states(registry, long_run)[-3:] == ["PREPARING", "TRAINING", "CANCELLED"]
    # The freed slot goes to the waiting run (a whole run through the supervisor is the
    # subject of the next test; this one stops here).
    wait_for("the next run to be launched", lambda: supervisor.status()["running"] == [next_run])
    assert registry.get(OWNER, next_run).attempt == 1


def _submit_message(supervisor: RunSupervisor, registry: RunRegistry, run_id: str) -> str:
    supervisor.submit(OWNER, run_id)
    return registry.events(OWNER, run_id)[-1].message


def test_a_run_survives_a_killed_worker_and_a_supervisor_restart(
    make_supervisor: Factory, registry: RunRegistry, store: Store
) -> None:
    run_id = queue_run(registry, mlp_request(upload(store, clusters(256)), **LONG))
    first = make_supervisor()
    first.start()
    first.submit(OWNER, run_id)
    step = _checkpointed(registry, run_id)
    # kill -9 of the worker's process group: the supervisor relaunches it, and it resumes.
    os.killpg(first.status()["workers"][run_id], signal.SIGKILL)
    resumed = _training_from(registry, run_id, attempt=2)
    assert resumed >= step > 0
    # The service stops mid-run: the run stays live, and the next supervisor resumes it.
    first.stop(timeout=10)
    assert first.status()["running"] == []
    assert registry.get(OWNER, run_id).state in (S.PREPARING, S.TRAINING)
    second = make_supervisor()
    second.start()
    record = _terminal(registry, run_id)
    logs = registry.logs(OWNER, run_id)
    assert record.state is S.FINISHED, logs
    assert (record.attempt, record.crashes) == (3, 1)  # a service restart is not a crash
    assert (
        "worker exited with killed by signal 9 (SIGKILL); resuming from the last checkpoint "
        "(attempt 2 of 3)" in logs
    )
    assert "the trainer service stopped; the run resumes from its last checkpoint" in logs
    assert "the trainer service restarted while the run was" in logs
    assert _training_from(registry, run_id, attempt=3) >= resumed
    assert _states(registry, run_id)[-5:] == [
        "PREPARING", "TRAINING", "EVALUATING", "PUBLISHING", "FINISHED",
    ]  # fmt: skip


def _training_from(registry: RunRegistry, run_id: str, attempt: int) -> int:
    """Wait for the TRAINING event of ``attempt``; returns the step it resumed from."""

    def check() -> list[int] | None:
        found = [
            e.data["resumed_from_step"] for e in registry.events(OWNER, run_id)
            if e.data.get("state") == "TRAINING" and e.data.get("attempt") == attempt
        ]  # fmt: skip
        return found or None

    return wait_for(f"attempt {attempt} of run {run_id} to train", check)[0]


def test_a_worker_that_keeps_crashing_fails_the_run(
    make_supervisor: Factory, registry: RunRegistry, store: Store
) -> None:
    run_id = queue_run(registry, mlp_request(upload(store, clusters(64))))
    supervisor = make_supervisor(max_attempts=2, poll_interval=0.05)
    supervisor.start()
    supervisor.submit(OWNER, run_id)
    killed: set[int] = set()

    def kill_each_new_worker() -> bool:
        pid = supervisor.status()["workers"].get(run_id)
        if pid is not None and pid not in killed:
            os.killpg(pid, signal.SIGKILL)
            killed.add(pid)
        return registry.get(OWNER, run_id).is_terminal

    wait_for("the run to fail", kill_each_new_worker)
    record = registry.get(OWNER, run_id)
    assert len(killed) == 2
    assert (record.state, record.reason) == (
        S.FAILED,
        "the trainer worker crashed 2 times (last: killed by signal 9 (SIGKILL)); see the logs",
    )


def test_start_recovers_runs_left_by_a_dead_service(
    make_supervisor: Factory, registry: RunRegistry, store: Store
) -> None:
    request = mlp_request("std1:" + "0" * 64)
    stale = queue_run(registry, request)
    record = registry.get(OWNER, stale)
    old = record.model_copy(update={"updated_at": "2020-01-01T00:00:00.000Z"})
    store.for_owner(OWNER).put_json(f"runs/{stale}/run.json", old.to_dict())
    fresh = queue_run(registry, request)  # validating right now, elsewhere: left alone
    cancelled = queue_run(registry, request)
    registry.transition(OWNER, cancelled, S.QUEUED)
    registry.request_cancel(OWNER, cancelled)

    supervisor = make_supervisor()
    supervisor.start()
    failed = registry.get(OWNER, stale)
    assert (failed.state, failed.reason) == (
        S.FAILED, "the service restarted while validating this run; start it again",
    )  # fmt: skip
    assert registry.get(OWNER, fresh).state is S.VALIDATING
    assert registry.get(OWNER, cancelled).state is S.CANCELLED
    assert supervisor.status()["queued"] == [] and supervisor.status()["alive"]


def test_a_queued_run_is_cancelled_at_once(make_supervisor: Factory, registry: RunRegistry) -> None:
    run_id = queue_run(registry, mlp_request("std1:" + "0" * 64))
    supervisor = make_supervisor()  # not started: nothing launches
    assert supervisor.submit(OWNER, run_id).state is S.QUEUED
    assert supervisor.submit(OWNER, run_id).state is S.QUEUED  # already queued: unchanged
    assert supervisor.status()["queued"] == [run_id]
    record = supervisor.cancel(OWNER, run_id)
    assert (record.state, record.reason) == (S.CANCELLED, "cancelled by the user")
    assert supervisor.status()["queued"] == []
    assert supervisor.submit(OWNER, run_id) == record  # terminal: returned unchanged
