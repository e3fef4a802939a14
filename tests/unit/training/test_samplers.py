"""Batch samplers: batch shapes, coverage, determinism, rank sharding, resuming, errors."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Hashable

import numpy as np
import pytest
import torch

from searchtuner.errors import ConfigError, DataError
from searchtuner.training.samplers import (
    ClassBalancedBatchSampler,
    NoDuplicatesBatchSampler,
    RandomBatchSampler,
)

Sampler = ClassBalancedBatchSampler | NoDuplicatesBatchSampler | RandomBatchSampler


def random_labels(seed: int, n_labels: int = 40) -> list[int]:
    """Labels with 1..12 items each (so singletons and labels smaller than m), shuffled."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 13, n_labels)
    labels = np.repeat(np.arange(n_labels) * 7, counts)  # not 0..n-1: codes are not labels
    rng.shuffle(labels)
    return labels.tolist()


def pair_keys(seed: int, n: int = 600, n_docs: int = 40) -> list[tuple[str, str]]:
    """(query, document) pairs where every document repeats ~15 times and some queries too."""
    rng = np.random.default_rng(seed)
    return [(f"q{rng.integers(0, n // 2)}", f"d{rng.integers(0, n_docs)}") for _ in range(n)]


FACTORIES: dict[str, Callable[..., Sampler]] = {
    "class_balanced": lambda **kw: ClassBalancedBatchSampler(random_labels(1), 16, 4, **kw),
    "no_duplicates": lambda **kw: NoDuplicatesBatchSampler(pair_keys(1), 16, **kw),
    "random": lambda **kw: RandomBatchSampler(203, 16, **kw),
}


@pytest.fixture(params=list(FACTORIES))
def factory(request: pytest.FixtureRequest) -> Callable[..., Sampler]:
    return FACTORIES[request.param]


# --- common to every sampler ---------------------------------------------------------------


