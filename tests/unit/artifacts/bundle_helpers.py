"""Models, inputs and a model card shared by the artifact tests."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import searchtuner
from searchtuner.store import LocalStore, ObjectInfo

TEXTS = [
    "neural search ranks documents by embedding similarity",
    "a cat",
    "the quick brown fox jumps over the lazy dog " * 6,  # longer than max_length: truncated
    "ünïcödé & émojis 🙂",
    "x",
]
CARD = {
    "base_model": "tiny-bert",
    "data_statistics": {"train_items": 1950, "classes": 39},
    "training_parameters": {"loss": "batch_all_triplet", "epochs": 1, "lr": 2e-05},
    "metrics_before": {"map@10": 0.165, "ndcg@10": 0.3},
    "metrics_after": {"map@10": 0.27, "ndcg@10": 0.41},
    "run_id": "run-42",
}


@dataclass(frozen=True)
class Saved:
    """A model and the bundle folder it was saved to."""

    model: searchtuner.EmbeddingModel
    folder: Path


def text_model(folder: Path, **options: object) -> searchtuner.EmbeddingModel:
    torch.manual_seed(0)
    model = searchtuner.build_model(folder, max_length=16, **options)  # type: ignore[arg-type]
    # A trained head and non-default GeM exponents make round-trip mistakes visible.
    with torch.no_grad():
        for param in model.projection.parameters():
            param.add_(0.1)
    return model


def image_model() -> searchtuner.EmbeddingModel:
    torch.manual_seed(0)
    model = searchtuner.build_model(
        "mobilenet_v2", pretrained=False, image_size=32, pooling="gem", output_dim=16
    )
    with torch.no_grad():
        model.pooler.p.fill_(2.5)  # type: ignore[operator]
    return model


def mlp_model() -> searchtuner.EmbeddingModel:
    torch.manual_seed(0)
    return searchtuner.build_model(
        "mlp", input_dim=12, hidden_dims=[32, 16], output_dim=8, normalize=False
    )


def images(count: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8) for i in range(count)]


def vectors(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 12)).astype(np.float32)


def stored_file(store: LocalStore, key: str) -> Path:
    """The data file that holds ``key`` in a LocalStore, to damage it behind the store's back.

    LocalStore keeps ``<key>~meta.json`` (the commit record) beside the data file it names.
    """
    record = store.root / f"{key}~meta.json"
    return record.parent / json.loads(record.read_text())["data"]


class CountingStore(LocalStore):
    """A local store that records the key of every upload (``put_file``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(root)
        self.puts: list[str] = []

    def put_file(
        self, key: str, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        self.puts.append(key)
        return super().put_file(key, path, metadata)
