"""Turn a data source into batches of documents to upload."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

from docarray import BaseDoc

from searchtuner.data.readers import Record, RowError, Source, describe_source, iter_records
from searchtuner.data.schemas import DataKind
from searchtuner.errors import ConfigError, DataError


def iter_batches(
    source: Source,
    batch_size: int = 2000,
    kind: DataKind | str | None = None,
    *,
    max_errors: int = 20,
) -> Iterator[list[BaseDoc]]:
    """Stream a CSV/JSONL file, a DocList or a list as lists of at most ``batch_size`` docs.

    Files are read one row at a time, so a file of any size streams in bounded memory.

    A row that cannot be read raises :class:`~searchtuner.errors.DataError` rather than being
    passed on: only here is the row known by its line in the file ("train.csv row 1207,
    field 'label': ..."), while the server could only name it by position in the upload, and
    a row that is not a document cannot be sent at all. Once a bad row is met no further
    batch is yielded; the rest of the file is read for more bad rows (up to ``max_errors``)
    so that one message lists them, and the caller aborts the upload.

    Args:
        source: anything :func:`~searchtuner.data.readers.iter_records` accepts.
        batch_size: documents per batch (the last batch may be smaller).
        kind: the kind of data; inferred from the header or first item when ``None``.
        max_errors: how many bad rows the error lists at most.

    Returns:
        An iterator of lists of documents of the kind's schema.

    Raises:
        ConfigError: a bad ``batch_size``, file type or kind (at call time).
        DataError: the file does not exist (at call time); while iterating, rows that
            cannot be read, listed by row and field.
    """
    for name, value in (("batch_size", batch_size), ("max_errors", max_errors)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    records = iter_records(source, kind)
    return _batches(records, batch_size, max_errors, describe_source(source))


def _batches(
    records: Iterator[Record], batch_size: int, max_errors: int, name: str
) -> Iterator[list[BaseDoc]]:
    batch: list[BaseDoc] = []
    for record in records:
        if record.doc is None:
            _raise_row_errors(record, records, max_errors, name)
        batch.append(record.doc)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _raise_row_errors(
    first: Record, records: Iterator[Record], max_errors: int, name: str
) -> NoReturn:
    errors: list[RowError] = list(first.errors)
    bad_rows = 1
    last_row = first.row
    for record in records:
        last_row = record.row
        if record.errors:
            bad_rows += 1
            errors.extend(record.errors)
            if len(errors) >= max_errors:
                break
    else:
        last_row = -1  # read to the end
    shown = "\n".join(f"  {err}" for err in errors[:max_errors])
    read = "" if last_row < 0 else f" (reading stopped at row {last_row} after {max_errors})"
    raise DataError(
        f"{bad_rows} rows of {name} cannot be read{read}:\n{shown}\n"
        "Fix these rows and upload again (run searchtuner.data.validate() on the file for a "
        "full report); nothing of this upload should be committed"
    )
