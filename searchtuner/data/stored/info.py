"""The description of a committed dataset: what its manifest holds, and its handle."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from searchtuner.data.schemas import DataKind, parse_kind
from searchtuner.data.validation import DataReport

MANIFEST_FORMAT = 1
"""Version of the manifest layout (the ``1`` in ``std1:``)."""
HANDLE_PREFIX = f"std{MANIFEST_FORMAT}:"
"""Prefix of every dataset handle."""
HANDLE_FORM = f"{HANDLE_PREFIX}<64 lowercase hex digits>"
DATASETS_PREFIX = "datasets/"
"""Folder of the manifests in an owner's namespace."""
SHARDS_PREFIX = "datasets/shards/"
"""Folder of the shards in an owner's namespace."""

_SHA256 = re.compile(r"[0-9a-f]{64}")
_MANIFEST_KEY = re.compile(r"datasets/([0-9a-f]{64})\.json")


def shard_key(sha256: str) -> str:
    """The store key of the shard with this digest."""
    return f"{SHARDS_PREFIX}{sha256}.bin"


def manifest_key(dataset_id: str) -> str:
    """The store key of the manifest of this dataset."""
    return f"{DATASETS_PREFIX}{dataset_id}.json"


def dataset_id_of_key(key: str) -> str | None:
    """The dataset id if ``key`` is a manifest's key, else ``None``."""
    match = _MANIFEST_KEY.fullmatch(key)
    return None if match is None else match.group(1)


def is_sha256(value: object) -> bool:
    """Whether ``value`` is 64 lowercase hex digits."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None


@dataclass(frozen=True)
class ShardRef:
    """One shard of a dataset, as listed in the manifest.

    Attributes:
        sha256: digest of the shard's bytes; the object is ``datasets/shards/<sha256>.bin``.
        n_items: documents in the shard.
        size: bytes of the shard object.
    """

    sha256: str
    n_items: int
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "n_items": self.n_items, "size": self.size}


@dataclass(frozen=True)
class DatasetInfo:
    """A committed dataset: its handle, counts, kind and validation report.

    Attributes:
        handle: ``std1:<dataset_id>``; give it to runs (``open_dataset`` reads it back).
        dataset_id: 64 lowercase hex digits, the sha256 of the manifest's canonical content
            (kind, shard list, counts, validation settings and report).
        kind: the kind of data (``None`` when no item could be read).
        n_items: documents stored: the rows that passed the row-level checks. The report's
            ``n_items`` counts every uploaded row, malformed ones included; the two are equal
            whenever ``report.ok``.
        report: the validation report over the whole upload (rows numbered from 1 across
            batches); ``report.ok`` is False when a finding is an ERROR, and runs must
            refuse such a dataset.
        shards: the shards in upload order.
        created_at: when the manifest was first written, ISO 8601 UTC.
        name: the name given at upload, if any (not part of the handle).
        size: total bytes of the shards.
        checks: the validation settings (``max_text_chars``, ``max_image_bytes``,
            ``check_images``).
    """

    handle: str
    dataset_id: str
    kind: DataKind | None
    n_items: int
    report: DataReport
    shards: tuple[ShardRef, ...]
    created_at: str
    name: str | None = None
    size: int = 0
    checks: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the data can be trained on (no ERROR finding in the report)."""
        return self.report.ok

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready values, with the handle."""
        return {
            **canonical_content(self.kind, self.n_items, self.shards, self.checks, self.report),
            "dataset_id": self.dataset_id,
            "handle": self.handle,
            "size": self.size,
            "created_at": self.created_at,
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetInfo:
        """Rebuild from :meth:`to_dict` output (or a manifest), checking the id.

        Raises:
            KeyError, TypeError, ValueError: a missing or malformed entry, or an id that
                does not match the content.
        """
        shards = tuple(
            ShardRef(str(s["sha256"]), int(s["n_items"]), int(s["size"])) for s in data["shards"]
        )
        if not all(is_sha256(s.sha256) for s in shards):
            raise ValueError("a shard digest is not 64 lowercase hex digits")
        report = DataReport.from_dict(data["report"])
        kind = parse_kind(data["kind"])
        n_items = int(data["n_items"])
        checks = dict(data["checks"])
        dataset_id = compute_dataset_id(kind, n_items, shards, checks, report)
        if data["dataset_id"] != dataset_id:
            raise ValueError(
                f"manifest names dataset {data['dataset_id']!r} but its content hashes to "
                f"{dataset_id!r}"
            )
        return cls(
            handle=HANDLE_PREFIX + dataset_id,
            dataset_id=dataset_id,
            kind=kind,
            n_items=n_items,
            report=report,
            shards=shards,
            created_at=str(data["created_at"]),
            name=data.get("name"),
            size=int(data.get("size", sum(s.size for s in shards))),
            checks=checks,
        )


def canonical_content(
    kind: DataKind | None,
    n_items: int,
    shards: tuple[ShardRef, ...],
    checks: dict[str, Any],
    report: DataReport,
) -> dict[str, Any]:
    """What a dataset id is computed from: everything but its name and creation time."""
    return {
        "format": MANIFEST_FORMAT,
        "kind": None if kind is None else kind.value,
        "n_items": n_items,
        "shards": [s.to_dict() for s in shards],
        "checks": dict(checks),
        "report": report.to_dict(),
    }


def compute_dataset_id(
    kind: DataKind | None,
    n_items: int,
    shards: tuple[ShardRef, ...],
    checks: dict[str, Any],
    report: DataReport,
) -> str:
    """The sha256 of the canonical content as compact JSON with sorted keys.

    The same data uploaded in the same batches with the same checks gives the same id.
    """
    content = canonical_content(kind, n_items, shards, checks, report)
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
