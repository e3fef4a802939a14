"""TelemetryConfig from the environment: off by default, fails fast on values it cannot use."""

from __future__ import annotations

import pytest

from searchtuner.errors import ConfigError
from searchtuner.telemetry import TelemetryConfig, config_from_env


def test_nothing_is_on_by_default() -> None:
    config = config_from_env({})
    assert config == TelemetryConfig()
    assert not config.enabled and not config.tracing and not config.metrics_enabled


def test_the_searchtuner_endpoint_wins_over_the_standard_one() -> None:
    config = config_from_env(
        {
            "SEARCHTUNER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        }
    )
    assert config.otlp_endpoint == "http://127.0.0.1:4317"
    assert config.tracing and config.metrics_enabled and not config.metrics
    assert config.otlp_host_port() == ("http://127.0.0.1", 4317)


def test_the_standard_endpoint_alone_turns_export_on() -> None:
    config = config_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4317/"})
    assert config.otlp_endpoint == "https://collector.example:4317"
    assert config.otlp_host_port() == ("https://collector.example", 4317)


def test_ipv6_hosts_keep_their_brackets() -> None:
    config = config_from_env({"SEARCHTUNER_OTLP_ENDPOINT": "http://[::1]:4317"})
    assert config.otlp_host_port() == ("http://[::1]", 4317)


def test_metrics_alone_serve_prometheus_without_tracing() -> None:
    config = config_from_env({"SEARCHTUNER_METRICS": "true"})
    assert config.metrics and config.metrics_enabled and not config.tracing


def test_the_sdk_switch_turns_everything_off() -> None:
    config = config_from_env(
        {
            "SEARCHTUNER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
            "SEARCHTUNER_METRICS": "1",
            "OTEL_SDK_DISABLED": "true",
        }
    )
    assert not config.enabled


ENDPOINT = "SEARCHTUNER_OTLP_ENDPOINT"


@pytest.mark.parametrize(
    ("env", "variable", "message"),
    [
        ({ENDPOINT: "127.0.0.1:4317"}, ENDPOINT, "http://host:port"),
        ({ENDPOINT: "grpc://127.0.0.1:4317"}, ENDPOINT, "http://host:port"),
        ({ENDPOINT: "http://127.0.0.1"}, ENDPOINT, "http://host:port"),
        ({ENDPOINT: "http://127.0.0.1:4317/v1/traces"}, ENDPOINT, "takes no path"),
        ({ENDPOINT: "http://127.0.0.1:99999"}, ENDPOINT, "not a URL"),
        ({"SEARCHTUNER_METRICS": "maybe"}, "SEARCHTUNER_METRICS", "use true or false"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "over gRPC only",
        ),
    ],
)
def test_unusable_values_fail_with_what_to_set(
    env: dict[str, str], variable: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        config_from_env(env)
    assert variable in str(raised.value)


def test_without_an_endpoint_there_is_no_host_to_give_jina() -> None:
    with pytest.raises(ConfigError, match="SEARCHTUNER_OTLP_ENDPOINT"):
        TelemetryConfig(metrics=True).otlp_host_port()
