"""Check a training set (and optionally its eval set) before training, in one streaming pass.

Memory grows with the number of distinct labels and 28 bytes per item (a 16-byte content
hash, its row and its label id, in compact arrays: see :class:`_DigestIndex`), not with the
items' contents: images are read and decoded one at a time. Duplicates are found by sorting
those hashes once the data has been read.

:class:`StreamingValidator` checks data that arrives in batches (an upload) and reports what
:func:`validate` would report for all of it in one piece.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from docarray import BaseDoc
from PIL import Image

from searchtuner.data.readers import (
    EMPTY_FIELD,
    MALFORMED_ROW,
    MISSING_LABEL,
    MULTIPLE_CONTENT,
    Record,
    Source,
    _Builder,
    describe_source,
    iter_records,
    row_unit,
)
from searchtuner.data.schemas import (
    SCHEMAS,
    DataKind,
    LabeledDoc,
    PairDoc,
    UnlabeledDoc,
    doc_modalities,
    kind_of,
    parse_kind,
)
from searchtuner.errors import ConfigError, DataError

MAX_ROWS = 10
"""How many example rows a finding lists."""
MAX_EXAMPLES = 5
"""How many detailed examples a finding carries."""


class Severity(StrEnum):
    """How much a finding matters: ERROR blocks training, WARNING deserves a look."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


_SEVERITY: dict[str, Severity] = {
    MALFORMED_ROW: Severity.ERROR,
    MISSING_LABEL: Severity.ERROR,
    EMPTY_FIELD: Severity.ERROR,
    MULTIPLE_CONTENT: Severity.ERROR,
    "empty_data": Severity.ERROR,
    "oversized_field": Severity.ERROR,
    "image_decode_error": Severity.ERROR,
    "image_not_found": Severity.ERROR,
    "non_finite_tensor": Severity.ERROR,
    "tensor_shape_mismatch": Severity.ERROR,
    "mixed_modalities": Severity.ERROR,
    "single_label": Severity.ERROR,
    "label_too_few_items": Severity.WARNING,
    "duplicate": Severity.WARNING,
    "conflicting_labels": Severity.WARNING,
    "train_eval_overlap": Severity.WARNING,
    "eval_label_not_in_train": Severity.INFO,
}
FINDING_CODES = tuple(_SEVERITY)
"""Every finding code :func:`validate` can report."""

# What each per-row finding means and what to do; {n} is the count, {rows} "rows"/"items".
_SUMMARY: dict[str, str] = {
    MALFORMED_ROW: "{n} {rows} could not be read; fix the fields named below or remove the rows",
    MISSING_LABEL: "no label in {n} {rows}; give every item a label, or use kind='unlabeled'",
    EMPTY_FIELD: "empty or missing field in {n} {rows}; fill it in or remove those rows",
    MULTIPLE_CONTENT: (
        "more than one kind of content in {n} {rows}; keep one per item (text, image or "
        "tensor), or use kind='text_image' for text–image pairs"
    ),
    "oversized_field": (
        "field over the size limit in {n} {rows}; shorten or resize it, or raise "
        "max_text_chars / max_image_bytes"
    ),
    "image_decode_error": (
        "image that does not decode in {n} {rows}; re-save those images as PNG or JPEG, "
        "or remove the rows"
    ),
    "image_not_found": (
        "image file missing for {n} {rows}; fix the paths (relative paths are resolved "
        "against the data file's folder or base_dir)"
    ),
    "non_finite_tensor": "NaN or infinity in the tensor of {n} {rows}; fix or remove them",
    "tensor_shape_mismatch": (
        "tensor of another shape than the first tensor in {n} {rows}; give every item a "
        "tensor of the same shape"
    ),
    "duplicate": (
        "exact repeat of an earlier item in {n} {rows}; remove the duplicates, they "
        "over-weight those items"
    ),
    "conflicting_labels": (
        "repeat of an earlier item with a different label in {n} {rows}; correct one of the labels"
    ),
    "train_eval_overlap": (
        "eval items that also occur in the training data: {n} {rows}; this leakage inflates "
        "eval scores: remove them from the eval data"
    ),
}


