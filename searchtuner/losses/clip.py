"""CLIP's symmetric contrastive loss with a learnable temperature (Radford et al., 2021)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from searchtuner.errors import ConfigError, DataError


class CLIPLoss(nn.Module):
    """Symmetric cross-entropy over scaled cosine similarities of paired text and images.

    Text ``i`` must pick image ``i`` among the batch's images and image ``i`` must pick
    text ``i``; the two cross-entropies are averaged. The scale (inverse temperature) is
    ``exp(log_scale)``, learned when ``learnable``; as in CLIP it is capped at ``max_scale``
    (the cap is applied in ``forward``, so the scale gets no gradient while above it).

    Args:
        init_temperature: initial temperature; the initial scale is its inverse.
        learnable: whether the log-scale is an ``nn.Parameter`` (else a fixed buffer).
        max_scale: the largest scale used.

    Raises:
        ConfigError: if ``init_temperature`` or ``max_scale`` is not positive.
    """

    def __init__(
        self, init_temperature: float = 0.07, learnable: bool = True, max_scale: float = 100.0
    ) -> None:
        super().__init__()
        if not init_temperature > 0:
            raise ConfigError(f"init_temperature must be positive, got {init_temperature!r}")
        if not max_scale > 0:
            raise ConfigError(f"max_scale must be positive, got {max_scale!r}")
        self.max_scale = float(max_scale)
        self.learnable = bool(learnable)
        log_scale = torch.tensor(math.log(1.0 / init_temperature))
        if self.learnable:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def scale(self) -> Tensor:
        """The scale in use: ``exp(log_scale)`` capped at ``max_scale``."""
        return self.log_scale.clamp(max=math.log(self.max_scale)).exp()

    def forward(self, text_emb: Tensor, image_emb: Tensor) -> Tensor:
        """Mean of the text→image and image→text cross-entropies.

        Args:
            text_emb: ``(B, D)`` text embeddings.
            image_emb: ``(B, D)`` image embeddings; row ``i`` pairs with text ``i``.

        Returns:
            A scalar tensor.

        Raises:
            DataError: if the two are not 2-D tensors of the same shape.
        """
        if text_emb.ndim != 2 or text_emb.shape != image_emb.shape:
            raise DataError(
                "text and image embeddings must be 2-D tensors of the same shape (batch, dim), "
                f"got {tuple(text_emb.shape)} and {tuple(image_emb.shape)}"
            )
        logits = F.normalize(text_emb, dim=-1) @ F.normalize(image_emb, dim=-1).T * self.scale
        target = torch.arange(logits.shape[0], device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
