"""Start the fine-tuning service: ``flows/finetune.yml`` with ports, store and limits set.

``searchtuner serve`` runs this module; it is also runnable as
``python -m gateway.serve --port 54321 --http-port 54322 --data-dir DIR`` from the repository.
The Flow blocks until SIGINT/SIGTERM, then stops every executor; the trainer stops its
workers without ending their runs, so the next start resumes them.

Telemetry (``docs/telemetry.md``) is off unless asked for: ``--otlp-endpoint`` sends traces and
metrics to an OpenTelemetry collector, ``--metrics`` serves Prometheus metrics at the HTTP
port's ``/metrics``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from searchtuner.errors import ConfigError
from searchtuner.telemetry.config import (
    METRICS_ENV,
    OTLP_ENDPOINT_ENV,
    check_endpoint,
    config_from_env,
)

REPO = Path(__file__).resolve().parents[1]
FLOW = REPO / "flows" / "finetune.yml"


def parser() -> argparse.ArgumentParser:
    """The options of ``searchtuner serve``."""
    options = argparse.ArgumentParser(
        prog="searchtuner serve",
        description="Start the SearchTuner service: gRPC and HTTP behind one gateway.",
    )
    options.add_argument("--port", type=int, default=54321, help="gRPC port (default 54321)")
    options.add_argument("--http-port", type=int, default=54322, help="HTTP port (default 54322)")
    options.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    store = options.add_mutually_exclusive_group()
    store.add_argument(
        "--data-dir",
        default=None,
        help="local artifact store folder (default ./searchtuner-data, or SEARCHTUNER_STORE)",
    )
    store.add_argument("--store", default=None, help="store URI, e.g. s3://bucket/prefix")
    options.add_argument(
        "--max-concurrent-runs",
        type=int,
        default=None,
        help="runs that train at once; the rest wait in QUEUED (default 1)",
    )
    options.add_argument(
        "--otlp-endpoint",
        default=None,
        help="send traces and metrics to this OpenTelemetry collector (OTLP/gRPC), e.g. "
        f"http://127.0.0.1:4317 (default: ${OTLP_ENDPOINT_ENV} or $OTEL_EXPORTER_OTLP_ENDPOINT; "
        "none: no traces)",
    )
    options.add_argument(
        "--metrics",
        action="store_true",
        default=None,
        help=f"serve Prometheus metrics at the HTTP port's /metrics (or ${METRICS_ENV}=true)",
    )
    return options


def configure(args: argparse.Namespace) -> str:
    """Set the environment every part of the Flow reads; return the store URI."""
    if args.store:
        uri = args.store
    elif args.data_dir:
        folder = Path(args.data_dir).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        uri = folder.as_uri()
    else:
        uri = os.environ.get("SEARCHTUNER_STORE") or (Path.cwd() / "searchtuner-data").as_uri()
    os.environ["SEARCHTUNER_STORE"] = uri
    if args.max_concurrent_runs is not None:
        if args.max_concurrent_runs < 1:
            raise SystemExit("--max-concurrent-runs must be at least 1")
        os.environ["SEARCHTUNER_MAX_CONCURRENT_RUNS"] = str(args.max_concurrent_runs)
    for name, port in (("--port", args.port), ("--http-port", args.http_port)):
        if not 0 < port < 65536:
            raise SystemExit(f"{name} must be a TCP port (1-65535), got {port}")
    if args.port == args.http_port:
        raise SystemExit("--port and --http-port must differ")
    try:
        if args.otlp_endpoint:
            check_endpoint(args.otlp_endpoint, "--otlp-endpoint")
            os.environ[OTLP_ENDPOINT_ENV] = args.otlp_endpoint
        if args.metrics:
            os.environ[METRICS_ENV] = "true"
        config_from_env()  # every part reads it: a bad value stops the start here, not there
    except ConfigError as err:
        raise SystemExit(str(err)) from err
    return uri


def main(argv: Sequence[str] | None = None) -> int:
    """Run the service until interrupted."""
    args = parser().parse_args(argv)
    uri = configure(args)
    from jina import Flow  # after the environment is set: executors read it when they start

    overrides = {"port": [args.port, args.http_port], "host": args.host}
    telemetry = config_from_env().flow_options()  # {} unless an OTLP endpoint is set
    flow = Flow.load_config(str(FLOW), uses_with={**overrides, **telemetry})
    with flow:
        print(
            f"SearchTuner is serving: grpc://{args.host}:{args.port}  "
            f"http://{args.host}:{args.http_port} (API docs at /docs)  store {uri}",
            flush=True,
        )
        flow.block()
    return 0


if __name__ == "__main__":
    sys.exit(main())
