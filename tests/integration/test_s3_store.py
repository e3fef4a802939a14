"""The store contract on both backends, against a real S3-compatible server on 127.0.0.1.

The S3 backend talks HTTP to moto's server (started by ``s3_server.s3_endpoint``); boto3 is
never patched. Failure modes are provoked for real: a missing bucket, a port with nothing
listening, a proxy answering ``503 SlowDown``, moto's IAM authentication.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from s3_server import (
    FlakyProxy,
    free_port,
    moto_auth,
    raw_client,
    session,
)

from searchtuner.store import (
    BucketNotFound,
    IntegrityError,
    InvalidKeyError,
    LocalStore,
    NotFound,
    S3Store,
    Store,
    StoreAccessDenied,
    StoreUnavailable,
    open_store,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
SMALL_PARTS = {"multipart_threshold": 5 * MiB, "part_size": 5 * MiB}


def s3_store(endpoint: str, bucket: str, **options: object) -> S3Store:
    settings: dict[str, object] = {"endpoint_url": endpoint, "session": session(), **SMALL_PARTS}
    settings.update(options)
    return S3Store(bucket, "searchtuner", **settings)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same contract runs on the local backend and on S3 (5 MiB parts, so it's quick)."""
    if request.param == "local":
        yield LocalStore(tmp_path / "store")
        return
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    with s3_store(endpoint, bucket) as opened:
        yield opened


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# ---- tampering behind the store's back ----------------------------------------------------


def tamper(store: Store, key: str, change: Callable[[bytes], bytes]) -> None:
    """Rewrite an object's bytes without going through the store (digest left as it was)."""
    if isinstance(store, LocalStore):
        *folders, name = key.split("/")
        folder = store.root.joinpath(*folders)
        data_file = folder / json.loads((folder / f"{name}~meta.json").read_text())["data"]
        data_file.write_bytes(change(data_file.read_bytes()))
        return
    assert isinstance(store, S3Store)
    client = raw_client(store.endpoint)
    full = f"{store.prefix}/{key}"
    old = client.get_object(Bucket=store.bucket, Key=full)
    client.put_object(
        Bucket=store.bucket, Key=full, Body=change(old["Body"].read()), Metadata=old["Metadata"]
    )


def flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


def drop_tail(data: bytes) -> bytes:
    return data[: len(data) - 1000]


# ---- the contract, on both backends -------------------------------------------------------


def test_round_trip(store: Store) -> None:
    info = store.put_bytes("runs/r1/model.bin", b"weights", {"epochs": "3"})
    assert (info.key, info.size) == ("runs/r1/model.bin", 7)
    assert info.sha256 == hashlib.sha256(b"weights").hexdigest()
    assert store.stat("runs/r1/model.bin") == info
    assert store.get_bytes("runs/r1/model.bin") == b"weights"
    assert store.exists("runs/r1/model.bin") and not store.exists("runs/r1/nothing")
    store.put_json("runs/r1/metrics.json", {"map@10": 0.27})
    assert store.get_json("runs/r1/metrics.json") == {"map@10": 0.27}
    store.put_bytes("runs/r1/model.bin", b"better weights")
    assert store.get_bytes("runs/r1/model.bin") == b"better weights"
    assert store.stat("runs/r1/model.bin").metadata == {}


def test_listing_deleting(store: Store) -> None:
    for key in ["b", "a/z", "a/b/c", "a-1", "a", "ab/x"]:
        store.put_bytes(key, key.encode())
    assert list(store.keys()) == ["a", "a-1", "a/b/c", "a/z", "ab/x", "b"]
    assert list(store.keys("a/")) == ["a/b/c", "a/z"]
    assert [i.key for i in store.list("a")] == ["a", "a-1", "a/b/c", "a/z", "ab/x"]
    assert store.get_bytes("a") == b"a" and store.get_bytes("a/z") == b"a/z"
    store.delete("a")
    store.delete("a")  # idempotent
    store.delete("never-existed")
    assert store.delete_prefix("a/") == 2
    assert list(store.keys()) == ["a-1", "ab/x", "b"]


