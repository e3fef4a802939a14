"""Malformed requests against the real service: each is refused with the status (HTTP) or
the error (gRPC) a client can act on and a message that says what to fix; the service keeps
serving; what was stored before (a dataset, a finished run and its model) is intact.

The cases cover empty DocLists, missing labels, a single label, labels with one item, NaN
and infinite tensors, tensors of mismatched shapes, images that do not decode, 10 MB
strings, wrong types, unknown backbones / losses / miners / optimizers / schedulers,
out-of-range training parameters, a batch larger than the dataset, malformed and foreign
handles, and missing or wrong tokens, over HTTP (REST) and gRPC (a plain jina ``Client``).

Datasets with errors in their validation report are stored (the report is the answer to
the upload) and refused where a user meets the refusal: at ``POST /runs``. A run whose
problem only shows once its data is batched (a batch larger than the dataset allows, labels
that all have a single item) is accepted and then FAILED with the reason; those cases accept
either that or a refusal at once. Cases marked ``xfail`` are bugs found by this suite (see
their reasons); they turn into failures once fixed (``strict``), so remove the mark then.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from docarray import DocList
from jina.excepts import BadServer
from PIL import Image

from searchtuner.client.errors import STATUS_OF_ERROR
from searchtuner.service.schemas import (
    DatasetDoc,
    Empty,
    EventDoc,
    FitRequest,
    IngestDoc,
    PublishRequest,
    PublishResponse,
    RunDoc,
    RunQuery,
    UploadRequest,
    UploadStatus,
)
from searchtuner.service.tokens import TokenStore
from searchtuner.store import open_store
from tests.e2e import service as service_module
from tests.e2e.service import Service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "all-MiniLM-L6-v2"
MODEL_OPTIONS = {"max_length": 32}
RUN_CONFIG = {"epochs": 1, "batch_size": 16, "max_steps": 2}
MISSING_DATASET = "std1:" + "0" * 64
MISSING_RUN = "run-20000101000000-deadbe"
TEN_MB = 10 * (1 << 20)
LIVE_TIMEOUT = 30.0
"""A request through the whole Flow after each case must answer within this."""
MAX_MESSAGE = 4096
"""No error message is longer: a 10 MB value is never echoed back whole."""
MAX_ANSWER_BYTES = 64 << 10
"""No error answer (body, or gRPC message) is larger, whatever it echoes of the request."""
GRPC_CODE_STATUS = {"UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 413}
"""gRPC status codes the gateway answers with itself, and the HTTP status of the same refusal."""
CSV = {"Content-Type": "text/csv"}
JSONL = {"Content-Type": "application/x-ndjson"}
RUN_ID = re.compile(r"run-\d{14}-[0-9a-f]{6}")


# --- answers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the service answered: the HTTP status (over gRPC, the status the REST API gives
    the same error), the error's name, and its message."""

    status: int | None
    error: str
    message: str
    size: int = 0
    """The whole answer's size in bytes (HTTP body; over gRPC, the message)."""


def http_answer(response: requests.Response) -> Answer:
    size = len(response.content)
    try:
        body: Any = response.json()
    except ValueError:
        return Answer(response.status_code, "", response.text, size)
    if not isinstance(body, dict):
        return Answer(response.status_code, "", json.dumps(body), size)
    detail = body.get("detail", "")
    if isinstance(detail, list):  # FastAPI's validation errors: one entry per bad field
        detail = "; ".join(
            ".".join(str(part) for part in item.get("loc", ())) + ": " + str(item.get("msg"))
            for item in detail
        )
    error = body.get("error")
    return Answer(response.status_code, error if isinstance(error, str) else "", str(detail), size)


def grpc_failure(err: Exception) -> Answer:
    """The error a jina client call failed with: an executor's exception (``BadServer``) or
    a gRPC status the gateway aborted the call with (``BadServerFlow`` from an RpcError)."""
    if isinstance(err, BadServer):
        status = err.args[0].status
        name = status.exception.name
        return Answer(STATUS_OF_ERROR.get(name, 500), name, " ".join(status.exception.args))
    cause = err.__cause__
    code = getattr(cause, "code", None)
    if callable(code) and hasattr(cause, "details"):
        name = code().name
        return Answer(GRPC_CODE_STATUS.get(name, 500), name, cause.details() or "")
    found = re.search(r"StatusCode\.([A-Z_]+)\s*(.*)", str(err), re.S)
    if found:
        return Answer(GRPC_CODE_STATUS.get(found[1], 500), found[1], found[2])
    return Answer(None, type(err).__name__, str(err))


# --- the caller ---------------------------------------------------------------------------------


class Caller(service_module.Caller):
    """One owner's HTTP and gRPC calls, with what these tests ask of them."""

    def grpc_answer(self, endpoint: str, docs: DocList[Any], out: type, **kwargs: Any) -> Answer:
        """The refusal of a gRPC call (an Answer saying 'accepted' if there was none)."""
        try:
            answer = self.grpc(endpoint, docs, out, **kwargs)
        except Exception as err:  # the error is the answer under test
            return grpc_failure(err)
        return Answer(200, "", f"accepted: {[doc.dict() for doc in answer][:2]}")

    # datasets

    def upload(self, body: bytes, headers: dict[str, str], name: str, kind: str = "labeled") -> Any:
        """Upload over HTTP; the stored dataset (its report says what is wrong with it)."""
        response = self.http(
            "POST", "/datasets", params={"kind": kind, "name": name}, data=body, headers=headers
        )
        assert response.status_code == 201, response.text
        return response.json()

    def begin(self, kind: str = "labeled", name: str = "") -> str:
        request = DocList[UploadRequest]([UploadRequest(kind=kind, name=name)])
        return self.grpc("/datasets/begin", request, UploadStatus)[0].upload_id

    def commit(self, upload_id: str) -> dict[str, Any]:
        request = DocList[UploadRequest]([UploadRequest(upload_id=upload_id)])
        return self.grpc("/datasets/commit", request, DatasetDoc)[0].dict()

    def stream(self, docs: list[IngestDoc], name: str) -> dict[str, Any]:
        """Upload over gRPC (begin, append, commit); the stored dataset."""
        upload_id = self.begin(name=name)
        self.grpc("/datasets/append", DocList[IngestDoc](docs), UploadStatus, upload_id=upload_id)
        return self.commit(upload_id)

    # runs

    def create_run(self, **fields: Any) -> requests.Response:
        body = {"model": MODEL, "model_options": MODEL_OPTIONS, "config": RUN_CONFIG}
        return self.http("POST", "/runs", json={"onnx": False, **body, **fields})

    def alive(self) -> None:
        """The whole Flow still answers (a request through every executor)."""
        response = requests.get(
            f"{self.service.http}/runs", headers=self.headers, timeout=LIVE_TIMEOUT
        )
        assert response.status_code == 200, response.text


