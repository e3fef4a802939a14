"""LocalStore: round trips, listing, deletes, atomic writes, digest checks, key validation."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from searchtuner.errors import DataError
from searchtuner.store import (
    IntegrityError,
    InvalidKeyError,
    LocalStore,
    NotFound,
    ObjectInfo,
    Store,
)

MiB = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def data_file(store: LocalStore, key: str) -> Path:
    """The file holding the object's bytes, found through its commit record."""
    *folders, name = key.split("/")
    folder = store.root.joinpath(*folders)
    record = json.loads((folder / f"{name}~meta.json").read_text())
    return folder / record["data"]


def all_files(root: Path) -> list[str]:
    """Every file under ``root`` (none if it does not exist)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_bytes_round_trip_with_digest_and_metadata(store: LocalStore) -> None:
    info = store.put_bytes("runs/r1/model.bin", b"weights", {"epochs": "3"})
    assert info == ObjectInfo(
        "runs/r1/model.bin", 7, hashlib.sha256(b"weights").hexdigest(), {"epochs": "3"}
    )
    assert store.stat("runs/r1/model.bin") == info
    assert store.get_bytes("runs/r1/model.bin") == b"weights"
    assert store.exists("runs/r1/model.bin")
    assert not store.exists("runs/r1/other")


def test_empty_object(store: LocalStore) -> None:
    store.put_bytes("empty", b"")
    assert store.get_bytes("empty") == b""
    assert store.stat("empty").size == 0


def test_overwrite_replaces_and_leaves_one_data_file(store: LocalStore) -> None:
    store.put_bytes("k", b"first")
    store.put_bytes("k", b"second")
    assert store.get_bytes("k") == b"second"
    assert len([p for p in store.root.iterdir() if p.name.endswith(".data")]) == 1


def test_json_helpers(store: LocalStore) -> None:
    store.put_json("cfg.json", {"b": 1, "a": [1, 2]})
    assert store.get_json("cfg.json") == {"a": [1, 2], "b": 1}
    store.put_bytes("not-json", b"\xff\x00")
    with pytest.raises(DataError, match="not UTF-8 JSON"):
        store.get_json("not-json")


def test_file_upload_and_download(store: LocalStore, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    payload = os.urandom(3 * MiB + 17)
    source.write_bytes(payload)
    info = store.put_file("blobs/x.bin", source)
    assert info.sha256 == hashlib.sha256(payload).hexdigest()
    target = tmp_path / "out" / "deep" / "x.bin"
    assert store.download("blobs/x.bin", target) == info
    assert target.read_bytes() == payload
    assert [p.name for p in target.parent.iterdir()] == ["x.bin"]  # no temp file left


def test_missing_source_file_says_so(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        store.put_file("x", tmp_path / "missing.bin")


def test_missing_object(store: LocalStore, tmp_path: Path) -> None:
    for read in (store.get_bytes, store.stat, store.open_stream):
        with pytest.raises(NotFound, match="check the key"):
            read("nothing/here")
    with pytest.raises(NotFound):
        store.download("nothing/here", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_listing_is_sorted_and_prefix_is_a_string_prefix(store: LocalStore) -> None:
    for key in ["b", "a/z", "a/b/c", "a-1", "a", "ab/x", "a.txt"]:
        store.put_bytes(key, key.encode())
    assert list(store.keys()) == sorted(["b", "a/z", "a/b/c", "a-1", "a", "ab/x", "a.txt"])
    assert list(store.keys("a/")) == ["a/b/c", "a/z"]
    assert list(store.keys("a")) == ["a", "a-1", "a.txt", "a/b/c", "a/z", "ab/x"]
    assert list(store.keys("a/b")) == ["a/b/c"]
    assert list(store.keys("zzz/")) == []
    infos = list(store.list("a/"))
    assert [i.key for i in infos] == ["a/b/c", "a/z"]
    assert infos[1].sha256 == hashlib.sha256(b"a/z").hexdigest()


def test_a_key_and_a_folder_of_the_same_name_coexist(store: LocalStore) -> None:
    store.put_bytes("a", b"file")
    store.put_bytes("a/b", b"inside")
    assert store.get_bytes("a") == b"file"
    assert store.get_bytes("a/b") == b"inside"


def test_delete_is_idempotent_and_prunes_folders(store: LocalStore) -> None:
    store.put_bytes("x/y/z", b"1")
    store.delete("x/y/z")
    store.delete("x/y/z")
    store.delete("never/was")
    assert not store.exists("x/y/z")
    assert not (store.root / "x").exists()


def test_delete_prefix(store: LocalStore) -> None:
    for key in ["runs/1/a", "runs/1/b", "runs/10/a", "keep"]:
        store.put_bytes(key, b"x")
    (store.root / "runs" / "1" / "c~tmp-deadbeef").write_bytes(b"leftover")
    assert store.delete_prefix("runs/1/") == 2
    assert list(store.keys()) == ["keep", "runs/10/a"]
    assert not (store.root / "runs" / "1").exists()
    with pytest.raises(InvalidKeyError, match="non-empty prefix"):
        store.delete_prefix("")


def test_uri(store: LocalStore) -> None:
    assert store.uri() == store.root.as_uri()
    assert store.uri("a/b") == f"{store.root.as_uri()}/a/b"


# ---- atomicity ------------------------------------------------------------------------------


def test_leftovers_of_interrupted_writes_are_invisible(store: LocalStore) -> None:
    store.put_bytes("ok", b"fine")
    folder = store.root / "runs"
    folder.mkdir()
    (folder / "half~0123456789abcdef.data").write_bytes(b"half written")  # died before commit
    (folder / "half~tmp-0123456789abcdef").write_text("{")  # died while committing
    (store.root / "ok~tmp-feed").write_text("{")
    assert list(store.keys()) == ["ok"]
    assert not store.exists("runs/half")
    with pytest.raises(NotFound):
        store.get_bytes("runs/half")


def test_missing_record_means_no_object(store: LocalStore) -> None:
    store.put_bytes("k", b"data")
    (store.root / "k~meta.json").unlink()
    assert list(store.keys()) == []
    with pytest.raises(NotFound):
        store.get_bytes("k")


def test_a_failing_stream_leaves_nothing_and_keeps_the_old_object(store: LocalStore) -> None:
    store.put_bytes("k", b"old")
    before = all_files(store.root)

    def chunks() -> Iterator[bytes]:
        yield b"new part"
        raise OSError("producer crashed")

    with pytest.raises(OSError, match="producer crashed"):
        store.put_stream("k", chunks())
    assert store.get_bytes("k") == b"old"
    assert all_files(store.root) == before
    with pytest.raises(DataError, match="not bytes"):
        store.put_stream("k", ["text"])  # type: ignore[list-item]
    assert all_files(store.root) == before


def test_readers_never_see_a_mix_while_a_writer_replaces(store: LocalStore) -> None:
    versions = [bytes([n]) * 200_000 for n in range(4)]
    store.put_bytes("hot", versions[0])
    seen: set[bytes] = set()
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        for _ in range(300):
            if done.is_set():
                return
            try:
                seen.add(store.get_bytes("hot")[:1])
            except BaseException as err:  # collected and asserted on below
                errors.append(err)
                return

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for round_ in range(40):
        store.put_bytes("hot", versions[round_ % 4])
    done.set()
    for reader in readers:
        reader.join(timeout=30)
    assert errors == []
    assert seen <= {v[:1] for v in versions}


# ---- digests ------------------------------------------------------------------------------


def flip_byte(store: LocalStore, key: str) -> None:
    path = data_file(store, key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(store: LocalStore, key: str) -> None:
    path = data_file(store, key)
    path.write_bytes(path.read_bytes()[:-10])


def append(store: LocalStore, key: str) -> None:
    with open(data_file(store, key), "ab") as handle:
        handle.write(b"extra")


@pytest.mark.parametrize("tamper", [flip_byte, truncate, append])
def test_tampered_data_is_detected_and_not_loaded(
    store: LocalStore, tmp_path: Path, tamper: Callable[[LocalStore, str], None]
) -> None:
    payload = os.urandom(3 * MiB)
    store.put_bytes("model.bin", payload)
    tamper(store, "model.bin")
    with pytest.raises(IntegrityError, match="corrupt"):
        store.get_bytes("model.bin")
    target = tmp_path / "dl" / "model.bin"
    with pytest.raises(IntegrityError, match="write it again"):
        store.download("model.bin", target)
    assert all_files(tmp_path / "dl") == []  # no partial or temporary file left
    with pytest.raises(IntegrityError):
        for _ in store.open_stream("model.bin"):
            pass


def test_flipped_byte_is_reported_after_the_last_chunk(store: LocalStore) -> None:
    store.put_bytes("m", os.urandom(3 * MiB))
    flip_byte(store, "m")
    stream = store.open_stream("m")
    chunks = [next(stream) for _ in range(3)]  # each chunk is handed out unverified...
    assert sum(map(len, chunks)) == 3 * MiB
    with pytest.raises(IntegrityError):  # ...and the verdict comes at the end
        next(stream)


def test_a_damaged_record_is_an_integrity_error(store: LocalStore) -> None:
    store.put_bytes("k", b"data")
    (store.root / "k~meta.json").write_text("{not json")
    with pytest.raises(IntegrityError, match="record"):
        store.get_bytes("k")
    store.delete("k")  # still deletable
    assert list(store.keys()) == []


# ---- keys -------------------------------------------------------------------------------


BAD = ["../x", "../../etc/passwd", "/etc/passwd", "a//b", "a/./b", "a b", "x~meta.json", ""]


@pytest.mark.parametrize("key", BAD)
def test_bad_keys_are_refused_everywhere(store: LocalStore, tmp_path: Path, key: str) -> None:
    store.put_bytes("x", b"inside")
    before = all_files(store.root)
    calls: list[Callable[[], object]] = [
        lambda: store.put_bytes(key, b"evil"),
        lambda: store.put_stream(key, [b"evil"]),
        lambda: store.put_file(key, tmp_path / "nothing"),
        lambda: store.get_bytes(key),
        lambda: store.open_stream(key),
        lambda: store.stat(key),
        lambda: store.exists(key),
        lambda: store.download(key, tmp_path / "out"),
        lambda: store.delete(key),
        lambda: list(store.keys(key + "/")),
    ]
    if key:  # uri("") is the store's own URI
        calls.append(lambda: store.uri(key))
    for call in calls:
        with pytest.raises(InvalidKeyError):
            call()
    assert all_files(store.root) == before
    assert not (tmp_path / "out").exists()


def test_nothing_is_written_outside_the_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "root")
    for key in ["../escape", "a/../../escape", "/tmp/escape"]:
        with pytest.raises(InvalidKeyError):
            store.put_bytes(key, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ---- streaming ----------------------------------------------------------------------------


def test_put_stream_of_50_mb_holds_little_memory(store: LocalStore) -> None:
    chunk = MiB
    total = 50 * MiB
    digest = hashlib.sha256()

    def produce() -> Iterator[bytes]:
        for n in range(total // chunk):
            piece = n.to_bytes(4, "big") * (chunk // 4)
            digest.update(piece)
            yield piece

    tracemalloc.start()
    try:
        info = store.put_stream("shards/0.bin", produce())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == total
    assert info.sha256 == digest.hexdigest()
    assert peak < 5 * MiB, f"peak {peak / MiB:.1f} MiB for a 50 MiB stream"
    assert store.stat("shards/0.bin").sha256 == digest.hexdigest()


def test_store_is_a_context_manager(tmp_path: Path) -> None:
    with LocalStore(tmp_path) as opened:
        assert isinstance(opened, Store)