def test_missing_objects(store: Store, tmp_path: Path) -> None:
    for read in (store.get_bytes, store.stat, store.open_stream):
        with pytest.raises(NotFound):
            read("no/such/key")
    with pytest.raises(NotFound):
        store.download("no/such/key", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_multipart_stream_and_file(store: Store, tmp_path: Path) -> None:
    payload = os.urandom(12 * MiB + 12345)
    info = store.put_stream("shards/0.bin", chunked(payload, 700 * 1024))
    assert info.sha256 == hashlib.sha256(payload).hexdigest()
    assert store.stat("shards/0.bin") == info
    assert b"".join(store.open_stream("shards/0.bin")) == payload

    source = tmp_path / "model.onnx"
    source.write_bytes(payload[::-1])
    info = store.put_file("models/model.onnx", source, {"format": "onnx"})
    target = tmp_path / "back" / "model.onnx"
    assert store.download("models/model.onnx", target) == info
    assert target.read_bytes() == payload[::-1]
    assert list(store.keys()) == ["models/model.onnx", "shards/0.bin"]  # no temporary keys
    if isinstance(store, S3Store):
        client = raw_client(store.endpoint)
        raw_keys = [o["Key"] for o in client.list_objects_v2(Bucket=store.bucket)["Contents"]]
        assert raw_keys == ["searchtuner/models/model.onnx", "searchtuner/shards/0.bin"]
        assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_failed_stream_leaves_the_old_object(store: Store) -> None:
    store.put_bytes("shard", b"old")

    def crashing() -> Iterator[bytes]:
        yield os.urandom(6 * MiB)  # enough to start a multipart upload on S3
        yield os.urandom(6 * MiB)
        raise RuntimeError("producer crashed")

    with pytest.raises(RuntimeError, match="producer crashed"):
        store.put_stream("shard", crashing())
    assert store.get_bytes("shard") == b"old"
    assert list(store.keys()) == ["shard"]
    if isinstance(store, S3Store):
        client = raw_client(store.endpoint)
        assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


@pytest.mark.parametrize("change", [flip_middle_byte, drop_tail])
def test_corrupted_or_truncated_object_is_detected_not_loaded(
    store: Store, tmp_path: Path, change: Callable[[bytes], bytes]
) -> None:
    payload = os.urandom(6 * MiB)
    store.put_bytes("model.bin", payload)
    tamper(store, "model.bin", change)
    with pytest.raises(IntegrityError, match="corrupt") as caught:
        store.get_bytes("model.bin")
    assert hashlib.sha256(payload).hexdigest() in str(caught.value)
    target = tmp_path / "dl" / "model.bin"
    with pytest.raises(IntegrityError):
        store.download("model.bin", target)
    assert not target.exists()
    assert not (target.parent.exists() and any(target.parent.iterdir()))
    with pytest.raises(IntegrityError):
        for _ in store.open_stream("model.bin"):
            pass


def test_owner_isolation(store: Store) -> None:
    alice, bob = store.for_owner("alice"), store.for_owner("bob")
    alice.put_bytes("secret", b"a")
    bob.put_bytes("notes", b"b")
    assert list(alice.keys()) == ["secret"]
    assert list(store.keys()) == ["owners/alice/secret", "owners/bob/notes"]
    with pytest.raises(NotFound):
        alice.get_bytes("notes")
    with pytest.raises(InvalidKeyError):
        alice.get_bytes("../bob/notes")


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a//b", "a b", "x~meta.json"])
def test_bad_keys(store: Store, key: str) -> None:
    with pytest.raises(InvalidKeyError):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidKeyError):
        store.get_bytes(key)
    assert list(store.keys()) == []


# ---- S3 only ------------------------------------------------------------------------------


def test_object_without_digest_is_refused(s3_endpoint: str, s3_bucket: str) -> None:
    raw_client(s3_endpoint).put_object(Bucket=s3_bucket, Key="searchtuner/foreign", Body=b"x")
    with s3_store(s3_endpoint, s3_bucket) as store, pytest.raises(IntegrityError, match="sha256"):
        store.get_bytes("foreign")


def test_stream_above_copy_limit_uses_part_copies(s3_endpoint: str, s3_bucket: str) -> None:
    with s3_store(s3_endpoint, s3_bucket) as store:
        assert isinstance(store, S3Store)
        store._copy_object_limit = 6 * MiB  # stands in for CopyObject's 5 GiB
        payload = os.urandom(13 * MiB)
        info = store.put_stream("big", chunked(payload, MiB))
        assert store.get_bytes("big") == payload
        assert store.stat("big") == info