@dataclass
class Context:
    """What the cases use: the test owner, another owner and their objects."""

    me: Caller
    other: Caller
    before: dict[str, Any]
    others: dict[str, Any]
    late: dict[str, requests.Response]


# --- the objects stored before ----------------------------------------------------------------


def _model_sha256(caller: Caller, run_id: str) -> str:
    download = caller.http("GET", f"/runs/{run_id}/model/download")
    assert download.status_code == 200, download.text
    return hashlib.sha256(download.content).hexdigest()


def _finished_run(caller: Caller, dataset: str) -> dict[str, Any]:
    """A FINISHED run with a model: one the session has, else one short run."""
    for record in caller.http("GET", "/runs").json():
        if record["state"] == "FINISHED" and record["model_handle"]:
            return record
    created = caller.create_run(train_data=dataset, name="bad-input-before")
    assert created.status_code == 201, created.text
    record = wait_for_end(caller, created.json()["run_id"], 600)
    assert record["state"] == "FINISHED", record
    return record


def wait_for_end(caller: Caller, run_id: str, timeout: float) -> dict[str, Any]:
    """The run's record once it is FINISHED, FAILED or CANCELLED."""
    return wait_for(
        lambda: (
            (r := caller.http("GET", f"/runs/{run_id}").json())["state"]
            in {"FINISHED", "FAILED", "CANCELLED"}
            and r
        ),
        timeout,
        f"run {run_id} to end",
        interval=1.0,
    )


def _snapshot(caller: Caller, run_id: str) -> dict[str, Any]:
    return {
        "record": caller.http("GET", f"/runs/{run_id}").json(),
        "metrics": caller.http("GET", f"/runs/{run_id}/metrics").json(),
        "model_sha256": _model_sha256(caller, run_id),
    }


def _token(service: Service, owner: str) -> str:
    return service.new_token(owner)


@pytest.fixture(scope="module")
def ctx(service: Service, wordnet_csv: dict[str, Path]) -> Context:
    me = Caller(service, service.token)
    other = Caller(service, _token(service, "bad-input-other"))

    dataset = me.upload(wordnet_csv["train"].read_bytes(), CSV, "bad-input-before")
    assert dataset["ok"], dataset["report_text"]
    listed = {row["handle"]: row for row in me.http("GET", "/datasets").json()}
    assert dataset["handle"] in listed
    run = _finished_run(me, dataset["handle"])
    before = {
        "dataset": dataset,
        "listed": listed[dataset["handle"]],
        "run_id": run["run_id"],
        **_snapshot(me, run["run_id"]),
    }

    # Another owner's dataset and (refused, so FAILED) run: foreign handles for the test owner.
    theirs = other.upload(b"text,label\na cat,animal\na dog,animal\nan oak,plant\n", CSV, "theirs")
    refused = other.create_run(model="no-such-backbone", train_data=theirs["handle"])
    assert refused.status_code == 400, refused.text
    others = {"dataset": theirs["handle"], "run_id": RUN_ID.search(refused.text)[0]}

    # Runs whose problem shows only when their batches are drawn: started now, so that they
    # are done by the time their cases read them.
    one_each = "text,label\n" + "".join(f"item {i},label-{i}\n" for i in range(12))
    single_items = me.upload(one_each.encode(), CSV, "bad-input-one-item-per-label")
    late = {
        "batch-larger-than-dataset": me.create_run(
            train_data=dataset["handle"], config={**RUN_CONFIG, "batch_size": 1000}
        ),
        "every-label-one-item": me.create_run(train_data=single_items["handle"]),
    }
    return Context(me, other, before, others, late)


