"""The S3 backend (AWS S3 or any S3-compatible server), through boto3.

Digests: every object carries its sha256 and size in user metadata (``x-amz-meta-sha256``,
``x-amz-meta-size``); reads verify them. S3 fixes an object's metadata when the upload starts,
so the digest must be known first:

* ``put_bytes`` and small streams/files (below ``multipart_threshold``): hashed in memory,
  one PutObject.
* ``put_file`` above the threshold: a first pass hashes the file (local, fast), then a
  multipart upload to the final key with the digest in CreateMultipartUpload's metadata. The
  file is hashed again while its parts go up; if it changed in between the upload is aborted.
* ``put_stream`` above the threshold: the digest is only known at the end, so the parts go to
  a temporary key ``<prefix>/~uploads/<token>``, then a server-side copy to the final key sets
  the metadata (CopyObject with ``MetadataDirective=REPLACE``; objects over 5 GiB, CopyObject's
  limit, are copied part by part with UploadPartCopy), then the temporary key is deleted. The
  copy costs server-side time, not client bandwidth.

S3 makes an object visible only when its PutObject, CompleteMultipartUpload or copy has
finished, so writes are atomic. An upload interrupted by a crash can leave an incomplete
multipart upload or a ``~uploads/`` object behind (never visible as a key); a bucket lifecycle
rule (AbortIncompleteMultipartUpload, expiry on ``~uploads/``) removes them.

Throttling and 5xx answers are retried by botocore's "standard" retry mode (exponential backoff
with jitter, ``max_attempts`` in all), as are dropped connections.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import secrets
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from searchtuner.errors import ConfigError, DataError, SearchTunerError
from searchtuner.store.base import (
    CHUNK_SIZE,
    ObjectInfo,
    Store,
    as_bytes,
    corrupt,
    file_digest,
    read_chunks,
)
from searchtuner.store.errors import (
    BucketNotFound,
    IntegrityError,
    InvalidKeyError,
    NotFound,
    StoreError,
)
from searchtuner.store.keys import (
    MAX_KEY_LENGTH,
    RESERVED_METADATA,
    is_valid_key,
    validate_key,
    validate_metadata,
    validate_prefix,
)
from searchtuner.store.s3_errors import botocore_error, classify, s3_error

MiB = 1024 * 1024
GiB = 1024 * MiB
MIN_PART_SIZE = 5 * MiB
"""S3's smallest part (all but the last)."""
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_COPY_OBJECT = 5 * GiB
"""Largest object CopyObject can copy in one request; larger ones use UploadPartCopy."""
_UPLOADS = "~uploads"
_log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _positive(name: str, value: int, low: int, high: int) -> int:
    if not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


class _Multipart:
    """One multipart upload: parts go up in order; ``abort`` on any failure."""

    def __init__(self, store: S3Store, key: str, metadata: dict[str, str] | None) -> None:
        self.store = store
        self.key = key
        self.parts: list[dict[str, Any]] = []
        extra: dict[str, Any] = {"Metadata": metadata} if metadata is not None else {}
        with store._errors("starting a multipart upload to", key):
            answer = store._client.create_multipart_upload(
                Bucket=store.bucket, Key=key, ChecksumAlgorithm="CRC32", **extra
            )
        self.upload_id: str = answer["UploadId"]

    def send(self, body: bytes) -> None:
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise StoreError(
                f"upload to {self.store.uri()}/{self.key} needs more than {MAX_PARTS} parts; "
                f"raise part_size (now {self.store.part_size} bytes)"
            )
        with self.store._errors("uploading a part to", self.key):
            answer = self.store._client.upload_part(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm="CRC32",
            )
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if answer.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = answer["ChecksumCRC32"]
        self.parts.append(part)

    def complete(self) -> None:
        with self.store._errors("completing the upload of", self.key):
            self.store._client.complete_multipart_upload(
                Bucket=self.store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )

    def abort(self, cause: BaseException) -> None:
        """Abort the upload; if that fails too, say so on ``cause`` rather than hide it."""
        try:
            self.store._client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id
            )
        except (ClientError, BotoCoreError) as err:
            cause.add_note(
                f"the incomplete multipart upload {self.upload_id} of {self.key!r} could not be "
                f"aborted ({err}); a lifecycle rule AbortIncompleteMultipartUpload removes it"
            )