def test_open_store_uses_the_environment(
    s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with open_store(f"s3://{s3_bucket}/env") as store:
        store.put_bytes("k", b"v")
        assert store.get_bytes("k") == b"v"
    assert raw_client(s3_endpoint).head_object(Bucket=s3_bucket, Key="env/k")["ContentLength"] == 1


@pytest.mark.slow
def test_200_mb_multipart_upload_and_streamed_download(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    size = 200 * MiB
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as handle:
        for _ in range(size // MiB):
            block = os.urandom(MiB)
            digest.update(block)
            handle.write(block)
    with S3Store(s3_bucket, endpoint_url=s3_endpoint, session=session()) as store:
        started = time.perf_counter()
        info = store.put_file("big.bin", source)
        upload_s = time.perf_counter() - started
        head = raw_client(s3_endpoint).head_object(Bucket=s3_bucket, Key="big.bin", PartNumber=1)
        assert head["PartsCount"] == 13  # 12 parts of 16 MiB and one of 8 MiB
        started = time.perf_counter()
        target = tmp_path / "back.bin"
        assert store.download("big.bin", target) == info
        download_s = time.perf_counter() - started
    assert info.size == size and info.sha256 == digest.hexdigest()
    assert target.stat().st_size == size
    print(
        f"\n200 MiB through moto: upload {size / MiB / upload_s:.0f} MiB/s ({upload_s:.1f} s, "
        f"multipart), download {size / MiB / download_s:.0f} MiB/s ({download_s:.1f} s, "
        "streamed + verified)"
    )


def test_missing_bucket(s3_endpoint: str) -> None:
    with S3Store("no-such-bucket", endpoint_url=s3_endpoint, session=session()) as store:
        calls: list[Callable[[], object]] = [
            lambda: store.stat("k"),
            lambda: store.get_bytes("k"),
            lambda: store.put_bytes("k", b"x"),
            lambda: list(store.keys()),
            lambda: store.exists("k"),
        ]
        for call in calls:
            with pytest.raises(BucketNotFound, match="aws s3 mb s3://no-such-bucket"):
                call()


def test_unreachable_endpoint_fails_fast() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = S3Store(
        "bucket", endpoint_url=endpoint, session=session(), max_attempts=2, connect_timeout=1
    )
    started = time.perf_counter()
    with pytest.raises(StoreUnavailable, match="cannot reach S3") as caught:
        store.get_bytes("k")
    assert endpoint in str(caught.value)
    assert time.perf_counter() - started < 10


def test_throttling_is_retried(s3_endpoint: str, s3_bucket: str) -> None:
    with FlakyProxy(s3_endpoint, failures=2) as proxy:
        store = s3_store(proxy.endpoint, s3_bucket, max_attempts=4)
        store.put_bytes("k", b"after retries")
        assert proxy.throttled == 2 and proxy.forwarded == 1
        assert store.get_bytes("k") == b"after retries"


def test_throttling_until_attempts_run_out(s3_endpoint: str, s3_bucket: str) -> None:
    with FlakyProxy(s3_endpoint, failures=-1) as proxy:
        store = s3_store(proxy.endpoint, s3_bucket, max_attempts=3)
        with pytest.raises(StoreUnavailable, match=r"SlowDown.*after 3 attempt\(s\)"):
            store.put_bytes("k", b"x")
        assert proxy.throttled == 3 and proxy.forwarded == 0


def test_bad_credentials_and_access_denied(s3_endpoint: str, s3_bucket: str) -> None:
    """moto's server checks signatures and IAM policies once its authentication is on."""
    iam = session().client("iam", endpoint_url=s3_endpoint)
    user = f"reader-{s3_bucket}"
    iam.create_user(UserName=user)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{s3_bucket}", f"arn:aws:s3:::{s3_bucket}/*"],
            }
        ],
    }
    iam.put_user_policy(UserName=user, PolicyName="read", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    s3_store(s3_endpoint, s3_bucket).put_bytes("k", b"readable")

    def as_user(key_id: str, secret: str) -> S3Store:
        credentials = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
        return S3Store(
            s3_bucket,
            "searchtuner",
            endpoint_url=s3_endpoint,
            session=session(**credentials),
            max_attempts=1,
        )

    reader = as_user(key["AccessKeyId"], key["SecretAccessKey"])
    with moto_auth(s3_endpoint):
        assert reader.get_bytes("k") == b"readable"
        with pytest.raises(StoreAccessDenied, match=r"access denied writing .*AccessDenied"):
            reader.put_bytes("k", b"overwrite")
        with pytest.raises(StoreAccessDenied, match=r"bad credentials.*SignatureDoesNotMatch"):
            as_user(key["AccessKeyId"], "wrong-secret").get_bytes("k")
        with pytest.raises(StoreAccessDenied, match=r"bad credentials.*InvalidAccessKeyId"):
            list(as_user("AKIAUNKNOWN000000000", "whatever").keys())
    assert reader.get_bytes("k") == b"readable"
