"""validate(): every finding, with its code, severity and rows; the report's outputs."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from docarray import DocList
from PIL import Image

from searchtuner.data import (
    FINDING_CODES,
    DataKind,
    DataReport,
    Finding,
    LabeledDoc,
    PairDoc,
    Severity,
    TextImageDoc,
    UnlabeledDoc,
    validate,
)
from searchtuner.errors import ConfigError, DataError


def png(color: tuple[int, int, int] = (255, 0, 0), size: int = 4) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def finding(report: DataReport, code: str, data: str = "train") -> Finding:
    matches = [f for f in report.findings if f.code == code and f.data == data]
    assert len(matches) == 1, f"expected one {code!r} finding for {data}, got {report.findings}"
    return matches[0]


def labeled(*pairs: tuple[str, str]) -> DocList[LabeledDoc]:
    return DocList[LabeledDoc]([LabeledDoc(text=t, label=lbl) for t, lbl in pairs])


CLEAN = [("a cat", "cat"), ("another cat", "cat"), ("a dog", "dog"), ("another dog", "dog")]


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    """A folder with two good PNGs, a truncated PNG and a text file named .png."""
    paths = {
        "red": tmp_path / "red.png",
        "blue": tmp_path / "blue.png",
        "truncated": tmp_path / "truncated.png",
        "not_image": tmp_path / "not_image.png",
    }
    paths["red"].write_bytes(png((255, 0, 0)))
    paths["blue"].write_bytes(png((0, 0, 255)))
    big = png((0, 255, 0), size=64)
    paths["truncated"].write_bytes(big[: len(big) // 2])
    paths["not_image"].write_text("hello", encoding="utf-8")
    return paths


# --- a clean data set -------------------------------------------------------------------


def test_clean_labeled_data_has_no_findings() -> None:
    report = validate(labeled(*CLEAN))
    assert report.findings == []
    assert report.ok
    assert (report.n_items, report.n_labels, report.kind) == (4, 2, DataKind.LABELED)
    assert report.items_per_label == {"cat": 2, "dog": 2}
    assert report.modalities == {"text": 4}
    assert "Result: OK" in str(report)


def test_clean_image_csv_with_eval(tmp_path: Path) -> None:
    for i in range(6):
        (tmp_path / f"{i}.png").write_bytes(png((40 * i, 0, 0)))
    (tmp_path / "train.csv").write_text("image,label\n0.png,r\n1.png,r\n2.png,b\n3.png,b\n")
    (tmp_path / "eval.csv").write_text("image,label\n4.png,r\n5.png,b\n")
    report = validate(tmp_path / "train.csv", tmp_path / "eval.csv")
    assert report.findings == []
    assert report.modalities == {"image": 4}
    assert (report.eval_source, report.eval_n_items) == (str(tmp_path / "eval.csv"), 2)


# --- row-level findings -------------------------------------------------------------------


def test_malformed_missing_label_and_empty_rows(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text(
        "text,label\na,x\nb,x\nc,y\nd,y\ntoo,many,cells\n,y\nno label,\n", encoding="utf-8"
    )
    report = validate(path)
    malformed = finding(report, "malformed_row")
    assert (malformed.severity, malformed.rows, malformed.count) == (Severity.ERROR, [6], 1)
    assert "row 6" in malformed.examples[0]
    empty = finding(report, "empty_field")
    assert (empty.severity, empty.rows) == (Severity.ERROR, [7])
    assert "field 'text'" in empty.examples[0]
    missing = finding(report, "missing_label")
    assert (missing.severity, missing.rows) == (Severity.ERROR, [8])
    assert report.n_items == 7
    assert report.items_per_label == {"x": 2, "y": 2}


def test_empty_image_bytes_and_empty_tensor_are_empty_fields() -> None:
    docs = [
        LabeledDoc(tensor=np.ones(3), label="a"),
        LabeledDoc(tensor=np.zeros((0,)), label="a"),
        LabeledDoc(tensor=np.ones(3), label="b"),
        LabeledDoc(tensor=np.ones(3) * 2, label="b"),
    ]
    report = validate(docs)
    empty = finding(report, "empty_field")
    assert (empty.severity, empty.rows) == (Severity.ERROR, [1])
    images = validate([LabeledDoc(image=b"", label="a"), LabeledDoc(image=png(), label="a")])
    assert finding(images, "empty_field").rows == [0]
    assert "field 'image'" in finding(images, "empty_field").examples[0]


def test_two_kinds_of_content_in_one_item() -> None:
    report = validate([*labeled(*CLEAN), LabeledDoc(text="a", image=png(), label="cat")])
    found = finding(report, "multiple_content")
    assert (found.severity, found.rows) == (Severity.ERROR, [4])


def test_empty_data() -> None:
    report = validate(DocList[LabeledDoc]([]))
    found = finding(report, "empty_data")
    assert found.severity is Severity.ERROR
    assert not report.ok


# --- content checks ----------------------------------------------------------------------


def test_oversized_text_and_image(tmp_path: Path, images: dict[str, Path]) -> None:
    docs = [*labeled(*CLEAN), LabeledDoc(text="x" * 51, label="cat")]
    report = validate(docs, max_text_chars=50)
    found = finding(report, "oversized_field")
    assert (found.severity, found.rows) == (Severity.ERROR, [4])
    assert "51 characters" in found.examples[0]
    image_docs = [
        LabeledDoc(image=png(), label="a"),
        LabeledDoc(uri=str(images["red"]), label="a"),
        LabeledDoc(image=png((1, 2, 3), size=200), label="b"),
        LabeledDoc(image=png((3, 2, 1)), label="b"),
    ]
    limit = max(len(png()), images["red"].stat().st_size) + 10
    report = validate(image_docs, max_image_bytes=limit)
    assert finding(report, "oversized_field").rows == [2]
    report = validate(image_docs, max_image_bytes=10)
    assert finding(report, "oversized_field").rows == [0, 1, 2, 3]


def test_images_that_do_not_decode(images: dict[str, Path]) -> None:
    docs = [
        LabeledDoc(uri=str(images["red"]), label="a"),
        LabeledDoc(uri=str(images["truncated"]), label="a"),
        LabeledDoc(image=b"definitely not an image", label="b"),
        LabeledDoc(uri=str(images["not_image"]), label="b"),
        LabeledDoc(image=png((0, 9, 0)), label="b"),
    ]
    report = validate(docs)
    found = finding(report, "image_decode_error")
    assert (found.severity, found.rows, found.count) == (Severity.ERROR, [1, 2, 3], 3)
    assert "truncated.png" in found.examples[0]
    # check_images=False skips decoding (a faster, shallower pass).
    assert "image_decode_error" not in validate(docs, check_images=False).codes()


def test_image_files_that_do_not_exist(tmp_path: Path, images: dict[str, Path]) -> None:
    path = tmp_path / "train.csv"
    path.write_text("image,label\nred.png,a\nmissing.png,a\nblue.png,b\n", encoding="utf-8")
    report = validate(path)
    found = finding(report, "image_not_found")
    assert (found.severity, found.rows) == (Severity.ERROR, [3])
    assert str(tmp_path / "missing.png") in found.examples[0]


def test_text_image_pairs_check_their_images(images: dict[str, Path]) -> None:
    docs = [
        TextImageDoc(text="red", uri=str(images["red"])),
        TextImageDoc(text="broken", uri=str(images["truncated"])),
        TextImageDoc(text="nothing"),
    ]
    report = validate(docs)
    assert report.kind is DataKind.TEXT_IMAGE
    assert finding(report, "image_decode_error").rows == [1]
    assert finding(report, "empty_field").rows == [2]
    assert report.modalities == {"image": 2, "text": 2}


def test_non_finite_tensors() -> None:
    docs = [
        LabeledDoc(tensor=np.array([0.0, 1.0]), label="a"),
        LabeledDoc(tensor=np.array([np.nan, 1.0]), label="a"),
        LabeledDoc(tensor=np.array([1.0, np.inf]), label="b"),
        LabeledDoc(tensor=np.array([3, 4]), label="b"),  # integers cannot be NaN
    ]
    found = finding(validate(docs), "non_finite_tensor")
    assert (found.severity, found.rows) == (Severity.ERROR, [1, 2])


def test_tensor_shapes_must_match_across_items_and_eval() -> None:
    train = [
        UnlabeledDoc(tensor=np.zeros(4)),
        UnlabeledDoc(tensor=np.ones(4)),
        UnlabeledDoc(tensor=np.zeros(5)),
    ]
    evaluation = [UnlabeledDoc(tensor=np.zeros((2, 2))), UnlabeledDoc(tensor=np.full(4, 3.0))]
    report = validate(train, evaluation)
    found = finding(report, "tensor_shape_mismatch")
    assert (found.severity, found.rows) == (Severity.ERROR, [2])
    assert "(5,)" in found.examples[0]
    assert finding(report, "tensor_shape_mismatch", "eval").rows == [0]


# --- data-set findings ---------------------------------------------------------------------


def test_mixed_modalities_names_the_minority_rows(images: dict[str, Path]) -> None:
    docs = [*labeled(*CLEAN), LabeledDoc(uri=str(images["red"]), label="dog")]
    found = finding(validate(docs), "mixed_modalities")
    assert (found.severity, found.rows, found.count) == (Severity.ERROR, [4], 1)
    assert "4 text, 1 image" in found.message


def test_train_and_eval_of_different_modalities(images: dict[str, Path]) -> None:
    evaluation = [LabeledDoc(uri=str(images["red"]), label="cat")]
    found = finding(validate(labeled(*CLEAN), evaluation), "mixed_modalities", "train+eval")
    assert (found.severity, found.rows) == (Severity.ERROR, [0])


def test_single_label_is_an_error_for_labeled_data() -> None:
    report = validate(labeled(("a", "cat"), ("b", "cat"), ("c", "cat")))
    found = finding(report, "single_label")
    assert (found.severity, found.rows) == (Severity.ERROR, [0])
    assert "'cat'" in found.message
    assert not report.ok


def test_labels_with_fewer_than_two_items() -> None:
    report = validate(labeled(*CLEAN, ("a bird", "bird"), ("a fish", "fish")))
    found = finding(report, "label_too_few_items")
    assert (found.severity, found.rows, found.count) == (Severity.WARNING, [4, 5], 2)
    assert "'bird'" in found.message
    assert "'fish'" in found.message
    assert report.ok  # a warning does not block training


def test_exact_duplicates_and_conflicting_labels() -> None:
    report = validate(labeled(*CLEAN, ("a cat", "cat"), ("a dog", "cat"), ("a cat", "cat")))
    duplicate = finding(report, "duplicate")
    assert (duplicate.severity, duplicate.rows, duplicate.count) == (Severity.WARNING, [4, 6], 2)
    assert duplicate.examples[0] == "<DocList> item 4 repeats item 0"
    conflict = finding(report, "conflicting_labels")
    assert (conflict.severity, conflict.rows) == (Severity.WARNING, [5])
    assert "item 2" in conflict.examples[0]


def test_duplicate_images_by_content_not_by_path(tmp_path: Path, images: dict[str, Path]) -> None:
    copy = tmp_path / "copy_of_red.png"
    copy.write_bytes(images["red"].read_bytes())
    docs = [
        LabeledDoc(uri=str(images["red"]), label="a"),
        LabeledDoc(uri=str(copy), label="a"),
        LabeledDoc(image=images["red"].read_bytes(), label="a"),
        LabeledDoc(uri=str(images["blue"]), label="a"),
    ]
    assert finding(validate(docs), "duplicate").rows == [1, 2]


def test_duplicate_pairs() -> None:
    docs = [
        PairDoc(query="q", document="d"),
        PairDoc(query="q", document="other"),
        PairDoc(query="q", document="d"),
    ]
    report = validate(docs)
    assert report.kind is DataKind.PAIRS
    assert finding(report, "duplicate").rows == [2]


def test_train_eval_overlap_and_new_eval_labels(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text(
        "text,label\n" + "".join(f"{t},{lbl}\n" for t, lbl in CLEAN), encoding="utf-8"
    )
    (tmp_path / "eval.jsonl").write_text(
        '{"text": "a fresh cat", "label": "cat"}\n'
        '{"text": "a dog", "label": "dog"}\n'
        '{"text": "a cow", "label": "cow"}\n',
        encoding="utf-8",
    )
    report = validate(tmp_path / "train.csv", tmp_path / "eval.jsonl")
    overlap = finding(report, "train_eval_overlap", "train+eval")
    assert (overlap.severity, overlap.rows) == (Severity.WARNING, [2])
    assert "eval.jsonl row 2 is also training row 4" in overlap.examples[0]
    unseen = finding(report, "eval_label_not_in_train", "eval")
    assert (unseen.severity, unseen.rows) == (Severity.INFO, [3])
    assert "'cow'" in unseen.message
    assert report.eval_n_items == 3
    assert report.eval_items_per_label == {"cat": 1, "dog": 1, "cow": 1}


def test_eval_rows_are_checked_with_the_training_kind(tmp_path: Path) -> None:
    evaluation = [{"text": "unlabelled"}, {"text": "", "label": "cat"}]
    report = validate(labeled(*CLEAN), evaluation)
    assert finding(report, "missing_label", "eval").rows == [0]
    assert finding(report, "empty_field", "eval").rows == [1]
    assert finding(report, "empty_field", "eval").message.startswith("eval data:")


# --- every code is covered ------------------------------------------------------------------


def _scenarios(images: dict[str, Path]) -> list[Callable[[], DataReport]]:
    nan = np.array([np.nan])
    return [
        lambda: validate([{"text": 1, "label": "a"}, {"text": "", "label": "a"}, {"text": "x"}]),
        lambda: validate([LabeledDoc(text="a", tensor=np.ones(1), label="a")]),
        lambda: validate([]),
        lambda: validate(labeled(("x" * 20, "a")), max_text_chars=10),
        lambda: validate([LabeledDoc(uri=str(images["truncated"]), label="a")]),
        lambda: validate([LabeledDoc(uri="/nowhere/x.png", label="a")]),
        lambda: validate([UnlabeledDoc(tensor=nan), UnlabeledDoc(tensor=np.ones(2))]),
        lambda: validate([UnlabeledDoc(text="t"), UnlabeledDoc(tensor=np.ones(2))]),
        lambda: validate(labeled(("a", "x"), ("a", "x"), ("a", "y"))),
        lambda: validate(labeled(*CLEAN), labeled(("a cat", "cat"), ("new", "cow"))),
    ]


def test_every_finding_code_has_a_scenario(images: dict[str, Path]) -> None:
    produced: set[str] = set()
    for scenario in _scenarios(images):
        produced |= scenario().codes()
    assert produced == set(FINDING_CODES)


# --- the report --------------------------------------------------------------------------


@pytest.fixture
def messy_report(images: dict[str, Path]) -> DataReport:
    docs: list[Any] = [
        *labeled(*CLEAN, ("a cat", "cat"), ("", "dog")),
        LabeledDoc(uri=str(images["truncated"]), label="bird"),
    ]
    return validate(docs, labeled(("a dog", "dog")))


def test_report_json_round_trip(messy_report: DataReport) -> None:
    data = json.loads(messy_report.to_json())
    assert data["ok"] is False
    assert data["kind"] == "labeled"
    assert {f["code"] for f in data["findings"]} == messy_report.codes()
    assert all(f["severity"] in {"info", "warning", "error"} for f in data["findings"])
    assert DataReport.from_dict(data) == messy_report


def test_str_report_lists_counts_and_every_finding(messy_report: DataReport) -> None:
    text = str(messy_report)
    assert text.startswith("Data report for <list> (kind: labeled)")
    assert "items: 7 | labels: 3 | modalities: text 5, image 1" in text
    lines = text.splitlines()
    for found in messy_report.findings:
        (line,) = [x for x in lines if f" {found.code} ({found.data}): " in x]
        assert found.severity.value.upper() in line
        assert found.message in line
    assert "      items: 5" in lines  # the rows of the empty_field finding
    assert "      eval items: 0" in lines  # the rows of the train/eval overlap
    assert "Result: NOT OK" in text


def test_errors_sort_first_and_properties(messy_report: DataReport) -> None:
    severities = [f.severity for f in messy_report.findings]
    order = [Severity.ERROR, Severity.WARNING, Severity.INFO]
    assert severities == sorted(severities, key=order.index)
    assert {f.code for f in messy_report.errors} == {
        "empty_field",
        "image_decode_error",
        "mixed_modalities",
    }
    assert {f.code for f in messy_report.warnings} == {
        "duplicate",
        "label_too_few_items",
        "train_eval_overlap",
    }


def test_raise_for_errors(messy_report: DataReport) -> None:
    with pytest.raises(DataError) as info:
        messy_report.raise_for_errors()
    message = str(info.value)
    assert "[image_decode_error]" in message
    assert "[empty_field]" in message
    assert "[duplicate]" not in message
    validate(labeled(*CLEAN)).raise_for_errors()  # no errors: returns quietly


@pytest.mark.parametrize(
    "kwargs",
    [{"max_text_chars": 0}, {"max_image_bytes": -1}, {"max_text_chars": True}, {"kind": "x"}],
)
def test_bad_options_fail_fast(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        validate(labeled(*CLEAN), **kwargs)


def test_finding_examples_and_rows_are_capped() -> None:
    docs = labeled(*CLEAN, *[(f"t{i}", "") for i in range(30)])
    found = finding(validate(docs), "missing_label")
    assert found.count == 30
    assert len(found.rows) == 10
    assert len(found.examples) == 5
