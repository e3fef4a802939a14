"""What the deployment checks share: the repository's Dockerfiles and kustomizations, the
tools that read them, and a renderer for the manifests.

A missing tool fails the check in CI (``CI`` set to true, as ``.ci/run`` does) and skips it
elsewhere, with the command that installs it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
EXECUTORS = ("ingest", "converter", "trainer", "publisher", "encoder", "indexer")
# The fine-tuning Flow's executors: the Kubernetes base deploys these behind the gateway.
SERVICE_EXECUTORS = ("ingest", "converter", "trainer", "publisher")
CPU_DOCKERFILES = (*(f"executors/{name}/Dockerfile" for name in EXECUTORS), "gateway/Dockerfile")
GPU_DOCKERFILES = ("executors/trainer/Dockerfile.gpu",)
DOCKERFILES = CPU_DOCKERFILES + GPU_DOCKERFILES
KUBERNETES_VERSION = "1.33.0"
INSTALL_HINT = (
    "bash scripts/install.sh (as root on Debian for kubectl), or pip install -e '.[test]'"
)


def in_ci() -> bool:
    """True where CI runs the suite: a missing tool is then a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """Fail (in CI) or skip (elsewhere) because ``what`` is not installed."""
    message = f"{what} is not installed; install it with: {INSTALL_HINT}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def find_tool(name: str) -> str | None:
    """``name`` on PATH or beside this Python (a virtual environment's bin/), else None."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def require_tool(name: str) -> str:
    """The path of ``name``; fails or skips (see :func:`missing`) when absent."""
    path = find_tool(name)
    if path is None:
        missing(name)
        raise AssertionError("unreachable")  # missing() raises
    return path


# --- kustomize ------------------------------------------------------------------------------

# kustomize v4.5 is the oldest that renders these kustomizations (multi-target `patches`).
MIN_KUSTOMIZE = (4, 5)


def _kustomize_version(text: str) -> tuple[int, int] | None:
    found = re.search(r"v(\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else None


@functools.cache
def kustomize_command() -> tuple[str, ...] | None:
    """How to render a kustomization here: ``kubectl kustomize`` if its kustomize is recent
    enough, else a standalone ``kustomize build``; None when neither is installed."""
    kubectl = find_tool("kubectl")
    if kubectl is not None:
        answer = subprocess.run(
            [kubectl, "version", "--client"], capture_output=True, text=True, timeout=60
        )
        line = next((x for x in answer.stdout.splitlines() if "Kustomize" in x), "")
        version = _kustomize_version(line)
        if version is not None and version >= MIN_KUSTOMIZE:
            return (kubectl, "kustomize")
    kustomize = find_tool("kustomize")
    if kustomize is not None:
        answer = subprocess.run([kustomize, "version"], capture_output=True, text=True, timeout=60)
        version = _kustomize_version(answer.stdout)
        if version is not None and version >= MIN_KUSTOMIZE:
            return (kustomize, "build")
    return None


def kustomizations() -> list[Path]:
    """Every folder under k8s/ with a kustomization.yaml, relative to the repository."""
    return sorted(p.parent.relative_to(REPO) for p in K8S.rglob("kustomization.yaml"))


@functools.cache
def _render(folder: str) -> str:
    command = kustomize_command()
    if command is None:
        missing(f"kubectl (with kustomize >= v{MIN_KUSTOMIZE[0]}.{MIN_KUSTOMIZE[1]}) or kustomize")
        raise AssertionError("unreachable")
    answer = subprocess.run(
        [*command, str(REPO / folder)], capture_output=True, text=True, timeout=120
    )
    if answer.returncode != 0:
        raise AssertionError(f"{' '.join(command)} {folder} failed:\n{answer.stderr}")
    return answer.stdout


def render(folder: str | Path) -> list[dict[str, Any]]:
    """The resources a kustomization renders to (a fresh copy each call)."""
    return [doc for doc in yaml.safe_load_all(_render(str(folder))) if doc]


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """``{name: resource}`` of one kind."""
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


@dataclass
class PodSpec:
    """A pod template found in a rendered resource: where, and the template itself."""

    owner: str  # e.g. "Deployment/trainer" or "PyTorchJob/searchtuner-train Worker"
    labels: dict[str, str]
    spec: dict[str, Any]


def pod_specs(resources: list[dict[str, Any]]) -> list[PodSpec]:
    """Every pod template of Deployments, Jobs and PyTorchJobs."""
    found = []
    for r in resources:
        name = f"{r['kind']}/{r['metadata']['name']}"
        if r["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            template = r["spec"]["template"]
            found.append(PodSpec(name, template["metadata"].get("labels", {}), template["spec"]))
        elif r["kind"] == "PyTorchJob":
            for role, replica in r["spec"]["pytorchReplicaSpecs"].items():
                template = replica["template"]
                found.append(
                    PodSpec(
                        f"{name} {role}",
                        template.get("metadata", {}).get("labels", {}),
                        template["spec"],
                    )
                )
    return found


_REFERENCE = re.compile(r"\$\((\w+)\)")


def container_environment(
    container: dict[str, Any], resources: list[dict[str, Any]]
) -> dict[str, str]:
    """The variables a container starts with, as the kubelet makes them from the rendered
    resources: ``envFrom`` ConfigMaps first, then ``env`` (which wins), with ``$(NAME)``
    references expanded from what is defined before. Secrets are not in the repository, so
    their variables are absent; a ``fieldRef`` becomes ``<fieldPath>``.
    """
    configs = by_kind(resources, "ConfigMap")
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configs[source["configMapRef"]["name"]].get("data", {}))
    for variable in container.get("env", []):
        ref = variable.get("valueFrom", {})
        if "value" in variable:
            env[variable["name"]] = _REFERENCE.sub(
                lambda m: env.get(m.group(1), m.group(0)), variable["value"]
            )
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env[variable["name"]] = configs[key["name"]]["data"][key["key"]]
        elif "fieldRef" in ref:
            env[variable["name"]] = f"<{ref['fieldRef']['fieldPath']}>"
    return env


def expand_args(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    """The container's arguments with ``$(NAME)`` references expanded as the kubelet does
    (an undefined name stays as written)."""
    return [_REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), a) for a in container["args"]]


# --- Dockerfiles ----------------------------------------------------------------------------


@dataclass
class Instruction:
    """One Dockerfile instruction, as dockerfile-parse reads it."""

    name: str  # upper case: FROM, RUN, COPY…
    value: str
    line: int


@dataclass
class Stage:
    """One build stage: its FROM and what follows it."""

    base: str  # the image, build arguments substituted
    alias: str
    instructions: list[Instruction] = field(default_factory=list)

    def named(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.name == name]


@dataclass
class Dockerfile:
    """A parsed Dockerfile: its global ARG defaults and its stages."""

    path: str
    args: dict[str, str]
    stages: list[Stage]
    instructions: list[Instruction]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, alias: str) -> Stage:
        return next(s for s in self.stages if s.alias == alias)


def parse_dockerfile(relative: str) -> Dockerfile:
    """Parse with dockerfile-parse (a test dependency); comments dropped."""
    try:
        from dockerfile_parse import DockerfileParser
    except ModuleNotFoundError:
        missing("dockerfile-parse (PyPI)")
        raise
    with open(REPO / relative, "rb") as handle:
        parser = DockerfileParser(fileobj=handle)
        structure = parser.structure
    instructions = [
        Instruction(item["instruction"].upper(), item["value"], item["startline"] + 1)
        for item in structure
        if item["instruction"].upper() != "COMMENT"
    ]
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.name == "FROM":
            words = instruction.value.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(image, alias))
        elif not stages:
            if instruction.name == "ARG" and "=" in instruction.value:
                key, _, default = instruction.value.partition("=")
                args[key.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(instruction)
    return Dockerfile(relative, args, stages, instructions)


def exec_form(value: str) -> list[str] | None:
    """The JSON array of an exec-form instruction (CMD, ENTRYPOINT…), or None if not one."""
    text = value.strip()
    if not text.startswith("["):
        return None
    parsed = json.loads(text)
    if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
        raise ValueError(f"not a JSON array of strings: {value}")
    return parsed


@dataclass
class Copy:
    """A COPY instruction: its flags, sources and destination."""

    flags: dict[str, str]
    sources: list[str]
    destination: str


def parse_copy(value: str) -> Copy:
    """Split a COPY instruction's value (shell form, as these Dockerfiles write it)."""
    words = value.split()
    flags = {}
    while words and words[0].startswith("--"):
        key, _, flag_value = words.pop(0)[2:].partition("=")
        flags[key] = flag_value
    if len(words) < 2:
        raise ValueError(f"COPY needs a source and a destination: {value}")
    return Copy(flags, words[:-1], words[-1])


# --- .dockerignore --------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (Go's filepath.Match plus ``**``) as a regular expression."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            if pattern.startswith("/", i):  # "**/" also matches no folder at all
                out[-1] = "(?:.*/)?"
                i += 1
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:  # a character class, as in Go
            end = pattern.index("]", i + 1)
            out.append("[" + pattern[i + 1 : end].replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def dockerignore_excludes(path: str, ignore_file: Path | None = None) -> bool:
    """Whether the build context leaves ``path`` (relative to the context) out.

    Docker's rules as this repository uses them: patterns in order, the last that matches
    decides, ``!`` re-includes; a pattern that matches a folder matches everything in it.
    """
    ignore_file = ignore_file or REPO / ".dockerignore"
    patterns = []
    for raw in ignore_file.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        patterns.append((negate, _pattern_regex(pattern.strip("/"))))
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negate, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded
