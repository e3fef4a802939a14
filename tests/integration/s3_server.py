"""A real S3-compatible server (moto's) on 127.0.0.1 for the integration tests, and helpers.

The fixtures ``s3_endpoint`` (one server a session) and ``s3_bucket`` (a fresh bucket a
test) in tests/integration/conftest.py wrap the first two context managers:

* :func:`running_moto_server`: moto's ThreadedMotoServer on 127.0.0.1, a free port, checked
  ready with a bounded loop; yields the endpoint URL.
* :func:`fresh_bucket`: a new, empty bucket on that server; yields its name.
* :class:`FlakyProxy`: an HTTP proxy on 127.0.0.1 that answers the first ``failures``
  requests with ``503 SlowDown`` and forwards the rest to the server.
* :func:`moto_auth`: turn on moto's IAM authentication for a block (credentials and
  permissions are then checked as S3 would).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import http.server
import itertools
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
TEST_CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "region_name": REGION,
}
# moto answers its first request only once it has imported its S3 backend: seconds on a
# loaded 2-core machine (10 s was too little in CI).
_READY_TIMEOUT_S = 60.0
_bucket_numbers = itertools.count()


def session(**credentials: str) -> boto3.session.Session:
    """A boto3 session with explicit test credentials (the defaults unless overridden).

    Sessions are cached: each new one reloads botocore's service models (~0.3 s).
    """
    return _session(tuple(sorted({**TEST_CREDENTIALS, **credentials}.items())))


@functools.lru_cache(maxsize=16)
def _session(credentials: tuple[tuple[str, str], ...]) -> boto3.session.Session:
    return boto3.session.Session(**dict(credentials))


@functools.lru_cache(maxsize=16)
def raw_client(endpoint: str):  # type: ignore[no-untyped-def]
    """A plain boto3 S3 client (cached, do not close it), to act behind the store's back."""
    return session().client("s3", endpoint_url=endpoint)


def wait_ready(endpoint: str, timeout_s: float = _READY_TIMEOUT_S) -> None:
    """Poll the server's dashboard URL until it answers; bounded by ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    for _ in range(2000):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            url = f"{endpoint}/moto-api/data.json"
            with urllib.request.urlopen(url, timeout=max(1.0, min(left, 15.0))) as answer:
                if answer.status == 200:
                    return
        except OSError:  # not listening yet, or still importing (URLError, timeouts)
            time.sleep(0.05)
    raise RuntimeError(f"moto server at {endpoint} not ready after {timeout_s} s")


@contextlib.contextmanager
def running_moto_server() -> Iterator[str]:
    """Run moto's S3-compatible server on 127.0.0.1 (a free port); yield its endpoint URL."""
    # Werkzeug logs every request; keep test failures readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        wait_ready(endpoint)
        yield endpoint
    finally:
        server.stop()


@contextlib.contextmanager
def fresh_bucket(endpoint: str) -> Iterator[str]:
    """Create an empty bucket with a new name; yield the name; empty and remove it after."""
    name = f"st-test-{next(_bucket_numbers)}"
    client = raw_client(endpoint)
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=name)
        for page in pages:
            for entry in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=entry["Key"])
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        client.delete_bucket(Bucket=name)


@contextlib.contextmanager
def moto_auth(endpoint: str, *, enabled: bool = True) -> Iterator[None]:
    """Enforce (or stop enforcing) IAM authentication on the server for the block.

    Uses moto's ``/moto-api/reset-auth`` endpoint (the same switch as the env var
    ``INITIAL_NO_AUTH_ACTION_COUNT``); the previous setting is restored on exit. With it on,
    only access keys created through the server's IAM API are accepted, and only for what
    their policies allow.
    """

    def set_count(count: str) -> str:
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth",
            data=count.encode(),
            headers={"Content-Type": "text/plain"},  # a form type would hide the body
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            return str(json.loads(answer.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"])

    previous = set_count("0" if enabled else "inf")
    try:
        yield
    finally:
        set_count(previous)


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>proxy</RequestId></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class FlakyProxy:
    """An HTTP proxy on 127.0.0.1 that throttles the first ``failures`` requests.

    Args:
        upstream: the S3 server's endpoint URL.
        failures: how many requests get ``503 SlowDown`` before requests are forwarded; a
            negative number throttles every request.

    Attributes:
        endpoint: the proxy's URL, to give the store as its endpoint.
        throttled: requests answered with 503 so far.
        forwarded: requests passed to the server so far.
    """

    def __init__(self, upstream: str, failures: int) -> None:
        target = urlsplit(upstream)
        self.failures = failures
        self.throttled = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests print what matters."""

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    throttle = proxy.failures < 0 or proxy.throttled < proxy.failures
                    if throttle:
                        proxy.throttled += 1
                    else:
                        proxy.forwarded += 1
                if throttle:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    payload = b"" if self.command == "HEAD" else SLOW_DOWN
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                connection = http.client.HTTPConnection(target.netloc, timeout=30)
                try:
                    connection.putrequest(self.command, self.path, skip_host=True)
                    for name, value in self.headers.items():
                        if name.lower() not in _HOP_BY_HOP:
                            connection.putheader(name, value)
                    connection.putheader("Content-Length", str(len(body)))
                    connection.endheaders(body)
                    answer = connection.getresponse()
                    data = answer.read()
                finally:
                    connection.close()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
