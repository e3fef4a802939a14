"""Round trips on both backends: bundle → handle → get_model → identical embeddings.

The S3 backend is moto's server on 127.0.0.1; the store is opened from its ``s3://`` URI and
``get_model`` resolves handles with its default opener, exactly as a user's code would (the
endpoint and credentials come from the environment).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import numpy as np
import pytest
import torch
from s3_server import REGION, TEST_CREDENTIALS, fresh_bucket, raw_client

import searchtuner
from searchtuner.artifacts import (
    BundleError,
    ModelHandle,
    publish_bundle,
    publish_checkpoint,
    save_model_checkpoint,
)
from searchtuner.store import LocalStore, Store, open_store

pytestmark = pytest.mark.integration

TEXTS = ["neural search ranks documents by embedding similarity", "a cat", "ünïcödé 🙂", "x"]
VECTORS = np.random.default_rng(1).normal(size=(6, 12)).astype(np.float32)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """One owner's view of a store, opened from its URI, on each backend."""
    if request.param == "local":
        yield open_store(tmp_path.joinpath("store").as_uri()).for_owner("alice")
        return
    endpoint = request.getfixturevalue("s3_endpoint")
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("SEARCHTUNER_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_CREDENTIALS["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_CREDENTIALS["aws_secret_access_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with fresh_bucket(endpoint) as bucket, open_store(f"s3://{bucket}/searchtuner") as opened:
        yield opened.for_owner("alice")


@pytest.fixture(scope="module")
def text_model(tiny_bert_dir: Path) -> searchtuner.EmbeddingModel:
    torch.manual_seed(0)
    model = searchtuner.build_model(tiny_bert_dir, pooling="mean", output_dim=8, max_length=16)
    with torch.no_grad():
        model.projection.bias.add_(0.1)  # type: ignore[operator]
    return model


@pytest.fixture(scope="module")
def mlp_model() -> searchtuner.EmbeddingModel:
    torch.manual_seed(0)
    return searchtuner.build_model("mlp", input_dim=12, hidden_dims=[16], output_dim=8)


def _items(kind: str) -> object:
    return TEXTS if kind == "text" else VECTORS


@pytest.mark.parametrize("kind", ["text", "mlp"])
def test_bundle_to_handle_to_get_model_gives_identical_embeddings(
    kind: str, store: Store, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    model: searchtuner.EmbeddingModel = request.getfixturevalue(f"{kind}_model")
    folder = searchtuner.save_bundle(model, tmp_path / "bundle", onnx=kind == "mlp")

    handle = publish_bundle(folder, store)
    # The handle travels as a string (a job result, an API answer) and comes back.
    restored = searchtuner.get_model(str(handle), cache_dir=tmp_path / "cache")

    assert handle.uri == store.uri(f"models/{handle.sha256}.tar")
    assert handle.uri.startswith(store.uri().split("://")[0] + "://")
    assert store.stat(f"models/{handle.sha256}.tar").sha256 == handle.sha256
    np.testing.assert_array_equal(
        searchtuner.encode(restored, _items(kind)), searchtuner.encode(model, _items(kind))
    )


def test_checkpoint_to_published_handle_to_get_model(
    store: Store, tmp_path: Path, mlp_model: searchtuner.EmbeddingModel
) -> None:
    save_model_checkpoint(mlp_model, store, "runs/r1/best.safetensors", info={"run_id": "r1"})

    first = publish_checkpoint(store, "runs/r1/best.safetensors")
    again = publish_checkpoint(store, "runs/r1/best.safetensors")
    restored = searchtuner.get_model(first, cache_dir=tmp_path / "cache")

    assert again == first
    assert sorted(store.keys()) == [f"models/{first.sha256}.tar", "runs/r1/best.safetensors"]
    np.testing.assert_array_equal(
        searchtuner.encode(restored, VECTORS), searchtuner.encode(mlp_model, VECTORS)
    )


def _flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def _tamper_behind_the_store(handle: ModelHandle) -> None:
    """Change the stored bytes but not the digest the store recorded for them."""
    where = urlsplit(handle.uri)
    if where.scheme == "file":
        # LocalStore: <key>~meta.json is the commit record; it names the data file.
        record = Path(url2pathname(where.path) + "~meta.json")
        data_file = record.parent / json.loads(record.read_text())["data"]
        data_file.write_bytes(_flip_last_byte(data_file.read_bytes()))
        return
    # S3Store: the digest is in the object's metadata; keep it, change the body.
    client = raw_client(os.environ["SEARCHTUNER_S3_ENDPOINT_URL"])
    bucket, key = where.netloc, where.path.lstrip("/")
    stored = client.get_object(Bucket=bucket, Key=key)
    body = _flip_last_byte(stored["Body"].read())
    client.put_object(Bucket=bucket, Key=key, Body=body, Metadata=stored["Metadata"])


@pytest.mark.parametrize(
    ("how", "reported"),
    [
        ("behind the store's back", "does not match the SHA-256 its store recorded"),
        ("replaced through the store", "but the handle says"),
    ],
    ids=["tampered", "replaced"],
)
def test_a_corrupted_stored_archive_is_detected_and_nothing_is_loaded(
    how: str,
    reported: str,
    store: Store,
    tmp_path: Path,
    mlp_model: searchtuner.EmbeddingModel,
) -> None:
    folder = searchtuner.save_bundle(mlp_model, tmp_path / "bundle", onnx=False)
    handle = publish_bundle(folder, store)
    key = f"models/{handle.sha256}.tar"
    if how == "replaced through the store":
        store.put_bytes(key, _flip_last_byte(store.get_bytes(key)))
    else:
        _tamper_behind_the_store(handle)
    cache = tmp_path / "cache"

    with pytest.raises(BundleError, match=reported) as caught:
        searchtuner.get_model(handle, cache_dir=cache)

    assert "nothing was loaded" in str(caught.value)
    assert list(cache.iterdir()) == []  # no partial download, no unpacked folder


def test_a_local_handle_needs_no_store_configuration(
    tmp_path: Path, mlp_model: searchtuner.EmbeddingModel
) -> None:
    """A LocalStore made directly (not from a URI) gives handles the default opener reads."""
    folder = searchtuner.save_bundle(mlp_model, tmp_path / "bundle", onnx=False)
    handle = publish_bundle(folder, LocalStore(tmp_path / "plain").namespace("team"))
    restored = searchtuner.get_model(handle.to_json(), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(
        searchtuner.encode(restored, VECTORS), searchtuner.encode(mlp_model, VECTORS)
    )
