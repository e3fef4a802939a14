"""Model handles: small values that name a published bundle by its content.

A handle is ``(uri, sha256, size, format_version)``: where the bundle archive lies, and the
digest and size it must have. Its compact string form is ``stm1:<sha256>:<size>@<uri>``
(``1`` is the bundle format version). Because the archive is byte-reproducible and stored
under its digest, publishing the same checkpoint twice returns the same handle and stores
nothing twice.

Publishing writes to any :class:`searchtuner.store.Store` (local directory or S3). Resolving
goes through a ``StoreOpener`` that maps a URI to a ``BlobReader`` (``download``) and the key
inside it; the default one opens ``file://`` and ``s3://`` URIs with
:func:`searchtuner.store.open_store`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from searchtuner.artifacts.archive import pack_bundle, unpack_bundle
from searchtuner.artifacts.bundle import is_bundle, load_bundle, save_bundle
from searchtuner.artifacts.digests import is_sha256, sha256_file
from searchtuner.artifacts.errors import BundleError
from searchtuner.artifacts.manifest import FORMAT_VERSION, read_manifest, verify_bundle
from searchtuner.artifacts.model_card import ModelCardInfo
from searchtuner.errors import ConfigError
from searchtuner.models.embedding_model import EmbeddingModel
from searchtuner.store.errors import IntegrityError, InvalidKeyError, NotFound
from searchtuner.store.keys import validate_key

if TYPE_CHECKING:
    from searchtuner.store.base import ObjectInfo, Store

HANDLE_FORM = "stm<format>:<sha256>:<size>@<uri>, e.g. stm1:3f2a…(64 hex):1048576@s3://bucket/key"
_COMPACT = re.compile(r"^stm(?P<version>\d+):(?P<sha256>[0-9a-f]{64}):(?P<size>\d+)@(?P<uri>.+)$")
CACHE_ENV = "SEARCHTUNER_CACHE"
MAX_HANDLE_TEXT = 4096
"""Longest handle text :func:`owned_archive` parses (a compact handle is ~100 characters plus
its URI); longer text is refused before it is parsed or echoed back."""


class ModelNotFound(NotFound):
    """No published model under the handle in this owner's namespace.

    Raised alike for a handle whose archive was never published there and for one that
    points anywhere else (another owner's namespace, another store, an object that is not a
    published archive), so that an owner learns nothing about other namespaces.
    """


class BlobReader(Protocol):
    """Reads a stored blob into a local file (the store verifies what it can)."""

    def download(self, key: str, path: Path) -> object: ...


StoreOpener = Callable[[str], tuple[BlobReader, str]]
"""Maps a handle's URI to the reader that holds it and the key inside that reader."""