# --- the cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One malformed request: what it sends, and the refusal it must get.

    ``status`` and ``error`` may be tuples of what is accepted; ``fragments`` must all occur
    in the message (the field or value at fault, and the hint)."""

    id: str
    send: Callable[[Context], Answer]
    status: int | tuple[int, ...]
    error: str | tuple[str, ...] | None
    fragments: tuple[str, ...]
    bug: str = ""
    run: bool = True


CASES: list[Case] = []


def case(
    id: str,
    status: int | tuple[int, ...],
    error: str | tuple[str, ...] | None,
    *fragments: str,
    bug: str = "",
    run: bool = True,
) -> Callable[[Callable[[Context], Answer]], Callable[[Context], Answer]]:
    def register(send: Callable[[Context], Answer]) -> Callable[[Context], Answer]:
        CASES.append(Case(id, send, status, error, fragments, bug, run))
        return send

    return register


def run_case(
    id: str, fields: dict[str, Any], status: int, error: str | None, *fragments: str, **kw: Any
) -> None:
    """A case that is one POST /runs with ``fields`` over the default request (the 'before'
    dataset, a short config); a value of None removes the field."""

    def send(ctx: Context) -> Answer:
        body = {"train_data": ctx.before["dataset"]["handle"], **fields}
        if isinstance(fields.get("config"), dict):
            body["config"] = {**RUN_CONFIG, **fields["config"]}
        body = {key: value for key, value in body.items() if value is not None}
        response = ctx.me.create_run(**body)
        if response.status_code == 201:  # accepted (a bug): do not let it train
            ctx.me.http("POST", f"/runs/{response.json()['run_id']}/cancel")
        return http_answer(response)

    case(id, status, error, *fragments, **kw)(send)


def refused_for(ctx: Context, dataset: dict[str, Any], code: str, example: str = "") -> Answer:
    """The report of a stored dataset names the error ``code`` (and, in an example row,
    ``example``); POST /runs with it is then the answer under test."""
    assert not dataset["ok"], dataset["report_text"]
    findings = {f["code"]: f for f in dataset["report"]["findings"]}
    assert code in findings and findings[code]["severity"] == "error", dataset["report_text"]
    if example:
        assert any(example in line for line in findings[code]["examples"]), findings[code]
    return http_answer(ctx.me.create_run(train_data=dataset["handle"]))


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


FIX_DATA = "fix the data and upload it again"

# HTTP uploads: POST /datasets


@case("upload-empty-body", 400, None, "the upload is empty", "send the dataset file as the body")
def _(ctx: Context) -> Answer:
    return http_answer(ctx.me.http("POST", "/datasets?kind=labeled", data=b"", headers=CSV))


@case("upload-content-type-png", 415, None, "'image/png'", "text/csv", "application/x-ndjson")
def _(ctx: Context) -> Answer:
    headers = {"Content-Type": "image/png"}
    return http_answer(ctx.me.http("POST", "/datasets", data=_png(), headers=headers))


@case("upload-no-content-type", 415, None, "'(none)'", "send text/csv")
def _(ctx: Context) -> Answer:
    headers = {"Content-Type": ""}
    return http_answer(ctx.me.http("POST", "/datasets", data=b"text,label\na,b\n", headers=headers))


@case("upload-unknown-kind", 400, "ConfigError", "'bogus'", "allowed: labeled, pairs")
def _(ctx: Context) -> Answer:
    path = "/datasets?kind=bogus"
    return http_answer(ctx.me.http("POST", path, data=b"text,label\na,b\n", headers=CSV))


@case("upload-batch-size-zero", 400, None, "batch_size must be 1..10000", "got 0")
def _(ctx: Context) -> Answer:
    path = "/datasets?kind=labeled&batch_size=0"
    return http_answer(ctx.me.http("POST", path, data=b"text,label\na,b\n", headers=CSV))


@case("upload-csv-not-utf8", 400, "DataError", "not valid UTF-8")
def _(ctx: Context) -> Answer:
    body = b"\xff\xfe\x00text,label\n\x89PNG\x00\x01,\xc3\x28\n"
    return http_answer(ctx.me.http("POST", "/datasets?kind=labeled", data=body, headers=CSV))


@case("upload-csv-unknown-columns", 400, "DataError", "not a header", "e.g. 'text,label'")
def _(ctx: Context) -> Answer:
    body = b"foo,bar\na,b\nc,d\n"
    return http_answer(ctx.me.http("POST", "/datasets?kind=labeled", data=body, headers=CSV))


@case("upload-jsonl-file-path", 400, "InvalidRequest", "'/etc/passwd'", "never reads files by path")
def _(ctx: Context) -> Answer:
    body = _jsonl([{"uri": "/etc/passwd", "label": "x"}, {"uri": "/etc/hosts", "label": "y"}])
    return http_answer(ctx.me.http("POST", "/datasets?kind=labeled", data=body, headers=JSONL))


TEXT_TOO_LARGE = ("text is 10 MiB", "SEARCHTUNER_MAX_DOCUMENT_BYTES", "split it into several")


@case("upload-jsonl-10mb-text", 413, "TooLarge", *TEXT_TOO_LARGE)
def _(ctx: Context) -> Answer:
    body = _jsonl([{"text": "a" * TEN_MB, "label": "x"}, {"text": "b", "label": "y"}])
    return http_answer(ctx.me.http("POST", "/datasets?kind=labeled", data=body, headers=JSONL))


@case(
    "upload-csv-10mb-text",
    413,
    "TooLarge",
    *TEXT_TOO_LARGE,
)
def _(ctx: Context) -> Answer:
    body = ("text,label\n" + "a" * TEN_MB + ",x\nb,y\n").encode()
    return http_answer(ctx.me.http("POST", "/datasets?kind=labeled", data=body, headers=CSV))


@case("request-over-64mib", 413, "TooLarge", "100 MiB", "SEARCHTUNER_MAX_REQUEST_BYTES")
def _(ctx: Context) -> Answer:
    """A body that claims 100 MiB (Content-Length) is refused before it is read."""
    connection = http.client.HTTPConnection("127.0.0.1", ctx.me.service.http_port, timeout=30)
    try:
        connection.putrequest("POST", "/runs")
        for name, value in {**ctx.me.headers, "Content-Type": "application/json"}.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(100 << 20))
        connection.endheaders()
        connection.send(b'{"model": "')
        response = connection.getresponse()
        body = json.loads(response.read())
        return Answer(response.status, body.get("error", ""), body.get("detail", ""))
    finally:
        connection.close()


# Datasets stored with errors in their report, refused at POST /runs


@case(
    "dataset-single-label", 400, "InvalidRequest", "[single_label]", "'only'", "at least 2 labels"
)
def _(ctx: Context) -> Answer:
    body = "text,label\n" + "".join(f"text {i},only\n" for i in range(8))
    dataset = ctx.me.upload(body.encode(), CSV, "single-label")
    return refused_for(ctx, dataset, "single_label")


@case("dataset-missing-labels", 400, "InvalidRequest", "[missing_label]", "give every item a label")
def _(ctx: Context) -> Answer:
    body = "text,label\n" + "".join(f"text {i},\n" for i in range(8))
    dataset = ctx.me.upload(body.encode(), CSV, "missing-labels")
    return refused_for(ctx, dataset, "missing_label", "no label")


@case("grpc-dataset-missing-labels", 400, "InvalidRequest", "[missing_label]", "kind='unlabeled'")
def _(ctx: Context) -> Answer:
    dataset = ctx.me.stream([IngestDoc(text=f"text {i}") for i in range(6)], "no-labels")
    return refused_for(ctx, dataset, "missing_label", "field 'label'")


@case("dataset-empty", 400, "InvalidRequest", "[empty_data]", "holds no items", FIX_DATA)
def _(ctx: Context) -> Answer:
    dataset = ctx.me.upload(b"text,label\n", CSV, "header-only")
    return refused_for(ctx, dataset, "empty_data")


@case("grpc-empty-upload", 400, "InvalidRequest", "[empty_data]", "holds no items")
def _(ctx: Context) -> Answer:
    """An upload with an empty DocList appended and then committed."""
    upload_id = ctx.me.begin(name="empty-doclist")
    ctx.me.grpc("/datasets/append", DocList[IngestDoc]([]), UploadStatus, upload_id=upload_id)
    return refused_for(ctx, ctx.me.commit(upload_id), "empty_data")


NON_FINITE = ("[non_finite_tensor]", "NaN or infinity", "fix or remove them", FIX_DATA)


@case("grpc-dataset-nan-inf-tensors", 400, "InvalidRequest", *NON_FINITE)
def _(ctx: Context) -> Answer:
    values = [0.5, np.nan, 0.1, np.inf, 0.2, -np.inf]
    docs = [
        IngestDoc(tensor=np.array([1.0, v, 2.0 + i], dtype=np.float32), label=f"l{i % 2}")
        for i, v in enumerate(values)
    ]
    dataset = ctx.me.stream(docs, "nan-tensors")
    return refused_for(ctx, dataset, "non_finite_tensor", "values are NaN or inf")


@case("jsonl-dataset-nan-tensors", 400, "InvalidRequest", *NON_FINITE)
def _(ctx: Context) -> Answer:
    rows = [{"tensor": [1.0, v, float(i)], "label": f"l{i % 2}"} for i, v in enumerate(
        [0.5, float("nan"), 0.1, float("inf"), 0.2, 0.3]
    )]  # fmt: skip
    dataset = ctx.me.upload(_jsonl(rows), JSONL, "nan-tensors-jsonl")  # NaN/Infinity tokens
    return refused_for(ctx, dataset, "non_finite_tensor")


@case("grpc-dataset-tensor-shapes", 400, "InvalidRequest", "[tensor_shape_mismatch]", "same shape")
def _(ctx: Context) -> Answer:
    shapes = [(4,), (4,), (2, 2), (4,), (7,), (4,)]
    docs = [
        IngestDoc(tensor=np.full(shape, float(i), dtype=np.float32), label=f"l{i % 2}")
        for i, shape in enumerate(shapes)
    ]
    dataset = ctx.me.stream(docs, "tensor-shapes")
    return refused_for(ctx, dataset, "tensor_shape_mismatch", "shape (2, 2), but")


@case(
    "grpc-dataset-images-do-not-decode",
    400,
    "InvalidRequest",
    "[image_decode_error]",
    "re-save those images as PNG or JPEG",
)
def _(ctx: Context) -> Answer:
    png = _png()
    broken = [b"GIF89a, or not", png[: len(png) // 2], b"\x89PNG\r\n\x1a\n" + b"\0" * 40]
    docs = [IngestDoc(image=broken[i % 3] + bytes([i]), label=f"l{i % 2}") for i in range(6)]
    dataset = ctx.me.stream(docs, "broken-images")
    return refused_for(ctx, dataset, "image_decode_error", "not an image file")


@case(
    "jsonl-dataset-image-not-base64", 400, "InvalidRequest", "[malformed_row]", "could not be read"
)
def _(ctx: Context) -> Answer:
    rows = [{"image": f"@@not base64 {i}@@", "label": f"l{i % 2}"} for i in range(4)]
    dataset = ctx.me.upload(_jsonl(rows), JSONL, "image-not-base64")
    return refused_for(ctx, dataset, "malformed_row", "image is not valid base64")


@case("jsonl-dataset-wrong-types", 400, "InvalidRequest", "[malformed_row]", "could not be read")
def _(ctx: Context) -> Answer:
    rows = [{"text": 12345 + i, "label": ["a", "list"]} for i in range(4)]
    dataset = ctx.me.upload(_jsonl(rows), JSONL, "wrong-types")
    return refused_for(
        ctx, dataset, "malformed_row", "field 'text': Input should be a valid string"
    )


@case("jsonl-dataset-broken-json", 400, "InvalidRequest", "[malformed_row]", "could not be read")
def _(ctx: Context) -> Answer:
    body = b'{"text": "a", "label": "x"}\n{"text": "b", "label": \n{"text": "c", "label": "y"}\n'
    dataset = ctx.me.upload(body, JSONL, "broken-json")
    return refused_for(ctx, dataset, "malformed_row", "invalid JSON")


@case("grpc-dataset-two-contents", 400, "InvalidRequest", "[multiple_content]", "keep one per item")
def _(ctx: Context) -> Answer:
    docs = [IngestDoc(text=f"t{i}", tensor=np.ones(3) * i, label=f"l{i % 2}") for i in range(4)]
    return refused_for(ctx, ctx.me.stream(docs, "two-contents"), "multiple_content")


@case("grpc-dataset-empty-texts", 400, "InvalidRequest", "[empty_field]", "fill it in or remove")
def _(ctx: Context) -> Answer:
    docs = [IngestDoc(text="", label=f"l{i % 2}") for i in range(4)]
    return refused_for(ctx, ctx.me.stream(docs, "empty-texts"), "empty_field", "empty text")


# The gRPC upload protocol: /datasets/begin | append | commit


@case("grpc-runs-create-empty-doclist", 400, "InvalidRequest", "got no documents", "one FitRequest")
def _(ctx: Context) -> Answer:
    return ctx.me.grpc_answer("/runs/create", DocList[FitRequest]([]), RunDoc)


@case("grpc-commit-empty-doclist", 400, "InvalidRequest", "'upload_id'", "/datasets/begin returned")
def _(ctx: Context) -> Answer:
    return ctx.me.grpc_answer("/datasets/commit", DocList[UploadRequest]([]), DatasetDoc)


@case("grpc-runs-get-blank-query", 400, "InvalidRequest", "needs run_id", "RunQuery")
def _(ctx: Context) -> Answer:
    return ctx.me.grpc_answer("/runs/get", DocList[RunQuery]([RunQuery()]), RunDoc)


@case("grpc-append-without-upload-id", 400, "InvalidRequest", "/datasets/append needs", "upload_id")
def _(ctx: Context) -> Answer:
    docs = DocList[IngestDoc]([IngestDoc(text="a", label="b")])
    return ctx.me.grpc_answer("/datasets/append", docs, UploadStatus)


@case(
    "grpc-append-unknown-upload-id", 404, "UploadNotFound", "no open upload", "begin a new upload"
)
def _(ctx: Context) -> Answer:
    docs = DocList[IngestDoc]([IngestDoc(text="a", label="b")])
    return ctx.me.grpc_answer("/datasets/append", docs, UploadStatus, upload_id="f" * 32)


@case("grpc-commit-twice", 404, "UploadNotFound", "no open upload", "it was committed")
def _(ctx: Context) -> Answer:
    upload_id = ctx.me.begin(name="commit-twice")
    ctx.me.commit(upload_id)
    request = DocList[UploadRequest]([UploadRequest(upload_id=upload_id)])
    return ctx.me.grpc_answer("/datasets/commit", request, DatasetDoc)


@case("grpc-begin-unknown-kind", 400, "ConfigError", "'bogus'", "allowed: labeled, pairs")
def _(ctx: Context) -> Answer:
    request = DocList[UploadRequest]([UploadRequest(kind="bogus")])
    return ctx.me.grpc_answer("/datasets/begin", request, UploadStatus)


@case("grpc-begin-name-control-chars", 400, "ConfigError", "control characters", "remove them")
def _(ctx: Context) -> Answer:
    request = DocList[UploadRequest]([UploadRequest(kind="labeled", name="line\nbreak")])
    return ctx.me.grpc_answer("/datasets/begin", request, UploadStatus)


def refused_append(ctx: Context, doc: IngestDoc) -> Answer:
    """Append a batch with ``doc`` in it; after the refusal the upload must still be open
    (a good batch is taken) and hold nothing of the refused batch."""
    upload_id = ctx.me.begin(name="too-large")
    try:
        docs = DocList[IngestDoc]([IngestDoc(text="fine", label="a"), doc])
        answer = ctx.me.grpc_answer("/datasets/append", docs, UploadStatus, upload_id=upload_id)
        good = [IngestDoc(text=f"fine {i}", label=f"l{i % 2}") for i in range(4)]
        taken = ctx.me.grpc(
            "/datasets/append", DocList[IngestDoc](good), UploadStatus, upload_id=upload_id
        )
        assert taken[0].received == 4
    finally:
        dataset = ctx.me.commit(upload_id)
    assert dataset["n_items"] == 4, dataset  # nothing of the refused batch was stored
    return answer


STILL_OPEN = "the upload is still open"


@case("grpc-10mb-text", 413, "TooLarge", *TEXT_TOO_LARGE, "document 1", STILL_OPEN)
def _(ctx: Context) -> Answer:
    return refused_append(ctx, IngestDoc(text="a" * TEN_MB, label="b"))


@case("grpc-10mb-label", 413, "TooLarge", "label is 10 MiB", "SEARCHTUNER_MAX_DOCUMENT_BYTES")
def _(ctx: Context) -> Answer:
    return refused_append(ctx, IngestDoc(text="a", label="b" * TEN_MB))


@case("grpc-2mb-image", 413, "TooLarge", "image is 2.0 MiB", "Resize or recompress", STILL_OPEN)
def _(ctx: Context) -> Answer:
    return refused_append(ctx, IngestDoc(image=_png() + b"\0" * (2 << 20), label="b"))


@case("grpc-2mb-tensor", 413, "TooLarge", "tensor is 2 MiB", "Make the tensor smaller")
def _(ctx: Context) -> Answer:
    return refused_append(ctx, IngestDoc(tensor=np.zeros(1 << 19, dtype=np.float32), label="b"))


@case("grpc-file-uri", 400, "InvalidRequest", "'uri'", "never reads files by path", "'image'")
def _(ctx: Context) -> Answer:
    return refused_append(ctx, IngestDoc(uri="file:///etc/passwd", label="b"))


@case("grpc-message-over-64mib", 413, "RESOURCE_EXHAUSTED", "65.0 MiB", "smaller requests")
def _(ctx: Context) -> Answer:
    query = DocList[RunQuery]([RunQuery(run_id="r" * (65 << 20))])
    return ctx.me.grpc_answer("/runs/get", query, RunDoc)


@case("grpc-10mb-run-id", 404, "RunNotFound", "(10,485,760 characters) not found", "GET /runs")
def _(ctx: Context) -> Answer:
    return ctx.me.grpc_answer(
        "/runs/get", DocList[RunQuery]([RunQuery(run_id="r" * TEN_MB)]), RunDoc
    )


@case("grpc-too-many-open-uploads", 429, "TooManyUploads", "open uploads", "commit or abort one")
def _(ctx: Context) -> Answer:
    """A fresh owner opens uploads until refused (the limit is per owner), then commits them."""
    owner = Caller(ctx.me.service, _token(ctx.me.service, "bad-input-uploads"))
    opened: list[str] = []
    try:
        for _attempt in range(64):
            try:
                opened.append(owner.begin())
            except Exception as err:
                return grpc_failure(err)
        return Answer(200, "", f"{len(opened)} uploads open and no refusal")
    finally:
        for upload_id in opened:
            owner.commit(upload_id)


# Runs: POST /runs (HTTP) and /runs/create (gRPC)

ALLOWED_MODELS = "allowed: all-MiniLM-L6-v2"
run_case("run-unknown-backbone", {"model": "bert-huge-9000"}, 400, "InvalidRequest",
         "unknown model 'bert-huge-9000'", ALLOWED_MODELS)  # fmt: skip
run_case("run-backbone-is-a-path", {"model": "/etc/passwd"}, 400, "InvalidRequest",
         "looks like a file path", "registered backbones")  # fmt: skip
run_case("run-unknown-loss", {"config": {"loss": "FancyLoss"}}, 400, "InvalidRequest",
         "unknown loss 'FancyLoss'", "allowed: ", "TripletMarginLoss")  # fmt: skip
run_case("run-unknown-miner", {"config": {"miner": "grumpy"}}, 400, "InvalidRequest",
         "unknown miner 'grumpy'", "allowed: all, hard, semihard")  # fmt: skip
run_case("run-unknown-optimizer", {"config": {"optimizer": "SuperAdam"}}, 400, "InvalidRequest",
         "unknown optimizer 'SuperAdam'", "AdamW")  # fmt: skip
run_case("run-unknown-scheduler", {"config": {"scheduler": "zigzag"}}, 400, "InvalidRequest",
         "scheduler", "'linear', 'cosine' or 'constant'", "'zigzag'")  # fmt: skip
run_case("run-negative-learning-rate", {"config": {"learning_rate": -0.001}}, 400,
         "InvalidRequest", "learning_rate", "greater than 0", "-0.001")  # fmt: skip
run_case("run-learning-rate-is-text", {"config": {"learning_rate": "fast"}}, 400,
         "InvalidRequest", "learning_rate", "valid number", "'fast'")  # fmt: skip
run_case("run-zero-epochs", {"config": {"epochs": 0}}, 400, "InvalidRequest",
         "epochs", "greater than or equal to 1", "got 0")  # fmt: skip
run_case("run-zero-max-steps", {"config": {"max_steps": 0}}, 400, "InvalidRequest",
         "max_steps", "greater than or equal to 1")  # fmt: skip
run_case("run-batch-size-one", {"config": {"batch_size": 1}}, 400, "InvalidRequest",
         "batch_size", "greater than or equal to 2")  # fmt: skip
run_case("run-unknown-training-parameter", {"config": {"epochz": 3}}, 400, "InvalidRequest",
         "epochz", "unknown training parameter", "allowed: batch_size")  # fmt: skip
run_case("run-unknown-model-option", {"model_options": {"colour": "red"}}, 400,
         "InvalidRequest", "colour", "allowed: pooling")  # fmt: skip
run_case("run-managed-config", {"config": {"checkpoint_dir": "/tmp"}}, 400, "InvalidRequest",
         "checkpoint_dir is set by the service", "remove it")  # fmt: skip
run_case("run-model-not-a-string", {"model": 42}, 422, None, "body.model", "valid string")
run_case("run-train-data-missing", {"train_data": None}, 422, None,
         "body.train_data", "Field required")  # fmt: skip
run_case("run-config-not-an-object", {"config": [1, 2]}, 422, None,
         "body.config", "valid dictionary")  # fmt: skip
run_case("run-nnodes-zero", {"nnodes": 0}, 422, None, "nnodes", "greater than or equal to 1")
run_case("run-onnx-not-a-bool", {"onnx": "perhaps"}, 422, None, "onnx", "valid boolean")
run_case("run-10mb-name", {"name": "n" * TEN_MB}, 400, "InvalidRequest",
         "name: String should have at most 200 characters")  # fmt: skip
run_case("run-10mb-model", {"model": "m" * TEN_MB}, 400, "InvalidRequest",
         "model: String should have at most 200 characters")  # fmt: skip
run_case(
    "run-10mb-loss", {"config": {"loss": "L" * TEN_MB}}, 400, "InvalidRequest",
    "unknown loss", "TripletMarginLoss",
)  # fmt: skip
run_case(
    "run-unknown-top-level-field", {"epochs": 0}, 422, None, "epochs",
)  # fmt: skip


@case("run-body-not-json", 422, None, "JSON decode error")
def _(ctx: Context) -> Answer:
    headers = {"Content-Type": "application/json"}
    return http_answer(ctx.me.http("POST", "/runs", data=b'{"model": ', headers=headers))


NOT_FOUND = ("not found (the request's train_data)", "upload it first with POST /datasets")
run_case("run-malformed-handle", {"train_data": "not-a-handle"}, 400, "InvalidRequest",
         "dataset not-a-handle", *NOT_FOUND)  # fmt: skip
run_case("run-unknown-handle", {"train_data": MISSING_DATASET}, 400, "InvalidRequest",
         MISSING_DATASET, *NOT_FOUND)  # fmt: skip
run_case("run-model-handle-as-data", {"train_data": f"stm1:{'0' * 64}:12@file:///x"}, 400,
         "InvalidRequest", *NOT_FOUND)  # fmt: skip
run_case("run-eval-data-path", {"eval_data": "../../etc/passwd"}, 400, "InvalidRequest",
         "not found (the request's eval_data)")  # fmt: skip
run_case(
    "run-10mb-name-missing-field", {"name": "n" * TEN_MB, "train_data": None}, 422, None,
    "body.train_data", "Field required",
)  # fmt: skip
run_case("run-10mb-handle", {"train_data": "std1:" + "0" * TEN_MB}, 400, "InvalidRequest",
         "train_data: String should have at most 200 characters")  # fmt: skip


@case("run-foreign-handle", 400, "InvalidRequest", *NOT_FOUND)
def _(ctx: Context) -> Answer:
    """Another owner's dataset: refused exactly like one never uploaded."""
    return http_answer(ctx.me.create_run(train_data=ctx.others["dataset"]))


