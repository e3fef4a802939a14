"""The HTTP transport against a stand-in for the REST API (a stdlib server on 127.0.0.1):
streamed uploads, resumed event streams, error answers, checked downloads."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from searchtuner.client import (
    Client,
    NotFoundError,
    RequestError,
    UnavailableError,
    WaitTimeout,
    http_transport,
)
from searchtuner.client.http_transport import HttpTransport
from searchtuner.client.urls import parse_url
from searchtuner.data.schemas import LabeledDoc
from searchtuner.errors import DataError

Handler = Callable[[BaseHTTPRequestHandler, bytes], None]


class _Server:
    """Routes ``METHOD /path`` to handlers; records each request's headers and body."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[dict[str, Any]] = []
        server = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                path = self.path.split("?")[0]
                body = _read_body(self)
                server.requests.append(
                    {
                        "line": f"{self.command} {self.path}",
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                route = server.routes.get(f"{self.command} {path}")
                if route is None:
                    _send_json(self, 404, {"detail": "Not Found"})
                else:
                    route(self, body)

            do_GET = do_POST = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0], 16)
            chunk = handler.rfile.read(size + 2)[:size]
            if size == 0:
                return body
            body += chunk
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def _send_json(handler: BaseHTTPRequestHandler, status: int, data: Any) -> None:
    payload = json.dumps(data).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def _answer(status: int, data: Any) -> Handler:
    """A route that answers with JSON."""
    return lambda handler, body: _send_json(handler, status, data)


def _send_stream(
    handler: BaseHTTPRequestHandler, parts: list[bytes], headers: dict[str, str]
) -> None:
    """A body that ends when the connection closes (how a cut-off stream looks)."""
    handler.send_response(200)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Connection", "close")
    handler.end_headers()
    for part in parts:
        handler.wfile.write(part)
        handler.wfile.flush()
    handler.close_connection = True


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server()
    yield running
    running.close()


_dataset = _answer(201, {"handle": "std1:" + "a" * 64, "n_items": 2, "kind": "labeled"})


def test_a_csv_file_is_streamed_as_it_is(server: _Server, tmp_path: Path) -> None:
    server.routes["POST /datasets"] = _dataset
    data = tmp_path / "train.csv"
    data.write_text("text,label\na cat,animal\na dog,animal\n")
    dataset = Client(server.url, token="secret").upload(data, name="pets", batch_size=500)
    assert dataset.handle == "std1:" + "a" * 64 and dataset.ok
    (request,) = server.requests
    assert request["line"] == "POST /datasets?kind=&name=pets&batch_size=500"
    assert request["headers"]["Content-Type"] == "text/csv"
    assert request["headers"]["Transfer-Encoding"] == "chunked"  # streamed, never read whole
    assert request["headers"]["Authorization"] == "Bearer secret"
    assert request["body"] == data.read_bytes()


def test_documents_are_streamed_as_json_lines(server: _Server) -> None:
    server.routes["POST /datasets"] = _dataset
    docs = [LabeledDoc(text="a cat", label="animal"), LabeledDoc(text="a dog", label="animal")]
    Client(server.url).upload(docs, kind="labeled", batch_size=1)
    (request,) = server.requests
    assert request["headers"]["Content-Type"] == "application/x-ndjson"
    lines = request["body"].decode().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"text": "a cat", "label": "animal"},
        {"text": "a dog", "label": "animal"},
    ]


def test_malformed_rows_are_reported_before_anything_is_stored(server: _Server) -> None:
    server.routes["POST /datasets"] = _dataset
    with pytest.raises(DataError, match="item 1"):
        Client(server.url).upload([{"text": "a cat", "label": "animal"}, {"text": "", "label": ""}])


def _event(seq: int, kind: str = "log", **data: Any) -> bytes:
    payload = {
        "run_id": "r1",
        "seq": seq,
        "time": "2026-01-01T00:00:00Z",
        "type": kind,
        "level": "info",
        "message": f"event {seq}",
        "data": data,
    }
    return f"id: {seq}\nevent: {kind}\ndata: {json.dumps(payload)}\n\n".encode()


