"""The Kubernetes manifests, rendered as a user would (``kubectl kustomize``) and checked offline.

Every kustomization under k8s/ is rendered; every resource is validated strictly against the
Kubernetes 1.33 schemas (kubernetes-validate). The PyTorchJob, a custom resource those schemas
do not know, is checked against tests/deploy/pytorchjob.schema.json, and its pod templates
against the Kubernetes schemas. Then what the schemas cannot see: the security context of
every pod, probes and resources, references between objects, the gateway's view of the chain
against flows/finetune.yml, the store of each overlay, and the torchrun command against
torchrun's and the worker's own argument parsers.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_tools import (
    KUBERNETES_VERSION,
    REPO,
    SERVICE_EXECUTORS,
    PodSpec,
    by_kind,
    kustomizations,
    missing,
    pod_specs,
    render,
)

SERVICE_OVERLAYS = ("k8s/overlays/dev", "k8s/overlays/prod", "k8s/overlays/gpu")
TRAINING = ("k8s/training/torchrun", "k8s/training/pytorchjob")
SEARCH = "k8s/search"  # the search Flow: its own checks in test_k8s_search.py
CUSTOM_KINDS = {("kubeflow.org/v1", "PyTorchJob")}
# Created outside the repository (docs/deploy.md): the S3 credentials, and for the training
# jobs the service account of the service's overlay in the same namespace.
EXTERNAL = {("Secret", "searchtuner-s3"), ("ServiceAccount", "searchtuner")}
# Volume types the "restricted" Pod Security Standard allows.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
STORE_PATH = "/var/lib/searchtuner/store"


def validate_resource(resource: dict[str, Any]) -> None:
    """Strict validation against the Kubernetes schemas; fails with the first error."""
    try:
        import kubernetes_validate
    except ModuleNotFoundError:
        missing("kubernetes-validate (PyPI)")
        raise
    where = f"{resource['kind']}/{resource['metadata'].get('name')}"
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = "/".join(str(p) for p in err.path)
        pytest.fail(f"{where}: {err.message} at {path or '(top)'}")


def containers(pod: PodSpec) -> list[dict[str, Any]]:
    return list(pod.spec.get("initContainers", [])) + list(pod.spec["containers"])


def service_resources() -> list[tuple[str, list[dict[str, Any]]]]:
    return [(overlay, render(overlay)) for overlay in SERVICE_OVERLAYS]


@pytest.fixture(params=[str(p) for p in kustomizations()])
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def test_the_expected_kustomizations_exist() -> None:
    found = {str(p) for p in kustomizations()}
    assert {"k8s/base", *SERVICE_OVERLAYS, *TRAINING, SEARCH} <= found, found


def test_every_resource_is_valid_kubernetes(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    folder, resources = rendered
    assert resources, f"{folder} renders nothing"
    for resource in resources:
        if (resource["apiVersion"], resource["kind"]) in CUSTOM_KINDS:
            continue  # test_pytorchjob_matches_its_schema
        validate_resource(resource)


def test_validation_rejects_a_bad_manifest() -> None:
    """The validator is strict: an unknown field and a wrong type both fail."""
    import kubernetes_validate

    deployment = by_kind(render("k8s/overlays/dev"), "Deployment")["trainer"]
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    deployment = by_kind(render("k8s/overlays/dev"), "Deployment")["trainer"]
    deployment["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_only_known_custom_resources(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    import kubernetes_validate

    _, resources = rendered
    for resource in resources:
        key = (resource["apiVersion"], resource["kind"])
        if key in CUSTOM_KINDS:
            # Prove the validator cannot check it, so that the schema check below is needed.
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_pytorchjob_matches_its_schema() -> None:
    import jsonschema

    schema = json.loads((REPO / "tests" / "deploy" / "pytorchjob.schema.json").read_text())
    jobs = by_kind(render("k8s/training/pytorchjob"), "PyTorchJob")
    assert list(jobs) == ["searchtuner-train"]
    job = jobs["searchtuner-train"]
    jsonschema.validate(job, schema)
    # Each replica's pod template is a plain Kubernetes pod template: validate it as one.
    for role, replica in job["spec"]["pytorchReplicaSpecs"].items():
        validate_resource(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": f"{job['metadata']['name']}-{role.lower()}"},
                "template": replica["template"],
            }
        )


def test_pytorchjob_schema_rejects_what_the_operator_rejects() -> None:
    import jsonschema

    schema = json.loads((REPO / "tests" / "deploy" / "pytorchjob.schema.json").read_text())
    job = by_kind(render("k8s/training/pytorchjob"), "PyTorchJob")["searchtuner-train"]
    bad_cases = []
    renamed = json.loads(json.dumps(job))
    renamed["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0][
        "name"
    ] = "trainer"  # the operator needs a container named "pytorch"
    bad_cases.append(renamed)
    chief = json.loads(json.dumps(job))
    chief["spec"]["pytorchReplicaSpecs"]["Chief"] = chief["spec"]["pytorchReplicaSpecs"]["Worker"]
    bad_cases.append(chief)
    masters = json.loads(json.dumps(job))
    masters["spec"]["pytorchReplicaSpecs"]["Master"] = dict(
        masters["spec"]["pytorchReplicaSpecs"]["Worker"], replicas=2
    )
    bad_cases.append(masters)
    typo = json.loads(json.dumps(job))
    typo["spec"]["elasticPolicy"]["rdzvBackend"] = "c10"
    bad_cases.append(typo)
    for bad in bad_cases:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_pods_run_with_a_restrictive_security_context(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    folder, resources = rendered
    accounts = by_kind(resources, "ServiceAccount")
    for pod in pod_specs(resources):
        where = f"{folder}: {pod.owner}"
        spec = pod.spec
        security = spec.get("securityContext", {})
        assert security.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
        assert security.get("runAsUser", 0) > 0, f"{where}: runAsUser"
        assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, f"{where}: token mounted"
        account = accounts.get(spec.get("serviceAccountName", "default"))
        if account is not None:
            assert account.get("automountServiceAccountToken") is False, where
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(key), f"{where}: {key}"
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for volume in volumes.values():
            kinds = set(volume) - {"name"}
            assert kinds <= RESTRICTED_VOLUMES, f"{where}: volume {volume['name']} is {kinds}"
        for container in containers(pod):
            at = f"{where} container {container['name']}"
            context = container.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, f"{at}: privilege escalation"
            assert context.get("privileged", False) is False, at
            assert context.get("readOnlyRootFilesystem") is True, f"{at}: writable root"
            capabilities = context.get("capabilities", {})
            assert capabilities.get("drop") == ["ALL"], f"{at}: drop ALL capabilities"
            assert not capabilities.get("add"), f"{at}: adds capabilities"
            assert "hostPort" not in json.dumps(container.get("ports", [])), at
            # A read-only root needs somewhere to write: /tmp from an emptyDir.
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{at}: no /tmp volume"
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{at}: /tmp is not an emptyDir"
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{at}: mounts unknown volume {mount['name']}"


def test_resources_are_requested_and_limited(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    folder, resources = rendered
    for pod in pod_specs(resources):
        for container in containers(pod):
            at = f"{folder}: {pod.owner} container {container['name']}"
            limits = container.get("resources", {}).get("limits", {})
            requests = container.get("resources", {}).get("requests", {})
            for resource in ("cpu", "memory"):
                assert resource in requests and resource in limits, f"{at}: {resource}"
                assert quantity(requests[resource]) <= quantity(limits[resource]), at
            for name, value in requests.items():
                if "/" in name:  # extended resources (GPUs): requests equal limits
                    assert limits.get(name) == value, f"{at}: {name}"
            for volume in pod.spec.get("volumes", []):
                if "emptyDir" in volume:
                    assert "sizeLimit" in volume["emptyDir"], f"{at}: {volume['name']} unbounded"


def quantity(text: str | int | float) -> float:
    """A Kubernetes quantity as a number (cores, bytes)."""
    found = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(text))
    assert found, f"not a quantity: {text}"
    scale = {
        None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    }  # fmt: skip
    return float(found.group(1)) * scale[found.group(2)]


@pytest.mark.parametrize("overlay", ["k8s/base", *SERVICE_OVERLAYS])
def test_service_pods_have_probes_on_their_ports(overlay: str) -> None:
    deployments = by_kind(render(overlay), "Deployment")
    assert set(deployments) == {"gateway", *SERVICE_EXECUTORS}, overlay
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p.get("name") for p in container["ports"]} | {
            p["containerPort"] for p in container["ports"]
        }
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            spec = container.get(probe)
            assert spec, f"{overlay}: {name} has no {probe}"
            handler = spec.get("grpc") or spec.get("httpGet") or spec.get("tcpSocket")
            assert handler, f"{overlay}: {name} {probe} is not a network probe"
            assert handler["port"] in ports, f"{overlay}: {name} {probe} port {handler['port']}"
        http = container["livenessProbe"].get("httpGet")
        if http:
            assert http["path"] == "/healthz", "the gateway's liveness route (gateway/rest.py)"


def finetune_chain() -> list[str]:
    flow = yaml.safe_load((REPO / "flows" / "finetune.yml").read_text())
    return [executor["name"] for executor in flow["executors"]]


def option(args: list[str], name: str, count: int = 1) -> list[str]:
    """The ``count`` values after ``name`` in an argument list."""
    assert name in args, f"{name} not in {args}"
    start = args.index(name) + 1
    return args[start : start + count]


@pytest.mark.parametrize("overlay", ["k8s/base", *SERVICE_OVERLAYS])
def test_gateway_serves_the_finetune_chain(overlay: str) -> None:
    resources = render(overlay)
    services = by_kind(resources, "Service")
    deployments = by_kind(resources, "Deployment")
    chain = finetune_chain()
    assert chain == list(SERVICE_EXECUTORS), "flows/finetune.yml changed: update k8s/base"
    (gateway,) = deployments["gateway"]["spec"]["template"]["spec"]["containers"]
    args = gateway["args"]
    graph = json.loads(option(args, "--graph-description")[0])
    hops = ["start-gateway", *chain, "end-gateway"]
    assert graph == {a: [b] for a, b in itertools.pairwise(hops)}, graph
    addresses = json.loads(option(args, "--deployments-addresses")[0])
    assert set(addresses) == set(chain)
    for executor, (address,) in addresses.items():
        found = re.fullmatch(r"grpc://([a-z0-9-]+):(\d+)", address)
        assert found, address
        host, port = found.group(1), int(found.group(2))
        service = services.get(host)
        assert service is not None, f"{overlay}: {address} names no Service"
        (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == port]
        target = deployments[executor]["spec"]["template"]
        assert service_selects(service, target["metadata"]["labels"]), f"{host} -> {executor}"
        (executor_container,) = target["spec"]["containers"]
        assert option(executor_container["args"], "--name") == [executor]
        assert option(executor_container["args"], "--port") == [str(port_number(
            executor_container, service_port["targetPort"]
        ))]  # fmt: skip
    assert option(args, "--protocol", 2) == ["GRPC", "HTTP"]
    grpc_port, http_port = (int(p) for p in option(args, "--port", 2))
    gateway_ports = {p["name"]: p for p in services["gateway"]["spec"]["ports"]}
    assert port_number(gateway, gateway_ports["grpc"]["targetPort"]) == grpc_port
    assert port_number(gateway, gateway_ports["http"]["targetPort"]) == http_port


def service_selects(service: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = service["spec"].get("selector", {})
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def port_number(container: dict[str, Any], port: str | int) -> int:
    """A container port given by name or number."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def test_every_service_reaches_pods(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    folder, resources = rendered
    pods = pod_specs(resources)
    for name, service in by_kind(resources, "Service").items():
        targets = [pod for pod in pods if service_selects(service, pod.labels)]
        assert targets, f"{folder}: Service {name} selects no pods"
        for port in service["spec"]["ports"]:
            for pod in targets:
                container_ports = [p for c in pod.spec["containers"] for p in c.get("ports", [])]
                target = port.get("targetPort", port["port"])
                assert any(
                    target in (p.get("name"), p["containerPort"]) for p in container_ports
                ), f"{folder}: Service {name} port {target} not on {pod.owner}"


