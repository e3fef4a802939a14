"""Key, prefix, owner-name and metadata validation."""

from __future__ import annotations

import pytest

from searchtuner.errors import ConfigError
from searchtuner.store import InvalidKeyError, validate_key, validate_prefix, validate_segment
from searchtuner.store.keys import is_valid_key, validate_metadata

GOOD_KEYS = ["a", "a/b", "runs/r-1/model.v2.onnx", ".hidden/x", "A_b-C.9", "x" * 1024]
BAD_KEYS = [
    ("", "empty"),
    ("../x", "segment 1 '..'"),
    ("a/../../etc/passwd", "segment 2 '..'"),
    ("/etc/passwd", "starts with '/'"),
    ("a//b", "segment 2 is empty"),
    ("a/", "segment 2 is empty"),
    ("a/./b", "segment 2 '.'"),
    ("a b", "contains ' '"),
    ("a\\b", "contains '\\\\'"),
    ("x~meta.json", "contains '~'"),
    ("caf\u00e9", "contains '\u00e9'"),
    ("a/b\x00", "segment 2"),
    ("x" * 1025, "1025 characters"),
]


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_good_keys_pass(key: str) -> None:
    assert validate_key(key) == key
    assert is_valid_key(key)


@pytest.mark.parametrize(("key", "said"), BAD_KEYS)
def test_bad_keys_name_what_is_wrong(key: str, said: str) -> None:
    with pytest.raises(InvalidKeyError) as caught:
        validate_key(key)
    assert said in str(caught.value)
    assert isinstance(caught.value, ConfigError)
    assert not is_valid_key(key)


def test_a_key_that_is_not_a_string_is_rejected() -> None:
    with pytest.raises(InvalidKeyError, match="must be a string"):
        validate_key(b"a")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["", "a", "a/", "a/b", "a/b/", "runs/r-"])
def test_good_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "../", "a//", "/a", "a/../", "a b"])
def test_bad_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_prefix(prefix)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../b", "a b", "x~"])
def test_owner_names_are_one_plain_segment(name: str) -> None:
    with pytest.raises(InvalidKeyError, match="owner name"):
        validate_segment(name, what="owner name")


def test_metadata_rules() -> None:
    assert validate_metadata(None) == {}
    assert validate_metadata({"run-id": "r1", "epochs": "3"}) == {"run-id": "r1", "epochs": "3"}
    with pytest.raises(ConfigError, match="reserved"):
        validate_metadata({"sha256": "x"})
    with pytest.raises(ConfigError, match="lowercase"):
        validate_metadata({"Run_ID": "x"})
    with pytest.raises(ConfigError, match="printable ASCII"):
        validate_metadata({"note": "caf\u00e9"})
    with pytest.raises(ConfigError, match="printable ASCII"):
        validate_metadata({"n": 3})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="put_json"):
        validate_metadata({"big": "x" * 2000})
