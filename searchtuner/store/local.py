"""The local-directory backend (the embedded default).

Layout of the object under key ``a/b/name`` in ``root``::

    root/a/b/name~meta.json      commit record: {"sha256", "size", "metadata", "data"}
    root/a/b/name~<token>.data   the bytes; "data" in the record names this file

Key folders map to directories and every file the store writes holds a ``~``, which keys
cannot contain, so keys ``a`` and ``a/b`` coexist and no key names a bookkeeping file.

A write streams the bytes into a fresh ``name~<token>.data`` (fsync), then commits by
atomically replacing ``name~meta.json`` (written to ``name~tmp-<token>``, fsync, ``os.replace``,
fsync of the directory), then removes the data file the old record named. The record is the
only thing a reader looks up, so it sees the old object, the new one or nothing, never a mix; a
write that dies before the commit leaves only files no record points at, which are invisible
(and are swept by :meth:`LocalStore.delete_prefix`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
from collections.abc import Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from searchtuner.store.base import (
    CHUNK_SIZE,
    ObjectInfo,
    Store,
    as_bytes,
    corrupt,
    read_chunks,
)
from searchtuner.store.errors import (
    IntegrityError,
    NotFound,
    StoreAccessDenied,
    StoreError,
)
from searchtuner.store.keys import is_valid_key, validate_key, validate_metadata, validate_prefix

_RECORD = "~meta.json"
_ATTEMPTS = 3
"""Tries for steps that can race with a concurrent writer or delete (bounded)."""
_PRUNE_STOP = frozenset({errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT, errno.EBUSY})


@contextlib.contextmanager
def _os_errors(action: str, path: Path) -> Generator[None, None, None]:
    """Turn OS errors into store errors that name the path and what to check."""
    try:
        yield
    except PermissionError as err:
        raise StoreAccessDenied(
            f"permission denied {action} {path}; make the store directory writable by this "
            "user, or choose another store root"
        ) from err
    except OSError as err:
        raise StoreError(
            f"cannot complete {action} {path}: {err.strerror or err}; check free disk space "
            "and that the store root is a writable local directory"
        ) from err


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(Store):
    """Objects in a local directory, with sha256 commit records beside the data files.

    Args:
        root: the store's directory; created on the first write.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _place(self, key: str) -> tuple[Path, str]:
        *folders, name = validate_key(key).split("/")
        return self.root.joinpath(*folders), name

    def _read_record(self, key: str, directory: Path, name: str) -> dict[str, Any] | None:
        path = directory / f"{name}{_RECORD}"
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            raise StoreError(f"cannot read {path}: {err.strerror}; check permissions") from err
        try:
            record = json.loads(text)
            fields_ok = (
                isinstance(record["sha256"], str)
                and isinstance(record["size"], int)
                and isinstance(record["data"], str)
                and isinstance(record["metadata"], dict)
            )
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise IntegrityError(
                f"the record {path} of object {key!r} is damaged ({err}); delete the object "
                "and write it again"
            ) from err
        if not fields_ok or "/" in record["data"] or not record["data"].startswith(f"{name}~"):
            raise IntegrityError(
                f"the record {path} of object {key!r} is damaged; delete the object and write "
                "it again"
            )
        return dict(record)

    @staticmethod
    def _info(key: str, record: Mapping[str, Any]) -> ObjectInfo:
        return ObjectInfo(key, record["size"], record["sha256"], dict(record["metadata"]))

    def put_stream(
        self, key: str, chunks: Iterable[bytes], metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        directory, name = self._place(key)
        meta = validate_metadata(metadata)
        token = secrets.token_hex(8)
        data_path = directory / f"{name}~{token}.data"
        record_tmp = directory / f"{name}~tmp-{token}"
        try:
            with _os_errors("writing", data_path):
                handle = self._create(data_path)
            digest = hashlib.sha256()
            size = 0
            with handle:
                # The producer's own errors pass through untouched; only the disk's are wrapped.
                for chunk in chunks:
                    data = as_bytes(chunk)
                    with _os_errors("writing", data_path):
                        handle.write(data)
                    digest.update(data)
                    size += len(data)
                with _os_errors("writing", data_path):
                    handle.flush()
                    os.fsync(handle.fileno())
            old = self._old_data(key, directory, name)
            record = {
                "sha256": digest.hexdigest(),
                "size": size,
                "metadata": meta,
                "data": data_path.name,
            }
            with _os_errors("committing", record_tmp):
                with open(record_tmp, "x", encoding="utf-8") as out:
                    json.dump(record, out, sort_keys=True)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(record_tmp, directory / f"{name}{_RECORD}")
                _fsync_dir(directory)
        except BaseException:
            data_path.unlink(missing_ok=True)
            record_tmp.unlink(missing_ok=True)
            raise
        if old is not None and old != data_path.name:
            (directory / old).unlink(missing_ok=True)
        return self._info(key, record)

    def _create(self, path: Path) -> Any:
        """Open a new file for writing, re-creating its folder if a delete pruned it meanwhile."""
        for _ in range(_ATTEMPTS - 1):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                return open(path, "xb")
            except FileNotFoundError:
                continue
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "xb")

    def _old_data(self, key: str, directory: Path, name: str) -> str | None:
        """The data file the current record names, if any (a damaged record names none)."""
        try:
            record = self._read_record(key, directory, name)
        except IntegrityError:
            return None
        return None if record is None else str(record["data"])

    def put_file(
        self, key: str, path: str | os.PathLike[str], metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        self._place(key)
        return self.put_stream(key, read_chunks(path), metadata)

    def _open(self, key: str) -> tuple[ObjectInfo, Iterator[bytes]]:
        directory, name = self._place(key)
        for _ in range(_ATTEMPTS):
            record = self._read_record(key, directory, name)
            if record is None:
                raise NotFound(f"no object {key!r} in {self.uri()}; check the key with list()")
            info = self._info(key, record)
            path = directory / record["data"]
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed by the generator below
            except FileNotFoundError:
                continue  # replaced by a concurrent write: read the new record
            except OSError as err:
                raise StoreError(f"cannot read {path}: {err.strerror}; check permissions") from err
            actual = os.fstat(handle.fileno()).st_size
            if actual != info.size:
                handle.close()
                raise corrupt(info, self.uri(key), "(not read: wrong size)", actual)
            return info, self._chunks(handle)
        raise IntegrityError(
            f"the data file of object {key!r} in {self.uri()} is missing; delete the object "
            "and write it again"
        )

    @staticmethod
    def _chunks(handle: Any) -> Generator[bytes, None, None]:
        with handle:
            while chunk := handle.read(CHUNK_SIZE):
                yield chunk

    def stat(self, key: str) -> ObjectInfo:
        directory, name = self._place(key)
        record = self._read_record(key, directory, name)
        if record is None:
            raise NotFound(f"no object {key!r} in {self.uri()}; check the key with list()")
        return self._info(key, record)

    def _start(self, prefix: str) -> Path:
        """The deepest directory that holds every key starting with ``prefix``."""
        folders = validate_prefix(prefix).split("/")[:-1]
        return self.root.joinpath(*folders)

    def _folder_key(self, dirpath: str) -> str:
        relative = Path(dirpath).relative_to(self.root).as_posix()
        return "" if relative == "." else f"{relative}/"

    def keys(self, prefix: str = "") -> Iterator[str]:
        start = self._start(prefix)
        found: list[str] = []
        for dirpath, _, filenames in os.walk(start):
            folder = self._folder_key(dirpath)
            for filename in filenames:
                if filename.endswith(_RECORD):
                    key = folder + filename[: -len(_RECORD)]
                    if key.startswith(prefix) and is_valid_key(key):
                        found.append(key)
        return iter(sorted(found))

    def delete(self, key: str) -> None:
        directory, name = self._place(key)
        data = self._old_data(key, directory, name)
        with _os_errors("deleting", directory / name):
            (directory / f"{name}{_RECORD}").unlink(missing_ok=True)
            if data is not None:
                (directory / data).unlink(missing_ok=True)
        self._prune(directory)

    def delete_prefix(self, prefix: str) -> int:
        """Delete the objects under ``prefix`` and sweep leftovers of interrupted writes there.

        Not meant to run while other processes write under the same prefix.
        """
        count = super().delete_prefix(prefix)
        start = self._start(prefix)
        for dirpath, _, filenames in os.walk(start, topdown=False):
            folder = self._folder_key(dirpath)
            for filename in filenames:
                owner_key = folder + filename.split("~", 1)[0]
                if "~" in filename and owner_key.startswith(prefix):
                    with _os_errors("deleting", Path(dirpath, filename)):
                        Path(dirpath, filename).unlink(missing_ok=True)
            self._prune(Path(dirpath))
        return count

    def _prune(self, directory: Path) -> None:
        """Remove empty folders from ``directory`` up to (not including) the root."""
        for _ in range(len(directory.relative_to(self.root).parts)):
            try:
                directory.rmdir()
            except OSError as err:
                if err.errno in _PRUNE_STOP:
                    return
                raise StoreError(
                    f"cannot remove the empty folder {directory}: {err.strerror}; check "
                    "permissions on the store root"
                ) from err
            directory = directory.parent

    def uri(self, key: str = "") -> str:
        base = self.root.as_uri()
        return f"{base}/{validate_key(key)}" if key else base
