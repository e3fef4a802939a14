"""Readers: CSV, JSONL and in-memory sources become Records; every bad row is reported."""

from __future__ import annotations

import base64
import inspect
import io
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from docarray import DocList
from docarray.documents import ImageDoc, TextDoc
from PIL import Image
from pydantic import Field

from searchtuner.data import (
    DataKind,
    LabeledDoc,
    PairDoc,
    Record,
    RowError,
    TextImageDoc,
    UnlabeledDoc,
    iter_records,
    load_docs,
    read_csv,
    read_jsonl,
)
from searchtuner.errors import ConfigError, DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    return write(path, "\n".join(lines) + "\n")


def png_bytes(color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buffer, format="PNG")
    return buffer.getvalue()


def errors_of(records: list[Record]) -> list[tuple[int, str | None, str]]:
    return [(e.row, e.field, e.code) for r in records for e in r.errors]


# --- CSV -------------------------------------------------------------------------------


def test_csv_header_gives_kind_and_rows_count_file_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "text,label\nhello,a\nworld,b\n")
    records = list(read_csv(path))
    assert [r.row for r in records] == [2, 3]
    assert all(isinstance(r.doc, LabeledDoc) for r in records)
    assert [(r.doc.text, r.doc.label) for r in records] == [("hello", "a"), ("world", "b")]


