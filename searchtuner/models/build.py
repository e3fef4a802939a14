"""build_model: a backbone name, folder or module → an EmbeddingModel."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from searchtuner.device import resolve_device
from searchtuner.errors import ConfigError, invalid_choice
from searchtuner.models.backbones.base import Backbone, FeatureKind
from searchtuner.models.embedding_model import EmbeddingModel, ModelSpec
from searchtuner.models.freeze import FreezeSpec, apply_freeze
from searchtuner.models.pooling import spatial_pooling, token_pooling
from searchtuner.models.registry import REGISTRY
from searchtuner.types import Modality

# Options that only some backbone families take: option → families that accept it.
_FAMILY_OPTIONS = {
    "max_length": {"text"},
    "image_size": {"image"},
    "input_dim": {"mlp"},
    "hidden_dims": {"mlp"},
    "layer": {"custom"},
    "input_shape": {"custom"},
    "modality": {"custom"},
}


def build_model(
    backbone: str | Path | nn.Module,
    *,
    pooling: str | None = None,
    freeze: FreezeSpec = False,
    output_dim: int | None = None,
    normalize: bool = True,
    device: str | torch.device | None = None,
    pretrained: bool = True,
    max_length: int | None = None,
    image_size: int | None = None,
    input_dim: int | None = None,
    hidden_dims: Sequence[int] | None = None,
    layer: str | None = None,
    input_shape: Sequence[int] | None = None,
    modality: str | None = None,
) -> EmbeddingModel:
    """Turn a pretrained backbone into an embedding model.

    Args:
        backbone: a registered name (see :func:`list_models`), a local Hugging Face
            transformers folder, or an ``nn.Module`` (then ``layer`` and ``input_shape``).
        pooling: text: ``mean`` (default), ``cls``, ``max``; images: ``avg`` (default),
            ``max``, ``gem``. Vector outputs take none.
        freeze: ``False``; ``True`` (the whole backbone); an int N (its first N blocks); or
            a list of parameter-name patterns.
        output_dim: add a linear projection head with this many outputs.
        normalize: L2-normalise the embeddings.
        device: where the model lives; ``None`` is the CPU (never chosen behind your back).
        pretrained: load pretrained weights; ``False`` initialises randomly (for tests).
        max_length: text models: truncate to this many tokens.
        image_size: image models: the side of the square input images.
        input_dim: ``mlp``: the length of each input vector.
        hidden_dims: ``mlp``: hidden layer widths.
        layer: custom modules: the name of the layer whose output is the embedding.
        input_shape: custom modules: the shape of one input, without the batch dimension.
        modality: custom modules: ``tensor`` (default) or ``image``.

    Returns:
        The embedding model, in eval mode, on ``device``.

    Raises:
        ConfigError: an unknown name, a missing layer, or options that do not fit the
            backbone; the message lists what is allowed.
    """
    given = {
        "max_length": max_length, "image_size": image_size, "input_dim": input_dim,
        "hidden_dims": hidden_dims, "layer": layer, "input_shape": input_shape,
        "modality": modality,
    }  # fmt: skip
    name, _family, net = _make_backbone(backbone, pretrained=pretrained, **given)
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in given.items() if v}
    options.update(net.config())

    pooler: nn.Module | None
    if net.feature_kind is FeatureKind.TOKENS:
        mode, pooler = token_pooling(pooling or "mean")
        pooling_name: str | None = mode.value
    elif net.feature_kind is FeatureKind.SPATIAL:
        spatial_mode, pooler = spatial_pooling(pooling or "avg")
        pooling_name = spatial_mode.value
    else:
        if pooling is not None:
            raise ConfigError(
                f"{name} outputs one vector per item, so it takes no pooling; leave pooling unset"
            )
        pooler, pooling_name = None, None

    projection: nn.Module | None = None
    embedding_dim = net.feature_dim
    if output_dim is not None:
        if isinstance(output_dim, bool) or not isinstance(output_dim, int) or output_dim <= 0:
            raise ConfigError(f"output_dim must be a positive integer, got {output_dim!r}")
        projection = nn.Linear(net.feature_dim, output_dim)
        embedding_dim = output_dim

    spec = ModelSpec(
        backbone=name,
        modality=net.preprocessor.modality.value,
        pooling=pooling_name,
        freeze=freeze if isinstance(freeze, bool | int) else [str(p) for p in freeze],
        output_dim=output_dim,
        normalize=bool(normalize),
        embedding_dim=embedding_dim,
        options=options,
    )
    model = EmbeddingModel(net, pooler, projection, bool(normalize), spec)
    apply_freeze(model, net, freeze)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(
            f"freeze={freeze!r} leaves nothing to train in {name}; add a projection head "
            "(output_dim=...) or freeze fewer layers"
        )
    return model.to(resolve_device(device)).eval()


def _make_backbone(
    backbone: str | Path | nn.Module, *, pretrained: bool, **given: Any
) -> tuple[str, str, Backbone]:
    if isinstance(backbone, nn.Module):
        _reject_foreign_options("custom", backbone.__class__.__name__, given)
        if not given["layer"] or not given["input_shape"]:
            raise ConfigError(
                "a custom nn.Module needs layer= (the name of the embedding layer, as in "
                "module.named_modules()) and input_shape= (one input's shape, e.g. (3, 224, 224))"
            )
        from searchtuner.models.backbones.custom import ModuleBackbone

        modality = given["modality"] or "tensor"
        if modality not in ("tensor", "image"):
            raise invalid_choice("modality for a custom module", modality, ["tensor", "image"])
        kind = Modality(modality)
        net = ModuleBackbone(backbone, given["layer"], given["input_shape"], kind)
        return f"custom:{type(backbone).__name__}", "custom", net

    info = _lookup(str(backbone))
    if info is not None:
        family = "mlp" if info.name == "mlp" else info.modality.value
        _reject_foreign_options(family, info.name, given)
        kwargs = {k: v for k, v in given.items() if v is not None}
        if family != "mlp":
            kwargs["pretrained"] = pretrained
        if "hidden_dims" in kwargs:
            kwargs["hidden_dims"] = tuple(kwargs["hidden_dims"])
        return info.name, family, info.factory(**kwargs)

    folder = Path(backbone)
    if folder.is_dir():
        _reject_foreign_options("text", str(folder), given)
        from searchtuner.models.backbones.text import TransformerBackbone

        return (
            str(folder),
            "text",
            TransformerBackbone(folder, pretrained=pretrained, max_length=given["max_length"]),
        )
    raise invalid_choice(
        "backbone", backbone, [*REGISTRY, "<a local Hugging Face model folder>", "<an nn.Module>"]
    )


def _lookup(name: str) -> Any:
    """Registered names match case-insensitively, with or without an organisation prefix."""
    wanted = name.rsplit("/", 1)[-1].lower()
    for key, info in REGISTRY.items():
        if key.lower() == wanted:
            return info
    return None


def _reject_foreign_options(family: str, name: str, given: dict[str, Any]) -> None:
    for option, value in given.items():
        if value is not None and family not in _FAMILY_OPTIONS[option]:
            fits = ", ".join(sorted(o for o, fams in _FAMILY_OPTIONS.items() if family in fams))
            raise ConfigError(
                f"{option} does not apply to {name} ({family} backbone); options it takes: "
                f"{fits or 'none beyond pooling, freeze, output_dim, normalize, pretrained'}"
            )
