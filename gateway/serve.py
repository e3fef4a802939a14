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
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path

from searchtuner.errors import ConfigError
from searchtuner.service.owners import LOCAL_OWNER
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
        "--tls-cert",
        default=None,
        help="serve gRPC and HTTPS with this certificate (PEM); needs --tls-key",
    )
    options.add_argument("--tls-key", default=None, help="the certificate's private key (PEM)")
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
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("--tls-cert and --tls-key go together: give both, or neither")
    for name in (args.tls_cert, args.tls_key):
        if name and not Path(name).is_file():
            raise SystemExit(f"no such TLS file: {name}")
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


def bootstrap_token(uri: str) -> str | None:
    """A first token for the local owner when the store has none (the embedded default's
    single-owner start); None when tokens exist."""
    from searchtuner.service.tokens import TokenStore
    from searchtuner.store import open_store

    tokens = TokenStore(open_store(uri), cache_seconds=0)
    if next(iter(tokens.list()), None) is not None:
        return None
    return tokens.create(LOCAL_OWNER, "created at the first start").token


def main(argv: Sequence[str] | None = None) -> int:
    """Run the service until interrupted."""
    args = parser().parse_args(argv)
    uri = configure(args)
    from jina import Flow  # after the environment is set: executors read it when they start

    overrides: dict[str, object] = {"port": [args.port, args.http_port], "host": args.host}
    tls: dict[str, str] = {}  # the gateway's only: the executors stay on the Flow's network
    if args.tls_cert:
        tls = {
            "ssl_certfile": str(Path(args.tls_cert).resolve()),
            "ssl_keyfile": str(Path(args.tls_key).resolve()),
        }
    first_token = bootstrap_token(uri)
    telemetry = config_from_env().flow_options()  # {} unless an OTLP endpoint is set
    stop = _stop_on_signals()
    restarts: list[float] = []
    while True:
        flow = Flow.load_config(str(FLOW), uses_with={**overrides, **telemetry})
        if tls:
            flow = flow.config_gateway(**tls)
        with flow:
            if first_token:
                print(
                    f"No tokens in the store yet: created one for owner {LOCAL_OWNER!r}. Send "
                    "it with every request (it is shown only now; more with `searchtuner token "
                    f"create`):\n  export SEARCHTUNER_TOKEN={first_token}",
                    flush=True,
                )
                first_token = None
            scheme = "https" if args.tls_cert else "http"
            print(
                f"SearchTuner is serving: grpc://{args.host}:{args.port}  "
                f"{scheme}://{args.host}:{args.http_port} (API docs at /docs)  store {uri}",
                flush=True,
            )
            dead = watch_parts(stop)
            if dead is not None:
                # Said now, before the Flow closes its other parts (which takes a while).
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < RESTART_WINDOW_S] + [now]
                if len(restarts) > MAX_RESTARTS:
                    print(
                        f"{dead}; {len(restarts)} restarts in {RESTART_WINDOW_S / 60:.0f} "
                        "minutes: giving up (see the log above for why the parts die)",
                        file=sys.stderr,
                        flush=True,
                    )
                else:
                    print(
                        f"{dead}; restarting the service (unfinished runs resume from their "
                        "last checkpoint)",
                        file=sys.stderr,
                        flush=True,
                    )
                release_dead_parts(flow)
        if dead is None:
            return 0
        if len(restarts) > MAX_RESTARTS:
            return 1


MAX_RESTARTS = 5
RESTART_WINDOW_S = 600.0
WATCH_INTERVAL_S = 1.0


def _stop_on_signals() -> threading.Event:
    """An event that SIGINT and SIGTERM set (Ctrl-C, ``docker stop``, the kubelet)."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)
    return stop


def watch_parts(stop: threading.Event) -> str | None:
    """Wait until ``stop`` is set (None) or a part of the Flow dies (what died, as text).

    The gateway and each executor run in their own process; jina's Flow does not restart one
    that dies (killed by the OOM killer, ``kill -9``, a crash in native code), which would leave
    the service half up. The caller restarts the whole Flow instead, and the trainer resumes
    the runs the dead part left.
    """
    parts = {process.pid: process for process in multiprocessing.active_children()}
    while not stop.wait(WATCH_INTERVAL_S):
        for process in parts.values():
            if not process.is_alive():
                code = process.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                return f"the service's part {process.name} (pid {process.pid}) died ({how})"
    return None


def release_dead_parts(flow: object) -> None:
    """Mark the Flow's dead parts as shut down, so that closing the Flow does not wait for them.

    jina's ``Pod.close`` waits up to ``timeout_ctrl`` (60 s) for the part's process to set its
    ``is_shutdown`` event on the way out; a part killed with SIGKILL never does, and every
    restart stalled a minute (logging ``Shutdown signal was not received for 60 seconds``).
    The event is a multiprocessing Event, shared with this process: setting it for a process
    that is gone lets ``close`` go straight to cleaning up. Reads jina 3.34's Flow internals
    defensively: if they change, closing waits as before.
    """
    for deployment in getattr(flow, "_deployment_nodes", {}).values():
        names = ("head_pod", "uses_before_pod", "uses_after_pod")
        pods = [getattr(deployment, name, None) for name in names]
        for replicas in getattr(deployment, "shards", {}).values():
            pods.extend(getattr(replicas, "_pods", []))
        for pod in pods:
            worker = getattr(pod, "worker", None)
            event = getattr(pod, "is_shutdown", None)
            if not isinstance(worker, BaseProcess) or event is None or worker.pid is None:
                continue  # not started, or not a process of ours (a container, a thread)
            if not worker.is_alive():
                event.set()


if __name__ == "__main__":
    sys.exit(main())