def test_references_resolve(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """ConfigMaps, Secrets, claims and accounts that pods name exist (or are external)."""
    folder, resources = rendered
    present = {(r["kind"], r["metadata"]["name"]) for r in resources}
    for pod in pod_specs(resources):
        wanted = {("ServiceAccount", pod.spec.get("serviceAccountName", "default"))}
        for volume in pod.spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                wanted.add(("PersistentVolumeClaim", claim))
            if "configMap" in volume:
                wanted.add(("ConfigMap", volume["configMap"]["name"]))
        for container in containers(pod):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    wanted.add(("ConfigMap", source["configMapRef"]["name"]))
                if "secretRef" in source:
                    wanted.add(("Secret", source["secretRef"]["name"]))
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    key_ref = ref["configMapKeyRef"]
                    wanted.add(("ConfigMap", key_ref["name"]))
                    config = by_kind(resources, "ConfigMap").get(key_ref["name"])
                    assert config is not None and key_ref["key"] in config["data"], key_ref
                if "secretKeyRef" in ref:
                    wanted.add(("Secret", ref["secretKeyRef"]["name"]))
        unresolved = wanted - present - EXTERNAL
        assert not unresolved, f"{folder}: {pod.owner} refers to missing {sorted(unresolved)}"


def test_no_credentials_in_the_repository(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    folder, resources = rendered
    assert not by_kind(resources, "Secret"), f"{folder}: renders a Secret"
    text = yaml.safe_dump_all(resources)
    assert not re.search(r"AWS_SECRET_ACCESS_KEY\s*[:=]", text), folder


def config(resources: list[dict[str, Any]]) -> dict[str, str]:
    (found,) = [
        r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"].startswith(
            "searchtuner-config"
        )
    ]  # fmt: skip
    return dict(found["data"])


@pytest.mark.parametrize("overlay", ["k8s/base", *SERVICE_OVERLAYS])
def test_one_trainer_supervises_the_store(overlay: str) -> None:
    deployments = by_kind(render(overlay), "Deployment")
    trainer = deployments["trainer"]["spec"]
    assert trainer["replicas"] == 1, "docs/service.md: only one trainer may supervise a store"
    assert trainer["strategy"]["type"] == "Recreate", "a rolling update would run two"
    # Open uploads live in one ingest process (docs/service.md).
    assert deployments["ingest"]["spec"]["replicas"] == 1


def test_dev_shares_a_local_store_on_one_volume() -> None:
    resources = render("k8s/overlays/dev")
    assert config(resources)["SEARCHTUNER_STORE"] == f"file://{STORE_PATH}"
    claims = by_kind(resources, "PersistentVolumeClaim")
    assert list(claims) == ["searchtuner-store"]
    modes = claims["searchtuner-store"]["spec"]["accessModes"]
    deployments = by_kind(resources, "Deployment")
    for name, deployment in deployments.items():
        spec = deployment["spec"]["template"]["spec"]
        (volume,) = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
        assert volume["persistentVolumeClaim"]["claimName"] == "searchtuner-store", name
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get(STORE_PATH) == volume["name"], f"{name} does not mount the store"
        if "ReadWriteMany" not in modes:
            # A ReadWriteOnce volume is shared by pods of one node only: all on one node.
            affinity = spec["affinity"]["podAffinity"]
            (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
            assert term["topologyKey"] == "kubernetes.io/hostname", name
            labels = term["labelSelector"]["matchLabels"]
            for other in deployments.values():
                pod_labels = other["spec"]["template"]["metadata"]["labels"]
                assert all(pod_labels.get(k) == v for k, v in labels.items()), name


@pytest.mark.parametrize("overlay", ["k8s/overlays/prod", "k8s/overlays/gpu"])
def test_prod_uses_s3_with_credentials_from_a_secret(overlay: str) -> None:
    resources = render(overlay)
    assert config(resources)["SEARCHTUNER_STORE"].startswith("s3://")
    assert not by_kind(resources, "PersistentVolumeClaim")
    for name, deployment in by_kind(resources, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        secrets = [s["secretRef"] for s in container["envFrom"] if "secretRef" in s]
        assert secrets == [{"name": "searchtuner-s3"}], f"{overlay}: {name}"  # not optional


def test_gpu_overlay_puts_the_trainer_on_a_gpu() -> None:
    resources_of_overlay = render("k8s/overlays/gpu")
    deployments = by_kind(resources_of_overlay, "Deployment")
    trainer_gpus = deployments["trainer"]["spec"]["template"]["spec"]["containers"][0]
    # The converter (CPU image) checks CUDA runs against the trainer's GPUs, not its own.
    assert config(resources_of_overlay)["SEARCHTUNER_GPUS_PER_NODE"] == str(
        trainer_gpus["resources"]["limits"]["nvidia.com/gpu"]
    )
    assert "SEARCHTUNER_GPUS_PER_NODE" not in config(render("k8s/overlays/prod"))
    gpu_dockerfile = (REPO / "executors" / "trainer" / "Dockerfile.gpu").read_text()
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        resources = container["resources"]
        if name == "trainer":
            assert container["image"].startswith("searchtuner/trainer-gpu:")
            assert container["image"].split(":")[-1] in gpu_dockerfile  # the version it builds
            assert int(resources["limits"]["nvidia.com/gpu"]) >= 1
            assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
        else:
            assert "nvidia.com/gpu" not in json.dumps(resources), f"{name} asks for a GPU"
            assert "gpu" not in container["image"], name


# --- multi-node training ----------------------------------------------------------------------


def worker_options() -> tuple[list[set[str]], set[str]]:
    """The options of ``python -m searchtuner.runs.worker`` (each a set of aliases) and the
    required ones, read from its --help, so that a change to its arguments shows here."""
    answer = subprocess.run(
        [sys.executable, "-m", "searchtuner.runs.worker", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    usage, _, rest = answer.stdout.partition("\n\n")
    options = []
    for line in rest.splitlines():
        if re.match(r"\s{2}-", line):  # "  --run RUN_ID, --run-id RUN_ID   the run id"
            names = re.split(r"\s{2,}", line.strip())[0]
            options.append(set(re.findall(r"(--[a-z][a-z-]*)", names)) - {"--help"})
    required = set(re.findall(r"(--[a-z][a-z-]*)", re.sub(r"\[[^\]]*\]", "", usage)))
    return [o for o in options if o], required


def split_launch(args: list[str], env: dict[str, str]) -> tuple[list[str], list[str]]:
    """torchrun's options and the worker's arguments of a container's args, with Kubernetes'
    $(NAME) references replaced by ``env``."""
    expanded = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]
    module = expanded.index("searchtuner.runs.worker")
    assert expanded[module - 1] == "-m"
    return expanded[: module + 1], expanded[module + 1 :]


def check_worker_arguments(torchrun_args: list[str], worker_args: list[str]) -> None:
    """Parse both halves with the real parsers: torchrun's, then the worker's options."""
    from torch.distributed.run import get_args_parser

    parsed = get_args_parser().parse_args([*torchrun_args, *worker_args])
    assert parsed.module is True and parsed.training_script == "searchtuner.runs.worker"
    # torchrun drops the `--` that ends its own options; the worker gets the rest.
    assert parsed.training_script_args == [a for a in worker_args if a != "--"]
    passed = {a.split("=")[0] for a in parsed.training_script_args if a.startswith("--")}
    options, required = worker_options()
    known = set().union(*options)
    assert passed <= known, f"the worker has no {sorted(passed - known)}"
    for name in required:
        (aliases,) = [o for o in options if name in o]
        assert aliases & passed, f"the worker needs {name}"


def container_env(container: dict[str, Any], resources: list[dict[str, Any]]) -> dict[str, str]:
    """The values of a container's explicit env (the only ones $(NAME) can refer to)."""
    configs = by_kind(resources, "ConfigMap")
    values = {}
    for variable in container.get("env", []):
        if "value" in variable:
            values[variable["name"]] = variable["value"]
        elif "configMapKeyRef" in variable.get("valueFrom", {}):
            ref = variable["valueFrom"]["configMapKeyRef"]
            values[variable["name"]] = configs[ref["name"]]["data"][ref["key"]]
    return values


def test_torchrun_job_meets_through_the_headless_service() -> None:
    resources = render("k8s/training/torchrun")
    (job,) = by_kind(resources, "Job").values()
    (service,) = by_kind(resources, "Service").values()
    spec = job["spec"]
    template = spec["template"]
    (container,) = template["spec"]["containers"]
    assert spec["completionMode"] == "Indexed"
    env = container_env(container, resources)
    torchrun_args, worker_args = split_launch(container["args"], env)
    assert container["command"] == ["torchrun"]
    check_worker_arguments(torchrun_args, worker_args)
    options = dict(a[2:].split("=", 1) for a in torchrun_args if a.startswith("--"))
    assert int(options["nnodes"]) == spec["completions"] == spec["parallelism"]
    assert options["rdzv-backend"] == "c10d"
    assert options["rdzv-id"] == env["SEARCHTUNER_RUN"]
    # Pod 0 hosts the rendezvous: <job>-0.<subdomain>, the subdomain a headless Service.
    host, port = options["rdzv-endpoint"].rsplit(":", 1)
    assert host == f"{job['metadata']['name']}-0.{template['spec']['subdomain']}"
    assert service["metadata"]["name"] == template["spec"]["subdomain"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service_selects(service, template["metadata"]["labels"])
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    assert int(port) in [p["containerPort"] for p in container["ports"]]
    gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
    assert int(options["nproc-per-node"]) == gpus, "one process per GPU of the pod"
    assert env["SEARCHTUNER_STORE"].startswith("s3://"), "every node needs the same store"


def test_pytorchjob_launches_the_same_worker() -> None:
    resources = render("k8s/training/pytorchjob")
    (job,) = by_kind(resources, "PyTorchJob").values()
    spec = job["spec"]
    assert spec["elasticPolicy"]["rdzvBackend"] == "c10d"
    assert set(spec["pytorchReplicaSpecs"]) == {"Worker"}  # elastic: workers only
    worker = spec["pytorchReplicaSpecs"]["Worker"]
    (container,) = worker["template"]["spec"]["containers"]
    assert container["name"] == "pytorch"
    env = container_env(container, resources)
    torchrun_args, worker_args = split_launch(container["args"], env)
    # The operator passes nnodes, the endpoint and the backend as PET_* variables; here they
    # are given as options so that the parser sees the complete command.
    operator = [
        f"--nnodes={worker['replicas']}", f"--nproc-per-node={spec['nprocPerNode']}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={job['metadata']['name']}-worker-0:{spec['elasticPolicy']['rdzvPort']}",
    ]  # fmt: skip
    check_worker_arguments([*operator, *torchrun_args], worker_args)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["pytorchjob-port"] == spec["elasticPolicy"]["rdzvPort"]
    gpus = int(container["resources"]["limits"]["nvidia.com/gpu"])
    assert int(spec["nprocPerNode"]) == gpus


def test_worker_argument_check_catches_a_wrong_launch() -> None:
    """The check above fails for the launch that torchrun refuses (no `--` before --run)."""
    torchrun = ["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=h:1", "-m",
                "searchtuner.runs.worker"]  # fmt: skip
    with pytest.raises(SystemExit):  # argparse: ambiguous option --run (--run-path)
        check_worker_arguments(torchrun, ["--store=s3://b/p", "--owner=o", "--run=r"])
    with pytest.raises(AssertionError, match="needs"):
        check_worker_arguments(torchrun, ["--", "--store=s3://b/p", "--owner=o"])


def test_training_runs_in_the_namespace_of_the_service() -> None:
    """The jobs use the prod overlay's service account and S3 Secret: same namespace."""

    def namespaces(folder: str) -> set[str | None]:
        resources = render(folder)
        return {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"}

    prod = namespaces("k8s/overlays/prod")
    assert len(prod) == 1 and None not in prod, prod
    for folder in TRAINING:
        assert namespaces(folder) == prod, folder


def test_kustomizations_name_existing_files() -> None:
    for folder in kustomizations():
        kustomization = yaml.safe_load((REPO / folder / "kustomization.yaml").read_text())
        for entry in kustomization.get("resources", []):
            assert (REPO / folder / entry).exists(), f"{folder}: {entry}"
        for patch in kustomization.get("patches", []):
            if "path" in patch:
                assert (REPO / folder / patch["path"]).is_file(), f"{folder}: {patch['path']}"


def test_readme_lists_every_kustomization() -> None:
    readme = (REPO / "k8s" / "README.md").read_text()
    for folder in kustomizations():
        assert f"{Path(folder).relative_to('k8s').as_posix()}/" in readme, folder
