"""Several processes' Prometheus text merged into one exposition, for the gateway's /metrics.

Each process of the Flow renders what it measures (:meth:`ProcessMetrics.exposition`); the
gateway collects those texts through the Flow and serves them as one. The text format allows
each metric family once, so samples are grouped by family, and each sample gets a ``service``
label naming the process it came from, so that two processes never produce the same series.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from searchtuner.errors import DataError, SearchTunerError

logger = logging.getLogger("searchtuner.telemetry")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Content-Type of the Prometheus text format."""
SERVICE_LABEL = "service"


def merge_expositions(texts: Mapping[str, str]) -> str:
    """One Prometheus text exposition from several, each sample labelled with its source.

    Args:
        texts: ``{service name: that process's exposition}``.

    Returns:
        The merged text (families in order of first appearance).

    Raises:
        DataError: a text that is not in the Prometheus text format.
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.samples import Sample

    families: dict[str, Any] = {}
    for service, text in texts.items():
        try:
            parsed = list(text_string_to_metric_families(text))
        except ValueError as err:
            raise DataError(f"the metrics of {service} are not Prometheus text: {err}") from err
        for family in parsed:
            samples = [
                Sample(s.name, {**s.labels, SERVICE_LABEL: service}, s.value, s.timestamp)
                for s in family.samples
            ]
            if family.name in families:
                families[family.name].samples.extend(samples)
            else:
                family.samples = samples
                families[family.name] = family

    class _Merged:
        def collect(self) -> Iterable[Any]:
            return list(families.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return bytes(generate_latest(registry)).decode("utf-8")


def serve_metrics(
    host: str, port: int, collect: Callable[[], Mapping[str, str]]
) -> ThreadingHTTPServer:
    """Serve ``GET /metrics`` on ``host:port`` from a daemon thread, for a Flow whose gateway
    has no ``/metrics`` route of its own (the search Flow's is jina's).

    Args:
        host: the address to bind.
        port: the port (0: any free one; the server's ``server_address`` tells which).
        collect: ``{service: Prometheus text}`` of the Flow's processes, asked at each scrape;
            a ``SearchTunerError`` or ``OSError`` from it is answered with 503.

    Returns:
        The running server; ``shutdown()`` stops it.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self._answer(404, "not found: the metrics are at /metrics\n", "text/plain")
                return
            try:
                text = merge_expositions(collect())
            except (SearchTunerError, OSError) as err:
                self._answer(503, f"the Flow's metrics cannot be read: {err}\n", "text/plain")
                return
            self._answer(200, text, CONTENT_TYPE)

        def _answer(self, status: int, text: str, content_type: str) -> None:
            body = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("metrics: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