class S3Store(Store):
    """Objects in an S3 bucket (or an S3-compatible server) under an optional key prefix.

    Credentials, and the endpoint and region when not given, come from the standard AWS
    configuration chain (environment, ``~/.aws/config`` and ``credentials``, AWS_PROFILE,
    instance roles). Creating the store makes no network request. S3 listings carry no
    metadata, so :meth:`list` sends one HEAD per object; use :meth:`keys` for names only.

    Args:
        bucket: the bucket name; it must exist.
        prefix: key prefix inside the bucket (a key, no leading ``/``), ``""`` for none.
        endpoint_url: e.g. ``"http://127.0.0.1:9000"`` for an S3-compatible server;
            ``None`` uses the AWS chain (``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``).
        region: the bucket's region; ``None`` uses the AWS chain.
        path_style: address buckets as ``endpoint/bucket/key`` (what S3-compatible servers
            expect) rather than ``bucket.endpoint/key``.
        max_attempts: tries per request, the first included, for throttling, 5xx answers and
            dropped connections (botocore "standard" retry mode, exponential backoff).
        multipart_threshold: objects of at least this many bytes go up in multipart uploads.
        part_size: bytes per multipart part (5 MiB to 5 GiB); ``put_stream`` holds up to about
            two parts in memory (measured: 33 MiB peak for a 100 MiB stream with 16 MiB parts).
        connect_timeout: seconds to wait for a connection.
        read_timeout: seconds to wait for data on an open connection.
        session: a boto3 session to take credentials and configuration from; ``None`` builds
            the default one.

    Raises:
        ConfigError: a bad bucket name, prefix, size, or AWS profile.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        path_style: bool = True,
        max_attempts: int = 5,
        multipart_threshold: int = 16 * MiB,
        part_size: int = 16 * MiB,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        session: boto3.session.Session | None = None,
    ) -> None:
        if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket):
            raise ConfigError(
                f"S3 bucket name {bucket!r} is not valid; use 3-63 lowercase letters, digits, "
                "'.' and '-', starting and ending with a letter or digit"
            )
        self.bucket = bucket
        prefix = prefix.strip("/")
        self.prefix = validate_key(prefix, what="S3 prefix") if prefix else ""
        self.max_attempts = _positive("max_attempts", max_attempts, 1, 20)
        self.part_size = _positive("part_size", part_size, MIN_PART_SIZE, MAX_PART_SIZE)
        self.multipart_threshold = _positive(
            "multipart_threshold", multipart_threshold, 1, MAX_COPY_OBJECT
        )
        self._copy_object_limit = MAX_COPY_OBJECT
        self._bucket_seen = False
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},  # first included
            s3={"addressing_style": "path" if path_style else "auto"},
            # Reads are verified end to end against the sha256; botocore's own CRC check of
            # responses adds nothing and misfires on copies of multipart objects (whose stored
            # checksum is a composite) on some S3-compatible servers.
            response_checksum_validation="when_required",
        )
        try:
            session = session if session is not None else boto3.session.Session()
            self._client = session.client(
                "s3", endpoint_url=endpoint_url, region_name=region, config=config
            )
        except ValueError as err:
            raise ConfigError(
                f"cannot use S3 endpoint {endpoint_url!r} ({err}); give a URL like "
                "'http://127.0.0.1:9000' or 'https://s3.eu-west-1.amazonaws.com'"
            ) from err
        except BotoCoreError as err:
            raise botocore_error(
                err, action="configuring", bucket=bucket, key=None, endpoint=str(endpoint_url)
            ) from err
        self.endpoint: str = self._client.meta.endpoint_url

    def __repr__(self) -> str:
        return f"S3Store({self.uri()!r}, endpoint_url={self.endpoint!r})"

    # ---- helpers -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None) -> Generator[None, None, None]:
        """Re-raise botocore failures as store errors naming the bucket, key and endpoint."""
        try:
            yield
        except ClientError as err:
            raise s3_error(
                err, action=action, bucket=self.bucket, key=key, endpoint=self.endpoint
            ) from err
        except BotoCoreError as err:
            raise botocore_error(
                err, action=action, bucket=self.bucket, key=key, endpoint=self.endpoint
            ) from err

    def _full(self, key: str) -> str:
        validate_key(key)
        full = f"{self.prefix}/{key}" if self.prefix else key
        if len(full.encode()) > MAX_KEY_LENGTH:
            raise InvalidKeyError(
                f"key {key!r} with the store prefix {self.prefix!r} is longer than "
                f"{MAX_KEY_LENGTH} bytes, S3's limit; use a shorter key or prefix"
            )
        return full

    def _base(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    def _info(self, key: str, metadata: Mapping[str, str]) -> ObjectInfo:
        sha256 = metadata.get("sha256", "")
        size = metadata.get("size", "")
        if not _SHA256.fullmatch(sha256) or not size.isdigit():
            raise IntegrityError(
                f"object {self.uri(key)} has no valid sha256/size metadata, so it cannot be "
                "verified: it was not written through SearchTuner's store, or its metadata was "
                "replaced; write it again through the store"
            )
        user = {name: value for name, value in metadata.items() if name not in RESERVED_METADATA}
        return ObjectInfo(key, int(size), sha256, user)

    @staticmethod
    def _metadata(sha256: str, size: int, user: Mapping[str, str]) -> dict[str, str]:
        return {**user, "sha256": sha256, "size": str(size)}

    def _not_found(self, key: str) -> NotFound | BucketNotFound:
        """A 404 on HEAD does not say whether the key or the bucket is missing: ask once."""
        if not self._bucket_seen:
            try:
                with self._errors("checking the bucket for", None):
                    self._client.head_bucket(Bucket=self.bucket)
            except NotFound:
                return BucketNotFound(
                    f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}; create it "
                    f"(aws s3 mb s3://{self.bucket} --endpoint-url {self.endpoint}) or fix the "
                    "bucket name in the store URI"
                )
            self._bucket_seen = True
        return NotFound(f"no object {key!r} in {self.uri()}; check the key with list()")

    def _discard(self, temporary: str) -> str | None:
        """Delete a temporary upload; a description of the failure, or ``None``."""
        try:
            with self._errors("removing the temporary upload", temporary):
                self._client.delete_object(Bucket=self.bucket, Key=temporary)
        except SearchTunerError as err:
            return f"the temporary object s3://{self.bucket}/{temporary} was left behind: {err}"
        return None

    # ---- writing -------------------------------------------------------------------------

    def _put_object(self, key: str, body: bytes, user: Mapping[str, str]) -> ObjectInfo:
        full = self._full(key)
        sha256 = hashlib.sha256(body).hexdigest()
        with self._errors("writing", full):
            self._client.put_object(
                Bucket=self.bucket,
                Key=full,
                Body=body,
                Metadata=self._metadata(sha256, len(body), user),
            )
        self._bucket_seen = True
        return ObjectInfo(key, len(body), sha256, dict(user))

    def put_bytes(
        self, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        return self._put_object(key, bytes(as_bytes(data)), validate_metadata(metadata))

    def put_stream(
        self, key: str, chunks: Iterable[bytes], metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        full = self._full(key)
        user = validate_metadata(metadata)
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        upload: _Multipart | None = None
        temporary = f"{self._base()}{_UPLOADS}/{secrets.token_hex(16)}"
        try:
            for chunk in chunks:
                data = as_bytes(chunk)
                digest.update(data)
                size += len(data)
                buffer += data
                if upload is None and len(buffer) < self.multipart_threshold:
                    continue
                if upload is None:
                    upload = _Multipart(self, temporary, None)
                while len(buffer) >= self.part_size:
                    with memoryview(buffer) as view:
                        part = bytes(view[: self.part_size])
                    del buffer[: self.part_size]
                    upload.send(part)
                    del part
            if upload is None:
                return self._put_object(key, bytes(buffer), user)
            if buffer or not upload.parts:
                upload.send(bytes(buffer))
            buffer.clear()
            upload.complete()
        except BaseException as err:
            if upload is not None:
                upload.abort(err)
            raise
        info = ObjectInfo(key, size, digest.hexdigest(), user)
        try:
            self._copy(temporary, full, size, self._metadata(info.sha256, size, user))
        except BaseException as err:
            problem = self._discard(temporary)
            if problem is not None:
                err.add_note(problem)
            raise
        problem = self._discard(temporary)
        if problem is not None:
            # The object itself is written and complete; only bookkeeping is left over.
            _log.warning("%s; a lifecycle rule expiring '%s/' removes it", problem, _UPLOADS)
        return info

    def _copy(self, source: str, target: str, size: int, metadata: dict[str, str]) -> None:
        """Server-side copy that sets ``metadata``; part by part above CopyObject's 5 GiB."""
        origin = {"Bucket": self.bucket, "Key": source}
        if size <= self._copy_object_limit:
            with self._errors("copying the upload to", target):
                self._client.copy_object(
                    Bucket=self.bucket,
                    Key=target,
                    CopySource=origin,
                    MetadataDirective="REPLACE",
                    Metadata=metadata,
                )
            return
        part = max(self.part_size, math.ceil(size / MAX_PARTS))
        with self._errors("starting a multipart copy to", target):
            upload_id = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=target, Metadata=metadata
            )["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            for number, start in enumerate(range(0, size, part), start=1):
                end = min(start + part, size) - 1
                with self._errors("copying a part to", target):
                    answer = self._client.upload_part_copy(
                        Bucket=self.bucket,
                        Key=target,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource=origin,
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            with self._errors("completing the copy to", target):
                self._client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=target,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException as err:
            try:
                self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=target, UploadId=upload_id
                )
            except (ClientError, BotoCoreError) as abort_err:
                err.add_note(f"the multipart copy {upload_id} could not be aborted: {abort_err}")
            raise

    def put_file(
        self, key: str, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        full = self._full(key)
        user = validate_metadata(metadata)
        try:
            size = os.stat(path).st_size
        except OSError as err:
            raise DataError(
                f"cannot read {os.fspath(path)!r} to upload it: {err.strerror}"
            ) from err
        if size < self.multipart_threshold:
            return self._put_object(key, b"".join(read_chunks(path)), user)
        sha256, size = file_digest(path)
        part = max(self.part_size, math.ceil(size / MAX_PARTS))
        upload = _Multipart(self, full, self._metadata(sha256, size, user))
        try:
            again = hashlib.sha256()
            sent = 0
            for body in read_chunks(path, part):
                again.update(body)
                sent += len(body)
                upload.send(body)
            if sent != size or again.hexdigest() != sha256:
                raise DataError(
                    f"{os.fspath(path)!r} changed while it was being uploaded; upload it again "
                    "once nothing writes to it"
                )
            upload.complete()
        except BaseException as err:
            upload.abort(err)
            raise
        self._bucket_seen = True
        return ObjectInfo(key, size, sha256, user)

    # ---- reading -------------------------------------------------------------------------

    def _open(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        full = self._full(key)
        with self._errors("reading", full):
            answer = self._client.get_object(Bucket=self.bucket, Key=full)
        body = answer["Body"]
        try:
            info = self._info(key, answer.get("Metadata", {}))
            length = int(answer["ContentLength"])
            if length != info.size:
                raise corrupt(info, self.uri(key), "(not read: wrong size)", length)
        except BaseException:
            body.close()
            raise
        return info, self._chunks(body, full)

    def _chunks(self, body: Any, full: str) -> Generator[bytes, None, None]:
        try:
            with self._errors("reading", full):
                yield from body.iter_chunks(CHUNK_SIZE)
        finally:
            body.close()

    def stat(self, key: str) -> ObjectInfo:
        full = self._full(key)
        try:
            with self._errors("reading the metadata of", full):
                answer = self._client.head_object(Bucket=self.bucket, Key=full)
        except NotFound as err:
            raise self._not_found(key) from err
        return self._info(key, answer.get("Metadata", {}))

    def keys(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        base = self._base()
        with self._errors("listing", f"{base}{prefix}"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{base}{prefix}"
            )
            for page in pages:
                for entry in page.get("Contents", []):
                    key = entry["Key"][len(base) :]
                    if is_valid_key(key):
                        yield key

    # ---- deleting ------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        full = self._full(key)
        with self._errors("deleting", full):
            self._client.delete_object(Bucket=self.bucket, Key=full)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` in batches of 1000 (DeleteObjects)."""
        if prefix == "":
            return super().delete_prefix(prefix)  # raises: would empty the store
        validate_prefix(prefix)
        base = self._base()
        batch: list[str] = []
        count = 0
        for key in self.keys(prefix):
            batch.append(key)
            if len(batch) == 1000:
                count += self._delete_batch(base, batch)
                batch = []
        if batch:
            count += self._delete_batch(base, batch)
        return count

    def _delete_batch(self, base: str, keys: list[str]) -> int:
        where = f"{base}{keys[0]}"
        with self._errors("deleting", where):
            answer = self._client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": base + key} for key in keys], "Quiet": True},
            )
        failures = answer.get("Errors", [])
        if failures:
            first = failures[0]
            mapped = classify(
                str(first.get("Code", "")),
                status=0,
                message=str(first.get("Message", "")),
                attempts=1,
                action="deleting",
                bucket=self.bucket,
                key=first.get("Key"),
                endpoint=self.endpoint,
            )
            mapped.add_note(
                f"{len(failures)} of {len(keys)} objects in this batch were not deleted"
            )
            raise mapped
        return len(keys)

    def uri(self, key: str = "") -> str:
        path = self._full(key) if key else self.prefix
        return f"s3://{self.bucket}/{path}" if path else f"s3://{self.bucket}"

    def close(self) -> None:
        self._client.close()
