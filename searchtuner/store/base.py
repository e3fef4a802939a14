"""The artifact-store interface that every backend implements.

A backend implements seven primitives (:meth:`Store.put_stream`, :meth:`Store.put_file`,
:meth:`Store._open`, :meth:`Store.stat`, :meth:`Store.keys`, :meth:`Store.delete`,
:meth:`Store.uri`); reading, verifying and downloading are written once here, so every backend
checks digests the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from abc import ABC, abstractmethod
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from searchtuner.errors import DataError
from searchtuner.store.errors import IntegrityError, InvalidKeyError, NotFound
from searchtuner.store.keys import validate_prefix

if TYPE_CHECKING:
    from searchtuner.store.prefixed import OwnerStore, PrefixedStore

CHUNK_SIZE = 1024 * 1024
"""Bytes read or written at a time when streaming."""


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one complete object.

    Attributes:
        key: the key, relative to the store (or namespace) that answered.
        size: length in bytes.
        sha256: lowercase hex sha256 digest of the bytes; every read verifies it.
        metadata: user metadata given when the object was written.
    """

    key: str
    size: int
    sha256: str
    metadata: dict[str, str] = field(default_factory=dict)


def file_digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """The sha256 hex digest and size of a local file, read in chunks.

    Raises:
        DataError: the file cannot be read.
    """
    digest = hashlib.sha256()
    size = 0
    for chunk in read_chunks(path):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def as_bytes(chunk: object) -> bytes | bytearray | memoryview:
    """``chunk`` itself if it is bytes-like.

    Raises:
        DataError: the chunk is not bytes (e.g. a ``str``, which must be encoded first).
    """
    if isinstance(chunk, bytes | bytearray | memoryview):
        return chunk
    raise DataError(
        f"a chunk to store is a {type(chunk).__name__}, not bytes; yield bytes "
        "(encode text with .encode('utf-8'))"
    )


