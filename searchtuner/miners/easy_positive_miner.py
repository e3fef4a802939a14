"""Easy-positive, semi-hard-negative mining (Xuan, Stylianou, Pless, WACV 2020)."""

from __future__ import annotations

from typing import Any

from pytorch_metric_learning.miners import BatchEasyHardMiner
from torch import Tensor


class EasyPositiveMiner(BatchEasyHardMiner):
    """One triplet per anchor: its easiest positive and a negative semi-hard to it.

    For anchor ``a`` (distances ``d``; for similarities read "closest" as "most similar"):

    * positive ``p`` = the closest other item with ``a``'s label;
    * negative ``n`` = the closest item with another label among those strictly farther
      from ``a`` than ``p`` (no margin bound);
    * anchors with no positive, or no negative farther than ``p``, give no triplet.

    Pulling each item only toward its nearest same-class neighbour lets classes keep
    several modes ("Improved Embeddings with Easy Positive Triplet Mining"). This is
    pytorch-metric-learning's ``BatchEasyHardMiner(pos_strategy="easy",
    neg_strategy="semihard")`` returning ``(anchor, positive, negative)`` triplets instead
    of its pair format.

    Args:
        allowed_pos_range: optional ``(low, high)`` range a positive's distance must lie in.
        allowed_neg_range: optional ``(low, high)`` range a negative's distance must lie in.
        **kwargs: passed to ``BaseMiner`` (``distance``, ``collect_stats``).
    """

    def __init__(
        self,
        allowed_pos_range: tuple[float, float] | None = None,
        allowed_neg_range: tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            pos_strategy=BatchEasyHardMiner.EASY,
            neg_strategy=BatchEasyHardMiner.SEMIHARD,
            allowed_pos_range=allowed_pos_range,
            allowed_neg_range=allowed_neg_range,
            **kwargs,
        )

    def mine(
        self, embeddings: Tensor, labels: Tensor, ref_emb: Tensor, ref_labels: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(anchor, positive, negative)`` index tensors, one triplet per anchor."""
        anchors, positives, _, negatives = super().mine(embeddings, labels, ref_emb, ref_labels)
        return anchors, positives, negatives
