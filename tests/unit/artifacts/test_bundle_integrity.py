"""Tampered bundles, corrupt archives and unsafe tar members are reported, never loaded."""

from __future__ import annotations

import dataclasses
import io
import shutil
import tarfile
from pathlib import Path

import pytest
from bundle_helpers import Saved, stored_file

from searchtuner.artifacts import (
    BundleError,
    get_model,
    load_bundle,
    pack_bundle,
    publish_bundle,
    unpack_bundle,
)
from searchtuner.store import LocalStore


@pytest.fixture
def mlp_copy(mlp_bundle: Saved, tmp_path: Path) -> Path:
    return Path(shutil.copytree(mlp_bundle.folder, tmp_path / "copy"))


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_tampered_weight_file_is_reported_not_loaded(mlp_copy: Path) -> None:
    _flip_last_byte(mlp_copy / "model.safetensors")
    with pytest.raises(BundleError, match=r"model\.safetensors does not match its SHA-256"):
        load_bundle(mlp_copy)


def test_an_edited_config_in_a_text_bundle_is_reported(text_bundle: Saved, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(text_bundle.folder, tmp_path / "copy"))
    config = folder / "config.json"
    config.write_text(
        config.read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 1')
    )
    with pytest.raises(BundleError, match=r"config\.json does not match"):
        load_bundle(folder)


def test_missing_and_unlisted_files_are_reported_together(mlp_copy: Path) -> None:
    (mlp_copy / "model.onnx").unlink()
    (mlp_copy / "pytorch_model.bin").write_bytes(b"not a pickle, but never read")
    with pytest.raises(BundleError) as caught:
        load_bundle(mlp_copy)
    assert "model.onnx is missing" in str(caught.value)
    assert "pytorch_model.bin is not listed" in str(caught.value)


def test_a_folder_without_manifest_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a SearchTuner bundle"):
        load_bundle(tmp_path)


def test_a_newer_format_asks_for_an_upgrade(mlp_copy: Path) -> None:
    manifest = mlp_copy / "searchtuner.json"
    manifest.write_text(manifest.read_text().replace('"format_version": 1', '"format_version": 9'))
    with pytest.raises(BundleError, match="upgrade searchtuner"):
        load_bundle(mlp_copy)


def test_pack_refuses_a_tampered_bundle(mlp_copy: Path, tmp_path: Path) -> None:
    _flip_last_byte(mlp_copy / "README.md")
    with pytest.raises(BundleError, match="README"):
        pack_bundle(mlp_copy, tmp_path / "a.tar")
    assert not (tmp_path / "a.tar").exists()


def test_a_corrupted_archive_fails_its_digest_and_nothing_is_unpacked(
    mlp_bundle: Saved, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "store")
    handle = publish_bundle(mlp_bundle.folder, store)
    _flip_last_byte(stored_file(store, f"models/{handle.sha256}.tar"))
    cache = tmp_path / "cache"

    with pytest.raises(BundleError, match="SHA-256") as caught:
        get_model(handle, cache_dir=cache)

    assert "nothing was loaded" in str(caught.value)
    assert list(cache.iterdir()) == []  # no partial download, no unpacked folder


def test_an_archive_replaced_through_the_store_fails_the_handles_digest(
    mlp_bundle: Saved, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "store")
    handle = publish_bundle(mlp_bundle.folder, store)
    key = f"models/{handle.sha256}.tar"
    data = bytearray(store.get_bytes(key))
    data[-1] ^= 0xFF
    store.put_bytes(key, bytes(data))  # the store's own record now matches the new bytes

    with pytest.raises(BundleError, match="SHA-256") as caught:
        get_model(handle, cache_dir=tmp_path / "cache")

    assert "the handle says" in str(caught.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_truncated_archive_fails_its_size(mlp_bundle: Saved, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    handle = publish_bundle(mlp_bundle.folder, store)
    archive = stored_file(store, f"models/{handle.sha256}.tar")
    archive.write_bytes(archive.read_bytes()[: handle.size // 2])
    with pytest.raises(BundleError, match="truncated"):
        get_model(handle, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_handle_with_the_wrong_digest_is_refused(mlp_bundle: Saved, tmp_path: Path) -> None:
    handle = publish_bundle(mlp_bundle.folder, LocalStore(tmp_path / "store"))
    forged = dataclasses.replace(handle, sha256="0" * 64)
    with pytest.raises(BundleError, match="SHA-256"):
        get_model(forged, cache_dir=tmp_path / "cache")


def test_a_damaged_cache_entry_is_fetched_again(mlp_bundle: Saved, tmp_path: Path) -> None:
    handle = publish_bundle(mlp_bundle.folder, LocalStore(tmp_path / "store"))
    get_model(handle, cache_dir=tmp_path / "cache")
    _flip_last_byte(tmp_path / "cache" / handle.sha256 / "model.safetensors")
    get_model(handle, cache_dir=tmp_path / "cache")  # re-fetched, verified, loaded


def test_a_truncated_local_archive_is_reported(mlp_bundle: Saved, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    pack_bundle(mlp_bundle.folder, archive)
    archive.write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(BundleError, match="corrupt or truncated"):
        unpack_bundle(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.tar"]


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        ok = tarfile.TarInfo("searchtuner.json")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"{}"))
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return archive


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (_member("/etc/evil"), "unsafe path"),
        (_member("../evil"), "unsafe path"),
        (_member("a/../../evil"), "unsafe path"),
        (_member("link", tarfile.SYMTYPE, "/etc/passwd"), "link or a device"),
        (_member("hard", tarfile.LNKTYPE, "searchtuner.json"), "link or a device"),
        (_member("dev", tarfile.CHRTYPE), "link or a device"),
        (_member("fifo", tarfile.FIFOTYPE), "link or a device"),
        (_member("searchtuner.json"), "twice"),
    ],
)
def test_unsafe_members_are_refused_before_anything_is_written(
    tmp_path: Path, member: tarfile.TarInfo, message: str
) -> None:
    archive = _tar_with(tmp_path, member, b"x")
    with pytest.raises(BundleError, match=message):
        unpack_bundle(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar"]