def read_chunks(path: str | os.PathLike[str], size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """The bytes of a local file in chunks of ``size``, for uploading.

    The file is opened before this returns.

    Raises:
        DataError: the file cannot be opened (missing, a directory, unreadable).
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the generator below
    except OSError as err:
        raise DataError(f"cannot read {os.fspath(path)!r} to upload it: {err.strerror}") from err

    def generate() -> Generator[bytes, None, None]:
        with handle:
            while chunk := handle.read(size):
                yield chunk

    return generate()


def corrupt(info: ObjectInfo, where: str, sha256: str, size: int) -> IntegrityError:
    """The error for bytes that do not match an object's recorded digest or size."""
    return IntegrityError(
        f"object {info.key!r} at {where} is corrupt: recorded sha256 {info.sha256} "
        f"({info.size} bytes) but read sha256 {sha256} ({size} bytes); it was changed or "
        "truncated outside the store - write it again, or restore it from a copy"
    )


def verified(info: ObjectInfo, where: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Yield ``chunks`` while hashing them; raise at the end if they do not match ``info``.

    Raises:
        IntegrityError: more bytes than recorded (raised as soon as that is seen), or a
            different size or digest once the last chunk has been read.
    """

    def generate() -> Generator[bytes, None, None]:
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in chunks:
                size += len(chunk)
                if size > info.size:
                    raise corrupt(info, where, "(not computed: too long)", size)
                digest.update(chunk)
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if size != info.size or digest.hexdigest() != info.sha256:
            raise corrupt(info, where, digest.hexdigest(), size)

    return generate()


class Store(ABC):
    """A flat map from keys to immutable byte objects, each with a verified sha256.

    Keys follow :func:`searchtuner.store.keys.validate_key`. Writes are atomic: a reader sees
    the old object, the new one, or nothing - never part of one. Every read checks the bytes
    against the sha256 recorded at write time and raises :class:`IntegrityError` on mismatch.
    """

    # ---- primitives each backend implements -------------------------------------------

    @abstractmethod
    def put_stream(
        self, key: str, chunks: Iterable[bytes], metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """Write an object from chunks without holding all of it in memory.

        Args:
            key: where to write; an existing object there is replaced atomically.
            chunks: the bytes, in order (e.g. dataset shard records as they are produced).
            metadata: small user metadata (see :func:`~searchtuner.store.keys.validate_metadata`).

        Returns:
            The written object's info.

        Raises:
            InvalidKeyError: a bad key. ConfigError: bad metadata. StoreError: the backend
                failed; nothing is visible under ``key`` then.
        """

    @abstractmethod
    def put_file(
        self, key: str, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """Write a local file as an object, streamed (multipart on S3 above a threshold)."""

    @abstractmethod
    def _open(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        """The object's info and its raw, unverified chunks; raise NotFound at once if absent."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """The info of the object under ``key``.

        Raises:
            NotFound: there is no complete object under ``key``.
        """

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys of complete objects that start with ``prefix``, in sorted order.

        ``prefix`` is a plain string prefix: end it with ``/`` to list one folder.
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object under ``key``; a missing object is not an error."""

    @abstractmethod
    def uri(self, key: str = "") -> str:
        """A URI naming the object (``file:///...`` or ``s3://bucket/prefix/key``).

        With no key, the URI of the store itself, which :func:`open_store` accepts.
        """

    # ---- written once for every backend ------------------------------------------------

    def put_bytes(
        self, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """Write ``data`` as one object (atomically; an existing object is replaced)."""
        return self.put_stream(key, [data], metadata)

    def open_stream(self, key: str) -> Iterator[bytes]:
        """Stream an object's bytes; the digest is checked after the last chunk.

        The object is opened before this returns, so :class:`NotFound` is raised here. A
        caller that consumes the chunks must treat them as unverified until the iterator is
        exhausted without error.

        Raises:
            NotFound: no complete object under ``key``.
            IntegrityError: while iterating, once the bytes turn out not to match.
        """
        info, chunks = self._open(key)
        return verified(info, self.uri(key), chunks)

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes, returned only once their digest has been verified.

        Raises:
            NotFound: no complete object under ``key``.
            IntegrityError: the bytes do not match the recorded digest or size.
        """
        return b"".join(self.open_stream(key))

    def download(self, key: str, path: str | os.PathLike[str]) -> ObjectInfo:
        """Stream an object to a local file, verified, then atomically renamed into place.

        The bytes go to a temporary file next to ``path``; only if the digest matches is it
        renamed to ``path``. On any failure the temporary file is removed and ``path`` is left
        as it was.

        Raises:
            NotFound: no complete object under ``key``.
            IntegrityError: the bytes do not match; nothing is written to ``path``.
        """
        target = Path(path)
        info, chunks = self._open(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
        try:
            with open(temporary, "wb") as handle:
                for chunk in verified(info, self.uri(key), chunks):
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return info

    def exists(self, key: str) -> bool:
        """Whether a complete object is stored under ``key``."""
        try:
            self.stat(key)
        except NotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Infos of the objects whose keys start with ``prefix``, in key order.

        An object deleted between listing and reading its info is skipped.
        """
        for key in self.keys(prefix):
            try:
                yield self.stat(key)
            except NotFound:
                continue

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; returns how many.

        Raises:
            InvalidKeyError: ``prefix`` is empty (this would empty the whole store) or invalid.
        """
        if prefix == "":
            raise InvalidKeyError(
                "delete_prefix needs a non-empty prefix ('' would empty the whole store); "
                "delete keys one by one, or delete_prefix('') on a namespace view"
            )
        validate_prefix(prefix)
        count = 0
        for key in list(self.keys(prefix)):
            self.delete(key)
            count += 1
        return count

    def put_json(
        self, key: str, value: Any, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        """Write ``value`` as UTF-8 JSON, keys sorted, so equal values give equal digests."""
        text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
        return self.put_bytes(key, text.encode("utf-8"), metadata)

    def get_json(self, key: str) -> Any:
        """Read a verified JSON object.

        Raises:
            DataError: the object is not UTF-8 JSON.
        """
        data = self.get_bytes(key)
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(
                f"object {key!r} at {self.uri(key)} is not UTF-8 JSON ({err}); read it with "
                "get_bytes, or write it with put_json"
            ) from err

    def namespace(self, prefix: str) -> PrefixedStore:
        """A view of this store where every key is under ``prefix/``."""
        from searchtuner.store.prefixed import PrefixedStore

        return PrefixedStore(self, prefix)

    def for_owner(self, owner: str) -> OwnerStore:
        """A view holding only ``owner``'s objects (keys under ``owners/<owner>/``)."""
        from searchtuner.store.prefixed import OwnerStore

        return OwnerStore(self, owner)

    def close(self) -> None:  # noqa: B027 - a hook: only backends with connections override it
        """Release connections; the store must not be used afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
