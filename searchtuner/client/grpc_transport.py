"""The gRPC transport: the executors' endpoints through ``jina.Client``.

The only module of ``searchtuner`` that uses jina, and only inside functions: importing
``searchtuner`` (or this module) never imports jina; connecting over gRPC needs the
``service`` extra (``pip install 'searchtuner[service]'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from docarray import BaseDoc, DocList

from searchtuner.artifacts import BlobReader
from searchtuner.client.errors import ServiceError, error_from_status, service_error, unavailable
from searchtuner.client.progress import progress_bar
from searchtuner.client.transport import EVENTS_PAGE, poll_events
from searchtuner.client.uploads import item_count, json_lines
from searchtuner.client.urls import ServiceURL
from searchtuner.data.readers import Source
from searchtuner.data.stored import iter_batches
from searchtuner.errors import ConfigError, SearchTunerError
from searchtuner.service.packing import pack
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
    UploadRequest,
    UploadStatus,
)

UPLOAD_TIMEOUT = 3600.0
"""Seconds one upload's stream of batches may take."""
UPLOAD_PREFETCH = 2
"""Batches in flight at once during an upload: memory stays at a few batches."""


class GrpcTransport:
    """Talks to the service's gRPC gateway.

    Args:
        url: the parsed ``grpc://`` (or ``grpcs://``, with TLS) URL.
        token: sent as ``authorization: Bearer <token>`` metadata with every request.
        timeout: seconds a request may take.
    """

    def __init__(self, url: ServiceURL, token: str | None, timeout: float) -> None:
        self.url = url.base
        self.downloads_models = False
        self._address = url
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._jina: Any = None

    def _client(self) -> Any:
        if self._jina is None:
            try:
                from jina import Client
            except ImportError as err:
                raise ConfigError(
                    f"connecting over gRPC ({self.url}) needs jina: pip install "
                    "'searchtuner[service]', or use the service's http:// URL"
                ) from err
            self._jina = Client(
                host=self._address.host,
                port=self._address.port,
                protocol="grpc",
                tls=self._address.tls,
            )
        return self._jina

    def _post(
        self,
        endpoint: str,
        inputs: Iterable[BaseDoc],
        out: type[BaseDoc],
        parameters: dict[str, Any] | None = None,
        **options: Any,
    ) -> DocList[Any]:
        """One call of ``endpoint``; the documents it answers with.

        Raises:
            ServiceError: the executor's error (or NotFoundError, RequestError...).
            UnavailableError: the gateway cannot be reached.
        """
        import grpc
        from jina.excepts import BadServer, BadServerFlow

        client = self._client()
        options.setdefault("timeout", self.timeout)
        # Error answers are collected rather than raised inside jina's event loop: raising
        # there cuts the gRPC stream off and leaves grpc's poller complaining on stderr.
        failed: list[Any] = options.pop("failed", [])
        try:
            answer = client.post(
                on=endpoint,
                inputs=inputs,
                parameters=parameters or {},
                metadata=self._metadata,
                return_type=DocList[out],  # type: ignore[valid-type]
                on_error=failed.append,
                **options,
            )
        except BadServer as err:
            raise grpc_error(err.args[0] if err.args else None) from err
        except ConnectionError as err:  # jina's answer to UNAVAILABLE and DEADLINE_EXCEEDED
            raise unavailable(self.url, _first_line(str(err))) from err
        except (BadServerFlow, grpc.RpcError) as err:
            refused = _refusal(err)
            if refused is not None:
                raise refused from err
            raise ServiceError(
                f"the gRPC call of {endpoint} on {self.url} failed: {_first_line(str(err))}",
                status=502,
            ) from err
        if failed:
            raise grpc_error(failed[0])
        return answer if answer is not None else DocList[out]()  # type: ignore[valid-type]

    def upload_dataset(
        self, data: Source, *, kind: str | None, name: str, batch_size: int, progress: bool
    ) -> DatasetDoc:
        request = UploadRequest(kind=kind or "", name=name)
        begun = self._post("/datasets/begin", DocList[UploadRequest]([request]), UploadStatus)
        upload_id = begun[0].upload_id
        bar = progress_bar(progress, total=item_count(data), unit="items", desc="upload")
        failures: list[SearchTunerError] = []
        refused: list[Any] = []  # error answers to appends: stop sending the rest

        def batches() -> Iterator[PackedBatch]:
            # One packed document per batch: docarray's per-document encoding would cost more
            # than the rows themselves. An error raised inside jina's request stream would
            # reach us as a bare gRPC error; keep it, end the stream, and raise it after.
            try:
                for batch in iter_batches(data, batch_size, kind=kind):
                    if refused:
                        return
                    yield pack(b"".join(json_lines(batch)), "jsonl", len(batch))
                    bar.update(len(batch))
            except SearchTunerError as err:
                failures.append(err)

        with bar:
            try:
                self._post(
                    "/datasets/append_packed",
                    batches(),
                    UploadStatus,
                    {"upload_id": upload_id},
                    request_size=1,
                    prefetch=UPLOAD_PREFETCH,
                    timeout=max(self.timeout, UPLOAD_TIMEOUT),
                    failed=refused,
                )
            except ServiceError:
                if failures:
                    raise failures[0] from None
                raise
        if failures:
            raise failures[0]
        done = DocList[UploadRequest]([UploadRequest(upload_id=upload_id)])
        answer = self._post("/datasets/commit", done, DatasetDoc, {"upload_id": upload_id})
        return DatasetDoc(**_fields(answer[0]))

    def list_datasets(self) -> list[DatasetDoc]:
        docs = self._post("/datasets/list", DocList[Empty]([Empty()]), DatasetDoc)
        return [DatasetDoc(**_fields(doc)) for doc in docs]

    def create_run(self, request: FitRequest) -> RunDoc:
        return self._one("/runs/create", DocList[FitRequest]([request]))

    def get_run(self, run_id: str) -> RunDoc:
        return self._one("/runs/get", _query(run_id))

    def list_runs(self) -> list[RunDoc]:
        docs = self._post("/runs/list", DocList[RunQuery]([RunQuery()]), RunDoc)
        return [RunDoc(**_fields(doc)) for doc in docs]

    def cancel_run(self, run_id: str) -> RunDoc:
        return self._one("/runs/cancel", _query(run_id))

    def delete_run(self, run_id: str) -> RunDoc:
        return self._one("/runs/delete", _query(run_id))

    def events(self, run_id: str, after: int = 0, limit: int = EVENTS_PAGE) -> list[EventDoc]:
        parameters = {"after": after, "limit": limit}
        docs = self._post("/runs/events", _query(run_id), EventDoc, parameters)
        return [EventDoc(**_fields(doc)) for doc in docs]

    def follow_events(
        self, run_id: str, after: int, timeout: float | None, poll: float
    ) -> Iterator[EventDoc]:
        return poll_events(self, run_id, after, timeout, poll)

    def metrics(self, run_id: str) -> MetricsDoc:
        docs = self._post("/runs/metrics", _query(run_id), MetricsDoc)
        return MetricsDoc(**_fields(_single(docs, "/runs/metrics")))

    def logs(self, run_id: str) -> str:
        docs = self._post("/runs/logs", _query(run_id), LogDoc)
        return str(_single(docs, "/runs/logs").text)

    def model_reader(self, run_id: str) -> BlobReader:
        raise ConfigError(
            f"the gRPC API has no model download (run {run_id}); read the model from its store "
            "with searchtuner.get_model(handle), or connect over HTTP"
        )

    def close(self) -> None:
        self._jina = None

    def _one(self, endpoint: str, docs: DocList[Any]) -> RunDoc:
        return RunDoc(**_fields(_single(self._post(endpoint, docs, RunDoc), endpoint)))


