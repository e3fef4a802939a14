"""A multi-layer perceptron for tensor inputs (feature vectors)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from torch import Tensor, nn

from searchtuner.errors import ConfigError
from searchtuner.models.backbones.base import Backbone, FeatureKind
from searchtuner.models.preprocessing import Batch, TensorPreprocessor


class MLPBackbone(Backbone):
    """Linear → ReLU stages over flat feature vectors; the last hidden layer is the output.

    Args:
        input_dim: length of each input vector.
        hidden_dims: widths of the hidden layers, in order.
    """

    feature_kind = FeatureKind.VECTOR

    def __init__(self, input_dim: int, hidden_dims: Sequence[int] = (256, 128)) -> None:
        super().__init__()
        dims = [int(input_dim), *(int(d) for d in hidden_dims)]
        if len(dims) < 2 or any(d <= 0 for d in dims):
            raise ConfigError(
                f"mlp needs a positive input_dim and at least one positive hidden width, got "
                f"input_dim={input_dim}, hidden_dims={tuple(hidden_dims)}"
            )
        self.layers = nn.Sequential(
            *(nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in pairwise(dims))
        )
        self.input_dim = dims[0]
        self.hidden_dims = dims[1:]
        self.feature_dim = dims[-1]
        self.preprocessor = TensorPreprocessor((dims[0],))

    def forward(self, batch: Batch) -> Tensor:
        out: Tensor = self.layers(batch["features"])
        return out

    def blocks(self) -> list[tuple[str, nn.Module]]:
        return [(f"layers.{i}", layer) for i, layer in enumerate(self.layers)]

    def config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "hidden_dims": self.hidden_dims}
