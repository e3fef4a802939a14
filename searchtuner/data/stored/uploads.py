"""Uploads that span several requests: a registry of open dataset writers."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from searchtuner.data.schemas import DataKind
from searchtuner.data.stored.info import DatasetInfo
from searchtuner.data.stored.writer import DatasetWriter
from searchtuner.errors import ConfigError
from searchtuner.store.base import Store
from searchtuner.store.errors import NotFound

if TYPE_CHECKING:
    from searchtuner.service.limits import Limits


class UploadNotFound(NotFound):
    """No open upload with this id for this owner (never begun, committed, aborted, expired)."""


class TooManyUploads(ConfigError):
    """The limit of open uploads is reached; commit or abort one, or wait for it to expire."""


@dataclass
class _Upload:
    writer: DatasetWriter
    owner: str  # the URI of the owner's namespace
    last_used: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False


class UploadSession:
    """Open uploads of one process, each a :class:`DatasetWriter`, keyed by a random id.

    Made for a service where each request of an upload may be a separate call: ``begin``
    returns an id, ``add`` takes one batch, ``commit`` returns the dataset's info. Every call
    names the owner's store, and an upload only answers to the owner that began it: to
    anyone else its id is unknown.

    Thread-safe: calls on different uploads run in parallel; calls on one upload run one
    at a time. An upload idle for longer than ``idle_timeout_s`` is aborted (its shards
    removed) at the next ``begin`` or by :meth:`expire`; an upload whose ``add`` is running
    is never idle.

    State lives in this process's memory: an upload must go to the same replica from
    ``begin`` to ``commit``, and a restart loses open uploads (their shards stay in the
    store, unreferenced).

    Args:
        idle_timeout_s: seconds an upload may stay idle before it is aborted.
        max_open: how many uploads may be open at once, over all owners.
        max_open_per_owner: how many uploads one owner may have open at once.
        clock: the time source (``time.monotonic``; tests pass a fake).
    """

    def __init__(
        self,
        idle_timeout_s: float = 3600.0,
        max_open: int = 64,
        max_open_per_owner: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_timeout_s <= 0 or max_open < 1 or max_open_per_owner < 1:
            raise ConfigError(
                "idle_timeout_s must be positive and max_open, max_open_per_owner at least 1; "
                f"got {idle_timeout_s!r}, {max_open!r}, {max_open_per_owner!r}"
            )
        self.idle_timeout_s = idle_timeout_s
        self.max_open = max_open
        self.max_open_per_owner = max_open_per_owner
        self._clock = clock
        self._uploads: dict[str, _Upload] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._uploads)

    def begin(
        self,
        store: Store,
        kind: DataKind | str | None = None,
        name: str | None = None,
        *,
        max_text_chars: int = 100_000,
        max_image_bytes: int = 20_000_000,
        check_images: bool = True,
        limits: Limits | None = None,
    ) -> str:
        """Open an upload in the owner's store and return its id (32 random hex digits).

        Args:
            store: the owner's store (``store.for_owner(owner)``).
            kind: the kind of data; inferred from the first item when ``None``.
            name: a name for listings.
            max_text_chars: texts longer than this are an error in the report.
            max_image_bytes: images larger than this are an error in the report.
            check_images: decode every image while validating.
            limits: the service's size limits for this upload (see :class:`DatasetWriter`);
                ``None``: none.

        Raises:
            TooManyUploads: the limit of open uploads is reached (after expiring idle ones).
            ConfigError: bad writer arguments.
        """
        self.expire()
        writer = DatasetWriter(
            store,
            kind,
            name,
            max_text_chars=max_text_chars,
            max_image_bytes=max_image_bytes,
            check_images=check_images,
            limits=limits,
        )
        owner = store.uri()
        with self._lock:
            mine = sum(1 for upload in self._uploads.values() if upload.owner == owner)
            if mine >= self.max_open_per_owner:
                raise TooManyUploads(
                    f"this owner has {mine} open uploads, the most allowed; commit or abort "
                    f"one (idle uploads are aborted after {self.idle_timeout_s:g} s)"
                )
            if len(self._uploads) >= self.max_open:
                raise TooManyUploads(
                    f"the service has {len(self._uploads)} open uploads, the most allowed; "
                    "try again later"
                )
            upload_id = secrets.token_hex(16)
            self._uploads[upload_id] = _Upload(writer, owner, self._clock())
        return upload_id

    def _missing(self, upload_id: object) -> UploadNotFound:
        # Cut before repr: an id is echoed back, and a client may send megabytes as one.
        shown = repr(upload_id[:80] if isinstance(upload_id, str) else upload_id)[:80]
        return UploadNotFound(
            f"no open upload {shown} for this owner: it was committed, aborted, or idle "
            f"for more than {self.idle_timeout_s:g} s (then aborted); begin a new upload "
            "and send the data again"
        )

    def _get(self, store: Store, upload_id: str) -> _Upload:
        with self._lock:
            upload = self._uploads.get(upload_id) if isinstance(upload_id, str) else None
        if upload is None or upload.owner != store.uri():
            raise self._missing(upload_id)
        return upload

    def _forget(self, upload_id: str, upload: _Upload) -> None:
        upload.closed = True
        with self._lock:
            if self._uploads.get(upload_id) is upload:
                del self._uploads[upload_id]

    def add(self, store: Store, upload_id: str, docs: Iterable[Any]) -> int:
        """Add one batch to an open upload; returns the number of items in it.

        A failed batch leaves the upload as it was; send the batch again.

        Raises:
            UploadNotFound: unknown id, or the upload belongs to another owner.
            ConfigError, DataError, TooLarge, StoreError: as :meth:`DatasetWriter.add`.
        """
        upload = self._get(store, upload_id)
        with upload.lock:
            if upload.closed:  # committed, aborted or expired while this call waited
                raise self._missing(upload_id)
            upload.last_used = self._clock()
            try:
                return upload.writer.add(docs)
            finally:
                upload.last_used = self._clock()

    def commit(self, store: Store, upload_id: str) -> DatasetInfo:
        """Commit an open upload and forget it.

        If writing the manifest fails, the upload stays open: commit again or abort.

        Raises:
            UploadNotFound: unknown id, or the upload belongs to another owner.
            IntegrityError, StoreError: as :meth:`DatasetWriter.commit`.
        """
        upload = self._get(store, upload_id)
        with upload.lock:
            if upload.closed:
                raise self._missing(upload_id)
            upload.last_used = self._clock()
            info = upload.writer.commit()
            self._forget(upload_id, upload)
        return info

    def abort(self, store: Store, upload_id: str) -> None:
        """Abort an open upload (its shards are removed) and forget it.

        Raises:
            UploadNotFound: unknown id, or the upload belongs to another owner.
        """
        upload = self._get(store, upload_id)
        with upload.lock:
            if upload.closed:
                raise self._missing(upload_id)
            self._forget(upload_id, upload)
            upload.writer.abort()

    def expire(self, now: float | None = None) -> list[str]:
        """Abort the uploads idle for longer than the timeout; returns their ids."""
        moment = self._clock() if now is None else now
        with self._lock:
            stale = [
                (upload_id, upload)
                for upload_id, upload in self._uploads.items()
                if moment - upload.last_used > self.idle_timeout_s
            ]
        expired = []
        for upload_id, upload in stale:
            # A call that is running holds the lock: that upload is not idle, leave it.
            if not upload.lock.acquire(blocking=False):
                continue
            try:
                if upload.closed or moment - upload.last_used <= self.idle_timeout_s:
                    continue
                self._forget(upload_id, upload)
                upload.writer.abort()
                expired.append(upload_id)
            finally:
                upload.lock.release()
        return expired

    def abort_all(self) -> None:
        """Abort every open upload (on shutdown, so their shards do not stay behind)."""
        with self._lock:
            uploads = list(self._uploads.items())
        for upload_id, upload in uploads:
            with upload.lock:
                if not upload.closed:
                    self._forget(upload_id, upload)
                    upload.writer.abort()
