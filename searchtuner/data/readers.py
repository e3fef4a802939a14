"""Streaming readers: CSV, JSONL and in-memory documents become :class:`Record` objects.

Every input row becomes exactly one ``Record``: either a document, or ``doc=None`` with the
errors that name the row and the field. Nothing is skipped silently (only lines that are
entirely blank are not rows).

Row numbers, as a person finds the row:

* CSV: the line number in the file where the row starts (the header is line 1).
* JSONL: the line number (1-based).
* DocList, list or other iterable: the 0-based index of the item.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from docarray import BaseDoc, DocList
from docarray.documents import ImageDoc
from pydantic import ValidationError

from searchtuner.data.schemas import (
    FIELDS,
    FINETUNER_LABEL_TAG,
    SCHEMAS,
    DataKind,
    TextImageDoc,
    doc_modalities,
    kind_of,
    parse_kind,
)
from searchtuner.errors import ConfigError, DataError, invalid_choice

# Codes of row-level problems; validate() turns each into a finding with the same code.
MALFORMED_ROW = "malformed_row"
MISSING_LABEL = "missing_label"
EMPTY_FIELD = "empty_field"
MULTIPLE_CONTENT = "multiple_content"

CSV_COLUMNS = ("text", "image", "uri", "tensor", "label", "query", "document")
"""Column names a CSV header may use; ``image`` and ``uri`` hold local image paths."""

_CSV_ALLOWED: dict[DataKind, frozenset[str]] = {
    DataKind.LABELED: frozenset({"text", "image", "uri", "tensor", "label"}),
    DataKind.UNLABELED: frozenset({"text", "image", "uri", "tensor"}),
    DataKind.PAIRS: frozenset({"query", "document"}),
    DataKind.TEXT_IMAGE: frozenset({"text", "image", "uri"}),
}
_HEADERLESS_COLUMNS: dict[DataKind, tuple[str, ...]] = {
    DataKind.LABELED: ("text", "label"),
    DataKind.UNLABELED: ("text",),
    DataKind.PAIRS: ("query", "document"),
    DataKind.TEXT_IMAGE: ("text", "image"),
}
_CONTENT_FIELDS = ("text", "image", "uri", "tensor")
_CSV_SUFFIXES = {".csv": ",", ".tsv": "\t"}
_JSONL_SUFFIXES = (".jsonl", ".json-lines", ".ndjson")
SUPPORTED_FORMATS = (*_CSV_SUFFIXES, *_JSONL_SUFFIXES)
"""File suffixes :func:`iter_records` reads."""

Source = str | os.PathLike[str] | Iterable[Any]
"""What the readers accept: a file path, a DocList, or an iterable of documents or dicts."""


@dataclass
class RowError:
    """One problem with one input row.

    Attributes:
        row: the row number (see the module docstring for how rows are counted).
        field: the field or column at fault, or ``None`` when the whole row is.
        message: what is wrong and what to do about it.
        source: the file path, or ``"<DocList>"``/``"<list>"``/``"<iterable>"``.
        code: a stable id of the problem: ``malformed_row``, ``missing_label``,
            ``empty_field`` or ``multiple_content``.
    """

    row: int
    field: str | None
    message: str
    source: str
    code: str = MALFORMED_ROW

    def __str__(self) -> str:
        where = f"{self.source} {row_unit(self.source)} {self.row}"
        if self.field is not None:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


@dataclass
class Record:
    """One input row: a document, or ``doc=None`` and the errors that kept it from being one.

    Attributes:
        row: the row number (CSV/JSONL: line number; in-memory data: 0-based index).
        doc: the document, of the schema of the data's kind; ``None`` exactly when
            ``errors`` is not empty.
        errors: the problems found in this row.
    """

    row: int
    doc: BaseDoc | None
    errors: list[RowError] = field(default_factory=list)


# A long field is the document size limit's to judge, not a CSV parse error (the csv module's
# default limit is 128 KiB).
csv.field_size_limit(max(csv.field_size_limit(), 256 << 20))


def row_unit(source: str) -> str:
    """``"item"`` for in-memory sources (counted from 0), ``"row"`` for files."""
    return "item" if source.startswith("<") else "row"


def describe_source(source: object) -> str:
    """The name the readers give a source in messages: its path, or ``"<DocList>"`` etc."""
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    if isinstance(source, DocList):
        return "<DocList>"
    if isinstance(source, list | tuple):
        return "<list>"
    return "<iterable>"


class _Builder:
    """Turns field mappings and documents into Records of one kind.

    The kind is either given, or inferred from the first row and then fixed, so that one
    data set always has one schema.
    """

    def __init__(
        self,
        kind: DataKind | None,
        source: str,
        base_dir: Path | None = None,
        display: Mapping[str, str] | None = None,
        content_columns: Sequence[str] = _CONTENT_FIELDS,
    ) -> None:
        self.kind = kind
        self.source = source
        self.base_dir = base_dir
        self.display = dict(display or {})  # schema field -> column name the user wrote
        self.content_columns = tuple(content_columns)
        self.inferred_at: int | None = None

    def error(
        self, row: int, name: str | None, message: str, code: str = MALFORMED_ROW
    ) -> RowError:
        shown = None if name is None else self.display.get(name, name)
        return RowError(row=row, field=shown, message=message, source=self.source, code=code)

    def _kind_hint(self) -> str:
        if self.inferred_at is None or self.kind is None:
            return ""
        unit = row_unit(self.source)
        return (
            f" (kind '{self.kind.value}' was inferred from {unit} {self.inferred_at}; "
            "pass kind=... to choose it)"
        )

    def _fix_kind(self, row: int, candidate: DataKind) -> DataKind:
        if self.kind is None:
            self.kind = candidate
            self.inferred_at = row
        return self.kind

    def from_mapping(
        self, row: int, data: Mapping[str, Any], errors: list[RowError] | None = None
    ) -> Record:
        """Build a Record from a mapping of schema field names to raw values."""
        errors = list(errors or [])
        kind = self._fix_kind(row, infer_kind(data))
        allowed = FIELDS[kind]
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name not in allowed:
                errors.append(self.error(row, name, self._unknown_field(name, kind)))
                continue
            try:
                values[name] = self._convert(name, value)
            except ValueError as err:
                errors.append(self.error(row, name, str(err)))
        schema = SCHEMAS[kind]
        try:
            doc = schema(**values)
        except ValidationError as err:
            errors.extend(self._pydantic_errors(row, err))
            return Record(row=row, doc=None, errors=errors)
        # A field already reported as unreadable is absent from the doc: do not report it
        # a second time as empty (or the row as having no content).
        flagged = {e.field for e in errors}
        content_flagged = bool(flagged & {self.display.get(n, n) for n in _CONTENT_FIELDS})
        for problem in self._check(row, doc, kind):
            repeated = problem.field in flagged or (problem.field is None and content_flagged)
            if not (problem.code == EMPTY_FIELD and repeated):
                errors.append(problem)
        return Record(row=row, doc=None if errors else doc, errors=errors)

    def from_doc(self, row: int, doc: BaseDoc) -> Record:
        """Build a Record from a document: one of ours as is, any other by its field names."""
        own = kind_of(doc)
        if own is None:
            return self.from_mapping(row, _foreign_fields(doc))
        kind = self._fix_kind(row, own)
        if kind is not own:
            message = (
                f"item is a {type(doc).__name__} (kind '{own.value}') but the data kind is "
                f"'{kind.value}'{self._kind_hint()}; give items of one schema, "
                f"{SCHEMAS[kind].__name__} here"
            )
            return Record(row=row, doc=None, errors=[self.error(row, None, message)])
        errors = self._check(row, doc, kind)
        return Record(row=row, doc=None if errors else doc, errors=errors)

    def _unknown_field(self, name: str, kind: DataKind) -> str:
        allowed = sorted(FIELDS[kind])
        if any(name in names for names in FIELDS.values()):
            return (
                f"field '{name}' is not used by kind '{kind.value}'{self._kind_hint()}; "
                f"remove it or use a kind that has it (fields here: {', '.join(allowed)})"
            )
        return str(invalid_choice("field", name, allowed))

    def _convert(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        if name == "image" and isinstance(value, str):
            return _decode_base64(value)
        if name == "uri" and isinstance(value, str) and self.base_dir is not None:
            return os.path.abspath(self.base_dir / value.strip())
        if name == "tensor" and not isinstance(value, np.ndarray):
            return _to_array(value)
        return value

    def _pydantic_errors(self, row: int, err: ValidationError) -> list[RowError]:
        found = []
        for item in err.errors():
            name = str(item["loc"][0]) if item["loc"] else None
            if item["type"] == "missing":
                message = f"missing; give a non-empty {name} in every row"
                found.append(self.error(row, name, message, EMPTY_FIELD))
            else:
                message = f"{item['msg']} (got {type(item['input']).__name__})"
                found.append(self.error(row, name, message))
        return found

    def _check(self, row: int, doc: BaseDoc, kind: DataKind) -> list[RowError]:
        """Problems a single document has on its own, whatever the rest of the data."""
        found: list[RowError] = []

        def empty(name: str, message: str) -> None:
            found.append(self.error(row, name, message, EMPTY_FIELD))

        if kind is DataKind.PAIRS:
            for name in ("query", "document"):
                if not str(getattr(doc, name)).strip():
                    empty(name, f"empty {name}; give a non-empty text or remove the row")
            return found
        text = getattr(doc, "text", None)
        if text is not None and not text.strip():
            empty("text", "empty text; give a non-empty text or remove the row")
        image = getattr(doc, "image", None)
        if image is not None and len(image) == 0:
            empty("image", "empty image bytes; give an encoded image file or remove the row")
        uri = getattr(doc, "uri", None)
        if uri is not None and not uri.strip():
            empty("uri", "empty image path; give the path of an image file or remove the row")
        tensor = getattr(doc, "tensor", None)
        if tensor is not None and np.asarray(tensor).size == 0:
            empty("tensor", "tensor has no elements; give a non-empty array or remove the row")
        if isinstance(doc, TextImageDoc):
            if image is None and uri is None:
                empty("image", "no image; give image bytes or the path of an image file")
            return found
        present = [n for n in _CONTENT_FIELDS if getattr(doc, n, None) is not None]
        if not present and len(self.content_columns) == 1:
            (column,) = self.content_columns
            empty(column, f"empty {column}; give a value or remove the row")
        elif not present:
            message = f"no content; give one of {', '.join(self.content_columns)}"
            found.append(RowError(row, None, message, self.source, EMPTY_FIELD))
        elif len(doc_modalities(doc)) > 1:
            shown = "/".join(self.display.get(n, n) for n in present)
            found.append(
                RowError(
                    row=row,
                    field=shown,
                    message=(
                        "more than one kind of content; keep one per item (text, image or "
                        "tensor), or use kind='text_image' for text–image pairs"
                    ),
                    source=self.source,
                    code=MULTIPLE_CONTENT,
                )
            )
        if kind is DataKind.LABELED:
            label = getattr(doc, "label", None)
            if label is None or not label.strip():
                found.append(
                    self.error(
                        row,
                        "label",
                        "no label; give every item a label, or use kind='unlabeled'",
                        MISSING_LABEL,
                    )
                )
        return found


def infer_kind(data: Mapping[str, Any]) -> DataKind:
    """Guess the kind of one row from the names of its fields.

    ``query``/``document`` → pairs; ``label`` (or a Finetuner label tag) → labeled;
    ``text`` with ``image``/``uri`` → text_image; anything else → unlabeled.
    """
    keys = set(data)
    tags = data.get("tags")
    if keys & {"query", "document"}:
        return DataKind.PAIRS
    if "label" in keys or (isinstance(tags, Mapping) and FINETUNER_LABEL_TAG in tags):
        return DataKind.LABELED
    if "text" in keys and keys & {"image", "uri"}:
        return DataKind.TEXT_IMAGE
    return DataKind.UNLABELED


def _foreign_fields(doc: BaseDoc) -> dict[str, Any]:
    """The fields of a document of another schema that our schemas know, by name.

    Other fields (``embedding``, ...) are not training data and are ignored. docarray's
    ``ImageDoc`` keeps its image in ``url`` and ``bytes_``; those map to ``uri``/``image``.
    """
    known = set().union(*FIELDS.values())
    values = {n: getattr(doc, n) for n in type(doc).model_fields if n in known}
    if isinstance(doc, ImageDoc):
        values["uri"] = None if doc.url is None else str(doc.url)
        values["image"] = doc.bytes_
    return {n: v for n, v in values.items() if v is not None or n == "label"}


def _decode_base64(value: str) -> bytes:
    text = value.strip()
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]  # data URI: data:image/png;base64,<payload>
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as err:
        raise ValueError(
            f"image is not valid base64 ({err}); give the image file's bytes base64-encoded, "
            "or its path in 'uri'"
        ) from err


def _to_array(value: Any) -> np.ndarray[Any, Any]:
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged nested lists
        raise ValueError(
            f"tensor is not a rectangular array of numbers ({err}); give a list of numbers "
            "or equal-length nested lists"
        ) from err
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"tensor holds {array.dtype} values, not numbers; give a list of numbers "
            "or equal-length nested lists"
        )
    return array


def _parse_tensor_cell(cell: str) -> np.ndarray[Any, Any]:
    text = cell.strip()
    try:
        if text.startswith("["):
            return _to_array(json.loads(text))
        return np.array([float(x) for x in text.replace(",", " ").split()])
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        raise ValueError(
            f"cannot read a tensor from {text[:40]!r} ({err}); write numbers separated by "
            "spaces or a JSON list"
        ) from err


def read_csv(
    path: str | os.PathLike[str],
    kind: DataKind | str | None = None,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    delimiter: str = ",",
    columns: Sequence[str] | None = None,
) -> Iterator[Record]:
    """Read a CSV file row by row.

    The first row is a header when every cell is a known column name (see
    :data:`CSV_COLUMNS`); the kind is then inferred from it unless given: ``query,document``
    → pairs; a ``label`` column → labeled; ``text`` with ``image`` → text_image; otherwise
    unlabeled. A file without a header needs ``kind``; its columns are then positional:
    labeled ``text,label``, pairs ``query,document``, text_image ``text,image``, unlabeled
    ``text`` — or name them with ``columns`` (e.g. ``("image", "label")``).

    ``image``/``uri`` cells are local paths, relative to ``base_dir`` (default: the CSV's
    folder), and become the document's ``uri``. ``tensor`` cells are numbers separated by
    spaces, or a JSON list. An empty cell counts as a missing value.

    Arguments are checked at once; the file is opened when iteration starts and read one
    row at a time, so memory does not grow with the number of rows.

    Args:
        path: the CSV file.
        kind: the kind of data; inferred from the header when ``None``.
        base_dir: folder that relative image paths are resolved against.
        delimiter: the cell separator.
        columns: column names for a file without a header.

    Returns:
        An iterator of one :class:`Record` per row (row = line number where the row starts).

    Raises:
        ConfigError: unknown kind or column name, or a bad delimiter.
        DataError: the file does not exist (at call time); while iterating, the header
            does not fit the kind, or the file is not text.
    """
    csv_path = Path(path)
    data_kind = parse_kind(kind)
    if len(delimiter) != 1:
        raise ConfigError(f"delimiter must be one character, got {delimiter!r}")
    if columns is not None:
        names = [c.strip().lower() for c in columns]
        for name in names:
            if name not in CSV_COLUMNS:
                raise invalid_choice("CSV column", name, CSV_COLUMNS)
        columns = tuple(names)
    if not csv_path.is_file():
        raise DataError(f"CSV file not found: {csv_path}; check the path")
    base = Path(base_dir) if base_dir is not None else csv_path.parent
    return _csv_records(csv_path, data_kind, base, delimiter, columns)


def _csv_records(
    path: Path,
    kind: DataKind | None,
    base_dir: Path,
    delimiter: str,
    columns: tuple[str, ...] | None,
) -> Iterator[Record]:
    source = str(path)
    layout: _CsvLayout | None = None
    # surrogateescape keeps reading past bytes that are not UTF-8, so that the row holding
    # them can be reported instead of failing the whole file.
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        last_line = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                row, last_line = last_line + 1, reader.line_num
                message = f"cannot parse this row as CSV ({err}); check its quotes"
                yield Record(row, None, [RowError(row, None, message, source)])
                continue
            row, last_line = last_line + 1, reader.line_num
            if not cells:  # a blank line is not a row
                continue
            if layout is None:
                layout = _CsvLayout.from_first_row(cells, kind, columns, source, base_dir)
                if layout.header:
                    continue
            yield layout.record(row, cells, delimiter)


class _CsvLayout:
    """The columns of one CSV file and the builder for its rows."""

    def __init__(
        self, columns: tuple[str, ...], kind: DataKind, header: bool, source: str, base: Path
    ) -> None:
        self.columns = columns
        self.header = header
        display = {"uri": "image"} if "image" in columns else {}
        content = [c for c in columns if c in _CONTENT_FIELDS]
        self.builder = _Builder(kind, source, base, display=display, content_columns=content)

    @classmethod
    def from_first_row(
        cls,
        cells: list[str],
        kind: DataKind | None,
        columns: tuple[str, ...] | None,
        source: str,
        base: Path,
    ) -> _CsvLayout:
        names = [c.strip().lower() for c in cells]
        header = all(n in CSV_COLUMNS for n in names)
        if header and columns is not None:
            raise DataError(
                f"{source}: row 1 is a header ({','.join(names)}) but columns= was given; "
                "drop columns= to use the header, or remove the header row"
            )
        if header:
            cols = tuple(names)
        elif columns is not None:
            cols = columns
        elif kind is not None:
            cols = _HEADERLESS_COLUMNS[kind]
        else:
            raise DataError(
                f"{source}: row 1 is not a header (cells: {cells[:5]}); add a header row with "
                f"column names from {', '.join(CSV_COLUMNS)} (e.g. 'text,label'), or pass "
                "kind=... (and columns=...) for a file without a header"
            )
        duplicated = sorted({c for c in cols if cols.count(c) > 1})
        if duplicated:
            raise DataError(f"{source}: column {duplicated[0]!r} appears twice; keep one")
        chosen = kind if kind is not None else _kind_from_columns(cols)
        _check_columns(cols, chosen, source)
        return cls(cols, chosen, header, source, base)

    def record(self, row: int, cells: list[str], delimiter: str) -> Record:
        builder = self.builder
        if len(cells) != len(self.columns):
            message = (
                f"expected {len(self.columns)} cells ({', '.join(self.columns)}), found "
                f"{len(cells)}; quote cells that contain {delimiter!r}"
            )
            return Record(row, None, [builder.error(row, None, message)])
        values: dict[str, Any] = {}
        errors: list[RowError] = []
        for name, cell in zip(self.columns, cells, strict=True):
            try:
                cell.encode("utf-8")
            except UnicodeEncodeError:
                message = "cell is not valid UTF-8 text; save the file as UTF-8"
                errors.append(builder.error(row, name, message))
                continue
            if not cell.strip():
                continue  # an empty cell is a missing value; the builder reports if required
            if name == "tensor":
                try:
                    values["tensor"] = _parse_tensor_cell(cell)
                except ValueError as err:
                    errors.append(builder.error(row, name, str(err)))
            elif name in ("image", "uri"):
                values["uri"] = cell.strip()
            elif name == "label":
                values["label"] = cell.strip()
            else:
                values[name] = cell
        return builder.from_mapping(row, values, errors)


def _kind_from_columns(columns: Sequence[str]) -> DataKind:
    cols = set(columns)
    if cols & {"query", "document"}:
        return DataKind.PAIRS
    if "label" in cols:
        return DataKind.LABELED
    if "text" in cols and cols & {"image", "uri"}:
        return DataKind.TEXT_IMAGE
    return DataKind.UNLABELED


def _check_columns(columns: Sequence[str], kind: DataKind, source: str) -> None:
    cols = set(columns)
    extra = sorted(cols - _CSV_ALLOWED[kind])
    if extra:
        raise DataError(
            f"{source}: column {extra[0]!r} is not used by kind '{kind.value}' "
            f"(its columns: {', '.join(sorted(_CSV_ALLOWED[kind]))}); remove the column "
            "or pass the kind that has it"
        )
    if {"image", "uri"} <= cols:
        raise DataError(f"{source}: give image paths in one column, 'image' or 'uri', not both")
    needed: list[str] = []
    if kind is DataKind.PAIRS:
        needed = [c for c in ("query", "document") if c not in cols]
    elif kind is DataKind.TEXT_IMAGE:
        needed = [c for c in ("text",) if c not in cols]
        if not cols & {"image", "uri"}:
            needed.append("image")
    else:
        if not cols & set(_CONTENT_FIELDS):
            needed.append("text (or image/tensor)")
        if kind is DataKind.LABELED and "label" not in cols:
            needed.append("label")
    if needed:
        raise DataError(
            f"{source}: kind '{kind.value}' needs the column(s) {', '.join(needed)}; "
            f"the file has {', '.join(columns)}"
        )


def read_jsonl(
    path: str | os.PathLike[str],
    kind: DataKind | str | None = None,
    *,
    base_dir: str | os.PathLike[str] | None = None,
) -> Iterator[Record]:
    """Read a JSON Lines file: one JSON object per line, keys named as the schema's fields.

    Keys: ``text``, ``image`` (the image file base64-encoded, or a ``data:`` URI), ``uri``
    (a local path, relative to ``base_dir``, default the file's folder), ``tensor`` (a list
    of numbers, nested for arrays), ``label``, ``tags``, ``query``, ``document``, ``id``.
    Without ``kind`` the kind is inferred from the first object's keys and then fixed.
    Blank lines are skipped. Arguments are checked at once; the file is read lazily.

    Args:
        path: the JSONL file.
        kind: the kind of data; inferred from the first line when ``None``.
        base_dir: folder that relative ``uri`` paths are resolved against.

    Returns:
        An iterator of one :class:`Record` per non-blank line (row = line number).

    Raises:
        ConfigError: unknown kind.
        DataError: the file does not exist.
    """
    jsonl_path = Path(path)
    data_kind = parse_kind(kind)
    if not jsonl_path.is_file():
        raise DataError(f"JSONL file not found: {jsonl_path}; check the path")
    base = Path(base_dir) if base_dir is not None else jsonl_path.parent
    return _jsonl_records(jsonl_path, _Builder(data_kind, str(jsonl_path), base))


def _jsonl_records(path: Path, builder: _Builder) -> Iterator[Record]:
    with path.open("rb") as handle:
        for row, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except UnicodeDecodeError:
                message = "line is not valid UTF-8 text; save the file as UTF-8"
                yield Record(row, None, [builder.error(row, None, message)])
                continue
            except json.JSONDecodeError as err:
                message = (
                    f"invalid JSON ({err.msg} at column {err.colno}); write one JSON object "
                    "per line"
                )
                yield Record(row, None, [builder.error(row, None, message)])
                continue
            if not isinstance(data, dict):
                message = (
                    f"line holds a JSON {type(data).__name__}, not an object; write one "
                    'object per line, e.g. {"text": "...", "label": "..."}'
                )
                yield Record(row, None, [builder.error(row, None, message)])
                continue
            yield builder.from_mapping(row, data)


def iter_records(source: Source, kind: DataKind | str | None = None) -> Iterator[Record]:
    """Read any supported source as a stream of :class:`Record`.

    Args:
        source: a path to a ``.csv``/``.tsv``/``.jsonl``/``.json-lines``/``.ndjson`` file;
            a ``DocList``; or any iterable of documents (our schemas or others with
            fields of the same names, including Finetuner-style tags) or of dicts.
        kind: the kind of data; inferred from the header or first item when ``None``.

    Returns:
        An iterator of one Record per row or item.

    Raises:
        ConfigError: unknown file type, kind, or a source that is not data.
        DataError: the file does not exist.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        suffix = path.suffix.lower()
        if suffix in _CSV_SUFFIXES:
            return read_csv(path, kind, delimiter=_CSV_SUFFIXES[suffix])
        if suffix in _JSONL_SUFFIXES:
            return read_jsonl(path, kind)
        raise ConfigError(
            f"cannot read {path}: unsupported file type {suffix or '(none)'!r}; supported: "
            f"{', '.join(SUPPORTED_FORMATS)}, or pass a DocList or a list of documents/dicts"
        )
    if isinstance(source, bytes | bytearray | Mapping | BaseDoc) or not isinstance(
        source, Iterable
    ):
        raise ConfigError(
            f"cannot read training data from a {type(source).__name__}; pass a file path "
            f"({', '.join(SUPPORTED_FORMATS)}), a DocList, or a list of documents or dicts"
        )
    return _iter_items(source, _Builder(parse_kind(kind), describe_source(source)))


