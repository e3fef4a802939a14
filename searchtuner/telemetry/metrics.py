"""ProcessMetrics: one process's OpenTelemetry meter, read by Prometheus and/or pushed by OTLP.

Every SearchTuner process that measures something (the ingest, trainer and encoder executors)
makes one :class:`ProcessMetrics` when telemetry is on. Its meter provider has up to two
readers: a Prometheus reader over a registry of its own (no process-wide globals), whose text
:meth:`ProcessMetrics.exposition` returns for the gateway's ``GET /metrics``; and a periodic
OTLP/gRPC exporter when an endpoint is configured (``OTEL_METRIC_EXPORT_INTERVAL`` sets its
period). Observable instruments are read only when one of them collects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from searchtuner.errors import ConfigError
from searchtuner.telemetry.config import TelemetryConfig
from searchtuner.telemetry.tracing import SERVICE_NAMESPACE, export_timeout

if TYPE_CHECKING:
    from opentelemetry.metrics import Meter
    from opentelemetry.sdk.metrics.export import MetricReader

METER_NAME = "searchtuner"


class ProcessMetrics:
    """The meter of one process and the readers that export what it measures.

    Args:
        config: the telemetry settings; Prometheus text when ``config.metrics``, OTLP pushes
            when ``config.otlp_endpoint``.
        service_name: ``service.name`` of the process, e.g. ``searchtuner-trainer``.
        readers: more readers (tests: an ``InMemoryMetricReader``).

    Raises:
        ConfigError: the OpenTelemetry SDK or the Prometheus exporter is not installed.
    """

    def __init__(
        self,
        config: TelemetryConfig,
        service_name: str,
        *,
        readers: Sequence[MetricReader] = (),
    ) -> None:
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.resources import Resource
        except ImportError as err:
            raise ConfigError(
                "metrics are on but the OpenTelemetry SDK is not installed: pip install "
                "'searchtuner[service]'"
            ) from err
        self.service_name = service_name
        all_readers: list[MetricReader] = list(readers)
        self._registry: Any = None
        if config.metrics:
            try:
                from opentelemetry.exporter.prometheus import PrometheusMetricReader
                from prometheus_client import CollectorRegistry
            except ImportError as err:
                raise ConfigError(
                    "SEARCHTUNER_METRICS is on but opentelemetry-exporter-prometheus is not "
                    "installed: pip install 'searchtuner[service]'"
                ) from err
            self._registry = CollectorRegistry(auto_describe=False)
            all_readers.append(
                PrometheusMetricReader(
                    disable_target_info=True, scope_info_enabled=False, registry=self._registry
                )
            )
        if config.otlp_endpoint is not None:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            endpoint = config.otlp_endpoint
            exporter = OTLPMetricExporter(
                endpoint=endpoint, insecure=endpoint.startswith("http://"), timeout=export_timeout()
            )
            all_readers.append(PeriodicExportingMetricReader(exporter))
        resource = Resource.create(
            {"service.name": service_name, "service.namespace": SERVICE_NAMESPACE}
        )
        self.provider = MeterProvider(metric_readers=all_readers, resource=resource)
        self.meter: Meter = self.provider.get_meter(METER_NAME)

    def exposition(self) -> str:
        """What this process measures, in the Prometheus text format ("" without Prometheus).

        Reading runs the observable instruments' callbacks (e.g. a look at the run registry).
        """
        if self._registry is None:
            return ""
        from prometheus_client import generate_latest

        return bytes(generate_latest(self._registry)).decode("utf-8")

    def shutdown(self) -> None:
        """Push what is left (OTLP) and stop the readers."""
        self.provider.shutdown()
