"""The fair queue: runs start first in first out within each owner, round-robin between owners.

The queue itself is checked on its own (:class:`FairQueue`, no store), then inside a
supervisor whose workers are ``sleep`` processes: the command the supervisor would run is
recorded (that is the launch order) and replaced, and the test plays the worker's part,
moving a run to FINISHED and ending its process, or killing it as a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from searchtuner.runs import RunRegistry, RunState, RunSupervisor
from searchtuner.runs.supervisor import FairQueue
from searchtuner.store import Store
from tests.unit.runs.helpers import clusters, mlp_request, queue_run, upload, wait_for

S = RunState
Factory = Callable[..., RunSupervisor]
TO_FINISHED = (S.PREPARING, S.TRAINING, S.EVALUATING, S.PUBLISHING, S.FINISHED)


# -- the queue alone -----------------------------------------------------------------------


def _drain(queue: FairQueue) -> list[str]:
    """Pop every run as launches would, each counted as served."""
    started = []
    while queue:
        owner, run_id = queue.popleft()
        queue.served(owner)
        started.append(run_id)
    return started


def test_owners_take_turns_and_each_owner_is_first_in_first_out() -> None:
    queue = FairQueue()
    for run_id in ("a1", "a2", "a3", "a4"):
        queue.append("alice", run_id)
    for run_id in ("b1", "b2"):
        queue.append("bob", run_id)
    expected = ["a1", "b1", "a2", "b2", "a3", "a4"]
    assert [run_id for _owner, run_id in queue.order()] == expected
    assert len(queue) == 6 and ("bob", "b2") in queue and ("alice", "b2") not in queue
    assert _drain(queue) == expected
    assert not queue and queue.order() == []


def test_the_owner_served_longest_ago_goes_next() -> None:
    queue = FairQueue()
    for run_id in ("a1", "a2", "a3"):
        queue.append("alice", run_id)
    owner, run_id = queue.popleft()
    queue.served(owner)
    assert run_id == "a1"
    # Bob and carol arrive while a1 runs: neither was served, so both go before alice's
    # next run, in the order they started waiting.
    queue.append("bob", "b1")
    queue.append("carol", "c1")
    queue.append("bob", "b2")
    assert [r for _o, r in queue.order()] == ["b1", "c1", "a2", "b2", "a3"]
    assert _drain(queue) == ["b1", "c1", "a2", "b2", "a3"]
    # Alice was served last: a newcomer's run and bob's go before hers.
    queue.append("alice", "a4")
    queue.append("bob", "b3")
    queue.append("dave", "d1")
    assert _drain(queue) == ["d1", "b3", "a4"]


def test_a_run_put_back_leads_its_owner_and_a_skipped_pop_does_not_count() -> None:
    queue = FairQueue()
    queue.append("alice", "a1")
    queue.append("alice", "a2")
    queue.append("bob", "b1")
    owner, run_id = queue.popleft()
    queue.served(owner)
    queue.appendleft(owner, run_id)  # a1 crashed: it goes back ahead of a2
    assert [r for _o, r in queue.order()] == ["b1", "a1", "a2"]
    # A run popped but not launched (cancelled meanwhile) does not end its owner's turn.
    assert queue.popleft() == ("bob", "b1")
    queue.append("bob", "b2")
    assert [r for _o, r in queue.order()] == ["b2", "a1", "a2"]
    assert queue.remove("alice", "a1") and not queue.remove("alice", "a1")
    assert queue.remove("bob", "b2") and [r for _o, r in queue.order()] == ["a2"]


def test_an_empty_queue_cannot_be_popped() -> None:
    with pytest.raises(IndexError):
        FairQueue().popleft()


# -- inside a supervisor -------------------------------------------------------------------


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run ids in the order the supervisor launched their workers (``sleep`` processes)."""
    order: list[str] = []
    real = subprocess.Popen

    def popen(command: list[str], **options: Any) -> subprocess.Popen[bytes]:
        order.append(command[command.index("--run") + 1])
        return real(["sleep", "60"], **options)

    monkeypatch.setattr(subprocess, "Popen", popen)
    return order


