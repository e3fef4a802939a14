"""scripts/healthcheck.py, the images' HEALTHCHECK, against real servers on 127.0.0.1.

The gRPC server runs in a child process (no gRPC server in the test process: later tests
fork jina Flows), and so does the check itself, as Docker runs it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from deploy_tools import REPO

from searchtuner.service.processes import free_port

SCRIPT = str(REPO / "scripts" / "healthcheck.py")
GRPC_SERVER = """
import sys
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
servicer = health.HealthServicer()
status = health_pb2.HealthCheckResponse.ServingStatus.Value(sys.argv[1])
servicer.set("", status)
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
sys.stdin.read()  # until the test closes stdin
server.stop(0)
"""


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, *args, "--timeout", "5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture(params=["SERVING", "NOT_SERVING"])
def grpc_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    server = subprocess.Popen(
        [sys.executable, "-c", GRPC_SERVER, request.param],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        yield request.param, port
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def test_grpc_health(grpc_server: tuple[str, int]) -> None:
    status, port = grpc_server
    answer = check("grpc", f"127.0.0.1:{port}")
    if status == "SERVING":
        assert answer.returncode == 0, answer.stderr
    else:
        assert answer.returncode == 1
        assert "NOT_SERVING" in answer.stderr


def test_grpc_nothing_listening() -> None:
    answer = check("grpc", f"127.0.0.1:{free_port()}")
    assert answer.returncode == 1
    assert "UNAVAILABLE" in answer.stderr or "DEADLINE_EXCEEDED" in answer.stderr


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" else 503
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def http_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_http_health(http_server: int) -> None:
    ok = check("http", f"http://127.0.0.1:{http_server}/healthz")
    assert ok.returncode == 0, ok.stderr
    failing = check("http", f"http://127.0.0.1:{http_server}/broken")
    assert failing.returncode == 1
    assert "503" in failing.stderr


def test_http_nothing_listening() -> None:
    answer = check("http", f"http://127.0.0.1:{free_port()}/healthz")
    assert answer.returncode == 1
    assert "does not answer" in answer.stderr


def test_bad_arguments() -> None:
    assert check("http", "127.0.0.1:54322").returncode == 2  # not a URL
    assert check("tcp", "127.0.0.1:1").returncode == 2
