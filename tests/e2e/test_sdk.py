"""The Python SDK and the client commands against the real service (started by the session's
``service`` fixture with ``python -m gateway.serve``): one run started from the command line,
then read, followed and pulled over HTTP and over gRPC, and the errors each way."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

import searchtuner
from searchtuner.cli import main
from searchtuner.client import Client, NotFoundError, RequestError, Run
from searchtuner.client.commands import follow
from searchtuner.data import LabeledDoc
from tests.e2e.service import Service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_TIMEOUT = 900.0
TEXTS = ["a domestic cat", "move fast on foot"]


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def finished_run(service: Service, wordnet_csv: dict[str, Path]) -> Run:
    """One run, started with ``searchtuner fit --no-wait`` and waited for with the SDK."""
    code, out, err = _cli(
        "--url", service.http, "--token", service.token, "fit", "--model", "all-MiniLM-L6-v2",
        "--train-data", str(wordnet_csv["train"]), "--eval-data", str(wordnet_csv["eval"]),
        "--epochs", "1", "--batch-size", "16", "--max-steps", "4",
        "--model-options", '{"max_length": 32}', "--name", "sdk-e2e", "--no-onnx", "--no-wait",
    )  # fmt: skip
    assert code == 0, err
    match = re.search(r"run (run-\S+) started", out)
    assert match, out
    assert f"searchtuner logs {match[1]} -f" in out
    run = Client(service.http, token=service.token).get_run(match[1])
    return run.wait(timeout=RUN_TIMEOUT, poll=1.0)


def test_the_run_finishes_and_fit_reports_its_metrics(finished_run: Run) -> None:
    assert finished_run.state == "FINISHED", finished_run.reason
    out = io.StringIO()
    assert follow(finished_run, out) == 0  # an ended run: its outcome at once
    text = out.getvalue()
    assert re.search(r"^map@10\s+0\.\d{4}\s+0\.\d{4}\s+[+-]0\.\d{4}", text, re.M), text
    assert f"model: {finished_run.model_handle}" in text
    assert f"searchtuner pull {finished_run.id}" in text


def test_sdk_over_http(service: Service, finished_run: Run, tmp_path: Path) -> None:
    client = Client(service.http, token=service.token)
    run = client.get_run(finished_run.id)
    assert (run.name, run.state) == ("sdk-e2e", "FINISHED")
    assert run.model_handle and run.model_handle.startswith("stm1:")
    assert run.status()["progress"]["step"] == 4
    metrics = run.metrics()
    assert "map@10" in metrics["before"] and set(metrics["before"]) == set(metrics["after"])
    lines = list(run.stream_logs(follow=True, timeout=60))
    assert lines == run.logs().splitlines()
    assert " FINISHED " in lines[-1]
    states = [e["data"]["state"] for e in run.events() if e["type"] == "state"]
    assert states[0] == "CREATED" and states[-1] == "FINISHED"
    assert run.id in {r.id for r in client.list_runs()}
    assert len(client.list_datasets()) >= 2

    folder = run.save_artifact(tmp_path / "model")
    pulled = searchtuner.load_bundle(folder)
    vectors = searchtuner.encode(pulled, TEXTS)
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(searchtuner.encode(run.get_model(), TEXTS), vectors, atol=1e-6)

    with pytest.raises(NotFoundError, match="not found"):
        client.get_run("run-does-not-exist")
    with pytest.raises(RequestError, match="all-MiniLM-L6-v2") as caught:  # the suggestion
        client.fit("all-MiniLM-L6-v3", "std1:" + "0" * 64)
    assert caught.value.status == 400


def test_sdk_over_grpc(
    service: Service, finished_run: Run, wordnet_rows: dict[str, list[tuple[str, str]]]
) -> None:
    client = Client(service.grpc, token=service.token)
    docs = [LabeledDoc(text=text, label=label) for text, label in wordnet_rows["train"][:40]]
    dataset = client.upload(docs, name="grpc-docs", batch_size=16)
    assert dataset.ok and dataset.n_items == 40 and dataset.kind == "labeled"
    assert dataset.handle in {d.handle for d in client.list_datasets()}

    run = client.get_run(finished_run.id)
    assert run.state == "FINISHED" and run.model_handle == finished_run.model_handle
    assert run.metrics() == Client(service.http, token=service.token).get_run(run.id).metrics()
    assert list(run.stream_logs(follow=True, timeout=60)) == run.logs().splitlines()
    # no download route over gRPC: the model is read from the service's store on this machine
    model = client.get_model(run.id)
    assert searchtuner.encode(model, TEXTS).shape == (2, 384)

    with pytest.raises(NotFoundError) as missing:
        client.get_run("run-does-not-exist")
    assert missing.value.error == "RunNotFound" and missing.value.status == 404
    with pytest.raises(RequestError, match="unknown training parameter"):
        client.fit("all-MiniLM-L6-v2", dataset, epochs=1, no_such_setting=3)


def test_client_commands(service: Service, finished_run: Run, tmp_path: Path) -> None:
    url = ["--url", service.http, "--token", service.token]
    code, out, _ = _cli(*url, "runs")
    assert code == 0 and re.search(rf"^{finished_run.id}\s+sdk-e2e\s+FINISHED\s+100%", out, re.M)
    code, out, _ = _cli(*url, "status", finished_run.id)
    assert code == 0 and "FINISHED" in out and "map@10" in out
    code, out, _ = _cli(*url, "logs", finished_run.id)
    assert code == 0 and "FINISHED" in out
    code, out, _ = _cli(*url, "datasets")
    assert code == 0 and "std1:" in out
    code, out, _ = _cli(*url, "pull", finished_run.id, "--output", str(tmp_path / "pulled"))
    assert code == 0 and searchtuner.load_bundle(tmp_path / "pulled").embedding_dim == 384
    code, _, err = _cli(*url, "status", "run-does-not-exist")
    assert code == 2 and err.startswith("error: ") and "not found" in err
