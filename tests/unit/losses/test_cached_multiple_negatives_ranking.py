"""CachedMultipleNegativesRankingLoss: GradCache gives the gradients of the full-batch loss."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from searchtuner.errors import ConfigError, DataError
from searchtuner.losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss

Batch = dict[str, Tensor]


class TinyEncoder(nn.Module):
    """Linear → tanh → dropout → linear, scaled by a per-row weight (a second batch tensor)."""

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.first = nn.Linear(6, 16)
        self.dropout = nn.Dropout(dropout)
        self.second = nn.Linear(16, 8)
        self.calls: list[tuple[bool, Tensor]] = []

    def forward(self, batch: Batch) -> Tensor:
        hidden = self.dropout(torch.tanh(self.first(batch["x"])))
        out = self.second(hidden) * batch["w"][:, None]
        self.calls.append((torch.is_grad_enabled(), out.detach().clone()))
        return out


def _batches(queries: int = 6, docs: int = 9) -> tuple[Batch, Batch]:
    return (
        {"x": torch.randn(queries, 6), "w": torch.rand(queries) + 0.5},
        {"x": torch.randn(docs, 6), "w": torch.rand(docs) + 0.5},
    )


def _grads(model: nn.Module) -> dict[str, Tensor]:
    grads = {}
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        grads[name] = param.grad.clone()
    return grads


def _chunks(batch: Batch, size: int) -> list[Batch]:
    total = len(batch["x"])
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, total, size)]


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradients_equal_the_full_batch_loss_without_dropout(symmetric: bool) -> None:
    query_batch, doc_batch = _batches()
    model = TinyEncoder(dropout=0.0)
    plain = MultipleNegativesRankingLoss(scale=20.0, symmetric=symmetric)
    expected_loss = plain(model(query_batch), model(doc_batch))
    expected_loss.backward()
    expected = _grads(model)
    model.zero_grad()

    cached = CachedMultipleNegativesRankingLoss(scale=20.0, mini_batch_size=2, symmetric=symmetric)
    loss = cached.step(model, query_batch, doc_batch)

    assert not loss.requires_grad
    torch.testing.assert_close(loss, expected_loss.detach(), atol=1e-5, rtol=1e-5)
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, expected[name], atol=1e-5, rtol=1e-5)


def test_with_dropout_the_replayed_embeddings_equal_the_cached_ones() -> None:
    query_batch, doc_batch = _batches()
    model = TinyEncoder(dropout=0.5).train()
    CachedMultipleNegativesRankingLoss(mini_batch_size=2).step(model, query_batch, doc_batch)

    without_grad = [out for grad, out in model.calls if not grad]
    with_grad = [out for grad, out in model.calls if grad]
    assert len(without_grad) == len(with_grad) == 3 + 5  # 6 queries and 9 documents by 2
    for cached, replayed in zip(without_grad, with_grad, strict=True):
        torch.testing.assert_close(replayed, cached, atol=0, rtol=0)


def test_with_dropout_gradients_equal_the_loss_on_the_same_dropout_masks() -> None:
    query_batch, doc_batch = _batches()
    model = TinyEncoder(dropout=0.5).train()

    torch.manual_seed(123)
    queries = torch.cat([model(chunk) for chunk in _chunks(query_batch, 2)])
    docs = torch.cat([model(chunk) for chunk in _chunks(doc_batch, 2)])
    MultipleNegativesRankingLoss()(queries, docs).backward()
    expected = _grads(model)
    model.zero_grad()

    torch.manual_seed(123)
    CachedMultipleNegativesRankingLoss(mini_batch_size=2).step(model, query_batch, doc_batch)
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, expected[name], atol=1e-5, rtol=1e-5)

    # Dropout really is active: another seed gives other gradients.
    model.zero_grad()
    torch.manual_seed(321)
    CachedMultipleNegativesRankingLoss(mini_batch_size=2).step(model, query_batch, doc_batch)
    assert not torch.allclose(_grads(model)["first.weight"], expected["first.weight"])


def test_forward_is_the_plain_loss() -> None:
    queries, docs = torch.randn(4, 5), torch.randn(6, 5)
    cached = CachedMultipleNegativesRankingLoss(scale=7.0, symmetric=True)
    plain = MultipleNegativesRankingLoss(scale=7.0, symmetric=True)
    torch.testing.assert_close(cached(queries, docs), plain(queries, docs))


def test_step_accumulates_into_existing_gradients() -> None:
    query_batch, doc_batch = _batches()
    model = TinyEncoder(dropout=0.0)
    loss = CachedMultipleNegativesRankingLoss(mini_batch_size=4)
    loss.step(model, query_batch, doc_batch)
    once = _grads(model)
    loss.step(model, query_batch, doc_batch)
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, 2 * once[name])


def test_batch_tensors_of_different_lengths() -> None:
    query_batch, doc_batch = _batches()
    query_batch["w"] = query_batch["w"][:-1]
    with pytest.raises(DataError, match="query batch"):
        CachedMultipleNegativesRankingLoss().step(TinyEncoder(0.0), query_batch, doc_batch)


@pytest.mark.parametrize("size", [0, -2, 1.5])
def test_mini_batch_size_must_be_a_positive_integer(size: float) -> None:
    with pytest.raises(ConfigError, match="mini_batch_size"):
        CachedMultipleNegativesRankingLoss(mini_batch_size=size)  # type: ignore[arg-type]
