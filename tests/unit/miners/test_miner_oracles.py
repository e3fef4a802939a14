"""Oracle tests: each named miner against a brute-force loop over every (a, p, n) triplet."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from searchtuner.losses import make_distance
from searchtuner.miners import make_miner

MARGIN = 0.2
DISTANCES = ["cosine", "euclidean"]


@pytest.fixture
def batch() -> tuple[Tensor, Tensor]:
    """24 random embeddings, 4 labels of 6 items each, in shuffled order."""
    embeddings = torch.randn(24, 8)
    labels = torch.arange(4).repeat(6)[torch.randperm(24)]
    return embeddings, labels


def _matrix(distance: str, embeddings: Tensor) -> tuple[list[list[float]], bool]:
    """The miner's own distance matrix as Python floats, and whether it is a similarity."""
    dist = make_distance(distance)
    return dist(embeddings).tolist(), bool(dist.is_inverted)


def _closer(similarity: bool):  # type: ignore[no-untyped-def]
    """``closer(x, y)``: x is a smaller distance / larger similarity than y."""
    return (lambda x, y: x > y) if similarity else (lambda x, y: x < y)


def _gap(mat: list[list[float]], similarity: bool, a: int, p: int, n: int) -> float:
    """How much farther the negative is than the positive (the triplet's margin)."""
    return mat[a][p] - mat[a][n] if similarity else mat[a][n] - mat[a][p]


def _triplets(labels: list[int]) -> list[tuple[int, int, int]]:
    size = len(labels)
    return [
        (a, p, n)
        for a in range(size)
        for p in range(size)
        for n in range(size)
        if p != a and labels[p] == labels[a] and labels[n] != labels[a]
    ]


def _mine(name: str, distance: str, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, ...]:
    miner = make_miner(name, distance=distance)
    assert miner is not None
    return tuple(miner(embeddings, labels))


def _as_set(indices: tuple[Tensor, ...]) -> set[tuple[int, int, int]]:
    assert len(indices) == 3
    return set(zip(*(t.tolist() for t in indices), strict=True))


def _per_anchor(indices: tuple[Tensor, ...]) -> dict[int, tuple[int, int]]:
    anchors, positives, negatives = (t.tolist() for t in indices)
    assert len(set(anchors)) == len(anchors), "one triplet per anchor"
    return {a: (p, n) for a, p, n in zip(anchors, positives, negatives, strict=True)}


def _assert_no_ties(mat: list[list[float]]) -> None:
    values = [v for i, row in enumerate(mat) for j, v in enumerate(row) if i < j]
    assert len(set(values)) == len(values)


@pytest.mark.parametrize("distance", DISTANCES)
def test_all_returns_every_margin_violating_triplet(
    batch: tuple[Tensor, Tensor], distance: str
) -> None:
    embeddings, labels = batch
    mat, similarity = _matrix(distance, embeddings)
    expected = {t for t in _triplets(labels.tolist()) if _gap(mat, similarity, *t) <= MARGIN}
    mined = _as_set(_mine("all", distance, embeddings, labels))
    assert expected  # the case is not vacuous
    assert mined == expected


@pytest.mark.parametrize("distance", DISTANCES)
def test_semihard_returns_negatives_beyond_the_positive_within_the_margin(
    batch: tuple[Tensor, Tensor], distance: str
) -> None:
    embeddings, labels = batch
    mat, similarity = _matrix(distance, embeddings)
    expected = {t for t in _triplets(labels.tolist()) if 0 < _gap(mat, similarity, *t) <= MARGIN}
    mined = _as_set(_mine("semihard", distance, embeddings, labels))
    assert expected
    assert mined == expected


@pytest.mark.parametrize("distance", DISTANCES)
def test_hard_picks_the_farthest_positive_and_closest_negative(
    batch: tuple[Tensor, Tensor], distance: str
) -> None:
    embeddings, labels = batch
    mat, similarity = _matrix(distance, embeddings)
    _assert_no_ties(mat)
    closer = _closer(similarity)
    y = labels.tolist()
    expected = {}
    for a in range(len(y)):
        hardest_p = hardest_n = None
        for i in range(len(y)):
            if i != a and y[i] == y[a]:
                if hardest_p is None or closer(mat[a][hardest_p], mat[a][i]):
                    hardest_p = i
            elif y[i] != y[a] and (hardest_n is None or closer(mat[a][i], mat[a][hardest_n])):
                hardest_n = i
        if hardest_p is not None and hardest_n is not None:
            expected[a] = (hardest_p, hardest_n)
    mined = _per_anchor(_mine("hard", distance, embeddings, labels))
    assert len(expected) == len(y)
    assert mined == expected


@pytest.mark.parametrize("distance", DISTANCES)
def test_easy_positive_picks_closest_positive_and_semihard_negative(
    batch: tuple[Tensor, Tensor], distance: str
) -> None:
    embeddings, labels = batch
    mat, similarity = _matrix(distance, embeddings)
    _assert_no_ties(mat)
    closer = _closer(similarity)
    y = labels.tolist()
    expected = {}
    for a in range(len(y)):
        easy_p = None
        for p in range(len(y)):
            if p != a and y[p] == y[a] and (easy_p is None or closer(mat[a][p], mat[a][easy_p])):
                easy_p = p
        if easy_p is None:
            continue
        semihard_n = None
        for n in range(len(y)):
            farther = closer(mat[a][easy_p], mat[a][n])
            is_best = semihard_n is None or closer(mat[a][n], mat[a][semihard_n])
            if y[n] != y[a] and farther and is_best:
                semihard_n = n
        if semihard_n is not None:
            expected[a] = (easy_p, semihard_n)
    mined = _per_anchor(_mine("easy-positive", distance, embeddings, labels))
    assert len(expected) > len(y) // 2
    assert mined == expected


@pytest.mark.parametrize("distance", DISTANCES)
def test_oracle_matrix_matches_an_independent_formula(
    batch: tuple[Tensor, Tensor], distance: str
) -> None:
    embeddings, _ = batch
    mat, _ = _matrix(distance, embeddings)
    unit = embeddings / embeddings.norm(dim=1, keepdim=True)
    a, b = unit[3].tolist(), unit[17].tolist()
    if distance == "cosine":
        expected = sum(x * y for x, y in zip(a, b, strict=True))
    else:
        expected = sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5
    assert mat[3][17] == pytest.approx(expected, abs=1e-5)
