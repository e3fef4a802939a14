"""Transformer backbones: head removal, pooling, freezing, encode, parity with ST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import searchtuner
from searchtuner import ConfigError

TEXTS = ["a cat sat on the mat", "hello", "the quick brown fox jumps over the lazy dog again"]


def test_head_and_pooler_are_removed(tiny_bert_dir: Path) -> None:
    model = searchtuner.build_model(tiny_bert_dir)
    names = [name for name, _ in model.named_parameters()]
    assert not any("classifier" in n for n in names)
    assert not any(".pooler." in n for n in names)
    assert model.embedding_dim == 32
    assert searchtuner.encode(model, TEXTS).shape == (3, 32)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_pooling_matches_a_hand_computation(tiny_bert_dir: Path, pooling: str) -> None:
    model = searchtuner.build_model(tiny_bert_dir, pooling=pooling, normalize=False)
    batch = model.preprocess(TEXTS)
    with torch.no_grad():
        hidden = model.backbone(batch).numpy()
        got = model(batch).numpy()
    mask = batch["attention_mask"].numpy()
    for i in range(len(TEXTS)):
        tokens = hidden[i][mask[i] == 1]
        expected = {"mean": tokens.mean(0), "cls": hidden[i][0], "max": tokens.max(0)}[pooling]
        np.testing.assert_allclose(got[i], expected, rtol=1e-5, atol=1e-6)


def test_encode_is_deterministic_and_unit_length(tiny_bert_dir: Path) -> None:
    model = searchtuner.build_model(tiny_bert_dir)
    first = searchtuner.encode(model, TEXTS, batch_size=2)
    second = searchtuner.encode(model, TEXTS, batch_size=3)
    np.testing.assert_allclose(first, second, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    # Encoding one text alone gives the same vector as inside a padded batch.
    np.testing.assert_allclose(searchtuner.encode(model, TEXTS[2]), first[2:3], atol=1e-5)


def test_projection_head_sets_the_dimension(tiny_bert_dir: Path) -> None:
    model = searchtuner.build_model(tiny_bert_dir, output_dim=8)
    assert model.embedding_dim == 8
    assert searchtuner.encode(model, TEXTS).shape == (3, 8)


def _grads_after_backward(model: searchtuner.EmbeddingModel) -> dict[str, torch.Tensor | None]:
    model.train()
    model(model.preprocess(TEXTS)).sum().backward()
    return {name: p.grad for name, p in model.named_parameters()}


def test_freeze_first_blocks_gets_no_gradient(tiny_bert_dir: Path) -> None:
    model = searchtuner.build_model(tiny_bert_dir, freeze=2)  # embeddings + layer 0
    grads = _grads_after_backward(model)
    frozen = [n for n in grads if ".embeddings." in n or ".layer.0." in n]
    trained = [n for n in grads if ".layer.1." in n]
    assert frozen and trained
    assert all(grads[n] is None for n in frozen)
    assert all(not model.get_parameter(n).requires_grad for n in frozen)
    assert any(grads[n] is not None and grads[n].abs().sum() > 0 for n in trained)


def test_freeze_everything_but_the_projection(tiny_bert_dir: Path) -> None:
    model = searchtuner.build_model(tiny_bert_dir, freeze=True, output_dim=4)
    grads = _grads_after_backward(model)
    assert all(g is None for n, g in grads.items() if n.startswith("backbone."))
    assert grads["projection.weight"] is not None
    summary = model.summary()
    assert summary.trainable_params == 32 * 4 + 4


def test_freeze_by_pattern(tiny_bert_dir: Path) -> None:
    model = searchtuner.build_model(
        tiny_bert_dir, freeze=["backbone.model.embeddings", "*.layer.1.*"]
    )
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(".embeddings." in n for n in frozen)
    assert any(".layer.1." in n for n in frozen)
    assert not any(".layer.0." in n for n in frozen)


def test_summary_lists_layers_shapes_and_dimension(tiny_bert_dir: Path) -> None:
    summary = searchtuner.build_model(tiny_bert_dir, freeze=1, output_dim=16).summary()
    by_name = {row.name: row for row in summary.rows}
    assert summary.embedding_dim == 16
    assert by_name["projection"].output_shape == (16,)
    assert by_name["pooler"].output_shape == (32,)
    word = by_name["backbone.model.embeddings.word_embeddings"]
    assert word.trainable == 0 and word.params == 30522 * 32
    assert summary.total_params == sum(row.params for row in summary.rows)
    text = str(summary)
    assert "embedding_dim=16" in text and "frozen" in text


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"pooling": "avg"}, "allowed: mean, cls, max"),
        ({"image_size": 64}, "image_size does not apply"),
        ({"freeze": 9}, "has 3 blocks"),
        ({"freeze": ["nothing.matches"]}, "matches no parameter"),
        ({"freeze": True}, "leaves nothing to train"),
        ({"output_dim": 0}, "positive integer"),
        ({"max_length": 4096}, "exceeds this model's limit"),
    ],
)
def test_options_that_do_not_fit_say_what_is_allowed(
    tiny_bert_dir: Path, kwargs: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        searchtuner.build_model(tiny_bert_dir, **kwargs)  # type: ignore[arg-type]


def test_unknown_backbone_lists_the_registry() -> None:
    with pytest.raises(ConfigError) as info:
        searchtuner.build_model("all-MiniLM-L12-v2")
    message = str(info.value)
    assert "all-MiniLM-L6-v2" in message and "mobilenet_v2" in message
    assert "did you mean 'all-MiniLM-L6-v2'" in message


def test_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a Hugging Face model folder"):
        searchtuner.build_model(tmp_path)


def test_text_model_refuses_non_text_items(tiny_bert_dir: Path) -> None:
    model = searchtuner.build_model(tiny_bert_dir)
    with pytest.raises(searchtuner.DataError, match="item 1"):
        searchtuner.encode(model, ["fine", 3])


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(
    minilm: searchtuner.EmbeddingModel, minilm_dir: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [*TEXTS, "Search engines rank documents by similarity. " * 30, "ünïcödé & émojis 🙂"]
    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode(
        texts, normalize_embeddings=True, batch_size=2
    )
    ours = searchtuner.encode(minilm, texts, batch_size=2)
    assert ours.shape == (len(texts), 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.mark.slow
def test_minilm_registry_entry_is_true(minilm: searchtuner.EmbeddingModel) -> None:
    info = {m["name"]: m for m in searchtuner.list_models()}["all-MiniLM-L6-v2"]
    assert info["embedding_dim"] == minilm.embedding_dim == 384
    assert info["params"] == sum(p.numel() for p in minilm.parameters())
    assert info["modality"] == "text"
