"""Pooling layers: turn a backbone's token states or feature map into one vector.

Token pooling (text) takes hidden states ``(B, T, D)`` and an attention mask ``(B, T)``;
spatial pooling (images) takes a feature map ``(B, C, H, W)``.
"""

from __future__ import annotations

from enum import StrEnum

import torch
from torch import Tensor, nn

from searchtuner.errors import invalid_choice


class TokenPooling(StrEnum):
    """How token states become one vector."""

    MEAN = "mean"
    CLS = "cls"
    MAX = "max"


class SpatialPooling(StrEnum):
    """How a CNN feature map becomes one vector."""

    AVG = "avg"
    MAX = "max"
    GEM = "gem"


class MeanTokenPooling(nn.Module):
    """Average of the token states that the attention mask keeps (padding ignored)."""

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * weights).sum(dim=1)
        counts = weights.sum(dim=1).clamp(min=1e-9)
        return summed / counts


class ClsTokenPooling(nn.Module):
    """The first token's state ([CLS] for BERT-style encoders)."""

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        return hidden[:, 0]


class MaxTokenPooling(nn.Module):
    """Element-wise maximum over the unmasked tokens."""

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:
        keep = mask.unsqueeze(-1).bool()
        filled = hidden.masked_fill(~keep, torch.finfo(hidden.dtype).min)
        return filled.max(dim=1).values


class AvgSpatialPooling(nn.Module):
    """Global average pooling over height and width."""

    def forward(self, fmap: Tensor) -> Tensor:
        return fmap.mean(dim=(2, 3))


class MaxSpatialPooling(nn.Module):
    """Global max pooling over height and width."""

    def forward(self, fmap: Tensor) -> Tensor:
        return fmap.amax(dim=(2, 3))


class GeMPooling(nn.Module):
    """Generalised-mean pooling ``(mean(x^p))^(1/p)`` with a learnable exponent ``p``.

    ``p = 1`` is average pooling and ``p → ∞`` approaches max pooling; 3 is the usual start
    for image retrieval (Radenović et al.).
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, fmap: Tensor) -> Tensor:
        return fmap.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)


_TOKEN: dict[TokenPooling, type[nn.Module]] = {
    TokenPooling.MEAN: MeanTokenPooling,
    TokenPooling.CLS: ClsTokenPooling,
    TokenPooling.MAX: MaxTokenPooling,
}
_SPATIAL: dict[SpatialPooling, type[nn.Module]] = {
    SpatialPooling.AVG: AvgSpatialPooling,
    SpatialPooling.MAX: MaxSpatialPooling,
    SpatialPooling.GEM: GeMPooling,
}
# Spellings people use for the same thing.
_SPATIAL_ALIASES = {"average": "avg", "mean": "avg", "generalized_mean": "gem"}


def token_pooling(name: str | TokenPooling) -> tuple[TokenPooling, nn.Module]:
    """Resolve a token-pooling name into its enum value and a fresh layer."""
    try:
        mode = TokenPooling(name)
    except ValueError:
        raise invalid_choice(
            "pooling for text models", name, [m.value for m in TokenPooling]
        ) from None
    return mode, _TOKEN[mode]()


def spatial_pooling(name: str | SpatialPooling) -> tuple[SpatialPooling, nn.Module]:
    """Resolve a spatial-pooling name (or alias) into its enum value and a fresh layer."""
    raw = name.value if isinstance(name, SpatialPooling) else _SPATIAL_ALIASES.get(name, name)
    try:
        mode = SpatialPooling(raw)
    except ValueError:
        raise invalid_choice(
            "pooling for image models", name, [m.value for m in SpatialPooling]
        ) from None
    return mode, _SPATIAL[mode]()
