"""Handles: compact and JSON forms, content addressing, idempotent publishing, store openers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import CountingStore, Saved, text_model, vectors
from torch import nn

import searchtuner
from searchtuner.artifacts import (
    ModelCardInfo,
    ModelHandle,
    get_model,
    pack_bundle,
    publish_bundle,
    publish_model,
    save_bundle,
)
from searchtuner.artifacts.errors import BundleError
from searchtuner.store import LocalStore

SHA = "ab" * 32
HANDLE = ModelHandle(uri="s3://bucket/owners/alice/models/x.tar", sha256=SHA, size=1234)


def test_compact_string_round_trips() -> None:
    text = str(HANDLE)
    assert text == f"stm1:{SHA}:1234@s3://bucket/owners/alice/models/x.tar"
    assert ModelHandle.parse(text) == HANDLE


def test_json_and_dict_round_trip() -> None:
    assert ModelHandle.from_json(HANDLE.to_json()) == HANDLE
    assert ModelHandle.parse(HANDLE.to_json()) == HANDLE
    assert ModelHandle.from_dict(json.loads(HANDLE.to_json())) == HANDLE
    assert ModelHandle.coerce(HANDLE.to_dict()) == HANDLE


def test_uri_with_at_signs_and_colons_survives() -> None:
    handle = ModelHandle(uri="s3://user@host:9000/b/k@v1.tar", sha256=SHA, size=0)
    assert ModelHandle.parse(str(handle)) == handle


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        f"stm1:{SHA}@s3://b/k",  # no size
        f"stm1:{SHA[:-1]}:12@s3://b/k",  # short digest
        f"stm1:{SHA.upper()}:12@s3://b/k",  # uppercase digest
        f"stm1:{SHA}:-1@s3://b/k",
        f"stm:{SHA}:12@s3://b/k",  # no format version
        f"stm1:{SHA}:12@",  # no URI
    ],
)
def test_malformed_compact_handles_say_the_expected_form(text: str) -> None:
    with pytest.raises(searchtuner.ConfigError, match=r"stm<format>:<sha256>:<size>@<uri>"):
        ModelHandle.parse(text)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"uri": "not a uri", "sha256": SHA, "size": 1}, "uri must be a URI"),
        ({"uri": "s3://b/k", "sha256": "xyz", "size": 1}, "sha256 must be 64"),
        ({"uri": "s3://b/k", "sha256": SHA, "size": -1}, "size must be"),
        ({"uri": "s3://b/k", "sha256": SHA, "size": 1, "format_version": 0}, "format_version"),
        ({"uri": "s3://b/k", "sha256": SHA}, r"missing \['size'\]"),
        ({"uri": "s3://b/k", "sha256": SHA, "size": 1, "owner": "x"}, r"unknown \['owner'\]"),
    ],
)
def test_malformed_handle_fields_are_named(fields: dict[str, object], message: str) -> None:
    with pytest.raises(searchtuner.ConfigError, match=message):
        ModelHandle.from_dict(fields)


def test_bad_json_handle() -> None:
    with pytest.raises(searchtuner.ConfigError, match="does not parse"):
        ModelHandle.parse("{not json")


def test_a_string_that_is_neither_path_nor_handle_is_refused(tmp_path: Path) -> None:
    with pytest.raises(searchtuner.ConfigError, match="not a bundle folder"):
        get_model(str(tmp_path / "nowhere"))


def test_saving_twice_gives_the_same_archive_digest_onnx_included(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    model = text_model(tiny_bert_dir, pooling="mean", output_dim=8)
    first = save_bundle(model, tmp_path / "one", card={"metrics_after": {"map@10": 0.3}})
    second = save_bundle(model, tmp_path / "two", card={"metrics_after": {"map@10": 0.3}})
    assert "model.onnx" in json.loads((first / "searchtuner.json").read_text())["files"]

    digest = pack_bundle(first, tmp_path / "one.tar")

    assert pack_bundle(second, tmp_path / "two.tar") == digest
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()


@pytest.mark.parametrize("kind", ["text", "image", "mlp"])
def test_a_loaded_model_saves_to_the_same_bytes(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    saved: Saved = request.getfixturevalue(f"{kind}_bundle")
    loaded = get_model(saved.folder)
    assert loaded.spec == saved.model.spec

    again = save_bundle(loaded, tmp_path / "again", card=ModelCardInfo.coerce(_card(saved)))

    assert pack_bundle(again, tmp_path / "b.tar") == pack_bundle(saved.folder, tmp_path / "a.tar")


def _card(saved: Saved) -> dict[str, object]:
    card: dict[str, object] = json.loads((saved.folder / "searchtuner.json").read_text())["card"]
    return card


def test_a_different_checkpoint_gives_a_different_digest(mlp_bundle: Saved, tmp_path: Path) -> None:
    model = searchtuner.build_model(
        "mlp", input_dim=12, hidden_dims=[32, 16], output_dim=8, normalize=False
    )
    with torch.no_grad():
        model.projection.bias.add_(1.0)  # type: ignore[operator]
    other = save_bundle(model, tmp_path / "other", onnx=False)
    assert pack_bundle(other, tmp_path / "b.tar") != pack_bundle(
        mlp_bundle.folder, tmp_path / "a.tar"
    )


def test_publishing_the_same_checkpoint_twice_returns_the_same_handle_and_stores_once(
    tmp_path: Path,
) -> None:
    from bundle_helpers import mlp_model

    store = CountingStore(tmp_path / "store")
    first = publish_model(mlp_model(), store.for_owner("alice"))
    again = publish_model(mlp_model(), store.for_owner("alice"))

    assert again == first
    assert store.puts == [f"owners/alice/models/{first.sha256}.tar"]
    assert list(store.keys()) == [f"owners/alice/models/{first.sha256}.tar"]
    assert first.uri == store.uri(f"owners/alice/models/{first.sha256}.tar")


def test_an_object_with_other_bytes_under_the_key_is_replaced(
    mlp_bundle: Saved, tmp_path: Path
) -> None:
    store = CountingStore(tmp_path / "store")
    handle = publish_bundle(mlp_bundle.folder, store)
    key = f"models/{handle.sha256}.tar"
    store.put_bytes(key, b"not the archive")

    assert publish_bundle(mlp_bundle.folder, store) == handle
    assert store.puts == [key, key]
    assert store.stat(key).sha256 == handle.sha256


def test_a_custom_store_opener_resolves_other_schemes(mlp_bundle: Saved, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    local = publish_bundle(mlp_bundle.folder, store)
    handle = ModelHandle(
        uri=f"memory://bucket/models/{local.sha256}.tar", sha256=local.sha256, size=local.size
    )
    opened: list[str] = []

    def opener(uri: str) -> tuple[LocalStore, str]:
        opened.append(uri)
        return store, uri.removeprefix("memory://bucket/")

    model = get_model(handle, store_opener=opener, cache_dir=tmp_path / "cache")

    assert opened == [handle.uri]
    np.testing.assert_array_equal(
        searchtuner.encode(model, vectors(3)), searchtuner.encode(mlp_bundle.model, vectors(3))
    )


def test_without_an_opener_only_file_and_s3_uris_resolve(tmp_path: Path) -> None:
    other = ModelHandle(uri="gs://bucket/models/x.tar", sha256=SHA, size=1234)
    with pytest.raises(searchtuner.ConfigError, match="allowed: file, s3"):
        get_model(other, cache_dir=tmp_path)


def test_a_missing_archive_is_reported(tmp_path: Path) -> None:
    handle = ModelHandle(uri=(tmp_path / "gone.tar").as_uri(), sha256=SHA, size=10)
    with pytest.raises(BundleError, match="no model archive"):
        get_model(handle, cache_dir=tmp_path / "cache")


def test_a_newer_format_handle_asks_for_an_upgrade(tmp_path: Path) -> None:
    handle = ModelHandle(uri="file:///x.tar", sha256=SHA, size=1, format_version=7)
    with pytest.raises(BundleError, match="upgrade searchtuner"):
        get_model(handle, cache_dir=tmp_path)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(6, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.body(x))
        return out


def test_custom_modules_are_refused_with_the_reason(tmp_path: Path) -> None:
    model = searchtuner.build_model(_Net(), layer="body", input_shape=(6,))
    with pytest.raises(searchtuner.ConfigError, match=r"custom nn\.Module") as caught:
        save_bundle(model, tmp_path / "b")
    assert "needs its Python code" in str(caught.value)
    assert not (tmp_path / "b").exists()


def test_an_opener_from_a_store_factory_splits_store_and_key(
    mlp_bundle: Saved, tmp_path: Path
) -> None:
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from searchtuner.artifacts import opener_from_store_factory

    handle = publish_bundle(mlp_bundle.folder, LocalStore(tmp_path / "store"))
    opened: list[str] = []

    def open_store(uri: str) -> LocalStore:
        opened.append(uri)
        return LocalStore(url2pathname(urlparse(uri).path))

    get_model(handle, store_opener=opener_from_store_factory(open_store), cache_dir=tmp_path / "c")
    assert opened == [(tmp_path / "store" / "models").as_uri()]