def fit(ctx: Context, **fields: Any) -> Answer:
    request = FitRequest(
        **{"model": MODEL, "train_data": ctx.before["dataset"]["handle"], **fields}
    )
    return ctx.me.grpc_answer("/runs/create", DocList[FitRequest]([request]), RunDoc)


@case("grpc-run-unknown-backbone", 400, "InvalidRequest", "'no-such-backbone'", ALLOWED_MODELS)
def _(ctx: Context) -> Answer:
    return fit(ctx, model="no-such-backbone")


@case("grpc-run-nan-learning-rate", 400, "InvalidRequest", "learning_rate is nan", "finite number")
def _(ctx: Context) -> Answer:
    return fit(ctx, config={**RUN_CONFIG, "learning_rate": float("nan")})


@case("grpc-run-infinite-epochs", 400, "InvalidRequest", "epochs is inf", "finite number")
def _(ctx: Context) -> Answer:
    return fit(ctx, config={**RUN_CONFIG, "epochs": float("inf")})


@case("grpc-run-missing-train-data", 400, "InvalidRequest", "train_data", "at least 1 character")
def _(ctx: Context) -> Answer:
    return fit(ctx, train_data="")


@case("grpc-run-negative-checkpoints", 400, "InvalidRequest", "checkpoint_every_steps", ">= 1")
def _(ctx: Context) -> Answer:
    answer = fit(ctx, checkpoint_every_steps=-5)
    message = answer.message.replace("greater than or equal to", ">=")
    return Answer(answer.status, answer.error, message)


