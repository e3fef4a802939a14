"""Model bundles: a folder that holds an EmbeddingModel as safetensors, JSON and ONNX.

A bundle of a text model::

    searchtuner.json          format version, spec, preprocessing, files → SHA-256, versions
    config.json               the Hugging Face encoder's config
    model.safetensors         the encoder's weights, with Hugging Face names
    tokenizer.json, …         the tokenizer files
    head.safetensors          SearchTuner's own parameters (projection head), if any
    modules.json, sentence_bert_config.json, config_sentence_transformers.json,
    1_Pooling/, 2_Dense/, 3_Normalize/
                              what makes the folder a sentence-transformers model
    model.onnx                the whole model as ONNX (optional)
    README.md                 the model card

Image and tensor models hold the whole model's state dict in ``model.safetensors``; they are
rebuilt from the backbone registry without pretrained weights and then loaded. Loading only
ever reads safetensors and JSON, after checking every file against the manifest.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from searchtuner.artifacts.digests import sha256_file, staged_folder
from searchtuner.artifacts.errors import BundleError
from searchtuner.artifacts.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    BundleManifest,
    bundle_files,
    verify_bundle,
)
from searchtuner.artifacts.model_card import ModelCardInfo, render_model_card
from searchtuner.artifacts.onnx_export import ONNX_FILE, export_onnx
from searchtuner.artifacts.sentence_transformers_layout import write_sentence_transformers_files
from searchtuner.artifacts.versions import library_versions
from searchtuner.device import resolve_device
from searchtuner.errors import ConfigError
from searchtuner.models.build import build_model
from searchtuner.models.embedding_model import EmbeddingModel, ModelSpec
from searchtuner.models.preprocessing import TextPreprocessor

WEIGHTS_FILE = "model.safetensors"
HEAD_FILE = "head.safetensors"
CARD_FILE = "README.md"
# Files that can run code when loaded; a bundle never holds one.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# build_model options that a registered (non-text) backbone may record in its spec.
_REGISTRY_OPTIONS = ("image_size", "input_dim", "hidden_dims")


def save_bundle(
    model: EmbeddingModel,
    directory: str | Path,
    *,
    card: ModelCardInfo | Mapping[str, Any] | None = None,
    onnx: bool = True,
) -> Path:
    """Write a model into a new bundle folder.

    The folder is written next to its destination and moved into place at the end, so a
    failure leaves no half-written bundle. The same model, card and library versions always
    give the same bytes.

    Args:
        model: the embedding model (its train/eval mode and device are left as they are).
        directory: the bundle folder; it must not exist or be empty.
        card: what goes into the model card (data statistics, training parameters,
            metrics before/after, …), as a :class:`ModelCardInfo` or a dict of its fields.
        onnx: also export ``model.onnx``.

    Returns:
        The bundle folder.

    Raises:
        ConfigError: a custom ``nn.Module`` backbone (it cannot be rebuilt without its code),
            a destination that is not empty, a card field that is unknown, or a model that
            does not export to ONNX.
    """
    _check_bundleable(model)
    info = ModelCardInfo.coerce(card)
    folder = Path(directory)
    with staged_folder(folder, "save the bundle") as staging:
        versions = library_versions()
        if model.spec.modality == "text":
            _write_text_model(model, staging, versions)
        else:
            _write_state_dict(model, staging)
        if onnx:
            export_onnx(model, staging / ONNX_FILE)
        spec = model.spec.to_dict()
        card_text = render_model_card(info, spec=spec, library_versions=versions, has_onnx=onnx)
        (staging / CARD_FILE).write_text(card_text, encoding="utf-8")
        files = {name: sha256_file(staging / name) for name in bundle_files(staging)}
        unsafe = [name for name in files if name.endswith(_PICKLE_SUFFIXES)]
        if unsafe:  # pragma: no cover - would be a change in what transformers writes
            raise ConfigError(f"refusing to bundle pickle files {unsafe}")
        manifest = BundleManifest(
            format_version=FORMAT_VERSION,
            spec=ModelSpec(**spec),
            preprocessing=_plain(model.backbone.preprocessor.config()),
            files=files,
            library_versions=versions,
            card=info.to_dict(),
        )
        (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return folder


def load_bundle(
    directory: str | Path, *, device: str | torch.device | None = None
) -> EmbeddingModel:
    """Load a bundle folder into an EmbeddingModel ready for ``searchtuner.encode``.

    Every file is checked against the manifest's SHA-256 first; only safetensors and JSON
    are read (nothing is unpickled).

    Args:
        directory: the bundle folder.
        device: where the model goes (default: the CPU).

    Returns:
        The model, in eval mode, with the bundle's preprocessing.

    Raises:
        BundleError: the folder is not a bundle, a file is missing, unlisted or altered,
            or the weights do not fit the recorded architecture.
    """
    folder = Path(directory)
    manifest = verify_bundle(folder)
    spec = manifest.spec
    if spec.backbone.startswith("custom:"):
        raise BundleError(_custom_message(spec.backbone))
    try:
        if spec.modality == "text":
            model = _load_text_model(folder, spec)
        else:
            model = _load_registry_model(folder, spec)
    except ConfigError as err:
        raise BundleError(f"cannot rebuild the model of the bundle {folder}: {err}") from err
    _check_rebuilt(model, manifest, folder)
    # The recorded spec, not the rebuilt one (whose backbone is this folder): saving the
    # loaded model again then gives the same bytes, hence the same handle.
    model.spec = manifest.spec
    return model.to(resolve_device(device)).eval()


def _check_bundleable(model: EmbeddingModel) -> None:
    if model.spec.backbone.startswith("custom:"):
        raise ConfigError(_custom_message(model.spec.backbone))


def _custom_message(backbone: str) -> str:
    return (
        f"cannot bundle a model with a custom nn.Module backbone ({backbone}): a bundle holds "
        "weights and JSON only, and rebuilding your module needs its Python code. Save "
        "model.state_dict() with safetensors beside your code, or use a registered backbone "
        "(searchtuner.list_models()) or a Hugging Face model folder"
    )


def _write_text_model(model: EmbeddingModel, folder: Path, versions: dict[str, str]) -> None:
    from transformers.utils import logging as hf_logging

    from searchtuner.models.backbones.text import TransformerBackbone

    backbone, preprocessor = model.backbone, model.backbone.preprocessor
    if not isinstance(backbone, TransformerBackbone) or not isinstance(
        preprocessor, TextPreprocessor
    ):  # pragma: no cover - build_model makes every text model this way
        raise ConfigError("a text model needs a Hugging Face transformer backbone to be bundled")
    encoder: Any = backbone.model
    # save_pretrained shows a progress bar per shard; a bundle save should be quiet.
    hf_logging.disable_progress_bar()
    try:
        encoder.save_pretrained(folder)
    finally:
        hf_logging.enable_progress_bar()
    _save_tokenizer(preprocessor.tokenizer, folder)
    head = _tensors({k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")})
    if head:
        save_file(head, folder / HEAD_FILE, metadata={"format": "pt"})
    write_sentence_transformers_files(model, folder, versions=versions)


def _save_tokenizer(tokenizer: Any, folder: Path) -> None:
    """Save the tokenizer without the padding/truncation state its last call left behind.

    A fast tokenizer's ``tokenizer.json`` records the settings of the most recent call
    (e.g. the export's example batch), which would make the bundle's bytes depend on
    history. Callers pass those settings on every call anyway, so a neutral copy is saved.
    """
    neutral = copy.deepcopy(tokenizer)
    backend = getattr(neutral, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    neutral.save_pretrained(folder)


def _write_state_dict(model: EmbeddingModel, folder: Path) -> None:
    save_file(_tensors(model.state_dict()), folder / WEIGHTS_FILE, metadata={"format": "pt"})


def _tensors(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # Copies on the CPU: safetensors refuses tensors that share memory.
    return {name: value.detach().to("cpu", copy=True).contiguous() for name, value in state.items()}


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """JSON types only (tuples become lists), as the manifest will read back."""
    plain: dict[str, Any] = json.loads(json.dumps(dict(config)))
    return plain


def _freeze(spec: ModelSpec) -> bool | int | list[str]:
    return list(spec.freeze) if isinstance(spec.freeze, list) else spec.freeze


def _load_text_model(folder: Path, spec: ModelSpec) -> EmbeddingModel:
    max_length = spec.options.get("max_length")
    model = build_model(
        folder,
        pooling=spec.pooling,
        freeze=_freeze(spec),
        output_dim=spec.output_dim,
        normalize=spec.normalize,
        max_length=int(max_length) if max_length is not None else None,
    )
    expected = sorted(k for k in model.state_dict() if not k.startswith("backbone."))
    head = _read_safetensors(folder / HEAD_FILE) if (folder / HEAD_FILE).is_file() else {}
    if sorted(head) != expected:
        raise BundleError(
            f"{folder / HEAD_FILE} holds {sorted(head)}, but the model's head needs {expected}; "
            "the bundle is inconsistent, save it again"
        )
    load_state_checked(model, head, strict=False, source=folder / HEAD_FILE)
    return model


def _load_registry_model(folder: Path, spec: ModelSpec) -> EmbeddingModel:
    unknown = sorted(set(spec.options) - set(_REGISTRY_OPTIONS))
    if unknown:
        raise BundleError(
            f"the bundle's spec has options {unknown} that {spec.backbone} does not take; "
            "it was written by another SearchTuner version, save it again"
        )
    options = dict(spec.options)
    if "hidden_dims" in options:
        options["hidden_dims"] = tuple(options["hidden_dims"])
    model = build_model(
        spec.backbone,
        pooling=spec.pooling,
        freeze=_freeze(spec),
        output_dim=spec.output_dim,
        normalize=spec.normalize,
        pretrained=False,
        **options,
    )
    load_state_checked(model, _read_safetensors(folder / WEIGHTS_FILE), strict=True, source=folder)
    return model


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as err:
        raise BundleError(f"cannot read the weights {path}: {err}") from err


def load_state_checked(
    model: EmbeddingModel,
    state: dict[str, Tensor],
    *,
    strict: bool,
    source: str | Path,
    error: type[BundleError] = BundleError,
) -> None:
    """Load weights, turning a mismatch with the model's spec into ``error``."""
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:  # missing/unexpected keys or shape mismatches
        raise error(
            f"the weights in {source} do not fit the model its spec describes: {err}"
        ) from err


def _check_rebuilt(model: EmbeddingModel, manifest: BundleManifest, folder: Path) -> None:
    """The rebuilt model must be the one recorded: same head, dims and preprocessing."""
    stored, built = manifest.spec, model.spec
    fields = ("modality", "pooling", "output_dim", "normalize", "embedding_dim")
    diffs = [
        f"{name}: recorded {getattr(stored, name)!r}, rebuilt {getattr(built, name)!r}"
        for name in fields
        if getattr(stored, name) != getattr(built, name)
    ]
    preprocessing = _plain(model.backbone.preprocessor.config())
    if preprocessing != manifest.preprocessing:
        diffs.append(f"preprocessing: recorded {manifest.preprocessing}, rebuilt {preprocessing}")
    if diffs:
        raise BundleError(
            f"the model rebuilt from {folder} differs from the one recorded in "
            f"{MANIFEST_NAME} ({'; '.join(diffs)}); it was written by another SearchTuner "
            "version, save it again"
        )


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a bundle manifest (not yet verified)."""
    return os.path.isfile(Path(path) / MANIFEST_NAME)
