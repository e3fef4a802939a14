"""Multiple negatives ranking loss (InfoNCE with in-batch and hard negatives)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from searchtuner.errors import ConfigError, DataError


class MultipleNegativesRankingLoss(nn.Module):
    """Cross-entropy over scaled cosine similarities; query ``i`` must pick document ``i``.

    Every other document in the batch is a negative for query ``i``. Rows of ``documents``
    beyond the ``B`` queries are extra (hard) negatives shared by all queries. With
    ``symmetric=True`` the document→query direction over the first ``B`` documents is added
    and the two directions are averaged. Also serves SimCSE: pass two dropout views of the
    same texts as queries and documents.

    Args:
        scale: multiplier of the cosine similarities before the softmax (inverse temperature).
        symmetric: also rank the queries for each of the first ``B`` documents.

    Raises:
        ConfigError: if ``scale`` is not positive.
    """

    def __init__(self, scale: float = 20.0, symmetric: bool = False) -> None:
        super().__init__()
        if not scale > 0:
            raise ConfigError(f"scale must be a positive number, got {scale!r}")
        self.scale = float(scale)
        self.symmetric = bool(symmetric)

    def forward(self, queries: Tensor, documents: Tensor, labels: Tensor | None = None) -> Tensor:
        """Mean loss over the batch.

        Args:
            queries: ``(B, D)`` query embeddings.
            documents: ``(B + H, D)`` embeddings; row ``i < B`` is the positive of query ``i``,
                rows ``B..B+H`` are hard negatives.
            labels: optional ``(B,)`` or ``(B + H,)`` class labels of the documents (query ``i``
                has label ``labels[i]``). A document other than the target that shares the
                query's label is a false negative and is left out of that query's softmax.

        Returns:
            A scalar tensor.

        Raises:
            DataError: if the shapes do not fit together.
        """
        scores = self.similarity_logits(queries, documents)
        num_queries = queries.shape[0]
        target = torch.arange(num_queries, device=scores.device)
        if labels is not None:
            scores = scores.masked_fill(_false_negatives(labels, num_queries, scores), -torch.inf)
        loss = F.cross_entropy(scores, target)
        if self.symmetric:
            loss = (loss + F.cross_entropy(scores[:, :num_queries].T, target)) / 2
        return loss

    def similarity_logits(self, queries: Tensor, documents: Tensor) -> Tensor:
        """The ``(B, B + H)`` matrix of scaled cosine similarities, after checking shapes."""
        if queries.ndim != 2 or documents.ndim != 2:
            raise DataError(
                f"queries and documents must be 2-D (batch, dim) tensors, got shapes "
                f"{tuple(queries.shape)} and {tuple(documents.shape)}"
            )
        if documents.shape[0] < queries.shape[0] or documents.shape[1] != queries.shape[1]:
            raise DataError(
                f"documents {tuple(documents.shape)} must have at least as many rows as "
                f"queries {tuple(queries.shape)} (one positive per query, then hard "
                "negatives) and the same embedding size"
            )
        return F.normalize(queries, dim=-1) @ F.normalize(documents, dim=-1).T * self.scale


def _false_negatives(labels: Tensor, num_queries: int, scores: Tensor) -> Tensor:
    """Mask of documents that share the query's label but are not its target."""
    num_docs = scores.shape[1]
    if labels.ndim != 1 or labels.shape[0] not in (num_queries, num_docs):
        raise DataError(
            f"labels must have shape ({num_queries},) or ({num_docs},), got {tuple(labels.shape)}"
        )
    labels = labels.to(scores.device)
    same = labels[:num_queries, None] == labels[None, :]
    if labels.shape[0] < num_docs:
        # Hard negatives without a label are never treated as false negatives.
        pad = same.new_zeros(num_queries, num_docs - labels.shape[0])
        same = torch.cat([same, pad], dim=1)
    return same & ~torch.eye(num_queries, num_docs, dtype=torch.bool, device=scores.device)
