"""A run with ``nnodes > 1`` waits QUEUED for its multi-node launcher (the Job in
k8s/training): the supervisor records why, starts nothing for it, keeps its slots for
one-node runs, leaves it alone across a restart, and still cancels it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from searchtuner.runs import RunRegistry, RunState, RunSupervisor
from searchtuner.store import Store
from tests.unit.runs.helpers import OWNER, clusters, mlp_request, queue_run, upload, wait_for

S = RunState


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[list[RunSupervisor]]:
    started: list[RunSupervisor] = []
    yield started
    for supervisor in started:
        supervisor.stop(timeout=10)


def _start(started: list[RunSupervisor], tmp_path: Path) -> RunSupervisor:
    supervisor = RunSupervisor(str(tmp_path / "store"), scratch_dir=tmp_path / "scratch",
                               max_concurrent=1, poll_interval=0.05)  # fmt: skip
    started.append(supervisor)
    supervisor.start()
    return supervisor


def _waiting_events(registry: RunRegistry, run_id: str) -> list[str]:
    return [e.message for e in registry.events(OWNER, run_id) if "multi-node launch" in e.message]


def test_a_multi_node_run_waits_for_its_launcher(
    registry: RunRegistry, store: Store, tmp_path: Path, supervisors: list[RunSupervisor]
) -> None:
    train = upload(store, clusters(32))
    multi = queue_run(registry, mlp_request(train).model_copy(update={"nnodes": 2}))
    single = queue_run(registry, mlp_request(train))
    first = _start(supervisors, tmp_path)

    assert first.submit(OWNER, multi).state is S.QUEUED
    assert _waiting_events(registry, multi) == [
        "queued for a multi-node launch: nnodes=2 × processes_per_node=1; this trainer "
        "service does not start it. Start the Job in k8s/training (torchrun or pytorchjob) "
        f'with SEARCHTUNER_RUN={multi} (docs/deploy.md, "Multi-node training"); its rank 0 '
        "moves the run on to PREPARING"
    ]
    assert first.submit(OWNER, multi).state is S.QUEUED  # again: unchanged, no second event
    # Its slot is not taken: a one-node run behind it (max_concurrent=1) trains to the end.
    first.submit(OWNER, single)
    ended = wait_for("the one-node run", lambda: registry.get(OWNER, single).is_terminal, 60)
    assert ended and registry.get(OWNER, single).state is S.FINISHED, registry.logs(OWNER, single)
    status = first.status()
    assert multi not in status["queued"] and multi not in status["running"]
    assert registry.get(OWNER, multi).state is S.QUEUED
    assert registry.get(OWNER, multi).attempt == 0  # never launched here
    assert not (tmp_path / "scratch" / OWNER / multi).exists()

    # A restart neither starts, resumes nor fails it, nor records anything for it.
    first.stop(timeout=10)
    events = len(registry.events(OWNER, multi))
    second = _start(supervisors, tmp_path)
    assert second.status()["queued"] == [] and second.status()["running"] == []
    assert registry.get(OWNER, multi).state is S.QUEUED
    assert len(registry.events(OWNER, multi)) == events
    assert len(_waiting_events(registry, multi)) == 1

    cancelled = second.cancel(OWNER, multi)
    assert (cancelled.state, cancelled.reason) == (S.CANCELLED, "cancelled by the user")


def test_a_multi_node_run_trained_elsewhere_is_left_alone_and_cancels(
    registry: RunRegistry, store: Store, tmp_path: Path, supervisors: list[RunSupervisor]
) -> None:
    request = mlp_request(upload(store, clusters(32))).model_copy(update={"nnodes": 2})
    run_id = queue_run(registry, request)
    registry.transition(OWNER, run_id, S.QUEUED)
    # The Job's rank 0 took it on (as its worker does) before this supervisor started.
    registry.transition(OWNER, run_id, S.PREPARING)
    registry.transition(OWNER, run_id, S.TRAINING)
    events = len(registry.events(OWNER, run_id))
    supervisor = _start(supervisors, tmp_path)
    assert supervisor.status()["queued"] == [] and supervisor.status()["running"] == []
    assert registry.get(OWNER, run_id).state is S.TRAINING
    assert len(registry.events(OWNER, run_id)) == events  # no "resuming" line: not its run

    # Cancel ends it at once and leaves the marker the launched workers poll.
    cancelled = supervisor.cancel(OWNER, run_id)
    assert cancelled.state is S.CANCELLED
    assert registry.cancel_requested(OWNER, run_id)
