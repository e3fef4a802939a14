"""The client commands of the ``searchtuner`` command line: parsing, serve's command line,
what fit prints as a run goes, and errors as one line."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import pytest
from client_fakes import FakeTransport, event

import searchtuner
from searchtuner.cli import build_parser, main, serve_command
from searchtuner.client import Client
from searchtuner.client.commands import follow, json_object, training_config
from searchtuner.errors import ConfigError

REPO = Path(searchtuner.__file__).resolve().parents[1]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["runs"], {"command": "runs"}),
        (["status", "run-1"], {"run": "run-1"}),
        (["logs", "run-1"], {"run": "run-1", "follow": False}),
        (["logs", "run-1", "-f"], {"run": "run-1", "follow": True}),
        (["cancel", "run-1"], {"run": "run-1"}),
        (["delete", "run-1"], {"run": "run-1"}),
        (["pull", "run-1"], {"source": "run-1", "output": None}),
        (["pull", "stm1:abc", "--output", "out"], {"source": "stm1:abc", "output": "out"}),
        (["datasets"], {"command": "datasets"}),
        (["upload", "t.csv"], {"data": "t.csv", "kind": None, "name": None, "batch_size": 2000}),
        (
            ["upload", "t.jsonl", "--kind", "pairs", "--name", "faq", "--batch-size", "10"],
            {"kind": "pairs", "name": "faq", "batch_size": 10},
        ),
        (["serve"], {"port": None, "http_port": None, "data_dir": None, "store": None}),
        (
            ["serve", "--port", "1", "--http-port", "2", "--host", "0.0.0.0"],
            {"port": 1, "http_port": 2, "host": "0.0.0.0"},
        ),
        (["models"], {"json": False}),
        (["validate", "t.csv", "--kind", "labeled"], {"data": "t.csv", "kind": "labeled"}),
        (["demo", "--epochs", "2"], {"epochs": 2}),
    ],
)
def test_each_command_parses(argv: list[str], expected: dict[str, object]) -> None:
    args = parse(*argv)
    assert callable(args.func)
    for name, value in expected.items():
        assert getattr(args, name) == value


def test_fit_options() -> None:
    args = parse(
        "fit", "--model", "all-MiniLM-L6-v2", "--train-data", "train.csv",
        "--eval-data", "std1:abc", "--epochs", "2", "--batch-size", "16",
        "--learning-rate", "5e-5", "--loss", "TripletMarginLoss", "--miner", "hard",
        "--max-steps", "100", "--config", '{"epochs": 9, "seed": 3}',
        "--model-options", '{"pooling": "mean"}', "--name", "n", "--no-wait",
        "--nnodes", "2", "--processes-per-node", "4",
    )  # fmt: skip
    assert (args.model, args.train_data, args.eval_data) == (
        "all-MiniLM-L6-v2",
        "train.csv",
        "std1:abc",
    )
    assert args.no_wait and not args.no_onnx and args.name == "n"
    assert (args.nnodes, args.processes_per_node) == (2, 4)
    defaults = parse("fit", "--model", "m", "--train-data", "t.csv")
    assert (defaults.nnodes, defaults.processes_per_node) == (1, 1)
    # flags given on their own win over --config
    assert training_config(args) == {
        "epochs": 2, "seed": 3, "batch_size": 16, "learning_rate": 5e-5,
        "loss": "TripletMarginLoss", "miner": "hard", "max_steps": 100,
    }  # fmt: skip
    assert json_object(args.model_options, "--model-options") == {"pooling": "mean"}


def test_fit_needs_a_model_and_data(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse("fit", "--train-data", "t.csv")
    assert caught.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_json_options_say_what_is_wrong() -> None:
    with pytest.raises(ConfigError, match="--config is not JSON"):
        json_object("{epochs: 2}", "--config")
    with pytest.raises(ConfigError, match="must be a JSON object, got list"):
        json_object("[1]", "--config")
    assert json_object(None, "--config") == {}


def test_url_and_token_before_or_after_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEARCHTUNER_URL", raising=False)
    monkeypatch.delenv("SEARCHTUNER_TOKEN", raising=False)
    assert (parse("runs").url, parse("runs").token) == ("http://127.0.0.1:54322", None)
    assert parse("--url", "grpc://h:1", "runs").url == "grpc://h:1"
    args = parse("status", "r", "--url", "grpc://h:2", "--token", "t")
    assert (args.url, args.token) == ("grpc://h:2", "t")
    monkeypatch.setenv("SEARCHTUNER_URL", "http://tuner:80")
    monkeypatch.setenv("SEARCHTUNER_TOKEN", "from-env")
    assert (parse("runs").url, parse("runs").token) == ("http://tuner:80", "from-env")


def test_serve_runs_the_gateway_from_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEARCHTUNER_STORE", raising=False)
    argv, cwd = serve_command(parse("serve", "--port", "5001", "--data-dir", "data"))
    assert cwd == REPO and (REPO / "gateway" / "serve.py").is_file()
    assert argv == [
        sys.executable, "-m", "gateway.serve", "--port", "5001",
        "--data-dir", str(tmp_path / "data"),  # absolute: the folder changes
    ]  # fmt: skip
    argv, _ = serve_command(
        parse("serve", "--http-port", "5002", "--host", "0.0.0.0", "--store", "s3://b/p",
              "--max-concurrent-runs", "2")
    )  # fmt: skip
    assert argv[3:] == [
        "--http-port", "5002", "--host", "0.0.0.0", "--store", "s3://b/p",
        "--max-concurrent-runs", "2",
    ]  # fmt: skip


def test_serve_keeps_the_default_data_folder_where_it_was_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEARCHTUNER_STORE", raising=False)
    argv, _ = serve_command(parse("serve"))
    assert argv[3:] == ["--data-dir", str(tmp_path / "searchtuner-data")]
    monkeypatch.setenv("SEARCHTUNER_STORE", "s3://bucket")  # the gateway reads it itself
    assert serve_command(parse("serve"))[0][3:] == []


def test_serve_takes_one_store(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("serve", "--data-dir", "d", "--store", "s3://b")
    assert "not allowed with argument" in capsys.readouterr().err


def test_no_service_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["--url", f"http://127.0.0.1:{port}", "runs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot reach the SearchTuner service at http://127.0.0.1:{port}")
    assert "searchtuner serve" in err and err.count("\n") == 1
    assert main(["--url", "localhost:1", "runs"]) == 2
    assert "no scheme" in capsys.readouterr().err


def _fake_client(fake: FakeTransport) -> Client:
    return Client("http://127.0.0.1:1", transport=fake)


def test_follow_shows_states_then_the_metrics_and_the_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeTransport()
    fake.event_log = [
        event(1, "state", "queued", state="QUEUED"),
        event(2, "state", "", state="TRAINING"),
        event(3, "progress", "", step=1, total_steps=2, loss=0.5, epoch=1, epochs=1),
        event(4, "log", "loss spiked"),
        event(5, "progress", "", step=2, total_steps=2, loss=0.25, epoch=1, epochs=1),
        event(6, "state", "published", state="FINISHED"),
    ]
    fake.event_log[3].level = "warning"
    fake.states, fake.model_handle = ["FINISHED"], "stm1:" + "a" * 64 + ":1@s3://b/k.tar"
    out = io.StringIO()
    assert follow(_fake_client(fake).get_run("run-1"), out) == 0
    text = out.getvalue()
    assert "QUEUED     queued" in text and "TRAINING" in text and "WARNING: loss spiked" in text
    assert "map@10  0.4000  0.5000  +0.1000 (+25.0%)" in text
    assert "model: stm1:" in text and "searchtuner pull run-1" in text
    assert "training" in capsys.readouterr().err  # the progress bar


def test_follow_a_failed_run_exits_1_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeTransport()
    fake.event_log = [event(1, "state", "failed", state="FAILED")]
    fake.states = ["FAILED"]
    assert follow(_fake_client(fake).get_run("run-1"), io.StringIO()) == 1
    assert "run run-1 FAILED: boom" in capsys.readouterr().err


def test_importing_searchtuner_imports_neither_jina_nor_requests() -> None:
    code = "import sys, searchtuner; print(sorted({'jina', 'requests'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]"
