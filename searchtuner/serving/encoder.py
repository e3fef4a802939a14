"""Encoder: a published model loaded once, run by PyTorch or ONNX Runtime, embedding documents.

The search Flow's ``Encoder`` executor is a thin wrapper around this class; it has no jina in
it, so it can be tested, benchmarked and reused without a Flow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from searchtuner.artifacts.errors import BundleError
from searchtuner.artifacts.handles import ModelHandle, resolve_bundle
from searchtuner.artifacts.manifest import build_preprocessor, verify_bundle
from searchtuner.artifacts.onnx_export import ONNX_FILE, OnnxEmbedder
from searchtuner.errors import ConfigError, DataError
from searchtuner.models.preprocessing import to_chw_float
from searchtuner.serving.config import Backend, EncoderConfig
from searchtuner.serving.documents import read_inputs, with_embeddings
from searchtuner.serving.runtimes import OnnxRuntime, Runtime, TorchRuntime
from searchtuner.types import Modality


class Encoder:
    """A model from a handle or a bundle, loaded once, that embeds items and documents.

    With ``backend="torch"`` a call embeds its items exactly as
    ``searchtuner.encode(model, items, batch_size=batch_size)`` does (same batches, same
    arithmetic: ``np.array_equal``); with ``backend="onnx"`` the bundle's ``model.onnx`` runs
    the same batches in ONNX Runtime (within ~1e-6 of PyTorch).

    Args:
        model: a model handle (``stm1:<sha256>:<size>@<uri>``, its dict or JSON), a bundle
            folder, or a bundle archive.
        **options: the other fields of :class:`EncoderConfig`: ``backend``, ``batch_size``,
            ``device``, ``allow_paths``, ``threads``, ``cache_dir``.

    Raises:
        ConfigError: an unknown or out-of-range option, a device that is not here, or
            ``backend="onnx"`` with a bundle that holds no ``model.onnx``.
        BundleError: the bundle or its archive is missing, damaged or tampered with.
        StoreError: a handle's store cannot be reached or read.
    """

    def __init__(self, model: str | os.PathLike[str] | ModelHandle, **options: Any) -> None:
        source = str(model) if isinstance(model, ModelHandle | os.PathLike) else model
        self.config = EncoderConfig(model=source, **options)
        self.folder: Path = resolve_bundle(self.config.model, cache_dir=self.config.cache_dir)
        self.runtime: Runtime = _load(self.folder, self.config)
        self.modality: Modality = self.runtime.preprocessor.modality
        self.embedding_dim: int = self.runtime.embedding_dim

    def encode(self, items: Sequence[Any], *, ids: Sequence[Any] | None = None) -> np.ndarray:
        """Embed raw items of the model's modality (texts, images, arrays).

        Args:
            items: the items.
            ids: names for the items in error messages (document ids).

        Returns:
            float32 array ``(len(items), embedding_dim)``, in the order of ``items``.

        Raises:
            DataError: an item cannot be preprocessed (e.g. an image that does not decode);
                the message names it.
        """
        items = list(items)
        if not items:  # tokenizers fail on an empty list
            return np.empty((0, self.embedding_dim), dtype=np.float32)
        prepared = self.runtime.preprocessor.prepare(items)
        try:
            return self.runtime.embed(prepared, self.config.batch_size)
        except DataError as err:
            located = self._locate(items, ids)
            if located is None:
                raise
            raise located from err

    def encode_docs(self, docs: Sequence[Any]) -> np.ndarray:
        """Embed the content of documents (``text``; ``image``/``bytes_``/``blob``/
        ``tensor``/``url``/``uri``; ``tensor``), every document checked first.

        Raises:
            DataError: see :func:`searchtuner.serving.documents.read_inputs`.
        """
        items = read_inputs(
            docs,
            self.modality,
            allow_paths=self.config.allow_paths,
            input_shape=getattr(self.runtime.preprocessor, "input_shape", None),
        )
        return self.encode(items, ids=[getattr(doc, "id", None) for doc in docs])

    def embed_docs(self, docs: Sequence[Any]) -> list[Any]:
        """Copies of the documents with ``embedding`` set and every other field kept.

        Nothing is written unless every document is embedded.

        Raises:
            DataError: see :meth:`encode_docs` and
                :func:`searchtuner.serving.documents.with_embeddings`.
        """
        return with_embeddings(docs, self.encode_docs(docs))

    def describe(self) -> dict[str, Any]:
        """What is being served: the model, its modality and width, and the backend."""
        return {
            "model": self.config.model,
            "bundle": str(self.folder),
            "modality": self.modality.value,
            "embedding_dim": self.embedding_dim,
            "backend": self.config.backend.value,
            "device": self.config.device,
            "batch_size": self.config.batch_size,
        }

    def _locate(self, items: list[Any], ids: Sequence[Any] | None) -> DataError | None:
        """The error naming the first item that fails on its own, if one does."""
        if self.modality is not Modality.IMAGE:
            return None
        for index, item in enumerate(items):
            try:
                to_chw_float(item, index)
            except DataError as err:
                name = f" (id {ids[index]!r})" if ids is not None else ""
                return DataError(f"document {index}{name} cannot be embedded: {err}")
        return None


def _load(folder: Path, config: EncoderConfig) -> Runtime:
    if config.backend is Backend.TORCH:
        from searchtuner.artifacts.bundle import load_bundle

        return TorchRuntime(load_bundle(folder, device=config.device))
    manifest = verify_bundle(folder)
    if ONNX_FILE not in manifest.files:
        raise ConfigError(
            f"backend 'onnx' runs the bundle's {ONNX_FILE}, but the bundle of "
            f"{config.model!r} holds none; publish the model with onnx=True (the default), "
            "or use backend 'torch'"
        )
    try:
        embedder = OnnxEmbedder(
            folder / ONNX_FILE, build_preprocessor(folder, manifest), threads=config.threads
        )
    except BundleError as err:
        raise BundleError(f"cannot serve {config.model!r} with ONNX Runtime: {err}") from err
    return OnnxRuntime(embedder, manifest.spec.embedding_dim)
