"""Model checkpoints: one safetensors file that holds a whole EmbeddingModel, for publishing.

A checkpoint is the model's full state dict in safetensors, with string metadata::

    format   "searchtuner-checkpoint/1"
    spec     JSON of ``model.spec.to_dict()``: what rebuilds the architecture
    info     JSON of what the caller knows (run id, metrics before/after, training
             parameters, data statistics); the publisher turns it into the model card

Loading rebuilds the model with ``build_model(spec.backbone, pretrained=False, ...)`` and
loads the weights with ``strict=True``; nothing is unpickled. Registered backbones rebuild
offline; a text model whose backbone was a local Hugging Face folder needs that folder (its
``config.json`` and tokenizer) where it was when the checkpoint was written.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from searchtuner.artifacts.bundle import load_state_checked
from searchtuner.artifacts.errors import CheckpointError
from searchtuner.artifacts.model_card import json_plain as _plain
from searchtuner.device import resolve_device
from searchtuner.errors import ConfigError
from searchtuner.models.build import build_model
from searchtuner.models.embedding_model import EmbeddingModel, ModelSpec
from searchtuner.models.registry import REGISTRY

if TYPE_CHECKING:
    from searchtuner.store.base import ObjectInfo, Store

CHECKPOINT_FORMAT = "searchtuner-checkpoint/1"
"""The ``format`` metadata of the checkpoints this version writes and reads."""
_FIXED = frozenset(
    {"backbone", "pooling", "freeze", "output_dim", "normalize", "device", "pretrained"}
)
BUILD_OPTIONS = frozenset(inspect.signature(build_model).parameters) - _FIXED
"""The ``spec.options`` that ``build_model`` takes as keyword arguments."""
_SEQUENCE_OPTIONS = ("hidden_dims", "input_shape")


def save_model_checkpoint(
    model: EmbeddingModel, store: Store, key: str, *, info: Mapping[str, Any] | None = None
) -> ObjectInfo:
    """Write a model's full state dict, spec and info into one safetensors object.

    Args:
        model: the model (its device and train/eval mode are left as they are).
        store: where the checkpoint goes (any backend, a namespace or an owner's view).
        key: the object key, e.g. ``"runs/r1/best.safetensors"``.
        info: JSON-serialisable facts for the model card, e.g. ``run_id``,
            ``metrics_before``, ``metrics_after``, ``training_parameters``,
            ``data_statistics`` (see :class:`~searchtuner.artifacts.ModelCardInfo`); numpy and
            torch scalars become numbers.

    Returns:
        The stored object's info (key, size, sha256).

    Raises:
        ConfigError: a custom ``nn.Module`` backbone (it cannot be rebuilt without its
            code), or ``info`` that is not a dict of JSON values.
        StoreError: the store cannot be written.
    """
    if model.spec.backbone.startswith("custom:"):
        raise ConfigError(
            f"cannot checkpoint a model with a custom nn.Module backbone ({model.spec.backbone}) "
            "for publishing: rebuilding it needs your module's Python code. Save "
            "model.state_dict() with safetensors beside your code, or use a registered backbone "
            "(searchtuner.list_models()) or a Hugging Face model folder"
        )
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "spec": json.dumps(model.spec.to_dict(), sort_keys=True),
        "info": _info_json(info),
    }
    # Copies on the CPU: safetensors refuses tensors that share memory (tied weights).
    tensors = {
        name: value.detach().to("cpu", copy=True).contiguous()
        for name, value in model.state_dict().items()
    }
    with tempfile.TemporaryDirectory(prefix="searchtuner-checkpoint-") as scratch:
        path = Path(scratch) / "checkpoint.safetensors"
        save_file(tensors, path, metadata=metadata)
        return store.put_file(key, path)


def load_model_checkpoint(
    store: Store,
    key: str,
    *,
    device: str | torch.device | None = None,
    registered_only: bool = False,
) -> tuple[EmbeddingModel, dict[str, Any]]:
    """Rebuild a model from a checkpoint written by :func:`save_model_checkpoint`.

    Args:
        store: the store that holds it.
        key: the checkpoint's key.
        device: where the model goes (default: the CPU).
        registered_only: refuse a checkpoint whose backbone is not a registered name
            (a local model folder): a service that publishes checkpoints a request names
            must never read folders of its own file system that a spec points at.

    Returns:
        The model, in eval mode, and the info dict saved with it.

    Raises:
        NotFound: no object under ``key``.
        IntegrityError: the stored bytes do not match their recorded digest.
        CheckpointError: the object is not a SearchTuner checkpoint of a known format, its
            backbone folder is gone (or, with ``registered_only``, is a folder at all), or
            its weights do not fit the architecture its spec describes.
    """
    where = store.uri(key)
    with tempfile.TemporaryDirectory(prefix="searchtuner-checkpoint-") as scratch:
        path = Path(scratch) / "checkpoint.safetensors"
        store.download(key, path)
        metadata, state = _read(path, where)
    spec, info = _parse_metadata(metadata, where)
    if registered_only and spec.backbone not in REGISTRY:
        raise CheckpointError(
            f"the checkpoint {where} names the backbone {spec.backbone[:200]!r}, which is not "
            f"a registered backbone ({', '.join(REGISTRY)}); this service rebuilds only those "
            "and never reads model folders on its own machine"
        )
    model = _rebuild(spec, where)
    load_state_checked(
        model, state, strict=True, source=f"the checkpoint {where}", error=CheckpointError
    )
    return model.to(resolve_device(device)).eval(), info


def _info_json(info: Mapping[str, Any] | None) -> str:
    if info is None:
        return "{}"
    if not isinstance(info, Mapping) or not all(isinstance(k, str) for k in info):
        raise ConfigError(
            f"checkpoint info must be a dict with string keys, got {type(info).__name__}"
        )
    try:
        return json.dumps(dict(info), sort_keys=True, default=_plain)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"checkpoint info holds a value that is not JSON-serialisable ({err}); pass "
            "numbers, strings, lists and dicts"
        ) from err


def _read(path: Path, where: str) -> tuple[dict[str, str], dict[str, Tensor]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as opened:
            metadata = dict(opened.metadata() or {})
            state = {name: opened.get_tensor(name) for name in opened.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{where} is not a safetensors file ({err}); give the key of a checkpoint written "
            "by save_model_checkpoint"
        ) from err
    return metadata, state


def _parse_metadata(metadata: Mapping[str, str], where: str) -> tuple[ModelSpec, dict[str, Any]]:
    found = metadata.get("format")
    if found != CHECKPOINT_FORMAT:
        if found is not None and found.startswith("searchtuner-checkpoint/"):
            raise CheckpointError(
                f"the checkpoint {where} is in format {found!r}, but this SearchTuner reads "
                f"{CHECKPOINT_FORMAT!r}; upgrade searchtuner"
            )
        raise CheckpointError(
            f"{where} is a safetensors file but not a SearchTuner checkpoint (format "
            f"{found!r}, expected {CHECKPOINT_FORMAT!r}); write it with save_model_checkpoint"
        )
    try:
        spec = ModelSpec(**json.loads(metadata["spec"]))
        info = json.loads(metadata.get("info", "{}"))
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"the spec or info of the checkpoint {where} is damaged ({err}); write it again"
        ) from err
    if not isinstance(info, dict):
        raise CheckpointError(f"the info of the checkpoint {where} is not a JSON object")
    return spec, info


def _registered(backbone: str) -> bool:
    wanted = backbone.rsplit("/", 1)[-1].lower()
    return any(name.lower() == wanted for name in REGISTRY)


def _rebuild(spec: ModelSpec, where: str) -> EmbeddingModel:
    unknown = sorted(set(spec.options) - BUILD_OPTIONS)
    if unknown:
        raise CheckpointError(
            f"the spec of the checkpoint {where} has options {unknown} that build_model does "
            "not take; it was written by another SearchTuner version"
        )
    if (
        spec.modality == "text"
        and not _registered(spec.backbone)
        and not Path(spec.backbone).is_dir()
    ):
        raise CheckpointError(
            f"the checkpoint {where} was trained from the local model folder {spec.backbone}, "
            "which is not there: the weights are in the checkpoint, but the architecture and "
            "tokenizer are rebuilt from that folder's config.json and tokenizer files. Restore "
            "the folder at that path, or load the checkpoint where it exists"
        )
    options: dict[str, Any] = {
        name: tuple(value) if name in _SEQUENCE_OPTIONS and value is not None else value
        for name, value in spec.options.items()
    }
    freeze = list(spec.freeze) if isinstance(spec.freeze, list) else spec.freeze
    try:
        model = build_model(
            spec.backbone,
            pretrained=False,
            pooling=spec.pooling,
            freeze=freeze,
            output_dim=spec.output_dim,
            normalize=spec.normalize,
            **options,
        )
    except ConfigError as err:
        raise CheckpointError(f"cannot rebuild the model of the checkpoint {where}: {err}") from err
    if model.spec != spec:
        raise CheckpointError(
            f"the model rebuilt from the checkpoint {where} differs from the one recorded "
            f"(recorded {spec.to_dict()}, rebuilt {model.spec.to_dict()}); it was written by "
            "another SearchTuner version"
        )
    return model