def _iter_items(items: Iterable[Any], builder: _Builder) -> Iterator[Record]:
    for index, item in enumerate(items):
        if isinstance(item, BaseDoc):
            yield builder.from_doc(index, item)
        elif isinstance(item, Mapping):
            yield builder.from_mapping(index, item)
        else:
            message = f"item is a {type(item).__name__}; give documents (e.g. LabeledDoc) or dicts"
            yield Record(index, None, [builder.error(index, None, message)])


def load_docs(
    source: Source, kind: DataKind | str | None = None, *, max_errors: int = 20
) -> DocList[Any]:
    """Read all of a source into a DocList, refusing data with malformed rows.

    Args:
        source: anything :func:`iter_records` accepts.
        kind: the kind of data; inferred when ``None``.
        max_errors: how many row errors the exception lists at most.

    Returns:
        A ``DocList`` of the kind's schema (e.g. ``DocList[LabeledDoc]``).

    Raises:
        DataError: some rows are malformed (the message lists up to ``max_errors`` of the
            errors and the total), or the source holds no items.
    """
    docs: list[BaseDoc] = []
    shown: list[RowError] = []
    n_errors = bad_rows = n_rows = 0
    for record in iter_records(source, kind):
        n_rows += 1
        if record.doc is None:
            bad_rows += 1
            n_errors += len(record.errors)
            shown.extend(record.errors[: max(0, max_errors - len(shown))])
        else:
            docs.append(record.doc)
    name = describe_source(source)
    if bad_rows:
        lines = "\n".join(f"  {e}" for e in shown)
        more = f"\n  ... and {n_errors - len(shown)} more" if n_errors > len(shown) else ""
        raise DataError(
            f"{bad_rows} of {n_rows} rows in {name} are malformed ({n_errors} errors):\n"
            f"{lines}{more}\nFix these rows, or run searchtuner.data.validate() for a full report"
        )
    if not docs:
        raise DataError(f"no items in {name}; check that the source holds data")
    doc_kind = kind_of(docs[0])
    schema = SCHEMAS[doc_kind] if doc_kind is not None else type(docs[0])
    return DocList[schema](docs)  # type: ignore[valid-type]