def test_same_seed_and_epoch_give_the_same_batches_whatever_the_global_rng(
    factory: Callable[..., Sampler],
) -> None:
    first = list(factory(seed=3))
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    assert list(factory(seed=3)) == first
    assert list(factory(seed=4)) != first
    sampler = factory(seed=3)
    sampler.set_epoch(1)
    second_epoch = list(sampler)
    assert second_epoch != first
    sampler.set_epoch(0)
    assert list(sampler) == first
    assert len(sampler) == len(first)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_share_one_sequence_round_robin(
    factory: Callable[..., Sampler], world_size: int
) -> None:
    single = factory(seed=5)
    single.set_epoch(2)
    everything = list(single)
    ranks = []
    for rank in range(world_size):
        sampler = factory(seed=5, rank=rank, world_size=world_size)
        sampler.set_epoch(2)
        ranks.append(list(sampler))
        assert len(sampler) == len(ranks[-1]) == len(everything) // world_size
        assert sampler.batches_per_epoch == len(sampler) * world_size
    n = len(ranks[0])
    assert all(len(r) == n for r in ranks)
    interleaved = [ranks[i % world_size][i // world_size] for i in range(n * world_size)]
    assert interleaved == everything[: n * world_size]  # so each batch goes to one rank
    if not isinstance(single, ClassBalancedBatchSampler):  # (top-ups may repeat an item)
        items = [{i for batch in r for i in batch} for r in ranks]
        assert sum(len(x) for x in items) == len(set().union(*items))


@pytest.mark.parametrize("rank", [0, 1])
def test_iter_from_skips_the_first_batches(factory: Callable[..., Sampler], rank: int) -> None:
    sampler = factory(seed=2, rank=rank, world_size=2)
    sampler.set_epoch(7)
    full = list(sampler)
    for k in (0, 1, 3, len(full) - 1, len(full), len(full) + 5):
        assert list(sampler.iter_from(k)) == full[k:]


def test_yielded_batches_are_copies(factory: Callable[..., Sampler]) -> None:
    sampler = factory()
    batch = next(iter(sampler))
    batch.clear()
    assert next(iter(sampler))


def test_bad_epoch_rank_and_start_are_config_errors(factory: Callable[..., Sampler]) -> None:
    with pytest.raises(ConfigError, match=r"rank must be an integer in 0\.\.1"):
        factory(rank=2, world_size=2)
    with pytest.raises(ConfigError, match="world_size must be an integer >= 1"):
        factory(world_size=0)
    sampler = factory()
    with pytest.raises(ConfigError, match="epoch must be an integer >= 0"):
        sampler.set_epoch(-1)
    with pytest.raises(ConfigError, match="start_batch must be an integer >= 0"):
        sampler.iter_from(-1)


# --- ClassBalancedBatchSampler -------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("batch_size", "m"), [(16, 4), (12, 2), (15, 5)])
def test_class_balanced_batches(seed: int, batch_size: int, m: int) -> None:
    labels = random_labels(seed)
    counts = Counter(labels)
    sampler = ClassBalancedBatchSampler(labels, batch_size, m, seed=seed)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    k = batch_size // m
    for batch in batches:
        assert len(batch) == batch_size
        per_label = Counter(labels[i] for i in batch)
        assert len(per_label) == k  # distinct labels
        assert set(per_label.values()) == {m}
        for label in per_label:
            items = [i for i in batch if labels[i] == label]
            if counts[label] >= m:  # a top-up picks *other* items of the label
                assert len(set(items)) == m
            else:  # a small label repeats all its items as evenly as possible
                assert set(items) == {i for i, x in enumerate(labels) if x == label}
                assert max(Counter(items).values()) == math.ceil(m / counts[label])

    singletons = {label for label, c in counts.items() if c == 1}
    assert set(sampler.excluded_labels) == singletons
    assert sampler.n_excluded_items == len(singletons)
    assert sampler.n_labels == len(counts) - len(singletons)

    # Coverage: each label contributes ceil(count / m) groups; every group but those left
    # over at the end (fewer than a batch here) is yielded.
    occurrences = Counter(labels[i] for batch in batches for i in batch)
    assert not set(occurrences) & singletons
    groups = {label: math.ceil(c / m) for label, c in counts.items() if c >= 2}
    assert 0 <= sum(groups.values()) - len(batches) * k < k
    yielded = Counter(i for batch in batches for i in batch)
    for label, n_groups in groups.items():
        label_items = {i for i, x in enumerate(labels) if x == label}
        assert occurrences[label] % m == 0 and occurrences[label] <= n_groups * m
        if occurrences[label] == n_groups * m:  # none of its groups dropped: all items seen
            assert label_items <= set(yielded)
            if counts[label] >= m:  # at most once more, as a top-up
                assert max(yielded[i] for i in label_items) <= 2
    usable = sum(c for c in counts.values() if c >= 2)
    assert sampler.n_dropped_last_epoch == usable - len(yielded)


def test_class_balanced_accepts_tensor_and_string_labels() -> None:
    labels = random_labels(3)
    expected = list(ClassBalancedBatchSampler(labels, 8, 2, seed=1))
    assert list(ClassBalancedBatchSampler(torch.tensor(labels), 8, 2, seed=1)) == expected
    assert list(ClassBalancedBatchSampler(np.array(labels), 8, 2, seed=1)) == expected
    assert list(ClassBalancedBatchSampler([f"L{x}" for x in labels], 8, 2, seed=1)) == expected


def test_class_balanced_packs_when_one_label_dominates() -> None:
    labels = [0] * 200 + [1] * 8 + [2] * 8 + [3] * 8
    batches = list(ClassBalancedBatchSampler(labels, 8, 2, seed=0))
    assert len(batches) > 0
    for batch in batches:
        assert sorted(Counter(labels[i] for i in batch).values()) == [2, 2, 2, 2]


@pytest.mark.parametrize(
    ("batch_size", "m", "message"),
    [
        (30, 4, r"not a multiple of samples_per_label=4.*use batch_size 28 or 32, or "
         r"samples_per_label one of 2, 3, 5, 6, 10, 15"),
        (6, 4, r"not a multiple.*use batch_size 8, or samples_per_label one of 2, 3$"),
        (4, 4, r"holds a single label.*use batch_size >= 8 or samples_per_label <= 2"),
        (8, 1, r"samples_per_label must be at least 2"),
        (0, 2, r"batch_size must be an integer >= 1"),
    ],
)  # fmt: skip
def test_class_balanced_rejects_batch_shapes(batch_size: int, m: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClassBalancedBatchSampler(random_labels(0), batch_size, m)


def test_class_balanced_needs_enough_labels() -> None:
    labels = ["a", "a", "a", "b", "b", "c", "d"]  # two usable labels, two singletons
    with pytest.raises(ConfigError, match=r"needs 3 distinct labels.*only 2 label\(s\).*"
                       r"2 single-item label\(s\) left out.*use batch_size <= 8, or keep "
                       r"batch_size=12 with samples_per_label=6"):  # fmt: skip
        ClassBalancedBatchSampler(labels, 12, 4)
    sampler = ClassBalancedBatchSampler(labels, 8, 4)
    assert sampler.excluded_labels == ("c", "d")
    assert sampler.n_excluded_items == 2
    with pytest.raises(DataError, match=r"found 1 such label.*2 label\(s\) have a single item"):
        ClassBalancedBatchSampler(["a", "a", "b", "c"], 4, 2)
    unhashable: list[Hashable] = [1, [1], 2, 2]  # type: ignore[list-item]
    with pytest.raises(DataError, match=r"label of item 1 is \[1\], which is not hashable"):
        ClassBalancedBatchSampler(unhashable, 4, 2)
    with pytest.raises(DataError, match=r"yields no batch on rank 0.*1 batch"):
        ClassBalancedBatchSampler([0, 0, 1, 1], 4, 2, world_size=2)


# --- NoDuplicatesBatchSampler --------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_duplicate_key_in_any_batch(seed: int) -> None:
    keys = pair_keys(seed)
    sampler = NoDuplicatesBatchSampler(keys, 16, seed=seed)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        assert len(batch) == 16
        batch_keys = [k for i in batch for k in keys[i]]
        assert len(batch_keys) == len(set(batch_keys))
    yielded = [i for batch in batches for i in batch]
    assert len(yielded) == len(set(yielded))  # each item at most once
    assert sampler.n_dropped_last_epoch == len(keys) - len(yielded)
    assert sampler.n_dropped_last_epoch < len(keys) // 5  # clashes defer, they do not drop


def test_no_duplicates_without_drop_last_yields_every_item_once() -> None:
    keys = pair_keys(4)
    batches = list(NoDuplicatesBatchSampler(keys, 16, drop_last=False))
    assert sorted(i for batch in batches for i in batch) == list(range(len(keys)))
    assert all(0 < len(batch) <= 16 for batch in batches)
    for batch in batches:
        batch_keys = [k for i in batch for k in keys[i]]
        assert len(batch_keys) == len(set(batch_keys))


def test_no_duplicates_single_keys_and_none() -> None:
    docs = [f"d{i % 10}" for i in range(100)]
    for batch in NoDuplicatesBatchSampler(docs, 10):
        assert len({docs[i] for i in batch}) == 10
    # None is "no key": items without one never clash.
    sampler = NoDuplicatesBatchSampler([None] * 20, 5, drop_last=True)
    assert len(sampler) == 4 and sampler.n_dropped_last_epoch == 0


def test_no_duplicates_errors() -> None:
    with pytest.raises(DataError, match=r"yields no batch.*drop_last=False"):
        NoDuplicatesBatchSampler(["same"] * 50, 4)
    unhashable: list[Hashable] = ["a", {"b": 1}]  # type: ignore[list-item]
    with pytest.raises(DataError, match=r"keys of item 1 are \{'b': 1\}: a key must be hashable"):
        NoDuplicatesBatchSampler(unhashable, 1)


# --- RandomBatchSampler --------------------------------------------------------------------


def test_random_batches_cover_every_item_once() -> None:
    sampler = RandomBatchSampler(103, 10, seed=1)
    batches = list(sampler)
    assert [len(b) for b in batches] == [10] * 10
    flat = [i for b in batches for i in b]
    assert len(set(flat)) == 100 and sampler.n_dropped_last_epoch == 3
    batches = list(RandomBatchSampler(103, 10, seed=1, drop_last=False))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    assert sorted(i for b in batches for i in b) == list(range(103))


def test_random_errors() -> None:
    with pytest.raises(DataError, match=r"has 5 item\(s\).*or drop_last=False"):
        RandomBatchSampler(5, 8)
    with pytest.raises(ConfigError, match="n_items must be an integer >= 1"):
        RandomBatchSampler(0, 8)
    with pytest.raises(ConfigError, match="seed must be an integer"):
        RandomBatchSampler(10, 2, seed=1.5)  # type: ignore[arg-type]


# --- speed sanity ----------------------------------------------------------------------------


def test_one_epoch_of_100k_items_is_quick() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    labels = rng.integers(0, 20_000, n)
    keys = [(f"q{i}", f"d{d}") for i, d in enumerate(rng.integers(0, 20_000, n).tolist())]
    builders: dict[str, Callable[[], Sampler]] = {
        "class_balanced": lambda: ClassBalancedBatchSampler(labels, 64, 4),
        "no_duplicates": lambda: NoDuplicatesBatchSampler(keys, 64),
        "random": lambda: RandomBatchSampler(n, 64),
    }
    for name, build in builders.items():
        start = time.perf_counter()
        sampler = build()
        n_batches = len(list(sampler))
        print(f"{name}: one epoch of {n} items, {n_batches} batches, "
              f"{time.perf_counter() - start:.3f} s")  # fmt: skip
