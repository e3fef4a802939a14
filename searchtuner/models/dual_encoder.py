"""DualEncoder: a text tower and an image tower that embed into one shared space (CLIP-style)."""

from __future__ import annotations

from typing import Any

from torch import nn

from searchtuner.errors import ConfigError
from searchtuner.models.embedding_model import EmbeddingModel
from searchtuner.types import Modality


class DualEncoder(nn.Module):
    """Two embedding models whose outputs are compared with each other.

    Args:
        text: the text tower (an EmbeddingModel of modality text).
        image: the image tower (an EmbeddingModel of modality image).

    Build each tower with ``build_model(..., output_dim=D)`` so both end in the same ``D``.
    """

    def __init__(self, text: EmbeddingModel, image: EmbeddingModel) -> None:
        super().__init__()
        if text.modality is not Modality.TEXT or image.modality is not Modality.IMAGE:
            raise ConfigError(
                f"DualEncoder(text, image) needs a text model and an image model, got "
                f"{text.modality.value} and {image.modality.value}"
            )
        if text.embedding_dim != image.embedding_dim:
            raise ConfigError(
                f"the towers embed into different sizes ({text.embedding_dim} vs "
                f"{image.embedding_dim}); build both with the same output_dim"
            )
        self.text = text
        self.image = image

    @property
    def embedding_dim(self) -> int:
        return self.text.embedding_dim

    def tower(self, modality: Modality) -> EmbeddingModel:
        """The tower that embeds items of ``modality``."""
        return self.text if modality is Modality.TEXT else self.image

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - use the towers
        raise ConfigError("call dual_encoder.text(batch) or dual_encoder.image(batch)")
