"""Write a dataset to the store from a stream of batches, validating as it goes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from docarray import BaseDoc

from searchtuner.data.schemas import DataKind
from searchtuner.data.stored.dataset import referenced_shards
from searchtuner.data.stored.info import (
    HANDLE_PREFIX,
    DatasetInfo,
    ShardRef,
    compute_dataset_id,
    manifest_key,
    shard_key,
)
from searchtuner.data.stored.shards import encode_shard
from searchtuner.data.stored.sizes import (
    dataset_bytes_too_many,
    dataset_rows_too_many,
    document_too_large,
    oversized_field,
)
from searchtuner.data.validation import StreamingValidator
from searchtuner.errors import ConfigError, DataError
from searchtuner.store.base import Store
from searchtuner.store.errors import IntegrityError, NotFound

if TYPE_CHECKING:
    from searchtuner.service.limits import Limits

SOURCE = "<upload>"
"""How reports of uploads name the data; rows are "items", numbered from 1 across batches."""
MAX_NAME_LENGTH = 200


def _check_name(name: str | None) -> str | None:
    # A name is a label for listings, never a key or a path: only its form is checked.
    if name is None:
        return None
    if isinstance(name, str) and len(name) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"dataset name must be at most {MAX_NAME_LENGTH} characters, got "
            f"{len(name):,} ({name[:40]!r}...); shorten it"
        )
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"dataset name must be a non-empty string of at most {MAX_NAME_LENGTH} "
            f"characters, got {name!r}"
        )
    if not name.isprintable():
        raise ConfigError(f"dataset name {name!r} holds control characters; remove them")
    return name


class DatasetWriter:
    """Builds one stored dataset from batches of documents.

    Each :meth:`add` validates its batch incrementally and writes the batch's documents as
    one shard (``datasets/shards/<sha256>.bin``, content-addressed: a shard already stored
    is not written again). :meth:`commit` writes the manifest and returns the handle;
    :meth:`abort` removes the shards this writer wrote.

    Memory is bounded by one batch (its documents and its encoded shard) plus what
    :class:`~searchtuner.data.validation.StreamingValidator` keeps: 28 bytes per document
    and a counter per distinct label, about 28 MB for a million documents.

    What is stored: the documents that pass the row-level checks (a malformed row has no
    document to store). The report covers every row; errors in it do not block the commit,
    so the user gets the stored report, and runs refuse a dataset whose ``report.ok`` is
    False.

    Not thread-safe: one writer takes one batch at a time (``UploadSession`` serialises the
    calls of one upload).

    Args:
        store: the owner's store (``store.for_owner(owner)``).
        kind: the kind of data; inferred from the first item when ``None``.
        name: a name to show in listings (not part of the handle).
        max_text_chars: texts longer than this are an error in the report.
        max_image_bytes: images larger than this are an error in the report.
        check_images: decode every image while validating.
        limits: the service's size limits (:class:`~searchtuner.service.limits.Limits`): a
            batch holding a document over ``max_document_bytes``, or one that takes the
            upload over ``max_dataset_rows`` rows or ``max_dataset_bytes`` stored bytes, is
            refused with ``TooLarge`` and nothing of it is stored. ``None``: no such limits.

    Raises:
        ConfigError: unknown kind, a limit that is not a positive integer, or a bad name.
    """

    def __init__(
        self,
        store: Store,
        kind: DataKind | str | None = None,
        name: str | None = None,
        *,
        max_text_chars: int = 100_000,
        max_image_bytes: int = 20_000_000,
        check_images: bool = True,
        limits: Limits | None = None,
    ) -> None:
        self.store = store
        self.name = _check_name(name)
        self.limits = limits
        self.checks: dict[str, Any] = {
            "max_text_chars": max_text_chars,
            "max_image_bytes": max_image_bytes,
            "check_images": bool(check_images),
        }
        self._validator = StreamingValidator(
            kind,
            source=SOURCE,
            first_row=1,
            max_text_chars=max_text_chars,
            max_image_bytes=max_image_bytes,
            check_images=check_images,
        )
        self._shards: list[ShardRef] = []
        self._written: set[str] = set()  # shards this writer stored (abort removes them)
        self._reused: set[str] = set()  # shards that were already stored (commit re-checks)
        self._info: DatasetInfo | None = None
        self._aborted = False
        self._size = 0  # bytes of the shards listed so far (the dataset's size at commit)

    @property
    def kind(self) -> DataKind | None:
        """The kind of data: given, or inferred from the first item (``None`` before it)."""
        return self._validator.kind

    @property
    def n_rows(self) -> int:
        """Rows received so far (every item of every batch, malformed ones included)."""
        return self._validator.n_rows

    @property
    def n_items(self) -> int:
        """Documents stored so far."""
        return sum(ref.n_items for ref in self._shards)

    @property
    def size(self) -> int:
        """Bytes of the shards this upload lists so far (``DatasetInfo.size`` at commit)."""
        return self._size

    def _require_open(self, action: str) -> None:
        if self._aborted:
            raise ConfigError(f"cannot {action}: this upload was aborted; start a new one")
        if self._info is not None:
            raise ConfigError(
                f"cannot {action}: this upload was committed as {self._info.handle}; "
                "start a new upload for more data"
            )

    def add(self, docs: Iterable[Any]) -> int:
        """Validate one batch and write its documents as one shard.

        A batch that fails (the store cannot be written, a tag is not JSON) leaves the writer
        as it was: the batch can be sent again.

        Args:
            docs: a DocList, or a list of documents (LabeledDoc, PairDoc, TextImageDoc,
                UnlabeledDoc, or other schemas with fields of those names), dicts, or
                :class:`~searchtuner.data.readers.Record` objects.

        Returns:
            The number of items in the batch (malformed ones included).

        Raises:
            ConfigError: the writer was committed or aborted, or ``docs`` is not a batch.
            DataError: a document cannot be stored (tags that are not JSON values, a tensor
                of non-numbers); the message names its row.
            TooLarge: with ``limits``: a document over ``max_document_bytes``, or a batch
                that takes the upload over ``max_dataset_rows`` or ``max_dataset_bytes``;
                nothing of the batch is stored and the upload stays open.
            StoreError: the shard could not be written.
        """
        self._require_open("add a batch")
        limits = self.limits
        if limits is not None:
            docs = self._check_sizes(docs, limits)
        batch = self._validator.check(docs)
        if batch.docs:
            data = encode_shard(batch.docs, batch.first_row)
            if limits is not None and self._size + len(data) > limits.max_dataset_bytes:
                raise dataset_bytes_too_many(self._size, len(data), limits.max_dataset_bytes)
            digest = hashlib.sha256(data).hexdigest()
            self._store_shard(digest, data)
            self._shards.append(ShardRef(digest, len(batch.docs), len(data)))
            self._size += len(data)
        self._validator.accept(batch)
        return len(batch.records)

    def _check_sizes(self, docs: Iterable[Any], limits: Limits) -> Iterable[Any]:
        """Refuse a batch over the row or document limits before it is validated.

        Runs before validation so that an oversized document is refused without being
        hashed, decoded or copied. Returns the batch as a list (an iterator is read once).
        """
        if isinstance(docs, str | bytes | bytearray | Mapping | BaseDoc) or not isinstance(
            docs, Iterable
        ):
            return docs  # not a batch: the validator says so
        items = docs if isinstance(docs, list) else list(docs)
        if self.n_rows + len(items) > limits.max_dataset_rows:
            raise dataset_rows_too_many(self.n_rows, len(items), limits.max_dataset_rows)
        limit = limits.max_document_bytes
        for offset, item in enumerate(items):
            found = oversized_field(item, limit)
            if found is not None:
                doc_id = getattr(item, "id", None)
                named = f", id {doc_id!r}" if isinstance(doc_id, str) else ""
                where = (
                    f"item {self.n_rows + offset + 1} of the upload (document {offset} of "
                    f"this batch{named})"
                )
                raise document_too_large(where, found, limit)
        return items

    def _store_shard(self, digest: str, data: bytes) -> None:
        if digest in self._written or digest in self._reused:
            return  # this upload already holds the same batch
        key = shard_key(digest)
        try:
            stored = self.store.stat(key).sha256 == digest
        except NotFound:
            stored = False
        if stored:
            self._reused.add(digest)
        else:
            self.store.put_bytes(key, data)
            self._written.add(digest)

    def commit(self) -> DatasetInfo:
        """Finish the report and write the manifest; the dataset is then addressable.

        A report with errors does not block the commit. Committing the same data twice (same
        batches, same checks) gives the same handle; the first manifest, with its name and
        creation time, is kept. Calling commit again returns the same info.

        Raises:
            ConfigError: the writer was aborted.
            IntegrityError: a shard this upload found already stored has been deleted since
                (by ``delete_dataset`` or an aborted upload of the same data); upload again.
            StoreError: the manifest could not be written; commit can be called again.
        """
        if self._info is not None:
            return self._info
        self._require_open("commit")
        report = self._validator.report()
        shards = tuple(self._shards)
        n_items = self.n_items
        dataset_id = compute_dataset_id(self.kind, n_items, shards, self.checks, report)
        for digest in sorted(self._reused):
            if not self.store.exists(shard_key(digest)):
                raise IntegrityError(
                    f"shard {digest} of this upload was stored before it began and has been "
                    "deleted since (delete_dataset, or an aborted upload of the same data); "
                    "abort this upload and send the data again"
                )
        info = DatasetInfo(
            handle=HANDLE_PREFIX + dataset_id,
            dataset_id=dataset_id,
            kind=self.kind,
            n_items=n_items,
            report=report,
            shards=shards,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            name=self.name,
            size=sum(ref.size for ref in shards),
            checks=dict(self.checks),
        )
        key = manifest_key(dataset_id)
        try:
            # The same data was committed before: keep that manifest (its name and time).
            info = DatasetInfo.from_dict(self.store.get_json(key))
        except NotFound:
            self.store.put_json(key, info.to_dict())
        except (DataError, KeyError, TypeError, ValueError):
            self.store.put_json(key, info.to_dict())  # a damaged manifest: write it anew
        self._info = info
        return info

    def abort(self) -> None:
        """Remove the shards this writer stored that no committed dataset uses.

        Aborting twice is harmless.

        Raises:
            ConfigError: the writer was committed (delete the dataset instead).
        """
        if self._info is not None:
            raise ConfigError(
                f"cannot abort: this upload was committed as {self._info.handle}; "
                "use delete_dataset to remove it"
            )
        if self._aborted:
            return
        self._aborted = True
        if not self._written:
            return
        used = referenced_shards(self.store)
        for digest in sorted(self._written - used):
            self.store.delete(shard_key(digest))
        self._written.clear()
