"""The model card: metrics before/after, data, parameters, versions; its snippets run."""

from __future__ import annotations

import re

import numpy as np
import pytest
from bundle_helpers import Saved

import searchtuner
from searchtuner.artifacts import ModelCardInfo, render_model_card

SPEC = {
    "backbone": "mlp",
    "modality": "tensor",
    "pooling": None,
    "freeze": 1,
    "output_dim": 8,
    "normalize": False,
    "embedding_dim": 8,
    "options": {"input_dim": 12, "hidden_dims": [32, 16]},
}


def test_card_states_base_data_parameters_metrics_and_versions(text_bundle: Saved) -> None:
    card = (text_bundle.folder / "README.md").read_text()
    assert 'base_model: "tiny-bert"' in card
    assert "| train_items | 1950 |" in card
    assert "| loss | batch_all_triplet |" in card
    assert "| map@10 | 0.1650 | 0.2700 | +0.1050 |" in card
    assert "| ndcg@10 | 0.3000 | 0.4100 | +0.1100 |" in card
    assert re.search(r"\| torch \| 2\.\d+", card)
    assert re.search(r"\| transformers \| \d", card)
    assert "| searchtuner | " in card
    assert "Training run: `run-42`" in card
    assert "SentenceTransformer(" in card and "onnxruntime" in card


def test_metrics_present_on_one_side_only_show_a_dash() -> None:
    info = ModelCardInfo(metrics_before={"mrr": 0.5}, metrics_after={"recall@5": 0.9})
    card = render_model_card(info, spec=SPEC, library_versions={}, has_onnx=False)
    assert "| mrr | 0.5000 | – | – |" in card
    assert "| recall@5 | – | 0.9000 | – |" in card
    assert "SentenceTransformer" not in card and "onnxruntime" not in card
    assert "the first 1 backbone blocks" in card


def test_no_timestamp_unless_given() -> None:
    plain = render_model_card(ModelCardInfo(), spec=SPEC, library_versions={}, has_onnx=True)
    dated = render_model_card(
        ModelCardInfo(created_at="2026-11-23T10:00:00Z"), spec=SPEC, library_versions={},
        has_onnx=True,
    )  # fmt: skip
    assert not re.search(r"\d{4}-\d{2}-\d{2}", plain)
    assert "Created: 2026-11-23T10:00:00Z" in dated


def test_unknown_card_fields_list_the_known_ones() -> None:
    with pytest.raises(searchtuner.ConfigError, match="metrics_after"):
        ModelCardInfo.coerce({"metrics": {"map": 1.0}})


def test_numpy_values_become_plain_numbers() -> None:
    info = ModelCardInfo.coerce({"metrics_after": {"map": np.float32(0.5)}})
    assert info.to_dict()["metrics_after"] == {"map": 0.5}


def test_values_without_a_json_form_are_refused() -> None:
    with pytest.raises(searchtuner.ConfigError, match="JSON"):
        ModelCardInfo.coerce({"training_parameters": {"callback": object()}})


def test_the_cards_python_snippets_run(text_bundle: Saved, monkeypatch: pytest.MonkeyPatch) -> None:
    from searchtuner.artifacts import get_model

    # The card documents searchtuner.get_model, the top-level name of artifacts.get_model.
    monkeypatch.setattr(searchtuner, "get_model", get_model, raising=False)
    card = (text_bundle.folder / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    assert len(snippets) == 3
    results = []
    for snippet in snippets:
        namespace: dict[str, object] = {}
        exec(snippet.replace("path/to/this/folder", str(text_bundle.folder)), namespace)
        results.append(np.asarray(namespace["embeddings"]))
    for result in results[1:]:
        np.testing.assert_allclose(result, results[0], atol=1e-5)
