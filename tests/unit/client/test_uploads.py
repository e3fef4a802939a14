"""What an upload sends: JSON lines generated from documents, files streamed as they are."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from docarray import DocList

from searchtuner.client.uploads import (
    CSV_TYPE,
    JSONL_TYPE,
    file_chunks,
    file_content_type,
    ingest_fields,
    item_count,
    json_line,
    json_lines,
)
from searchtuner.data.readers import read_jsonl
from searchtuner.data.schemas import LabeledDoc, PairDoc, TextImageDoc, UnlabeledDoc
from searchtuner.errors import DataError
from searchtuner.service.schemas import IngestDoc

PNG = b"\x89PNG\r\n\x1a\n fake image bytes \x00\xff"


def test_labelled_docs_become_json_lines() -> None:
    docs = DocList[LabeledDoc](
        [
            LabeledDoc(text="a cat", label="animal"),
            LabeledDoc(text="ünïcode", label="7", tags={"source": "wiki"}),
        ]
    )
    lines = list(json_lines(docs))
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    assert [json.loads(line) for line in lines] == [
        {"text": "a cat", "label": "animal"},
        {"text": "ünïcode", "label": "7", "tags": {"source": "wiki"}},
    ]


def test_images_and_tensors_become_json_values() -> None:
    image = json.loads(json_line(ingest_fields(TextImageDoc(text="red", image=PNG))))
    assert base64.b64decode(image["image"]) == PNG
    tensor = UnlabeledDoc(tensor=np.arange(6, dtype=np.float32).reshape(2, 3))
    assert json.loads(json_line(ingest_fields(tensor))) == {
        "tensor": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    }


def test_a_local_image_path_is_sent_as_its_bytes(tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(PNG)
    fields = ingest_fields(LabeledDoc(uri=str(tmp_path / "cat.png"), label="cat"))
    assert fields == {"image": PNG, "label": "cat"}  # the service never reads paths
    IngestDoc(**fields)  # what /datasets/append takes
    with pytest.raises(DataError, match=r"cannot read the image file .*missing\.png"):
        ingest_fields(LabeledDoc(uri=str(tmp_path / "missing.png"), label="cat"))


def test_json_lines_read_back_as_the_same_documents(tmp_path: Path) -> None:
    """Oracle: the service's own JSON-lines reader gives back what was sent."""
    docs = [
        LabeledDoc(text="first", label="a"),
        LabeledDoc(image=PNG, label="b"),
        LabeledDoc(tensor=np.array([0.5, -1.0]), label="c", tags={"k": [1, 2]}),
    ]
    path = tmp_path / "sent.jsonl"
    path.write_bytes(b"".join(json_lines(docs)))
    records = list(read_jsonl(path, kind="labeled"))
    assert [r.errors for r in records] == [[], [], []]
    back = [r.doc for r in records]
    assert back[0].text == "first" and back[0].label == "a"
    assert back[1].image == PNG
    assert np.array_equal(back[2].tensor, [0.5, -1.0]) and back[2].tags == {"k": [1, 2]}


def test_pairs_keep_query_and_document() -> None:
    line = json_line(ingest_fields(PairDoc(query="how to cook rice", document="boil it")))
    assert json.loads(line) == {"query": "how to cook rice", "document": "boil it"}


def test_tags_that_are_not_json_are_refused() -> None:
    with pytest.raises(DataError, match="tags"):
        json_line({"text": "x", "tags": {"when": object()}})


def test_files_are_streamed_as_they_are_unless_they_name_images(tmp_path: Path) -> None:
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    assert file_content_type(write("a.csv", "text,label\nx,y\n"), None) == CSV_TYPE
    assert file_content_type(write("b.csv", "\ufeffQuery,Document\nq,d\n"), None) == CSV_TYPE
    assert file_content_type(write("c.csv", "image,label\ncat.png,cat\n"), None) is None
    assert file_content_type(write("d.csv", "a caption,cat.png\n"), "text_image") is None
    assert file_content_type(write("e.csv", "hello,greeting\n"), "labeled") == CSV_TYPE
    assert file_content_type(write("f.jsonl", '\n{"text": "x", "label": "y"}\n'), None) == (
        JSONL_TYPE
    )
    assert file_content_type(write("g.ndjson", '{"uri": "cat.png", "label": "c"}\n'), None) is None
    assert file_content_type(write("h.tsv", "text\tlabel\nx\ty\n"), None) is None
    assert file_content_type(tmp_path / "missing.csv", None) is None


def test_file_chunks_stream_and_count(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    data = b"text,label\n" + b"x,y\n" * 400_000  # 1.6 MB: two chunks
    path.write_bytes(data)
    seen: list[int] = []
    chunks = list(file_chunks(path, seen.append))
    assert b"".join(chunks) == data
    assert len(chunks) == 2 and seen == [len(c) for c in chunks]


def test_item_count_only_for_data_in_memory(tmp_path: Path) -> None:
    assert item_count([LabeledDoc(text="a", label="b")] * 3) == 3
    assert item_count(str(tmp_path / "x.csv")) is None
    assert item_count(tmp_path / "x.csv") is None
    assert item_count(iter([])) is None
