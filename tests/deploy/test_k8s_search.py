"""The search Flow's manifests (k8s/search) against flows/search.yml and the prod overlay.

What every kustomization gets (schemas, security context, resources, references, Services
reaching pods) is in test_k8s_manifests.py, which finds k8s/search by itself. Here: the
gateway's graph and addresses are what jina's own export derives from flows/search.yml, each
executor gets the Flow's ``uses_with``, the encoder's model and S3 credentials come from where
the docs say, the indexer keeps its index on a volume, and nothing collides with the
fine-tuning service in the shared namespace.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
import yaml
from deploy_tools import REPO, by_kind, container_environment, expand_args, render

SEARCH = "k8s/search"
FLOW = REPO / "flows" / "search.yml"
MODEL_ENV = "SEARCHTUNER_MODEL"


def flow_config() -> dict[str, Any]:
    return yaml.safe_load(FLOW.read_text())


def option(args: list[str], name: str, count: int = 1) -> list[str]:
    """The ``count`` values after ``name`` in an argument list."""
    assert args.count(name) == 1, f"{name} in {args}"
    start = args.index(name) + 1
    return args[start : start + count]


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def selects(service: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = service["spec"].get("selector", {})
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(scope="module")
def jina_export() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The graph and the executors' addresses ``jina export kubernetes`` writes for the Flow."""
    from jina import Flow

    previous = os.environ.get(MODEL_ENV)
    os.environ[MODEL_ENV] = "stm1:unused"  # the Flow's YAML reads it; the export does not
    try:
        flow = Flow.load_config(str(FLOW))
        return flow._get_graph_representation(), flow._get_k8s_deployments_addresses("ns")
    finally:
        if previous is None:
            del os.environ[MODEL_ENV]
        else:
            os.environ[MODEL_ENV] = previous


def test_gateway_serves_the_search_chain(
    jina_export: tuple[dict[str, list[str]], dict[str, list[str]]],
) -> None:
    graph, exported = jina_export
    resources = render(SEARCH)
    services = by_kind(resources, "Service")
    deployments = by_kind(resources, "Deployment")
    chain = [executor["name"] for executor in flow_config()["executors"]]
    assert set(deployments) == {"search-gateway", *chain}
    gateway = only_container(deployments["search-gateway"])
    args = gateway["args"]
    assert args[0] == "gateway"
    assert option(args, "--uses") == ["CompositeGateway"], "jina's gateway, as the Flow has"
    assert json.loads(option(args, "--graph-description")[0]) == graph
    addresses = json.loads(option(args, "--deployments-addresses")[0])
    assert set(addresses) == set(exported) == set(chain)
    for executor, (address,) in addresses.items():
        (jina_address,) = exported[executor]
        found = re.fullmatch(r"grpc://([a-z0-9-]+):(\d+)", address)
        assert found, address
        host, port = found.group(1), int(found.group(2))
        assert jina_address == f"grpc://{host}.ns.svc:{port}", "jina's name and port"
        service = services[host]
        target = deployments[executor]["spec"]["template"]
        assert selects(service, target["metadata"]["labels"]), f"{host} -> {executor}"
        (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == port]
        container = only_container(deployments[executor])
        (container_port,) = [
            p["containerPort"]
            for p in container["ports"]
            if service_port["targetPort"] in (p["name"], p["containerPort"])
        ]  # fmt: skip
        assert option(container["args"], "--port") == [str(container_port)]
        assert option(container["args"], "--name") == [executor]
    # Protocols and ports as flows/search.yml (and `python -m flows.search`) serve them.
    flow_with = flow_config()["with"]
    protocols = [p.upper() for p in flow_with["protocol"]]
    assert option(args, "--protocol", len(protocols)) == protocols
    ports = option(args, "--port", len(protocols))
    assert ports == [str(p) for p in flow_with["port"]]
    gateway_ports = {p["name"]: p for p in services["search-gateway"]["spec"]["ports"]}
    for protocol, number in zip(protocols, ports, strict=True):
        exposed = gateway_ports[protocol.lower()]
        assert exposed["port"] == int(number)
        (named,) = [p for p in gateway["ports"] if p["name"] == exposed["targetPort"]]
        assert named["containerPort"] == int(number)


def test_executors_get_the_flows_uses_with() -> None:
    """``--uses-with`` is the Flow's ``uses_with``, the model from the ConfigMap."""
    resources = render(SEARCH)
    deployments = by_kind(resources, "Deployment")
    for executor in flow_config()["executors"]:
        name = executor["name"]
        container = only_container(deployments[name])
        assert container["image"].startswith(f"searchtuner/{name}:"), name
        assert (REPO / "executors" / name / "Dockerfile").is_file(), name
        assert option(container["args"], "--uses") == ["config.yml"], name
        written = json.loads(option(container["args"], "--uses-with")[0])
        expected = dict(executor.get("uses_with", {}))
        if name == "encoder":
            assert expected["model"] == "${{ ENV.SEARCHTUNER_MODEL }}", "flows/search.yml"
            expected["model"] = f"$({MODEL_ENV})"
        assert written == expected, name


