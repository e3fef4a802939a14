"""Packed upload batches: many rows in one document, cheap to move through the Flow.

A batch is CSV rows (with their header) or JSON lines, zlib-compressed, in one
:class:`~searchtuner.service.schemas.PackedBatch`. The receiver unpacks it into a temporary
file and reads it with the same readers as a local file, so a packed row means exactly what
the row means in a CSV or JSON-lines file on disk.
"""

from __future__ import annotations

import csv
import io
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from searchtuner.errors import ConfigError, DataError
from searchtuner.service.schemas import PackedBatch

FORMATS = {"jsonl": ".jsonl", "csv": ".csv"}
MAX_UNPACKED_BYTES = 512 << 20  # a decompression bomb stops here
LEVEL = 1  # fast: short texts compress ~3x even so, and the CPU is shared with training
CSV_FIELD_LIMIT = 256 << 20
"""The csv module refuses fields over 128 KiB by default; a field that large is the document
size limit's to judge (ingest answers 413 with the limit's name), not a parse error."""
csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))


def pack(rows: bytes, format: str, items: int) -> PackedBatch:
    """One batch of serialised rows as a document."""
    if format not in FORMATS:
        raise ConfigError(f"unknown packed format {format!r}; use one of {sorted(FORMATS)}")
    return PackedBatch(format=format, data=zlib.compress(rows, LEVEL), items=items)


def unpack(batch: PackedBatch, folder: str | os.PathLike[str]) -> Path:
    """Write a batch's rows to a file in ``folder`` that the dataset readers take.

    Raises:
        ConfigError: an unknown format, data that is not zlib, or rows larger than
            :data:`MAX_UNPACKED_BYTES` once decompressed.
    """
    suffix = FORMATS.get(batch.format)
    if suffix is None:
        raise ConfigError(
            f"a packed batch has format {batch.format!r}; use one of {sorted(FORMATS)}"
        )
    inflater = zlib.decompressobj()
    try:
        rows = inflater.decompress(batch.data, MAX_UNPACKED_BYTES)
    except zlib.error as err:
        raise ConfigError(f"a packed batch is not zlib-compressed data ({err})") from err
    if inflater.unconsumed_tail:
        raise ConfigError(
            f"a packed batch holds more than {MAX_UNPACKED_BYTES >> 20} MiB of rows: send "
            "smaller batches"
        )
    path = Path(folder) / f"batch{suffix}"
    path.write_bytes(rows)
    return path


def csv_chunks(path: str | os.PathLike[str], rows: int) -> Iterator[tuple[bytes, int]]:
    """A CSV file as chunks of at most ``rows`` data rows, each with the header line.

    Rows are parsed and written again, so quoted fields holding newlines stay whole.

    Raises:
        DataError: the file is not valid CSV or has no header.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path} is empty: a CSV upload starts with a header row")
            chunk: list[list[str]] = []
            for row in reader:
                chunk.append(row)
                if len(chunk) == rows:
                    yield _csv_bytes(header, chunk), len(chunk)
                    chunk = []
        except (csv.Error, UnicodeDecodeError) as err:
            raise DataError(f"{path} is not valid UTF-8 CSV: {err}") from err
        if chunk:
            yield _csv_bytes(header, chunk), len(chunk)


def _csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def jsonl_chunks(path: str | os.PathLike[str], lines: int) -> Iterator[tuple[bytes, int]]:
    """A JSON-lines file as chunks of at most ``lines`` non-empty lines."""
    chunk: list[bytes] = []
    with open(path, "rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            chunk.append(line if line.endswith(b"\n") else line + b"\n")
            if len(chunk) == lines:
                yield b"".join(chunk), len(chunk)
                chunk = []
    if chunk:
        yield b"".join(chunk), len(chunk)
