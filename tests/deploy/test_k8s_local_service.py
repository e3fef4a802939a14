"""The containers' commands, run here: what the images hold and what the manifests start.

No Docker engine or cluster runs here, so this test does the next best thing. It lays out
each image's files as its Dockerfile's COPY instructions do (honouring .dockerignore) and
starts every pod of the dev overlay with the command, arguments and environment the rendered
Deployment gives its container (and the Dockerfile's ENV), on 127.0.0.1, each in its image's
WORKDIR, all sharing one store folder as the dev overlay's volume. Then it probes them as
Kubernetes would (the gRPC health service, the gateway's /healthz) and uploads a dataset
through the gateway to the ingest pod's store.

Likewise the multi-node training Job: two torchrun agents with the Job's arguments meet in a
c10d rendezvous on 127.0.0.1 and each starts the worker with the Job's worker arguments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from deploy_tools import (
    REPO,
    SERVICE_EXECUTORS,
    by_kind,
    dockerignore_excludes,
    parse_copy,
    parse_dockerfile,
    render,
)

from searchtuner.runs import RunRegistry, RunState, RunSupervisor, validate_request
from searchtuner.runs.launch import max_nodes
from searchtuner.service.processes import ProcessGroup, free_port
from searchtuner.service.tokens import TokenStore
from searchtuner.store import open_store
from tests.unit.runs.helpers import OWNER, clusters, mlp_request, queue_run, upload

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START_TIMEOUT = 240.0  # five jina processes importing torch on two busy cores


def stage_image(dockerfile: str, root: Path) -> tuple[Path, dict[str, str]]:
    """Copy what the Dockerfile's final stage COPYs from the build context under ``root``
    (``/app/x`` becomes ``root/app/x``); return the WORKDIR and the ENV, paths mapped."""
    runtime = parse_dockerfile(dockerfile).final
    workdir = Path("/")
    env: dict[str, str] = {}
    for instruction in runtime.instructions:
        if instruction.name == "COPY":
            copy = parse_copy(instruction.value)
            if "from" in copy.flags:
                continue  # the deps stage's venv: here, this test's Python environment
            for source in copy.sources:
                copy_source(REPO / source, root / copy.destination.lstrip("/"))
        elif instruction.name == "WORKDIR":
            workdir = root / instruction.value.strip().lstrip("/")
        elif instruction.name == "ENV":
            env.update(re.findall(r"(\w+)=(\S+)", instruction.value))
    return workdir, env


def copy_source(source: Path, destination: Path) -> None:
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for file in files:
        relative = file.relative_to(REPO).as_posix()
        if dockerignore_excludes(relative):
            continue
        target = destination if source.is_file() else destination / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)


# What each pod has for itself: its image's files and its emptyDir volumes.
PER_POD = ("/app", "/var/lib/searchtuner", "/var/cache/searchtuner", "/home/searchtuner", "/tmp")


class Paths:
    """Maps one pod's absolute paths into a folder of its own (its image's files and its
    emptyDir volumes), except the store, which every pod of the dev overlay shares."""

    def __init__(self, root: Path, store: Path) -> None:
        self.root = root
        self.prefixes = {prefix: root / prefix.lstrip("/") for prefix in PER_POD}
        self.prefixes["/var/lib/searchtuner/store"] = store
        for folder in self.prefixes.values():
            folder.mkdir(parents=True, exist_ok=True)
        # One pass over the text (the temporary folder may itself be under /tmp): a prefix at
        # the start of a value, after "=" or ":", or in a file:// URI; not inside other paths.
        names = "|".join(re.escape(p) for p in sorted(self.prefixes, key=len, reverse=True))
        self.pattern = re.compile(rf"(?:(?<=file://)|(?<![\w/.]))({names})(?=/|$|:)")

    def __call__(self, text: str) -> str:
        return self.pattern.sub(lambda m: str(self.prefixes[m.group(1)]), text)


def container_command(
    container: dict[str, Any], configs: dict[str, dict[str, Any]], image_env: dict[str, str],
    paths: Paths,
) -> tuple[list[str], dict[str, str]]:  # fmt: skip
    """The container's argv and environment, as the kubelet would make them, paths mapped."""
    env = {**os.environ, **{k: paths(v) for k, v in image_env.items()}}
    # The image's PATH points at its venv; here the test's environment stands in for it.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(
                {k: paths(v) for k, v in configs[source["configMapRef"]["name"]]["data"].items()}
            )
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = paths(variable["value"])
        elif "configMapKeyRef" in variable["valueFrom"]:
            ref = variable["valueFrom"]["configMapKeyRef"]
            env[variable["name"]] = paths(configs[ref["name"]]["data"][ref["key"]])
        else:
            env[variable["name"]] = f"local-{variable['name'].lower()}"  # fieldRef: pod facts
    env["TMPDIR"] = str(paths.prefixes["/tmp"])
    return [paths(a) for a in [*container["command"], *container["args"]]], env