def test_encoder_model_comes_from_the_configmap() -> None:
    resources = render(SEARCH)
    encoder = only_container(by_kind(resources, "Deployment")["encoder"])
    (variable,) = [v for v in encoder["env"] if v["name"] == MODEL_ENV]
    ref = variable["valueFrom"]["configMapKeyRef"]
    assert not ref.get("optional"), "a missing model stops the pod at once"
    assert ref["name"].startswith("searchtuner-search-config")
    env = container_environment(encoder, resources)
    env[MODEL_ENV] = "stm1:abc:1@s3://bucket/models/m.tar"  # as the user sets it
    (uses_with,) = option(expand_args(encoder, env), "--uses-with")
    assert json.loads(uses_with)["model"] == env[MODEL_ENV]


def test_encoder_reads_s3_credentials_from_the_prod_secret() -> None:
    prod = by_kind(render("k8s/overlays/prod"), "Deployment")
    prod_secrets = {
        json.dumps(s["secretRef"], sort_keys=True)
        for d in prod.values()
        for s in only_container(d)["envFrom"]
        if "secretRef" in s
    }
    deployments = by_kind(render(SEARCH), "Deployment")
    encoder = only_container(deployments["encoder"])
    secrets = {json.dumps(s["secretRef"], sort_keys=True) for s in encoder["envFrom"]
               if "secretRef" in s}  # fmt: skip
    assert secrets == prod_secrets == {'{"name": "searchtuner-s3"}'}  # and not optional
    for name in ("search-gateway", "indexer"):  # they never read the store
        assert "secretRef" not in json.dumps(only_container(deployments[name])), name


def test_indexer_keeps_its_index_on_a_volume() -> None:
    resources = render(SEARCH)
    indexer = by_kind(resources, "Deployment")["indexer"]
    spec = indexer["spec"]
    assert spec["replicas"] == 1, "one index"
    assert spec["strategy"]["type"] == "Recreate", "the old pod saves before the new one loads"
    container = only_container(indexer)
    (workspace,) = option(container["args"], "--workspace")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    claim = volumes[mounts[workspace]]["persistentVolumeClaim"]["claimName"]
    assert claim in by_kind(resources, "PersistentVolumeClaim")
    config = yaml.safe_load((REPO / "executors" / "indexer" / "config.yml").read_text())
    assert config["with"]["persist"] is True, "the index is saved to the workspace"
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 60, "time to save"


def test_search_pods_have_probes_on_their_ports() -> None:
    for name, deployment in by_kind(render(SEARCH), "Deployment").items():
        container = only_container(deployment)
        ports = {p["name"] for p in container["ports"]} | {
            p["containerPort"] for p in container["ports"]
        }
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = container.get(probe)
            assert spec, f"{name} has no {probe}"
            handler = spec.get("grpc") or spec.get("httpGet")
            assert handler, f"{name} {probe} is not a network probe"
            assert handler["port"] in ports, f"{name} {probe} port {handler['port']}"
            if "httpGet" in spec:
                assert spec["httpGet"]["path"] == "/", "jina's HTTP health route (GET /)"


def test_search_shares_the_namespace_without_collisions() -> None:
    search = render(SEARCH)
    prod = render("k8s/overlays/prod")

    def namespaces(resources: list[dict[str, Any]]) -> set[str | None]:
        return {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"}

    assert namespaces(search) == namespaces(prod), "beside the Secret searchtuner-s3"
    names = {(r["kind"], r["metadata"]["name"]) for r in search}
    assert not names & {(r["kind"], r["metadata"]["name"]) for r in prod}
    assert not by_kind(search, "Namespace"), "prod owns the namespace"
    # No Service, NetworkPolicy or Deployment of one selects the other's pods.
    for ours, theirs in ((search, prod), (prod, search)):
        deployments = by_kind(theirs, "Deployment").values()
        pods = [d["spec"]["template"]["metadata"]["labels"] for d in deployments]
        for service in by_kind(ours, "Service").values():
            assert not any(selects(service, labels) for labels in pods), service["metadata"]
        for policy in by_kind(ours, "NetworkPolicy").values():
            expressions = policy["spec"]["podSelector"]["matchExpressions"]
            for labels in pods:
                assert not all(labels.get(e["key"]) in e["values"] for e in expressions)
