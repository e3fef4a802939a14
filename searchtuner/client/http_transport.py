"""The HTTP transport: the service's REST API over ``requests``.

Uploads stream their body (a data file as it is, or JSON lines generated batch by batch);
events come as server-sent events, resumed after the last one seen when the connection
drops; the model archive is downloaded to a file with its SHA-256 checked on the way.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests

from searchtuner.artifacts import BlobReader
from searchtuner.client.errors import (
    ServiceError,
    UnavailableError,
    error_from_body,
    unavailable,
)
from searchtuner.client.progress import progress_bar
from searchtuner.client.sse import parse_stream
from searchtuner.client.transport import (
    EVENTS_PAGE,
    Deadline,
    timed_out,
)
from searchtuner.client.uploads import (
    JSONL_TYPE,
    file_chunks,
    file_content_type,
    item_count,
    jsonl_body,
)
from searchtuner.client.urls import ServiceURL
from searchtuner.data.readers import Source
from searchtuner.errors import DataError
from searchtuner.service.schemas import DatasetDoc, EventDoc, FitRequest, MetricsDoc, RunDoc

UPLOAD_TIMEOUT = 3600.0
"""Seconds to wait for an upload's answer: the service ingests the whole body first."""
STREAM_READ_TIMEOUT = 60.0
"""Seconds of silence after which an event stream is opened again (it resumes, loses nothing)."""
STREAM_SERVER_TIMEOUT = 3600.0
"""The longest the service keeps one event stream open."""
RECONNECT_DELAY = 1.0
_DOWNLOAD_CHUNK = 1 << 20
_CONNECTION_ERRORS = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)


