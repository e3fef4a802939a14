"""Publishing a checkpoint: checkpoint → bundle with a model card → archive under its digest."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from searchtuner.artifacts.bundle import save_bundle
from searchtuner.artifacts.checkpoint import load_model_checkpoint
from searchtuner.artifacts.handles import ModelHandle, publish_bundle
from searchtuner.artifacts.model_card import ModelCardInfo
from searchtuner.telemetry.tracing import span

if TYPE_CHECKING:
    from searchtuner.store.base import Store

CARD_FIELDS = tuple(f.name for f in fields(ModelCardInfo))
"""The checkpoint info keys that go onto the model card."""


def card_from_info(info: Mapping[str, Any]) -> ModelCardInfo:
    """The model card fields found in a checkpoint's info.

    Keys that are not :class:`ModelCardInfo` fields stay in the checkpoint but are not
    printed on the card.

    Raises:
        ConfigError: a card field holds a value the card cannot show.
    """
    return ModelCardInfo.from_dict({key: info[key] for key in CARD_FIELDS if key in info})


def publish_checkpoint(
    store: Store,
    checkpoint_key: str,
    *,
    prefix: str = "models",
    onnx: bool = True,
    registered_only: bool = False,
) -> ModelHandle:
    """Turn a stored checkpoint into a published bundle archive and return its handle.

    The checkpoint is loaded (see :func:`load_model_checkpoint`), saved as a bundle whose
    model card comes from the checkpoint's info, packed, and stored at
    ``<prefix>/<sha256>.tar`` in the same store, unless an object with that key and digest
    is there already. Bundles are byte-reproducible, so publishing the same checkpoint twice
    returns the same handle and stores nothing twice.

    Args:
        store: holds the checkpoint and receives the archive (e.g. an owner's view).
        checkpoint_key: the checkpoint's key in ``store``.
        prefix: the folder of archives in ``store``.
        onnx: also put ``model.onnx`` into the bundle.
        registered_only: refuse checkpoints of backbones that are not registered names
            (see :func:`load_model_checkpoint`); a service publishing what a request names
            sets it.

    Returns:
        The handle; :func:`searchtuner.get_model` loads it.

    Raises:
        NotFound: no object under ``checkpoint_key``.
        IntegrityError: the checkpoint's bytes do not match their recorded digest.
        CheckpointError: not a SearchTuner checkpoint, or it cannot be rebuilt here.
        ConfigError: the info holds card values that cannot be shown, or the model does not
            export to ONNX.
        StoreError: the store cannot be read or written.
    """
    attributes: dict[str, str | bool] = {
        "searchtuner.checkpoint": checkpoint_key,
        "searchtuner.onnx": onnx,
    }
    with span("searchtuner.publish", attributes) as current:
        model, info = load_model_checkpoint(store, checkpoint_key, registered_only=registered_only)
        card = card_from_info(info)
        with tempfile.TemporaryDirectory(prefix="searchtuner-publish-") as scratch:
            folder = save_bundle(model, Path(scratch) / "bundle", card=card, onnx=onnx)
            handle = publish_bundle(folder, store, prefix=prefix)
        if current is not None:
            current.set_attribute("searchtuner.model.sha256", handle.sha256)
            current.set_attribute("searchtuner.model.size", handle.size)
        return handle