def replace_option(args: list[str], name: str, *values: str) -> list[str]:
    start = args.index(name) + 1
    return [*args[:start], *values, *args[start + len(values) :]]


@pytest.fixture
def dev_pods(tmp_path: Path) -> Any:
    resources = render("k8s/overlays/dev")
    configs = by_kind(resources, "ConfigMap")
    deployments = by_kind(resources, "Deployment")
    store = tmp_path / "store"  # the dev overlay's volume, mounted by every pod
    ports = {name: free_port() for name in SERVICE_EXECUTORS}
    grpc_port, http_port = free_port(), free_port()
    groups = []
    try:
        for name in (*SERVICE_EXECUTORS, "gateway"):
            dockerfile = (
                "gateway/Dockerfile" if name == "gateway" else f"executors/{name}/Dockerfile"
            )
            paths = Paths(tmp_path / name, store)
            workdir, image_env = stage_image(dockerfile, paths.root)
            (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
            argv, env = container_command(container, configs, image_env, paths)
            if name == "gateway":
                addresses = json.loads(argv[argv.index("--deployments-addresses") + 1])
                for executor, (address,) in addresses.items():
                    assert address == f"grpc://{executor}:8080", address  # the Services' names
                    addresses[executor] = [f"grpc://127.0.0.1:{ports[executor]}"]
                argv = replace_option(argv, "--deployments-addresses", json.dumps(addresses))
                argv = replace_option(argv, "--port", str(grpc_port), str(http_port))
                argv += ["--host", "127.0.0.1"]  # jina's default is 0.0.0.0, as in a pod
            else:
                argv = replace_option(argv, "--port", str(ports[name]))
                argv = replace_option(argv, "--host", "127.0.0.1")
            group = ProcessGroup(
                argv, cwd=workdir, log=tmp_path / f"{name}.log", env=env, name=f"the {name} pod"
            )
            groups.append(group.start())
        yield ports, grpc_port, http_port, store, groups
    finally:
        for group in reversed(groups):
            group.stop(30)


def grpc_serving(port: int) -> bool:
    """The image's HEALTHCHECK command, against this pod's port."""
    answer = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "healthcheck.py"), "grpc", f"127.0.0.1:{port}"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    return answer.returncode == 0


