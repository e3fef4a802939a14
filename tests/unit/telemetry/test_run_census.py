"""RunCensus: runs by state and training speed from the registry; finished runs read once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from searchtuner.runs import RunRegistry, RunState
from searchtuner.store import Store, StoreUnavailable
from searchtuner.telemetry import RunCensus
from tests.unit.runs.helpers import OWNER, mlp_request, queue_run

S = RunState
FORWARD = [S.QUEUED, S.PREPARING, S.TRAINING, S.EVALUATING, S.PUBLISHING, S.FINISHED]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _run(registry: RunRegistry, until: RunState, owner: str = OWNER, **fields: Any) -> str:
    """A run taken through the lifecycle to ``until`` (FAILED/CANCELLED: from QUEUED)."""
    run_id = queue_run(registry, mlp_request("std1:" + "a" * 64), owner=owner)
    if until is S.VALIDATING:
        return run_id
    path = FORWARD[: FORWARD.index(until) + 1] if until in FORWARD else [S.QUEUED, until]
    for state in path:
        reason = "stopped by the test" if state in (S.FAILED, S.CANCELLED) else None
        registry.transition(owner, run_id, state, reason=reason)
    if fields:
        registry.update(owner, run_id, **fields)
    return run_id


@pytest.fixture
def reads(registry: RunRegistry, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The run ids whose records the registry reads, in order."""
    seen: list[str] = []
    real_get = registry.get

    def get(owner: str, run_id: str) -> Any:
        seen.append(run_id)
        return real_get(owner, run_id)

    monkeypatch.setattr(registry, "get", get)
    return seen


def test_counts_every_state_and_the_training_speed(registry: RunRegistry) -> None:
    finished = [_run(registry, S.FINISHED) for _ in range(2)]
    _run(registry, S.FAILED)
    _run(registry, S.QUEUED)
    training = _run(registry, S.TRAINING, progress={"step": 3, "samples_per_second": 41.5})
    _run(registry, S.TRAINING)  # no progress reported yet
    census = RunCensus(registry, [OWNER]).look()
    assert census is not None
    assert census.states == {
        **dict.fromkeys(RunState, 0),
        S.FINISHED: 2, S.FAILED: 1, S.QUEUED: 1, S.TRAINING: 2,
    }  # fmt: skip
    assert census.samples_per_second == {training: 41.5}
    assert len(finished) == 2


def test_finished_runs_are_read_once_and_live_ones_every_time(
    registry: RunRegistry, reads: list[str]
) -> None:
    done = _run(registry, S.FINISHED)
    live = _run(registry, S.PREPARING)
    clock = Clock()
    census = RunCensus(registry, [OWNER], min_interval=1.0, clock=clock)
    reads.clear()
    first = census.look()
    assert sorted(reads) == sorted([done, live])
    reads.clear()
    clock.now += 0.5
    assert census.look() is first and reads == []  # the same look within min_interval
    clock.now += 1.0
    registry.transition(OWNER, live, S.FAILED, reason="out of memory")
    reads.clear()
    second = census.look()
    assert reads == [live]  # the finished one is remembered
    assert second is not None and second.states[S.FAILED] == 1 and second.states[S.PREPARING] == 0
    # A deleted run leaves the counts, and the census forgets it.
    registry.delete(OWNER, done)
    clock.now += 2.0
    third = census.look()
    assert third is not None and third.states[S.FINISHED] == 0 and third.states[S.FAILED] == 1


def test_owners_with_live_runs_are_found_in_the_live_index(registry: RunRegistry) -> None:
    _run(registry, S.QUEUED, owner="bob")
    _run(registry, S.FINISHED, owner="bob")
    _run(registry, S.FINISHED, owner="carol")  # no live run, not named: not counted
    census = RunCensus(registry, [OWNER]).look()
    assert census is not None
    assert census.states[S.QUEUED] == 1 and census.states[S.FINISHED] == 1
    named = RunCensus(registry, [OWNER, "carol"]).look()
    assert named is not None and named.states[S.FINISHED] == 2


def test_a_store_that_cannot_be_read_gives_no_numbers(
    registry: RunRegistry, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(registry, S.QUEUED)

    def unreachable(prefix: str = "") -> Iterator[str]:
        raise StoreUnavailable("the store at s3://b is unreachable; check the network")

    monkeypatch.setattr(store, "keys", unreachable)
    assert RunCensus(registry, [OWNER]).look() is None
