"""The artifact store: one interface, a local-directory backend and an S3 backend.

Every object has a sha256 recorded at write time and checked on every read; writes are atomic;
keys are validated (no path traversal) and can be namespaced per owner.

Typical use::

    from searchtuner.store import open_store

    store = open_store("s3://artifacts/searchtuner")  # or "file:///srv/store", "./store"
    mine = store.for_owner("alice")
    mine.put_file("runs/r1/model.onnx", "model.onnx")
    mine.download("runs/r1/model.onnx", "/tmp/model.onnx")  # verified, then renamed
"""

from typing import TYPE_CHECKING, Any

from searchtuner.store.base import ObjectInfo, Store
from searchtuner.store.errors import (
    BucketNotFound,
    IntegrityError,
    InvalidKeyError,
    NotFound,
    StoreAccessDenied,
    StoreError,
    StoreUnavailable,
)
from searchtuner.store.factory import open_store
from searchtuner.store.keys import validate_key, validate_prefix, validate_segment
from searchtuner.store.local import LocalStore
from searchtuner.store.prefixed import OwnerStore, PrefixedStore

if TYPE_CHECKING:
    from searchtuner.store.s3 import S3Store

__all__ = [
    "BucketNotFound",
    "IntegrityError",
    "InvalidKeyError",
    "LocalStore",
    "NotFound",
    "ObjectInfo",
    "OwnerStore",
    "PrefixedStore",
    "S3Store",
    "Store",
    "StoreAccessDenied",
    "StoreError",
    "StoreUnavailable",
    "open_store",
    "validate_key",
    "validate_prefix",
    "validate_segment",
]


def __getattr__(name: str) -> Any:
    """Import the S3 backend (and boto3) only when it is asked for."""
    if name == "S3Store":
        from searchtuner.store.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
