"""Schemas: lenient constructors, label coercion, modalities, kinds."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from searchtuner.data import (
    DataKind,
    LabeledDoc,
    PairDoc,
    TextImageDoc,
    UnlabeledDoc,
    doc_modalities,
    doc_modality,
    kind_of,
    parse_kind,
)
from searchtuner.errors import ConfigError, DataError
from searchtuner.types import Modality


def test_int_label_becomes_its_decimal_string() -> None:
    assert LabeledDoc(text="a", label=7).label == "7"


def test_bool_label_is_rejected_not_coerced() -> None:
    with pytest.raises(ValidationError, match="label"):
        LabeledDoc(text="a", label=True)


def test_finetuner_tag_gives_the_label() -> None:
    doc = LabeledDoc(text="a", tags={"finetuner_label": 3})
    assert doc.label == "3"
    assert doc.tags == {"finetuner_label": 3}


def test_explicit_label_wins_over_finetuner_tag() -> None:
    assert LabeledDoc(text="a", label="cat", tags={"finetuner_label": "dog"}).label == "cat"


def test_tags_default_is_not_shared_between_docs() -> None:
    first, second = LabeledDoc(text="a"), LabeledDoc(text="b")
    first.tags["x"] = 1
    assert second.tags == {}


def test_constructors_accept_incomplete_data_for_validation_to_report() -> None:
    assert TextImageDoc(text="a caption").image is None
    assert LabeledDoc().label is None
    assert UnlabeledDoc(text="").text == ""


def test_tensor_is_coerced_to_an_array() -> None:
    doc = LabeledDoc(tensor=[1.0, 2.0], label="a")
    assert isinstance(doc.tensor, np.ndarray)
    assert doc.tensor.shape == (2,)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("labeled", DataKind.LABELED),
        (" Pairs ", DataKind.PAIRS),
        (DataKind.TEXT_IMAGE, DataKind.TEXT_IMAGE),
        (None, None),
    ],
)
def test_parse_kind(value: object, expected: DataKind | None) -> None:
    assert parse_kind(value) is expected


def test_parse_kind_typo_lists_allowed_values_and_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        parse_kind("labelled")
    message = str(info.value)
    assert "labeled, pairs, text_image, unlabeled" in message
    assert "did you mean 'labeled'" in message


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (LabeledDoc(text="a"), Modality.TEXT),
        (LabeledDoc(image=b"\x89PNG"), Modality.IMAGE),
        (LabeledDoc(uri="a.png"), Modality.IMAGE),
        (LabeledDoc(image=b"\x89PNG", uri="a.png"), Modality.IMAGE),
        (UnlabeledDoc(tensor=np.zeros(3)), Modality.TENSOR),
        (PairDoc(query="q", document="d"), Modality.TEXT),
        (LabeledDoc(label="a"), None),
    ],
)
def test_doc_modality(doc: LabeledDoc, expected: Modality | None) -> None:
    assert doc_modality(doc) is expected


def test_doc_modality_refuses_two_kinds_of_content() -> None:
    with pytest.raises(DataError, match="image and text content"):
        doc_modality(LabeledDoc(text="a", uri="a.png"))
    assert doc_modalities(TextImageDoc(text="a", uri="a.png")) == {Modality.TEXT, Modality.IMAGE}


def test_kind_of_each_schema() -> None:
    assert kind_of(LabeledDoc()) is DataKind.LABELED
    assert kind_of(PairDoc(query="q", document="d")) is DataKind.PAIRS
    assert kind_of(TextImageDoc(text="t")) is DataKind.TEXT_IMAGE
    assert kind_of(UnlabeledDoc()) is DataKind.UNLABELED
