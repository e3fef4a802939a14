"""Bundles shared by the artifact tests: built once per session, never mutated."""

from __future__ import annotations

from pathlib import Path

import pytest
from bundle_helpers import CARD, Saved, image_model, mlp_model, text_model

from searchtuner.artifacts import save_bundle


@pytest.fixture(scope="session")
def text_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Saved:
    """Tiny BERT, CLS pooling, projection head, normalised; with ONNX and a model card."""
    model = text_model(tiny_bert_dir, pooling="cls", output_dim=8)
    folder = tmp_path_factory.mktemp("text") / "bundle"
    return Saved(model, save_bundle(model, folder, card=CARD))


@pytest.fixture(scope="session")
def image_bundle(tmp_path_factory: pytest.TempPathFactory) -> Saved:
    model = image_model()
    return Saved(model, save_bundle(model, tmp_path_factory.mktemp("image") / "bundle"))


@pytest.fixture(scope="session")
def mlp_bundle(tmp_path_factory: pytest.TempPathFactory) -> Saved:
    model = mlp_model()
    return Saved(model, save_bundle(model, tmp_path_factory.mktemp("mlp") / "bundle"))
