"""How large a document's payload is, measured without copying it, and the errors for too much.

The service refuses a document whose text, image or tensor is over
``Limits.max_document_bytes``, and an upload that grows over ``Limits.max_dataset_rows`` or
``Limits.max_dataset_bytes`` (:mod:`searchtuner.service.limits`). Both are request errors
(:class:`~searchtuner.service.limits.TooLarge`, HTTP 413): the user must change the data, and
nothing of the refused batch is stored, so the upload stays as it was.

Measuring must stay cheap for a 10 MB string: a text's UTF-8 size is only computed (by
encoding it) when its length in characters leaves the answer open, i.e. when it has between
``limit / 4`` and ``limit`` characters, and is not pure ASCII (``str.isascii`` is O(1)).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from searchtuner.data.readers import Record
from searchtuner.service.limits import TooLarge, env_name, human_bytes

TEXT_FIELDS = ("text", "query", "document", "label")
"""The string fields of a document whose UTF-8 size counts."""
_ADVICE = {
    "text": "shorten the text, or split it into several documents",
    "image": (
        "resize or recompress the image (a JPEG of at most 1024 pixels a side is plenty for "
        "training), or leave it out"
    ),
    "tensor": (
        "make the tensor smaller (fewer elements, or float32 instead of float64), or split it "
        "into several documents"
    ),
}


@dataclass(frozen=True)
class Oversized:
    """A field of a document over the size limit.

    Attributes:
        field: the field (``text``, ``query``, ``document``, ``label``, ``image``, ``tensor``).
        size: its size in bytes; a lower bound when ``exact`` is False.
        exact: False for a long non-ASCII text measured by its characters (each at least one
            byte in UTF-8), so that a huge text is not encoded only to be refused.
    """

    field: str
    size: int
    exact: bool = True


def _field(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def _text_over(name: str, text: str, limit: int) -> Oversized | None:
    length = len(text)
    if length * 4 <= limit:
        return None  # at most 4 bytes per character in UTF-8: fits whatever the characters
    if text.isascii():
        return Oversized(name, length) if length > limit else None
    if length > limit:
        return Oversized(name, length, exact=False)
    size = len(text.encode("utf-8", "surrogatepass"))  # at most 4 × limit bytes copied
    return Oversized(name, size) if size > limit else None


def _payloads(item: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(item, Record):
        item = item.doc  # a row that did not parse has no payload (it is a finding)
    if item is None:
        return
    for name in (*TEXT_FIELDS, "image", "tensor"):
        value = _field(item, name)
        if value is not None:
            yield name, value


def oversized_field(item: Any, limit: int) -> Oversized | None:
    """The first field of ``item`` larger than ``limit`` bytes, or None.

    Args:
        item: a document (any schema with fields named ``text``, ``image``, ``tensor``, ...),
            a dict of such fields, or a :class:`~searchtuner.data.readers.Record`.
        limit: the most bytes one field may hold.

    Texts count in UTF-8 bytes; images as bytes (a base64 string by the bytes it decodes
    to); tensors by their ``nbytes``. A tensor given as a nested list is not measured here
    (it becomes an array while validating, and the dataset's byte limit still bounds it).
    """
    for name, value in _payloads(item):
        if name == "image":
            if isinstance(value, bytes | bytearray):
                size = len(value)
            elif isinstance(value, str):
                size = len(value) * 3 // 4  # base64, as the readers take images in dicts
            else:
                continue
            if size > limit:
                return Oversized(name, size)
        elif name == "tensor":
            nbytes = getattr(value, "nbytes", None)  # numpy arrays and torch tensors
            if isinstance(nbytes, int) and nbytes > limit:
                return Oversized(name, nbytes)
        elif isinstance(value, str):
            found = _text_over(name, value, limit)
            if found is not None:
                return found
    return None


def document_too_large(where: str, found: Oversized, limit: int) -> TooLarge:
    """The error for a document over ``max_document_bytes``.

    Args:
        where: names the document, e.g. ``"document 3 of the request (id 'a1')"``.
        found: what :func:`oversized_field` found.
        limit: the limit in bytes.
    """
    if found.exact and found.size < 1024:
        size = human_bytes(found.size)  # already in bytes
    elif found.exact:
        size = f"{human_bytes(found.size)} ({found.size:,} bytes)"
    else:
        size = f"at least {human_bytes(found.size)} ({found.size:,} characters)"
    advice = _ADVICE.get(found.field, _ADVICE["text"])
    return TooLarge(
        f"{where} is too large: its {found.field} is {size}, more than the "
        f"{human_bytes(limit)} one document may hold ({env_name('max_document_bytes')}). "
        f"{advice[0].upper()}{advice[1:]}. Nothing of this batch was stored and the upload "
        "is still open: send the batch again without that document, or with it fixed"
    )


def dataset_rows_too_many(rows_so_far: int, batch_rows: int, limit: int) -> TooLarge:
    """The error for a batch that takes an upload over ``max_dataset_rows``."""
    return TooLarge(
        f"this batch of {batch_rows:,} rows would bring the upload to "
        f"{rows_so_far + batch_rows:,} rows, more than the {limit:,} one dataset may hold "
        f"({env_name('max_dataset_rows')}). Split the dataset into parts of at most "
        f"{limit:,} rows and upload each as a dataset of its own. This batch was not stored; "
        f"the upload is still open with the {rows_so_far:,} rows before it: commit them as "
        "the first part"
    )


def dataset_bytes_too_many(bytes_so_far: int, batch_bytes: int, limit: int) -> TooLarge:
    """The error for a batch that takes an upload over ``max_dataset_bytes`` (stored bytes)."""
    total = bytes_so_far + batch_bytes
    return TooLarge(
        f"this batch ({human_bytes(batch_bytes)} stored) would bring the upload to "
        f"{human_bytes(total)} ({total:,} bytes), more than the {human_bytes(limit)} one "
        f"dataset may hold ({env_name('max_dataset_bytes')}). Split the dataset into parts "
        "under that size and upload each as a dataset of its own. This batch was not stored; "
        f"the upload is still open with the {human_bytes(bytes_so_far)} before it: commit "
        "them as the first part"
    )
