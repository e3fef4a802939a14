"""MultipleNegativesRankingLoss against a loop over the formula."""

from __future__ import annotations

import math
from collections.abc import Collection

import pytest
import torch
from torch import Tensor

from searchtuner.errors import ConfigError, DataError
from searchtuner.losses import MultipleNegativesRankingLoss


def _cos(x: Tensor, y: Tensor) -> float:
    return float(x @ y / (x.norm() * y.norm()))


def _ranking_loss(
    queries: Tensor,
    docs: Tensor,
    scale: float,
    excluded: Collection[tuple[int, int]] = frozenset(),
) -> float:
    """Mean over i of -log softmax_j(scale * cos(q_i, d_j)) at j = i, skipping excluded j."""
    total = 0.0
    for i in range(len(queries)):
        logits = {
            j: scale * _cos(queries[i], docs[j]) for j in range(len(docs)) if (i, j) not in excluded
        }
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits.values()))
    return total / len(queries)


def test_matches_the_formula() -> None:
    queries, docs = torch.randn(5, 4), torch.randn(5, 4)
    loss = MultipleNegativesRankingLoss(scale=20.0)(queries, docs)
    assert float(loss) == pytest.approx(_ranking_loss(queries, docs, 20.0), rel=1e-5)


def test_hard_negatives_join_every_softmax() -> None:
    queries, docs = torch.randn(4, 6), torch.randn(7, 6)
    loss = MultipleNegativesRankingLoss(scale=10.0)(queries, docs)
    assert float(loss) == pytest.approx(_ranking_loss(queries, docs, 10.0), rel=1e-5)
    in_batch_only = MultipleNegativesRankingLoss(scale=10.0)(queries, docs[:4])
    assert float(loss) > float(in_batch_only)


def test_symmetric_averages_both_directions() -> None:
    queries, docs = torch.randn(5, 4), torch.randn(8, 4)
    loss = MultipleNegativesRankingLoss(scale=20.0, symmetric=True)(queries, docs)
    # The document→query direction ranks the queries for each of the first 5 documents.
    backward = _ranking_loss(docs[:5], queries, 20.0)
    expected = (_ranking_loss(queries, docs, 20.0) + backward) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_labels_drop_false_negatives() -> None:
    queries, docs = torch.randn(4, 3), torch.randn(6, 3)
    labels = torch.tensor([0, 1, 0, 2])
    loss = MultipleNegativesRankingLoss(scale=5.0)(queries, docs, labels)
    expected = _ranking_loss(queries, docs, 5.0, excluded={(0, 2), (2, 0)})
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_simcse_views_of_the_same_embedding_give_a_low_loss() -> None:
    x = torch.randn(8, 16)
    loss = MultipleNegativesRankingLoss()(x, x + 0.01 * torch.randn(8, 16))
    assert float(loss) < 0.1


def test_gradient_reaches_both_sides() -> None:
    queries = torch.randn(3, 4, requires_grad=True)
    docs = torch.randn(3, 4, requires_grad=True)
    MultipleNegativesRankingLoss()(queries, docs).backward()
    assert queries.grad is not None and queries.grad.abs().sum() > 0
    assert docs.grad is not None and docs.grad.abs().sum() > 0


def test_scale_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="scale"):
        MultipleNegativesRankingLoss(scale=-1.0)


@pytest.mark.parametrize(
    ("queries", "docs"),
    [((4, 3), (3, 3)), ((4, 3), (4, 2)), ((4,), (4, 3))],
)
def test_shapes_that_do_not_fit(queries: tuple[int, ...], docs: tuple[int, ...]) -> None:
    with pytest.raises(DataError):
        MultipleNegativesRankingLoss()(torch.randn(*queries), torch.randn(*docs))


def test_labels_of_the_wrong_length() -> None:
    with pytest.raises(DataError, match="labels must have shape"):
        MultipleNegativesRankingLoss()(torch.randn(4, 3), torch.randn(4, 3), torch.zeros(3))
