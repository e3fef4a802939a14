"""Batch samplers: which dataset indices go into each training batch.

Each sampler is a torch ``batch_sampler``: it yields lists of dataset indices. All of them

* are deterministic given ``(seed, epoch)``: :meth:`set_epoch` changes the order, and the
  global random state (``torch.manual_seed``, ``random.seed``) has no effect;
* are distributed-aware: the global batch sequence of an epoch is built once from
  ``(seed, epoch)``, batch ``i`` goes to rank ``i % world_size``, and the sequence is cut so
  that every rank gets the same number of batches;
* resume mid-epoch with :meth:`iter_from`, which skips batches without building them twice.

The trainer does not use the round-robin mode: it wraps a one-process sampler in
:class:`RankShardSampler`, which gives every process a shard of each global batch, so that
the processes together train on exactly the batches one process would.

Which sampler fits which loss:

* :class:`ClassBalancedBatchSampler` — labelled items for triplet / metric losses: every batch
  holds ``samples_per_label`` items of each of ``batch_size // samples_per_label`` labels.
* :class:`NoDuplicatesBatchSampler` — (query, document) pairs for in-batch-negative losses: no
  query or document occurs twice in a batch, so every in-batch negative is a true negative.
* :class:`RandomBatchSampler` — plain shuffled batches.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator, Sequence
from itertools import islice
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from searchtuner.errors import ConfigError, DataError
from searchtuner.training.distributed import split_batch

__all__ = [
    "ClassBalancedBatchSampler",
    "NoDuplicatesBatchSampler",
    "RandomBatchSampler",
    "RankShardSampler",
]

_SEED_MODULUS = 2**64


def _check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``; else raise ``ConfigError``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _as_list(values: Any) -> list[Any]:
    """Turn labels or keys into a list of plain Python values.

    Elements of a tensor or array would hash by identity (so no two would ever be equal);
    ``tolist`` turns them into numbers first.
    """
    if isinstance(values, np.ndarray | torch.Tensor):
        return list(values.tolist())
    return list(values)


class _EpochBatchSampler(Sampler[list[int]]):
    """What every sampler here shares: seeding, epochs, rank sharding and resuming.

    A subclass implements :meth:`_build` (the global batch sequence of one epoch from a
    seeded generator) and sets ``_n_candidates`` (how many items an epoch could cover).
    """

    _n_candidates: int

    def __init__(self, batch_size: int, *, seed: int, rank: int, world_size: int) -> None:
        super().__init__()
        self.batch_size: int = _check_int("batch_size", batch_size, 1)
        if isinstance(seed, bool) or not isinstance(seed, Integral):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        self.seed: int = int(seed)
        self.world_size: int = _check_int("world_size", world_size, 1)
        if isinstance(rank, bool) or not isinstance(rank, Integral) or not 0 <= rank < world_size:
            raise ConfigError(
                f"rank must be an integer in 0..{world_size - 1} (world_size={world_size}), "
                f"got {rank!r}"
            )
        self.rank: int = int(rank)
        self._epoch: int = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    @property
    def epoch(self) -> int:
        """The epoch whose batches :meth:`__iter__` yields."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch; each epoch has its own order, the same on every rank.

        Args:
            epoch: the epoch number, 0 or more.

        Raises:
            ConfigError: if ``epoch`` is not an integer >= 0.
        """
        self._epoch = _check_int("epoch", epoch, 0)

    def _build(self, rng: np.random.Generator) -> list[list[int]]:
        """Build the global batch sequence of one epoch."""
        raise NotImplementedError

    def _global_batches(self) -> list[list[int]]:
        """The current epoch's global batch sequence, built once and cached."""
        if self._cache is None or self._cache[0] != self._epoch:
            rng = np.random.default_rng([self.seed % _SEED_MODULUS, self._epoch])
            self._cache = (self._epoch, self._build(rng))
        return self._cache[1]

    def __len__(self) -> int:
        """Number of batches this rank yields in the current epoch."""
        return len(self._global_batches()) // self.world_size

    @property
    def batches_per_epoch(self) -> int:
        """Number of batches all ranks together yield in the current epoch."""
        return len(self) * self.world_size

    @property
    def n_dropped_last_epoch(self) -> int:
        """Items that no rank yields in the current epoch.

        They are in the incomplete batches left at the end, or in the batches cut so that
        every rank has the same count. Items left out for good (see
        ``ClassBalancedBatchSampler.excluded_labels``) are not counted here.
        """
        batches = self._global_batches()[: self.batches_per_epoch]
        if not batches:
            return self._n_candidates
        covered = np.unique(np.concatenate([np.asarray(b, dtype=np.int64) for b in batches]))
        return self._n_candidates - len(covered)

    def __iter__(self) -> Iterator[list[int]]:
        """Yield this rank's batches of the current epoch."""
        return self.iter_from(0)

    def iter_from(self, start_batch: int) -> Iterator[list[int]]:
        """Yield this rank's batches of the current epoch, skipping the first ``start_batch``.

        ``list(sampler.iter_from(k)) == list(sampler)[k:]``; used to resume mid-epoch.

        Args:
            start_batch: how many of this rank's batches were already consumed.

        Returns:
            An iterator over the remaining batches (lists of dataset indices).

        Raises:
            ConfigError: if ``start_batch`` is negative.
        """
        _check_int("start_batch", start_batch, 0)
        batches = self._global_batches()
        stop = self.batches_per_epoch
        positions = range(self.rank + start_batch * self.world_size, stop, self.world_size)
        return (list(batches[i]) for i in positions)

    def _require_batches(self, fix: str) -> None:
        """Raise ``DataError`` if this rank would get no batch at all in epoch 0."""
        if len(self) == 0:
            n_global = len(self._global_batches())
            raise DataError(
                f"{type(self).__name__} yields no batch on rank {self.rank}: an epoch has "
                f"{n_global} batch(es) of {self.batch_size} for {self.world_size} rank(s); {fix}"
            )