def test_csv_header_is_case_and_space_insensitive_and_in_any_order(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", " Label , TEXT\ncat,a meow\n")
    (record,) = read_csv(path)
    assert (record.doc.text, record.doc.label) == ("a meow", "cat")


def test_csv_pairs_header(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.csv", "query,document\nwhat is a cat,a small feline\n")
    (record,) = read_csv(path)
    assert isinstance(record.doc, PairDoc)
    assert record.doc.document == "a small feline"


def test_csv_text_image_header_resolves_paths_against_the_csv_folder(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    path = write(tmp_path / "ti.csv", "text,image\na red square,imgs/red.png\n")
    (record,) = read_csv(path)
    assert isinstance(record.doc, TextImageDoc)
    assert record.doc.uri == str(tmp_path / "imgs" / "red.png")


def test_csv_image_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    images = tmp_path / "elsewhere"
    path = write(tmp_path / "train.csv", "image,label\nred.png,x\n/abs/blue.png,y\n")
    records = list(read_csv(path, base_dir=images))
    assert [r.doc.uri for r in records] == [str(images / "red.png"), "/abs/blue.png"]


def test_headerless_csv_needs_a_kind(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "hello,a\nworld,b\n")
    with pytest.raises(DataError, match=r"row 1 is not a header.*kind="):
        list(read_csv(path))


def test_headerless_csv_with_kind_uses_positional_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "hello,a\nworld,b\n")
    records = list(read_csv(path, kind="labeled"))
    assert [r.row for r in records] == [1, 2]
    assert [(r.doc.text, r.doc.label) for r in records] == [("hello", "a"), ("world", "b")]
    (pair,) = read_csv(write(tmp_path / "p.csv", "q,d\n"), kind=DataKind.PAIRS)
    assert isinstance(pair.doc, PairDoc)
    assert (pair.doc.query, pair.doc.document) == ("q", "d")


def test_headerless_csv_with_named_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "red.png,x\n")
    (record,) = read_csv(path, kind="labeled", columns=("image", "label"))
    assert record.doc.uri == str(tmp_path / "red.png")
    with pytest.raises(ConfigError, match="did you mean 'image'"):
        read_csv(path, kind="labeled", columns=("imag", "label"))
    with_header = write(tmp_path / "h.csv", "image,label\nred.png,x\n")
    with pytest.raises(DataError, match="row 1 is a header"):
        list(read_csv(with_header, kind="labeled", columns=("image", "label")))


def test_csv_header_that_does_not_fit_the_kind(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "text,label\nhello,a\n")
    with pytest.raises(DataError, match="column 'label' is not used by kind 'pairs'"):
        list(read_csv(path, kind="pairs"))
    no_label = write(tmp_path / "nolabel.csv", "text\nhello\n")
    with pytest.raises(DataError, match=r"kind 'labeled' needs the column.*label"):
        list(read_csv(no_label, kind="labeled"))


def test_csv_unknown_kind_lists_allowed_kinds(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "text,label\n")
    with pytest.raises(ConfigError, match="allowed: labeled, pairs, text_image, unlabeled"):
        read_csv(path, kind="triplets")


def test_missing_file_fails_at_call_time(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="not found"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_csv_malformed_rows_are_reported_with_row_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "train.csv",
        "text,label\n"
        "fine,a\n"  # 2
        "too,many,cells\n"  # 3
        ",b\n"  # 4: empty text
        "no label,\n"  # 5: empty label
        "only one cell\n"  # 6
        "fine too,b\n",  # 7
    )
    records = list(read_csv(path))
    assert [r.row for r in records] == [2, 3, 4, 5, 6, 7]
    assert [r.doc is not None for r in records] == [True, False, False, False, False, True]
    assert errors_of(records) == [
        (3, None, "malformed_row"),
        (4, "text", "empty_field"),
        (5, "label", "missing_label"),
        (6, None, "malformed_row"),
    ]
    assert "expected 2 cells (text, label), found 3" in records[1].errors[0].message


def test_row_error_reads_as_a_sentence_naming_file_row_and_field(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "text,label\na,x\nb,y\nc,z\nd,x\ne,y\nno label,\n")
    *_, last = read_csv(path)
    assert str(last.errors[0]) == (
        f"{path} row 7, field 'label': no label; give every item a label, or use kind='unlabeled'"
    )


def test_csv_bad_tensor_cell_names_the_field(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", 'tensor,label\n"0.5 1.5",a\n"[1, 2]",b\nabc,c\n')
    ok1, ok2, bad = read_csv(path)
    np.testing.assert_allclose(ok1.doc.tensor, [0.5, 1.5])
    np.testing.assert_allclose(ok2.doc.tensor, [1, 2])
    assert errors_of([bad]) == [(4, "tensor", "malformed_row")]


def test_csv_quoted_newlines_keep_row_numbers_on_the_starting_line(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", 'text,label\n"two\nlines",a\nafter,\n')
    first, second = read_csv(path)
    assert first.doc.text == "two\nlines"
    assert (first.row, second.row) == (2, 4)
    assert errors_of([second]) == [(4, "label", "missing_label")]


def test_csv_cell_that_is_not_utf8_is_reported_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(b"text,label\ncaf\xe9,a\nok,b\n")
    bad, good = read_csv(path)
    assert errors_of([bad]) == [(2, "text", "malformed_row")]
    assert "UTF-8" in bad.errors[0].message
    assert good.doc is not None


def test_csv_image_column_errors_use_the_column_name(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "image,label\n,x\n")
    (record,) = read_csv(path)
    assert errors_of([record]) == [(2, "image", "empty_field")]


def test_csv_row_with_two_kinds_of_content(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "text,image,label\nhello,red.png,x\nhi,,y\n")
    both, text_only = read_csv(path)
    assert errors_of([both]) == [(2, "text/image", "multiple_content")]
    assert text_only.doc is not None


def test_tsv_is_read_with_tabs(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", "text\tlabel\na, b\tx\n")
    (record,) = iter_records(path)
    assert record.doc.text == "a, b"


def test_csv_reader_is_lazy_generator(tmp_path: Path) -> None:
    path = write(tmp_path / "train.csv", "text,label\nold,a\n")
    records = read_csv(path)
    assert inspect.isgenerator(records)
    write(path, "text,label\nnew,b\n")  # the file is opened only when iteration starts
    assert next(records).doc.text == "new"


def test_csv_streaming_memory_does_not_grow_with_rows(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    n_rows, text = 10_000, "x" * 1000
    with path.open("w", encoding="utf-8") as handle:
        handle.write("text,label\n")
        for i in range(n_rows):
            handle.write(f"{text}{i},label{i % 50}\n")
    file_size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for record in read_csv(path) if record.doc is not None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n_rows
    # The file is ~10 MB; one row at a time needs a small, constant amount.
    assert peak < file_size / 20, (peak, file_size)


# --- JSONL ------------------------------------------------------------------------------


def test_jsonl_rows_are_line_numbers_and_bad_lines_are_reported(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"text": "a", "label": 1},  # 1: int label
            "{not json",  # 2
            "",  # 3: blank, skipped
            [1, 2],  # 4: not an object
            {"text": "b", "lable": "x"},  # 5: typo
            {"text": "c", "tags": {"finetuner_label": "y"}},  # 6
        ],
    )
    records = list(read_jsonl(path))
    assert [r.row for r in records] == [1, 2, 4, 5, 6]
    assert records[0].doc.label == "1"
    assert records[4].doc.label == "y"
    assert errors_of(records) == [
        (2, None, "malformed_row"),
        (4, None, "malformed_row"),
        (5, "lable", "malformed_row"),
        (5, "label", "missing_label"),
    ]
    assert "invalid JSON" in records[1].errors[0].message
    assert "did you mean 'label'" in records[3].errors[0].message


def test_jsonl_image_base64_tensor_and_uri(tmp_path: Path) -> None:
    png = png_bytes()
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [
            {"image": base64.b64encode(png).decode(), "label": "a"},
            {"image": "data:image/png;base64," + base64.b64encode(png).decode(), "label": "a"},
            {"uri": "imgs/x.png", "label": "b"},
            {"tensor": [[1, 2], [3, 4]], "label": "c"},
            {"image": "not base64!", "label": "d"},
            {"tensor": [[1, 2], [3]], "label": "e"},
            {"tensor": ["a", "b"], "label": "f"},
        ],
    )
    records = list(read_jsonl(path))
    assert records[0].doc.image == png
    assert records[1].doc.image == png
    assert records[2].doc.uri == str(tmp_path / "imgs" / "x.png")
    assert records[3].doc.tensor.shape == (2, 2)
    assert errors_of(records[4:]) == [
        (5, "image", "malformed_row"),
        (6, "tensor", "malformed_row"),
        (7, "tensor", "malformed_row"),
    ]


def test_jsonl_wrong_type_is_reported_per_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"query": 3, "document": "d"}, {"query": "q"}])
    wrong_type, missing = read_jsonl(path)
    assert errors_of([wrong_type, missing]) == [
        (1, "query", "malformed_row"),
        (2, "document", "empty_field"),
    ]