# Runs that only fail once their batches are drawn (see the module docstring)


def late_refusal(ctx: Context, name: str) -> Answer:
    response = ctx.late[name]
    if response.status_code != 201:
        return http_answer(response)
    record = wait_for_end(ctx.me, response.json()["run_id"], 300)
    return Answer(201, record["state"], record["reason"])


LATE = ("InvalidRequest", "FAILED")


@case("run-batch-larger-than-dataset", (400, 201), LATE, "batch_size=1000", "use batch_size <=")
def _(ctx: Context) -> Answer:
    return late_refusal(ctx, "batch-larger-than-dataset")


@case("run-every-label-one-item", (400, 201), LATE, "2 or more items", "add items to more labels")
def _(ctx: Context) -> Answer:
    return late_refusal(ctx, "every-label-one-item")


# Handles of runs, checkpoints and models

RUN_NOT_FOUND = ("not found", "list your runs with GET /runs")


@case("get-run-malformed-id", 404, "RunNotFound", "run ../etc not found", RUN_NOT_FOUND[1])
def _(ctx: Context) -> Answer:
    return ctx.me.grpc_answer("/runs/get", DocList[RunQuery]([RunQuery(run_id="../etc")]), RunDoc)


@case("get-run-unknown-id", 404, "RunNotFound", MISSING_RUN, *RUN_NOT_FOUND)
def _(ctx: Context) -> Answer:
    return http_answer(ctx.me.http("GET", f"/runs/{MISSING_RUN}"))