@dataclass
class Finding:
    """One problem (or fact worth knowing) about the data.

    Attributes:
        code: stable snake_case id, one of :data:`FINDING_CODES`.
        severity: ERROR blocks training; WARNING and INFO do not.
        message: what was found and what to do about it.
        rows: example row numbers (at most 10): of the training data when ``data`` is
            ``"train"``, else of the eval data.
        count: how many rows (or labels, for label findings) are affected.
        data: ``"train"``, ``"eval"``, or ``"train+eval"`` for findings about both.
        examples: up to 5 detailed lines naming the row and field.
    """

    code: str
    severity: Severity
    message: str
    rows: list[int] = field(default_factory=list)
    count: int = 0
    data: str = "train"
    examples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready values."""
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "rows": list(self.rows),
            "count": self.count,
            "data": self.data,
            "examples": list(self.examples),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        """Rebuild a finding from :meth:`to_dict` output."""
        return cls(
            code=data["code"],
            severity=Severity(data["severity"]),
            message=data["message"],
            rows=list(data.get("rows", [])),
            count=int(data.get("count", 0)),
            data=data.get("data", "train"),
            examples=list(data.get("examples", [])),
        )


@dataclass
class DataReport:
    """What :func:`validate` found.

    Attributes:
        n_items: rows or items read from the training data, malformed ones included.
        kind: the kind of data, given or inferred (``None`` if nothing could be read).
        modalities: well-formed training items per modality (``{"text": 120}``); a
            text–image pair counts once under each.
        n_labels: distinct labels in the training data.
        items_per_label: well-formed training items per label, largest first.
        findings: the problems, errors first.
        source: the training data's name (path or ``"<DocList>"``).
        eval_source: the eval data's name, if any.
        eval_n_items: rows or items in the eval data, if any.
        eval_items_per_label: eval items per label, if any.
    """

    n_items: int
    kind: DataKind | None
    modalities: dict[str, int]
    n_labels: int
    items_per_label: dict[str, int]
    findings: list[Finding]
    source: str = "<data>"
    eval_source: str | None = None
    eval_n_items: int | None = None
    eval_items_per_label: dict[str, int] | None = None

    @property
    def errors(self) -> list[Finding]:
        """The findings that block training."""
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        """The findings worth a look that do not block training."""
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        """True when no finding is an ERROR."""
        return not self.errors

    def codes(self) -> set[str]:
        """The codes of all findings (handy in tests and scripts)."""
        return {f.code for f in self.findings}

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (``ok`` included for readers of the JSON)."""
        return {
            "ok": self.ok,
            "source": self.source,
            "kind": None if self.kind is None else self.kind.value,
            "n_items": self.n_items,
            "modalities": dict(self.modalities),
            "n_labels": self.n_labels,
            "items_per_label": dict(self.items_per_label),
            "eval_source": self.eval_source,
            "eval_n_items": self.eval_n_items,
            "eval_items_per_label": (
                None if self.eval_items_per_label is None else dict(self.eval_items_per_label)
            ),
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The report as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataReport:
        """Rebuild a report from :meth:`to_dict` output."""
        return cls(
            n_items=int(data["n_items"]),
            kind=parse_kind(data.get("kind")),
            modalities=dict(data.get("modalities", {})),
            n_labels=int(data.get("n_labels", 0)),
            items_per_label=dict(data.get("items_per_label", {})),
            findings=[Finding.from_dict(f) for f in data.get("findings", [])],
            source=data.get("source", "<data>"),
            eval_source=data.get("eval_source"),
            eval_n_items=data.get("eval_n_items"),
            eval_items_per_label=data.get("eval_items_per_label"),
        )

    def raise_for_errors(self) -> None:
        """Raise if any finding is an ERROR.

        Raises:
            DataError: listing every error finding with its examples.
        """
        if self.ok:
            return
        lines = [f"the data in {self.source} cannot be used for training:"]
        for finding in self.errors:
            lines.append(f"  [{finding.code}] {finding.message}")
            lines.extend(f"      {e}" for e in finding.examples)
        raise DataError("\n".join(lines))

    def __str__(self) -> str:
        kind = "unknown" if self.kind is None else self.kind.value
        mods = ", ".join(f"{m} {n}" for m, n in self.modalities.items()) or "none"
        lines = [
            f"Data report for {self.source} (kind: {kind})",
            f"  items: {self.n_items} | labels: {self.n_labels} | modalities: {mods}",
        ]
        if self.items_per_label:
            lines.append(f"  items per label: {_top(self.items_per_label)}")
        if self.eval_source is not None:
            eval_labels = len(self.eval_items_per_label or {})
            lines.append(
                f"  eval data {self.eval_source}: items: {self.eval_n_items} | "
                f"labels: {eval_labels}"
            )
        counts = Counter(f.severity for f in self.findings)
        lines.append(
            f"Findings: {counts[Severity.ERROR]} error(s), {counts[Severity.WARNING]} "
            f"warning(s), {counts[Severity.INFO]} info"
        )
        for finding in self.findings:
            icon = {Severity.ERROR: "✗", Severity.WARNING: "!", Severity.INFO: "i"}
            lines.append(
                f"  {icon[finding.severity]} {finding.severity.value.upper():7} "
                f"{finding.code} ({finding.data}): {finding.message}"
            )
            if finding.rows:
                on_eval = finding.data != "train" and self.eval_source is not None
                unit = row_unit(self.eval_source if on_eval and self.eval_source else self.source)
                label = f"eval {unit}s" if on_eval else f"{unit}s"
                lines.append(f"      {label}: {', '.join(str(r) for r in finding.rows)}")
            lines.extend(f"      - {e}" for e in finding.examples)
        if self.ok:
            lines.append("Result: OK, no errors")
        else:
            lines.append("Result: NOT OK, fix the errors above before training")
        return "\n".join(lines)


def _top(counts: dict[str, int], limit: int = 20) -> str:
    shown = ", ".join(f"{label!r}: {n}" for label, n in list(counts.items())[:limit])
    more = len(counts) - limit
    return shown + (f", ... ({more} more)" if more > 0 else "")


@dataclass
class _Tally:
    """Count, example rows and example lines of one finding while scanning."""

    count: int = 0
    rows: list[int] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    last_row: int | None = None

    def add(self, row: int, example: str | None = None) -> None:
        if example is not None and len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)
        if row == self.last_row:  # several problems in one row count the row once
            return
        self.last_row = row
        self.count += 1
        if len(self.rows) < MAX_ROWS:
            self.rows.append(row)


