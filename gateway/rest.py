"""The REST API of the SearchTuner gateway, over the executors' endpoints.

Each route turns an HTTP request into a call of an executor endpoint through jina's streamer
(so it reaches the same code as a gRPC client's call), and the executor's error into an HTTP
status with its message: 400 for a request to fix, 404 for what does not exist (or belongs to
another owner), 409 for an operation the run's state does not allow, 503 when the store is
unreachable. The OpenAPI description is served at ``/docs``.
"""

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from docarray import BaseDoc, DocList
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from jina.proto import jina_pb2
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from searchtuner.artifacts import ModelNotFound, owned_archive
from searchtuner.client.errors import STATUS_OF_ERROR
from searchtuner.errors import SearchTunerError, shorten
from searchtuner.runs import TERMINAL_STATES
from searchtuner.service.limits import Limits, env_name, human_bytes
from searchtuner.service.owners import owner_of, store_uri_or_default
from searchtuner.service.packing import csv_chunks, jsonl_chunks, pack
from searchtuner.service.schemas import (
    DatasetDoc,
    Empty,
    EventDoc,
    FitRequest,
    LogDoc,
    MetricsDoc,
    PackedBatch,
    RunDoc,
    RunQuery,
    TelemetrySnapshot,
    UploadRequest,
    UploadStatus,
)
from searchtuner.store import open_store
from searchtuner.telemetry import config_from_env
from searchtuner.telemetry.prometheus import CONTENT_TYPE, merge_expositions

# Executor errors arrive as their class name; the SDK and the gateway share one table.
UPLOAD_FORMATS = {
    "text/csv": ".csv",
    "application/x-ndjson": ".jsonl",
    "application/jsonl": ".jsonl",
    "application/json-lines": ".jsonl",
}
POLL_SECONDS = 0.5
EVENTS_PAGE = 1000


class ServiceError(Exception):
    """An error to answer with: an HTTP status and a message that says what to fix."""

    def __init__(self, status: int, message: str, error: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = error


class FitBody(BaseModel):
    """A fine-tuning run: a backbone, its conversion options, data and training parameters."""

    model_config = ConfigDict(extra="forbid")  # a misplaced "epochs" must not be ignored

    model: str = Field(description="A backbone from GET /models, e.g. all-MiniLM-L6-v2.")
    train_data: str = Field(description="A dataset handle from POST /datasets (std1:...).")
    eval_data: str | None = Field(
        default=None, description="A dataset handle to evaluate on before and after."
    )
    model_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Conversion: pooling, freeze, output_dim, normalize, max_length...",
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Training parameters (TrainConfig): epochs, batch_size, loss, miner, "
        "learning_rate... Leave empty for defaults that work.",
    )
    name: str | None = Field(default=None, description="A name for people.")
    onnx: bool = Field(default=True, description="Also export model.onnx into the bundle.")
    checkpoint_every_steps: int = Field(
        default=0, ge=0, description="Save a resumable checkpoint every N steps (0: automatic)."
    )
    processes_per_node: int = Field(
        default=1, ge=1, description="Training processes per node, one per GPU (data-parallel)."
    )
    nnodes: int = Field(default=1, ge=1, description="Nodes the run spans.")


class Executors:
    """Calls executor endpoints through the gateway's streamer and raises ServiceError."""

    def __init__(self, streamer: Any) -> None:
        self.streamer = streamer

    async def call(
        self,
        endpoint: str,
        docs: DocList[Any],
        out: type[BaseDoc],
        parameters: dict[str, Any] | None = None,
    ) -> DocList[Any]:
        """One request to ``endpoint``; its answer, or ServiceError with the status to send."""
        async for response in self.streamer.stream_docs(
            docs=docs,
            exec_endpoint=endpoint,
            parameters=parameters or {},
            request_size=max(len(docs), 1),
            return_results=True,
            return_type=DocList[out],
        ):
            status = response.header.status
            if status.code == jina_pb2.StatusProto.ERROR:
                name = status.exception.name
                message = " ".join(status.exception.args) or status.description or name
                raise ServiceError(STATUS_OF_ERROR.get(name, 500), message, name)
            return DocList[out](response.docs)
        raise ServiceError(502, f"no answer from the executors for {endpoint}")


def _parameters(request: Request) -> dict[str, Any]:
    """Request parameters every call carries: the caller's token, if any."""
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    return {"token": token} if scheme.lower() == "bearer" and token else {}


def _json(doc: BaseDoc, status: int = 200) -> JSONResponse:
    data = doc.dict()
    data.pop("id", None)
    return JSONResponse(data, status_code=status)