@case("get-foreign-run", 404, "RunNotFound", *RUN_NOT_FOUND)
def _(ctx: Context) -> Answer:
    return http_answer(ctx.me.http("GET", f"/runs/{ctx.others['run_id']}"))


@case("delete-unknown-run", 404, "RunNotFound", *RUN_NOT_FOUND)
def _(ctx: Context) -> Answer:
    return http_answer(ctx.me.http("DELETE", f"/runs/{MISSING_RUN}"))


@case("model-of-failed-run", 409, None, "is FAILED and has no model yet", "reaches FINISHED")
def _(ctx: Context) -> Answer:
    refused = ctx.me.create_run(
        model="no-such-backbone", train_data=ctx.before["dataset"]["handle"]
    )
    assert refused.status_code == 400, refused.text
    run_id = RUN_ID.search(refused.text)[0]
    return http_answer(ctx.me.http("GET", f"/runs/{run_id}/model"))


@case("events-after-not-an-integer", 422, None, "query.after", "valid integer")
def _(ctx: Context) -> Answer:
    path = f"/runs/{ctx.before['run_id']}/events?follow=false&after=abc"
    return http_answer(ctx.me.http("GET", path))


@case("grpc-events-negative-limit", 400, "InvalidRequest", "limit", "non-negative integer")
def _(ctx: Context) -> Answer:
    query = DocList[RunQuery]([RunQuery(run_id=ctx.before["run_id"])])
    return ctx.me.grpc_answer("/runs/events", query, EventDoc, limit=-3)