@pytest.fixture
def make_supervisor(tmp_path: Path) -> Iterator[Factory]:
    made: list[RunSupervisor] = []

    def make(**options: Any) -> RunSupervisor:
        options = {"scratch_dir": tmp_path / "scratch", "poll_interval": 0.05,
                   "cancel_grace": 1.0, "max_concurrent": 1, **options}  # fmt: skip
        supervisor = RunSupervisor(str(tmp_path / "store"), **options)
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        supervisor.stop(timeout=5)


def _runs(registry: RunRegistry, store: Store, owner: str, names: list[str]) -> dict[str, str]:
    """VALIDATING runs of ``owner``, one per name: ``{name: run_id}``."""
    train = upload(store, clusters(16), owner=owner)
    return {name: queue_run(registry, mlp_request(train), owner=owner) for name in names}


def _finish(supervisor: RunSupervisor, registry: RunRegistry, owner: str, run_id: str) -> None:
    """Play the worker: take the run to FINISHED, then end its process."""
    for state in TO_FINISHED:
        registry.transition(owner, run_id, state)
    os.killpg(supervisor.status()["workers"][run_id], signal.SIGKILL)


def _run_through(
    supervisor: RunSupervisor,
    registry: RunRegistry,
    launched: list[str],
    owners: dict[str, str],
    total: int,
) -> None:
    """Finish each launched run in turn until ``total`` launches happened."""
    for i in range(total):
        wait_for(f"launch number {i + 1}", _launches(launched, i + 1), timeout=20)
        assert supervisor.status()["running"] == [launched[i]]  # one slot
        _finish(supervisor, registry, owners[launched[i]], launched[i])
    wait_for("the last run to be reaped", lambda: not supervisor.status()["running"], timeout=20)


def _launches(launched: list[str], count: int) -> Callable[[], bool]:
    """A check that ``count`` launches happened."""
    return lambda: len(launched) >= count


def _names(ids: dict[str, str], run_ids: list[str]) -> list[str]:
    names = {run_id: name for name, run_id in ids.items()}
    return [names[run_id] for run_id in run_ids]


def test_the_supervisor_starts_runs_round_robin_between_owners(
    make_supervisor: Factory, registry: RunRegistry, store: Store, launched: list[str]
) -> None:
    alice = _runs(registry, store, "alice", ["a1", "a2", "a3", "a4"])
    bob = _runs(registry, store, "bob", ["b1", "b2"])
    ids = {**alice, **bob}
    owners = {**dict.fromkeys(alice.values(), "alice"), **dict.fromkeys(bob.values(), "bob")}
    supervisor = make_supervisor()
    for name in ("a1", "a2", "a3", "a4", "b1", "b2"):
        supervisor.submit(owners[ids[name]], ids[name])
    expected = ["a1", "b1", "a2", "b2", "a3", "a4"]
    status = supervisor.status()
    assert _names(ids, status["queued"]) == expected
    assert status["queued_owners"] == ["alice", "bob", "alice", "bob", "alice", "alice"]
    # The queue message counts the runs that start first, whoever owns them.
    assert registry.events("bob", ids["b2"])[-1].message == "queued; 3 run(s) ahead"

    supervisor.start()
    _run_through(supervisor, registry, launched, owners, total=6)
    assert _names(ids, launched) == expected
    # The records tell the same order: when each left the queue.
    records = [registry.get(owners[run_id], run_id) for run_id in launched]
    started = [record.started_at or "" for record in records]
    assert all(started) and started == sorted(started)
    assert all(r.queued_at and r.queued_at <= (r.started_at or "") for r in records)


def test_an_owner_arriving_later_goes_before_the_busy_owner(
    make_supervisor: Factory, registry: RunRegistry, store: Store, launched: list[str]
) -> None:
    alice = _runs(registry, store, "alice", ["a1", "a2", "a3"])
    bob = _runs(registry, store, "bob", ["b1"])
    carol = _runs(registry, store, "carol", ["c1"])
    ids = {**alice, **bob, **carol}
    owners = {run_id: owner for owner, runs in (("alice", alice), ("bob", bob),
              ("carol", carol)) for run_id in runs.values()}  # fmt: skip
    supervisor = make_supervisor()
    supervisor.start()
    for name in ("a1", "a2", "a3"):
        supervisor.submit("alice", ids[name])
    wait_for("a1 to start", lambda: launched == [ids["a1"]], timeout=20)
    supervisor.submit("bob", ids["b1"])
    supervisor.submit("carol", ids["c1"])
    assert _names(ids, supervisor.status()["queued"]) == ["b1", "c1", "a2", "a3"]
    _run_through(supervisor, registry, launched, owners, total=5)
    assert _names(ids, launched) == ["a1", "b1", "c1", "a2", "a3"]


