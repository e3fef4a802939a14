"""A text bundle is a folder that sentence-transformers loads, with the same embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import TEXTS, Saved, text_model

import searchtuner
from searchtuner.artifacts import save_bundle


def _sentence_transformer(folder: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


@pytest.mark.parametrize(
    ("pooling", "output_dim", "normalize"),
    [("mean", None, False), ("mean", 8, True), ("cls", 8, False), ("cls", None, True),
     ("max", None, True)],
)  # fmt: skip
def test_sentence_transformers_gives_the_same_embeddings(
    tiny_bert_dir: Path, tmp_path: Path, pooling: str, output_dim: int | None, normalize: bool
) -> None:
    model = text_model(tiny_bert_dir, pooling=pooling, output_dim=output_dim, normalize=normalize)
    folder = save_bundle(model, tmp_path / "bundle", onnx=False)

    theirs = _sentence_transformer(folder).encode(TEXTS, normalize_embeddings=False, batch_size=2)

    np.testing.assert_allclose(theirs, searchtuner.encode(model, TEXTS), atol=1e-5, rtol=0)


def test_module_files_follow_the_sentence_transformers_layout(text_bundle: Saved) -> None:
    folder = text_bundle.folder
    modules = json.loads((folder / "modules.json").read_text())
    assert [(m["path"], m["type"].rsplit(".", 1)[-1]) for m in modules] == [
        ("", "Transformer"),
        ("1_Pooling", "Pooling"),
        ("2_Dense", "Dense"),
        ("3_Normalize", "Normalize"),
    ]
    assert json.loads((folder / "sentence_bert_config.json").read_text()) == {
        "do_lower_case": False,
        "max_seq_length": 16,
    }
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_cls_token"] and not pooling["pooling_mode_mean_tokens"]
    dense = json.loads((folder / "2_Dense" / "config.json").read_text())
    assert dense == {
        "activation_function": "torch.nn.modules.linear.Identity",
        "bias": True,
        "in_features": 32,
        "out_features": 8,
    }
    assert (folder / "3_Normalize").is_dir()


def test_the_bundle_fixture_loads_in_sentence_transformers(text_bundle: Saved) -> None:
    theirs = _sentence_transformer(text_bundle.folder).encode(TEXTS, normalize_embeddings=False)
    np.testing.assert_allclose(theirs, searchtuner.encode(text_bundle.model, TEXTS), atol=1e-5)


@pytest.mark.slow
def test_minilm_bundle_matches_in_sentence_transformers_and_after_get_model(
    minilm: searchtuner.EmbeddingModel, tmp_path: Path
) -> None:
    texts = [*TEXTS, "Search engines rank documents by similarity. " * 30]
    folder = save_bundle(minilm, tmp_path / "minilm", onnx=False)
    ours = searchtuner.encode(minilm, texts)

    theirs = _sentence_transformer(folder).encode(texts, normalize_embeddings=False)
    restored = searchtuner.encode(searchtuner.artifacts.get_model(folder), texts)

    np.testing.assert_allclose(theirs, ours, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(restored, ours)
