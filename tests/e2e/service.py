"""Start the real service (``python -m gateway.serve``) as a process group on 127.0.0.1."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from searchtuner.service.processes import ProcessGroup, free_port
from searchtuner.service.tokens import TokenStore
from searchtuner.store import open_store

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180.0


class Service:
    """One SearchTuner service: gateway + executors, and the trainer's workers below them."""

    def __init__(
        self,
        data_dir: Path,
        log: Path,
        owner: str = "local",
        args: tuple[str, ...] = (),
        **env: str,
    ) -> None:
        self.data_dir = data_dir
        self.log = log
        data_dir.mkdir(parents=True, exist_ok=True)
        self.store_uri = env.get("SEARCHTUNER_STORE") or data_dir.resolve().as_uri()
        self.owner = owner
        self.token = self.new_token(owner)
        self.verify: str | bool = True  # requests' verify: the certificate, with --tls-cert
        if "--tls-cert" in args:
            self.verify = args[args.index("--tls-cert") + 1]
        self.grpc_port = free_port()
        self.http_port = free_port()
        command = [
            sys.executable, "-m", "gateway.serve",
            "--port", str(self.grpc_port), "--http-port", str(self.http_port),
            *(["--store", env["SEARCHTUNER_STORE"]] if env.get("SEARCHTUNER_STORE") else
              ["--data-dir", str(data_dir)]),
            *args,
        ]  # fmt: skip
        self.group = ProcessGroup(
            command, cwd=REPO, log=log, env={**os.environ, **env}, name="the service"
        )

    def new_token(self, owner: str) -> str:
        """A new token for ``owner`` on the service's store (what `searchtuner token create`
        does)."""
        return TokenStore(open_store(self.store_uri), cache_seconds=0).create(owner, "tests").token

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers that authenticate as this service's test owner."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata that authenticates as this service's test owner (jina's
        ``Client.post(..., metadata=service.metadata)``)."""
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def http(self) -> str:
        scheme = "http" if self.verify is True else "https"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        scheme = "grpc" if self.verify is True else "grpcs"
        return f"{scheme}://127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = START_TIMEOUT) -> Service:
        """Start and wait until the HTTP gateway answers (and so the whole Flow is up)."""
        self.group.start()
        self.group.wait_until(
            lambda: requests.get(f"{self.http}/healthz", timeout=2, verify=self.verify).ok,
            timeout,
        )
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Stop like Ctrl-C (the Flow closes its executors); kill what is left after timeout."""
        self.group.stop(timeout)

    def tail(self, lines: int = 60) -> str:
        return self.group.tail(lines)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET as the test owner (pass ``headers=`` to send others, e.g. no token)."""
        kwargs.setdefault("headers", self.headers)
        kwargs.setdefault("verify", self.verify)
        return requests.get(f"{self.http}{path}", timeout=60, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST as the test owner (pass ``headers=`` to send others)."""
        kwargs["headers"] = {**self.headers, **kwargs.get("headers", {})}
        kwargs.setdefault("verify", self.verify)
        return requests.post(f"{self.http}{path}", timeout=120, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        """DELETE as the test owner."""
        kwargs.setdefault("headers", self.headers)
        kwargs.setdefault("verify", self.verify)
        return requests.delete(f"{self.http}{path}", timeout=60, **kwargs)

    def upload_csv(self, path: Path, name: str) -> dict[str, Any]:
        """POST /datasets a labelled CSV file, streamed in 1 KiB chunks (never read whole);
        the answer's JSON (``handle``, ``rows``…) once it is 201."""

        def body() -> Iterator[bytes]:
            with open(path, "rb") as handle:
                while chunk := handle.read(1024):
                    yield chunk

        response = self.post(
            f"/datasets?kind=labeled&name={name}", data=body(), headers={"Content-Type": "text/csv"}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())


class Caller:
    """One owner's calls to the service: HTTP with its bearer token, gRPC (a jina Client)
    with the same token as metadata; ``None`` sends no token. Every call has a timeout."""

    HTTP_TIMEOUT = 60.0
    GRPC_TIMEOUT = 60.0

    def __init__(self, service: Service, token: str | None) -> None:
        from jina import Client

        self.service = service
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self.metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
        self.jina = Client(host="127.0.0.1", port=service.grpc_port, protocol="grpc")

    def http(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", self.HTTP_TIMEOUT)
        return requests.request(method, f"{self.service.http}{path}", headers=headers, **kwargs)

    def grpc(
        self,
        endpoint: str,
        docs: Any,
        out: type,
        metadata: tuple[tuple[str, str], ...] | None = None,
        **parameters: Any,
    ) -> Any:
        """``endpoint`` over gRPC with ``parameters``; the answer as a ``DocList[out]``."""
        from docarray import DocList

        return self.jina.post(
            endpoint,
            inputs=docs,
            parameters=parameters,
            metadata=self.metadata if metadata is None else metadata,
            return_type=DocList[out],
            timeout=self.GRPC_TIMEOUT,
        )


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