def test_dev_pods_start_and_serve(dev_pods: Any) -> None:
    ports, grpc_port, http_port, store, groups = dev_pods
    deadline = time.monotonic() + START_TIMEOUT
    by_name = dict(zip((*SERVICE_EXECUTORS, "gateway"), groups, strict=True))
    for name in SERVICE_EXECUTORS:
        by_name[name].wait_until(lambda n=name: grpc_serving(ports[n]), deadline - time.monotonic())
    http = f"http://127.0.0.1:{http_port}"
    by_name["gateway"].wait_until(
        lambda: requests.get(f"{http}/healthz", timeout=2).status_code == 200,
        deadline - time.monotonic(),
    )
    assert grpc_serving(grpc_port), "the gateway's gRPC server"
    assert requests.get(f"{http}/datasets", timeout=60).status_code == 401  # tokens, always
    # docs/deploy.md: an operator creates a token on the shared store (`searchtuner token
    # create --owner NAME` in the gateway's pod).
    token = TokenStore(open_store(store.as_uri())).create("alice").token
    auth = {"Authorization": f"Bearer {token}"}
    # A request that crosses the chain: the gateway spools it, ingest writes the store.
    rows = "text,label\n" + "".join(f"item {i},{'ab'[i % 2]}\n" for i in range(8))
    answer = requests.post(
        f"{http}/datasets?name=probe", data=rows.encode(),
        headers={"Content-Type": "text/csv", **auth}, timeout=120,
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    listed = requests.get(f"{http}/datasets", headers=auth, timeout=60)
    assert listed.status_code == 200 and "probe" in listed.text, listed.text
    assert any(store.rglob("*.json")), "the dataset is in the shared store folder"
    assert requests.get(f"{http}/runs", headers=auth, timeout=60).json() == []


def run_training_job(kustomization: str | Path, tmp_path: Path, **values: str) -> list[str]:
    """Start every pod of the rendered training Job as a torchrun agent on 127.0.0.1 with the
    Job's arguments, the kubelet's ``$(NAME)`` expansion and the ConfigMap's values (``values``
    on top), and wait for all; returns each agent's output, with its exit code appended.

    Only what cannot hold here changes: the rendezvous host becomes 127.0.0.1 (and each agent
    publishes 127.0.0.1), one CPU process per agent, and no restarts, so a failure shows at
    once.
    """
    (job,) = by_kind(render(kustomization), "Job").values()
    (container,) = job["spec"]["template"]["spec"]["containers"]
    configs = by_kind(render(kustomization), "ConfigMap")
    paths = Paths(tmp_path / "trainer", tmp_path / "store")
    workdir, image_env = stage_image("executors/trainer/Dockerfile.gpu", paths.root)
    argv, env = container_command(container, configs, image_env, paths)
    env.update(OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", **values)
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in argv]
    port = free_port()
    argv = [
        f"--rdzv-endpoint=127.0.0.1:{port}" if a.startswith("--rdzv-endpoint=") else
        "--nproc-per-node=1" if a.startswith("--nproc-per-node=") else
        "--max-restarts=0" if a.startswith("--max-restarts=") else a
        for a in argv
    ]  # fmt: skip
    argv.insert(1, "--local-addr=127.0.0.1")
    nnodes = int(next(a for a in argv if a.startswith("--nnodes=")).split("=")[1])
    assert nnodes == job["spec"]["completions"] == job["spec"]["parallelism"]
    agents = []
    try:
        for node in range(nnodes):
            log = open(tmp_path / f"node{node}.log", "wb")  # noqa: SIM115 - closed below
            agents.append((subprocess.Popen(
                argv, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            ), log))  # fmt: skip
        codes = [agent.wait(timeout=240) for agent, _ in agents]
    finally:
        for agent, log in agents:
            if agent.poll() is None:
                os.killpg(agent.pid, 9)
                agent.wait(10)
            log.close()
    return [
        (tmp_path / f"node{n}.log").read_text(errors="replace") + f"\n[exit code {codes[n]}]"
        for n in range(nnodes)
    ]


def test_training_job_rendezvous_and_worker_arguments(tmp_path: Path) -> None:
    """Two agents with the Job's torchrun arguments (rendezvous host moved to 127.0.0.1, one
    CPU process each) meet, and each worker parses its arguments and reads the store: the
    run does not exist there, so each worker exits saying so (exit code 2)."""
    store = tmp_path / "store"
    logs = run_training_job(
        "k8s/training/torchrun", tmp_path, SEARCHTUNER_RUN="missing-run",
        SEARCHTUNER_OWNER="local", SEARCHTUNER_STORE=store.as_uri(),
    )  # fmt: skip
    for node, text in enumerate(logs):
        assert "run missing-run not found" in text, f"node {node}:\n{text[-3000:]}"
        assert not text.endswith("[exit code 0]")  # the worker's failure is the agent's


def test_training_job_trains_a_run_the_service_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/deploy.md's steps, on 127.0.0.1: the service (converter's checks with
    SEARCHTUNER_MAX_NODES=2, the trainer's supervisor) queues a 2-node run and leaves it
    QUEUED; an overlay of k8s/training/torchrun names it, as the docs' overlay does; the
    Job's two agents train it to FINISHED, and only rank 0 writes events."""
    monkeypatch.setenv("SEARCHTUNER_MAX_NODES", "2")
    store = open_store(tmp_path / "store")
    registry = RunRegistry(store)
    request = mlp_request(upload(store, clusters(64)), epochs=2).model_copy(update={"nnodes": 2})
    run_id = queue_run(registry, request)  # CREATED → VALIDATING, as the converter does
    registry.update(
        OWNER,
        run_id,
        summary=validate_request(request, store.for_owner(OWNER), max_nodes=max_nodes()),
    )
    supervisor = RunSupervisor(store.uri(), scratch_dir=tmp_path / "service", poll_interval=0.05)
    supervisor.start()
    try:
        assert supervisor.submit(OWNER, run_id).state is RunState.QUEUED
        overlay = tmp_path / "overlay"
        overlay.mkdir()
        base = os.path.relpath(REPO / "k8s" / "training" / "torchrun", overlay)
        (overlay / "kustomization.yaml").write_text(
            f"resources:\n  - {base}\nconfigMapGenerator:\n  - name: searchtuner-train\n"
            f"    behavior: merge\n    literals:\n      - SEARCHTUNER_RUN={run_id}\n"
            f"      - SEARCHTUNER_OWNER={OWNER}\n"
        )
        # The store's folder here stands in for the bucket every node reaches.
        logs = run_training_job(overlay, tmp_path, SEARCHTUNER_STORE=store.uri())
        assert registry.get(OWNER, run_id).state is RunState.FINISHED  # the supervisor idled
        assert supervisor.status()["running"] == []
    finally:
        supervisor.stop(timeout=10)
    record, events = registry.get(OWNER, run_id), registry.events(OWNER, run_id)
    assert record.state is RunState.FINISHED, registry.logs(OWNER, run_id) + "\n".join(logs)
    assert all(text.endswith("[exit code 0]") for text in logs), "\n---\n".join(logs)
    assert record.model_handle and (record.attempt, record.crashes) == (1, 0)
    states = [e.data["state"] for e in events if e.type == "state"]
    assert states == [
        "CREATED", "VALIDATING", "QUEUED", "PREPARING", "TRAINING", "EVALUATING",
        "PUBLISHING", "FINISHED",
    ]  # fmt: skip
    # Rank 0 alone speaks: one process group line, each progress step once.
    assert [e.message for e in events].count("training data-parallel: 2 processes") == 1
    steps = [e.data["step"] for e in events if e.type == "progress"]
    assert steps and steps == sorted(set(steps))