@dataclass
class _Stats:
    """What one scan learned about one data set."""

    source: str
    n_items: int = 0
    modalities: Counter[str] = field(default_factory=Counter)
    modality_rows: dict[str, list[int]] = field(default_factory=dict)
    labels: Counter[str] = field(default_factory=Counter)
    first_row: dict[str, int] = field(default_factory=dict)
    kind: DataKind | None = None


class _DigestIndex:
    """The content digests of one data set's well-formed items, in scan order.

    Duplicates are found once the scan is over, by sorting (:func:`_repeats`), so that memory
    per item stays small instead of a dict entry per item (over 100 bytes): 28 bytes per item
    (a 16-byte digest, an 8-byte row number and a 4-byte label id) in compact growing buffers,
    plus about as much again, briefly, while the repeats are computed.
    """

    def __init__(self) -> None:
        self.digests = bytearray()
        self.rows = array("q")
        self.labels = array("i")

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, digest: bytes, row: int, label_id: int) -> None:
        self.digests += digest
        self.rows.append(row)
        self.labels.append(label_id)

    def extend(self, digests: bytes, rows: Iterable[int], label_ids: Iterable[int]) -> None:
        self.digests += digests
        self.rows.extend(rows)
        self.labels.extend(label_ids)

    def keys(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """The digests as two native uint64 columns (high and low halves), copied."""
        view = np.frombuffer(self.digests, dtype=">u8")
        try:
            return view[0::2].astype(np.uint64), view[1::2].astype(np.uint64)
        finally:
            del view  # while a view exists the buffer cannot grow: release it at once


def _first_of_group(high: np.ndarray[Any, Any], low: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """For each element, the index of the first element (in input order) with the same key."""
    n = len(high)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((low, high))  # stable: equal keys keep their input order
    sorted_high, sorted_low = high[order], low[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = (sorted_high[1:] != sorted_high[:-1]) | (sorted_low[1:] != sorted_low[:-1])
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    first = np.empty(n, dtype=np.int64)
    first[order] = order[group_start]
    return first


_Event = tuple[int, int, tuple[str, str], _Tally]


class _Scanner:
    """Per-item checks, shared by the training and the eval scan."""

    def __init__(self, max_text_chars: int, max_image_bytes: int, check_images: bool) -> None:
        self.max_text_chars = max_text_chars
        self.max_image_bytes = max_image_bytes
        self.check_images = check_images
        self.tallies: dict[tuple[str, str], _Tally] = {}
        self.tensor_shape: tuple[tuple[int, ...], str, int] | None = None  # shape, data, row
        self.label_ids: dict[str, int] = {}
        self.label_names: list[str] = []

    def tally(self, code: str, data: str) -> _Tally:
        return self.tallies.setdefault((code, data), _Tally())

    def label_id(self, label: str | None) -> int:
        if label is None:
            return -1
        found = self.label_ids.get(label)
        if found is None:
            found = self.label_ids[label] = len(self.label_names)
            self.label_names.append(label)
        return found

    def feed(self, record: Record, stats: _Stats, data: str, index: _DigestIndex) -> None:
        """Check one record; its content digest goes to ``index`` for the repeat checks."""
        doc = record.doc
        if doc is None:
            stats.n_items += 1
            for err in record.errors:
                self.tally(err.code, data).add(record.row, str(err))
            return
        if type(doc) in _TEXT_FIELDS and self._feed_text(doc, record.row, stats, index):
            return
        stats.n_items += 1
        stats.kind = stats.kind or kind_of(doc)
        row = record.row
        where = f"{stats.source} {row_unit(stats.source)} {row}"
        for modality in sorted(m.value for m in doc_modalities(doc)):
            stats.modalities[modality] += 1
            rows = stats.modality_rows.setdefault(modality, [])
            if len(rows) < MAX_ROWS:
                rows.append(row)
        label: str | None = getattr(doc, "label", None)
        if label is not None:
            stats.labels[label] += 1
            stats.first_row.setdefault(label, row)
        index.add(self._check_item(doc, row, where, data), row, self.label_id(label))

    def _feed_text(self, doc: BaseDoc, row: int, stats: _Stats, index: _DigestIndex) -> bool:
        """The fast path of :meth:`feed` for a document holding only texts within the limit.

        It gives the same counts and digest as the general path, which handles every other
        document (and this one too, when it returns False without having changed anything).
        """
        fields = doc.__dict__
        names = _TEXT_FIELDS[type(doc)]
        if len(names) == 1 and not (
            fields["image"] is None and fields["uri"] is None and fields["tensor"] is None
        ):
            return False
        parts = [_TYPE_NAMES[type(doc)]]
        for name in names:
            text = fields[name]
            if type(text) is not str or len(text) > self.max_text_chars:
                return False
            content = text.encode("utf-8", errors="surrogatepass")
            parts += (_NAME_BYTES[name], _LENGTH.pack(len(content)), content)
        stats.n_items += 1
        stats.kind = stats.kind or kind_of(doc)
        stats.modalities["text"] += 1
        rows = stats.modality_rows.setdefault("text", [])
        if len(rows) < MAX_ROWS:
            rows.append(row)
        label: str | None = fields.get("label")
        if label is not None:
            stats.labels[label] += 1
            if label not in stats.first_row:
                stats.first_row[label] = row
        digest = hashlib.blake2b(b"".join(parts), digest_size=16).digest()
        index.add(digest, row, self.label_id(label))
        return True

    def repeats(
        self,
        index: _DigestIndex,
        stats: _Stats,
        data: str,
        train: tuple[_DigestIndex, _Stats] | None = None,
    ) -> list[tuple[tuple[str, str], _Tally]]:
        """The duplicate, conflicting-label and (for eval) train-overlap tallies of a scan.

        They are computed from ``index`` by sorting, and returned in the order in which a
        row-by-row scan would first have met them, so that reports list findings in the same
        order whether the data came in one piece or in batches.

        Args:
            index: the digests of the scanned data set.
            stats: what the scan learned about it (for the source name).
            data: ``"train"`` or ``"eval"``.
            train: for eval data, the training data's digests and stats.
        """
        unit = row_unit(stats.source)
        high, low = index.keys()
        rows = np.frombuffer(index.rows, dtype=np.int64)
        labels = np.frombuffer(index.labels, dtype=np.int32)
        first = _first_of_group(high, low)
        positions = np.arange(len(rows))
        repeated = first != positions
        conflicting = repeated & (labels[first] != labels)
        events: list[_Event] = []

        def event(
            mask: np.ndarray[Any, Any], code: str, rank: int, example: Callable[[int], str]
        ) -> None:
            hits = np.flatnonzero(mask)
            if len(hits) == 0:
                return
            tally = _Tally(count=len(hits))
            tally.rows = [int(rows[i]) for i in hits[:MAX_ROWS]]
            tally.examples = [example(int(i)) for i in hits[:MAX_EXAMPLES]]
            events.append((int(hits[0]), rank, (code, data), tally))

        def where(i: int) -> str:
            return f"{stats.source} {unit} {int(rows[i])}"

        def label_of(i: int) -> str | None:
            return None if labels[i] < 0 else self.label_names[labels[i]]

        event(
            conflicting,
            "conflicting_labels",
            0,
            lambda i: (
                f"{where(i)} repeats {unit} {int(rows[first[i]])} with another label "
                f"({label_of(i)!r})"
            ),
        )
        event(
            repeated & ~conflicting,
            "duplicate",
            0,
            lambda i: f"{where(i)} repeats {unit} {int(rows[first[i]])}",
        )
        if train is not None:
            train_index, train_stats = train
            train_unit = row_unit(train_stats.source)
            train_high, train_low = train_index.keys()
            train_rows = np.frombuffer(train_index.rows, dtype=np.int64)
            # Eval items after the training items: an eval item's group starts with a
            # training item exactly when its content also occurs in the training data.
            joint = _first_of_group(
                np.concatenate([train_high, high]), np.concatenate([train_low, low])
            )
            in_train = joint[len(train_rows) :]
            overlap = in_train < len(train_rows)
            event(
                overlap,
                "train_eval_overlap",
                1,
                lambda i: (
                    f"{where(i)} is also training {train_unit} {int(train_rows[in_train[i]])}"
                ),
            )
        events.sort(key=lambda e: (e[0], e[1]))
        return [(key, tally) for _, _, key, tally in events]

    def _check_item(self, doc: BaseDoc, row: int, where: str, data: str) -> bytes:
        """Check one well-formed document; return the hash of its content."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(type(doc).__name__.encode())
        for name in ("text", "query", "document"):
            text = getattr(doc, name, None)
            if text is None:
                continue
            if len(text) > self.max_text_chars:
                self.tally("oversized_field", data).add(
                    row,
                    f"{where}, field '{name}': {len(text)} characters, over "
                    f"max_text_chars={self.max_text_chars}",
                )
            _update(digest, name, text.encode("utf-8", errors="surrogatepass"))
        if not isinstance(doc, PairDoc):
            self._check_image(doc, row, where, data, digest)
            tensor = getattr(doc, "tensor", None)
            if tensor is not None:
                self._check_tensor(np.asarray(tensor), row, where, data, digest)
        return digest.digest()

    def _check_image(
        self, doc: BaseDoc, row: int, where: str, data: str, digest: hashlib.blake2b
    ) -> None:
        content: bytes | None = getattr(doc, "image", None)
        uri: str | None = getattr(doc, "uri", None)
        if content is None and uri is not None:
            content = self._read_uri(uri, row, where, data)
            if content is None:  # unreadable, or not checked: the path stands for the image
                _update(digest, "uri", uri.encode("utf-8", errors="surrogatepass"))
                return
        elif content is not None and len(content) > self.max_image_bytes:
            self.tally("oversized_field", data).add(
                row,
                f"{where}, field 'image': {len(content)} bytes, over "
                f"max_image_bytes={self.max_image_bytes}",
            )
        elif content is not None and self.check_images:
            problem = _decode_problem(content)
            if problem is not None:
                self.tally("image_decode_error", data).add(
                    row, f"{where}, field 'image': {problem}"
                )
        if content is not None:
            _update(digest, "image", content)

    def _read_uri(self, uri: str, row: int, where: str, data: str) -> bytes | None:
        if not self.check_images:
            return None
        path = Path(uri)
        if not path.is_file():
            self.tally("image_not_found", data).add(
                row, f"{where}, field 'uri': no file at {uri} (images are read from local paths)"
            )
            return None
        size = path.stat().st_size
        if size > self.max_image_bytes:
            self.tally("oversized_field", data).add(
                row,
                f"{where}, field 'uri': {uri} has {size} bytes, over "
                f"max_image_bytes={self.max_image_bytes}",
            )
            return None
        try:
            content = path.read_bytes()
        except OSError as err:
            self.tally("image_not_found", data).add(
                row, f"{where}, field 'uri': cannot read {uri} ({err.strerror})"
            )
            return None
        problem = _decode_problem(content)
        if problem is not None:
            self.tally("image_decode_error", data).add(
                row, f"{where}, field 'uri': {uri} does not decode ({problem})"
            )
        return content

    def _check_tensor(
        self, tensor: np.ndarray[Any, Any], row: int, where: str, data: str, digest: hashlib.blake2b
    ) -> None:
        if tensor.dtype.kind in "fc" and not np.isfinite(tensor).all():
            bad = int(tensor.size - np.isfinite(tensor).sum())
            self.tally("non_finite_tensor", data).add(
                row, f"{where}, field 'tensor': {bad} of {tensor.size} values are NaN or inf"
            )
        if self.tensor_shape is None:
            self.tensor_shape = (tuple(tensor.shape), data, row)
        elif tuple(tensor.shape) != self.tensor_shape[0]:
            shape, first_data, first_row = self.tensor_shape
            self.tally("tensor_shape_mismatch", data).add(
                row,
                f"{where}, field 'tensor': shape {tuple(tensor.shape)}, but {first_data} "
                f"{first_row} has {shape}",
            )
        _update(digest, f"tensor:{tensor.dtype.str}:{tensor.shape}", tensor.tobytes())


def _update(digest: hashlib.blake2b, name: str, content: bytes) -> None:
    # Length-prefixing each part keeps ("ab", "c") and ("a", "bc") apart.
    digest.update(name.encode())
    digest.update(_LENGTH.pack(len(content)))
    digest.update(content)


_LENGTH = struct.Struct("<Q")
# The schemas whose documents can be text-only, and their text fields, in the order the
# general path hashes them (text, query, document).
_TEXT_FIELDS: dict[type[BaseDoc], tuple[str, ...]] = {
    LabeledDoc: ("text",),
    UnlabeledDoc: ("text",),
    PairDoc: ("query", "document"),
}
_TYPE_NAMES = {schema: schema.__name__.encode() for schema in _TEXT_FIELDS}
_NAME_BYTES = {name: name.encode() for name in ("text", "query", "document")}


def _is_clean_text(doc: BaseDoc) -> bool:
    """Whether a LabeledDoc/UnlabeledDoc/PairDoc holds only non-blank texts (and a label).

    Such a document passes every row-level check of the readers, so it needs none of their
    (slower, general) work.
    """
    fields = doc.__dict__
    if type(doc) is PairDoc:
        query, document = fields["query"], fields["document"]
        return (
            type(query) is str
            and type(document) is str
            and bool(query.strip())
            and bool(document.strip())
        )
    text = fields["text"]
    if type(text) is not str or not text.strip():
        return False
    if fields["image"] is not None or fields["uri"] is not None or fields["tensor"] is not None:
        return False
    if type(doc) is LabeledDoc:
        label = fields["label"]
        return type(label) is str and bool(label.strip())
    return True


def _decode_problem(content: bytes) -> str | None:
    """Why ``content`` is not a decodable image, or ``None`` when it decodes."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            image.load()
    except Image.DecompressionBombError as err:
        return f"too many pixels ({err})"
    except Image.UnidentifiedImageError:
        # PIL's own message names the in-memory file object by its address, which would make
        # two reports of the same data differ.
        return "not an image file PIL can identify (PNG, JPEG, WebP, ...)"
    # PIL signals broken files with any of these, depending on the format and the damage.
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as err:
        return str(err) or type(err).__name__
    return None


def validate(
    data: Source,
    eval_data: Source | None = None,
    *,
    kind: DataKind | str | None = None,
    max_text_chars: int = 100_000,
    max_image_bytes: int = 20_000_000,
    check_images: bool = True,
) -> DataReport:
    """Check training data (and eval data) and report every problem found.

    Args:
        data: the training data; anything :func:`~searchtuner.data.readers.iter_records`
            accepts (CSV/JSONL path, DocList, list of documents or dicts).
        eval_data: optional eval data, read with the training data's kind.
        kind: the kind of data; inferred from the training data when ``None``.
        max_text_chars: texts longer than this are an error.
        max_image_bytes: image files larger than this are an error.
        check_images: decode every image (and check image paths exist); turn off for speed.

    Returns:
        A :class:`DataReport`; print it, or call ``raise_for_errors()``.

    Raises:
        ConfigError: an unknown kind, a limit that is not positive, or an unreadable source.
        DataError: a file is missing or its header does not fit the kind.
    """
    data_kind = parse_kind(kind)
    _check_limits(max_text_chars, max_image_bytes)
    scanner = _Scanner(max_text_chars, max_image_bytes, check_images)
    train = _Stats(source=describe_source(data), kind=data_kind)
    train_index = _DigestIndex()
    for record in iter_records(data, data_kind):
        scanner.feed(record, train, "train", train_index)
    repeats = scanner.repeats(train_index, train, "train")
    evaluation: _Stats | None = None
    if eval_data is not None:
        evaluation = _Stats(source=describe_source(eval_data), kind=train.kind)
        eval_index = _DigestIndex()
        for record in iter_records(eval_data, train.kind):
            scanner.feed(record, evaluation, "eval", eval_index)
        repeats += scanner.repeats(eval_index, evaluation, "eval", (train_index, train))
    return _report([*scanner.tallies.items(), *repeats], train, evaluation)


@dataclass
class CheckedBatch:
    """One batch read into records by :meth:`StreamingValidator.check`, not yet counted.

    Attributes:
        records: one record per item, numbered from ``first_row``.
        first_row: the row number of the batch's first item.
        docs: the documents that passed the row-level checks, in order.
    """

    records: list[Record]
    first_row: int
    docs: list[BaseDoc]
    kind: DataKind | None = None
    inferred_at: int | None = None


class StreamingValidator:
    """Validate a data set that arrives in batches, with memory bounded by the batch.

    :meth:`report` gives what :func:`validate` gives for all the items in one piece, except
    that rows are numbered by position in the stream from ``first_row`` (1 by default)
    across batches. Memory grows by 28 bytes per well-formed item (see :class:`_DigestIndex`)
    and with the number of distinct labels; a batch's items are not kept.

    A batch is read in two steps so that a caller can store it in between and drop it if
    storing fails: :meth:`check` reads the items into records (row-level checks) without
    changing the validator; :meth:`accept` counts them in. :meth:`add` does both.

    Args:
        kind: the kind of data; inferred from the first item when ``None`` and then fixed.
        source: the name the report and its examples give the data; a name starting with
            ``<`` makes its rows "items".
        first_row: the row number of the first item.
        max_text_chars: texts longer than this are an error.
        max_image_bytes: images larger than this are an error.
        check_images: decode every image (and check image paths exist).

    Raises:
        ConfigError: unknown kind or a limit that is not a positive integer.
    """

    def __init__(
        self,
        kind: DataKind | str | None = None,
        *,
        source: str = "<upload>",
        first_row: int = 1,
        max_text_chars: int = 100_000,
        max_image_bytes: int = 20_000_000,
        check_images: bool = True,
    ) -> None:
        data_kind = parse_kind(kind)
        _check_limits(max_text_chars, max_image_bytes)
        self._builder = _Builder(data_kind, source)
        self._scanner = _Scanner(max_text_chars, max_image_bytes, check_images)
        self._stats = _Stats(source=source, kind=data_kind)
        self._index = _DigestIndex()
        self._next_row = first_row

    @property
    def kind(self) -> DataKind | None:
        """The kind of data: given, or inferred from the first item (``None`` before it)."""
        return self._builder.kind

    @property
    def n_rows(self) -> int:
        """Items counted so far, malformed ones included."""
        return self._stats.n_items

    def check(self, items: Iterable[Any]) -> CheckedBatch:
        """Read a batch into records without counting it (see :meth:`accept`).

        Args:
            items: documents (ours, or other schemas with fields of the same names),
                dicts, or :class:`~searchtuner.data.readers.Record` objects (their errors
                are kept; their row is renumbered by position).

        Raises:
            ConfigError: ``items`` is not an iterable of items.
        """
        if isinstance(items, str | bytes | bytearray | Mapping | BaseDoc) or not isinstance(
            items, Iterable
        ):
            raise ConfigError(
                f"a batch must be a DocList or a list of documents or dicts, got a "
                f"{type(items).__name__}"
            )
        builder = self._builder
        before = builder.kind, builder.inferred_at
        records: list[Record] = []
        docs: list[BaseDoc] = []
        try:
            for row, item in enumerate(items, start=self._next_row):
                record = _to_record(builder, row, item)
                records.append(record)
                if record.doc is not None:
                    docs.append(record.doc)
            return CheckedBatch(records, self._next_row, docs, builder.kind, builder.inferred_at)
        finally:
            # The batch may never be accepted: the kind it inferred is applied by accept().
            builder.kind, builder.inferred_at = before

    def accept(self, batch: CheckedBatch) -> None:
        """Count a checked batch into the report.

        Raises:
            ConfigError: the batch does not follow the last accepted one (check and accept
                batches in the same order, one at a time).
        """
        if batch.first_row != self._next_row:
            raise ConfigError(
                f"batch starts at row {batch.first_row} but the next row is {self._next_row}; "
                "accept each checked batch once, in the order they were checked"
            )
        self._builder.kind, self._builder.inferred_at = batch.kind, batch.inferred_at
        stats, index, feed = self._stats, self._index, self._scanner.feed
        for record in batch.records:
            feed(record, stats, "train", index)
        self._next_row += len(batch.records)

    def add(self, items: Iterable[Any]) -> list[BaseDoc]:
        """Check and accept a batch; returns its documents that passed the row-level checks."""
        batch = self.check(items)
        self.accept(batch)
        return batch.docs

    def report(self) -> DataReport:
        """The report over every item accepted so far (may be called more than once)."""
        scanner, stats = self._scanner, self._stats
        repeats = scanner.repeats(self._index, stats, "train")
        return _report([*scanner.tallies.items(), *repeats], stats, None)


def _to_record(builder: _Builder, row: int, item: Any) -> Record:
    kind = builder.kind
    schema = type(item)
    if (
        kind is not None
        and schema is SCHEMAS[kind]
        and schema in _TEXT_FIELDS
        and _is_clean_text(item)
    ):
        return Record(row, item)  # passes every row-level check: skip the general ones
    if isinstance(item, BaseDoc):
        return builder.from_doc(row, item)
    if isinstance(item, Mapping):
        return builder.from_mapping(row, item)
    if isinstance(item, Record):
        if item.doc is not None:
            return builder.from_doc(row, item.doc)
        return Record(row, None, list(item.errors))
    message = f"item is a {type(item).__name__}; give documents (e.g. LabeledDoc) or dicts"
    return Record(row, None, [builder.error(row, None, message)])


def _check_limits(max_text_chars: int, max_image_bytes: int) -> None:
    for name, limit in (("max_text_chars", max_text_chars), ("max_image_bytes", max_image_bytes)):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {limit!r}")


def _report(
    tallies: list[tuple[tuple[str, str], _Tally]], train: _Stats, evaluation: _Stats | None
) -> DataReport:
    """The report from the tallies (in the order a row-by-row scan first met them)."""
    findings = _row_findings(tallies, train, evaluation)
    findings += _set_findings(train, evaluation)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    findings.sort(key=lambda f: order[f.severity])
    return DataReport(
        n_items=train.n_items,
        kind=train.kind,
        modalities=dict(train.modalities.most_common()),
        n_labels=len(train.labels),
        items_per_label=dict(train.labels.most_common()),
        findings=findings,
        source=train.source,
        eval_source=None if evaluation is None else evaluation.source,
        eval_n_items=None if evaluation is None else evaluation.n_items,
        eval_items_per_label=None if evaluation is None else dict(evaluation.labels.most_common()),
    )


def _row_findings(
    tallies: list[tuple[tuple[str, str], _Tally]], train: _Stats, evaluation: _Stats | None
) -> list[Finding]:
    findings = []
    for (code, data), tally in tallies:
        stats = evaluation if data == "eval" and evaluation is not None else train
        unit = row_unit(stats.source)
        rows = unit + ("s" if tally.count != 1 else "")
        message = _SUMMARY[code].format(n=tally.count, rows=rows)
        if data == "eval" and code != "train_eval_overlap":
            message = f"eval data: {message}"
        findings.append(
            Finding(
                code=code,
                severity=_SEVERITY[code],
                message=message,
                rows=list(tally.rows),
                count=tally.count,
                data="train+eval" if code == "train_eval_overlap" else data,
                examples=list(tally.examples),
            )
        )
    return findings


_Add = Callable[[str, str, list[int], int, str], None]


def _set_findings(train: _Stats, evaluation: _Stats | None) -> list[Finding]:
    """Findings about the data as a whole: labels and modalities."""
    findings: list[Finding] = []

    def add(code: str, message: str, rows: list[int], count: int, data: str = "train") -> None:
        findings.append(Finding(code, _SEVERITY[code], message, rows[:MAX_ROWS], count, data))

    for stats, data in ((train, "train"), (evaluation, "eval")):
        if stats is None:
            continue
        prefix = "" if data == "train" else "eval data: "
        if stats.n_items == 0:
            add(
                "empty_data",
                f"{prefix}{stats.source} holds no items; check the source",
                [],
                0,
                data,
            )
        mixed = _mixed_modalities(stats)
        if mixed is not None:
            add("mixed_modalities", prefix + mixed[0], mixed[1], mixed[2], data)
    if train.kind is DataKind.LABELED:
        rare = [label for label, n in train.labels.items() if n < 2]
        if rare:
            names = ", ".join(repr(x) for x in rare[:MAX_ROWS])
            more = f" and {len(rare) - MAX_ROWS} more" if len(rare) > MAX_ROWS else ""
            add(
                "label_too_few_items",
                f"labels with fewer than 2 items: {len(rare)} ({names}{more}); their items "
                "never get a positive in triplet training: add items or drop these labels",
                [train.first_row[x] for x in rare],
                len(rare),
            )
        if len(train.labels) == 1:
            ((label, n),) = train.labels.items()
            add(
                "single_label",
                f"every labelled item ({n}) has the label {label!r}; triplet training needs "
                "at least 2 labels: add items of other labels",
                [train.first_row[label]],
                1,
            )
    if evaluation is not None:
        _compare_eval(train, evaluation, add)
    return findings


def _mixed_modalities(stats: _Stats) -> tuple[str, list[int], int] | None:
    if stats.kind not in (DataKind.LABELED, DataKind.UNLABELED) or len(stats.modalities) < 2:
        return None
    (main, _), *others = stats.modalities.most_common()
    counts = ", ".join(f"{n} {m}" for m, n in stats.modalities.most_common())
    rows = sorted(r for m, _ in others for r in stats.modality_rows[m])
    count = sum(n for _, n in others)
    message = (
        f"the data mixes modalities ({counts}); a model embeds one modality: keep only "
        f"{main} items, or split the data and train one model per modality"
    )
    return message, rows, count


def _compare_eval(train: _Stats, evaluation: _Stats, add: _Add) -> None:
    train_mods, eval_mods = set(train.modalities), set(evaluation.modalities)
    if (
        evaluation.kind in (DataKind.LABELED, DataKind.UNLABELED)
        and len(train_mods) == 1
        and len(eval_mods) == 1
        and train_mods != eval_mods
    ):
        (train_mod,), (eval_mod,) = train_mods, eval_mods
        add(
            "mixed_modalities",
            f"training data is {train_mod} but eval data is {eval_mod}; evaluate on the "
            "modality the model is trained on",
            evaluation.modality_rows[eval_mod],
            evaluation.modalities[eval_mod],
            "train+eval",
        )
    unseen = [label for label in evaluation.labels if label not in train.labels]
    if unseen and train.labels:
        names = ", ".join(repr(x) for x in unseen[:MAX_ROWS])
        more = f" and {len(unseen) - MAX_ROWS} more" if len(unseen) > MAX_ROWS else ""
        add(
            "eval_label_not_in_train",
            f"eval labels that never occur in the training data: {len(unseen)} ({names}{more}); "
            "fine for testing generalisation to new classes, otherwise check for typos",
            [evaluation.first_row[x] for x in unseen],
            len(unseen),
            "eval",
        )
