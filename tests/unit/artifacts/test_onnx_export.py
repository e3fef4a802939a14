"""ONNX parity: onnxruntime on the exported graph matches PyTorch within 1e-4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from bundle_helpers import TEXTS, Saved, images, text_model, vectors

import searchtuner
from searchtuner.artifacts import OnnxEmbedder, export_onnx
from searchtuner.artifacts.onnx_export import OUTPUT_NAME

ATOL = 1e-4


def _torch(model: searchtuner.EmbeddingModel, batch: dict[str, torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        return model(batch).numpy()


def test_text_parity_on_batch_sizes_and_lengths_unlike_the_export(text_bundle: Saved) -> None:
    model, runner = text_bundle.model, OnnxEmbedder.from_bundle(text_bundle.folder)
    words = "retrieval with learned embeddings needs many tokens to test the sequence axis"
    batches = [
        ["one"],  # batch 1, 3 tokens
        [words, "short", "a bit longer text"],  # padding within the batch
        [" ".join(words.split()[:n]) for n in range(1, 8)],  # batch 7, every length
        [words * 3] * 4,  # truncated to max_length
    ]
    for texts in batches:
        batch = model.preprocess(texts)
        np.testing.assert_allclose(runner.run(batch), _torch(model, batch), atol=ATOL, rtol=0)


def test_text_graph_has_dynamic_batch_and_sequence_axes(text_bundle: Saved) -> None:
    graph = onnx.load(str(text_bundle.folder / "model.onnx")).graph
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in graph.input}  # fmt: skip
    assert inputs == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    assert [o.name for o in graph.output] == [OUTPUT_NAME]


def test_image_parity_with_gem_and_projection(image_bundle: Saved) -> None:
    runner = OnnxEmbedder.from_bundle(image_bundle.folder)
    for count in (1, 4):
        np.testing.assert_allclose(
            runner.encode(images(count, seed=count)),
            searchtuner.encode(image_bundle.model, images(count, seed=count)),
            atol=ATOL,
            rtol=0,
        )


def test_mlp_parity(mlp_bundle: Saved) -> None:
    runner = OnnxEmbedder.from_bundle(mlp_bundle.folder)
    for count in (1, 5, 33):
        data = vectors(count, seed=count)
        np.testing.assert_allclose(
            runner.encode(list(data), batch_size=16),
            searchtuner.encode(mlp_bundle.model, data),
            atol=ATOL,
            rtol=0,
        )


def test_export_leaves_a_training_model_in_training_mode(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    model = text_model(tiny_bert_dir)
    model.train()
    export_onnx(model, tmp_path / "m.onnx")
    assert model.training
    model.eval()
    batch = model.preprocess(TEXTS)
    runner = OnnxEmbedder(tmp_path / "m.onnx")
    # Dropout was off while tracing: the graph matches the eval-mode model.
    np.testing.assert_allclose(runner.run(batch), _torch(model, batch), atol=ATOL, rtol=0)


def test_encode_without_a_preprocessor_says_how_to_get_one(mlp_bundle: Saved) -> None:
    runner = OnnxEmbedder(mlp_bundle.folder / "model.onnx")
    with pytest.raises(searchtuner.ConfigError, match="from_bundle"):
        runner.encode(list(vectors(2)))
    with pytest.raises(searchtuner.ConfigError, match="lacks"):
        runner.run({"pixel_values": np.zeros((1, 3, 8, 8), dtype=np.float32)})
