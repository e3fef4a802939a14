"""Key, prefix, owner and metadata validation shared by every store backend.

Keys are relative, ``/``-separated paths whose segments use only ``[A-Za-z0-9._-]``. Because
no segment may be ``.`` or ``..`` and no key may start with ``/``, a key can never leave the
store's root (no path traversal in the local backend) nor its owner's namespace. Characters
outside that alphabet (``~`` in particular) are free for the backends' own bookkeeping names,
which therefore can never collide with a user's key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from searchtuner.errors import ConfigError
from searchtuner.store.errors import InvalidKeyError

MAX_KEY_LENGTH = 1024
"""Longest key accepted, in characters (S3's limit for a whole object key)."""
MAX_SEGMENT_NAME_LENGTH = 128
"""Longest name :func:`validate_segment` accepts (an owner, a namespace part): such a name
becomes a folder of the local backend, and file systems refuse names over 255 bytes."""

_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_RULES = (
    "keys are '/'-separated segments of letters, digits, '.', '_' and '-' "
    "(no leading '/', no empty, '.' or '..' segments, at most 1024 characters)"
)
_METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
RESERVED_METADATA = frozenset({"sha256", "size"})
"""Metadata names the store sets itself."""
_MAX_METADATA_BYTES = 1024


def _segment_problem(segment: str) -> str | None:
    if segment == "":
        return "is empty"
    if segment in (".", ".."):
        return f"{segment!r} is not allowed"
    if not _SEGMENT.fullmatch(segment):
        bad = sorted({ch for ch in segment if not _SEGMENT.fullmatch(ch)})
        return f"{segment!r} contains {''.join(bad)!r}"
    return None


def validate_key(key: str, *, what: str = "key") -> str:
    """Check a key and return it unchanged.

    Args:
        key: the key to check, e.g. ``"models/run-1/model.onnx"``.
        what: what the string is, for the message (``"key"``, ``"prefix"``, ...).

    Returns:
        The key.

    Raises:
        InvalidKeyError: the key is not a string, is too long, starts with ``/``, or has an
            empty, ``.``/``..`` or odd-character segment; the message names the segment.
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"{what} must be a string, got {type(key).__name__}")
    if key == "":
        raise InvalidKeyError(f"{what} is empty; {_RULES}")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKeyError(f"{what} is {len(key)} characters long; {_RULES}")
    if key.startswith("/"):
        raise InvalidKeyError(f"{what} {key!r} starts with '/'; use a relative key. {_RULES}")
    for number, segment in enumerate(key.split("/"), start=1):
        problem = _segment_problem(segment)
        if problem is not None:
            raise InvalidKeyError(f"{what} {key!r}: segment {number} {problem}; {_RULES}")
    return key


def is_valid_key(key: str) -> bool:
    """Whether ``key`` passes :func:`validate_key` (used to skip the backends' own names)."""
    try:
        validate_key(key)
    except InvalidKeyError:
        return False
    return True


def validate_prefix(prefix: str) -> str:
    """Check a listing prefix: ``""``, a key, or a key followed by ``/``.

    A prefix is matched as a plain string prefix, as S3 does: ``"runs/a"`` matches
    ``"runs/a1/x"`` and ``"runs/a/x"``; end it with ``/`` to match one folder only.

    Raises:
        InvalidKeyError: the prefix is not ``""`` and, without its trailing ``/``, not a key.
    """
    if prefix == "":
        return prefix
    validate_key(prefix.removesuffix("/"), what="prefix")
    return prefix


def validate_segment(name: str, *, what: str) -> str:
    """Check a name that must be exactly one key segment (an owner, a namespace part).

    Raises:
        InvalidKeyError: the name is empty, ``.``/``..``, longer than
            :data:`MAX_SEGMENT_NAME_LENGTH`, contains ``/`` or odd characters.
    """
    rule = f"use one segment of at most {MAX_SEGMENT_NAME_LENGTH} letters, digits, '.', '_' and '-'"
    if not isinstance(name, str):
        raise InvalidKeyError(f"{what} must be a string, got {type(name).__name__}")
    if len(name) > MAX_SEGMENT_NAME_LENGTH:
        # Checked first, and the name cut: it is echoed back, and may be megabytes long.
        raise InvalidKeyError(f"{what} {name[:40]!r}... is {len(name):,} characters long; {rule}")
    problem = _segment_problem(name)
    if problem is None and "/" not in name:
        return name
    reason = problem or "contains '/'"
    raise InvalidKeyError(f"{what} {name!r} {reason}; {rule}")


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Check user metadata and return it as a plain dict.

    Names are lowercase letters, digits and ``-`` (S3 lowercases metadata names); values are
    printable ASCII (S3 sends them as HTTP headers); together at most 1 KiB.

    Raises:
        ConfigError: a name or value S3 could not store, or a reserved name.
    """
    if metadata is None:
        return {}
    checked: dict[str, str] = {}
    total = 0
    for name, value in metadata.items():
        if not isinstance(name, str) or not _METADATA_NAME.fullmatch(name):
            raise ConfigError(
                f"metadata name {name!r} is not allowed; use lowercase letters, digits and '-' "
                "(at most 63 characters, starting with a letter or digit)"
            )
        if name in RESERVED_METADATA:
            raise ConfigError(
                f"metadata name {name!r} is reserved (the store records it); choose another"
            )
        if not isinstance(value, str) or not (value.isascii() and value.isprintable()):
            raise ConfigError(
                f"metadata {name!r} must be a printable ASCII string, got {value!r}; "
                "encode other values (e.g. JSON with ensure_ascii=True)"
            )
        total += len(name) + len(value)
        checked[name] = value
    if total > _MAX_METADATA_BYTES:
        raise ConfigError(
            f"metadata is {total} bytes, more than {_MAX_METADATA_BYTES}; store large "
            "descriptions as an object of their own (put_json) and reference its key"
        )
    return checked
