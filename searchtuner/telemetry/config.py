"""Telemetry settings, read from the environment every SearchTuner process shares.

``searchtuner serve --otlp-endpoint URL --metrics`` sets these variables before the Flow starts,
so the gateway, the executors and the trainer's worker processes (which inherit the trainer's
environment) all read the same settings. Nothing is on unless configured.

==================================  ==============================================================
variable                            meaning
==================================  ==============================================================
``SEARCHTUNER_OTLP_ENDPOINT``       OTLP/gRPC collector, e.g. ``http://127.0.0.1:4317``: traces
                                    and metrics are pushed there. Falls back to the standard
                                    ``OTEL_EXPORTER_OTLP_ENDPOINT``.
``SEARCHTUNER_METRICS``             ``true``: collect metrics and serve them at the gateway's
                                    ``GET /metrics`` (Prometheus text format).
``OTEL_SDK_DISABLED``               ``true``: everything off, whatever else is set.
``OTEL_METRIC_EXPORT_INTERVAL``     milliseconds between OTLP metric pushes (default 60000).
==================================  ==============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from searchtuner.errors import ConfigError

OTLP_ENDPOINT_ENV = "SEARCHTUNER_OTLP_ENDPOINT"
METRICS_ENV = "SEARCHTUNER_METRICS"
STANDARD_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
DISABLED_ENV = "OTEL_SDK_DISABLED"
PROTOCOL_ENV = "OTEL_EXPORTER_OTLP_PROTOCOL"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class TelemetryConfig:
    """What to collect and where to send it.

    Attributes:
        otlp_endpoint: ``http(s)://host:port`` of an OTLP/gRPC receiver, or ``None``: no push.
        metrics: collect metrics for the Prometheus endpoint (``GET /metrics``).
    """

    otlp_endpoint: str | None = None
    metrics: bool = False

    @property
    def tracing(self) -> bool:
        """Whether spans are recorded (they are only useful with somewhere to send them)."""
        return self.otlp_endpoint is not None

    @property
    def metrics_enabled(self) -> bool:
        """Whether metric instruments are created (for Prometheus, OTLP, or both)."""
        return self.metrics or self.otlp_endpoint is not None

    @property
    def enabled(self) -> bool:
        """Whether anything is on."""
        return self.tracing or self.metrics_enabled

    def otlp_host_port(self) -> tuple[str, int]:
        """The endpoint split as jina's Flow takes it: (``http://host``, port).

        Jina joins ``traces_exporter_host`` and ``traces_exporter_port`` into the exporter's
        endpoint; the scheme must stay on the host, since it decides plain text or TLS.

        Raises:
            ConfigError: no endpoint is configured.
        """
        if self.otlp_endpoint is None:
            raise ConfigError("no OTLP endpoint is configured; set SEARCHTUNER_OTLP_ENDPOINT")
        parts = urlsplit(check_endpoint(self.otlp_endpoint))
        hostname, port = parts.hostname or "", parts.port or 0  # both present once checked
        host = f"[{hostname}]" if ":" in hostname else hostname
        return f"{parts.scheme}://{host}", port

    def flow_options(self) -> dict[str, object]:
        """Jina Flow options that trace the gateway and every executor's requests and push
        jina's own request metrics to the same collector ({} without an endpoint)."""
        if self.otlp_endpoint is None:
            return {}
        host, port = self.otlp_host_port()
        return {
            "tracing": True,
            "traces_exporter_host": host,
            "traces_exporter_port": port,
            "metrics": True,
            "metrics_exporter_host": host,
            "metrics_exporter_port": port,
        }


def config_from_env(env: Mapping[str, str] | None = None) -> TelemetryConfig:
    """The telemetry settings of this process (see the module docstring).

    Args:
        env: the variables to read (default ``os.environ``).

    Raises:
        ConfigError: a value that cannot be used; the message names the variable.
    """
    env = os.environ if env is None else env
    if _flag(env, DISABLED_ENV):
        return TelemetryConfig()
    name = OTLP_ENDPOINT_ENV if env.get(OTLP_ENDPOINT_ENV) else STANDARD_ENDPOINT_ENV
    endpoint = env.get(name, "").strip() or None
    if endpoint is not None:
        endpoint = check_endpoint(endpoint, name)
        protocol = env.get(PROTOCOL_ENV, "grpc").strip().lower() or "grpc"
        if protocol != "grpc":
            raise ConfigError(
                f"{PROTOCOL_ENV}={protocol!r}: SearchTuner exports OTLP over gRPC only (jina's "
                "exporters do); point the endpoint at the collector's gRPC port (usually 4317) "
                f"and unset {PROTOCOL_ENV} or set it to grpc"
            )
    return TelemetryConfig(otlp_endpoint=endpoint, metrics=_flag(env, METRICS_ENV))


def check_endpoint(endpoint: str, what: str = "the OTLP endpoint") -> str:
    """``endpoint`` if it is ``http://host:port`` or ``https://host:port``.

    Raises:
        ConfigError: another form; the message shows the expected one.
    """
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as err:
        raise ConfigError(f"{what}={endpoint!r} is not a URL: {err}") from err
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ConfigError(
            f"{what}={endpoint!r}: give the collector's OTLP/gRPC address as "
            "http://host:port (plain text) or https://host:port (TLS), e.g. "
            "http://127.0.0.1:4317"
        )
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(
            f"{what}={endpoint!r}: OTLP over gRPC takes no path; give http(s)://host:port"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r}: use true or false")
