"""Any ``nn.Module`` a user brings, cut at the layer whose output is the embedding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from searchtuner.errors import ConfigError, invalid_choice
from searchtuner.models.backbones.base import Backbone, FeatureKind
from searchtuner.models.preprocessing import Batch, ImagePreprocessor, TensorPreprocessor
from searchtuner.types import Modality


class _ReachedLayer(Exception):
    """Raised by the cut layer's hook so that nothing after it runs."""

    def __init__(self, output: Tensor) -> None:
        super().__init__()
        self.output = output


class ModuleBackbone(Backbone):
    """Wraps a user's module and returns the output of one named layer.

    The module is traced once on a dummy input: the layers that run after the cut (the
    classification head) are replaced by ``nn.Identity``, so their weights are gone, and the
    forward pass stops at the cut layer.

    Args:
        module: the network; it is called with one tensor.
        layer: the name (as in ``module.named_modules()``) of the embedding layer.
        input_shape: shape of one input without the batch dimension, e.g. ``(3, 224, 224)``.
        modality: ``"tensor"`` (inputs are arrays) or ``"image"`` (inputs are images decoded
            and resized to ``input_shape``'s height and width, ImageNet-normalised).
    """

    def __init__(
        self,
        module: nn.Module,
        layer: str,
        input_shape: Sequence[int],
        modality: Modality = Modality.TENSOR,
    ) -> None:
        super().__init__()
        names = [name for name, _ in module.named_modules() if name]
        if layer not in names:
            raise invalid_choice(f"layer of {type(module).__name__}", layer, names)
        self.module = module
        self.layer = layer
        if modality == Modality.IMAGE:
            if len(input_shape) != 3 or input_shape[0] != 3 or input_shape[1] != input_shape[2]:
                raise ConfigError(
                    f"an image model needs input_shape=(3, S, S), got {tuple(input_shape)}"
                )
            self.preprocessor = ImagePreprocessor(int(input_shape[1]))
            self._input_key = "pixel_values"
        elif modality == Modality.TENSOR:
            self.preprocessor = TensorPreprocessor(input_shape)
            self._input_key = "features"
        else:
            raise invalid_choice("modality for a custom module", modality, ["tensor", "image"])
        self.module.get_submodule(layer).register_forward_hook(self._stop_here)
        sample = self.preprocessor(self.preprocessor.example())
        used, output = self._trace(sample)
        self._drop_unused(used)
        self.feature_kind, self.feature_dim = _describe(output, layer)
        self._used = used

    @staticmethod
    def _stop_here(module: nn.Module, inputs: object, output: Tensor) -> None:
        if not isinstance(output, Tensor):
            raise ConfigError(
                f"the layer's output is a {type(output).__name__}, not a tensor; pick a layer "
                "that outputs one tensor"
            )
        raise _ReachedLayer(output)

    def _trace(self, sample: Batch) -> tuple[list[str], Tensor]:
        used: list[str] = []
        handles = [
            sub.register_forward_pre_hook(lambda *_, name=name: used.append(name))
            for name, sub in self.module.named_modules()
            if name
        ]
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad():
                output = self._run(sample)
        finally:
            for handle in handles:
                handle.remove()
            self.module.train(was_training)
        return used, output

    def _run(self, batch: Batch) -> Tensor:
        try:
            self.module(batch[self._input_key])
        except _ReachedLayer as reached:
            return reached.output
        raise ConfigError(
            f"layer {self.layer!r} never ran in {type(self.module).__name__}.forward; pick a "
            "layer that the forward pass uses"
        )

    def _drop_unused(self, used: list[str]) -> None:
        ran = set(used)
        dropped: list[str] = []
        for name, _ in list(self.module.named_modules()):
            if not name or name in ran or any(u.startswith(name + ".") for u in ran):
                continue
            if any(name.startswith(d + ".") for d in dropped):
                continue  # its parent is gone already
            dropped.append(name)
            parent_name, _, child = name.rpartition(".")
            parent = self.module.get_submodule(parent_name) if parent_name else self.module
            if isinstance(getattr(parent, child, None), nn.Module):
                setattr(parent, child, nn.Identity())

    def forward(self, batch: Batch) -> Tensor:
        return self._run(batch)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        order: list[str] = []
        for name in self._used:
            top = name.split(".")[0]
            if top not in order:
                order.append(top)
        return [(f"module.{name}", self.module.get_submodule(name)) for name in order]


def _describe(output: Tensor, layer: str) -> tuple[FeatureKind, int]:
    if output.dim() == 2:
        return FeatureKind.VECTOR, int(output.shape[1])
    if output.dim() == 3:
        return FeatureKind.TOKENS, int(output.shape[2])
    if output.dim() == 4:
        return FeatureKind.SPATIAL, int(output.shape[1])
    raise ConfigError(
        f"layer {layer!r} outputs shape {tuple(output.shape)}; an embedding layer must output "
        "(B, D), (B, T, D) or (B, C, H, W)"
    )
