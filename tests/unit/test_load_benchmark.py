"""benchmarks/load.py's pure helpers against brute-force definitions (no service)."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "load.py"


@pytest.fixture(scope="module")
def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_load", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_percentile_is_the_nearest_rank(load: ModuleType) -> None:
    rng = random.Random(0)
    for _ in range(200):
        values = [rng.choice([rng.random(), 0.5]) for _ in range(rng.randint(1, 30))]
        for p in (1, 50, 95, 99, 99.9, 100):
            # The smallest value that at least p % of the values are at most.
            brute = min(v for v in values if sum(w <= v for w in values) >= p / 100 * len(values))
            assert load.percentile(values, p) == brute
    assert load.percentile([], 50) != load.percentile([], 50)  # nan


def test_the_submission_order_numbers_each_owners_runs(load: ModuleType) -> None:
    assert [name for _, name in load.submission_order(8)] == [
        "a1", "a2", "a3", "b1", "a4", "b2", "c1", "a5",
    ]  # fmt: skip
    assert load.submission_order(4)[3] == ("bob", "b1")


def test_the_fair_rule_is_round_robin_when_everything_waits(load: ModuleType) -> None:
    rng = random.Random(1)
    for _ in range(300):
        owners = rng.sample(["alice", "bob", "carol", "dave"], rng.randint(1, 4))
        counts: dict[str, int] = {}
        queued = []
        for _ in range(rng.randint(1, 12)):
            owner = rng.choice(owners)
            counts[owner] = counts.get(owner, 0) + 1
            queued.append((owner, f"{owner}{counts[owner]}"))
        # The first run starts alone at once; the rest are queued before the second launch.
        arrivals = [(0.0, *queued[0])] + [(1.0 + i, o, n) for i, (o, n) in enumerate(queued[1:])]
        launches = [0.5] + [100.0 + i for i in range(len(queued) - 1)]
        expected = [queued[0][1], *load.round_robin_rounds(queued[1:], [queued[0][0]])]
        assert load.fair_order(arrivals, launches) == expected
        assert load.fifo_within_owners(expected, queued)


def test_an_owner_arriving_later_goes_before_the_busy_owner(load: ModuleType) -> None:
    arrivals = [(0.0, "alice", "a1"), (0.1, "alice", "a2"), (0.2, "alice", "a3"),
                (5.0, "bob", "b1"), (6.0, "carol", "c1")]  # fmt: skip
    # a1 launched alone; a2 launched before bob and carol arrived; then b1, c1, a3.
    assert load.fair_order(arrivals, [0.05, 1.0, 10.0, 20.0, 30.0]) == [
        "a1",
        "a2",
        "b1",
        "c1",
        "a3",
    ]
    assert not load.fifo_within_owners(["a2", "a1"], [("alice", "a1"), ("alice", "a2")])


def test_polls_are_filed_by_what_the_trainer_did(load: ModuleType) -> None:
    intervals = [(0.0, 10.0, "QUEUED"), (10.0, 12.0, "PREPARING"), (12.0, 20.0, "TRAINING"),
                 (5.0, 30.0, "QUEUED")]  # fmt: skip
    assert load.phase_at(5.0, intervals) == "no_worker"
    assert load.phase_at(11.0, intervals) == "worker"
    assert load.phase_at(12.0, intervals) == "training"
    assert load.phase_at(20.0, intervals) == "no_worker"
