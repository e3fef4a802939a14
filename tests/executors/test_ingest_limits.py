"""The Ingest executor's size limits: documents, dataset rows and dataset bytes.

Each is a request error (``TooLarge``, HTTP 413) that names the limit, its variable and what
to do; nothing of a refused batch is stored, the upload stays open, and datasets committed
before are untouched. The executor's methods are called directly on a local store in
tmp_path, with a token of the same store (as in tests/executors/test_ingest.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
from docarray import DocList

from executors.common.errors import InvalidRequest
from executors.ingest.executor import Ingest
from searchtuner.data import LabeledDoc
from searchtuner.data.stored import DatasetWriter, UploadNotFound, open_dataset
from searchtuner.data.validation import StreamingValidator
from searchtuner.errors import ConfigError
from searchtuner.service.limits import Limits, TooLarge, human_bytes
from searchtuner.service.packing import pack
from searchtuner.service.schemas import (
    DatasetDoc,
    Empty,
    IngestDoc,
    PackedBatch,
    UploadRequest,
    UploadStatus,
)
from searchtuner.store import LocalStore
from tests.executors.conftest import OWNER

DIM = 8
MiB = 1 << 20
LIMIT_VARIABLES = (
    "SEARCHTUNER_MAX_DOCUMENT_BYTES",
    "SEARCHTUNER_MAX_DATASET_BYTES",
    "SEARCHTUNER_MAX_DATASET_ROWS",
)


@pytest.fixture(autouse=True)
def _default_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts from the default limits, whatever the environment running it says."""
    for name in LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _vectors(n: int, *, labels: int = 2, start: int = 0) -> DocList[IngestDoc]:
    rng = np.random.default_rng(start)
    return DocList[IngestDoc](
        [
            IngestDoc(tensor=rng.normal(size=DIM).astype(np.float32), label=f"c{i % labels}")
            for i in range(start, start + n)
        ]
    )


def _begin(executor: Ingest, token: str, **fields: str) -> str:
    answer = executor.begin(DocList[UploadRequest]([UploadRequest(**fields)]), {"token": token})
    assert isinstance(answer[0], UploadStatus)
    return answer[0].upload_id


def _append(executor: Ingest, token: str, upload_id: str, docs: DocList[IngestDoc]) -> int:
    answer = executor.append(docs, {"token": token, "upload_id": upload_id})
    return answer[0].received


def _commit(executor: Ingest, token: str, upload_id: str) -> DatasetDoc:
    request = DocList[UploadRequest]([UploadRequest(upload_id=upload_id)])
    return executor.commit(request, {"token": token})[0]


def _shards(store: LocalStore) -> list[str]:
    return sorted(store.for_owner(OWNER).keys("datasets/shards/"))


def _committed(executor: Ingest, token: str, docs: DocList[IngestDoc], name: str) -> DatasetDoc:
    upload_id = _begin(executor, token, kind="labeled", name=name)
    _append(executor, token, upload_id, docs)
    return _commit(executor, token, upload_id)


def _tensors(store: LocalStore, handle: str) -> np.ndarray:
    dataset = open_dataset(store.for_owner(OWNER), handle)
    return np.stack([doc.tensor for doc in dataset.iter_docs()])


def _no_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a batch reaches validation (which hashes and copies every text)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the oversized batch was validated instead of refused")

    monkeypatch.setattr(StreamingValidator, "check", refuse)


