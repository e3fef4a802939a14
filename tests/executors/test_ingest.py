"""The Ingest executor at the cheap levels: its config loads, and its endpoint methods run on
DocLists over a local store in tmp_path, each request with a real token of that store (the
``token`` fixture of tests/executors/conftest.py). A Flow serving the whole chain over gRPC and
HTTP is the subject of tests/e2e.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from docarray import DocList
from jina import Executor

from executors.common.errors import InvalidRequest
from executors.ingest.executor import Ingest
from searchtuner.data.stored import TooManyUploads, UploadNotFound, open_dataset
from searchtuner.errors import ConfigError
from searchtuner.service.owners import Unauthenticated
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

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "executors" / "ingest" / "config.yml"
OWNER = "local"  # the owner of the conftest's `token`
DIM = 8
HOW_TO_SEND = r"needs a token: send it as `Authorization: Bearer <token>`"


def _vectors(n: int, *, labels: int = 2, start: int = 0) -> DocList[IngestDoc]:
    rng = np.random.default_rng(start)
    return DocList[IngestDoc](
        [
            IngestDoc(tensor=rng.normal(size=DIM).astype(np.float32), label=f"c{i % labels}")
            for i in range(start, start + n)
        ]
    )


def _begin(
    executor: Ingest, token: str, parameters: dict[str, Any] | None = None, **fields: str
) -> str:
    answer = executor.begin(
        DocList[UploadRequest]([UploadRequest(**fields)]), {"token": token, **(parameters or {})}
    )
    assert isinstance(answer[0], UploadStatus) and answer[0].received == 0
    return answer[0].upload_id


def _append(executor: Ingest, token: str, upload_id: str, docs: DocList[IngestDoc]) -> int:
    answer = executor.append(docs, {"token": token, "upload_id": upload_id})
    assert answer[0].upload_id == upload_id
    return answer[0].received


def _commit(executor: Ingest, token: str, upload_id: str) -> DatasetDoc:
    answer = executor.commit(
        DocList[UploadRequest]([UploadRequest(upload_id=upload_id)]), {"token": token}
    )
    assert len(answer) == 1
    return answer[0]


def _shards(store: LocalStore, owner: str = OWNER) -> list[str]:
    return list(store.for_owner(owner).keys("datasets/shards/"))


# jina imports every executor.py as the module "executor"; the ones after the first in a
# process come in as "user_module.executor", with a warning that says so.
@pytest.mark.filterwarnings(r"ignore:(?s).*shadows one of built-in Python module name")
def test_the_config_loads_with_the_store_uri(store: LocalStore) -> None:
    # Loaded once per process: jina imports py_modules by file path, and a second import of
    # executor.py warns that the name is taken.
    executor = Executor.load_config(str(CONFIG), uses_with={"store_uri": store.uri()})
    try:
        assert type(executor).__name__ == "Ingest"
        assert executor.store.uri() == store.uri()  # type: ignore[attr-defined]
        endpoints = {"/datasets/begin", "/datasets/append", "/datasets/commit", "/datasets/list"}
        endpoints.add("/datasets/append_packed")
        assert endpoints | {"/default"} <= set(executor.requests)
        assert executor.requests["/default"].fn.__name__ == "passthrough"
    finally:
        executor.close()


def test_an_upload_in_batches_is_stored_and_answered_with_its_handle(
    ingest: Ingest, store: LocalStore, token: str
) -> None:
    upload_id = _begin(ingest, token, kind="labeled", name="vectors")

    assert _append(ingest, token, upload_id, _vectors(6)) == 6
    assert _append(ingest, token, upload_id, _vectors(4, start=6)) == 4
    dataset = _commit(ingest, token, upload_id)

    assert dataset.handle.startswith("std1:")
    assert (dataset.name, dataset.kind, dataset.n_items, dataset.ok) == (
        "vectors",
        "labeled",
        10,
        True,
    )
    assert dataset.report["n_items"] == 10 and dataset.report["items_per_label"] == {
        "c0": 5,
        "c1": 5,
    }
    assert "Result: OK" in dataset.report_text
    assert len(_shards(store)) == 2  # one shard per append, in the owner's namespace
    stored = open_dataset(store.for_owner(OWNER), dataset.handle)
    vectors = np.stack([doc.tensor for doc in stored.iter_docs()])
    np.testing.assert_array_equal(vectors[:6], np.stack([d.tensor for d in _vectors(6)]))
    with pytest.raises(UploadNotFound, match="no open upload"):  # committed: the id is spent
        _append(ingest, token, upload_id, _vectors(2))


def test_kind_and_name_may_come_in_the_parameters_and_the_kind_is_inferred_otherwise(
    ingest: Ingest, token: str
) -> None:
    named = _begin(ingest, token, {"kind": "labeled", "name": "from parameters"})
    inferred = _begin(ingest, token)
    _append(ingest, token, named, _vectors(4))
    _append(ingest, token, inferred, _vectors(4, start=10))

    first, second = _commit(ingest, token, named), _commit(ingest, token, inferred)

    assert (first.kind, first.name) == ("labeled", "from parameters")
    assert (second.kind, second.name) == ("labeled", "")
    with pytest.raises(ConfigError, match="kind"):
        _begin(ingest, token, kind="sentences")


def test_the_same_data_twice_gives_the_same_handle(
    ingest: Ingest, store: LocalStore, token: str
) -> None:
    handles = []
    for _ in range(2):
        upload_id = _begin(ingest, token, kind="labeled")
        _append(ingest, token, upload_id, _vectors(6))
        handles.append(_commit(ingest, token, upload_id).handle)

    assert handles[0] == handles[1]
    assert len(_shards(store)) == 1


def test_a_report_with_findings_comes_back_with_the_handle(ingest: Ingest, token: str) -> None:
    upload_id = _begin(ingest, token, kind="labeled", name="flawed")
    flawed = DocList[IngestDoc](
        [
            *_vectors(4),
            IngestDoc(label="c0"),  # no content
            IngestDoc(tensor=np.ones(DIM, dtype=np.float32)),  # no label
            IngestDoc(tensor=np.ones(DIM, dtype=np.float32), label="lonely"),
        ]
    )
    _append(ingest, token, upload_id, flawed)

    dataset = _commit(ingest, token, upload_id)

    assert dataset.ok is False and dataset.report["ok"] is False
    findings = {f["code"]: f for f in dataset.report["findings"]}
    assert findings["empty_field"]["severity"] == "error"
    assert findings["empty_field"]["rows"] == [5]  # items numbered from 1 across batches
    assert findings["missing_label"]["rows"] == [6]
    assert findings["label_too_few_items"]["severity"] == "warning"
    assert "NOT OK" in dataset.report_text and "missing_label" in dataset.report_text
    assert dataset.handle.startswith("std1:")  # stored anyway: runs refuse it, users read why


def test_a_document_with_a_uri_is_refused_and_the_upload_stays_as_it_was(
    ingest: Ingest, store: LocalStore, token: str
) -> None:
    upload_id = _begin(ingest, token, kind="labeled")
    _append(ingest, token, upload_id, _vectors(4))
    batch = _vectors(2, start=4)
    batch.append(IngestDoc(uri="/etc/passwd", label="c0"))

    with pytest.raises(InvalidRequest, match="document 2 of the batch has a 'uri'") as caught:
        _append(ingest, token, upload_id, batch)

    assert "'/etc/passwd'" in str(caught.value)
    assert "never reads files by path; send the file's bytes in 'image'" in str(caught.value)
    assert len(_shards(store)) == 1  # nothing of the refused batch was written
    assert _commit(ingest, token, upload_id).n_items == 4


@pytest.mark.parametrize("parameters", [{}, {"upload_id": ""}, {"upload_id": 7}])
def test_an_append_without_an_upload_id_is_refused(
    ingest: Ingest, token: str, parameters: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest, match=r"/datasets/append needs parameters=\{'upload_id'"):
        ingest.append(_vectors(2), {"token": token, **parameters})


def test_unknown_upload_ids_are_refused_with_what_to_do(ingest: Ingest, token: str) -> None:
    with pytest.raises(UploadNotFound, match=r"no open upload 'nope'.*begin a new upload"):
        ingest.append(_vectors(2), {"token": token, "upload_id": "nope"})
    with pytest.raises(UploadNotFound, match="no open upload 'nope'"):
        _commit(ingest, token, "nope")
    with pytest.raises(InvalidRequest, match="/datasets/commit needs"):
        ingest.commit(DocList[UploadRequest]([UploadRequest()]), {"token": token})


def test_the_commit_takes_the_upload_id_from_the_parameters_too(ingest: Ingest, token: str) -> None:
    upload_id = _begin(ingest, token, kind="labeled")
    _append(ingest, token, upload_id, _vectors(4))

    answer = ingest.commit(DocList[UploadRequest](), {"token": token, "upload_id": upload_id})

    assert answer[0].n_items == 4


def test_every_endpoint_refuses_a_request_without_a_valid_token(
    ingest: Ingest, store: LocalStore, token: str
) -> None:
    upload_id = _begin(ingest, token, kind="labeled")
    packed = DocList[PackedBatch]([pack(b"text,label\na cat,animal\n", "csv", 1)])
    calls = {
        "begin": lambda p: ingest.begin(DocList[UploadRequest]([UploadRequest()]), p),
        "append": lambda p: ingest.append(_vectors(2), {**p, "upload_id": upload_id}),
        "append_packed": lambda p: ingest.append_packed(packed, {**p, "upload_id": upload_id}),
        "commit": lambda p: ingest.commit(DocList[UploadRequest](), {**p, "upload_id": upload_id}),
        "list": lambda p: ingest.list(DocList[Empty](), p),
    }
    forged = token[:-43] + "x" * 43  # the right id, another secret
    for endpoint, call in calls.items():
        for parameters in ({}, {"token": ""}, {"token": None}):
            with pytest.raises(Unauthenticated, match=HOW_TO_SEND) as caught:
                call(parameters)
            assert "searchtuner token create --owner NAME" in str(caught.value), endpoint
        with pytest.raises(Unauthenticated, match="the token is not valid"):
            call({"token": forged})
        with pytest.raises(Unauthenticated, match="the token is not valid"):
            call({"token": "not-a-token"})

    assert _shards(store) == []  # nothing was written for the refused requests
    assert _append(ingest, token, upload_id, _vectors(2)) == 2  # and the upload stayed open


def test_an_upload_belongs_to_the_owner_whose_token_began_it(
    ingest: Ingest, store: LocalStore, issue_token: Callable[..., str]
) -> None:
    alice, bob = issue_token(store, "alice"), issue_token(store, "bob")
    upload_id = _begin(ingest, alice, {"owner": "bob"}, kind="labeled")  # the client cannot pick
    _append(ingest, alice, upload_id, _vectors(4))

    # Another owner's upload answers as one that does not exist, with the same message.
    with pytest.raises(UploadNotFound) as theirs:
        _append(ingest, bob, upload_id, _vectors(2))
    with pytest.raises(UploadNotFound) as missing:
        _append(ingest, bob, "nope", _vectors(2))
    assert str(theirs.value) == str(missing.value).replace("'nope'", repr(upload_id))
    with pytest.raises(UploadNotFound):
        _commit(ingest, bob, upload_id)

    handle = _commit(ingest, alice, upload_id).handle
    assert open_dataset(store.for_owner("alice"), handle).info.n_items == 4
    assert _shards(store, "bob") == []


def test_the_list_shows_the_owners_datasets_newest_first(
    ingest: Ingest, store: LocalStore, token: str, issue_token: Callable[..., str]
) -> None:
    assert len(ingest.list(DocList[Empty](), {"token": token})) == 0
    handles = []
    for i, name in enumerate(["older", "newer"]):
        upload_id = _begin(ingest, token, kind="labeled", name=name)
        _append(ingest, token, upload_id, _vectors(4, start=10 * i))
        handles.append(_commit(ingest, token, upload_id).handle)
        time.sleep(0.01)  # creation times have millisecond resolution

    listed = ingest.list(DocList[Empty](), {"token": token})

    assert [(d.name, d.handle) for d in listed] == [("newer", handles[1]), ("older", handles[0])]
    assert all(d.ok and d.n_items == 4 and d.created_at for d in listed)
    bob = issue_token(store, "bob")
    assert len(ingest.list(DocList[Empty](), {"token": bob, "owner": OWNER})) == 0


def test_idle_uploads_expire_when_the_next_one_begins(store: LocalStore, token: str) -> None:
    executor = Ingest(store_uri=store.uri(), upload_idle_timeout=0.05)
    try:
        idle = _begin(executor, token, kind="labeled")
        _append(executor, token, idle, _vectors(4))
        time.sleep(0.1)

        _begin(executor, token, kind="labeled")

        with pytest.raises(UploadNotFound, match=r"idle for more than 0\.05 s"):
            _append(executor, token, idle, _vectors(2))
        assert _shards(store) == []  # the expired upload's shard was removed
    finally:
        executor.close()


def test_the_number_of_open_uploads_is_bounded(store: LocalStore, token: str) -> None:
    executor = Ingest(store_uri=store.uri(), max_open_uploads=1)
    try:
        first = _begin(executor, token, kind="labeled")
        with pytest.raises(TooManyUploads, match="1 open uploads, the most allowed"):
            _begin(executor, token, kind="labeled")
        _append(executor, token, first, _vectors(4))
        _commit(executor, token, first)
        _begin(executor, token, kind="labeled")  # a committed upload frees its place
    finally:
        executor.close()


def test_close_aborts_open_uploads_and_removes_their_shards(store: LocalStore, token: str) -> None:
    executor = Ingest(store_uri=store.uri())
    upload_id = _begin(executor, token, kind="labeled")
    _append(executor, token, upload_id, _vectors(4))
    assert len(_shards(store)) == 1

    executor.close()

    assert _shards(store) == []
    assert len(executor.uploads) == 0


def test_packed_batches_store_the_same_dataset_as_one_document_per_item(
    ingest: Ingest, token: str
) -> None:
    rows = [("a small cat", "animal"), ("a large dog", "animal"), ("run fast", "motion")] * 2
    rows += [("a lone word", "rare")]  # one item for a label: a finding of the report
    csv_rows = "text,label\n" + "".join(f"{text},{label}\n" for text, label in rows)
    packed = _begin(ingest, token, kind="labeled")
    answer = ingest.append_packed(
        DocList[PackedBatch]([pack(csv_rows.encode(), "csv", len(rows))]),
        {"token": token, "upload_id": packed},
    )
    assert answer[0].received == len(rows)
    by_rows = _commit(ingest, token, packed)

    one_by_one = _begin(ingest, token, kind="labeled")
    docs = DocList[IngestDoc]([IngestDoc(text=text, label=label) for text, label in rows])
    _append(ingest, token, one_by_one, docs)
    by_docs = _commit(ingest, token, one_by_one)

    assert by_rows.handle == by_docs.handle and by_rows.report == by_docs.report
    assert by_rows.report["findings"] and "rare" in by_rows.report_text


def test_a_packed_row_naming_a_file_is_refused(
    ingest: Ingest, store: LocalStore, token: str
) -> None:
    upload_id = _begin(ingest, token, kind="labeled")
    rows = DocList[PackedBatch]([pack(b"uri,label\n/etc/passwd,x\n", "csv", 1)])
    with pytest.raises(InvalidRequest, match="never reads files by path"):
        ingest.append_packed(rows, {"token": token, "upload_id": upload_id})
    assert _shards(store) == []
