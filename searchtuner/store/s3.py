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

**Outages.** The store retries by itself (botocore's own retries are off): connection failures
(refused, reset, timed out, a body cut short), throttling and 5xx answers are retried with
capped exponential backoff (0.1 s doubling to 2 s, with jitter) until the request has been
failing for ``outage_seconds`` (the *outage budget*, 30 s by default), then
:class:`StoreUnavailable` says how long it waited and how to raise the budget. The budget
counts from the request's first failure, so each request rides out an outage of up to that
long; a success resets it. Every request is safe to send again:

* writes (PutObject, parts, copies, deletes) are idempotent; a part is re-sent from the bytes
  held for it, never re-read from the caller's stream, so a stream is read exactly once. A
  multipart upload whose completion answer was lost is recognised by its object's size and
  digest rather than failed.
* a read that breaks mid-stream resumes at the next byte with a ranged GET pinned to the
  object's ETag (``If-Match``), so bytes of a replacement are never spliced in; the sha256
  check at the end covers the whole object as always.

An outage is logged once (WARNING when it starts, INFO when S3 answers again), not per
attempt.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any, TypeVar

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
from searchtuner.store.s3_errors import (
    TRANSPORT_ERRORS,
    botocore_error,
    classify,
    error_code,
    is_transient,
    outage_error,
    store_error,
)

MiB = 1024 * 1024
GiB = 1024 * MiB
MIN_PART_SIZE = 5 * MiB
"""S3's smallest part (all but the last)."""
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_COPY_OBJECT = 5 * GiB
"""Largest object CopyObject can copy in one request; larger ones use UploadPartCopy."""
_UPLOADS = "~uploads"
OUTAGE_VARIABLE = "SEARCHTUNER_STORE_OUTAGE_SECONDS"
"""Environment variable with the default outage budget of S3 stores, in seconds."""
DEFAULT_OUTAGE_SECONDS = 30.0
MAX_OUTAGE_SECONDS = 86_400.0
_BACKOFF_FIRST_S = 0.1
_BACKOFF_CAP_S = 2.0
"""Longest pause between attempts: how late, at most, a retry notices that S3 is back."""
_FAILURES: tuple[type[Exception], ...] = (ClientError, BotoCoreError, *TRANSPORT_ERRORS)
"""What a boto3 request raises when it fails (mapped to store errors by store_error)."""
_T = TypeVar("_T")
_log = logging.getLogger(__name__)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _positive(name: str, value: int, low: int, high: int) -> int:
    if not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def parse_outage_seconds(value: float | str | None, source: str = "outage_seconds") -> float:
    """An outage budget, checked: ``value``, else the environment, else the default.

    Args:
        value: seconds (a number, or text from a URI or the environment); ``None`` reads
            ``SEARCHTUNER_STORE_OUTAGE_SECONDS``, and if that is unset takes 30.
        source: where ``value`` came from, for the error message.

    Raises:
        ConfigError: not a number from 0 to 86400.
    """
    if value is None:
        value = os.environ.get(OUTAGE_VARIABLE) or None
        source = OUTAGE_VARIABLE
        if value is None:
            return DEFAULT_OUTAGE_SECONDS
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    if number is None or not 0 <= number <= MAX_OUTAGE_SECONDS:  # NaN fails this too
        raise ConfigError(
            f"{source} must be a number of seconds from 0 to {MAX_OUTAGE_SECONDS:g} (how long "
            f"the S3 store retries through an outage), got {value!r}"
        )
    return number


class _Retry:
    """The attempts of one request (or of one read stream): backoff and the outage budget.

    Call :meth:`failed` in the ``except`` of each failed attempt: it sleeps before the next
    attempt, or raises the store error once the failure is not transient, ``max_attempts``
    are used up, or the request has been failing for longer than the outage budget.
    """

    def __init__(self, store: S3Store, action: str, key: str | None) -> None:
        self.store, self.action, self.key = store, action, key
        self.attempts = 0
        """Failed attempts since the last success."""
        self.since: float | None = None
        """When the first of them failed (``time.monotonic()``)."""

    def failed(self, err: Exception) -> None:
        """Wait before the next attempt, or raise the store error for ``err``.

        Raises:
            StoreError: (or a subclass) ``err`` mapped, ``from err``.
            StoreUnavailable: the outage budget is spent.
        """
        store = self.store
        self.attempts += 1
        mapped = store_error(
            err, action=self.action, bucket=store.bucket, key=self.key,
            endpoint=store.endpoint, attempts=self.attempts,
        )  # fmt: skip
        if not is_transient(err):
            raise mapped from err
        now = time.monotonic()
        if self.since is None:
            self.since = now
            store._outage_began(err, self.action, self.key)
        waited = now - self.since
        if store.max_attempts is not None and self.attempts >= store.max_attempts:
            raise mapped from err
        budget = store.outage_seconds
        if waited >= budget:
            raise outage_error(
                mapped, endpoint=store.endpoint, waited=waited, attempts=self.attempts,
                budget=budget,
            ) from err  # fmt: skip
        delay = min(_BACKOFF_CAP_S, _BACKOFF_FIRST_S * 2 ** min(self.attempts - 1, 16))
        # Jitter, so that the threads of a worker do not all hit a recovering server at once;
        # and the last attempt happens at the deadline, not after it.
        time.sleep(min(delay * random.uniform(0.5, 1.0), budget - waited))

    def succeeded(self) -> None:
        """A request got through: the next failure starts a new outage."""
        self.attempts, self.since = 0, None
        self.store._outage_ended()


class _Multipart:
    """One multipart upload: parts go up in order; ``abort`` on any failure.

    Each part is sent from the bytes given to :meth:`send`, which the caller no longer needs
    once it returns; so a retried part is re-sent whole, whatever the source was.
    """

    def __init__(self, store: S3Store, key: str, metadata: dict[str, str] | None) -> None:
        self.store = store
        self.key = key
        self.sha256 = None if metadata is None else metadata["sha256"]
        self.size = 0
        self.parts: list[dict[str, Any]] = []
        extra: dict[str, Any] = {"Metadata": metadata} if metadata is not None else {}
        answer = store._request(
            "starting a multipart upload to", key, store._client.create_multipart_upload,
            Bucket=store.bucket, Key=key, ChecksumAlgorithm="CRC32", **extra,
        )  # fmt: skip
        self.upload_id: str = answer["UploadId"]

    def send(self, body: bytes) -> None:
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise StoreError(
                f"upload to {self.store.uri()}/{self.key} needs more than {MAX_PARTS} parts; "
                f"raise part_size (now {self.store.part_size} bytes)"
            )
        store = self.store
        answer = store._request(
            "uploading a part to", self.key, store._client.upload_part,
            Bucket=store.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
            Body=body, ChecksumAlgorithm="CRC32",
        )  # fmt: skip
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if answer.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = answer["ChecksumCRC32"]
        self.parts.append(part)
        self.size += len(body)

    def complete(self) -> None:
        self.store._complete(self.key, self.upload_id, self.parts, self.size, self.sha256)

    def abort(self, cause: BaseException) -> None:
        """Abort the upload; if that fails too, say so on ``cause`` rather than hide it."""
        self.store._abort(self.key, self.upload_id, cause)


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
        max_attempts: at most this many tries per request, the first included, for
            throttling, 5xx answers and connection failures; ``None`` (the default): as many
            as fit in the outage budget.
        multipart_threshold: objects of at least this many bytes go up in multipart uploads.
        part_size: bytes per multipart part (5 MiB to 5 GiB); ``put_stream`` holds up to about
            two parts in memory (measured: 33 MiB peak for a 100 MiB stream with 16 MiB parts).
        connect_timeout: seconds to wait for a connection.
        read_timeout: seconds to wait for data on an open connection.
        outage_seconds: the outage budget: how long one request keeps retrying through
            connection failures, throttling and 5xx answers before :class:`StoreUnavailable`
            (the attempt under way when it runs out may take up to ``connect_timeout`` or
            ``read_timeout`` more). ``None``: ``SEARCHTUNER_STORE_OUTAGE_SECONDS``, else 30.
            0 gives up at the first failure.
        session: a boto3 session to take credentials and configuration from; ``None`` builds
            the default one.

    Raises:
        ConfigError: a bad bucket name, prefix, size, outage budget, or AWS profile.
    """

    _page_size = 1000
    """Keys per listing request (S3's maximum); tests lower it to list in several pages."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        path_style: bool = True,
        max_attempts: int | None = None,
        multipart_threshold: int = 16 * MiB,
        part_size: int = 16 * MiB,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        outage_seconds: float | None = None,
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
        self.max_attempts = (
            None if max_attempts is None else _positive("max_attempts", max_attempts, 1, 20)
        )
        self.outage_seconds = parse_outage_seconds(outage_seconds)
        self._outage_lock = threading.Lock()  # guards _outage_since
        self._outage_since: float | None = None
        self.part_size = _positive("part_size", part_size, MIN_PART_SIZE, MAX_PART_SIZE)
        self.multipart_threshold = _positive(
            "multipart_threshold", multipart_threshold, 1, MAX_COPY_OBJECT
        )
        self._copy_object_limit = MAX_COPY_OBJECT
        self._bucket_seen = False
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # One try per botocore call: _request retries, against the outage budget, which
            # botocore's count of attempts with their short backoff cannot express.
            retries={"mode": "standard", "total_max_attempts": 1},
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

    def _request(
        self, action: str, key: str | None, call: Callable[..., _T], /, **params: Any
    ) -> _T:
        """``call(**params)``, retried through outages; failures become store errors.

        Args:
            action: what the request does, for messages (``"writing"``).
            key: the full S3 key it is about, or ``None``.
            call: a boto3 client method; it must be safe to send again (see the module
                docstring), with ``params`` that a retry can use as they are (bytes, not
                a file object that the first try has read).

        Raises:
            StoreError: (or a subclass) naming the bucket, key and endpoint.
        """
        retry = _Retry(self, action, key)
        while True:
            try:
                answer = call(**params)
            except _FAILURES as err:
                retry.failed(err)
                continue
            retry.succeeded()
            return answer

    def _outage_began(self, err: Exception, action: str, key: str | None) -> None:
        """Log the start of an outage, once however many requests and threads retry."""
        with self._outage_lock:
            if self._outage_since is not None:
                return
            self._outage_since = time.monotonic()
        where = f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"
        _log.warning(
            "S3 at %s is unavailable (%s while %s %s); retrying for up to %g s "
            "(outage_seconds) before giving up",
            self.endpoint, type(err).__name__, action, where, self.outage_seconds,
        )  # fmt: skip

    def _outage_ended(self) -> None:
        """Log the end of an outage, once, at the first request that gets through."""
        if self._outage_since is None:  # the common case, without taking the lock
            return
        with self._outage_lock:
            since, self._outage_since = self._outage_since, None
        if since is not None:
            _log.info(
                "S3 at %s answers again after %.1f s", self.endpoint, time.monotonic() - since
            )

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
                self._request(
                    "checking the bucket for", None, self._client.head_bucket, Bucket=self.bucket
                )
            except NotFound:
                return BucketNotFound(
                    f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}; create it "
                    f"(aws s3 mb s3://{self.bucket} --endpoint-url {self.endpoint}) or fix the "
                    "bucket name in the store URI"
                )
            self._bucket_seen = True
        return NotFound(f"no object {key!r} in {self.uri()}; check the key with list()")

    def _discard(self, temporary: str, *, retry: bool = True) -> str | None:
        """Delete a temporary upload; a description of the failure, or ``None``.

        Args:
            temporary: its full key.
            retry: retry through an outage; ``False`` tries once, for the cleanup after a
                failure (which may be that outage: waiting for it again would only delay the
                error).
        """
        try:
            if retry:
                self._request(
                    "removing the temporary upload", temporary, self._client.delete_object,
                    Bucket=self.bucket, Key=temporary,
                )  # fmt: skip
            else:
                self._client.delete_object(Bucket=self.bucket, Key=temporary)
        except SearchTunerError as err:
            return f"the temporary object s3://{self.bucket}/{temporary} was left behind: {err}"
        except _FAILURES as err:
            return (
                f"the temporary object s3://{self.bucket}/{temporary} was left behind "
                f"({type(err).__name__}: {err})"
            )
        return None

    def _complete(
        self, key: str, upload_id: str, parts: list[dict[str, Any]], size: int, sha256: str | None
    ) -> None:
        """CompleteMultipartUpload, retried; a retry that finds the upload done succeeds.

        If an attempt completed the upload but its answer was lost, the next attempt gets
        NoSuchUpload: then the object under ``key`` is checked against the ``size`` (and
        ``sha256`` metadata when given) that this upload must have produced.
        """
        retry = _Retry(self, "completing the upload of", key)
        while True:
            try:
                self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )  # fmt: skip
            except ClientError as err:
                if not (
                    retry.attempts
                    and error_code(err) == "NoSuchUpload"
                    and self._landed(key, size, sha256)
                ):
                    retry.failed(err)
                    continue
            except _FAILURES as err:
                retry.failed(err)
                continue
            retry.succeeded()
            return

    def _landed(self, key: str, size: int, sha256: str | None) -> bool:
        """Whether the object under ``key`` is the one an upload of ``size``/``sha256`` made."""
        try:
            answer = self._request(
                "checking the upload of", key, self._client.head_object,
                Bucket=self.bucket, Key=key,
            )  # fmt: skip
        except NotFound:
            return False
        if int(answer.get("ContentLength", -1)) != size:
            return False
        return sha256 is None or answer.get("Metadata", {}).get("sha256") == sha256

    def _abort(self, key: str, upload_id: str, cause: BaseException) -> None:
        """Abort a multipart upload with one try; a failure is told on ``cause``, not raised.

        One try: the failure being handled may be an outage, and waiting for it again would
        only delay the error. A lifecycle rule removes what is left.
        """
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except _FAILURES as err:
            cause.add_note(
                f"the incomplete multipart upload {upload_id} of {key!r} could not be aborted "
                f"({type(err).__name__}: {err}); a lifecycle rule AbortIncompleteMultipartUpload "
                "removes it"
            )

    # ---- writing -------------------------------------------------------------------------

    def _put_object(self, key: str, body: bytes, user: Mapping[str, str]) -> ObjectInfo:
        full = self._full(key)
        sha256 = hashlib.sha256(body).hexdigest()
        self._request(
            "writing", full, self._client.put_object,
            Bucket=self.bucket, Key=full, Body=body,
            Metadata=self._metadata(sha256, len(body), user),
        )  # fmt: skip
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
            if isinstance(err, StoreError):
                err.add_note(self._unfinished(key, size))
            raise
        info = ObjectInfo(key, size, digest.hexdigest(), user)
        try:
            self._copy(temporary, full, size, self._metadata(info.sha256, size, user))
        except BaseException as err:
            problem = self._discard(temporary, retry=False)
            if problem is not None:
                err.add_note(problem)
            if isinstance(err, StoreError):
                err.add_note(self._unfinished(key, size))
            raise
        problem = self._discard(temporary)
        if problem is not None:
            # The object itself is written and complete; only bookkeeping is left over.
            _log.warning("%s; a lifecycle rule expiring '%s/' removes it", problem, _UPLOADS)
        return info

    def _unfinished(self, key: str, size: int) -> str:
        """What a failed ``put_stream`` leaves: the stream is spent, the key untouched."""
        return (
            f"{size} bytes of the stream had been read when the write failed, and a stream "
            f"cannot be read twice; nothing partial is visible under {self.uri(key)} (a write "
            "is all or nothing): write it again from the start of its data"
        )

    def _copy(self, source: str, target: str, size: int, metadata: dict[str, str]) -> None:
        """Server-side copy that sets ``metadata``; part by part above CopyObject's 5 GiB."""
        origin = {"Bucket": self.bucket, "Key": source}
        if size <= self._copy_object_limit:
            self._request(
                "copying the upload to", target, self._client.copy_object,
                Bucket=self.bucket, Key=target, CopySource=origin, MetadataDirective="REPLACE",
                Metadata=metadata,
            )  # fmt: skip
            return
        part = max(self.part_size, math.ceil(size / MAX_PARTS))
        upload_id: str = self._request(
            "starting a multipart copy to", target, self._client.create_multipart_upload,
            Bucket=self.bucket, Key=target, Metadata=metadata,
        )["UploadId"]  # fmt: skip
        parts: list[dict[str, Any]] = []
        try:
            for number, start in enumerate(range(0, size, part), start=1):
                end = min(start + part, size) - 1
                answer = self._request(
                    "copying a part to", target, self._client.upload_part_copy,
                    Bucket=self.bucket, Key=target, UploadId=upload_id, PartNumber=number,
                    CopySource=origin, CopySourceRange=f"bytes={start}-{end}",
                )  # fmt: skip
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            self._complete(target, upload_id, parts, size, metadata["sha256"])
        except BaseException as err:
            self._abort(target, upload_id, err)
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
        answer = self._request(
            "reading", full, self._client.get_object, Bucket=self.bucket, Key=full
        )
        body = answer["Body"]
        try:
            info = self._info(key, answer.get("Metadata", {}))
            length = int(answer["ContentLength"])
            if length != info.size:
                raise corrupt(info, self.uri(key), "(not read: wrong size)", length)
        except BaseException:
            body.close()
            raise
        return info, self._chunks(body, full, answer.get("ETag"), info.size)

    def _chunks(
        self, body: Any, full: str, etag: str | None, size: int
    ) -> Generator[bytes, None, None]:
        """The body's chunks; a broken connection resumes at the next byte (ranged GET).

        The caller (``verified``) hashes what this yields, so a resumed read is checked
        against the object's sha256 like any other.
        """
        retry = _Retry(self, "reading", full)
        offset = 0
        try:
            while True:
                try:
                    for chunk in body.iter_chunks(CHUNK_SIZE):
                        if retry.attempts:  # bytes flow again: that outage is over
                            retry.succeeded()
                        offset += len(chunk)
                        yield chunk
                    return
                except _FAILURES as err:
                    body.close()
                    retry.failed(err)  # waits, or raises once the budget is spent
                    if offset >= size:
                        return  # every byte arrived; the digest check decides
                    body = self._resume(full, etag, offset, retry)
        finally:
            body.close()

    def _resume(self, full: str, etag: str | None, offset: int, retry: _Retry) -> Any:
        """The body of ``full`` from byte ``offset`` on, of the same version (``etag``).

        Raises:
            StoreError: the object was replaced since the read began (its ETag changed).
            NotFound: it was deleted meanwhile.
        """
        pinned: dict[str, str] = {"IfMatch": etag} if etag else {}
        while True:
            try:
                answer = self._client.get_object(
                    Bucket=self.bucket, Key=full, Range=f"bytes={offset}-", **pinned
                )
            except ClientError as err:
                if error_code(err) == "PreconditionFailed":
                    raise StoreError(
                        f"object s3://{self.bucket}/{full} was replaced while it was being "
                        f"read (the connection broke after {offset} bytes, and the object "
                        "has changed since); read it again"
                    ) from err
                retry.failed(err)
                continue
            except _FAILURES as err:
                retry.failed(err)
                continue
            self._outage_ended()
            return answer["Body"]

    def stat(self, key: str) -> ObjectInfo:
        full = self._full(key)
        try:
            answer = self._request(
                "reading the metadata of", full, self._client.head_object,
                Bucket=self.bucket, Key=full,
            )  # fmt: skip
        except NotFound as err:
            raise self._not_found(key) from err
        return self._info(key, answer.get("Metadata", {}))

    def keys(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        base = self._base()
        where = f"{base}{prefix}"
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": where}
        while True:
            # Page by page, each page a request of its own: a retried page resumes the
            # listing at its continuation token, so no key is skipped or listed twice.
            page = self._request(
                "listing", where, self._client.list_objects_v2, MaxKeys=self._page_size, **params
            )
            for entry in page.get("Contents", []):
                key = entry["Key"][len(base) :]
                if is_valid_key(key):
                    yield key
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token

    # ---- deleting ------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        full = self._full(key)
        self._request("deleting", full, self._client.delete_object, Bucket=self.bucket, Key=full)

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
        answer = self._request(
            "deleting", where, self._client.delete_objects,
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": base + key} for key in keys], "Quiet": True},
        )  # fmt: skip
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
