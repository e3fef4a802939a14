"""Document schemas for training data (docarray v2).

Constructors only coerce types; they accept incomplete or odd data so that
:func:`searchtuner.data.validation.validate` can report every problem at once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from docarray import BaseDoc
from docarray.typing import NdArray
from pydantic import Field, field_validator, model_validator

from searchtuner.errors import DataError, invalid_choice
from searchtuner.types import Modality

if TYPE_CHECKING:
    import numpy as np

    # NdArray subclasses np.ndarray; typing the field as ndarray lets callers pass plain
    # arrays without a type error, while pydantic still validates with NdArray at run time.
    TensorField = np.ndarray[Any, Any]
else:
    TensorField = NdArray

FINETUNER_LABEL_TAG = "finetuner_label"
"""Key under ``tags`` where Finetuner-style documents keep their label."""


class DataKind(StrEnum):
    """The shape of a training set."""

    LABELED = "labeled"
    PAIRS = "pairs"
    TEXT_IMAGE = "text_image"
    UNLABELED = "unlabeled"


def parse_kind(kind: DataKind | str | None) -> DataKind | None:
    """Turn a kind given as a string into a :class:`DataKind`.

    Args:
        kind: a ``DataKind``, one of its values (``"labeled"``, ...), or ``None``.

    Returns:
        The ``DataKind``, or ``None`` when ``kind`` is ``None``.

    Raises:
        ConfigError: ``kind`` is not one of the allowed values; the message lists them.
    """
    if kind is None or isinstance(kind, DataKind):
        return kind
    try:
        return DataKind(str(kind).strip().lower())
    except ValueError as err:
        # The value is echoed back in the message: a client may send megabytes as a kind.
        shown = kind if len(str(kind)) <= 40 else f"{str(kind)[:40]}..."
        raise invalid_choice("data kind", shown, [k.value for k in DataKind]) from err


def _label_to_str(value: Any) -> Any:
    # Labels are class names; ints (common in CSV/JSON exports) become their decimal string.
    # bool is an int subclass but never a sensible label, so it is left for pydantic to reject.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class LabeledDoc(BaseDoc):
    """One item with a class label: text, an image or a tensor.

    Give exactly one kind of content (``text``; ``image`` and/or ``uri``; or ``tensor``).
    When ``label`` is missing but ``tags['finetuner_label']`` is set, the label is taken
    from the tags; an explicit ``label`` wins over the tag.
    """

    text: str | None = None
    image: bytes | None = Field(default=None, description="Encoded image file (PNG, JPEG...).")
    uri: str | None = Field(default=None, description="Local path of an image file.")
    tensor: TensorField | None = Field(
        default=None,
        description="A feature vector or an image array (HWC or CHW; the model decides).",
    )
    label: str | None = None
    tags: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _label_from_tags(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("label") is None:
            tags = data.get("tags")
            if isinstance(tags, dict) and tags.get(FINETUNER_LABEL_TAG) is not None:
                data = {**data, "label": tags[FINETUNER_LABEL_TAG]}
        return data

    @field_validator("label", mode="before")
    @classmethod
    def _coerce_label(cls, value: Any) -> Any:
        return _label_to_str(value)


class PairDoc(BaseDoc):
    """A query and a document that answers it (both texts)."""

    query: str
    document: str


class TextImageDoc(BaseDoc):
    """A text and the image it describes; give the image as ``image`` bytes or a ``uri``."""

    text: str
    image: bytes | None = Field(default=None, description="Encoded image file (PNG, JPEG...).")
    uri: str | None = Field(default=None, description="Local path of an image file.")


class UnlabeledDoc(BaseDoc):
    """One item without a label: text, an image or a tensor."""

    text: str | None = None
    image: bytes | None = Field(default=None, description="Encoded image file (PNG, JPEG...).")
    uri: str | None = Field(default=None, description="Local path of an image file.")
    tensor: TensorField | None = None
    tags: dict[str, Any] = Field(default_factory=dict)


SCHEMAS: dict[DataKind, type[BaseDoc]] = {
    DataKind.LABELED: LabeledDoc,
    DataKind.PAIRS: PairDoc,
    DataKind.TEXT_IMAGE: TextImageDoc,
    DataKind.UNLABELED: UnlabeledDoc,
}
"""The schema each kind of data is read into."""

FIELDS: dict[DataKind, frozenset[str]] = {
    kind: frozenset(schema.model_fields) for kind, schema in SCHEMAS.items()
}
"""The field names each kind accepts (``id`` included)."""


def kind_of(doc: BaseDoc) -> DataKind | None:
    """The kind whose schema ``doc`` is an instance of, or ``None`` for other schemas."""
    for kind, schema in SCHEMAS.items():
        if isinstance(doc, schema):
            return kind
    return None


def doc_modalities(doc: BaseDoc) -> frozenset[Modality]:
    """Every modality of content a document carries.

    ``image`` and ``uri`` both count as :attr:`Modality.IMAGE`; a :class:`PairDoc` is text.

    Args:
        doc: any document; fields named ``text``, ``image``, ``uri`` and ``tensor`` count.

    Returns:
        The set of modalities, empty when the document has no content.
    """
    if isinstance(doc, PairDoc):
        return frozenset({Modality.TEXT})
    found: set[Modality] = set()
    if getattr(doc, "text", None) is not None:
        found.add(Modality.TEXT)
    if getattr(doc, "image", None) is not None or getattr(doc, "uri", None) is not None:
        found.add(Modality.IMAGE)
    if getattr(doc, "tensor", None) is not None:
        found.add(Modality.TENSOR)
    return frozenset(found)


def doc_modality(doc: BaseDoc) -> Modality | None:
    """The one modality of a document's content.

    The rule: an item carries one kind of content. ``image`` and ``uri`` together are one
    image (the bytes are used). For :class:`TextImageDoc`, use :func:`doc_modalities`.

    Args:
        doc: a document.

    Returns:
        The modality, or ``None`` when the document has no content.

    Raises:
        DataError: the document carries more than one kind of content.
    """
    found = doc_modalities(doc)
    if not found:
        return None
    if len(found) > 1:
        names = " and ".join(sorted(m.value for m in found))
        raise DataError(
            f"document {doc.id} has {names} content; keep one kind of content per item, "
            "or use TextImageDoc for text–image pairs"
        )
    return next(iter(found))
