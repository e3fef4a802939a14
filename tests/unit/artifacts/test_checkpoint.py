"""Checkpoints: one safetensors object that rebuilds the model; publishing it makes a bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import CARD, TEXTS, CountingStore, mlp_model, stored_file, text_model, vectors
from safetensors import safe_open
from safetensors.torch import save as save_safetensors
from torch import nn

import searchtuner
from searchtuner.artifacts import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    get_model,
    load_model_checkpoint,
    publish_checkpoint,
    save_model_checkpoint,
)
from searchtuner.store import IntegrityError, LocalStore, NotFound

KEY = "runs/r1/best.safetensors"
INFO = {**CARD, "best_epoch": 3}  # best_epoch is not a card field: kept, not printed


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def text_folder(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny BERT folder, so a test may delete it."""
    return Path(shutil.copytree(tiny_bert_dir, tmp_path / "tiny-bert"))


def test_mlp_round_trip_gives_identical_embeddings_and_the_info(store: LocalStore) -> None:
    model = mlp_model()
    stored = save_model_checkpoint(model, store, KEY, info=INFO)

    restored, info = load_model_checkpoint(store, KEY)

    assert stored.key == KEY
    assert list(store.keys()) == [KEY]
    assert info == INFO
    assert restored.spec == model.spec
    assert not restored.training
    np.testing.assert_array_equal(
        searchtuner.encode(restored, vectors(5)), searchtuner.encode(model, vectors(5))
    )


def test_text_round_trip_keeps_head_pooling_and_freeze(
    text_folder: Path, store: LocalStore
) -> None:
    model = text_model(text_folder, pooling="cls", output_dim=8, freeze=1)
    save_model_checkpoint(model, store, KEY)

    restored, info = load_model_checkpoint(store, KEY)

    assert info == {}
    assert restored.spec == model.spec
    np.testing.assert_array_equal(
        searchtuner.encode(restored, TEXTS), searchtuner.encode(model, TEXTS)
    )
    frozen = {n for n, p in restored.named_parameters() if not p.requires_grad}
    assert frozen and frozen == {n for n, p in model.named_parameters() if not p.requires_grad}


def test_the_checkpoint_is_one_safetensors_file_with_spec_and_info(
    store: LocalStore, tmp_path: Path
) -> None:
    model = mlp_model()
    save_model_checkpoint(model, store, KEY, info={"run_id": "r1", "loss": np.float32(0.5)})
    store.download(KEY, tmp_path / "c.safetensors")

    with safe_open(str(tmp_path / "c.safetensors"), framework="pt") as opened:
        metadata = opened.metadata()
        names = set(opened.keys())

    assert metadata["format"] == CHECKPOINT_FORMAT == "searchtuner-checkpoint/1"
    assert json.loads(metadata["spec"]) == model.spec.to_dict()
    assert json.loads(metadata["info"]) == {"run_id": "r1", "loss": 0.5}  # numpy → number
    assert names == set(model.state_dict())


def test_nothing_is_unpickled(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> None:
    save_model_checkpoint(mlp_model(), store, KEY)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load was called while loading a checkpoint")

    monkeypatch.setattr(torch, "load", refuse)
    load_model_checkpoint(store, KEY)


def test_a_missing_backbone_folder_is_named_in_the_error(
    text_folder: Path, store: LocalStore
) -> None:
    save_model_checkpoint(text_model(text_folder, output_dim=8), store, KEY)
    shutil.rmtree(text_folder)

    with pytest.raises(CheckpointError, match="local model folder") as caught:
        load_model_checkpoint(store, KEY)

    assert str(text_folder) in str(caught.value)
    assert "Restore the folder" in str(caught.value)


def test_a_missing_checkpoint_is_not_found(store: LocalStore) -> None:
    with pytest.raises(NotFound, match=r"runs/r1/best\.safetensors"):
        load_model_checkpoint(store, KEY)


def test_a_corrupted_stored_checkpoint_fails_its_digest(store: LocalStore) -> None:
    save_model_checkpoint(mlp_model(), store, KEY)
    path = stored_file(store, KEY)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(IntegrityError, match="corrupt"):
        load_model_checkpoint(store, KEY)


def _weights(**metadata: str) -> bytes:
    return save_safetensors({"w": torch.zeros(2)}, metadata=metadata or None)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not safetensors at all", "not a safetensors file"),
        (_weights(), "not a SearchTuner checkpoint"),
        (_weights(format="pt"), "not a SearchTuner checkpoint"),
        (_weights(format="searchtuner-checkpoint/9", spec="{}"), "upgrade searchtuner"),
        (_weights(format=CHECKPOINT_FORMAT, spec="{not json"), "damaged"),
        (_weights(format=CHECKPOINT_FORMAT, spec='{"backbone": "mlp"}'), "damaged"),
    ],
)
def test_objects_that_are_not_checkpoints_are_refused(
    store: LocalStore, data: bytes, message: str
) -> None:
    store.put_bytes(KEY, data)
    with pytest.raises(CheckpointError, match=message):
        load_model_checkpoint(store, KEY)


def test_weights_that_do_not_fit_the_spec_are_refused(store: LocalStore) -> None:
    spec = json.dumps(mlp_model().spec.to_dict())
    store.put_bytes(KEY, _weights(format=CHECKPOINT_FORMAT, spec=spec))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model_checkpoint(store, KEY)


def test_custom_modules_and_bad_info_are_refused_before_writing(store: LocalStore) -> None:
    custom = searchtuner.build_model(nn.Sequential(nn.Linear(4, 3)), layer="0", input_shape=(4,))
    with pytest.raises(searchtuner.ConfigError, match=r"custom nn\.Module"):
        save_model_checkpoint(custom, store, KEY)
    with pytest.raises(searchtuner.ConfigError, match="not JSON-serialisable"):
        save_model_checkpoint(mlp_model(), store, KEY, info={"when": object()})
    assert list(store.keys()) == []


def test_publishing_a_checkpoint_twice_returns_the_same_handle_and_stores_once(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "store")
    alice = store.for_owner("alice")
    model = mlp_model()
    save_model_checkpoint(model, alice, KEY, info=INFO)

    first = publish_checkpoint(alice, KEY)
    again = publish_checkpoint(alice, KEY)

    archive = f"owners/alice/models/{first.sha256}.tar"
    assert again == first
    assert store.puts == [f"owners/alice/{KEY}", archive]
    assert list(store.keys()) == [archive, f"owners/alice/{KEY}"]
    assert first.uri == store.uri(archive)
    restored = get_model(str(first), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(
        searchtuner.encode(restored, vectors(4)), searchtuner.encode(model, vectors(4))
    )


def test_the_published_card_comes_from_the_checkpoint_info(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    save_model_checkpoint(mlp_model(), store, KEY, info=INFO)
    handle = publish_checkpoint(store, KEY, onnx=False)

    get_model(handle, cache_dir=tmp_path / "cache")
    folder = tmp_path / "cache" / handle.sha256
    manifest = json.loads((folder / "searchtuner.json").read_text())
    card = (folder / "README.md").read_text()

    assert manifest["card"]["run_id"] == "run-42"
    assert manifest["card"]["metrics_after"] == CARD["metrics_after"]
    assert "best_epoch" not in manifest["card"]
    assert "model.onnx" not in manifest["files"]
    assert "0.27" in card and "1950" in card and "batch_all_triplet" in card
