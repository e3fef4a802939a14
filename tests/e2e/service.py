"""Start the real service (``python -m gateway.serve``) as a process group on 127.0.0.1."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import requests

from searchtuner.service.processes import ProcessGroup, free_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180.0


class Service:
    """One SearchTuner service: gateway + executors, and the trainer's workers below them."""

    def __init__(self, data_dir: Path, log: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.log = log
        self.grpc_port = free_port()
        self.http_port = free_port()
        command = [
            sys.executable, "-m", "gateway.serve",
            "--port", str(self.grpc_port), "--http-port", str(self.http_port),
            "--data-dir", str(data_dir),
        ]  # fmt: skip
        self.group = ProcessGroup(
            command, cwd=REPO, log=log, env={**os.environ, **env}, name="the service"
        )

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = START_TIMEOUT) -> Service:
        """Start and wait until the HTTP gateway answers (and so the whole Flow is up)."""
        self.group.start()
        self.group.wait_until(
            lambda: requests.get(f"{self.http}/healthz", timeout=2).status_code == 200, timeout
        )
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop like Ctrl-C (the Flow closes its executors); kill what is left after timeout."""
        self.group.stop(timeout)

    def tail(self, lines: int = 60) -> str:
        return self.group.tail(lines)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.http}{path}", timeout=60, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.post(f"{self.http}{path}", timeout=120, **kwargs)


def worker_pids(run_id: str) -> list[int]:
    """Process ids of the trainer worker processes running ``run_id``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"searchtuner.runs.worker" in command and run_id.encode() in command:
            pids.append(int(entry.name))
    return pids


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