def add_rest_routes(app: FastAPI, streamer: Any, logger: Any) -> None:
    """Add the REST API to jina's FastAPI app."""
    executors = Executors(streamer)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, err: ServiceError) -> JSONResponse:
        return JSONResponse({"error": err.error, "detail": err.message}, status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, without echoing the request back (it may be megabytes)."""
        return JSONResponse(
            {"error": "ValidationError", "detail": describe_invalid_body(err.errors())},
            status_code=422,
        )

    async def run(request: Request, run_id: str) -> RunDoc:
        docs = await executors.call(
            "/runs/get", DocList[RunQuery]([RunQuery(run_id=run_id)]), RunDoc, _parameters(request)
        )
        return docs[0]

    @app.get("/healthz", tags=["service"], summary="Liveness: the gateway answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    metrics_on = config_from_env().metrics

    @app.get(
        "/metrics",
        tags=["service"],
        summary="Prometheus metrics of every executor (with --metrics)",
        response_class=PlainTextResponse,
    )
    async def metrics() -> Response:
        """Runs by state, queue length, training samples/s, ingest documents and docs/s,
        in the Prometheus text format; each executor of the Flow measures its part and the
        samples carry a ``service`` label naming it. 404 unless the service runs with
        ``--metrics`` (``SEARCHTUNER_METRICS=true``)."""
        if not metrics_on:
            raise ServiceError(
                404,
                "metrics are off: start the service with --metrics (or set "
                "SEARCHTUNER_METRICS=true) to serve them here",
                "NotFound",
            )
        docs = await executors.call(
            "/telemetry/metrics",
            DocList[TelemetrySnapshot]([TelemetrySnapshot(service="gateway")]),
            TelemetrySnapshot,
        )
        texts = {doc.service: doc.text for doc in docs if doc.text}
        text = await run_in_threadpool(merge_expositions, texts)
        return Response(text, media_type=CONTENT_TYPE)

    @app.post(
        "/datasets",
        tags=["datasets"],
        status_code=201,
        summary="Upload a dataset (CSV or JSON lines, streamed); answers with its handle",
    )
    async def upload_dataset(
        request: Request, kind: str = "", name: str = "", batch_size: int = 5000
    ) -> JSONResponse:
        """Stream a CSV (``Content-Type: text/csv``) or JSON-lines
        (``application/x-ndjson``) body. Columns/fields: ``text,label`` for labelled data,
        ``query,document`` for pairs, ``text`` alone for unlabelled. The body is spooled to a
        temporary file and sent to the ingest executor in packed batches of ``batch_size``
        rows; the answer holds the dataset handle and the validation report, in which rows
        that do not parse are findings."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        suffix = UPLOAD_FORMATS.get(content_type)
        if suffix is None:
            raise ServiceError(
                415,
                f"unsupported Content-Type {content_type or '(none)'!r}: send text/csv or "
                "application/x-ndjson",
            )
        if not 1 <= batch_size <= 10_000:
            raise ServiceError(400, f"batch_size must be 1..10000, got {batch_size}")
        parameters = _parameters(request)
        with tempfile.TemporaryDirectory(prefix="searchtuner-upload-") as folder:
            path = Path(folder) / f"upload{suffix}"
            await _spool(request, path)
            begun = await executors.call(
                "/datasets/begin",
                DocList[UploadRequest]([UploadRequest(kind=kind, name=name)]),
                UploadStatus,
                parameters,
            )
            upload_id = begun[0].upload_id
            try:
                chunks = _chunks(path, suffix, batch_size)
                while True:
                    chunk = await run_in_threadpool(next, chunks, None)
                    if chunk is None:
                        break
                    await executors.call(
                        "/datasets/append_packed",
                        DocList[PackedBatch]([chunk]),
                        UploadStatus,
                        {**parameters, "upload_id": upload_id},
                    )
                done = await executors.call(
                    "/datasets/commit",
                    DocList[UploadRequest]([UploadRequest(upload_id=upload_id)]),
                    DatasetDoc,
                    parameters,
                )
            except ServiceError:
                await _abort(executors, upload_id, parameters)
                raise
        return _json(done[0], 201)

    @app.get("/datasets", tags=["datasets"], summary="The caller's datasets")
    async def list_datasets(request: Request) -> JSONResponse:
        docs = await executors.call(
            "/datasets/list", DocList[Empty]([Empty()]), DatasetDoc, _parameters(request)
        )
        return JSONResponse([_strip(doc) for doc in docs])

    @app.post("/runs", tags=["runs"], status_code=201, summary="Start a fine-tuning run")
    async def create_run(body: FitBody, request: Request) -> JSONResponse:
        """Answers at once with the run (state QUEUED); follow it with GET /runs/{id}/events."""
        fields = body.model_dump()
        fit = FitRequest(**{**fields, "eval_data": body.eval_data or "", "name": body.name or ""})
        docs = await executors.call(
            "/runs/create", DocList[FitRequest]([fit]), RunDoc, _parameters(request)
        )
        return _json(docs[0], 201)

    @app.get("/runs", tags=["runs"], summary="The caller's runs, newest first")
    async def list_runs(request: Request) -> JSONResponse:
        docs = await executors.call(
            "/runs/list", DocList[RunQuery]([RunQuery()]), RunDoc, _parameters(request)
        )
        return JSONResponse([_strip(doc) for doc in docs])

    @app.get("/runs/{run_id}", tags=["runs"], summary="A run: state, progress, model handle")
    async def get_run(run_id: str, request: Request) -> JSONResponse:
        return _json(await run(request, run_id))

    @app.post("/runs/{run_id}/cancel", tags=["runs"], summary="Cancel a run (keeps its data)")
    async def cancel_run(run_id: str, request: Request) -> JSONResponse:
        docs = await executors.call(
            "/runs/cancel",
            DocList[RunQuery]([RunQuery(run_id=run_id)]),
            RunDoc,
            _parameters(request),
        )
        return _json(docs[0])

    @app.delete("/runs/{run_id}", tags=["runs"], summary="Delete a run and what it stored")
    async def delete_run(run_id: str, request: Request) -> JSONResponse:
        docs = await executors.call(
            "/runs/delete",
            DocList[RunQuery]([RunQuery(run_id=run_id)]),
            RunDoc,
            _parameters(request),
        )
        return _json(docs[0])

    @app.get("/runs/{run_id}/metrics", tags=["runs"], summary="Metrics before and after")
    async def run_metrics(run_id: str, request: Request) -> JSONResponse:
        docs = await executors.call(
            "/runs/metrics",
            DocList[RunQuery]([RunQuery(run_id=run_id)]),
            MetricsDoc,
            _parameters(request),
        )
        return _json(docs[0])

    @app.get("/runs/{run_id}/logs", tags=["runs"], summary="The run's log as text")
    async def run_logs(run_id: str, request: Request) -> PlainTextResponse:
        docs = await executors.call(
            "/runs/logs",
            DocList[RunQuery]([RunQuery(run_id=run_id)]),
            LogDoc,
            _parameters(request),
        )
        return PlainTextResponse(docs[0].text)

    @app.get(
        "/runs/{run_id}/events",
        tags=["runs"],
        summary="The run's events as server-sent events (live until the run ends)",
    )
    async def run_events(
        run_id: str,
        request: Request,
        after: int = 0,
        follow: bool = True,
        timeout: float = 3600.0,
    ) -> StreamingResponse:
        """Each event is ``id: <seq>``, ``event: <type>``, ``data: <json>``. With ``follow``
        the stream stays open until the run reaches a final state (then ``event: end``), the
        client goes away, or ``timeout`` seconds pass. Reconnecting with ``Last-Event-ID``
        (or ``after``) resumes after that event."""
        parameters = _parameters(request)
        await run(request, run_id)  # 404 before the stream starts
        start = int(request.headers.get("last-event-id", after) or 0)
        stream = _event_stream(executors, request, run_id, parameters, start, follow, timeout)
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/runs/{run_id}/model", tags=["models"], summary="The tuned model's handle")
    async def run_model(run_id: str, request: Request) -> JSONResponse:
        record = await run(request, run_id)
        if not record.model_handle:
            raise ServiceError(
                409,
                f"run {run_id} is {record.state} and has no model yet; a model is published "
                "when the run reaches FINISHED",
            )
        return JSONResponse(
            {
                "run_id": run_id,
                "handle": record.model_handle,
                "download": f"/runs/{run_id}/model/download",
            }
        )

    @app.get(
        "/runs/{run_id}/model/download",
        tags=["models"],
        summary="Download the tuned model's bundle (a tar archive)",
        response_class=Response,
    )
    async def download_model(run_id: str, request: Request) -> StreamingResponse:
        record = await run(request, run_id)
        if not record.model_handle:
            raise ServiceError(409, f"run {run_id} is {record.state} and has no model yet")
        owner = owner_of(_parameters(request))
        chunks, size, sha256 = await run_in_threadpool(_open_model, owner, record.model_handle)
        return StreamingResponse(
            _iterate(chunks),
            media_type="application/x-tar",
            headers={
                "Content-Length": str(size),
                "Content-Disposition": f'attachment; filename="{run_id}.tar"',
                "X-SearchTuner-SHA256": sha256,
                "X-SearchTuner-Handle": record.model_handle,
            },
        )

    logger.debug("SearchTuner REST routes added")


async def _spool(request: Request, path: Path) -> None:
    size = 0
    limit = Limits.from_env().max_dataset_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, _upload_too_large(int(declared), limit), "TooLarge")
    with open(path, "wb") as handle:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ServiceError(413, _upload_too_large(size, limit), "TooLarge")
            handle.write(chunk)
    if size == 0:
        raise ServiceError(400, "the upload is empty: send the dataset file as the body")


