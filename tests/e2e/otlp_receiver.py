"""A minimal OTLP/gRPC receiver for tests: what it receives goes to JSON-lines files.

    python -m tests.e2e.otlp_receiver --out DIR

listens on 127.0.0.1 (a free port), prints ``listening on 127.0.0.1:<port>``, and appends each
span it receives to ``DIR/spans.jsonl`` and each metric data point to ``DIR/metrics.jsonl``,
one JSON object per line, flushed as it arrives. It answers every export with success and
runs until SIGTERM or SIGINT. It runs as a process of its own: a gRPC server in the test
process would share grpc's global state with the Flow the test starts.

:class:`Receiver` starts it from a test and reads the files back.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parents[2]
READY = "listening on "


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def span_rows(request: Any) -> Iterator[dict[str, Any]]:
    """One dict per span of an ExportTraceServiceRequest."""
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": span.kind,
                    "service": resource.get("service.name", ""),
                    "scope": scope_spans.scope.name,
                    "attributes": _attributes(span.attributes),
                    "start_ns": span.start_time_unix_nano,
                    "end_ns": span.end_time_unix_nano,
                    "status": span.status.code,
                }


def metric_rows(request: Any) -> Iterator[dict[str, Any]]:
    """One dict per data point of an ExportMetricsServiceRequest."""
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                data = getattr(metric, kind)
                for point in data.data_points:
                    row: dict[str, Any] = {
                        "service": resource.get("service.name", ""),
                        "name": metric.name,
                        "unit": metric.unit,
                        "type": kind,
                        "attributes": _attributes(point.attributes),
                        "time_ns": point.time_unix_nano,
                    }
                    if kind == "histogram":
                        row.update(count=point.count, sum=point.sum)
                    else:
                        row["value"] = getattr(point, point.WhichOneof("value"))
                    yield row


def serve(out: Path) -> None:
    """Receive until SIGTERM/SIGINT."""
    import grpc
    from opentelemetry.proto.collector.metrics.v1 import (
        metrics_service_pb2,
        metrics_service_pb2_grpc,
    )
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    out.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    with (
        open(out / "spans.jsonl", "a", encoding="utf-8") as spans_file,
        open(out / "metrics.jsonl", "a", encoding="utf-8") as metrics_file,
    ):

        def write(handle: TextIO, rows: Iterator[dict[str, Any]]) -> None:
            with lock:
                for row in rows:
                    handle.write(json.dumps(row) + "\n")
                handle.flush()

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                write(spans_file, span_rows(request))
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                write(metrics_file, metric_rows(request))
                return metrics_service_pb2.ExportMetricsServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        print(f"{READY}127.0.0.1:{port}", flush=True)
        stop.wait()
        server.stop(grace=2).wait(5)


class Receiver:
    """The receiver as a subprocess of a test: start, read what arrived, stop."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Receiver:
        """Start it and wait for its port (at most ``timeout`` seconds)."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.otlp_receiver", "--out", str(self.out)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        stdout = self._process.stdout
        assert stdout is not None
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = found[0] if found else ""
        if not line.startswith(READY):
            self.stop()
            raise RuntimeError(f"the OTLP receiver did not start within {timeout:.0f} s: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
        self._process = None

    def spans(self) -> list[dict[str, Any]]:
        return _read(self.out / "spans.jsonl")

    def metrics(self) -> list[dict[str, Any]]:
        return _read(self.out / "metrics.jsonl")

    def wait_for(
        self,
        what: str,
        predicate: Callable[[], Any],
        timeout: float,
        interval: float = 0.25,
    ) -> Any:
        """Poll until ``predicate()`` is truthy; AssertionError naming ``what`` after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # Only lines that end with a newline are whole: the last piece may be being written.
    *whole, _partial = path.read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in whole]


def main(argv: Sequence[str] | None = None) -> int:
    options = argparse.ArgumentParser(prog="python -m tests.e2e.otlp_receiver")
    options.add_argument("--out", required=True, type=Path, help="folder for the JSON lines")
    serve(options.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
