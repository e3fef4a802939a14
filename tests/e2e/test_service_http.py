"""End to end over HTTP (REST) against the real service on 127.0.0.1: upload a labelled dataset
as a streamed CSV body, fine-tune all-MiniLM-L6-v2 to FINISHED, follow it by server-sent
events, read status and metrics, download the model and encode with it.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import searchtuner
from tests.e2e.service import Service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STATES = [
    "CREATED", "VALIDATING", "QUEUED", "PREPARING", "TRAINING", "EVALUATING", "PUBLISHING",
    "FINISHED",
]  # fmt: skip
RUN_CONFIG = {"epochs": 1, "batch_size": 16, "learning_rate": 5e-5, "max_steps": 4}


def sse(lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """Server-sent events from a byte-line stream: {'id', 'event', 'data'}."""
    event: dict[str, Any] = {}
    for raw in lines:
        line = raw.decode("utf-8")
        if not line:
            if event:
                yield event
            event = {}
            continue
        field, _, value = line.partition(": ")
        event[field] = json.loads(value) if field == "data" else value


def test_fine_tune_over_http(service: Service, wordnet_csv: dict[str, Path]) -> None:
    train = service.upload_csv(wordnet_csv["train"], "wordnet-train")
    evaluation = service.upload_csv(wordnet_csv["eval"], "wordnet-eval")
    assert train["handle"].startswith("std1:") and train["n_items"] == 96 and train["ok"]
    assert evaluation["n_items"] == 36
    listed = {row["handle"] for row in service.get("/datasets").json()}
    assert {train["handle"], evaluation["handle"]} <= listed

    response = service.post(
        "/runs",
        json={
            "model": "all-MiniLM-L6-v2",
            "model_options": {"max_length": 32},
            "train_data": train["handle"],
            "eval_data": evaluation["handle"],
            "config": RUN_CONFIG,
            "name": "http-e2e",
            "onnx": False,
        },
    )
    assert response.status_code == 201, response.text
    run = response.json()
    run_id = run["run_id"]
    assert run["state"] == "QUEUED"
    assert run["conversion"]["embedding_dim"] == 384 and run["conversion"]["total_params"] > 2e7

    # Live events until the run ends: every state in order, progress, metrics.
    with service.get(f"/runs/{run_id}/events", stream=True, params={"timeout": 600}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = list(sse(stream.iter_lines()))
    assert events[-1]["event"] == "end" and events[-1]["data"]["state"] == "FINISHED", events[-3:]
    body = [event for event in events if event["event"] != "end"]
    seqs = [event["data"]["seq"] for event in body]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    states = [e["data"]["data"].get("state") for e in body if e["event"] == "state"]
    assert states == STATES
    progress = [e["data"]["data"] for e in body if e["event"] == "progress"]
    assert progress and progress[-1]["step"] == RUN_CONFIG["max_steps"]
    assert all(e["data"]["time"].endswith("Z") or "+" in e["data"]["time"] for e in body)

    record = service.get(f"/runs/{run_id}").json()
    assert record["state"] == "FINISHED" and record["model_handle"].startswith("stm1:")
    assert record["progress"]["step"] == RUN_CONFIG["max_steps"]
    assert run_id in {row["run_id"] for row in service.get("/runs").json()}

    metrics = service.get(f"/runs/{run_id}/metrics").json()
    assert set(metrics["before"]) == set(metrics["after"]) and "map@10" in metrics["after"]
    assert metrics["after"]["map@10"] != metrics["before"]["map@10"]  # the weights did change
    logs = service.get(f"/runs/{run_id}/logs").text
    assert "FINISHED" in logs and "TRAINING" in logs

    # The model: handle, then the archive, unpacked and loaded, encodes like the handle's.
    model_info = service.get(f"/runs/{run_id}/model").json()
    assert model_info["handle"] == record["model_handle"]
    download = service.get(f"/runs/{run_id}/model/download")
    assert download.status_code == 200
    assert len(download.content) == int(download.headers["content-length"])
    import hashlib

    assert hashlib.sha256(download.content).hexdigest() == download.headers["x-searchtuner-sha256"]
    folder = Path(str(service.data_dir)).parent / f"pulled-{run_id}"
    with tarfile.open(fileobj=io.BytesIO(download.content)) as archive:
        archive.extractall(folder, filter="data")
    bundle = next(path.parent for path in folder.rglob("searchtuner.json"))
    pulled = searchtuner.load_bundle(bundle)
    by_handle = searchtuner.get_model(record["model_handle"])
    texts = [text for text, _ in [("a domestic cat", ""), ("move fast on foot", "")]]
    vectors = searchtuner.encode(pulled, texts)
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(vectors, searchtuner.encode(by_handle, texts), atol=1e-6)


def test_http_errors_say_what_to_fix(service: Service) -> None:
    missing = service.get("/runs/run-does-not-exist")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    bad = service.post(
        "/runs", json={"model": "all-MiniLM-L6-v3", "train_data": "std1:" + "0" * 64}
    )
    assert bad.status_code == 400, bad.text
    assert "all-MiniLM-L6-v2" in bad.json()["detail"]  # the suggestion
    wrong_type = service.post(
        "/datasets", data=b"text,label\n", headers={"Content-Type": "image/png"}
    )
    assert wrong_type.status_code == 415 and "text/csv" in wrong_type.json()["detail"]
    assert service.get("/healthz").status_code == 200  # still serving
    off = service.get("/metrics")  # telemetry is off unless the service starts with --metrics
    assert off.status_code == 404 and "--metrics" in off.json()["detail"]
    assert service.get("/docs").status_code == 200
    paths = service.get("/openapi.json").json()["paths"]
    assert {"/datasets", "/runs", "/runs/{run_id}", "/runs/{run_id}/events"} <= set(paths)
