"""Stored datasets: batched writes, the incremental report, handles, shards, uploads."""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
import threading
import tracemalloc
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from docarray import BaseDoc, DocList
from PIL import Image

from searchtuner.data import (
    DataReport,
    LabeledDoc,
    PairDoc,
    TextImageDoc,
    UnlabeledDoc,
    validate,
)
from searchtuner.data.stored import (
    DatasetInfo,
    DatasetNotFound,
    DatasetWriter,
    StoredDataset,
    TooManyUploads,
    UploadNotFound,
    UploadSession,
    delete_dataset,
    iter_batches,
    list_datasets,
    open_dataset,
    parse_handle,
)
from searchtuner.data.stored.shards import MAGIC, decode_shard, encode_shard
from searchtuner.data.validation import StreamingValidator
from searchtuner.errors import ConfigError, DataError
from searchtuner.store import IntegrityError, LocalStore, NotFound, OwnerStore, StoreError
from searchtuner.store.base import ObjectInfo

# ---- helpers -------------------------------------------------------------------------------


def png(color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (3, 3), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def root(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture
def store(root: LocalStore) -> OwnerStore:
    return root.for_owner("alice")


def batches(items: list[Any], sizes: Iterable[int]) -> Iterator[list[Any]]:
    """``items`` cut into consecutive batches of the given sizes (the rest in the last one)."""
    start = 0
    for size in sizes:
        if start >= len(items):
            return
        yield items[start : start + size]
        start += size
    if start < len(items):
        yield items[start:]


def write(store: OwnerStore, items: list[Any], sizes: Iterable[int] = (), **kw: Any) -> DatasetInfo:
    writer = DatasetWriter(store, **kw)
    for batch in batches(items, sizes or [len(items) or 1]):
        writer.add(batch)
    return writer.commit()


def as_upload(report: DataReport) -> dict[str, Any]:
    """validate()'s report on a list, numbered as an upload is: items from 1, '<upload>'."""
    shifted = json.dumps(report.to_dict())
    shifted = re.sub(r"\b(item|train) (\d+)", lambda m: f"{m[1]} {int(m[2]) + 1}", shifted)
    data = json.loads(shifted.replace("<list>", "<upload>"))
    for finding in data["findings"]:
        finding["rows"] = [row + 1 for row in finding["rows"]]
    result: dict[str, Any] = data
    return result


def problem_data() -> list[Any]:
    """Labelled data with one of each problem, and some clean items around them."""
    items: list[Any] = [
        LabeledDoc(text=f"clean text {i}", label=f"class {i % 3}") for i in range(12)
    ]
    items += [
        LabeledDoc(text="clean text 4", label="class 1"),  # duplicate of item 4
        LabeledDoc(text="clean text 5", label="class 0"),  # conflicting label (item 5: class 2)
        LabeledDoc(text="lonely", label="singleton"),  # a label with one item
        LabeledDoc(text="   ", label="class 0"),  # empty text
        LabeledDoc(text="no label here"),  # missing label
        {"text": "from a dict", "label": "class 1"},  # dicts are fine
        {"text": "odd", "label": "class 1", "colour": "red"},  # unknown field
        PairDoc(query="q", document="d"),  # another kind
        LabeledDoc(text="x" * 50, label="class 2"),  # over max_text_chars=40
        LabeledDoc(tensor=np.ones(3, dtype=np.float32), label="class 2"),  # mixed modalities
        LabeledDoc(tensor=np.ones(4, dtype=np.float32), label="class 2"),  # another shape
        LabeledDoc(tensor=np.array([np.nan, 1.0], dtype=np.float32), label="class 1"),
        LabeledDoc(image=png(), label="class 0"),
        LabeledDoc(image=b"not an image", label="class 0"),
        LabeledDoc(text="clean text 4", label="class 1"),  # a second duplicate
        LabeledDoc(text="lonely", label="alone too"),  # conflicting, and another rare label
    ]
    return items


# ---- the report equals validate() ----------------------------------------------------------


@pytest.mark.parametrize("sizes", [[100], [1] * 40, [5, 3, 9, 1, 7], [13, 13, 13]])
def test_report_equals_validate_over_all_docs(store: OwnerStore, sizes: list[int]) -> None:
    items = problem_data()
    expected = validate(items, max_text_chars=40)
    info = write(store, items, sizes, max_text_chars=40)

    assert expected.codes() >= {"duplicate", "conflicting_labels", "label_too_few_items"}
    assert {"empty_field", "missing_label", "malformed_row", "oversized_field"} <= expected.codes()
    assert info.report.to_dict() == as_upload(expected)
    assert not info.ok  # errors do not block the commit
    assert open_dataset(store, info.handle).info.report.to_dict() == info.report.to_dict()


def _random_items(rng: random.Random, n: int) -> list[Any]:
    texts = [f"text {i}" for i in range(max(2, n // 3))] + ["", " "]
    labels = ["a", "b", "c", None, ""]
    items: list[Any] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.1:
            shape = rng.choice([2, 3])
            items.append(LabeledDoc(tensor=np.full(shape, rng.choice([1.0, np.nan])), label="a"))
        elif r < 0.15:
            items.append({"text": rng.choice(texts), "label": rng.choice(labels)})
        elif r < 0.17:
            items.append(UnlabeledDoc(text="wrong kind"))
        else:
            items.append(LabeledDoc(text=rng.choice(texts), label=rng.choice(labels)))
    return items


@pytest.mark.parametrize("seed", range(12))
def test_streaming_validator_equals_validate_on_random_data(seed: int) -> None:
    rng = random.Random(seed)
    items = _random_items(rng, rng.randint(0, 60))
    validator = StreamingValidator(max_text_chars=5)
    start = 0
    while start < len(items):
        size = rng.randint(1, 9)
        validator.add(items[start : start + size])
        start += size
    assert validator.report().to_dict() == as_upload(validate(items, max_text_chars=5))


def test_validate_keeps_eval_findings_with_the_compact_index() -> None:
    train = [LabeledDoc(text=t, label=lbl) for t, lbl in [("a", "x"), ("b", "x"), ("c", "y")] * 2]
    evaluation = [LabeledDoc(text="a", label="x"), LabeledDoc(text="z", label="y")] * 2
    report = validate(train, evaluation)
    overlap = next(f for f in report.findings if f.code == "train_eval_overlap")
    assert (overlap.count, overlap.rows) == (2, [0, 2])
    assert overlap.examples[0] == "<list> item 0 is also training item 0"
    eval_duplicates = next(f for f in report.findings if f.code == "duplicate" and f.data == "eval")
    assert eval_duplicates.rows == [2, 3]
    train_duplicates = next(
        f for f in report.findings if f.code == "duplicate" and f.data == "train"
    )
    assert train_duplicates.rows == [3, 4, 5]


def test_duplicate_index_costs_28_bytes_per_item() -> None:
    validator = StreamingValidator(kind="labeled")
    for start in range(0, 3000, 1000):
        validator.add([LabeledDoc(text=f"t{i}", label="a") for i in range(start, start + 1000)])
    index = validator._index
    assert (len(index.digests), len(index.rows), len(index.labels)) == (48_000, 3000, 3000)
    assert index.rows.itemsize + index.labels.itemsize + 16 == 28


def test_validator_memory_does_not_keep_the_documents() -> None:
    validator = StreamingValidator(kind="labeled")
    validator.add([LabeledDoc(text="warm up", label="a")])
    pending = [
        [
            LabeledDoc(text=f"a text of some length {i}", label=f"l{i % 7}")
            for i in range(s, s + 2000)
        ]
        for s in range(0, 10_000, 2_000)
    ]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        while pending:
            validator.add(pending.pop())  # the batch is dropped once it is counted
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # 28 bytes of index per item, plus the buffers' headroom; a dict entry alone is > 100.
    assert grown / 10_000 < 60


def test_accept_refuses_batches_out_of_order() -> None:
    validator = StreamingValidator()
    first = validator.check([LabeledDoc(text="a", label="x")])
    second = validator.check([LabeledDoc(text="b", label="x")])  # also numbered from row 1
    validator.accept(first)
    with pytest.raises(ConfigError, match="in the order"):
        validator.accept(second)


# ---- writing and reading -------------------------------------------------------------------


def test_round_trip_keeps_every_field_but_the_random_ids(store: OwnerStore) -> None:
    docs = [
        LabeledDoc(id="a" * 32, text="héllo wörld ✓", label="x", tags={"k": [1, "v"], "n": None}),
        LabeledDoc(tensor=np.arange(6, dtype=np.int16).reshape(2, 3), label="y"),
        LabeledDoc(image=png(), label="x"),
        LabeledDoc(uri="/some/where.png", label="y"),
    ]
    info = write(store, docs, [2, 2], check_images=False)
    dataset = open_dataset(store, info.handle)
    back = list(dataset.iter_docs())

    assert len(dataset) == 4 and info.n_items == 4
    assert len({d.id for d in back}) == 4  # fresh ids: docarray's are random, not data
    assert back[0].text == "héllo wörld ✓" and back[0].tags == {"k": [1, "v"], "n": None}
    assert back[1].tensor.dtype == np.int16 and np.array_equal(back[1].tensor, docs[1].tensor)
    assert back[2].image == docs[2].image
    assert back[3].uri == "/some/where.png"
    assert isinstance(dataset.docs(), DocList) and dataset.docs().doc_type is LabeledDoc


@pytest.mark.parametrize(
    ("kind", "docs"),
    [
        (
            "pairs",
            [PairDoc(query="what is x", document="x is y"), PairDoc(query="q", document="d")],
        ),
        ("unlabeled", [UnlabeledDoc(text="one"), UnlabeledDoc(text="two")]),
        (
            "text_image",
            [TextImageDoc(text="red", image=png()), TextImageDoc(text="b", image=png((0, 0, 9)))],
        ),
    ],
)
def test_round_trip_of_every_kind(store: OwnerStore, kind: str, docs: list[BaseDoc]) -> None:
    info = write(store, docs, [1, 1])
    assert info.kind == kind and info.ok, info.report
    back = open_dataset(store, info.handle).docs()
    assert [d.model_dump(exclude={"id"}) for d in back] == [
        d.model_dump(exclude={"id"}) for d in docs
    ]


def test_layout_and_content_addressing(store: OwnerStore, root: LocalStore) -> None:
    docs = [LabeledDoc(id=f"{i:032x}", text=f"text {i}", label=f"l{i % 2}") for i in range(30)]
    first = write(store, docs, [10, 10, 10], name="first")
    second = write(store, docs, [10, 10, 10], name="second")
    regrouped = write(store, docs, [15, 15])

    assert first.handle == second.handle and second.name == "first"  # the first manifest stays
    assert second.created_at == first.created_at
    assert regrouped.handle != first.handle
    assert first.handle == f"std1:{first.dataset_id}" and len(first.dataset_id) == 64
    shard_keys = list(store.keys("datasets/shards/"))
    assert len(shard_keys) == 5  # 3 + 2 shards, the repeated upload stored nothing new
    for ref in first.shards:
        data = store.get_bytes(f"datasets/shards/{ref.sha256}.bin")
        assert hashlib.sha256(data).hexdigest() == ref.sha256 and data.startswith(MAGIC)
    assert root.exists(f"owners/alice/datasets/{first.dataset_id}.json")
    manifest = store.get_json(f"datasets/{first.dataset_id}.json")
    assert [s["sha256"] for s in manifest["shards"]] == [s.sha256 for s in first.shards]
    assert manifest["report"]["ok"] is True and manifest["kind"] == "labeled"


def test_other_checks_give_another_handle(store: OwnerStore) -> None:
    docs = [LabeledDoc(text=f"text {i}", label=f"l{i % 2}") for i in range(4)]
    assert write(store, docs).handle != write(store, docs, max_text_chars=3).handle


def test_the_same_data_uploaded_again_has_the_same_handle(store: OwnerStore) -> None:
    rows = [("a cat", "animal"), ("a dog", "animal"), ("to run", "motion"), ("to walk", "motion")]
    first = write(store, [LabeledDoc(text=text, label=label) for text, label in rows], [2, 2])
    # New documents, so new (random) ids: the handle must not depend on them.
    again = write(store, [LabeledDoc(text=text, label=label) for text, label in rows], [2, 2])
    assert again.handle == first.handle


def test_same_bad_image_gives_the_same_handle(store: OwnerStore) -> None:
    # PIL names the in-memory file by its address in its message; reports must not.
    docs = [LabeledDoc(image=b"broken", label="x"), LabeledDoc(image=png(), label="y")]
    assert write(store, docs).handle == write(store, docs).handle


def test_rows_with_errors_are_reported_not_stored(store: OwnerStore) -> None:
    docs: list[Any] = [LabeledDoc(text="ok", label="a"), LabeledDoc(text="", label="a")]
    docs += [{"text": "x", "label": "b", "bad": 1}, LabeledDoc(text="fine", label="b")]
    info = write(store, docs, [2, 2])
    assert (info.n_items, info.report.n_items, info.ok) == (2, 4, False)
    assert [d.text for d in open_dataset(store, info.handle).iter_docs()] == ["ok", "fine"]


def test_add_returns_the_batch_size_and_accepts_records_and_foreign_docs(store: OwnerStore) -> None:
    from docarray.documents import TextDoc

    from searchtuner.data import Record

    writer = DatasetWriter(store, kind="unlabeled")
    assert writer.add(DocList[TextDoc]([TextDoc(text="foreign"), TextDoc(text="too")])) == 2
    assert writer.add([Record(7, UnlabeledDoc(text="from a record"))]) == 1
    info = writer.commit()
    assert info.n_items == 3 and info.ok
    assert writer.commit() is info  # committing again answers the same


def test_empty_upload_commits_with_an_error_report(store: OwnerStore) -> None:
    info = DatasetWriter(store).commit()
    assert info.n_items == 0 and info.shards == () and "empty_data" in info.report.codes()


def test_writer_refuses_use_after_commit_or_abort(store: OwnerStore) -> None:
    writer = DatasetWriter(store)
    writer.add([LabeledDoc(text="a", label="x")])
    info = writer.commit()
    with pytest.raises(ConfigError, match=info.handle):
        writer.add([LabeledDoc(text="b", label="x")])
    with pytest.raises(ConfigError, match="delete_dataset"):
        writer.abort()
    aborted = DatasetWriter(store)
    aborted.abort()
    with pytest.raises(ConfigError, match="aborted"):
        aborted.commit()


@pytest.mark.parametrize("bad", ["", "x" * 201, "tab\there", 5])
def test_writer_checks_its_arguments(store: OwnerStore, bad: Any) -> None:
    with pytest.raises(ConfigError):
        DatasetWriter(store, name=bad)
    with pytest.raises(ConfigError, match="allowed"):
        DatasetWriter(store, kind="labelled")
    with pytest.raises(ConfigError, match="max_text_chars"):
        DatasetWriter(store, max_text_chars=0)
    with pytest.raises(ConfigError, match="batch"):
        DatasetWriter(store).add("not a batch")


def test_tags_that_are_not_json_fail_the_batch_and_keep_the_writer(store: OwnerStore) -> None:
    writer = DatasetWriter(store)
    writer.add([LabeledDoc(text="a", label="x")])
    with pytest.raises(DataError, match="JSON"):
        writer.add([LabeledDoc(text="b", label="y", tags={"when": object()})])
    writer.add([LabeledDoc(text="b", label="y")])
    info = writer.commit()
    assert info.report.n_items == 2 and info.ok


class FlakyStore(OwnerStore):
    """An owner store whose next ``fail`` writes raise StoreError."""

    fail = 0

    def put_bytes(
        self, key: str, data: bytes, metadata: Mapping[str, str] | None = None
    ) -> ObjectInfo:
        if self.fail:
            self.fail -= 1
            raise StoreError("the disk is full")
        return super().put_bytes(key, data, metadata)


def test_failed_shard_write_leaves_the_writer_as_it_was(root: LocalStore) -> None:
    flaky = FlakyStore(root, "bob")
    items = problem_data()
    writer = DatasetWriter(flaky, max_text_chars=40)
    for number, batch in enumerate(batches(items, [6] * 10)):
        if number == 2:
            flaky.fail = 1
            with pytest.raises(StoreError):
                writer.add(batch)
        writer.add(batch)
    assert writer.commit().report.to_dict() == as_upload(validate(items, max_text_chars=40))


def test_abort_removes_only_shards_no_dataset_uses(store: OwnerStore) -> None:
    shared = [LabeledDoc(id=f"{i:032x}", text=f"shared {i}", label=f"l{i % 2}") for i in range(4)]
    kept = write(store, shared)
    writer = DatasetWriter(store)
    writer.add(shared)
    writer.add([LabeledDoc(text="only in the aborted upload", label="l0")])
    assert len(list(store.keys("datasets/shards/"))) == 2
    writer.abort()
    writer.abort()  # harmless
    assert list(store.keys("datasets/shards/")) == [f"datasets/shards/{kept.shards[0].sha256}.bin"]
    assert len(open_dataset(store, kept.handle).docs()) == 4


def test_commit_detects_a_reused_shard_deleted_meanwhile(store: OwnerStore) -> None:
    docs = [LabeledDoc(id=f"{i:032x}", text=f"t{i}", label=f"l{i % 2}") for i in range(4)]
    first = write(store, docs)
    writer = DatasetWriter(store, name="again")
    writer.add(docs)
    delete_dataset(store, first.handle)
    with pytest.raises(IntegrityError, match="send the data again"):
        writer.commit()


# ---- handles, listing, deleting ------------------------------------------------------------


@pytest.mark.parametrize(
    "handle",
    [
        "",
        "std1:",
        "std1:abc",
        "stm1:" + "0" * 64,
        "std2:" + "0" * 64,
        "std1:" + "G" * 64,
        "std1:" + "A" * 64,
        "std1:../../owners/bob/datasets/" + "0" * 64,
        "std1:" + "0" * 63 + "/",
        "../datasets/x.json",
        None,
    ],
)
def test_malformed_handles_are_not_found_and_say_what_a_handle_is(
    store: OwnerStore, handle: Any
) -> None:
    with pytest.raises(DatasetNotFound, match=r"std1:<64 lowercase hex digits>") as caught:
        open_dataset(store, handle)
    assert isinstance(caught.value, NotFound)
    if isinstance(handle, str) and handle:
        assert handle in str(caught.value)
    with pytest.raises(DatasetNotFound):
        delete_dataset(store, handle)


def test_unknown_and_other_owners_handles_are_not_found(
    store: OwnerStore, root: LocalStore
) -> None:
    info = write(store, [LabeledDoc(text="a", label="x"), LabeledDoc(text="b", label="y")])
    assert parse_handle(f"  {info.handle}\n") == info.dataset_id
    with pytest.raises(DatasetNotFound, match=info.handle) as caught:
        open_dataset(root.for_owner("mallory"), info.handle)
    assert "list_datasets" in str(caught.value)
    with pytest.raises(DatasetNotFound):
        open_dataset(store, "std1:" + "0" * 64)


def test_list_and_delete(store: OwnerStore) -> None:
    one = [LabeledDoc(id=f"{i:032x}", text=f"one {i}", label=f"l{i % 2}") for i in range(4)]
    two = [LabeledDoc(id=f"{i:032x}", text=f"two {i}", label=f"l{i % 2}") for i in range(4)]
    first = write(store, one, name="first")
    both = write(store, one + two, [4, 4], name="both")
    listed = list_datasets(store)  # oldest first; these two may share a second
    assert {(i.handle, i.name) for i in listed} == {(first.handle, "first"), (both.handle, "both")}
    assert listed == sorted(listed, key=lambda i: (i.created_at, i.dataset_id))

    delete_dataset(store, both.handle)
    assert [i.handle for i in list_datasets(store)] == [first.handle]
    assert len(open_dataset(store, first.handle).docs()) == 4  # its shared shard stays
    assert len(list(store.keys("datasets/shards/"))) == 1
    with pytest.raises(DatasetNotFound):
        open_dataset(store, both.handle)
    delete_dataset(store, first.handle)
    assert list(store.keys("datasets/")) == []


def test_a_replaced_shard_or_manifest_is_refused(store: OwnerStore) -> None:
    info = write(store, [LabeledDoc(text="a", label="x"), LabeledDoc(text="b", label="y")])
    key = f"datasets/shards/{info.shards[0].sha256}.bin"
    other = encode_shard([LabeledDoc(text="evil", label="x")])
    store.put_bytes(key, other)  # a valid object with a valid digest, but not the listed one
    with pytest.raises(IntegrityError, match="other bytes"):
        list(open_dataset(store, info.handle).iter_docs())
    store.delete(key)
    with pytest.raises(IntegrityError, match="missing"):
        list(open_dataset(store, info.handle).iter_docs())

    manifest_key = f"datasets/{info.dataset_id}.json"
    manifest = store.get_json(manifest_key)
    manifest["n_items"] = 99
    store.put_json(manifest_key, manifest)
    with pytest.raises(IntegrityError, match="damaged"):
        open_dataset(store, info.handle)
    assert list_datasets(store) == []  # skipped (and logged), not fatal
    delete_dataset(store, info.handle)  # a damaged dataset can still be deleted
    assert not store.exists(manifest_key)


# ---- the shard format ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x04\x95pickle",
        MAGIC + b"\xff\xff\xff\x00garbage",
        MAGIC + (5).to_bytes(4, "little") + b"12345",
    ],
)
def test_decode_refuses_what_is_not_a_shard(data: bytes) -> None:
    with pytest.raises(DataError, match="upload the dataset again"):
        decode_shard(data, "here")


def test_decode_checks_sizes_and_types() -> None:
    good = encode_shard([LabeledDoc(tensor=np.ones(4, dtype=np.float32), label="x")])
    with pytest.raises(DataError, match="unexpected bytes"):
        decode_shard(good + b"x", "here")
    with pytest.raises(DataError, match="does not fit"):
        decode_shard(good[:-1], "here")
    import zlib

    header = json.dumps(
        {"kind": "labeled", "n": 1, "columns": {"id": ["a"]}, "tensor": [["|O", [1]]]}
    ).encode()
    packed = zlib.compress(header)
    hostile = MAGIC + len(packed).to_bytes(4, "little") + packed + b"\0" * 8
    with pytest.raises(DataError, match="not allowed"):
        decode_shard(hostile, "here")


def test_encoding_is_deterministic_and_refuses_other_schemas() -> None:
    docs = [LabeledDoc(id="a" * 32, text="t", label="x", tags={"b": 1, "a": 2})]
    again = [LabeledDoc(id="a" * 32, text="t", label="x", tags={"a": 2, "b": 1})]
    assert encode_shard(docs) == encode_shard(again)
    with pytest.raises(DataError, match="one schema"):
        encode_shard([LabeledDoc(text="t", label="x"), UnlabeledDoc(text="u")])
    with pytest.raises(DataError, match="convert"):
        encode_shard([BaseDoc()])


# ---- uploads -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_upload_session_round_trip_and_owners(store: OwnerStore, root: LocalStore) -> None:
    uploads = UploadSession()
    upload_id = uploads.begin(store, "labeled", "tickets", max_text_chars=40)
    assert re.fullmatch(r"[0-9a-f]{32}", upload_id)
    items = problem_data()
    for batch in batches(items, [7] * 10):
        assert uploads.add(store, upload_id, batch) == len(batch)
    mallory = root.for_owner("mallory")
    for call in (
        lambda: uploads.add(mallory, upload_id, items[:1]),
        lambda: uploads.commit(mallory, upload_id),
        lambda: uploads.abort(mallory, upload_id),
    ):
        with pytest.raises(UploadNotFound, match="for this owner"):
            call()
    info = uploads.commit(store, upload_id)
    assert info.name == "tickets" and info.report.to_dict() == as_upload(
        validate(items, kind="labeled", max_text_chars=40)
    )
    assert len(uploads) == 0
    with pytest.raises(UploadNotFound, match="begin a new upload"):
        uploads.add(store, upload_id, items[:1])


def test_idle_uploads_expire_and_lose_their_shards(store: OwnerStore) -> None:
    clock = Clock()
    uploads = UploadSession(idle_timeout_s=60, clock=clock)
    idle = uploads.begin(store)
    uploads.add(store, idle, [LabeledDoc(text="a", label="x")])
    clock.now += 30
    busy = uploads.begin(store)
    uploads.add(store, busy, [LabeledDoc(text="b", label="x")])
    clock.now += 31
    assert uploads.expire() == [idle]
    assert len(list(store.keys("datasets/shards/"))) == 1
    with pytest.raises(UploadNotFound):
        uploads.commit(store, idle)
    assert uploads.commit(store, busy).n_items == 1


def test_upload_limits(store: OwnerStore, root: LocalStore) -> None:
    uploads = UploadSession(max_open=3, max_open_per_owner=2)
    first = uploads.begin(store)
    uploads.begin(store)
    with pytest.raises(TooManyUploads, match="commit or abort"):
        uploads.begin(store)
    uploads.begin(root.for_owner("bob"))
    with pytest.raises(TooManyUploads, match="try again later"):
        uploads.begin(root.for_owner("carol"))
    uploads.abort(store, first)
    uploads.begin(root.for_owner("carol"))
    uploads.abort_all()
    assert len(uploads) == 0
    with pytest.raises(ConfigError):
        UploadSession(idle_timeout_s=0)


def test_uploads_from_many_threads(store: OwnerStore) -> None:
    uploads = UploadSession()
    ids = [uploads.begin(store, "labeled") for _ in range(3)]
    errors: list[BaseException] = []

    def send(upload_id: str, worker: int) -> None:
        try:
            for step in range(5):
                batch = [
                    LabeledDoc(text=f"{worker}-{step}-{i}", label=f"l{i % 2}") for i in range(20)
                ]
                uploads.add(store, upload_id, batch)
        except BaseException as err:  # collected, re-raised by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=send, args=(ids[w % 3], w)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    infos = [uploads.commit(store, upload_id) for upload_id in ids]
    assert [i.report.n_items for i in infos] == [200, 200, 200]
    assert all(i.ok for i in infos)


# ---- iter_batches --------------------------------------------------------------------------


def test_iter_batches_streams_a_csv(tmp_path: Path, store: OwnerStore) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "".join(f"text {i},l{i % 3}\n" for i in range(25)))
    sizes = [len(batch) for batch in iter_batches(path, batch_size=10)]
    assert sizes == [10, 10, 5]
    writer = DatasetWriter(store)
    for batch in iter_batches(path, batch_size=10):
        writer.add(batch)
    info = writer.commit()
    assert info.n_items == 25 and info.ok and info.kind == "labeled"


def test_iter_batches_names_bad_rows_by_their_line(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    rows = [f"text {i},l{i % 3}" for i in range(30)]
    rows[3] = "text 3,"  # no label: file line 5
    rows[20] = ",l1"  # no text: file line 22
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    stream = iter_batches(path, batch_size=2)
    assert len(next(stream)) == 2
    with pytest.raises(DataError) as caught:
        next(stream)  # the batch holding the bad row is not passed on
    message = str(caught.value)
    assert f"{path} row 5, field 'label'" in message and f"{path} row 22, field 'text'" in message
    assert message.startswith("2 rows of")


def test_iter_batches_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        iter_batches([LabeledDoc(text="a", label="x")], batch_size=0)
    with pytest.raises(DataError, match="not found"):
        iter_batches(tmp_path / "missing.csv")
    docs = DocList[LabeledDoc]([LabeledDoc(text=f"t{i}", label="x") for i in range(5)])
    assert [len(b) for b in iter_batches(docs, batch_size=2)] == [2, 2, 1]


def test_stored_dataset_repr_and_shards(store: OwnerStore) -> None:
    info = write(store, [LabeledDoc(text=f"t{i}", label=f"l{i % 2}") for i in range(6)], [4, 2])
    dataset = open_dataset(store, info.handle)
    assert isinstance(dataset, StoredDataset) and info.handle in repr(dataset)
    assert [len(shard) for shard in dataset.iter_shards()] == [4, 2]
    assert DatasetInfo.from_dict(info.to_dict()) == info