@dataclass(frozen=True)
class ModelHandle:
    """Names a published bundle archive by location, digest and size.

    Attributes:
        uri: where the archive is stored (``file:///…``, ``s3://bucket/key``, …).
        sha256: the archive's SHA-256, lowercase hex.
        size: the archive's size in bytes.
        format_version: the bundle format inside.
    """

    uri: str
    sha256: str
    size: int
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.uri, str) or "://" not in self.uri:
            problems.append(f"uri must be a URI such as s3://bucket/key, got {self.uri!r}")
        if not is_sha256(self.sha256):
            problems.append(f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            problems.append(f"size must be a non-negative integer, got {self.size!r}")
        version = self.format_version
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            problems.append(f"format_version must be a positive integer, got {version!r}")
        if problems:
            raise ConfigError(f"invalid model handle: {'; '.join(problems)}")

    def __str__(self) -> str:
        return f"stm{self.format_version}:{self.sha256}:{self.size}@{self.uri}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelHandle:
        """Build from ``{"uri", "sha256", "size", "format_version"?}``.

        Raises:
            ConfigError: missing or unknown keys, or invalid values.
        """
        known = {"uri", "sha256", "size", "format_version"}
        missing = sorted({"uri", "sha256", "size"} - set(data))
        unknown = sorted(set(data) - known)
        if missing or unknown:
            raise ConfigError(
                f"invalid model handle: missing {missing}, unknown {unknown}; a handle has "
                f"uri, sha256, size and format_version"
            )
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> ModelHandle:
        """Parse the JSON form (see :meth:`to_json`).

        Raises:
            ConfigError: not a JSON object, or an invalid handle.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"a model handle in JSON form does not parse: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError("a model handle in JSON form must be an object")
        return cls.from_dict(data)

    @classmethod
    def parse(cls, text: str) -> ModelHandle:
        """Parse a handle from its compact string (``str(handle)``) or its JSON form.

        Raises:
            ConfigError: the text is neither; the message shows the expected form.
        """
        stripped = text.strip()
        if stripped.startswith("{"):
            return cls.from_json(stripped)
        match = _COMPACT.match(stripped)
        if match is None:
            raise ConfigError(f"malformed model handle {text!r}; expected {HANDLE_FORM}")
        return cls(
            uri=match["uri"],
            sha256=match["sha256"],
            size=int(match["size"]),
            format_version=int(match["version"]),
        )

    @classmethod
    def coerce(cls, value: ModelHandle | Mapping[str, Any] | str) -> ModelHandle:
        """Accept a handle, its dict, its JSON or its compact string."""
        if isinstance(value, ModelHandle):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if isinstance(value, str):
            return cls.parse(value)
        raise ConfigError(
            f"a model handle must be a ModelHandle, dict or string, got {type(value).__name__}"
        )


def opener_from_store_factory(open_store: Callable[[str], BlobReader]) -> StoreOpener:
    """A StoreOpener from a factory that opens a store by its URI (e.g. ``open_store``).

    The archive URI is split at its last ``/``: the part before names the store, the file
    name is the key (``s3://bucket/models/<sha>.tar`` → store ``s3://bucket/models``, key
    ``<sha>.tar``).
    """

    def opener(uri: str) -> tuple[BlobReader, str]:
        store_uri, _, key = uri.rpartition("/")
        if not key or "://" not in store_uri:
            raise ConfigError(f"cannot split {uri!r} into a store URI and a key")
        return open_store(store_uri), key

    return opener


def default_store_opener(uri: str) -> tuple[BlobReader, str]:
    """Open the store a ``file://`` or ``s3://`` archive URI lies in (see ``open_store``).

    Raises:
        ConfigError: a URI of another scheme (the message lists ``file`` and ``s3``); pass
            ``store_opener=`` to resolve it.
    """
    from searchtuner.store.factory import open_store  # S3 (boto3) loads only when asked for

    return opener_from_store_factory(open_store)(uri)


def archive_key(sha256: str, prefix: str = "models") -> str:
    """The store key of an archive: its digest under ``prefix`` (content-addressed)."""
    clean = prefix.strip("/")
    return f"{clean}/{sha256}.tar" if clean else f"{sha256}.tar"


def publish_bundle(directory: str | Path, store: Store, *, prefix: str = "models") -> ModelHandle:
    """Pack a bundle folder and store it under its digest, unless it is stored already.

    An object already under the archive's key with the same SHA-256 and size is kept as it
    is (nothing is uploaded); one with other content is replaced.

    Args:
        directory: a bundle folder (verified before packing).
        store: where the archive goes (any backend, a namespace or an owner's view).
        prefix: the key prefix, e.g. ``"models"``.

    Returns:
        The handle; the same bundle always gives the same handle.

    Raises:
        BundleError: the bundle fails verification.
        StoreError: the store cannot be written.
    """
    format_version = read_manifest(directory).format_version
    with tempfile.TemporaryDirectory(prefix="searchtuner-publish-") as scratch:
        archive = Path(scratch) / "bundle.tar"
        digest = pack_bundle(directory, archive)
        size = archive.stat().st_size
        key = archive_key(digest, prefix)
        try:
            stored = store.stat(key)
        except NotFound:
            stored = None
        if stored is None or (stored.sha256, stored.size) != (digest, size):
            store.put_file(key, archive)
        return ModelHandle(
            uri=store.uri(key), sha256=digest, size=size, format_version=format_version
        )


def publish_model(
    model: EmbeddingModel,
    store: Store,
    *,
    card: ModelCardInfo | Mapping[str, Any] | None = None,
    onnx: bool = True,
    prefix: str = "models",
) -> ModelHandle:
    """Save a model as a bundle and publish it (see :func:`publish_bundle`)."""
    with tempfile.TemporaryDirectory(prefix="searchtuner-bundle-") as scratch:
        folder = save_bundle(model, Path(scratch) / "bundle", card=card, onnx=onnx)
        return publish_bundle(folder, store, prefix=prefix)


def owned_archive(store: Store, handle: ModelHandle | Mapping[str, Any] | str) -> ObjectInfo:
    """The stored archive a handle names, looked up only inside ``store`` (an owner's view).

    For a service that serves models to their owners: the handle's URI must lie inside
    ``store`` and name a published archive (``<folder>/<sha256>.tar``, the handle's digest)
    that is there. Anything else (another owner's namespace, ``..`` segments, another
    store, an object that is not an archive, nothing stored) fails with the same
    :class:`ModelNotFound` message, naming only the handle's digest.

    Args:
        store: the owner's view of the store (``store.for_owner(owner)``).
        handle: the handle (object, dict, JSON or compact string).

    Returns:
        The archive's info; ``info.key`` is its key in ``store`` (give it to
        ``store.open_stream``).

    Raises:
        ConfigError: a malformed handle; the message shows the expected form.
        ModelNotFound: no archive of this handle in ``store``.
        IntegrityError: the stored archive's digest or size differs from the handle's.
    """
    if isinstance(handle, str) and len(handle) > MAX_HANDLE_TEXT:
        raise ConfigError(
            f"a model handle of {len(handle):,} characters is not a handle; expected {HANDLE_FORM}"
        )
    resolved = ModelHandle.coerce(handle)
    missing = ModelNotFound(
        f"no published model with digest {resolved.sha256} in your namespace: it was never "
        "published here, or has been deleted; a run's model handle is in its record "
        "(GET /runs/<run_id>/model)"
    )
    prefix = store.uri().rstrip("/") + "/"
    if not resolved.uri.startswith(prefix):
        raise missing
    key = resolved.uri[len(prefix) :]
    try:
        validate_key(key)
    except InvalidKeyError:
        raise missing from None  # e.g. "../bob/models/<sha>.tar": outside, so unknown here
    if key.rsplit("/", 1)[-1] != f"{resolved.sha256}.tar":
        raise missing  # not a published archive: a handle never names other objects
    try:
        info = store.stat(key)
    except NotFound:
        raise missing from None
    if (info.sha256, info.size) != (resolved.sha256, resolved.size):
        raise IntegrityError(
            f"the archive {key} holds {info.size} bytes with SHA-256 {info.sha256}, but the "
            f"handle says {resolved.size} bytes with {resolved.sha256}; publish the model again"
        )
    return info


def default_cache_dir() -> Path:
    """``$SEARCHTUNER_CACHE/models``, else ``~/.cache/searchtuner/models``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root) if root else Path.home() / ".cache" / "searchtuner"
    return base / "models"


def fetch_bundle(
    handle: ModelHandle | Mapping[str, Any] | str,
    *,
    store_opener: StoreOpener | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """Download, verify and unpack a handle's bundle into the cache (once per digest).

    The archive's size and SHA-256 are checked before it is unpacked; on a mismatch it is
    deleted and nothing is unpacked.

    Args:
        handle: the handle (object, dict, JSON or compact string).
        store_opener: maps the URI to ``(reader, key)``; the default opens ``file://`` and
            ``s3://`` URIs with :func:`searchtuner.store.open_store`.
        cache_dir: where bundles are unpacked, one folder per digest.

    Returns:
        The unpacked bundle folder (its files are verified again when loaded).

    Raises:
        BundleError: the archive is missing, of the wrong size or digest (by the handle's
            or by the store's record), or not a bundle.
        ConfigError: a malformed handle, or a URI no opener serves.
        StoreError: the store cannot be reached or read (access denied, unavailable).
    """
    resolved = ModelHandle.coerce(handle)
    if resolved.format_version > FORMAT_VERSION:
        raise BundleError(
            f"the handle names bundle format {resolved.format_version}, but this SearchTuner "
            f"reads formats up to {FORMAT_VERSION}; upgrade searchtuner"
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / resolved.sha256
    if _cached(target):
        return target
    reader, key = (store_opener or default_store_opener)(resolved.uri)
    cache.mkdir(parents=True, exist_ok=True)
    handle_fd, partial_name = tempfile.mkstemp(prefix=f".{resolved.sha256}.", dir=cache)
    os.close(handle_fd)
    partial = Path(partial_name)
    try:
        _download(reader, key, partial, resolved.uri)
        size = partial.stat().st_size
        if size != resolved.size:
            raise BundleError(
                f"the archive at {resolved.uri} is {size} bytes, but the handle says "
                f"{resolved.size}; it is truncated or replaced, so nothing was loaded"
            )
        digest = sha256_file(partial)
        if digest != resolved.sha256:
            raise BundleError(
                f"the archive at {resolved.uri} has SHA-256 {digest}, but the handle says "
                f"{resolved.sha256}; it is corrupted or replaced, so nothing was loaded"
            )
        folder = _unpack_into_cache(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    found = read_manifest(folder).format_version
    if found != resolved.format_version:
        raise BundleError(
            f"the bundle is format {found}, but the handle says {resolved.format_version}"
        )
    return folder


def _download(reader: BlobReader, key: str, path: Path, uri: str) -> None:
    """Download an archive, reporting a missing or corrupt stored object as a BundleError."""
    try:
        reader.download(key, path)
    except NotFound as err:
        raise BundleError(
            f"no model archive at {uri}; check the handle, or publish the model again"
        ) from err
    except IntegrityError as err:
        raise BundleError(
            f"the archive at {uri} does not match the SHA-256 its store recorded, so nothing "
            f"was loaded ({err})"
        ) from err


def _cached(target: Path) -> bool:
    """Whether the cache holds an intact bundle; a damaged one is removed to be fetched again."""
    if not is_bundle(target):
        return False
    try:
        verify_bundle(target)
    except BundleError:
        shutil.rmtree(target, ignore_errors=True)
        return False
    return True


def _unpack_into_cache(archive: Path, target: Path) -> Path:
    try:
        return unpack_bundle(archive, target)
    except OSError:
        # Another process unpacked the same digest first: its folder is as good as ours.
        if is_bundle(target):
            return target
        raise


def resolve_bundle(
    source: ModelHandle | Mapping[str, Any] | str | os.PathLike[str],
    *,
    store_opener: StoreOpener | None = None,
    cache_dir: str | Path | None = None,
) -> Path:
    """A local bundle folder for a folder, an archive file or a handle.

    Raises:
        ConfigError: ``source`` is none of these.
        BundleError: see :func:`fetch_bundle` and :func:`unpack_bundle`.
    """
    if isinstance(source, ModelHandle | Mapping):
        return fetch_bundle(source, store_opener=store_opener, cache_dir=cache_dir)
    if isinstance(source, str) and not Path(source).exists():
        text = source.strip()
        if text.startswith(("{", "stm")):
            return fetch_bundle(text, store_opener=store_opener, cache_dir=cache_dir)
        raise ConfigError(
            f"{source!r} is not a bundle folder, a bundle archive or a model handle; "
            f"give a path that exists, or a handle of the form {HANDLE_FORM}"
        )
    if not isinstance(source, str | os.PathLike):
        raise ConfigError(
            "get_model takes a bundle folder, an archive path or a model handle, got "
            f"{type(source).__name__}"
        )
    path = Path(source)
    if path.is_dir():
        return path
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; give a bundle folder or a bundle archive")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / sha256_file(path)
    if _cached(target):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    return _unpack_into_cache(path, target)


def get_model(
    source: ModelHandle | Mapping[str, Any] | str | os.PathLike[str],
    *,
    store_opener: StoreOpener | None = None,
    cache_dir: str | Path | None = None,
    device: str | torch.device | None = None,
) -> EmbeddingModel:
    """Load a model from a bundle folder, a bundle archive or a model handle.

    Args:
        source: a bundle folder; a ``.tar`` archive of one; or a handle (a
            :class:`ModelHandle`, its dict, its JSON or its compact string).
        store_opener: for handles: maps the URI to ``(reader, key)``; the default opens
            ``file://`` and ``s3://`` URIs with :func:`searchtuner.store.open_store` (S3's
            endpoint and credentials come from the environment, see ``open_store``).
        cache_dir: where fetched or local archives are unpacked (one folder per digest;
            default ``$SEARCHTUNER_CACHE/models`` or ``~/.cache/searchtuner/models``).
        device: where the model goes (default: the CPU).

    Returns:
        The model in eval mode, ready for ``searchtuner.encode``.

    Raises:
        BundleError: a digest or size mismatch, a tampered file, a corrupt archive; nothing
            is loaded then.
        ConfigError: ``source`` is not one of the accepted forms.
        StoreError: the handle's store cannot be reached or read.
    """
    folder = resolve_bundle(source, store_opener=store_opener, cache_dir=cache_dir)
    return load_bundle(folder, device=device)
