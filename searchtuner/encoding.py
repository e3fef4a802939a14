"""encode: raw items or DocLists → an (N, D) numpy array of embeddings."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from searchtuner.errors import ConfigError, DataError
from searchtuner.models.embedding_model import EmbeddingModel
from searchtuner.types import Modality


def encode(
    model: EmbeddingModel,
    data: Any,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Embed raw items with the model's own preprocessing.

    Args:
        model: an EmbeddingModel from :func:`searchtuner.build_model`.
        data: texts; images (encoded bytes, file paths, PIL images, arrays); tensors (an
            ``(N, …)`` array or a list of arrays); or a DocList / list of documents whose
            ``text``, ``image``/``uri`` or ``tensor`` field fits the model's modality.
        batch_size: items per forward pass.
        device: run on this device (default: where the model is).

    Returns:
        float32 array of shape ``(N, embedding_dim)``, in the order of ``data``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    items = as_items(data, model.modality)
    return encode_prepared(
        model, model.preprocess_items(items), batch_size=batch_size, device=device
    )


def encode_prepared(
    model: EmbeddingModel,
    prepared: Sequence[Any],
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Embed items already through ``model.preprocess_items`` (e.g. texts tokenised once)."""
    out = np.empty((len(prepared), model.embedding_dim), dtype=np.float32)
    if not prepared:
        return out
    target = torch.device(device) if device is not None else model.device
    # Texts in order of length, so that each batch pads to similar lengths.
    order = (
        sorted(range(len(prepared)), key=lambda i: len(prepared[i]))
        if model.modality is Modality.TEXT
        else list(range(len(prepared)))
    )
    collate = model.backbone.preprocessor.collate
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = collate([prepared[i] for i in chunk])
                batch = {k: v.to(target, non_blocking=True) for k, v in batch.items()}
                out[chunk] = model(batch).float().cpu().numpy()
    finally:
        model.train(was_training)
    return out


def as_items(data: Any, modality: Modality) -> list[Any]:
    """Normalise the accepted input forms into a list of raw items for one modality."""
    if isinstance(data, str | bytes):
        return [data]
    if isinstance(data, np.ndarray | torch.Tensor):
        if modality is Modality.TEXT:
            raise DataError("a text model needs texts, got an array; pass a list of str")
        return list(data)
    if not isinstance(data, Iterable):
        raise DataError(f"cannot encode a {type(data).__name__}; pass a list of items or a DocList")
    items = list(data)
    if items and _is_document(items[0]):
        items = [_content(doc, modality, i) for i, doc in enumerate(items)]
    return items


def _is_document(item: Any) -> bool:
    from docarray import BaseDoc

    return isinstance(item, BaseDoc)


def _content(doc: Any, modality: Modality, index: int) -> Any:
    if modality is Modality.TEXT:
        value = getattr(doc, "text", None)
    elif modality is Modality.IMAGE:
        value = next(
            (
                v
                for v in (getattr(doc, f, None) for f in ("image", "uri", "tensor"))
                if v is not None
            ),
            None,
        )
    else:
        value = getattr(doc, "tensor", None)
    if value is None:
        fields = {"text": "text", "image": "image, uri or tensor", "tensor": "tensor"}
        raise DataError(
            f"document {index} ({type(doc).__name__}) has no {fields[modality.value]} for this "
            f"{modality.value} model"
        )
    return value