class ClassBalancedBatchSampler(_EpochBatchSampler):
    """Batches of ``samples_per_label`` items from each of several distinct labels.

    The "PK" sampling of metric learning: a batch holds ``batch_size // samples_per_label``
    labels, each with exactly ``samples_per_label`` items, so every item has positives and
    negatives in its batch and triplets can be mined from every batch.

    An epoch covers each usable item about once: each label's items are shuffled and cut into
    groups of ``samples_per_label``; a last partial group is topped up with other items of
    the same label, picked at random (a label with fewer items than ``samples_per_label``
    repeats its items as evenly as possible). The groups are shuffled and packed into batches
    of distinct labels; a group whose label is already in the batch being filled waits for
    the next batch. Groups that cannot fill a last complete batch are dropped.

    Labels with a single item can give no positive pair and are left out
    (:attr:`excluded_labels`).

    Args:
        labels: the label of each dataset item (hashable values; tensors and arrays are
            turned into numbers first).
        batch_size: items per batch, a multiple of ``samples_per_label``.
        samples_per_label: items of each label in a batch, at least 2.
        seed: seeds the order; with the epoch it fixes every batch.
        rank: this process's rank in distributed training.
        world_size: number of processes in distributed training.

    Raises:
        ConfigError: for a ``batch_size`` that is not a multiple of ``samples_per_label``,
            that holds fewer than two labels, or that needs more distinct labels than the
            data has.
        DataError: if fewer than two labels have at least two items, or a label is not
            hashable.
    """

    def __init__(
        self,
        labels: Sequence[Hashable] | np.ndarray | torch.Tensor,
        batch_size: int,
        samples_per_label: int = 4,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(batch_size, seed=seed, rank=rank, world_size=world_size)
        m = _check_int("samples_per_label", samples_per_label, 1)
        if m < 2:
            raise ConfigError(
                f"samples_per_label must be at least 2 so each item has a positive in its "
                f"batch, got {samples_per_label}"
            )
        self.samples_per_label = m
        _check_batch_shape(batch_size, m)

        by_label: dict[Hashable, list[int]] = {}
        for i, label in enumerate(_as_list(labels)):
            try:
                by_label.setdefault(label, []).append(i)
            except TypeError as err:
                raise DataError(
                    f"label of item {i} is {label!r}, which is not hashable; use a string or "
                    "a number as label"
                ) from err
        usable = [items for items in by_label.values() if len(items) >= 2]
        self.excluded_labels: tuple[Hashable, ...] = tuple(
            label for label, items in by_label.items() if len(items) < 2
        )
        """Labels left out because they have a single item (no positive pair)."""
        self.n_excluded_items: int = sum(len(i) for i in by_label.values() if len(i) < 2)
        """Items left out with :attr:`excluded_labels`."""
        self.n_labels: int = len(usable)
        """Labels that take part in the batches."""
        if self.n_labels < 2:
            raise DataError(
                f"class-balanced batches need at least 2 labels with 2 or more items each; "
                f"found {self.n_labels} such label(s) among {len(by_label)} label(s) "
                f"({len(self.excluded_labels)} label(s) have a single item and were left "
                "out): add items to more labels, or train without labels "
                "(RandomBatchSampler with an in-batch-negative loss)"
            )
        labels_per_batch = batch_size // m
        if labels_per_batch > self.n_labels:
            raise ConfigError(
                _too_few_labels_message(batch_size, m, self.n_labels, len(self.excluded_labels))
            )

        # Items sorted by label; each epoch shuffles within labels and gathers groups of m
        # through one fixed index map, so an epoch costs a few numpy passes.
        counts = np.array([len(items) for items in usable], dtype=np.int64)
        self._items = np.array([i for items in usable for i in items], dtype=np.int64)
        self._codes = np.repeat(np.arange(self.n_labels), counts)
        self._n_candidates = len(self._items)
        padded = -(-counts // m) * m
        starts = np.cumsum(counts) - counts
        pos = np.arange(padded.sum()) - np.repeat(np.cumsum(padded) - padded, padded)
        # A partial group is completed by the label's first items in shuffled order: other
        # items picked at random (or, with fewer items than m, the same ones again).
        self._gather = np.repeat(starts, padded) + pos % np.repeat(counts, padded)
        self._group_labels = np.repeat(np.arange(self.n_labels), padded // m)
        self._require_batches("use a smaller batch_size or fewer processes")

    def _build(self, rng: np.random.Generator) -> list[list[int]]:
        m = self.samples_per_label
        perm = rng.permutation(len(self._items))
        by_label = perm[np.argsort(self._codes[perm], kind="stable")]
        groups = self._items[by_label][self._gather].reshape(-1, m)
        order = rng.permutation(len(groups))
        return _pack_distinct(
            groups[order].tolist(), self._group_labels[order].tolist(), self.batch_size // m
        )


def _check_batch_shape(batch_size: int, m: int) -> None:
    """Raise ``ConfigError`` unless ``batch_size`` is a multiple of ``m`` holding 2+ labels."""
    if batch_size % m:
        lower, upper = batch_size // m * m, (batch_size // m + 1) * m
        sizes = [s for s in (lower, upper) if s >= 2 * m] or [2 * m]
        per_label = [d for d in range(2, batch_size // 2 + 1) if batch_size % d == 0]
        fix = f"use batch_size {' or '.join(map(str, sizes))}"
        if per_label:
            fix += f", or samples_per_label one of {', '.join(map(str, per_label))}"
        raise ConfigError(
            f"batch_size={batch_size} is not a multiple of samples_per_label={m}: every label "
            f"in a batch has exactly {m} items; {fix}"
        )
    if batch_size < 2 * m:
        fix = f"use batch_size >= {2 * m}"
        if batch_size // 2 >= 2:
            fix += f" or samples_per_label <= {batch_size // 2}"
        raise ConfigError(
            f"batch_size={batch_size} with samples_per_label={m} holds a single label, so "
            f"a batch has no negatives; {fix}"
        )


def _too_few_labels_message(batch_size: int, m: int, n_labels: int, n_excluded: int) -> str:
    """Explain why a batch cannot hold ``batch_size // m`` distinct labels, and what works."""
    fix = f"use batch_size <= {n_labels * m}"
    larger_m = [d for d in range(m + 1, batch_size // 2 + 1) if batch_size % d == 0]
    larger_m = [d for d in larger_m if batch_size // d <= n_labels]
    if larger_m:
        fix += (
            f", or keep batch_size={batch_size} with samples_per_label={larger_m[0]} "
            f"({batch_size // larger_m[0]} labels per batch)"
        )
    excluded = f" ({n_excluded} single-item label(s) left out)" if n_excluded else ""
    return (
        f"batch_size={batch_size} with samples_per_label={m} needs {batch_size // m} distinct "
        f"labels in every batch, but only {n_labels} label(s) have 2 or more items{excluded}; "
        f"{fix}"
    )


def _pack_distinct(groups: list[list[int]], labels: list[int], k: int) -> list[list[int]]:
    """Pack groups into batches of ``k`` groups with distinct labels, keeping their order.

    A group whose label is already in the batch being filled waits in a per-label queue;
    each new batch starts with the waiting groups (oldest labels first). Groups that cannot
    fill a last complete batch are dropped.
    """
    batches: list[list[int]] = []
    waiting: dict[int, deque[list[int]]] = {}
    batch: list[int] = []
    in_batch: set[int] = set()

    def fill_from_waiting() -> bool:
        """Add waiting groups of labels not yet in the batch; return whether it is full."""
        taken = list(islice((lab for lab in waiting if lab not in in_batch), k - len(in_batch)))
        for lab in taken:
            queue = waiting.pop(lab)
            batch.extend(queue.popleft())
            in_batch.add(lab)
            if queue:  # goes to the back so other labels get their turn
                waiting[lab] = queue
        return len(in_batch) == k

    def emit() -> None:
        nonlocal batch
        batches.append(batch)
        batch = []
        in_batch.clear()

    for group, label in zip(groups, labels, strict=True):
        if label in in_batch:
            waiting.setdefault(label, deque()).append(group)
            continue
        batch.extend(group)
        in_batch.add(label)
        if len(in_batch) == k:
            emit()
            while fill_from_waiting():
                emit()
    while fill_from_waiting():
        emit()
    return batches


class NoDuplicatesBatchSampler(_EpochBatchSampler):
    """Shuffled batches in which no key occurs twice, for in-batch-negative losses.

    With (query, document) pairs, give each item its query and its document as keys: no two
    items of a batch then share a query or a document, so every other document in the batch
    is a true negative. Keys of all roles share one namespace (a query equal to another
    item's document also counts); prefix them, e.g. ``("q", text)``, to keep roles apart.

    Items are taken in shuffled order; an item goes into the earliest open batch after the
    last batch that holds one of its keys, so a clash only defers it. Each item appears at
    most once per epoch; items left in incomplete batches are dropped if ``drop_last``
    (:attr:`n_dropped_last_epoch` counts them).

    Args:
        keys: per item, one key or a tuple (or list) of keys; ``None`` keys are ignored.
            A tuple or list is always read as several keys.
        batch_size: items per batch.
        seed: seeds the order; with the epoch it fixes every batch.
        rank: this process's rank in distributed training.
        world_size: number of processes in distributed training.
        drop_last: drop incomplete batches; otherwise they are yielded, smaller.

    Raises:
        ConfigError: for a ``batch_size``, ``rank`` or ``world_size`` out of range.
        DataError: if a key is not hashable, or no full batch can be built.
    """

    def __init__(
        self,
        keys: Sequence[Sequence[Hashable]] | Sequence[Hashable] | np.ndarray,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, seed=seed, rank=rank, world_size=world_size)
        self.drop_last = drop_last
        ids: dict[Hashable, int] = {}
        item_keys: list[tuple[int, ...]] = []
        for i, value in enumerate(_as_list(keys)):
            own = value if isinstance(value, tuple | list) else (value,)
            try:
                item_keys.append(tuple(ids.setdefault(k, len(ids)) for k in own if k is not None))
            except TypeError as err:
                raise DataError(
                    f"keys of item {i} are {value!r}: a key must be hashable (a string, a "
                    "number, or a tuple of them)"
                ) from err
        self._item_keys = item_keys
        self._n_keys = len(ids)
        self._n_candidates = len(item_keys)
        self._require_batches(
            "use a smaller batch_size, fewer processes, or drop_last=False (if most items "
            "share one key, a batch cannot avoid repeating it)"
        )

    def _build(self, rng: np.random.Generator) -> list[list[int]]:
        size = self.batch_size
        item_keys = self._item_keys
        last = [-1] * self._n_keys  # per key, the latest batch holding it
        batches: list[list[int]] = []
        # next_open[b]: a batch >= b that is not full (union-find with path compression);
        # index len(batches) stands for a new, empty batch.
        next_open = [0]
        for item in rng.permutation(len(item_keys)).tolist():
            own = item_keys[item]
            start = 0
            for key in own:
                if last[key] >= start:
                    start = last[key] + 1
            b = start
            while next_open[b] != b:
                b = next_open[b]
            while next_open[start] != b:
                next_open[start], start = b, next_open[start]
            if b == len(batches):
                batches.append([])
                next_open.append(b + 1)
            batch = batches[b]
            batch.append(item)
            for key in own:
                last[key] = b
            if len(batch) == size:
                next_open[b] = b + 1
        if self.drop_last:
            return [batch for batch in batches if len(batch) == size]
        return batches


class RandomBatchSampler(_EpochBatchSampler):
    """Plain shuffled batches over ``n_items`` items, for unlabelled data.

    Args:
        n_items: number of dataset items.
        batch_size: items per batch.
        seed: seeds the order; with the epoch it fixes every batch.
        rank: this process's rank in distributed training.
        world_size: number of processes in distributed training.
        drop_last: drop the last, incomplete batch; otherwise it is yielded, smaller (unless
            the cut to equal counts per rank removes it).

    Raises:
        ConfigError: for an ``n_items``, ``batch_size``, ``rank`` or ``world_size`` out of
            range.
        DataError: if no rank would get a batch.
    """

    def __init__(
        self,
        n_items: int,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        super().__init__(batch_size, seed=seed, rank=rank, world_size=world_size)
        self.n_items = _check_int("n_items", n_items, 1)
        self.drop_last = drop_last
        self._n_candidates = n_items
        self._require_batches(
            f"the data has {n_items} item(s): use a smaller batch_size or fewer processes"
            + ("" if not drop_last else ", or drop_last=False")
        )

    def _build(self, rng: np.random.Generator) -> list[list[int]]:
        perm = rng.permutation(self.n_items)
        n_full = self.n_items // self.batch_size
        batches: list[list[int]] = (
            perm[: n_full * self.batch_size].reshape(n_full, self.batch_size).tolist()
        )
        if not self.drop_last and self.n_items % self.batch_size:
            batches.append(perm[n_full * self.batch_size :].tolist())
        return batches


class RankShardSampler(Sampler[list[int]]):
    """This process's shard of every global batch of ``sampler``, for data-parallel training.

    ``sampler`` is built as for one process (``world_size=1``) with the global batch size.
    Each of its batches is cut into ``world_size`` contiguous shards of equal size and this
    process yields shard ``rank``; concatenated in rank order, the shards are exactly the
    batch one process would train on. So the run does not depend on the number of
    processes, a loss over the gathered shards sees the global batch (a no-duplicates batch
    has no duplicates across processes either), and a run resumed with another number of
    processes continues the same batch sequence.

    The round-robin mode of the samplers themselves (``rank``/``world_size``: whole batches
    per process) gives each process different batches; this one gives it a part of each.

    Args:
        sampler: a sampler of this module with ``world_size=1`` and complete batches
            (``drop_last``).
        rank: this process, 0..world_size-1.
        world_size: processes sharing each batch.
        group_size: shards hold whole runs of this many consecutive items:
            ``samples_per_label`` for :class:`ClassBalancedBatchSampler`, whose batches list
            each label's items together, so that every shard is class-balanced.

    Raises:
        ConfigError: ``sampler`` is itself sharded or keeps incomplete batches, or its batch
            does not split into equal shards of whole groups.
    """

    def __init__(
        self, sampler: _EpochBatchSampler, rank: int, world_size: int, group_size: int = 1
    ) -> None:
        super().__init__()
        if sampler.world_size != 1:
            raise ConfigError("RankShardSampler shards a sampler built with world_size=1")
        if not getattr(sampler, "drop_last", True):
            raise ConfigError("RankShardSampler needs complete batches: use drop_last=True")
        self.world_size: int = _check_int("world_size", world_size, 1)
        if isinstance(rank, bool) or not isinstance(rank, Integral) or not 0 <= rank < world_size:
            raise ConfigError(f"rank must be an integer in 0..{world_size - 1}, got {rank!r}")
        self.rank: int = int(rank)
        self.sampler: _EpochBatchSampler = sampler
        self.shard_size: int = split_batch(sampler.batch_size, self.world_size, group_size)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (the same on every process)."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        """Batches per epoch: every process takes part in each global batch."""
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[int]]:
        return self.iter_from(0)

    def iter_from(self, start_batch: int) -> Iterator[list[int]]:
        """This process's shards of the epoch's batches, skipping the first ``start_batch``."""
        start, stop = self.rank * self.shard_size, (self.rank + 1) * self.shard_size
        return (batch[start:stop] for batch in self.sampler.iter_from(start_batch))
