"""Owner and namespace views: keys stay inside their prefix."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchtuner.store import InvalidKeyError, LocalStore, NotFound, OwnerStore


@pytest.fixture
def shared(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path)


def test_owner_keys_live_under_owners_prefix(shared: LocalStore) -> None:
    alice = shared.for_owner("alice")
    info = alice.put_bytes("runs/r1/model.bin", b"a")
    assert info.key == "runs/r1/model.bin"
    assert list(shared.keys()) == ["owners/alice/runs/r1/model.bin"]
    assert alice.uri("runs/r1/model.bin") == shared.uri("owners/alice/runs/r1/model.bin")
    assert alice.uri() == shared.uri("owners/alice")


def test_owners_are_isolated(shared: LocalStore) -> None:
    alice, bob, al = shared.for_owner("alice"), shared.for_owner("bob"), shared.for_owner("al")
    alice.put_bytes("secret", b"alice's")
    bob.put_bytes("notes", b"bob's")
    assert list(alice.keys()) == ["secret"]
    assert list(bob.keys()) == ["notes"]
    assert list(al.keys()) == []  # "al" is not a prefix match of "alice"
    assert [i.key for i in alice.list()] == ["secret"]
    with pytest.raises(NotFound):
        bob.get_bytes("secret")
    for sneaky in ["../bob/notes", "../../owners/bob/notes", "/owners/bob/notes"]:
        with pytest.raises(InvalidKeyError):
            alice.get_bytes(sneaky)
        with pytest.raises(InvalidKeyError):
            alice.put_bytes(sneaky, b"overwrite")
    assert bob.get_bytes("notes") == b"bob's"


def test_owner_delete_prefix_and_empty_prefix_stay_inside(shared: LocalStore) -> None:
    alice, bob = shared.for_owner("alice"), shared.for_owner("bob")
    for key in ["a/1", "a/2", "b"]:
        alice.put_bytes(key, b"x")
        bob.put_bytes(key, b"x")
    assert alice.delete_prefix("a/") == 2
    assert alice.delete_prefix("") == 1  # a whole owner can be emptied...
    assert list(alice.keys()) == []
    assert list(bob.keys()) == ["a/1", "a/2", "b"]  # ...without touching anyone else


@pytest.mark.parametrize("owner", ["", ".", "..", "a/b", "../bob", "x y", "al~ice"])
def test_owner_names_are_validated(shared: LocalStore, owner: str) -> None:
    with pytest.raises(InvalidKeyError, match="owner name"):
        OwnerStore(shared, owner)


def test_nested_namespaces(shared: LocalStore) -> None:
    view = shared.namespace("datasets").namespace("wordnet")
    view.put_bytes("shard-0", b"x")
    assert list(shared.keys()) == ["datasets/wordnet/shard-0"]
    assert list(view.keys()) == ["shard-0"]
    assert view.stat("shard-0").key == "shard-0"
    assert view.get_bytes("shard-0") == b"x"
    with pytest.raises(InvalidKeyError):
        shared.namespace("../up")
