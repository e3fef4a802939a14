"""Runtimes: what runs a loaded model on prepared items — PyTorch or ONNX Runtime.

Both cut the items into the same batches as :func:`searchtuner.encoding.encode_prepared`
(texts sorted by length, so that each batch pads little; other items in order), so that the
two differ only by the arithmetic of their kernels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from searchtuner.artifacts.onnx_export import OnnxEmbedder
from searchtuner.encoding import encode_prepared
from searchtuner.errors import ConfigError
from searchtuner.models.embedding_model import EmbeddingModel
from searchtuner.models.preprocessing import Preprocessor
from searchtuner.types import Modality


class Runtime(Protocol):
    """Embeds items already through ``preprocessor.prepare``."""

    preprocessor: Preprocessor
    embedding_dim: int

    def embed(self, prepared: Sequence[Any], batch_size: int) -> np.ndarray: ...


class TorchRuntime:
    """An :class:`EmbeddingModel` in eval mode; exactly what :func:`searchtuner.encode` runs.

    Args:
        model: the model, already on its device.
    """

    def __init__(self, model: EmbeddingModel) -> None:
        self.model = model.eval()
        self.preprocessor: Preprocessor = model.backbone.preprocessor
        self.embedding_dim = model.embedding_dim

    def embed(self, prepared: Sequence[Any], batch_size: int) -> np.ndarray:
        """``(N, D)`` float32 embeddings, in the order of ``prepared``."""
        return encode_prepared(self.model, prepared, batch_size=batch_size)


class OnnxRuntime:
    """A bundle's ``model.onnx`` in an ONNX Runtime session on the CPU.

    Args:
        embedder: the session, with the bundle's preprocessor.
        embedding_dim: the width of the embeddings (from the bundle's manifest).
    """

    def __init__(self, embedder: OnnxEmbedder, embedding_dim: int) -> None:
        if embedder.preprocessor is None:
            raise ConfigError(
                "an OnnxRuntime needs the bundle's preprocessing; open the model with "
                "OnnxEmbedder.from_bundle(folder)"
            )
        self.embedder = embedder
        self.preprocessor: Preprocessor = embedder.preprocessor
        self.embedding_dim = embedding_dim

    def embed(self, prepared: Sequence[Any], batch_size: int) -> np.ndarray:
        """``(N, D)`` float32 embeddings, in the order of ``prepared``."""
        out = np.empty((len(prepared), self.embedding_dim), dtype=np.float32)
        for chunk in batches(prepared, self.preprocessor.modality, batch_size):
            out[chunk] = self.embedder.run(self.preprocessor.collate([prepared[i] for i in chunk]))
        return out


def batches(prepared: Sequence[Any], modality: Modality, batch_size: int) -> Iterator[list[int]]:
    """The item indexes of each batch, as :func:`searchtuner.encoding.encode_prepared` cuts them."""
    order = (
        sorted(range(len(prepared)), key=lambda i: len(prepared[i]))
        if modality is Modality.TEXT
        else list(range(len(prepared)))
    )
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