async def _abort(executors: Executors, upload_id: str, parameters: dict[str, Any]) -> None:
    """Drop a refused upload's stored shards now, not at the idle timeout (best effort: the
    refusal is what the client must see)."""
    with contextlib.suppress(ServiceError):  # e.g. expired: the idle timeout cleans up then
        await executors.call(
            "/datasets/abort",
            DocList[UploadRequest]([UploadRequest(upload_id=upload_id)]),
            UploadStatus,
            {**parameters, "upload_id": upload_id},
        )


def describe_invalid_body(errors: Any) -> str:
    """One clause per bad field of a request body (FastAPI's validation errors), each short."""
    clauses = []
    for item in list(errors)[:20]:
        where = ".".join(str(part) for part in item.get("loc", ()))
        message = shorten(str(item.get("msg", "")), 300)
        if item.get("type") == "extra_forbidden":
            message = f"unknown field; allowed: {', '.join(FitBody.model_fields)}"
        clauses.append(f"{shorten(where)}: {message}" if where else message)
    return "invalid request: " + "; ".join(clauses)


def _upload_too_large(size: int, limit: int) -> str:
    return (
        f"the upload is over {human_bytes(limit)} (at least {human_bytes(size)}), the most one "
        f"dataset may hold ({env_name('max_dataset_bytes')}): split the dataset and upload the "
        "parts as separate datasets"
    )


