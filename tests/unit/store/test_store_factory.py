"""open_store: URIs to backends, without any network."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchtuner.errors import ConfigError
from searchtuner.store import LocalStore, S3Store, open_store


def test_file_uri_and_plain_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    by_uri = open_store(tmp_path.as_uri())
    assert isinstance(by_uri, LocalStore)
    assert by_uri.root == tmp_path.resolve()
    assert open_store(str(tmp_path)).root == tmp_path.resolve()  # type: ignore[attr-defined]
    assert open_store(tmp_path).root == tmp_path.resolve()  # type: ignore[attr-defined]
    monkeypatch.chdir(tmp_path)
    assert open_store("rel/dir").root == tmp_path / "rel" / "dir"  # type: ignore[attr-defined]
    assert open_store(by_uri.uri()).uri() == by_uri.uri()
    assert open_store("file://./rel/dir").root == tmp_path / "rel" / "dir"  # type: ignore[attr-defined]
    assert open_store("file://../up").root == tmp_path.parent / "up"  # type: ignore[attr-defined]


def test_file_uri_with_a_host_is_refused() -> None:
    with pytest.raises(ConfigError, match="file:///"):
        open_store("file://server/share")


def test_s3_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHTUNER_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    store = open_store("s3://my-bucket/teams/search/")
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == ("my-bucket", "teams/search")
    assert store.endpoint == "http://127.0.0.1:9"
    assert store.uri("a/b") == "s3://my-bucket/teams/search/a/b"
    assert open_store("s3://my-bucket").uri("k") == "s3://my-bucket/k"


def test_aws_endpoint_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEARCHTUNER_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8")
    assert open_store("s3://my-bucket").endpoint == "http://127.0.0.1:8"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("uri", "said"),
    [
        ("gs://bucket/x", "unknown store URI scheme 'gs'; allowed: file, s3"),
        ("fiel:///tmp/x", "did you mean 'file'?"),
        ("s3://Bad_Bucket/x", "bucket name"),
        ("s3://ok-bucket/../x", "S3 prefix"),
        ("s3://ok-bucket/x?versionId=1", "query"),
        ("", "non-empty"),
    ],
)
def test_bad_uris_say_what_to_fix(uri: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(uri)
    assert said in str(caught.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("part_size", 1024),
        ("part_size", 6 * 1024**3),
        ("max_attempts", 0),
        ("multipart_threshold", 0),
    ],
)
def test_s3_store_checks_its_options(option: str, value: int) -> None:
    with pytest.raises(ConfigError, match=option):
        S3Store("ok-bucket", endpoint_url="http://127.0.0.1:9", **{option: value})  # type: ignore[arg-type]


def test_s3_store_refuses_a_malformed_endpoint() -> None:
    with pytest.raises(ConfigError, match="endpoint"):
        S3Store("ok-bucket", endpoint_url="not a url")
