"""Check a training set (and optionally its eval set) before training, in one streaming pass.

Memory grows with the number of distinct labels and a 16-byte hash per item, not with the
items' contents: images are read and decoded one at a time.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections import Counter
from collections.abc import Callable, Iterable
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
    describe_source,
    iter_records,
    row_unit,
)
from searchtuner.data.schemas import DataKind, PairDoc, doc_modalities, kind_of, parse_kind
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


class _Scanner:
    """Per-item checks, shared by the training and the eval scan."""

    def __init__(self, max_text_chars: int, max_image_bytes: int, check_images: bool) -> None:
        self.max_text_chars = max_text_chars
        self.max_image_bytes = max_image_bytes
        self.check_images = check_images
        self.tallies: dict[tuple[str, str], _Tally] = {}
        self.tensor_shape: tuple[tuple[int, ...], str, int] | None = None  # shape, data, row
        self.train_seen: dict[bytes, tuple[int, int]] = {}
        self.label_ids: dict[str, int] = {}

    def tally(self, code: str, data: str) -> _Tally:
        return self.tallies.setdefault((code, data), _Tally())

    def scan(self, records: Iterable[Record], stats: _Stats, data: str) -> None:
        seen: dict[bytes, tuple[int, int]] = {}  # content hash -> (first row, label id)
        unit = row_unit(stats.source)
        for record in records:
            stats.n_items += 1
            if record.doc is None:
                for err in record.errors:
                    self.tally(err.code, data).add(record.row, str(err))
                continue
            doc = record.doc
            stats.kind = stats.kind or kind_of(doc)
            row = record.row
            where = f"{stats.source} {unit} {row}"
            for modality in sorted(m.value for m in doc_modalities(doc)):
                stats.modalities[modality] += 1
                rows = stats.modality_rows.setdefault(modality, [])
                if len(rows) < MAX_ROWS:
                    rows.append(row)
            label: str | None = getattr(doc, "label", None)
            label_id = -1
            if label is not None:
                stats.labels[label] += 1
                stats.first_row.setdefault(label, row)
                label_id = self.label_ids.setdefault(label, len(self.label_ids))
            digest = self._check_item(doc, row, where, data)
            if digest in seen:
                first, first_label = seen[digest]
                if first_label != label_id:
                    self.tally("conflicting_labels", data).add(
                        row, f"{where} repeats {unit} {first} with another label ({label!r})"
                    )
                else:
                    self.tally("duplicate", data).add(row, f"{where} repeats {unit} {first}")
            else:
                seen[digest] = (row, label_id)
            if data == "eval" and digest in self.train_seen:
                train_row = self.train_seen[digest][0]
                self.tally("train_eval_overlap", data).add(
                    row, f"{where} is also training {unit} {train_row}"
                )
        if data == "train":
            self.train_seen = seen

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
    digest.update(struct.pack("<Q", len(content)))
    digest.update(content)


def _decode_problem(content: bytes) -> str | None:
    """Why ``content`` is not a decodable image, or ``None`` when it decodes."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            image.load()
    except Image.DecompressionBombError as err:
        return f"too many pixels ({err})"
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
    for name, limit in (("max_text_chars", max_text_chars), ("max_image_bytes", max_image_bytes)):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {limit!r}")
    scanner = _Scanner(max_text_chars, max_image_bytes, check_images)
    train = _Stats(source=describe_source(data), kind=data_kind)
    scanner.scan(iter_records(data, data_kind), train, "train")
    evaluation: _Stats | None = None
    if eval_data is not None:
        evaluation = _Stats(source=describe_source(eval_data), kind=train.kind)
        scanner.scan(iter_records(eval_data, train.kind), evaluation, "eval")
    findings = _row_findings(scanner, train, evaluation)
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


def _row_findings(scanner: _Scanner, train: _Stats, evaluation: _Stats | None) -> list[Finding]:
    findings = []
    for (code, data), tally in scanner.tallies.items():
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
