"""What a served model reads from documents, and how its embeddings go back onto them.

A document may be any docarray ``BaseDoc``: the fields read are the usual names for each
modality (docarray's ``TextDoc``/``ImageDoc``, SearchTuner's ``IngestDoc``, jina v1's
``blob``). Every document of a call is checked before anything is embedded, and embeddings
go onto copies, so a call that fails leaves no document half done.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import torch

from searchtuner.errors import DataError
from searchtuner.types import Modality

TEXT_FIELDS = ("text",)
# In the order they are read: bytes first, pixels next, then a path (only when allowed).
IMAGE_FIELDS = ("image", "bytes_", "blob", "tensor", "url", "uri")
TENSOR_FIELDS = ("tensor",)
EMBEDDING_FIELD = "embedding"
FIELDS: dict[Modality, tuple[str, ...]] = {
    Modality.TEXT: TEXT_FIELDS,
    Modality.IMAGE: IMAGE_FIELDS,
    Modality.TENSOR: TENSOR_FIELDS,
}
_PATH_FIELDS = ("url", "uri")
_NOUNS = {Modality.TEXT: "text", Modality.IMAGE: "images", Modality.TENSOR: "tensors"}
# What a field set on a document says it carries, and which model would read it.
_KINDS = {
    "text": ("text", "a text model"),
    "tensor": ("a tensor", "an image or tensor model"),
    **{name: ("an image", "an image model") for name in ("image", "bytes_", "blob", "url", "uri")},
}
_SHOWN_PROBLEMS = 5


def read_inputs(
    docs: Sequence[Any],
    modality: Modality,
    *,
    allow_paths: bool = False,
    input_shape: tuple[int, ...] | None = None,
) -> list[Any]:
    """The raw item of each document for a model of one modality, all checked first.

    Args:
        docs: docarray documents (``BaseDoc``, ``AnyDoc``) of any class.
        modality: what the model embeds.
        allow_paths: images may be named by a local path (``uri``/``url``, a plain path or
            ``file://``); off by default, as a service must not read its own disk for callers.
        input_shape: tensor models: the shape each ``tensor`` must have.

    Returns:
        One item per document, in order: a text, encoded image bytes / an image array / a
        path, or an array.

    Raises:
        DataError: a document has no usable field for this model, carries another modality
            only, or holds a value of the wrong kind; the message names each such document
            by index and id (up to five of them) and the fields this model reads.
    """
    items: list[Any] = []
    problems: list[str] = []
    for index, doc in enumerate(docs):
        try:
            items.append(_read_one(doc, modality, allow_paths, input_shape))
        except DataError as err:
            problems.append(f"document {index} (id {getattr(doc, 'id', None)!r}) {err}")
    if problems:
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        more = len(problems) - _SHOWN_PROBLEMS
        raise DataError(
            f"{len(problems)} of {len(docs)} documents cannot be embedded by this "
            f"{modality.value} model, so none was: {shown}"
            + (f"; and {more} more" if more > 0 else "")
        )
    return items


def with_embeddings(docs: Sequence[Any], embeddings: np.ndarray) -> list[Any]:
    """Copies of the documents with ``embedding`` set, every other field as it was.

    ``AnyDoc`` (what an executor typed ``DocList[AnyDoc]`` receives) keeps every field the
    client sent; a typed document class needs an ``embedding`` field.

    Raises:
        DataError: a typed document class without an ``embedding`` field.
    """
    from docarray.base_doc import AnyDoc

    out: list[Any] = []
    for doc, vector in zip(docs, embeddings, strict=True):
        if isinstance(doc, AnyDoc):
            # AnyDoc keeps the fields it was given in its __dict__; a new one with the same
            # fields plus the embedding leaves the caller's document untouched.
            out.append(type(doc)(**{**vars(doc), EMBEDDING_FIELD: vector}))
        elif EMBEDDING_FIELD in type(doc).model_fields:
            copy = doc.model_copy()
            setattr(copy, EMBEDDING_FIELD, vector)
            out.append(copy)
        else:
            raise DataError(
                f"{type(doc).__name__} has no {EMBEDDING_FIELD!r} field to hold the embedding; "
                f"declare `{EMBEDDING_FIELD}: NdArray | None = None` in it"
            )
    return out


def _read_one(
    doc: Any, modality: Modality, allow_paths: bool, input_shape: tuple[int, ...] | None
) -> Any:
    for name in FIELDS[modality]:
        value = getattr(doc, name, None)
        if _is_set(value):
            return _check(name, value, modality, allow_paths, input_shape)
    raise DataError(_missing(doc, modality))


def _is_set(value: Any) -> bool:
    return value is not None and not (isinstance(value, str | bytes) and len(value) == 0)


def _check(
    name: str,
    value: Any,
    modality: Modality,
    allow_paths: bool,
    input_shape: tuple[int, ...] | None,
) -> Any:
    if modality is Modality.TEXT:
        if not isinstance(value, str):
            raise DataError(f"has a {type(value).__name__} in 'text'; this text model needs a str")
        return value
    if name in _PATH_FIELDS:
        return _local_path(name, value, allow_paths)
    if name == "tensor":
        if not isinstance(value, np.ndarray | torch.Tensor):
            raise DataError(f"has a {type(value).__name__} in 'tensor'; send an array")
        if input_shape is not None and tuple(value.shape) != input_shape:
            raise DataError(
                f"has a tensor of shape {tuple(value.shape)}; this model takes {input_shape}"
            )
        return value
    if not _is_image(value):  # e.g. a file name or base64 text in 'image'
        raise DataError(
            f"has a {type(value).__name__} in {name!r}; put the encoded image (PNG, "
            "JPEG...) there as bytes"
        )
    return value


def _is_image(value: Any) -> bool:
    from PIL import Image

    return isinstance(value, bytes | bytearray | np.ndarray | torch.Tensor | Image.Image)


def _local_path(name: str, value: Any, allow_paths: bool) -> str:
    text = str(value)
    parsed = urlparse(text)
    if parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:  # "C:" is a drive
        raise DataError(
            f"names its image by the URL {text!r} in {name!r}; the encoder downloads nothing: "
            "send the encoded image as bytes in 'image'"
        )
    if not allow_paths:
        raise DataError(
            f"names its image by the path {text!r} in {name!r}, but this encoder reads no "
            "files (allow_paths is off): send the encoded image as bytes in 'image', or "
            "start the encoder with allow_paths: true"
        )
    path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(text)
    if not path.is_file():
        raise DataError(f"names the image file {str(path)!r} in {name!r}, which does not exist")
    return str(path)


def _missing(doc: Any, modality: Modality) -> str:
    needs = " or ".join(repr(f) for f in FIELDS[modality])
    carried = [
        field
        for field in (*TEXT_FIELDS, *IMAGE_FIELDS)
        if field not in FIELDS[modality] and _is_set(getattr(doc, field, None))
    ]
    if carried:
        what, serve = _KINDS[carried[0]]
        return (
            f"carries {what} ({carried[0]!r}) but this model embeds {_NOUNS[modality]}: "
            f"send {needs}, or serve {serve}"
        )
    present = [name for name, value in _fields(doc).items() if name != "id" and _is_set(value)]
    if not present:
        return (
            f"arrived with no fields but its id; this model reads {needs}. (Over HTTP, "
            "jina's gateway keeps only the fields the first executor declares: send over gRPC.)"
        )
    return f"has none of {needs} (it has {', '.join(repr(p) for p in present)})"


def _fields(doc: Any) -> dict[str, Any]:
    from docarray.base_doc import AnyDoc

    if isinstance(doc, AnyDoc):
        return dict(vars(doc))
    return {name: getattr(doc, name, None) for name in type(doc).model_fields}
