"""Reading, listing and deleting stored datasets by their handle."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from typing import Any

from docarray import BaseDoc, DocList

from searchtuner.data.schemas import SCHEMAS, DataKind
from searchtuner.data.stored.info import (
    DATASETS_PREFIX,
    HANDLE_FORM,
    HANDLE_PREFIX,
    DatasetInfo,
    ShardRef,
    dataset_id_of_key,
    is_sha256,
    manifest_key,
    shard_key,
)
from searchtuner.data.stored.shards import decode_shard
from searchtuner.errors import DataError
from searchtuner.store.base import Store
from searchtuner.store.errors import IntegrityError, NotFound

logger = logging.getLogger(__name__)

_HOW_TO_GET = (
    "a handle is returned when an upload is committed (DatasetWriter.commit, the upload "
    "answer of the service); list_datasets() shows this owner's datasets"
)


class DatasetNotFound(NotFound):
    """No dataset under the handle in this owner's store, or the handle is malformed.

    The message names the handle and says how to get a valid one.
    """


def parse_handle(handle: object) -> str:
    """The dataset id (64 lowercase hex digits) inside a handle ``std1:<dataset_id>``.

    Surrounding whitespace is ignored, so a pasted handle works.

    Raises:
        DatasetNotFound: the handle is not a string of that form (so it can name nothing,
            and never a key outside the owner's datasets).
    """
    if not isinstance(handle, str):
        raise DatasetNotFound(
            f"a dataset handle must be a string like {HANDLE_FORM}, got a "
            f"{type(handle).__name__}; {_HOW_TO_GET}"
        )
    text = handle.strip()
    dataset_id = text[len(HANDLE_PREFIX) :]
    if not text.startswith(HANDLE_PREFIX) or not is_sha256(dataset_id):
        shown = text if len(text) <= 100 else text[:100] + "..."
        raise DatasetNotFound(
            f"{shown!r} is not a dataset handle; handles look like {HANDLE_FORM}: {_HOW_TO_GET}"
        )
    return dataset_id


def _read_info(store: Store, dataset_id: str, handle: str) -> DatasetInfo:
    key = manifest_key(dataset_id)
    try:
        manifest = store.get_json(key)
    except NotFound as err:
        raise DatasetNotFound(
            f"no dataset {handle} for this owner (a handle only opens in the store of the "
            f"owner who uploaded it); {_HOW_TO_GET}"
        ) from err
    except DataError as err:
        raise IntegrityError(f"the manifest of dataset {handle} is damaged: {err}") from err
    try:
        if not isinstance(manifest, dict):
            raise TypeError(f"a JSON {type(manifest).__name__}, not an object")
        info = DatasetInfo.from_dict(manifest)
    except (KeyError, TypeError, ValueError) as err:
        raise IntegrityError(
            f"the manifest of dataset {handle} at {store.uri(key)} is damaged ({err!r}); "
            "delete the dataset and upload the data again"
        ) from err
    if info.dataset_id != dataset_id:
        raise IntegrityError(
            f"the manifest stored for dataset {handle} describes dataset {info.handle}; "
            "delete the dataset and upload the data again"
        )
    return info


class StoredDataset:
    """A committed dataset, read shard by shard from the store.

    Build it with :func:`open_dataset`. Every shard read is checked twice: by the store
    against the digest recorded at write time, and here against the digest the manifest
    lists, so a replaced shard cannot slip in.

    Attributes:
        store: the owner's store.
        info: the manifest (handle, kind, counts, report, shards).
    """

    def __init__(self, store: Store, info: DatasetInfo) -> None:
        self.store = store
        self.info = info

    @property
    def handle(self) -> str:
        return self.info.handle

    @property
    def kind(self) -> DataKind | None:
        return self.info.kind

    def read_shard(self, ref: ShardRef) -> list[BaseDoc]:
        """The documents of one shard, verified.

        Raises:
            IntegrityError: the shard is missing, or its bytes or content do not match the
                manifest.
        """
        key = shard_key(ref.sha256)
        try:
            data = self.store.get_bytes(key)
        except NotFound as err:
            raise IntegrityError(
                f"dataset {self.handle}: shard {ref.sha256} is missing from the store (deleted "
                "outside SearchTuner, or by an aborted upload of the same data while this one "
                "was open); upload the data again"
            ) from err
        if hashlib.sha256(data).hexdigest() != ref.sha256 or len(data) != ref.size:
            raise IntegrityError(
                f"dataset {self.handle}: shard {ref.sha256} at {self.store.uri(key)} holds "
                "other bytes than the manifest lists; upload the data again"
            )
        try:
            kind, docs = decode_shard(data, self.store.uri(key))
        except DataError as err:
            raise IntegrityError(str(err)) from err
        if kind is not self.info.kind or len(docs) != ref.n_items:
            raise IntegrityError(
                f"dataset {self.handle}: shard {ref.sha256} holds {len(docs)} {kind.value} "
                f"documents, the manifest lists {ref.n_items} of kind {self.info.kind}; "
                "upload the data again"
            )
        return docs

    def iter_shards(self) -> Iterator[list[BaseDoc]]:
        """The documents shard by shard, in upload order (one shard in memory at a time)."""
        for ref in self.info.shards:
            yield self.read_shard(ref)

    def iter_docs(self) -> Iterator[BaseDoc]:
        """Every document, in upload order, one shard in memory at a time.

        Raises:
            IntegrityError: a shard is missing or does not match the manifest.
        """
        for docs in self.iter_shards():
            yield from docs

    def docs(self) -> DocList[Any]:
        """All documents in a DocList of the kind's schema (for data that fits in memory)."""
        schema = SCHEMAS[self.info.kind] if self.info.kind is not None else BaseDoc
        return DocList[schema](list(self.iter_docs()))  # type: ignore[valid-type]

    def __len__(self) -> int:
        return self.info.n_items

    def __repr__(self) -> str:
        return f"StoredDataset({self.handle!r}, kind={self.kind}, n_items={len(self)})"


def open_dataset(store: Store, handle: str) -> StoredDataset:
    """Open a committed dataset by its handle, in the owner's store.

    Only the manifest is read here; shards are read as documents are iterated.

    Args:
        store: the owner's store (``store.for_owner(owner)``).
        handle: ``std1:<dataset_id>``, as returned by ``DatasetWriter.commit``.

    Raises:
        DatasetNotFound: unknown or malformed handle (another owner's handle is unknown here).
        IntegrityError: the manifest is damaged or does not match its id.
    """
    dataset_id = parse_handle(handle)
    return StoredDataset(store, _read_info(store, dataset_id, HANDLE_PREFIX + dataset_id))


def iter_dataset_infos(store: Store) -> Iterator[DatasetInfo]:
    """The manifests of the owner's datasets in key order; damaged ones are logged, skipped."""
    for key in store.keys(DATASETS_PREFIX):
        dataset_id = dataset_id_of_key(key)
        if dataset_id is None:
            continue  # a shard, or an object that is not ours
        try:
            yield _read_info(store, dataset_id, HANDLE_PREFIX + dataset_id)
        except DatasetNotFound:
            continue  # deleted between listing and reading
        except IntegrityError as err:
            # One damaged manifest must not hide the owner's other datasets.
            logger.warning("skipping dataset %s%s: %s", HANDLE_PREFIX, dataset_id, err)


def list_datasets(store: Store) -> list[DatasetInfo]:
    """The owner's committed datasets, oldest first (damaged manifests are logged, skipped)."""
    return sorted(iter_dataset_infos(store), key=lambda info: (info.created_at, info.dataset_id))


def referenced_shards(store: Store, *, skip: str | None = None) -> set[str]:
    """Digests of the shards used by the owner's datasets (except dataset ``skip``)."""
    return {
        ref.sha256
        for info in iter_dataset_infos(store)
        if info.dataset_id != skip
        for ref in info.shards
    }


def delete_dataset(store: Store, handle: str) -> None:
    """Delete a dataset's manifest and the shards no other dataset of the owner uses.

    The manifest goes first, so the dataset disappears at once; shards shared with other
    datasets (the same batch uploaded twice) stay. A damaged manifest is deleted too, but
    its shards stay.

    Raises:
        DatasetNotFound: unknown or malformed handle.
    """
    dataset_id = parse_handle(handle)
    try:
        info = _read_info(store, dataset_id, HANDLE_PREFIX + dataset_id)
    except IntegrityError as err:
        # A damaged manifest must still be deletable; which shards it used is unknown, so
        # they stay (shared shards may be in use by other datasets anyway).
        logger.warning("deleting damaged dataset %s%s: %s", HANDLE_PREFIX, dataset_id, err)
        store.delete(manifest_key(dataset_id))
        return
    store.delete(manifest_key(dataset_id))
    used = referenced_shards(store, skip=dataset_id)
    for sha256 in {ref.sha256 for ref in info.shards} - used:
        store.delete(shard_key(sha256))
