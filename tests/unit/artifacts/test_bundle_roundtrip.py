"""Bundle → archive → handle → get_model gives the same embeddings, for every modality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import TEXTS, Saved, images, vectors

import searchtuner
from searchtuner.artifacts import (
    ModelHandle,
    get_model,
    load_bundle,
    pack_bundle,
    publish_bundle,
)
from searchtuner.artifacts.bundle import HEAD_FILE, WEIGHTS_FILE
from searchtuner.store import LocalStore


def _items(kind: str) -> object:
    return {"text": TEXTS, "image": images(5), "mlp": vectors(7)}[kind]


@pytest.fixture(params=["text", "image", "mlp"])
def saved(request: pytest.FixtureRequest) -> tuple[str, Saved]:
    return request.param, request.getfixturevalue(f"{request.param}_bundle")


def test_bundle_to_handle_to_model_gives_identical_embeddings(
    saved: tuple[str, Saved], tmp_path: Path
) -> None:
    kind, bundle = saved
    items = _items(kind)
    expected = searchtuner.encode(bundle.model, items)

    handle = publish_bundle(bundle.folder, LocalStore(tmp_path / "store"))
    # The handle travels as a string (a job result, a config file) and comes back.
    restored = get_model(str(handle), cache_dir=tmp_path / "cache")

    assert not restored.training
    assert restored.device == torch.device("cpu")
    np.testing.assert_array_equal(searchtuner.encode(restored, items), expected)
    assert restored.spec.embedding_dim == bundle.model.spec.embedding_dim
    assert restored.spec.pooling == bundle.model.spec.pooling
    assert (tmp_path / "cache" / handle.sha256 / "searchtuner.json").is_file()


def test_local_folder_and_local_archive_load_too(saved: tuple[str, Saved], tmp_path: Path) -> None:
    kind, bundle = saved
    items = _items(kind)
    expected = searchtuner.encode(bundle.model, items)
    archive = tmp_path / "model.tar"
    pack_bundle(bundle.folder, archive)

    from_folder = get_model(bundle.folder)
    from_archive = get_model(str(archive), cache_dir=tmp_path / "cache")

    np.testing.assert_array_equal(searchtuner.encode(from_folder, items), expected)
    np.testing.assert_array_equal(searchtuner.encode(from_archive, items), expected)


def test_handle_forms_all_resolve(mlp_bundle: Saved, tmp_path: Path) -> None:
    handle = publish_bundle(mlp_bundle.folder, LocalStore(tmp_path / "store"))
    expected = searchtuner.encode(mlp_bundle.model, vectors(3))
    for form in (handle, handle.to_dict(), handle.to_json(), str(handle)):
        model = get_model(form, cache_dir=tmp_path / "cache")
        np.testing.assert_array_equal(searchtuner.encode(model, vectors(3)), expected)


def test_text_bundle_is_a_hugging_face_folder_and_keeps_the_head_apart(
    text_bundle: Saved,
) -> None:
    from safetensors.torch import load_file
    from transformers import AutoConfig

    folder = text_bundle.folder
    assert AutoConfig.from_pretrained(folder).hidden_size == 32
    encoder_keys = set(load_file(folder / WEIGHTS_FILE))
    assert "embeddings.word_embeddings.weight" in encoder_keys  # HF names, no prefix
    assert not any(key.startswith(("classifier", "backbone.")) for key in encoder_keys)
    assert set(load_file(folder / HEAD_FILE)) == {"projection.weight", "projection.bias"}
    assert (folder / "tokenizer.json").is_file()


def test_manifest_records_spec_preprocessing_digests_and_versions(
    image_bundle: Saved,
) -> None:
    manifest = json.loads((image_bundle.folder / "searchtuner.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["spec"] == image_bundle.model.spec.to_dict()
    assert manifest["preprocessing"]["type"] == "image"
    assert manifest["preprocessing"]["size"] == 32
    assert set(manifest["files"]) == {"README.md", "model.onnx", "model.safetensors"}
    assert {"torch", "transformers", "searchtuner", "safetensors"} <= set(
        manifest["library_versions"]
    )


def test_nothing_is_unpickled_when_loading(
    text_bundle: Saved, image_bundle: Saved, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was called while loading a bundle")

    monkeypatch.setattr(torch, "load", refuse)
    load_bundle(text_bundle.folder)
    load_bundle(image_bundle.folder)


def test_loaded_model_keeps_the_recorded_freeze(tiny_bert_dir: Path, tmp_path: Path) -> None:
    from searchtuner.artifacts import save_bundle

    model = searchtuner.build_model(tiny_bert_dir, freeze=1, max_length=16)
    restored = load_bundle(save_bundle(model, tmp_path / "b", onnx=False))
    frozen = {n for n, p in restored.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen


def test_save_refuses_a_folder_that_is_not_empty(mlp_bundle: Saved) -> None:
    from searchtuner.artifacts import save_bundle

    with pytest.raises(searchtuner.ConfigError, match="not an empty folder"):
        save_bundle(mlp_bundle.model, mlp_bundle.folder)


def test_handle_is_value_like(mlp_bundle: Saved, tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    handle = publish_bundle(mlp_bundle.folder, store)
    assert handle.uri == store.uri(f"models/{handle.sha256}.tar")
    assert handle.uri.startswith("file://") and handle.uri.endswith(f"{handle.sha256}.tar")
    stored = store.stat(f"models/{handle.sha256}.tar")
    assert (stored.size, stored.sha256) == (handle.size, handle.sha256)
    assert ModelHandle.parse(str(handle)) == handle