def grpc_error(payload: Any) -> ServiceError:
    """The SDK error for a jina error answer (``BadServer.args[0]``: a response or its header).

    The header's status carries the executor's exception: its class name, its arguments (the
    message) and a description.
    """
    header = getattr(payload, "header", payload)
    status = getattr(header, "status", None)
    exception = getattr(status, "exception", None)
    if status is None or exception is None:
        return ServiceError(f"the service answered with an error: {payload!r}", status=500)
    return error_from_status(
        str(exception.name), [str(arg) for arg in exception.args], str(status.description)
    )


def _query(run_id: str) -> DocList[RunQuery]:
    return DocList[RunQuery]([RunQuery(run_id=run_id)])


def _single(docs: DocList[Any], endpoint: str) -> Any:
    if len(docs) != 1:
        raise ServiceError(
            f"{endpoint} answered with {len(docs)} documents instead of one; is this a "
            "SearchTuner service?",
            status=502,
        )
    return docs[0]


def _fields(doc: BaseDoc) -> dict[str, Any]:
    """A document's fields (the answer's class may be a copy jina built from the schema)."""
    return {name: getattr(doc, name) for name in type(doc).model_fields}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no details"


GATEWAY_REFUSALS = {
    "UNAUTHENTICATED": (401, "Unauthenticated"),
    "RESOURCE_EXHAUSTED": (413, "TooLarge"),
}
"""gRPC codes the gateway itself answers with (before any executor), as HTTP status + name."""


def _refusal(err: BaseException) -> ServiceError | None:
    """The gateway's own refusal (a missing token, a request too large), if that is what
    ``err`` (or the gRPC error jina raised it from) is."""
    cause = err if hasattr(err, "code") else err.__cause__
    code = getattr(cause, "code", None)
    if not callable(code):
        return None
    name = getattr(code(), "name", "")
    if name not in GATEWAY_REFUSALS:
        return None
    status, error = GATEWAY_REFUSALS[name]
    details = getattr(cause, "details", None)
    details = details() if callable(details) else str(cause)
    return service_error(status, error, details)