def test_jsonl_kind_is_fixed_by_the_first_line_and_the_error_says_so(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}, {"text": "b", "label": "x"}])
    first, second = read_jsonl(path)
    assert isinstance(first.doc, UnlabeledDoc)
    (error,) = second.errors
    assert error.field == "label"
    assert "inferred from row 1" in error.message
    assert "kind=" in error.message
    # With the kind given, the first line is the one at fault.
    first, second = read_jsonl(path, kind="labeled")
    assert errors_of([first]) == [(1, "label", "missing_label")]
    assert second.doc is not None


def test_jsonl_line_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "caf\xe9", "label": "a"}\n{"text": "ok", "label": "a"}\n')
    bad, good = read_jsonl(path)
    assert errors_of([bad]) == [(1, None, "malformed_row")]
    assert good.doc is not None


# --- in-memory sources and dispatch --------------------------------------------------------


def test_doclist_rows_are_zero_based_and_docs_pass_through() -> None:
    docs = DocList[LabeledDoc]([LabeledDoc(text="a", label="x"), LabeledDoc(text="", label="y")])
    good, bad = iter_records(docs)
    assert good.row == 0
    assert good.doc is docs[0]
    assert errors_of([bad]) == [(1, "text", "empty_field")]
    assert str(bad.errors[0]).startswith("<DocList> item 1, field 'text'")


def test_list_of_dicts_and_finetuner_style_docs() -> None:
    class FinetunerDoc(TextDoc):
        tags: dict[str, Any] = Field(default_factory=dict)

    items = [
        {"text": "a", "label": "x"},
        FinetunerDoc(text="b", tags={"finetuner_label": 2}),
    ]
    first, second = iter_records(items)
    assert isinstance(second.doc, LabeledDoc)
    assert second.doc.label == "2"
    assert second.doc.id == items[1].id
    assert first.doc.label == "x"


def test_docarray_image_doc_maps_url_to_uri() -> None:
    (record,) = iter_records([ImageDoc(url="/data/cat.png")], kind="unlabeled")
    assert isinstance(record.doc, UnlabeledDoc)
    assert record.doc.uri == "/data/cat.png"


def test_items_of_another_schema_or_type_are_reported() -> None:
    items: list[Any] = [LabeledDoc(text="a", label="x"), PairDoc(query="q", document="d"), 42]
    records = list(iter_records(items))
    assert errors_of(records) == [(1, None, "malformed_row"), (2, None, "malformed_row")]
    assert "PairDoc" in records[1].errors[0].message
    assert "int" in records[2].errors[0].message


def test_iter_records_rejects_unknown_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unsupported file type '\.parquet'.*\.csv.*\.jsonl"):
        iter_records(tmp_path / "train.parquet")
    with pytest.raises(ConfigError, match="cannot read training data from a dict"):
        iter_records({"text": "a"})
    with pytest.raises(ConfigError, match="cannot read training data from a int"):
        iter_records(5)


def test_iter_records_dispatches_on_suffix(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "a.csv", "text,label\nx,1\n")
    jsonl_path = write_jsonl(tmp_path / "a.json-lines", [{"text": "x", "label": 1}])
    for source in (csv_path, str(jsonl_path)):
        (record,) = iter_records(source)
        assert record.doc.label == "1"


# --- load_docs ---------------------------------------------------------------------------


def test_load_docs_returns_a_doclist_of_the_schema(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.csv", "query,document\nq1,d1\nq2,d2\n")
    docs = load_docs(path)
    assert isinstance(docs, DocList)
    assert docs.doc_type is PairDoc
    assert docs.query == ["q1", "q2"]


def test_load_docs_refuses_malformed_rows_listing_them(tmp_path: Path) -> None:
    rows = "".join(f"item{i},\n" if i % 2 else f"item{i},x\n" for i in range(60))
    path = write(tmp_path / "train.csv", "text,label\n" + rows)
    with pytest.raises(DataError) as info:
        load_docs(path, max_errors=3)
    message = str(info.value)
    assert "30 of 60 rows" in message
    assert f"{path} row 3, field 'label'" in message
    assert "... and 27 more" in message
    assert message.count("no label") == 3


def test_load_docs_refuses_empty_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no items"):
        load_docs(write(tmp_path / "e.csv", "text,label\n"))


def test_row_error_without_field() -> None:
    error = RowError(row=3, field=None, message="bad", source=os.path.join("d", "x.jsonl"))
    assert str(error) == f"{os.path.join('d', 'x.jsonl')} row 3: bad"