def test_a_10_mb_text_is_refused_at_once_naming_the_document_and_the_limit(
    ingest: Ingest, store: LocalStore, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_id = _begin(ingest, token, kind="labeled")
    _append(ingest, token, upload_id, _vectors(4))
    huge = IngestDoc(text="x" * (10 * 1000 * 1000), label="c0")
    batch = DocList[IngestDoc](
        [IngestDoc(text="fine", label="c0"), IngestDoc(text="ok", label="c1")]
    )
    batch.append(huge)
    _no_validation(monkeypatch)

    started = time.perf_counter()
    with pytest.raises(TooLarge) as caught:
        _append(ingest, token, upload_id, batch)
    elapsed = time.perf_counter() - started

    message = str(caught.value)
    assert f"document 2 of the request (id {huge.id!r}) is too large" in message
    assert "its text is 9.5 MiB (10,000,000 bytes), more than the 1 MiB" in message
    assert "SEARCHTUNER_MAX_DOCUMENT_BYTES" in message
    assert "Shorten the text, or split it into several documents" in message
    assert "the upload is still open" in message
    assert elapsed < 0.5  # measured by its length: never encoded, hashed or validated
    assert len(_shards(store)) == 1  # nothing of the refused batch was stored


def test_after_a_refusal_the_upload_goes_on_as_if_the_batch_was_never_sent(
    ingest: Ingest, store: LocalStore, token: str
) -> None:
    upload_id = _begin(ingest, token, kind="labeled")
    _append(ingest, token, upload_id, _vectors(4))
    with pytest.raises(TooLarge):
        _append(
            ingest, token, upload_id, DocList[IngestDoc]([IngestDoc(text="é" * MiB, label="c0")])
        )

    unlabelled = IngestDoc(tensor=np.ones(DIM, dtype=np.float32))
    _append(ingest, token, upload_id, DocList[IngestDoc]([*_vectors(2, start=4), unlabelled]))
    dataset = _commit(ingest, token, upload_id)

    assert dataset.report["n_items"] == 7  # the refused batch is not counted
    findings = {f["code"]: f for f in dataset.report["findings"]}
    assert findings["missing_label"]["rows"] == [7]  # rows numbered without a gap
    assert len(_shards(store)) == 2


def test_a_long_non_ascii_text_is_refused_by_its_length_without_encoding_it(
    ingest: Ingest, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_id = _begin(ingest, token, kind="labeled")
    text = "é" * (5 * 1000 * 1000)  # 5 M characters: over 1 MiB whatever their encoding
    _no_validation(monkeypatch)

    with pytest.raises(TooLarge, match="document 0 of the request") as caught:
        _append(ingest, token, upload_id, DocList[IngestDoc]([IngestDoc(text=text, label="a")]))

    assert "its text is at least 4.8 MiB (5,000,000 characters)" in str(caught.value)


def test_a_text_just_over_the_limit_in_utf8_bytes_is_refused(
    ingest: Ingest, token: str, store: LocalStore
) -> None:
    upload_id = _begin(ingest, token, kind="labeled")
    fits = "é" * (MiB // 2)  # exactly 1 MiB in UTF-8
    over = fits + "é"

    with pytest.raises(TooLarge, match=r"its text is 1\.0 MiB \(1,048,578 bytes\)"):
        _append(ingest, token, upload_id, DocList[IngestDoc]([IngestDoc(text=over, label="a")]))
    docs = DocList[IngestDoc]([IngestDoc(text=fits, label="a"), IngestDoc(text="b", label="a")])
    assert _append(ingest, token, upload_id, docs) == 2


def test_a_big_tensor_and_a_big_image_are_refused_with_what_to_do(
    ingest: Ingest, store: LocalStore, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_id = _begin(ingest, token, kind="labeled")
    tensor = IngestDoc(tensor=np.zeros(200_000, dtype=np.float64), label="c0")  # 1.5 MiB
    image = IngestDoc(image=b"\x89PNG" + bytes(2 * MiB), label="c0")
    _no_validation(monkeypatch)

    with pytest.raises(TooLarge) as caught:
        _append(ingest, token, upload_id, DocList[IngestDoc]([tensor]))
    assert f"document 0 of the request (id {tensor.id!r})" in str(caught.value)
    assert "its tensor is 1.5 MiB (1,600,000 bytes)" in str(caught.value)
    assert "float32 instead of float64" in str(caught.value)

    with pytest.raises(TooLarge) as caught:
        _append(ingest, token, upload_id, DocList[IngestDoc]([*_vectors(3), image]))
    assert "document 3 of the request" in str(caught.value)
    assert "its image is 2.0 MiB (2,097,156 bytes)" in str(caught.value)
    assert "Resize or recompress the image" in str(caught.value)
    assert _shards(store) == []


def test_an_oversized_row_of_a_packed_batch_is_refused_before_anything_is_stored(
    ingest: Ingest, store: LocalStore, token: str
) -> None:
    upload_id = _begin(ingest, token, kind="labeled")
    rows = [{"text": "short", "label": "a"}, {"text": "y" * (2 * MiB), "label": "b"}]
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    fine = pack(b'{"text": "fine", "label": "a"}\n', "jsonl", 1)
    batches = DocList[PackedBatch]([fine, pack(data, "jsonl", len(rows))])

    with pytest.raises(TooLarge) as caught:
        ingest.append_packed(batches, {"token": token, "upload_id": upload_id})

    message = str(caught.value)
    assert "row 2 of the packed batch in document 1 of the request is too large" in message
    assert "its text is 2 MiB (2,097,152 bytes)" in message
    assert _shards(store) == []  # not even the first packed batch of the request
    answer = ingest.append_packed(
        DocList[PackedBatch]([fine]), {"token": token, "upload_id": upload_id}
    )
    assert answer[0].received == 1


def test_the_document_limit_comes_from_the_environment(
    store: LocalStore, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_MAX_DOCUMENT_BYTES", "100")
    executor = Ingest(store_uri=store.uri())
    try:
        upload_id = _begin(executor, token, kind="labeled")
        docs = DocList[IngestDoc]([IngestDoc(text="z" * 100, label="a")])
        assert _append(executor, token, upload_id, docs) == 1
        with pytest.raises(TooLarge, match="its text is 101 bytes, more than the 100 bytes"):
            _append(executor, token, upload_id, DocList[IngestDoc]([IngestDoc(text="z" * 101)]))
    finally:
        executor.close()


def test_the_append_that_crosses_the_row_limit_is_refused_and_the_upload_stays_open(
    store: LocalStore, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_MAX_DATASET_ROWS", "10")
    executor = Ingest(store_uri=store.uri())
    try:
        upload_id = _begin(executor, token, kind="labeled")
        assert _append(executor, token, upload_id, _vectors(6)) == 6

        with pytest.raises(TooLarge) as caught:
            _append(executor, token, upload_id, _vectors(6, start=6))

        message = str(caught.value)
        assert "this batch of 6 rows would bring the upload to 12 rows" in message
        assert "more than the 10 one dataset may hold (SEARCHTUNER_MAX_DATASET_ROWS)" in message
        assert "Split the dataset into parts of at most 10 rows" in message
        assert "still open with the 6 rows before it" in message
        assert len(_shards(store)) == 1
        assert _append(executor, token, upload_id, _vectors(4, start=6)) == 4  # exactly 10
        assert _commit(executor, token, upload_id).n_items == 10
    finally:
        executor.close()


def test_the_append_that_crosses_the_byte_limit_is_refused(
    ingest: Ingest, store: LocalStore, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _committed(ingest, token, _vectors(6), "measure")
    one_batch = open_dataset(store.for_owner(OWNER), first.handle).info.size
    limit = one_batch + one_batch // 2
    monkeypatch.setenv("SEARCHTUNER_MAX_DATASET_BYTES", str(limit))
    executor = Ingest(store_uri=store.uri())
    try:
        upload_id = _begin(executor, token, kind="labeled")
        _append(executor, token, upload_id, _vectors(6))

        with pytest.raises(TooLarge) as caught:
            _append(executor, token, upload_id, _vectors(6, start=6))

        message = str(caught.value)
        assert f"more than the {human_bytes(limit)} one dataset may hold" in message
        assert "(SEARCHTUNER_MAX_DATASET_BYTES)" in message
        assert "Split the dataset into parts under that size" in message
        dataset = _commit(executor, token, upload_id)
        assert dataset.n_items == 6 and dataset.handle == first.handle
    finally:
        executor.close()


def test_committed_datasets_are_intact_after_every_kind_of_refusal(
    ingest: Ingest, store: LocalStore, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _committed(ingest, token, _vectors(8), "kept")
    before = _tensors(store, kept.handle)
    shards = _shards(store)
    monkeypatch.setenv("SEARCHTUNER_MAX_DATASET_ROWS", "9")
    limited = Ingest(store_uri=store.uri())
    try:
        upload_id = _begin(limited, token, kind="labeled")
        same = _vectors(8)  # the kept dataset's batch: its shard is shared
        assert _append(limited, token, upload_id, same) == 8
        refusals = [
            DocList[IngestDoc]([IngestDoc(text="x" * (3 * MiB), label="c0")]),
            DocList[IngestDoc]([IngestDoc(tensor=np.zeros(MiB, dtype=np.float32), label="c0")]),
            _vectors(2, start=8),  # 10 rows > 9
        ]
        for batch in refusals:
            with pytest.raises(TooLarge):
                _append(limited, token, upload_id, batch)
    finally:
        limited.close()  # aborts the open upload: only shards no dataset uses may go

    assert _shards(store) == shards
    np.testing.assert_array_equal(_tensors(store, kept.handle), before)
    listed = ingest.list(DocList[Empty](), {"token": token})
    assert [(d.handle, d.n_items, d.ok) for d in listed] == [(kept.handle, 8, True)]


def test_a_limit_that_is_not_a_positive_number_stops_the_executor_from_starting(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEARCHTUNER_MAX_DATASET_ROWS", "lots")

    with pytest.raises(ConfigError, match="SEARCHTUNER_MAX_DATASET_ROWS='lots'"):
        Ingest(store_uri=store.uri())


def test_the_core_writer_enforces_the_limits_by_upload_row(store: LocalStore) -> None:
    limits = Limits(max_document_bytes=64, max_dataset_rows=3)
    writer = DatasetWriter(store.for_owner(OWNER), "labeled", limits=limits)
    writer.add([LabeledDoc(text="a", label="x"), LabeledDoc(text="b", label="y")])

    with pytest.raises(TooLarge, match=r"item 3 of the upload \(document 0 of this batch, id"):
        writer.add([LabeledDoc(text="c" * 65, label="x")])
    with pytest.raises(TooLarge, match="would bring the upload to 4 rows"):
        writer.add([{"text": "c", "label": "x"}, {"text": "d", "label": "y"}])

    assert writer.add([{"text": "c", "label": "x"}]) == 1
    assert writer.commit().n_items == 3


def test_an_upload_given_up_after_a_refusal_is_aborted_and_only_its_own_shards_go(
    ingest: Ingest, store: LocalStore, token: str
) -> None:
    kept = _committed(ingest, token, _vectors(4), "kept")
    shards = _shards(store)
    upload_id = _begin(ingest, token, kind="labeled")
    _append(ingest, token, upload_id, _vectors(4))  # the kept dataset's shard, shared
    _append(ingest, token, upload_id, _vectors(4, start=4))  # a shard of this upload only
    with pytest.raises(TooLarge):
        _append(ingest, token, upload_id, DocList[IngestDoc]([IngestDoc(text="x" * 2 * MiB)]))

    answer = ingest.abort(
        DocList[UploadRequest]([UploadRequest(upload_id=upload_id)]), {"token": token}
    )

    assert answer[0].upload_id == upload_id
    assert _shards(store) == shards
    assert open_dataset(store.for_owner(OWNER), kept.handle).info.n_items == 4
    with pytest.raises(UploadNotFound):
        _append(ingest, token, upload_id, _vectors(2))
    with pytest.raises(InvalidRequest, match="/datasets/abort needs"):
        ingest.abort(DocList[UploadRequest]([UploadRequest()]), {"token": token})