@case("grpc-publish-key-traversal", 400, "InvalidRequest", "'..' is not allowed", "segments")
def _(ctx: Context) -> Answer:
    request = DocList[PublishRequest]([PublishRequest(checkpoint_key="../../../etc/passwd")])
    return ctx.me.grpc_answer("/publish", request, PublishResponse)


@case("grpc-publish-foreign-owner", 404, "NotFound", "no checkpoint", "your namespace")
def _(ctx: Context) -> Answer:
    key = f"runs/{ctx.others['run_id']}/best.safetensors"
    request = DocList[PublishRequest]([PublishRequest(owner="bad-input-other", checkpoint_key=key)])
    return ctx.me.grpc_answer("/publish", request, PublishResponse)


# Tokens

NEEDS_TOKEN = ("needs a token", "Authorization: Bearer <token>")
NOT_VALID = ("the token is not valid", "searchtuner token create")


def anonymous(ctx: Context, headers: dict[str, str], path: str = "/datasets") -> Answer:
    url = f"{ctx.me.service.http}{path}"
    response = requests.get(url, headers=headers, timeout=Caller.HTTP_TIMEOUT)
    if response.status_code == 401:
        assert response.headers.get("www-authenticate") == "Bearer"
    return http_answer(response)


@case("http-no-token", 401, "Unauthenticated", *NEEDS_TOKEN)
def _(ctx: Context) -> Answer:
    return anonymous(ctx, {})