def _chunks(path: Path, suffix: str, batch_size: int) -> Iterator[PackedBatch]:
    """The spooled upload as packed batches of ``batch_size`` rows."""
    split = csv_chunks if suffix == ".csv" else jsonl_chunks
    fmt = "csv" if suffix == ".csv" else "jsonl"

    def generate() -> Iterator[PackedBatch]:
        try:
            for rows, count in split(path, batch_size):
                yield pack(rows, fmt, count)
        except SearchTunerError as err:
            raise ServiceError(400, str(err), type(err).__name__) from err

    return generate()


def _strip(doc: BaseDoc) -> dict[str, Any]:
    data = doc.dict()
    data.pop("id", None)
    return data


async def _event_stream(
    executors: Executors,
    request: Request,
    run_id: str,
    parameters: dict[str, Any],
    after: int,
    follow: bool,
    timeout: float,
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(timeout, 0.0)
    query = DocList[RunQuery]([RunQuery(run_id=run_id)])
    final_state = ""
    while True:
        events = await executors.call(
            "/runs/events", query, EventDoc, {**parameters, "after": after, "limit": EVENTS_PAGE}
        )
        for event in events:
            after = max(after, event.seq)
            yield _sse(event)
        if len(events) == EVENTS_PAGE:
            continue  # more are waiting
        if final_state or not follow:
            break
        record = (await executors.call("/runs/get", query, RunDoc, parameters))[0]
        if record.state in {str(state) for state in TERMINAL_STATES}:
            final_state = record.state  # one more read: events written just before the end
            continue
        if loop.time() > deadline or await request.is_disconnected():
            return
        await asyncio.sleep(POLL_SECONDS)
    if final_state:
        yield f"event: end\ndata: {json.dumps({'state': final_state})}\n\n"


def _sse(event: EventDoc) -> str:
    data = _strip(event)
    return f"id: {event.seq}\nevent: {event.type}\ndata: {json.dumps(data)}\n\n"


def _open_model(owner: str, handle_text: str) -> tuple[Iterator[bytes], int, str]:
    """The bundle archive's chunks, from the caller's namespace only."""
    store = open_store(store_uri_or_default()).for_owner(owner)
    try:
        info = owned_archive(store, handle_text)
        return store.open_stream(info.key), info.size, info.sha256
    except ModelNotFound as err:
        raise ServiceError(404, str(err), "ModelNotFound") from err


async def _iterate(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    while True:
        chunk = await run_in_threadpool(next, chunks, None)
        if chunk is None:
            return
        yield chunk
