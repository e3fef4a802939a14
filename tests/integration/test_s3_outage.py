"""The S3 store and a trainer worker ride out an outage of the S3 server, or fail clearly.

A :class:`~tcp_proxy.TcpProxy` stands in front of moto's server; stopping it refuses new
connections and resets open ones, exactly as a stopped S3 server would, while moto keeps its
objects. Nothing is patched: the store and the worker process see real socket failures.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_server import REGION, TEST_CREDENTIALS, session
from tcp_proxy import TcpProxy, wait_until

from searchtuner.artifacts.handles import ModelHandle
from searchtuner.errors import ConfigError
from searchtuner.runs import RunRegistry, RunState
from searchtuner.store import NotFound, S3Store, StoreUnavailable, open_store
from tests.unit.runs.helpers import OWNER, clusters, mlp_request, queue_run, upload

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
OUTAGE_S = 10.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[TcpProxy]:
    with TcpProxy(s3_endpoint) as running:
        yield running


def proxied_store(proxy: TcpProxy, bucket: str, **options: Any) -> S3Store:
    """A store that reaches S3 through the proxy, with 5 MiB parts (quick multipart)."""
    settings: dict[str, Any] = {
        "endpoint_url": proxy.endpoint, "session": session(),
        "multipart_threshold": 5 * MiB, "part_size": 5 * MiB, **options,
    }  # fmt: skip
    return S3Store(bucket, "searchtuner", **settings)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def requests_sent(store: S3Store) -> list[tuple[str, dict[str, str]]]:
    """Each request the store's client sends from now on: (operation, headers), as sent.

    Observed through botocore's event hooks, once per attempt; nothing is patched.
    """
    sent: list[tuple[str, dict[str, str]]] = []

    def record(model: Any, params: dict[str, Any], **kwargs: Any) -> None:
        sent.append((model.name, dict(params.get("headers", {}))))

    store._client.meta.events.register("before-call.s3", record)
    return sent


class Started:
    """Runs ``work`` in a daemon thread; keeps its result or error and when it ended."""

    def __init__(self, name: str, work: Callable[[], Any]) -> None:
        self.name, self.ended = name, 0.0
        self.result: Any = None
        self.error: BaseException | None = None
        self.ready = threading.Event()  # set by work once its first part is done
        self._work = work
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Started:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self._work()
        except BaseException as err:  # handed to the test
            self.error = err
        finally:
            self.ended = time.monotonic()
            self.ready.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self.name} still running after {timeout} s"


def test_the_outage_budget_comes_from_the_uri_then_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEARCHTUNER_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("SEARCHTUNER_STORE_OUTAGE_SECONDS", raising=False)
    assert open_store("s3://my-bucket/p").outage_seconds == 30  # type: ignore[attr-defined]
    monkeypatch.setenv("SEARCHTUNER_STORE_OUTAGE_SECONDS", "5")
    assert open_store("s3://my-bucket/p").outage_seconds == 5  # type: ignore[attr-defined]
    opened = open_store("s3://my-bucket/p?outage_seconds=120.5")
    assert opened.outage_seconds == 120.5  # type: ignore[attr-defined]
    assert opened.uri("k") == "s3://my-bucket/p/k"  # the option is not part of the location
    assert S3Store("my-bucket", outage_seconds=0).outage_seconds == 0
    with pytest.raises(ConfigError, match=r"outage_seconds in the store URI .* got 'soon'"):
        open_store("s3://my-bucket/p?outage_seconds=soon")
    with pytest.raises(ConfigError, match="unknown query parameter 'timeout'"):
        open_store("s3://my-bucket/p?timeout=5")
    monkeypatch.setenv("SEARCHTUNER_STORE_OUTAGE_SECONDS", "-1")
    with pytest.raises(ConfigError, match="SEARCHTUNER_STORE_OUTAGE_SECONDS must be a number"):
        open_store("s3://my-bucket/p")


def test_operations_under_way_in_an_outage_finish_when_s3_is_back(
    proxy: TcpProxy, s3_bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = proxied_store(proxy, s3_bucket)
    store._page_size = 2  # so the listing takes several requests
    big = os.urandom(24 * MiB)  # more than the socket buffers hold: a read is cut mid-stream
    store.put_bytes("big.bin", big)
    for number in range(7):
        store.put_bytes(f"list/{number:02d}", b"%d" % number)
    store.put_bytes("doomed", b"to be deleted")
    streamed = os.urandom(17 * MiB)  # 4 parts of 5 MiB at most
    local = tmp_path / "file.bin"
    local.write_bytes(os.urandom(11 * MiB))
    down = threading.Event()

    def upload_stream() -> Any:
        def chunks() -> Iterator[bytes]:
            yield streamed[: 5 * MiB]  # the first part goes up before the outage
            uploading.ready.set()
            down.wait(30)
            yield streamed[5 * MiB :]

        return store.put_stream("streamed.bin", chunks(), {"kind": "stream"})

    def read_big() -> bytes:
        chunks = store.open_stream("big.bin")
        first = next(chunks)
        reading.ready.set()
        down.wait(30)
        return first + b"".join(chunks)  # the rest, through the outage; verified at the end

    def list_keys() -> list[str]:
        keys = store.keys("list/")
        first = [next(keys), next(keys)]
        listing.ready.set()
        down.wait(30)
        return first + list(keys)

    uploading = Started("put_stream", upload_stream)
    reading = Started("open_stream", read_big)
    listing = Started("keys", list_keys)
    for started in (uploading, reading, listing):
        assert started.start().ready.wait(30) and started.error is None, started.error
    caplog.set_level(logging.INFO, logger="searchtuner.store.s3")
    sent = requests_sent(store)
    proxy.outage(OUTAGE_S)
    began = time.monotonic()
    down.set()
    during = [
        Started("put_bytes", lambda: store.put_bytes("small", b"written in an outage")),
        Started("put_json", lambda: store.put_json("doc.json", {"outage": True})),
        Started("put_file", lambda: store.put_file("file.bin", local)),
        Started("stat", lambda: store.stat("list/03")),
        Started("delete", lambda: store.delete("doomed")),
    ]
    for started in during:
        started.start()
    everything = [uploading, reading, listing, *during]
    for started in everything:
        started.join(OUTAGE_S + 40)
    failures = {started.name: started.error for started in everything if started.error}
    assert not failures
    for started in everything:  # none could finish while the server was away
        assert started.ended - began >= OUTAGE_S - 0.5, started.name
    assert proxy.dropped >= 1  # connections under way were cut, not just new ones refused

    assert uploading.result.sha256 == sha256(streamed)
    assert store.stat("streamed.bin") == uploading.result
    assert store.get_bytes("streamed.bin") == streamed
    assert reading.result == big
    assert listing.result == [f"list/{number:02d}" for number in range(7)]
    assert during[0].result.sha256 == sha256(b"written in an outage")
    assert store.get_json("doc.json") == {"outage": True}
    assert store.stat("file.bin").sha256 == sha256(local.read_bytes())
    assert store.get_bytes("file.bin") == local.read_bytes()
    assert during[3].result.sha256 == sha256(b"3")
    assert not store.exists("doomed")
    assert "~uploads" not in " ".join(store.keys())  # the stream's temporary object is gone
    # The broken read went on from where it was cut, pinned to the version it began reading.
    resumed = [h for name, h in sent if name == "GetObject" and "Range" in h]
    assert resumed and all(h.get("If-Match") for h in resumed)
    assert all(int(h["Range"].removeprefix("bytes=").rstrip("-")) >= MiB for h in resumed)
    # Requests were tried again and again through the outage (a backoff capped at 2 s).
    attempts = [name for name, _ in sent if name == "HeadObject"]
    assert len(attempts) >= 5, sent
    # One warning for the outage, however many requests retried, and one line when it ended.
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    began_lines = [m for level, m in messages if level == logging.WARNING]
    assert len(began_lines) == 1 and "is unavailable" in began_lines[0], messages
    assert proxy.endpoint in began_lines[0] and "outage_seconds" in began_lines[0]
    assert sum("answers again" in m for _, m in messages) == 1, messages


def test_an_outage_longer_than_the_budget_fails_clearly_and_writes_nothing_partial(
    proxy: TcpProxy, s3_bucket: str
) -> None:
    budget = 2.0
    store = proxied_store(proxy, s3_bucket, outage_seconds=budget)
    big = os.urandom(24 * MiB)
    store.put_bytes("big.bin", big)
    store.put_bytes("old", b"the old version")
    down = threading.Event()

    def upload_stream() -> Any:
        def chunks() -> Iterator[bytes]:
            yield os.urandom(5 * MiB)
            uploading.ready.set()
            down.wait(30)
            yield os.urandom(12 * MiB)

        return store.put_stream("streamed.bin", chunks())

    def read_big() -> bytes:
        chunks = store.open_stream("big.bin")
        first = next(chunks)
        reading.ready.set()
        down.wait(30)
        return first + b"".join(chunks)

    uploading = Started("put_stream", upload_stream)
    reading = Started("open_stream", read_big)
    for started in (uploading, reading):
        assert started.start().ready.wait(30) and started.error is None, started.error
    proxy.stop()
    began = time.monotonic()
    down.set()
    during = [
        Started("put_bytes", lambda: store.put_bytes("old", b"the new version")),
        Started("stat", lambda: store.stat("old")),
        Started("keys", lambda: list(store.keys())),
    ]
    for started in during:
        started.start()
    everything = [uploading, reading, *during]
    for started in everything:
        started.join(budget + 20)
    proxy.resume()

    for started in everything:
        error = started.error
        assert isinstance(error, StoreUnavailable), (started.name, error)
        text = str(error)
        assert proxy.endpoint in text and f"outage budget of {budget:g} s" in text
        assert "SEARCHTUNER_STORE_OUTAGE_SECONDS" in text and "?outage_seconds=" in text
        # Gave up at the budget, not at once and not much later.
        assert budget - 0.1 <= started.ended - began <= budget + 5, started.name
    assert "a stream cannot be read twice" in "\n".join(getattr(uploading.error, "__notes__", []))
    # Nothing partial anywhere: the stream's object is absent, the old object whole.
    with pytest.raises(NotFound):
        store.stat("streamed.bin")
    assert store.get_bytes("old") == b"the old version"
    assert store.get_bytes("big.bin") == big
    assert sorted(store.keys()) == ["big.bin", "old"]


# ---- a trainer worker process ------------------------------------------------------------


def _worker(
    store_uri: str, run_id: str, scratch: Path, endpoint: str, log: Path
) -> subprocess.Popen[bytes]:
    """``python -m searchtuner.runs.worker`` for one run, its S3 endpoint the proxy."""
    env = {
        **os.environ,
        "SEARCHTUNER_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    command = [
        sys.executable, "-m", "searchtuner.runs.worker", "--store", store_uri,
        "--owner", OWNER, "--run", run_id, "--scratch", str(scratch), "--flush-interval", "0.2",
    ]  # fmt: skip
    with open(log, "wb") as output:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=output)


def test_a_worker_process_trains_through_an_outage(
    proxy: TcpProxy, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    # The test reads and writes S3 directly; only the worker goes through the proxy.
    direct = S3Store(s3_bucket, "service", endpoint_url=s3_endpoint, session=session())
    registry = RunRegistry(direct)
    # 512 items, batches of 8, 6 epochs: 384 steps, ~4 s of training here without an outage.
    request = mlp_request(upload(direct, clusters(512)), epochs=6, checkpoint_every_steps=100)
    run_id = queue_run(registry, request)
    registry.transition(OWNER, run_id, RunState.QUEUED)
    log = tmp_path / "worker.log"
    worker = _worker(
        f"s3://{s3_bucket}/service?outage_seconds=30", run_id, tmp_path / "scratch",
        proxy.endpoint, log,
    )  # fmt: skip
    try:

        def training() -> dict[str, Any] | None:
            assert worker.poll() is None, log.read_text()
            record = registry.get(OWNER, run_id)
            step = (record.progress or {}).get("step", 0)
            return record.progress if record.state is RunState.TRAINING and step >= 2 else None

        wait_until("the worker to train", training, timeout=120)  # slow on a busy machine
        proxy.outage(OUTAGE_S)
        began = time.monotonic()
        seen = registry.get(OWNER, run_id)
        assert seen.state is RunState.TRAINING and seen.progress["step"] < 384
        code = worker.wait(timeout=120)
        ended = time.monotonic()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    output = log.read_text()
    assert code == 0, output
    assert ended - began >= OUTAGE_S - 0.5  # it could not finish without the store
    record = registry.get(OWNER, run_id)
    assert record.state is RunState.FINISHED, registry.logs(OWNER, run_id)
    assert record.progress["step"] == 384
    events = registry.events(OWNER, run_id)
    states = [e.data["state"] for e in events if e.type == "state"]
    assert states[-4:] == ["TRAINING", "EVALUATING", "PUBLISHING", "FINISHED"]
    assert states.count("TRAINING") == 1  # trained straight through: no restart
    # The outage is in the run's log, once, and training went on after it.
    warnings = [e for e in events if e.type == "log" and "is unavailable" in e.message]
    assert len(warnings) == 1 and warnings[0].level == "warning", [e.message for e in events]
    assert any("answers again" in e.message for e in events)
    steps = [e.data["step"] for e in events if e.type == "progress"]
    assert steps == sorted(set(steps)) and steps[-1] == 384
    saved = [e.data["step"] for e in events if e.type == "checkpoint"]
    assert {100, 200, 300} <= set(saved) and saved == sorted(saved)
    # The published archive is whole: its bytes match the handle and the store's digest.
    handle = ModelHandle.parse(record.model_handle or "")
    archive = handle.uri.removeprefix(f"s3://{s3_bucket}/service/")
    assert direct.stat(archive).sha256 == handle.sha256
    data = direct.get_bytes(archive)  # verified against the stored digest as it is read
    assert (sha256(data), len(data)) == (handle.sha256, handle.size)
