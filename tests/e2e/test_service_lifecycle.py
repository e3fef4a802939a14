"""Run lifecycle against the real service: cancel, a worker killed with SIGKILL mid-run that
resumes from its checkpoint, and a restart of the whole Flow after which every run reads the
same.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.service import Service, wait_for, worker_pids

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TERMINAL = {"FINISHED", "FAILED", "CANCELLED"}


@pytest.fixture(scope="module")
def handles(service: Service, wordnet_csv: dict[str, Path]) -> dict[str, str]:
    return {
        "train": service.upload_csv(wordnet_csv["train"], "lifecycle-train")["handle"],
        "eval": service.upload_csv(wordnet_csv["eval"], "lifecycle-eval")["handle"],
    }


def start(service: Service, handles: dict[str, str], name: str, **extra: Any) -> str:
    body = {
        "model": "all-MiniLM-L6-v2",
        "model_options": {"max_length": 32},
        "train_data": handles["train"],
        "name": name,
        "onnx": False,
        **extra,
    }
    response = service.post("/runs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["run_id"])


def record(service: Service, run_id: str) -> dict[str, Any]:
    response = service.get(f"/runs/{run_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def events(service: Service, run_id: str) -> list[dict[str, Any]]:
    import json

    with service.get(f"/runs/{run_id}/events", params={"follow": "false"}, stream=True) as stream:
        return [
            json.loads(line[6:]) for line in stream.iter_lines(decode_unicode=True)
            if line.startswith("data: ")
        ]  # fmt: skip


def finished(service: Service, run_id: str, timeout: float) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (current := record(service, run_id))["state"] in TERMINAL and current,
            timeout,
            f"run {run_id} to end",
        )
    )


def test_cancel_stops_the_worker_within_seconds_and_keeps_what_was_stored(
    service: Service, handles: dict[str, str]
) -> None:
    run_id = start(
        service, handles, "to-cancel", config={"epochs": 50, "batch_size": 16},
        checkpoint_every_steps=2,
    )  # fmt: skip
    wait_for(
        lambda: record(service, run_id)["progress"].get("step", 0) >= 2,
        240,
        "two training steps",
    )
    assert worker_pids(run_id)
    stored_before = events(service, run_id)
    began = time.monotonic()
    response = service.post(f"/runs/{run_id}/cancel")
    assert response.status_code == 200, response.text
    final = finished(service, run_id, 30)
    took = time.monotonic() - began
    assert final["state"] == "CANCELLED" and "cancel" in final["reason"].lower()
    assert took < 15, f"cancel took {took:.1f} s"
    wait_for(lambda: not worker_pids(run_id), 10, "the worker process to be gone")
    after = events(service, run_id)
    assert [e["seq"] for e in after[: len(stored_before)]] == [e["seq"] for e in stored_before]
    assert after[-1]["data"].get("state") == "CANCELLED"
    assert any(e["type"] == "checkpoint" for e in after)  # what it stored is still there
    # Cancelling again changes nothing.
    again = service.post(f"/runs/{run_id}/cancel").json()
    assert again["state"] == "CANCELLED" and again["updated_at"] == final["updated_at"]


def test_a_killed_worker_resumes_from_its_checkpoint_and_finishes(
    service: Service, handles: dict[str, str]
) -> None:
    steps = 16
    run_id = start(
        service, handles, "to-kill",
        config={"epochs": 5, "batch_size": 16, "max_steps": steps},
        checkpoint_every_steps=4,
    )  # fmt: skip
    checkpoint = wait_for(
        lambda: [e for e in events(service, run_id) if e["type"] == "checkpoint"],
        240,
        "the first checkpoint",
        interval=0.2,
    )[0]
    pids = worker_pids(run_id)
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    final = finished(service, run_id, 300)
    assert final["state"] == "FINISHED", final
    assert final["attempt"] == 2 and final["progress"]["step"] == steps
    stored = events(service, run_id)
    resumed = [e for e in stored if "resum" in e["message"].lower()]
    assert resumed, [e["message"] for e in stored]
    progress_after = [
        e["data"]["step"]
        for e in stored
        if e["type"] == "progress" and e["seq"] > resumed[-1]["seq"]
    ]
    # The second attempt started from the checkpoint, not from step 0.
    assert progress_after and min(progress_after) > checkpoint["data"]["step"] - 1


def test_every_run_reads_the_same_after_the_whole_flow_restarts(service: Service) -> None:
    runs = service.get("/runs").json()
    assert runs, "the earlier tests left runs"
    before = {run["run_id"]: run for run in runs}
    counts = {run_id: len(events(service, run_id)) for run_id in before}
    metrics = {run_id: service.get(f"/runs/{run_id}/metrics").json() for run_id in before}
    service.stop()
    service.start()
    after = {run["run_id"]: run for run in service.get("/runs").json()}
    assert after.keys() == before.keys()
    for run_id, run in before.items():
        assert after[run_id]["state"] == run["state"]
        assert after[run_id]["model_handle"] == run["model_handle"]
        assert len(events(service, run_id)) == counts[run_id]
        assert service.get(f"/runs/{run_id}/metrics").json() == metrics[run_id]
