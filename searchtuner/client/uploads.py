"""Turning a dataset into what an upload sends, one batch at a time, never all in memory.

The service never reads files by path, so an item that names a local image file (``uri``)
is sent with the file's bytes instead. Over HTTP a CSV or JSON-lines file is streamed as it
is when it names no image files; anything else (documents in memory, TSV, files with image
paths) is streamed as JSON lines generated batch by batch.
"""

from __future__ import annotations

import base64
import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from docarray import BaseDoc

from searchtuner.data.readers import CSV_COLUMNS, Source
from searchtuner.data.schemas import DataKind, parse_kind
from searchtuner.data.stored import iter_batches
from searchtuner.errors import DataError

CSV_TYPE = "text/csv"
JSONL_TYPE = "application/x-ndjson"
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json-lines")
_SENT_FIELDS = ("text", "image", "tensor", "label", "query", "document")
CHUNK_BYTES = 1 << 20


def ingest_fields(doc: BaseDoc) -> dict[str, Any]:
    """The fields of a training document that an upload sends (``IngestDoc``'s fields).

    A local image file named by ``uri`` is read and sent as ``image`` bytes.

    Raises:
        DataError: the image file cannot be read.
    """
    fields = {name: getattr(doc, name, None) for name in _SENT_FIELDS}
    fields = {name: value for name, value in fields.items() if value is not None}
    uri = getattr(doc, "uri", None)
    if uri is not None and "image" not in fields:
        fields["image"] = _read_image(uri)
    tags = getattr(doc, "tags", None)
    if tags:
        fields["tags"] = dict(tags)
    return fields


def _read_image(uri: str) -> bytes:
    try:
        return Path(uri).read_bytes()
    except OSError as err:
        raise DataError(
            f"cannot read the image file {uri} ({err.strerror or err}); the service never reads "
            "files by path, so the SDK sends each image's bytes: fix the path, or give the "
            "bytes in 'image'"
        ) from err


def json_line(fields: dict[str, Any]) -> bytes:
    """One item as a line of JSON, as the service's JSON-lines reader takes it.

    ``image`` bytes become base64 text and ``tensor`` a (nested) list of numbers.

    Raises:
        DataError: a value (in ``tags``) is not JSON.
    """
    data = dict(fields)
    if isinstance(data.get("image"), bytes | bytearray):
        data["image"] = base64.b64encode(data["image"]).decode("ascii")
    if data.get("tensor") is not None:
        data["tensor"] = np.asarray(data["tensor"]).tolist()
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise DataError(
            f"cannot send an item as JSON ({err}); keep tags to strings, numbers, lists and dicts"
        ) from err
    return text.encode("utf-8") + b"\n"


def json_lines(docs: Iterable[BaseDoc]) -> Iterator[bytes]:
    """Each document as one line of JSON (see :func:`json_line`)."""
    for doc in docs:
        yield json_line(ingest_fields(doc))


def jsonl_body(source: Source, batch_size: int, kind: str | None) -> Iterator[bytes]:
    """A dataset as a JSON-lines body, one chunk per batch."""
    for batch in iter_batches(source, batch_size, kind=kind):
        yield b"".join(json_lines(batch))


def file_content_type(path: str | os.PathLike[str], kind: str | None) -> str | None:
    """The Content-Type to stream a data file as it is, or ``None`` to send it as JSON lines.

    A file is streamed as it is when the service reads it as the SDK would: a CSV or JSON-lines
    file whose first row names no image file (only the first row is read).
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if not file.is_file():
        return None  # iter_batches reports the missing file
    if suffix == ".csv":
        with file.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
            first = next(csv.reader(handle), [])
        names = {cell.strip().lower() for cell in first}
        if names and names <= set(CSV_COLUMNS):
            return None if names & {"image", "uri"} else CSV_TYPE
        return None if parse_kind(kind) is DataKind.TEXT_IMAGE else CSV_TYPE
    if suffix in _JSONL_SUFFIXES:
        with file.open("rb") as handle:
            for line in handle:
                if line.strip():
                    return None if b'"uri"' in line else JSONL_TYPE
        return JSONL_TYPE
    return None


def file_chunks(
    path: str | os.PathLike[str], on_chunk: Callable[[int], object] | None = None
) -> Iterator[bytes]:
    """A file's bytes in chunks of 1 MiB; ``on_chunk(n)`` is called with each chunk's size."""
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            if on_chunk is not None:
                on_chunk(len(chunk))
            yield chunk


def item_count(data: Source) -> int | None:
    """How many items in-memory data holds, ``None`` for a file or a generator."""
    if isinstance(data, str | os.PathLike):
        return None
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None