def test_a_crashed_run_goes_back_to_the_head_of_its_owners_queue(
    make_supervisor: Factory, registry: RunRegistry, store: Store, launched: list[str]
) -> None:
    alice = _runs(registry, store, "alice", ["a1", "a2"])
    bob = _runs(registry, store, "bob", ["b1"])
    ids = {**alice, **bob}
    owners = {**dict.fromkeys(alice.values(), "alice"), **dict.fromkeys(bob.values(), "bob")}
    supervisor = make_supervisor(max_attempts=3)
    for name in ("a1", "a2", "b1"):
        supervisor.submit(owners[ids[name]], ids[name])
    supervisor.start()
    wait_for("a1 to start", lambda: supervisor.status()["running"] == [ids["a1"]], timeout=20)
    first_start = registry.get("alice", ids["a1"]).started_at
    # The worker dies without finishing: a1 is put back ahead of a2, and bob has his turn.
    os.killpg(supervisor.status()["workers"][ids["a1"]], signal.SIGKILL)
    wait_for("b1 to start", lambda: supervisor.status()["running"] == [ids["b1"]], timeout=20)
    assert _names(ids, supervisor.status()["queued"]) == ["a1", "a2"]
    _finish(supervisor, registry, "bob", ids["b1"])
    wait_for("a1's second launch", lambda: len(launched) == 3, timeout=20)
    _finish(supervisor, registry, "alice", ids["a1"])
    wait_for("a2 to start", lambda: len(launched) == 4, timeout=20)
    _finish(supervisor, registry, "alice", ids["a2"])
    assert _names(ids, launched) == ["a1", "b1", "a1", "a2"]
    again = registry.get("alice", ids["a1"])
    assert (again.attempt, again.crashes) == (2, 1)
    assert again.started_at == first_start  # the first launch is when it started


def test_a_restart_rebuilds_each_owners_queue_from_the_registry(
    make_supervisor: Factory, registry: RunRegistry, store: Store, launched: list[str]
) -> None:
    # What a service left: alice's r and carol's c were training, the rest queued. Alice's
    # y was queued before her x although x was created first: each owner's queue follows
    # the queue times.
    alice = _runs(registry, store, "alice", ["r", "x", "y"])
    carol = _runs(registry, store, "carol", ["c"])
    bob = _runs(registry, store, "bob", ["b1"])
    ids = {**alice, **carol, **bob}
    owners = {run_id: owner for owner, runs in (("alice", alice), ("bob", bob),
              ("carol", carol)) for run_id in runs.values()}  # fmt: skip
    for name in ("r", "c"):
        for state in (S.QUEUED, S.PREPARING, S.TRAINING):
            registry.transition(owners[ids[name]], ids[name], state)
    for name, queued_at in (("y", "2030-01-01T00:00:01.000Z"), ("b1", "2030-01-01T00:00:02.000Z"),
                            ("x", "2030-01-01T00:00:03.000Z")):  # fmt: skip
        registry.transition(owners[ids[name]], ids[name], S.QUEUED, queued_at=queued_at)
    assert registry.get("alice", ids["x"]).queued_at == "2030-01-01T00:00:03.000Z"

    supervisor = make_supervisor()
    supervisor.start()
    wait_for("r to resume", lambda: supervisor.status()["running"] == [ids["r"]], timeout=20)
    # Resumed runs lead their owners' queues and their owners wait first (oldest first);
    # then owners take turns as before the restart.
    assert _names(ids, supervisor.status()["queued"]) == ["c", "b1", "y", "x"]
    assert supervisor.status()["queued_owners"] == ["carol", "bob", "alice", "alice"]
    _run_through(supervisor, registry, launched, owners, total=5)
    assert _names(ids, launched) == ["r", "c", "b1", "y", "x"]
