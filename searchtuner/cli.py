"""The ``searchtuner`` command line."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from searchtuner.errors import ConfigError, SearchTunerError

DEFAULT_URL = "http://127.0.0.1:54322"  # searchtuner.client.DEFAULT_URL, without importing it
SERVICE_EXTRA = "pip install -e '.[service]'"


def _models(args: argparse.Namespace) -> int:
    from searchtuner.models import list_models

    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<20} {'modality':<8} {'dim':>5} {'params':>12}  description")
    for row in rows:
        params = f"{row['params']:,}" if row["params"] else "varies"
        print(
            f"{row['name']:<20} {row['modality']:<8} {row['embedding_dim']:>5} {params:>12}  "
            f"{row['description']}"
        )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from searchtuner.data import validate

    report = validate(args.data, args.eval_data, kind=args.kind)
    print(report.to_json() if args.json else report)
    return 0 if report.ok else 1


def _demo(args: argparse.Namespace) -> int:
    if args.in_process:
        from searchtuner.demo import run_demo

        run_demo(backbone=args.backbone, k=args.k, epochs=args.epochs)
        return 0
    from searchtuner.service_demo import run_service_demo

    run_service_demo(
        args.data_dir, backbone=args.backbone, epochs=args.epochs, keep_serving=False, eval_k=args.k
    )
    return 0


def serve_command(args: argparse.Namespace) -> tuple[list[str], Path]:
    """The command line that starts the service, and the folder to run it in.

    The service (jina, the executors, the gateway) lives in the repository next to the
    ``searchtuner`` package, not in the package: it runs as ``python -m gateway.serve`` from
    the repository root. Paths are made absolute first, since the folder changes; without
    ``--data-dir`` or ``--store`` (or ``SEARCHTUNER_STORE``) the data goes to
    ``./searchtuner-data`` of the folder ``searchtuner serve`` was started in.

    Raises:
        ConfigError: there is no service next to the package (an installed wheel), or jina
            is not installed.
    """
    import searchtuner

    root = Path(searchtuner.__file__).resolve().parents[1]
    if not (root / "gateway" / "serve.py").is_file():
        raise ConfigError(
            f"the service is not installed here (no gateway/serve.py in {root}): it needs a "
            f"checkout of the SearchTuner repository with the service extra installed "
            f"({SERVICE_EXTRA})"
        )
    if importlib.util.find_spec("jina") is None:
        raise ConfigError(f"the service needs jina: install the service extra ({SERVICE_EXTRA})")
    argv = [sys.executable, "-m", "gateway.serve"]
    options: list[tuple[str, object]] = [
        ("--port", args.port),
        ("--http-port", args.http_port),
        ("--host", args.host),
        ("--store", args.store),
        ("--max-concurrent-runs", args.max_concurrent_runs),
        ("--otlp-endpoint", args.otlp_endpoint),
    ]
    data_dir = args.data_dir
    if data_dir is None and args.store is None and not os.environ.get("SEARCHTUNER_STORE"):
        data_dir = "searchtuner-data"
    if data_dir is not None:
        options.append(("--data-dir", Path(data_dir).expanduser().resolve()))
    for flag, value in options:
        if value is not None:
            argv += [flag, str(value)]
    if args.metrics:
        argv.append("--metrics")
    return argv, root


def _serve(args: argparse.Namespace) -> int:
    argv, root = serve_command(args)
    print(f"starting the service: {' '.join(argv[1:])} (in {root})", file=sys.stderr, flush=True)
    os.chdir(root)
    os.execv(argv[0], argv)  # the service takes this process over: Ctrl-C reaches it directly
    return 0  # pragma: no cover - execv does not return


def _client_command(name: str) -> Callable[[argparse.Namespace], int]:
    """The handler of a client command, imported when it runs (the other commands stay fast)."""

    def run(args: argparse.Namespace) -> int:
        from searchtuner.client import commands

        handler: Callable[[argparse.Namespace], int] = getattr(commands, name)
        return handler(args)

    run.__name__ = name
    return run


def _add_serve(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="start the service (gRPC and HTTP behind one gateway)",
        description="Start the SearchTuner service; it runs until Ctrl-C.",
    )
    serve.add_argument("--port", type=int, help="gRPC port (default 54321)")
    serve.add_argument("--http-port", type=int, help="HTTP port (default 54322)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1: this machine only)")
    store = serve.add_mutually_exclusive_group()
    store.add_argument(
        "--data-dir", help="local folder of the artifact store (default ./searchtuner-data)"
    )
    store.add_argument("--store", help="store URI instead, e.g. s3://bucket/prefix")
    serve.add_argument(
        "--max-concurrent-runs", type=int, help="runs that train at once (default 1)"
    )
    serve.add_argument(
        "--otlp-endpoint",
        help="send traces and metrics to an OpenTelemetry collector (OTLP/gRPC), e.g. "
        "http://127.0.0.1:4317 (default: none; see docs/telemetry.md)",
    )
    serve.add_argument(
        "--metrics",
        action="store_true",
        help="serve Prometheus metrics at the HTTP port's /metrics",
    )
    serve.set_defaults(func=_serve)


def _add_client_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    # --url/--token may come before or after the command; here they only override when given.
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    connection.add_argument("--token", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[connection])
        sub.set_defaults(func=_client_command(name))
        return sub

    fit = command("fit", "upload data, fine-tune a model in the service, follow the run")
    fit.add_argument("--model", required=True, help="backbone, e.g. all-MiniLM-L6-v2")
    fit.add_argument(
        "--train-data", required=True, help="CSV/JSONL file, or a dataset handle (std1:...)"
    )
    fit.add_argument("--eval-data", help="evaluation data: metrics before and after")
    fit.add_argument("--epochs", type=int)
    fit.add_argument("--batch-size", type=int)
    fit.add_argument("--learning-rate", type=float)
    fit.add_argument("--loss", help="loss, e.g. TripletMarginLoss (default: by the data's kind)")
    fit.add_argument("--miner", help="triplet miner: all, hard, semihard, easy-positive or none")
    fit.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    fit.add_argument("--config", help="training config as a JSON object (flags override it)")
    fit.add_argument("--model-options", help="conversion options as a JSON object")
    fit.add_argument("--kind", help="data kind of uploaded files (default: inferred)")
    fit.add_argument("--name", help="a name for the run")
    fit.add_argument(
        "--processes-per-node", type=int, default=1,
        help="training processes per node, one per GPU (default 1)",
    )  # fmt: skip
    fit.add_argument(
        "--nnodes", type=int, default=1,
        help="nodes the run spans; >1 needs a deployment with a multi-node launcher "
        "(SEARCHTUNER_MAX_NODES, docs/distributed.md)",
    )  # fmt: skip
    fit.add_argument("--no-onnx", action="store_true", help="do not export model.onnx")
    fit.add_argument("--no-wait", action="store_true", help="print the run id and return at once")

    command("runs", "list the runs")
    status = command("status", "a run's state, progress, model handle and metrics")
    status.add_argument("run", help="run id")
    logs = command("logs", "a run's log")
    logs.add_argument("run", help="run id")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="keep printing until the run ends"
    )
    cancel = command("cancel", "cancel a run")
    cancel.add_argument("run", help="run id")
    delete = command("delete", "delete a run and what it stored")
    delete.add_argument("run", help="run id")
    pull = command("pull", "save a tuned model as a bundle folder")
    pull.add_argument("source", metavar="RUN|HANDLE", help="run id or model handle (stm1:...)")
    pull.add_argument("--output", "-o", help="folder to create (default ./<run id>)")
    command("datasets", "list the uploaded datasets")
    upload = command("upload", "upload a dataset; prints its handle and validation report")
    upload.add_argument("data", help="CSV or JSONL file")
    upload.add_argument("--kind", help="labeled, pairs, text_image or unlabeled")
    upload.add_argument("--name", help="a name for the dataset")
    upload.add_argument("--batch-size", type=int, default=2000, help="items per batch")


def add_token_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from searchtuner.token_cli import add_token_commands as add

    add(commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="searchtuner",
        description="Fine-tune pretrained models into embedding models for neural search.",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("SEARCHTUNER_URL") or DEFAULT_URL,
        help="the service, http://host:port or grpc://host:port (default $SEARCHTUNER_URL, "
        f"else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SEARCHTUNER_TOKEN"),
        help="your token, if the service uses tokens (default $SEARCHTUNER_TOKEN)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the registered backbones")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=_models)

    validate = commands.add_parser("validate", help="check a dataset and print its report")
    validate.add_argument("data", help="a CSV or JSONL file")
    validate.add_argument("--eval-data", help="evaluation data, checked for overlap")
    validate.add_argument(
        "--kind", help="labeled, pairs, text_image or unlabeled (default: inferred)"
    )
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.set_defaults(func=_validate)

    demo = commands.add_parser(
        "demo",
        help="the main job: start the service, stream data in, fine-tune, compare, pull, search",
    )
    demo.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    demo.add_argument(
        "--data-dir",
        default="searchtuner-demo",
        help="the service's local store and logs (default ./searchtuner-demo)",
    )
    demo.add_argument(
        "--in-process",
        action="store_true",
        help="skip the service: convert, validate, fine-tune and compare in this process",
    )
    demo.add_argument("--backbone", default="all-MiniLM-L6-v2")
    demo.add_argument("--k", type=int, default=10, help="rank cut-off of the metrics")
    demo.set_defaults(func=_demo)

    _add_serve(commands)
    add_token_commands(commands)
    _add_client_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SearchTunerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