def test_a_cut_event_stream_resumes_after_the_last_event(
    server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_transport, "RECONNECT_DELAY", 0.01)
    connections: list[str] = []

    def events(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        connections.append(handler.headers.get("Last-Event-ID", ""))
        sse = {"Content-Type": "text/event-stream"}
        if len(connections) == 1:  # cut off in the middle of event 3
            first = [_event(1, "state", state="TRAINING"), _event(2), b"id: 3\nda"]
            _send_stream(handler, first, sse)
        else:
            end = b'event: end\ndata: {"state": "FINISHED"}\n\n'
            _send_stream(handler, [b": keep-alive\n\n", _event(3), end], sse)

    server.routes["GET /runs/r1/events"] = events
    server.routes["GET /runs/r1"] = _answer(200, {"run_id": "r1", "state": "TRAINING"})
    transport = HttpTransport(parse_url(server.url), None, timeout=5)
    seen = [event.seq for event in transport.follow_events("r1", 0, timeout=10, poll=1)]
    assert seen == [1, 2, 3]
    assert connections == ["0", "2"]
    assert "after=2" in server.requests[-1]["line"]


def test_following_gives_up_at_its_timeout(server: _Server) -> None:
    def silent(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        _send_stream(handler, [_event(1)], {"Content-Type": "text/event-stream"})

    server.routes["GET /runs/r1/events"] = silent
    server.routes["GET /runs/r1"] = _answer(200, {"run_id": "r1", "state": "QUEUED"})
    transport = HttpTransport(parse_url(server.url), None, timeout=5)
    with pytest.raises(WaitTimeout, match="still QUEUED"):
        list(transport.follow_events("r1", 0, timeout=0.2, poll=1))


def test_events_without_following_read_what_is_there(server: _Server) -> None:
    parts = [_event(4), _event(5)]
    server.routes["GET /runs/r1/events"] = lambda h, b: _send_stream(h, parts, {})
    transport = HttpTransport(parse_url(server.url), None, timeout=5)
    assert [e.seq for e in transport.events("r1", after=3)] == [4, 5]
    assert [e.seq for e in transport.events("r1", after=3, limit=1)] == [4]
    assert "follow=false" in server.requests[0]["line"]


def test_error_answers_become_sdk_errors(server: _Server) -> None:
    server.routes["GET /runs/nope"] = _answer(
        404, {"error": "RunNotFound", "detail": "no run nope"}
    )
    server.routes["POST /runs/r1/cancel"] = _answer(
        409, {"error": "InvalidTransition", "detail": "ended"}
    )
    client = Client(server.url)
    with pytest.raises(NotFoundError, match=r"^no run nope$") as caught:
        client.get_run("nope")
    assert caught.value.error == "RunNotFound"
    with pytest.raises(RequestError, match="ended"):
        client.cancel_run("r1")
    with pytest.raises(NotFoundError, match=r"answered 404: Not Found; is this URL a SearchTuner"):
        client.list_runs()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_service_says_where_it_looked_and_how_to_start_one() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(UnavailableError) as caught:
        Client(url, timeout=5).list_runs()
    message = str(caught.value)
    assert url in message and "refused" in message.lower() and "searchtuner serve" in message


def test_a_download_is_checked_against_the_announced_digest(
    server: _Server, tmp_path: Path
) -> None:
    data = b"archive bytes" * 1000
    announced = {"X-SearchTuner-SHA256": hashlib.sha256(data).hexdigest()}

    def download(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        _send_stream(handler, [data[:5000], data[5000:]], announced)

    server.routes["GET /runs/r1/model/download"] = download
    transport = HttpTransport(parse_url(server.url), None, timeout=5)
    assert transport.download_model("r1", tmp_path / "a.tar") == announced["X-SearchTuner-SHA256"]
    assert (tmp_path / "a.tar").read_bytes() == data
    announced["X-SearchTuner-SHA256"] = "0" * 64
    with pytest.raises(DataError, match="download was corrupted"):
        transport.download_model("r1", tmp_path / "b.tar")