class HttpTransport:
    """Talks to the service's REST API.

    Args:
        url: the parsed ``http://`` or ``https://`` URL.
        token: sent as ``Authorization: Bearer <token>``.
        timeout: seconds to wait for an answer (connecting, and between bytes).
    """

    def __init__(self, url: ServiceURL, token: str | None, timeout: float) -> None:
        self.url = url.base
        self.downloads_models = True
        self.timeout = timeout
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def _request(
        self, method: str, path: str, *, timeout: Any = None, **kwargs: Any
    ) -> requests.Response:
        url = f"{self.url}{path}"
        try:
            response = self.session.request(
                method, url, timeout=timeout if timeout is not None else self.timeout, **kwargs
            )
        except requests.Timeout as err:
            raise UnavailableError(
                f"{method} {url} got no answer in time ({err}); the service may be overloaded, "
                "try again or pass a larger timeout",
                status=504,
            ) from err
        except requests.ConnectionError as err:
            raise unavailable(self.url, _reason(err)) from err
        if response.status_code >= 400:
            raise _error(response, f"{method} {url}")
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as err:
            raise ServiceError(
                f"{method} {self.url}{path} answered with something that is not JSON; is this "
                "URL a SearchTuner service?",
                status=502,
            ) from err

    def upload_dataset(
        self, data: Source, *, kind: str | None, name: str, batch_size: int, progress: bool
    ) -> DatasetDoc:
        path = Path(data) if isinstance(data, str | os.PathLike) else None
        content_type = None if path is None else file_content_type(path, kind)
        body: Iterator[bytes]
        if path is not None and content_type is not None:
            bar = progress_bar(progress, total=path.stat().st_size, unit="B", desc="upload")
            body = file_chunks(path, bar.update)
        else:
            bar = progress_bar(progress, total=item_count(data), unit="items", desc="upload")
            body = _counted(jsonl_body(data, batch_size, kind), bar.update)
            content_type = JSONL_TYPE
        params = {"kind": kind or "", "name": name, "batch_size": batch_size}
        with bar:
            answer = self._json(
                "POST",
                "/datasets",
                params=params,
                data=body,
                headers={"Content-Type": content_type},
                timeout=(self.timeout, max(self.timeout, UPLOAD_TIMEOUT)),
            )
        return DatasetDoc(**answer)

    def list_datasets(self) -> list[DatasetDoc]:
        return [DatasetDoc(**item) for item in self._json("GET", "/datasets")]

    def create_run(self, request: FitRequest) -> RunDoc:
        body = request.dict(exclude={"id"})
        body["eval_data"] = body["eval_data"] or None
        body["name"] = body["name"] or None
        return RunDoc(**self._json("POST", "/runs", json=body))

    def get_run(self, run_id: str) -> RunDoc:
        return RunDoc(**self._json("GET", f"/runs/{_segment(run_id)}"))

    def list_runs(self) -> list[RunDoc]:
        return [RunDoc(**item) for item in self._json("GET", "/runs")]

    def cancel_run(self, run_id: str) -> RunDoc:
        return RunDoc(**self._json("POST", f"/runs/{_segment(run_id)}/cancel"))

    def delete_run(self, run_id: str) -> RunDoc:
        return RunDoc(**self._json("DELETE", f"/runs/{_segment(run_id)}"))

    def events(self, run_id: str, after: int = 0, limit: int = EVENTS_PAGE) -> list[EventDoc]:
        found: list[EventDoc] = []
        for event in self._stream(run_id, after, follow=False, server_timeout=0.0):
            if event is None:
                break
            found.append(event)
            if len(found) >= limit:
                break
        return found

    def follow_events(
        self, run_id: str, after: int, timeout: float | None, poll: float
    ) -> Iterator[EventDoc]:
        """Follow the run's server-sent events; reconnect after the last one when cut off."""
        del poll  # the service pushes events; nothing to poll
        deadline = Deadline(timeout)
        while True:
            left = deadline.remaining()
            server_timeout = STREAM_SERVER_TIMEOUT if left is None else left
            try:
                for event in self._stream(
                    run_id, after, follow=True, server_timeout=server_timeout
                ):
                    if event is None:
                        return  # the run ended
                    after = max(after, event.seq)
                    yield event
            except (*_CONNECTION_ERRORS, requests.Timeout):
                pass  # cut off, or silent for STREAM_READ_TIMEOUT: open it again, resuming
            if deadline.expired:
                raise timed_out(run_id, self.get_run(run_id).state, timeout)
            deadline.sleep(RECONNECT_DELAY)

    def _stream(
        self, run_id: str, after: int, *, follow: bool, server_timeout: float
    ) -> Iterator[EventDoc | None]:
        """The events of one SSE connection; ``None`` for the ``end`` event (the run ended)."""
        params = {"after": after, "follow": "true" if follow else "false"}
        params["timeout"] = f"{server_timeout:.3f}"
        response = self._request(
            "GET",
            f"/runs/{_segment(run_id)}/events",
            params=params,
            headers={"Accept": "text/event-stream", "Last-Event-ID": str(after)},
            stream=True,
            timeout=(self.timeout, max(self.timeout, STREAM_READ_TIMEOUT)),
        )
        with response:
            for message in parse_stream(response.iter_content(chunk_size=None)):
                if message.event == "end":
                    yield None
                    return
                yield _event(message.data, response.url)

    def metrics(self, run_id: str) -> MetricsDoc:
        return MetricsDoc(**self._json("GET", f"/runs/{_segment(run_id)}/metrics"))

    def logs(self, run_id: str) -> str:
        return self._request("GET", f"/runs/{_segment(run_id)}/logs").text

    def model_reader(self, run_id: str) -> BlobReader:
        return _ModelDownload(self, run_id)

    def download_model(self, run_id: str, path: Path) -> str:
        """Download a run's model archive to ``path``; return its SHA-256.

        Raises:
            DataError: the bytes received do not match the SHA-256 the service announced.
        """
        response = self._request(
            "GET",
            f"/runs/{_segment(run_id)}/model/download",
            stream=True,
            timeout=(self.timeout, max(self.timeout, STREAM_READ_TIMEOUT)),
        )
        digest = hashlib.sha256()
        with response, open(path, "wb") as out:
            try:
                for chunk in response.iter_content(chunk_size=_DOWNLOAD_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            except (*_CONNECTION_ERRORS, requests.Timeout) as err:
                raise unavailable(self.url, f"the download broke off: {_reason(err)}") from err
        announced = response.headers.get("X-SearchTuner-SHA256", "")
        if announced and announced != digest.hexdigest():
            raise DataError(
                f"the model archive of run {run_id} arrived with SHA-256 {digest.hexdigest()}, "
                f"but the service sent {announced}; the download was corrupted, try again"
            )
        return digest.hexdigest()

    def close(self) -> None:
        self.session.close()


class _ModelDownload:
    """A BlobReader that downloads one run's model archive through the service."""

    def __init__(self, transport: HttpTransport, run_id: str) -> None:
        self.transport = transport
        self.run_id = run_id

    def download(self, key: str, path: Path) -> object:
        del key  # the service finds the archive from the run
        return self.transport.download_model(self.run_id, path)


def _event(data: str, url: str) -> EventDoc:
    """One event of the stream (its data is the event as JSON)."""
    try:
        return EventDoc(**json.loads(data))
    except (ValueError, TypeError) as err:  # pydantic's ValidationError is a ValueError
        raise ServiceError(
            f"{url} sent an event that is not a SearchTuner event ({err}); is this URL a "
            "SearchTuner service?",
            status=502,
        ) from err


def _error(response: requests.Response, what: str) -> ServiceError:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:500]
    return error_from_body(response.status_code, body, what)


def _reason(err: BaseException) -> str:
    """Why a connection failed, in a few words: the operating system's reason if one is
    among the causes (e.g. "Connection refused"), else the error's text."""
    seen: set[int] = set()
    todo: list[BaseException] = [err]
    while todo:
        cause = todo.pop(0)
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            return str(cause.strerror)
        linked = [getattr(cause, "reason", None), cause.__cause__, cause.__context__, *cause.args]
        todo.extend(item for item in linked if isinstance(item, BaseException))
    text = str(err) or type(err).__name__
    return text if len(text) <= 300 else text[:300] + "…"


def _segment(value: str) -> str:
    """A run id as one path segment (ids never hold '/', but a typo must not reach elsewhere)."""
    from urllib.parse import quote

    return quote(value, safe="")


def _counted(chunks: Iterator[bytes], update: Callable[[int], object]) -> Iterator[bytes]:
    """The chunks, counting the lines (items) of each with ``update``."""
    for chunk in chunks:
        update(chunk.count(b"\n"))
        yield chunk
