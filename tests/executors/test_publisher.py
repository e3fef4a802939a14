"""The Publisher executor at three levels: its config loads, its method runs on a DocList,
and a real Flow serves it over gRPC on 127.0.0.1 to a jina Client.

Every request carries a real token of the store in its parameters (``issue_token`` of
tests/executors/conftest.py): the Flow here has no SearchTuner gateway to put it there.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from docarray import DocList
from jina import Client, Executor, Flow
from jina.excepts import BadServer

import searchtuner
from executors.common.errors import InvalidRequest
from executors.common.schemas import PublishRequest, PublishResponse
from executors.publisher.executor import Publisher
from searchtuner.artifacts import CheckpointError, ModelHandle, save_model_checkpoint
from searchtuner.service.owners import Unauthenticated
from searchtuner.store import LocalStore, NotFound
from tests.flow_host import hosted_flow

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "executors" / "publisher" / "config.yml"
README = REPO / "executors" / "publisher" / "README.md"
KEY = "runs/r1/best.safetensors"
TEXTS = ["neural search ranks documents by embedding similarity", "a cat", "x"]
VECTORS = np.random.default_rng(1).normal(size=(5, 12)).astype(np.float32)


def _mlp() -> searchtuner.EmbeddingModel:
    torch.manual_seed(0)
    return searchtuner.build_model("mlp", input_dim=12, hidden_dims=[16], output_dim=8)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    """A store where alice has one checkpoint (an MLP) and one object that is not one."""
    opened = LocalStore(tmp_path / "store")
    alice = opened.for_owner("alice")
    save_model_checkpoint(_mlp(), alice, KEY, info={"run_id": "r1"})
    alice.put_bytes("runs/r1/notes.txt", b"not a checkpoint")
    return opened


def _publisher(store: LocalStore) -> Publisher:
    return Publisher(store_uri=store.uri(), onnx=False)


def _request(**fields: str) -> DocList[PublishRequest]:
    return DocList[PublishRequest]([PublishRequest(**fields)])


@pytest.fixture
def alice(store: LocalStore, issue_token: Callable[..., str]) -> dict[str, str]:
    """The parameters of a request of alice, the owner of the checkpoint."""
    return {"token": issue_token(store, "alice")}


def test_the_config_loads_with_the_store_uri(store: LocalStore) -> None:
    # Loaded once per process: jina imports py_modules by file path, and a second import of
    # executor.py warns that the name is taken.
    executor = Executor.load_config(str(CONFIG), uses_with={"store_uri": store.uri()})
    assert type(executor).__name__ == "Publisher"
    assert executor.store.uri() == store.uri()  # type: ignore[attr-defined]
    assert (executor.prefix, executor.onnx) == ("models", True)  # type: ignore[attr-defined]
    assert executor.requests["/publish"].fn.__name__ == "publish"


def test_the_default_store_is_a_folder_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Publisher().store.uri() == (tmp_path / "searchtuner-data").as_uri()


def test_the_method_publishes_and_answers_with_the_handle(
    store: LocalStore, alice: dict[str, str], tmp_path: Path
) -> None:
    executor = _publisher(store)
    request = _request(checkpoint_key=KEY)  # no owner: the token's

    answer = executor.publish(request, alice)
    again = executor.publish(_request(owner="alice", checkpoint_key=KEY), alice)

    assert len(answer) == 1 and answer[0].id == request[0].id
    handle = ModelHandle.parse(answer[0].handle)
    assert (answer[0].uri, answer[0].sha256, answer[0].size, answer[0].format_version) == (
        handle.uri, handle.sha256, handle.size, handle.format_version,
    )  # fmt: skip
    assert handle.uri == store.uri(f"owners/alice/models/{handle.sha256}.tar")
    assert again[0].handle == answer[0].handle
    assert len(list(store.keys("owners/alice/models/"))) == 1
    restored = searchtuner.get_model(handle, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(
        searchtuner.encode(restored, VECTORS), searchtuner.encode(_mlp(), VECTORS)
    )


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"owner": "alice"}, InvalidRequest, "lacks checkpoint_key;"),
        ({}, InvalidRequest, "lacks checkpoint_key;"),
        ({"owner": "../bob", "checkpoint_key": KEY}, InvalidRequest, "owner name '../bob'"),
        ({"owner": "alice", "checkpoint_key": "/etc/passwd"}, InvalidRequest, "starts with '/'"),
        ({"owner": "alice", "checkpoint_key": "runs/../x"}, InvalidRequest, "'..' is not allowed"),
        ({"owner": "bob", "checkpoint_key": KEY}, NotFound, f"no checkpoint '{KEY}' in your"),
        ({"checkpoint_key": "runs/r2/x"}, NotFound, "no checkpoint 'runs/r2/x' in your namespace"),
        (
            {"owner": "alice", "checkpoint_key": "runs/r1/notes.txt"},
            CheckpointError,
            "not a safetensors file",
        ),
    ],
)
def test_bad_requests_raise_errors_that_name_the_problem(
    store: LocalStore,
    alice: dict[str, str],
    fields: dict[str, str],
    error: type[Exception],
    message: str,
) -> None:
    executor = _publisher(store)
    with pytest.raises(error, match=message) as caught:
        executor.publish(_request(**fields), alice)
    assert isinstance(caught.value, searchtuner.SearchTunerError)
    assert list(store.keys("owners/alice/models/")) == []


@pytest.mark.usefixtures("alice")  # a valid token exists, on the store the executor reads
@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "needs a token: send it as `Authorization: Bearer <token>`"),
        ({"token": ""}, "needs a token: send it as `Authorization: Bearer <token>`"),
        ({"token": "st_0_x"}, "the token is not valid"),
        ({"token": "st_0123456789abcdef_" + "x" * 43}, "the token is not valid"),
    ],
)
def test_a_request_without_a_valid_token_is_refused(
    store: LocalStore, parameters: dict[str, str], message: str
) -> None:
    executor = _publisher(store)
    with pytest.raises(Unauthenticated, match=message) as caught:
        executor.publish(_request(owner="alice", checkpoint_key=KEY), parameters)
    assert "searchtuner token create --owner NAME" in str(caught.value)
    assert list(store.keys("owners/alice/models/")) == []


def test_another_owners_checkpoint_is_answered_as_a_missing_one(
    store: LocalStore, issue_token: Callable[..., str]
) -> None:
    executor = _publisher(store)
    bob = {"token": issue_token(store, "bob")}

    with pytest.raises(NotFound) as named:  # alice's checkpoint, named by its owner
        executor.publish(_request(owner="alice", checkpoint_key=KEY), bob)
    with pytest.raises(NotFound) as unnamed:  # the same key in bob's own (empty) namespace
        executor.publish(_request(checkpoint_key=KEY), bob)
    with pytest.raises(NotFound) as missing:
        executor.publish(_request(checkpoint_key="runs/r2/x"), bob)

    assert str(named.value) == str(unnamed.value) == str(missing.value).replace("runs/r2/x", KEY)
    assert list(store.keys("owners/alice/models/")) == list(store.keys("owners/bob/")) == []


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.integration
def test_a_flow_publishes_over_grpc_and_survives_bad_requests(
    tmp_path: Path, issue_token: Callable[..., str]
) -> None:
    """The Flow runs in a child process (tests.flow_host: Flows fork, and gRPC breaks in a
    process forked after gRPC work). The checkpoint is of a registered backbone: the service
    never rebuilds a model folder."""
    model = _mlp()
    store = LocalStore(tmp_path / "store")
    save_model_checkpoint(model, store.for_owner("alice"), KEY, info={"run_id": "r1"})
    alice = {"token": issue_token(store, "alice")}  # also SEARCHTUNER_STORE, for the executor
    flow = Flow(port=_free_port(), host="127.0.0.1").add(
        uses=str(CONFIG), uses_with={"store_uri": store.uri()}
    )

    with hosted_flow(flow, tmp_path / "flow") as port:
        client = Client(host=f"grpc://127.0.0.1:{port}")

        def post(parameters: dict[str, str], **fields: str) -> DocList[PublishResponse]:
            answer: DocList[PublishResponse] = client.post(
                "/publish",
                inputs=_request(**fields),
                parameters=parameters,
                return_type=DocList[PublishResponse],
            )
            return answer

        first = post(alice, checkpoint_key=KEY)
        with pytest.raises(BadServer) as anonymous:
            post({}, owner="alice", checkpoint_key=KEY)
        with pytest.raises(BadServer) as theirs:
            post(alice, owner="bob", checkpoint_key=KEY)
        after = post(alice, owner="alice", checkpoint_key=KEY)

    refused = anonymous.value.args[0].status.exception
    assert refused.name == "Unauthenticated"
    assert "needs a token: send it as `Authorization: Bearer <token>`" in refused.args[0]
    status = theirs.value.args[0].status
    assert status.exception.name == "NotFound"
    assert f"no checkpoint '{KEY}' in your namespace" in status.exception.args[0]
    assert after[0].handle == first[0].handle
    restored = searchtuner.get_model(first[0].handle, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(
        searchtuner.encode(restored, VECTORS), searchtuner.encode(model, VECTORS)
    )


@pytest.mark.integration
def test_the_readme_examples_run(tmp_path: Path) -> None:
    """The README's YAML loads as a Flow; its Python example runs as the script it is.

    The script starts its own Flow, so it runs in a fresh interpreter: forking a Flow's
    processes from a test process that has already done gRPC work (the Flow test above) can
    crash both (gRPC does not survive fork() after use).
    """
    text = README.read_text()
    (yaml_block,) = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    (python_block,) = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    flow = Flow.load_config(yaml_block)  # parsed only; it needs an S3 server to start
    assert (flow.host, flow.port) == ("127.0.0.1", 54321)

    # The example runs from the repository root and writes ./searchtuner-data: give it a
    # scratch folder that looks like one.
    (tmp_path / "executors").symlink_to(REPO / "executors")
    (tmp_path / "example.py").write_text(python_block)
    env = {**os.environ, "SEARCHTUNER_CACHE": str(tmp_path / "cache")}
    env.pop("SEARCHTUNER_STORE", None)  # the example's tokens are in ./searchtuner-data
    done = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    published = LocalStore(tmp_path / "searchtuner-data").for_owner("alice")
    (archive,) = published.keys("models/")
    assert published.stat(archive).sha256 in done.stdout
