"""Telemetry in the Kubernetes manifests (docs/telemetry.md), read the way the pods read it.

Each jina container's environment is made from the rendered ConfigMaps and env as the kubelet
makes it, and read with SearchTuner's own ``config_from_env``; jina's tracing arguments must
be what ``TelemetryConfig.flow_options()`` gives for that environment (what ``searchtuner
serve`` passes to the Flow), so the endpoint in the ConfigMap and the one in the arguments
cannot drift apart. Then: on in every pod of prod and gpu, off in base, dev and search, and
Prometheus pointed at the gateway's HTTP port where it serves ``/metrics``.
"""

from __future__ import annotations

from typing import Any

import pytest
from deploy_tools import (
    PodSpec,
    container_environment,
    expand_args,
    kustomizations,
    pod_specs,
    render,
)

from searchtuner.telemetry.config import TelemetryConfig, config_from_env

TELEMETRY_ON = ("k8s/overlays/prod", "k8s/overlays/gpu")
TELEMETRY_OFF = ("k8s/base", "k8s/overlays/dev", "k8s/search")
# jina's options and the Flow options they set (`jina export kubernetes` writes one from the
# other); the flags take no value.
JINA_FLAGS = {"--tracing": "tracing", "--metrics": "metrics"}
JINA_VALUES = {
    "--traces-exporter-host": "traces_exporter_host",
    "--traces-exporter-port": "traces_exporter_port",
    "--metrics-exporter-host": "metrics_exporter_host",
    "--metrics-exporter-port": "metrics_exporter_port",
}
SCRAPE = "prometheus.io/scrape"


def jina_options(args: list[str]) -> dict[str, object]:
    """The telemetry options in a ``jina executor|gateway`` argument list, as Flow options."""
    found: dict[str, object] = {}
    for position, arg in enumerate(args):
        name = JINA_FLAGS.get(arg) or JINA_VALUES.get(arg)
        if name is None:
            continue
        assert name not in found, f"{arg} given twice"
        if arg in JINA_FLAGS:
            found[name] = True
        else:
            value = args[position + 1]
            found[name] = int(value) if name.endswith("_port") else value
    return found


def jina_pods(folder: str) -> list[tuple[PodSpec, dict[str, Any], dict[str, str], list[str]]]:
    """(pod, container, environment, expanded arguments) of each pod that runs jina."""
    resources = render(folder)
    found = []
    for pod in pod_specs(resources):
        for container in pod.spec["containers"]:
            if container.get("command") == ["jina"]:
                env = container_environment(container, resources)
                found.append((pod, container, env, expand_args(container, env)))
    return found


def telemetry(env: dict[str, str]) -> TelemetryConfig:
    return config_from_env(env)  # raises ConfigError on a value the pod would refuse


def service_folders() -> list[str]:
    """Every kustomization that runs jina pods (the training jobs run torchrun)."""
    return [str(folder) for folder in kustomizations() if jina_pods(str(folder))]


def test_every_service_kustomization_is_checked() -> None:
    assert set(service_folders()) == {*TELEMETRY_ON, *TELEMETRY_OFF}


@pytest.mark.parametrize("folder", [*TELEMETRY_ON, *TELEMETRY_OFF])
def test_jina_tracing_follows_the_environment(folder: str) -> None:
    """Each pod's jina tracing arguments are those its own telemetry settings call for."""
    for pod, _, env, args in jina_pods(folder):
        expected = telemetry(env).flow_options()
        assert jina_options(args) == expected, f"{folder}: {pod.owner}"


@pytest.mark.parametrize("folder", TELEMETRY_ON)
def test_telemetry_is_on_in_every_pod(folder: str) -> None:
    pods = jina_pods(folder)
    assert {pod.owner.split("/")[1] for pod, *_ in pods} == {
        "gateway", "ingest", "converter", "trainer", "publisher",
    }  # fmt: skip
    endpoints = set()
    for pod, _, env, _ in pods:
        config = telemetry(env)
        assert config.tracing and config.metrics, f"{folder}: {pod.owner}"
        endpoints.add(config.otlp_endpoint)
        # The replicas of one executor push apart: each names its pod.
        attributes = dict(item.split("=", 1) for item in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
        assert attributes["service.instance.id"] == "<metadata.name>", pod.owner
        assert attributes["k8s.namespace.name"] == "<metadata.namespace>", pod.owner
    (endpoint,) = endpoints  # one collector for the whole service
    host, _ = TelemetryConfig(otlp_endpoint=endpoint).otlp_host_port()
    assert host.split("://")[1].endswith(".svc"), f"{endpoint}: an in-cluster Service name"


@pytest.mark.parametrize("folder", TELEMETRY_OFF)
def test_telemetry_is_off_by_default(folder: str) -> None:
    for pod, _, env, args in jina_pods(folder):
        assert not telemetry(env).enabled, f"{folder}: {pod.owner}"
        assert env.get("SEARCHTUNER_METRICS") == "false", f"{folder}: {pod.owner}: say so"
        assert not jina_options(args), f"{folder}: {pod.owner}"
        assert "OTEL_RESOURCE_ATTRIBUTES" not in env, f"{folder}: {pod.owner}"
        assert SCRAPE not in pod_annotations(render(folder), pod.owner), f"{folder}: {pod.owner}"


def pod_annotations(resources: list[dict[str, Any]], owner: str) -> dict[str, str]:
    kind, name = owner.split("/")
    (resource,) = [
        r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name
    ]  # fmt: skip
    return dict(resource["spec"]["template"]["metadata"].get("annotations", {}))


@pytest.mark.parametrize("folder", [*TELEMETRY_ON, *TELEMETRY_OFF])
def test_prometheus_scrapes_where_metrics_are_served(folder: str) -> None:
    """Scraped: exactly the pods that serve /metrics, the SearchTuner gateway with
    SEARCHTUNER_METRICS on (jina's own gateway, the search Flow's, has no such route), at its
    HTTP port."""
    resources = render(folder)
    for pod, container, env, args in jina_pods(folder):
        notes = pod_annotations(resources, pod.owner)
        serves = (
            args[:3] == ["gateway", "--uses", "config.yml"]  # gateway/config.yml's gateway
            and telemetry(env).metrics
        )
        assert (notes.get(SCRAPE) == "true") == serves, f"{folder}: {pod.owner}"
        if serves:
            protocols = args[args.index("--protocol") + 1 : args.index("--protocol") + 3]
            ports = args[args.index("--port") + 1 : args.index("--port") + 3]
            http_port = ports[protocols.index("HTTP")]
            assert notes["prometheus.io/port"] == http_port, pod.owner
            assert notes["prometheus.io/path"] == "/metrics", pod.owner
            assert int(http_port) in [p["containerPort"] for p in container["ports"]]


def test_a_drifted_endpoint_is_caught() -> None:
    """The check above fails when the arguments name another collector than the ConfigMap."""
    ((_, _, env, args), *_) = jina_pods("k8s/overlays/prod")
    drifted = [a.replace("otel-collector", "collector") for a in args]
    assert jina_options(drifted) != telemetry(env).flow_options()
    assert jina_options(args) == telemetry(env).flow_options()