@case("http-wrong-token", 401, "Unauthenticated", *NOT_VALID)
def _(ctx: Context) -> Answer:
    return anonymous(ctx, {"Authorization": "Bearer st_0123456789abcdef_" + "A" * 43})


@case("http-malformed-token", 401, "Unauthenticated", *NOT_VALID)
def _(ctx: Context) -> Answer:
    return anonymous(ctx, {"Authorization": "Bearer not-a-token"})


@case("http-revoked-token", 401, "Unauthenticated", "revoked", "ask for a new one")
def _(ctx: Context) -> Answer:
    tokens = TokenStore(open_store(ctx.me.service.store_uri), cache_seconds=0)
    issued = tokens.create("bad-input-revoked", "revoked at once")
    tokens.revoke(issued.info.token_id)
    return anonymous(ctx, {"Authorization": f"Bearer {issued.token}"})


@case("http-basic-auth", 401, "Unauthenticated", *NEEDS_TOKEN)
def _(ctx: Context) -> Answer:
    return anonymous(ctx, {"Authorization": "Basic " + base64.b64encode(b"me:pw").decode()})


@case("http-token-in-query", 401, "Unauthenticated", *NEEDS_TOKEN)
def _(ctx: Context) -> Answer:
    return anonymous(ctx, {}, f"/runs?token={ctx.me.token}")


@case("grpc-no-token", 401, "UNAUTHENTICATED", *NEEDS_TOKEN)
def _(ctx: Context) -> Answer:
    return ctx.me.grpc_answer("/datasets/list", DocList[Empty]([Empty()]), DatasetDoc, metadata=())


@case("grpc-wrong-token", 401, "UNAUTHENTICATED", *NOT_VALID)
def _(ctx: Context) -> Answer:
    metadata = (("authorization", "Bearer st_0123456789abcdef_" + "B" * 43),)
    query = DocList[RunQuery]([RunQuery()])
    return ctx.me.grpc_answer("/runs/list", query, RunDoc, metadata=metadata)


@case("grpc-token-in-parameters-only", 401, "UNAUTHENTICATED", *NEEDS_TOKEN)
def _(ctx: Context) -> Answer:
    query = DocList[RunQuery]([RunQuery()])
    return ctx.me.grpc_answer("/runs/list", query, RunDoc, metadata=(), token=ctx.me.token)


def _param(c: Case) -> Any:
    marks = [pytest.mark.xfail(reason=f"BUG: {c.bug}", strict=True, run=c.run)] if c.bug else []
    return pytest.param(c, id=c.id, marks=marks)


def _within(value: Any, expected: Any) -> bool:
    return value in expected if isinstance(expected, tuple) else value == expected


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_malformed_request_is_refused_with_what_to_fix(ctx: Context, case: Case) -> None:
    answer = case.send(ctx)
    print(f"{case.id}: {answer.status} {answer.error}: {answer.message[:300]}")
    assert _within(answer.status, case.status), answer
    if case.error is not None:
        assert _within(answer.error, case.error), answer
    assert len(answer.message) <= MAX_MESSAGE, (len(answer.message), answer.message[:300])
    assert max(answer.size, len(answer.message)) <= MAX_ANSWER_BYTES, answer.size
    missing = [fragment for fragment in case.fragments if fragment not in answer.message]
    assert not missing, (missing, answer.message)
    ctx.me.alive()


def test_there_are_at_least_40_cases() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 40


def test_the_service_is_up_and_what_was_stored_before_is_intact(ctx: Context) -> None:
    # (keep this test last: it runs after every case above)
    assert ctx.me.http("GET", "/healthz").json() == {"status": "ok"}
    before = ctx.before
    listed = {row["handle"]: row for row in ctx.me.http("GET", "/datasets").json()}
    assert listed.get(before["dataset"]["handle"]) == before["listed"]
    over_grpc = ctx.me.grpc("/datasets/list", DocList[Empty]([Empty()]), DatasetDoc)
    assert before["dataset"]["handle"] in {doc.handle for doc in over_grpc}
    assert _snapshot(ctx.me, before["run_id"]) == {
        key: before[key] for key in ("record", "metrics", "model_sha256")
    }
    runs = ctx.me.http("GET", "/runs")
    assert runs.status_code == 200 and before["run_id"] in {r["run_id"] for r in runs.json()}
    assert ctx.other.http("GET", "/runs").status_code == 200
