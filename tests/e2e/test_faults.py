"""Faults against the real service, mid-run: parts of the Flow killed with SIGKILL, and the S3
server unreachable for 10 s.

* ``kill -9`` of the **trainer executor** (``st-trainer``) and of the **gateway** while a run
  trains: ``gateway/serve.py`` notices the dead part and restarts the whole Flow; the trainer
  recovers the run from the store and resumes it from its last checkpoint.
* ``kill -9`` of the **trainer worker** (``python -m searchtuner.runs.worker``) is covered by
  ``test_service_lifecycle.py::test_a_killed_worker_resumes_from_its_checkpoint_and_finishes``
  and not repeated here.
* **S3 unreachable for 10 s** (moto behind a :class:`~tests.integration.tcp_proxy.TcpProxy`:
  connections refused and reset, moto's data kept) during a dataset upload and during
  training: the store retries through it (``SEARCHTUNER_STORE_OUTAGE_SECONDS``, 30 s).

After each fault: the run ends FINISHED (never stuck in a live state: every wait is bounded),
its model archive downloads with the sha256 the header and the handle name, and the datasets
uploaded before are listed as they were and read back with every shard's digest verified.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import signal
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from searchtuner.artifacts import ModelHandle
from searchtuner.data.stored import open_dataset
from searchtuner.store import S3Store, Store, open_store
from tests.e2e.service import Service, wait_for, worker_pids
from tests.integration.s3_server import (
    REGION,
    TEST_CREDENTIALS,
    fresh_bucket,
    raw_client,
    running_moto_server,
    session,
)
from tests.integration.tcp_proxy import TcpProxy
from tests.scratch import free_disk

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TERMINAL = {"FINISHED", "FAILED", "CANCELLED"}
STEPS = 16
CHECKPOINT_EVERY = 4
BATCH = 8
"""Batches of 8 (4 per label) make 11 steps an epoch of the 96 WordNet rows: checkpoints land
at steps 4, 8, 11 (the epoch's end), 12 and 16, and the kill lands right after the first."""
RUN_END_S = 420.0
"""Longest a run may take to end after its fault (the Flow's restart included)."""
RESTART_S = 180.0
OUTAGE_S = 10.0
S3_PREFIX = "faults"
SERVING = "SearchTuner is serving"


# -- helpers -------------------------------------------------------------------------------


def start_run(
    service: Service, train: str, name: str, steps: int = STEPS, every: int = CHECKPOINT_EVERY
) -> str:
    body = {
        "model": "all-MiniLM-L6-v2",
        "model_options": {"max_length": 32},
        "train_data": train,
        "name": name,
        "onnx": False,
        "config": {"epochs": 50, "batch_size": BATCH, "max_steps": steps, "log_every_steps": 2},
        "checkpoint_every_steps": every,
    }
    response = service.post("/runs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["run_id"])


def record(service: Service, run_id: str) -> dict[str, Any] | None:
    """The run's record; None while the service does not answer (restarting, store down)."""
    try:
        response = service.get(f"/runs/{run_id}")
    except requests.RequestException:
        return None
    return dict(response.json()) if response.status_code == 200 else None


def events(service: Service, run_id: str) -> list[dict[str, Any]]:
    with service.get(f"/runs/{run_id}/events", params={"follow": "false"}, stream=True) as stream:
        assert stream.status_code == 200, stream.text
        return [
            json.loads(line[6:]) for line in stream.iter_lines(decode_unicode=True)
            if line.startswith("data: ")
        ]  # fmt: skip


def first_checkpoint(service: Service, run_id: str) -> dict[str, Any]:
    """The run's first checkpoint event, once it is stored (the run then trains on)."""
    found = wait_for(
        lambda: [e for e in events(service, run_id) if e["type"] == "checkpoint"],
        300,
        f"the first checkpoint of run {run_id}",
        interval=0.2,
    )
    return dict(found[0])


def finished(service: Service, run_id: str, timeout: float = RUN_END_S) -> dict[str, Any]:
    """Wait (bounded) until the run is terminal; fail if it stays live."""

    def ended() -> dict[str, Any] | None:
        now = record(service, run_id)
        return now if now is not None and now["state"] in TERMINAL else None

    try:
        return dict(wait_for(ended, timeout, f"run {run_id} to end (it must never stay live)"))
    except AssertionError as err:
        last = record(service, run_id)
        try:
            tail = [(e["type"], e["message"][:200]) for e in events(service, run_id)[-12:]]
        except (AssertionError, requests.RequestException) as problem:
            tail = [("(events unreadable)", str(problem))]
        err.add_note(f"the run: {last}\nits last events: {tail}\nthe service's log:\n")
        err.add_note(service.tail(30))
        raise


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid``: {pid: comm}."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found[int(entry.name)] = comm
    return found


def part(service: Service, comm: str) -> int:
    """The pid of the Flow's part whose process name is ``comm`` (a child of the serve
    process: ``st-trainer``, ``st-ingest``...; the gateway's is plain ``python``)."""
    assert service.group.pid is not None
    pids = [pid for pid, name in children(service.group.pid).items() if name == comm]
    assert len(pids) == 1, f"parts named {comm!r}: {pids} of {children(service.group.pid)}"
    return pids[0]


def log_text(service: Service) -> str:
    return service.log.read_text(errors="replace")


def kill_part_and_wait_for_restart(service: Service, comm: str, what: str) -> float:
    """SIGKILL the part, then wait until the serve process has logged it and started the
    whole Flow again; returns the seconds the restart took."""
    pid = part(service, comm)
    served = log_text(service).count(SERVING)
    began = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    died = re.compile(
        rf"the service's part ({what}\S*) \(pid {pid}\) died \(signal 9\); restarting the "
        "service"
    )
    wait_for(lambda: died.search(log_text(service)), 30, f"the log to say that {what} died")
    wait_for(
        lambda: log_text(service).count(SERVING) > served,
        RESTART_S,
        "the service to start again",
        interval=1.0,
    )
    wait_for(lambda: healthy(service), 60, "/healthz after the restart")
    assert service.group.process is not None and service.group.process.poll() is None
    new = part(service, comm)
    assert new != pid
    return time.monotonic() - began


def healthy(service: Service) -> bool:
    try:
        return requests.get(f"{service.http}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def check_resumed(service: Service, run_id: str, final: dict[str, Any], checkpoint: int) -> None:
    """The run ended FINISHED after a second attempt that began from a checkpoint."""
    assert final["state"] == "FINISHED", final
    assert final["attempt"] >= 2, final
    assert final["progress"]["step"] == STEPS, final
    stored = events(service, run_id)
    resumed = [e for e in stored if "resum" in e["message"].lower()]
    assert resumed, [e["message"] for e in stored]
    training = [e["data"] for e in stored if e["data"].get("state") == "TRAINING"]
    assert len(training) >= 2, training  # once per attempt
    resumed_from = training[-1].get("resumed_from_step")
    assert resumed_from is not None and resumed_from >= checkpoint, training[-1]
    after = [
        e["data"]["step"]
        for e in stored
        if e["type"] == "progress" and e["seq"] > resumed[-1]["seq"]
    ]
    assert after and min(after) > resumed_from, (resumed_from, after)


def check_model(service: Service, run_id: str, final: dict[str, Any], folder: Path) -> None:
    """The archive downloads whole, its sha256 is the header's and the handle's, and it
    unpacks to a bundle."""
    handle = ModelHandle.parse(final["model_handle"])
    digest = hashlib.sha256()
    path = folder / f"{run_id}.tar"
    with service.get(f"/runs/{run_id}/model/download", stream=True) as response:
        assert response.status_code == 200, response.text
        header = response.headers["X-SearchTuner-SHA256"]
        length = int(response.headers["Content-Length"])
        with open(path, "wb") as out:
            for chunk in response.iter_content(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    assert path.stat().st_size == length == handle.size
    assert digest.hexdigest() == header == handle.sha256
    with tarfile.open(path) as archive:
        names = archive.getnames()
    assert any(name.endswith("searchtuner.json") for name in names), names
    path.unlink()


def check_dataset(service: Service, dataset: dict[str, Any], store: Store) -> None:
    """Listed with the same handle and count, and read back with every shard verified."""
    listed = {row["handle"]: row for row in service.get("/datasets").json()}
    assert dataset["handle"] in listed, sorted(listed)
    assert listed[dataset["handle"]]["n_items"] == dataset["n_items"]
    stored = open_dataset(store.for_owner(service.owner), dataset["handle"])
    assert sum(1 for _ in stored.iter_docs()) == dataset["n_items"]


# -- kill -9 of the Flow's parts -----------------------------------------------------------


@dataclass
class Local:
    service: Service
    train: dict[str, Any]
    store: Store
    folder: Path


@pytest.fixture(scope="class")
def local(
    tmp_path_factory: pytest.TempPathFactory, wordnet_csv: dict[str, Path]
) -> Iterator[Local]:
    """A service on a local store, with the WordNet train set uploaded."""
    root = tmp_path_factory.mktemp("faults-local")
    service = Service(root / "data", root / "service.log").start()
    try:
        train = service.upload_csv(wordnet_csv["train"], "faults-train")
        yield Local(service, train, open_store(service.store_uri), root)
    finally:
        service.stop()
        free_disk(root)


def kill_during_training(local: Local, comm: str, what: str) -> None:
    """Start a run, SIGKILL the part ``comm`` once the run has a checkpoint, and check that
    the service comes back and the run resumes and finishes with a sound model."""
    service = local.service
    run_id = start_run(service, local.train["handle"], f"kill-{what}")
    checkpoint = first_checkpoint(service, run_id)["data"]["step"]
    workers = worker_pids(run_id)
    assert len(workers) == 1, workers
    before = record(service, run_id)
    assert before is not None and before["state"] == "TRAINING", before
    took = kill_part_and_wait_for_restart(service, comm, what)
    # The old worker saw its parent die, or was stopped with the Flow; only a new one trains.
    wait_for(lambda: not alive(workers[0]), 15, "the old worker to exit")
    assert workers[0] not in worker_pids(run_id)
    assert len(worker_pids(run_id)) <= 1
    final = finished(service, run_id)
    print(
        f"\n{what} killed at step {before['progress'].get('step')} (first checkpoint at step "
        f"{checkpoint}): the service was back {took:.0f} s later; run {final['state']}, "
        f"attempt {final['attempt']}"
    )
    check_resumed(service, run_id, final, checkpoint)
    wait_for(lambda: not worker_pids(run_id), 15, "the run's workers to exit")
    check_model(service, run_id, final, local.folder)
    check_dataset(service, local.train, local.store)


class TestKilledParts:
    def test_a_killed_trainer_executor_restarts_the_service_and_the_run_resumes(
        self, local: Local
    ) -> None:
        kill_during_training(local, "st-trainer", "trainer")

    def test_a_killed_gateway_restarts_the_service_and_the_run_resumes(self, local: Local) -> None:
        kill_during_training(local, "python", "gateway")


# -- S3 unreachable for 10 s ---------------------------------------------------------------


@dataclass
class Remote:
    service: Service
    proxy: TcpProxy
    endpoint: str  # moto itself, behind the proxy's back
    bucket: str
    folder: Path

    def store(self) -> S3Store:
        """The service's store, read straight from moto (not through the proxy)."""
        return S3Store(self.bucket, S3_PREFIX, endpoint_url=self.endpoint, session=session())

    def shards(self) -> int:
        """Dataset shards stored so far, counted on moto directly."""
        prefix = f"{S3_PREFIX}/owners/{self.service.owner}/datasets/shards/"
        answer = raw_client(self.endpoint).list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return int(answer.get("KeyCount", 0))


@pytest.fixture(scope="class")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """A service whose store is S3 (moto on 127.0.0.1) reached through a TcpProxy."""
    root = tmp_path_factory.mktemp("faults-s3")
    with (
        running_moto_server() as endpoint,
        fresh_bucket(endpoint) as bucket,
        TcpProxy(endpoint) as proxy,
        pytest.MonkeyPatch.context() as patch,
    ):
        env = {
            "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "SEARCHTUNER_S3_ENDPOINT_URL": proxy.endpoint,
        }
        for name, value in env.items():  # Service() writes the test token from this process
            patch.setenv(name, value)
        service = Service(
            root / "data", root / "service.log", SEARCHTUNER_STORE=f"s3://{bucket}/{S3_PREFIX}",
            **env,
        )  # fmt: skip
        assert "--store" in service.group.argv  # the S3 store, not the local folder
        service.start()
        try:
            yield Remote(service, proxy, endpoint, bucket, root)
        finally:
            service.stop()
            free_disk(root)


def generated_rows(wordnet_rows: dict[str, list[tuple[str, str]]], count: int) -> list[list[str]]:
    """``count`` distinct labelled rows made from the WordNet ones."""
    base = wordnet_rows["train"]
    return [
        [f"{base[i % len(base)][0]} (variant {i})", base[i % len(base)][1]] for i in range(count)
    ]


class TestS3Outage:
    def test_an_upload_rides_out_10_s_of_s3_outage(
        self, remote: Remote, wordnet_rows: dict[str, list[tuple[str, str]]]
    ) -> None:
        rows = generated_rows(wordnet_rows, 6_000)
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
        data = text.getvalue().encode()

        def body() -> Iterator[bytes]:
            for start in range(0, len(data), 64 * 1024):
                yield data[start : start + 64 * 1024]

        answer: dict[str, Any] = {}

        def send() -> None:
            try:
                answer["response"] = remote.service.post(
                    "/datasets?kind=labeled&name=outage-upload&batch_size=100",
                    data=body(),
                    headers={"Content-Type": "text/csv"},
                )
            except BaseException as err:  # reported by the test below
                answer["error"] = err

        before = remote.shards()
        began = time.monotonic()
        sending = threading.Thread(target=send, name="upload", daemon=True)
        sending.start()
        # Down once the gateway is sending batches to ingest and shards are landing in S3.
        wait_for(lambda: remote.shards() >= before + 2, 120, "the first shards", interval=0.05)
        down_at = time.monotonic() - began
        shards_then = remote.shards()
        remote.proxy.outage(OUTAGE_S)
        remote.proxy.wait_resumed(OUTAGE_S + 5)
        sending.join(timeout=180)
        assert not sending.is_alive(), "the upload did not answer within 180 s of the outage"
        took = time.monotonic() - began
        assert "error" not in answer, answer.get("error")
        response = answer["response"]
        print(
            f"\nupload: S3 down at {down_at:.1f} s ({shards_then - before} of "
            f"{len(rows) // 100} shards stored), answered {response.status_code} after "
            f"{took:.1f} s; proxy reset {remote.proxy.dropped} connections"
        )
        assert response.status_code == 201, response.text
        # The ingest executor's store requests did hit the outage, and waited it out.
        assert re.search(r"S3 at \S+ is unavailable \(.*datasets/", log_text(remote.service))
        dataset = response.json()
        assert dataset["n_items"] == len(rows) and dataset["ok"], dataset
        assert remote.shards() > shards_then  # the upload went on after the outage
        with remote.store() as store:
            check_dataset(remote.service, dataset, store)
            # The stored documents are the rows sent, in order.
            stored = open_dataset(store.for_owner(remote.service.owner), dataset["handle"])
            assert [(doc.text, doc.label) for doc in stored.iter_docs()] == [tuple(r) for r in rows]

    def test_a_run_rides_out_10_s_of_s3_outage(
        self, remote: Remote, wordnet_csv: dict[str, Path]
    ) -> None:
        service = remote.service
        train = service.upload_csv(wordnet_csv["train"], "outage-train")
        # Checkpoints (177 MB each, through the proxy) at steps 4 and 8: the first goes up
        # while S3 is down.
        steps = 10
        run_id = start_run(service, train["handle"], "s3-outage", steps=steps)
        before = wait_for(
            lambda: (now := record(service, run_id)) and now["progress"].get("step", 0) >= 2
            and now,
            300,
            "two training steps",
            interval=0.2,
        )  # fmt: skip
        began = time.monotonic()
        remote.proxy.outage(OUTAGE_S)
        remote.proxy.wait_resumed(OUTAGE_S + 5)
        after = record(service, run_id)
        final = finished(service, run_id)
        print(
            f"\nS3 down at step {before['progress']['step']} ({before['state']}), up again at "
            f"step {(after or {}).get('progress', {}).get('step')}; run {final['state']} "
            f"(attempt {final['attempt']}, reason {final.get('reason')!r}) "
            f"{time.monotonic() - began:.0f} s after the outage began"
        )
        assert before["state"] == "TRAINING", before
        assert final["state"] == "FINISHED", final
        # The worker's requests hit the outage (its store logs into the run's events).
        said = [e["message"][:90] for e in events(service, run_id) if "S3 at " in e["message"]]
        print("\n".join(said))
        assert any("is unavailable" in m for m in said), said
        assert any("answers again" in m for m in said), said
        assert final["progress"]["step"] == steps
        check_model(service, run_id, final, remote.folder)
        with remote.store() as store:
            check_dataset(service, train, store)
