"""What every backbone offers the embedding model: features without a head, and blocks."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from torch import Tensor, nn

from searchtuner.models.preprocessing import Batch, Preprocessor


class FeatureKind(StrEnum):
    """The shape of a backbone's output, which decides the pooling that fits it."""

    TOKENS = "tokens"  # (B, T, D) with batch["attention_mask"] (B, T)
    SPATIAL = "spatial"  # (B, C, H, W)
    VECTOR = "vector"  # (B, D)


class Backbone(nn.Module):
    """A pretrained network with its task head removed.

    Subclasses set ``feature_kind``, ``feature_dim`` and ``preprocessor`` and implement
    ``forward`` and ``blocks``.
    """

    feature_kind: FeatureKind
    feature_dim: int
    preprocessor: Preprocessor

    def forward(self, batch: Batch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def blocks(self) -> list[tuple[str, nn.Module]]:
        """The backbone's stages from input to output; ``freeze=N`` freezes the first N."""
        raise NotImplementedError  # pragma: no cover - abstract

    def config(self) -> dict[str, Any]:
        """What, beyond the weights, rebuilds this backbone (JSON-serialisable)."""
        return {}
