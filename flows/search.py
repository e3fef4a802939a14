"""Start the search Flow (``flows/search.yml``: encoder, then indexer) with a model and ports.

From the repository root::

    python -m flows.search --model <model handle or bundle folder> [--backend torch|onnx]
        [--batch-size 64] [--port 54331] [--http-port 54332] [--host 127.0.0.1]
        [--workspace DIR] [--otlp-endpoint http://127.0.0.1:4317] [--metrics-port 9464]

The same as ``SEARCHTUNER_MODEL=<model> jina flow --uses flows/search.yml``, with the encoder's
backend and batch size, the ports, the address and the indexer's workspace (where it keeps its
index across restarts) set from the command line. The Flow serves until SIGINT/SIGTERM, then
closes its executors (the indexer saves its index to the workspace, if one is set).

Telemetry (``docs/telemetry.md``): ``--otlp-endpoint`` traces every request and pushes the
encoder's latency histogram to an OpenTelemetry collector; ``--metrics-port`` serves the same
metrics for Prometheus at ``http://<host>:<port>/metrics``, collected through the Flow's
``/telemetry/metrics`` endpoint at each scrape (jina's own gateway has no such route).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
import yaml

from searchtuner.errors import ConfigError
from searchtuner.service.schemas import TelemetrySnapshot
from searchtuner.telemetry.config import METRICS_ENV, OTLP_ENDPOINT_ENV, check_endpoint
from searchtuner.telemetry.config import config_from_env as telemetry_config
from searchtuner.telemetry.prometheus import serve_metrics

FLOW = Path(__file__).resolve().parent / "search.yml"
MODEL_ENV = "SEARCHTUNER_MODEL"


def parser() -> argparse.ArgumentParser:
    """The launcher's options."""
    options = argparse.ArgumentParser(
        prog="python -m flows.search",
        description="Serve a tuned model in a Jina search Flow: /index, /search over gRPC+HTTP.",
    )
    options.add_argument(
        "--model",
        default=os.environ.get(MODEL_ENV, ""),
        help=f"model handle (stm1:...) or bundle folder (default ${MODEL_ENV})",
    )
    options.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        default="torch",
        help="torch (any bundle), or onnx: ONNX Runtime on the CPU, the bundle's model.onnx, "
        "about 1.15x faster for all-MiniLM-L6-v2 on 2 cores (default torch)",
    )
    options.add_argument(
        "--batch-size", type=int, default=64, help="texts per forward pass (default 64)"
    )
    options.add_argument("--port", type=int, default=54331, help="gRPC port (default 54331)")
    options.add_argument("--http-port", type=int, default=54332, help="HTTP port (default 54332)")
    options.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    options.add_argument(
        "--workspace",
        default=None,
        help="folder where the indexer saves its index on exit and loads it at start "
        "(default: none, the index lives in memory)",
    )
    options.add_argument(
        "--otlp-endpoint",
        default=None,
        help="send traces and metrics to this OpenTelemetry collector (OTLP/gRPC), e.g. "
        f"http://127.0.0.1:4317 (default: ${OTLP_ENDPOINT_ENV}; none: no traces)",
    )
    options.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics (encode latency...) at this port's /metrics",
    )
    return options


def configure(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, object]]:
    """Check the options; return the Flow's configuration and its ``with`` overrides.

    The configuration is ``flows/search.yml`` with the encoder's model, backend and batch
    size filled in, and each executor's ``uses`` made absolute.

    Raises:
        SystemExit: no model, a port out of range, or the same port twice.
    """
    if not args.model:
        raise SystemExit(f"give the model: --model <handle or bundle folder>, or set {MODEL_ENV}")
    model = args.model
    if Path(model).exists():
        model = str(Path(model).resolve())  # executors may run in another working directory
    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be at least 1, got {args.batch_size}")
    config = yaml.safe_load(FLOW.read_text())
    for executor in config["executors"]:
        executor["uses"] = str((FLOW.parent / executor["uses"]).resolve())
        if executor["name"] == "encoder":
            executor.setdefault("uses_with", {}).update(
                model=model, backend=args.backend, batch_size=args.batch_size
            )
    for name, port in (("--port", args.port), ("--http-port", args.http_port)):
        if not 0 < port < 65536:
            raise SystemExit(f"{name} must be a TCP port (1-65535), got {port}")
    if args.port == args.http_port:
        raise SystemExit("--port and --http-port must differ")
    if args.metrics_port is not None and not 0 < args.metrics_port < 65536:
        raise SystemExit(f"--metrics-port must be a TCP port (1-65535), got {args.metrics_port}")
    if args.metrics_port in (args.port, args.http_port):
        raise SystemExit("--metrics-port must differ from --port and --http-port")
    try:
        if args.otlp_endpoint:
            os.environ[OTLP_ENDPOINT_ENV] = check_endpoint(args.otlp_endpoint, "--otlp-endpoint")
        if args.metrics_port is not None:
            os.environ[METRICS_ENV] = "true"  # the executors read it when they start
        telemetry = telemetry_config()
    except ConfigError as err:
        raise SystemExit(str(err)) from err
    overrides: dict[str, object] = {
        "port": [args.port, args.http_port],
        "host": args.host,
        **telemetry.flow_options(),
    }
    if args.workspace:
        workspace = Path(args.workspace).expanduser().resolve()
        workspace.mkdir(parents=True, exist_ok=True)
        overrides["workspace"] = str(workspace)
    return config, overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted."""
    args = parser().parse_args(argv)
    config, overrides = configure(args)
    from jina import Flow

    flow = Flow.load_config(config, uses_with=overrides)
    with flow:
        metrics = None
        if args.metrics_port is not None:
            gateway = f"{_reachable(args.host)}:{args.http_port}"
            metrics = serve_metrics(args.host, args.metrics_port, lambda: _metrics(gateway))
            print(f"Prometheus metrics: http://{args.host}:{args.metrics_port}/metrics", flush=True)
        print(
            # searchtuner.search_demo waits for this line (READY_LINE)
            f"The search Flow is serving: grpc://{args.host}:{args.port}  "
            f"http://{args.host}:{args.http_port} (API docs at /docs)  model {args.model} "
            f"({args.backend})",
            flush=True,
        )
        try:
            flow.block()
        finally:
            if metrics is not None:
                metrics.shutdown()
    return 0


def _reachable(host: str) -> str:
    """An address of this machine the gateway listens on, for a client here."""
    if host in ("0.0.0.0", "", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _metrics(gateway: str) -> dict[str, str]:
    """Each executor's Prometheus text, asked through the Flow's own HTTP gateway."""
    seed = TelemetrySnapshot(service="gateway").dict(exclude={"id"})
    try:
        response = requests.post(
            f"http://{gateway}/telemetry/metrics", json={"data": [seed]}, timeout=30
        )
        response.raise_for_status()
    except requests.RequestException as err:
        raise OSError(f"the Flow's gateway did not answer /telemetry/metrics: {err}") from err
    return {doc["service"]: doc["text"] for doc in response.json()["data"] if doc.get("text")}


if __name__ == "__main__":
    sys.exit(main())
