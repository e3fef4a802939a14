"""Views of a store confined to a key prefix: namespaces and per-owner stores."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace

from searchtuner.store.base import ObjectInfo, Store
from searchtuner.store.keys import validate_key, validate_prefix, validate_segment

OWNERS_PREFIX = "owners"
"""Top-level folder under which each owner's objects live (``owners/<owner>/...``)."""


class PrefixedStore(Store):
    """A store whose keys are all under ``prefix/`` of another store.

    Keys given to and returned by the view are relative to the prefix. Since keys cannot hold
    ``..`` segments, nothing outside the prefix can be read, listed or written through it.
    ``delete_prefix("")`` empties the view. Closing a view leaves ``inner`` open.

    Args:
        inner: the store to delegate to.
        prefix: a valid key (no trailing ``/``) naming the folder.
    """

    def __init__(self, inner: Store, prefix: str) -> None:
        self.inner = inner
        self.prefix = validate_key(prefix.removesuffix("/"), what="namespace")

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{validate_key(key)}"

    def _relative(self, info: ObjectInfo) -> ObjectInfo:
        return replace(info, key=info.key[len(self.prefix) + 1 :])

    def put_stream(
        self, key: str, chunks: Iterable[bytes], metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        return self._relative(self.inner.put_stream(self._full(key), chunks, metadata))

    def put_bytes(
        self, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        return self._relative(self.inner.put_bytes(self._full(key), data, metadata))

    def put_file(
        self, key: str, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        return self._relative(self.inner.put_file(self._full(key), path, metadata))

    def _open(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        info, chunks = self.inner._open(self._full(key))
        return self._relative(info), chunks

    def stat(self, key: str) -> ObjectInfo:
        return self._relative(self.inner.stat(self._full(key)))

    def keys(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        cut = len(self.prefix) + 1
        for key in self.inner.keys(f"{self.prefix}/{prefix}"):
            yield key[cut:]

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        for info in self.inner.list(f"{self.prefix}/{prefix}"):
            yield self._relative(info)

    def delete(self, key: str) -> None:
        self.inner.delete(self._full(key))

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        return self.inner.delete_prefix(f"{self.prefix}/{prefix}")

    def uri(self, key: str = "") -> str:
        return self.inner.uri(self._full(key) if key else self.prefix)


class OwnerStore(PrefixedStore):
    """One owner's objects, kept under ``owners/<owner>/`` of a shared store.

    Args:
        inner: the shared store.
        owner: the owner's name: one key segment (letters, digits, ``.``, ``_``, ``-``).
    """

    def __init__(self, inner: Store, owner: str) -> None:
        self.owner = validate_segment(owner, what="owner name")
        super().__init__(inner, f"{OWNERS_PREFIX}/{owner}")
