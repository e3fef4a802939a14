"""EmbeddingModel: backbone → pooling → optional projection → optional L2 normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from searchtuner.models.backbones.base import Backbone, FeatureKind
from searchtuner.models.freeze import keep_frozen_norms_in_eval
from searchtuner.models.preprocessing import Batch
from searchtuner.types import Modality


@dataclass
class ModelSpec:
    """Everything, beyond the weights, that rebuilds a model (JSON-serialisable)."""

    backbone: str
    modality: str
    pooling: str | None
    freeze: bool | int | list[str]
    output_dim: int | None
    normalize: bool
    embedding_dim: int
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EmbeddingModel(nn.Module):
    """A network that maps raw items to embedding vectors of a fixed size.

    Build one with :func:`searchtuner.build_model`. ``forward`` takes the batch its
    ``preprocess`` produced; :func:`searchtuner.encode` does both for raw data.
    """

    def __init__(
        self,
        backbone: Backbone,
        pooler: nn.Module | None,
        projection: nn.Module | None,
        normalize: bool,
        spec: ModelSpec,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooler = pooler if pooler is not None else nn.Identity()
        self.projection = projection if projection is not None else nn.Identity()
        self.normalize = normalize
        self.spec = spec

    @property
    def modality(self) -> Modality:
        return self.backbone.preprocessor.modality

    @property
    def embedding_dim(self) -> int:
        return self.spec.embedding_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def preprocess(self, items: Sequence[Any]) -> Batch:
        """Raw items (texts, images, arrays) → a batch of tensors on the CPU."""
        return self.backbone.preprocessor(items)

    def preprocess_items(self, items: Sequence[Any]) -> list[Any]:
        """The cacheable part of preprocessing (texts → token ids; other items as they are)."""
        return self.backbone.preprocessor.prepare(items)

    def forward(self, batch: Batch) -> Tensor:
        features = self.backbone(batch)
        kind = self.backbone.feature_kind
        if kind is FeatureKind.TOKENS:
            mask = batch.get("attention_mask")
            if mask is None:
                mask = features.new_ones(features.shape[:2])
            pooled = self.pooler(features, mask)
        elif kind is FeatureKind.SPATIAL:
            pooled = self.pooler(features)
        else:
            pooled = features.flatten(1)
        out: Tensor = self.projection(pooled)
        return F.normalize(out, p=2, dim=-1) if self.normalize else out

    def train(self, mode: bool = True) -> EmbeddingModel:
        super().train(mode)
        if mode:
            keep_frozen_norms_in_eval(self)
        return self

    def summary(self) -> ModelSummary:
        """Layers with output shapes and parameter counts, and which of them train."""
        return summarize(self)


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...] | None
    params: int
    trainable: int


@dataclass
class ModelSummary:
    """A table of the model's layers; ``str()`` prints it, ``to_dict()`` gives JSON."""

    backbone: str
    modality: str
    embedding_dim: int
    rows: list[LayerRow]
    total_params: int
    trainable_params: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        header = f"{'layer':<48} {'type':<22} {'output shape':<18} {'params':>10}  trains"
        lines = [
            f"EmbeddingModel(backbone={self.backbone!r}, modality={self.modality}, "
            f"embedding_dim={self.embedding_dim})",
            header,
            "-" * len(header),
        ]
        for row in self.rows:
            shape = "×".join(str(d) for d in row.output_shape) if row.output_shape else "-"
            trains = _trains(row)
            lines.append(f"{row.name:<48} {row.kind:<22} {shape:<18} {row.params:>10,}  {trains}")
        lines.append("-" * len(header))
        lines.append(
            f"parameters: {self.total_params:,} total, {self.trainable_params:,} trainable, "
            f"{self.total_params - self.trainable_params:,} frozen"
        )
        return "\n".join(lines)


def _trains(row: LayerRow) -> str:
    if row.params == 0:
        return "-"
    if row.trainable == row.params:
        return "yes"
    return "no" if row.trainable == 0 else "partly"


def summarize(model: EmbeddingModel) -> ModelSummary:
    """Run two example inputs through ``model`` and record each layer's output shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    order: list[str] = []
    listed = _listed_modules(model)
    handles = []
    for name, module in listed.items():

        def record(_: nn.Module, __: Any, output: Any, name: str = name) -> None:
            if isinstance(output, Tensor):
                shapes[name] = tuple(output.shape[1:])
            elif hasattr(output, "last_hidden_state"):
                shapes[name] = tuple(output.last_hidden_state.shape[1:])
            if name not in order:
                order.append(name)

        handles.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch = model.preprocess(model.backbone.preprocessor.example())
            model({k: v.to(model.device) for k, v in batch.items()})
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    names = order + [n for n in listed if n not in order]
    rows = []
    for name in names:
        module = listed[name]
        params = list(module.parameters(recurse=_is_leafish(module)))
        rows.append(
            LayerRow(
                name=name,
                kind=type(module).__name__,
                output_shape=shapes.get(name),
                params=sum(p.numel() for p in params),
                trainable=sum(p.numel() for p in params if p.requires_grad),
            )
        )
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelSummary(
        backbone=model.spec.backbone,
        modality=model.modality.value,
        embedding_dim=model.embedding_dim,
        rows=rows,
        total_params=total,
        trainable_params=trainable,
    )


def _is_leafish(module: nn.Module) -> bool:
    return not any(True for _ in module.children())


def _listed_modules(model: EmbeddingModel) -> dict[str, nn.Module]:
    """The backbone's blocks, their leaf layers, then pooling and projection."""
    listed: dict[str, nn.Module] = {}
    for name, module in model.backbone.named_modules():
        # Layers without weights (dropout, activations) would only lengthen the table.
        if name and _is_leafish(module) and any(True for _ in module.parameters()):
            listed[f"backbone.{name}"] = module
    listed["pooler"] = model.pooler
    listed["projection"] = model.projection
    return listed
