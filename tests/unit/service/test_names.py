"""Names a user gives cannot leave their namespace.

Every user-given name that reaches a store key or a path (owner names, run ids, upload ids,
dataset and model handles, data kinds, backbone names) is checked against traversal
(``../x``, ``/etc/passwd``, ``%2e%2e``, backslashes, NUL bytes, very long names, unicode
look-alikes) and refused with a 400-class error that says what a valid name is, without
touching the file system outside the store. A handle of another owner fails exactly like a
handle that names nothing, so an owner learns nothing about other namespaces.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save as save_safetensors

from searchtuner.artifacts import ModelHandle, ModelNotFound, owned_archive
from searchtuner.artifacts import checkpoint as checkpoint_module
from searchtuner.artifacts.checkpoint import CHECKPOINT_FORMAT, load_model_checkpoint
from searchtuner.artifacts.errors import CheckpointError
from searchtuner.data import LabeledDoc
from searchtuner.data.schemas import parse_kind
from searchtuner.data.stored import (
    DatasetNotFound,
    DatasetWriter,
    UploadNotFound,
    UploadSession,
    open_dataset,
)
from searchtuner.errors import ConfigError
from searchtuner.models.build import build_model
from searchtuner.models.registry import REGISTRY
from searchtuner.runs import RunNotFound, RunRegistry, RunRequest, registered_model_name
from searchtuner.runs.request import open_request_dataset
from searchtuner.service.tokens import TokenStore
from searchtuner.store import InvalidKeyError, LocalStore, validate_key, validate_segment

ALICE, BOB = "alice", "bob"
NEVER = "std1:" + "0" * 64
TRAVERSALS = [
    "..",
    ".",
    "../bob",
    "../../etc/passwd",
    "/etc/passwd",
    "%2e%2e",
    "%2e%2e%2fbob",
    "..\\bob",
    "a\\b",
    "bob\x00",
    "\x00",
    "ali ce",
    "alice\n",
    "\uff0e\uff0e",  # fullwidth full stops
    "\u2024\u2024",  # one-dot leaders
    "alice\u2215bob",  # division slash
    "\u0430lice",  # Cyrillic a
    "~bob",
    "",
]


@pytest.fixture
def root(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _files_outside(root: LocalStore, tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if root.root not in (p, *p.parents)]


def _dataset(root: LocalStore, owner: str, seed: int) -> str:
    rng = np.random.default_rng(seed)
    writer = DatasetWriter(root.for_owner(owner), "labeled")
    writer.add(
        [
            LabeledDoc(tensor=rng.normal(size=4).astype(np.float32), label=f"c{i % 2}")
            for i in range(4)
        ]
    )
    return writer.commit().handle


# -- owner names and keys --------------------------------------------------------------------


@pytest.mark.parametrize("name", TRAVERSALS)
def test_an_owner_name_is_one_plain_segment(name: str, root: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyError, match="use one segment of at most 128 letters"):
        root.for_owner(name)
    with pytest.raises(InvalidKeyError):
        TokenStore(root).create(name)
    assert _files_outside(root, tmp_path) == []


def test_a_very_long_owner_name_is_refused_quickly_with_a_short_message(
    root: LocalStore,
) -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidKeyError) as caught:
        validate_segment("a" * 10_000_000, what="owner name")
    assert time.perf_counter() - started < 0.5
    assert "10,000,000 characters long" in str(caught.value)
    assert len(str(caught.value)) < 300
    validate_segment("a" * 128, what="owner name")  # the longest one allowed


@pytest.mark.parametrize(
    "key",
    [
        "../owners/bob/datasets/x.json",
        "datasets/../../bob/x",
        "/etc/passwd",
        "datasets/%2e%2e/x",
        "datasets\\..\\x",
        "datasets/x\x00.json",
        "datasets/\uff0e\uff0e/x",
        "x" * 2000,
    ],
)
def test_no_key_leaves_an_owners_namespace(key: str, root: LocalStore, tmp_path: Path) -> None:
    mine = root.for_owner(ALICE)
    with pytest.raises(InvalidKeyError, match="letters, digits"):
        validate_key(key)
    with pytest.raises(InvalidKeyError):
        mine.put_bytes(key, b"x")
    with pytest.raises(InvalidKeyError):
        mine.get_bytes(key)
    assert _files_outside(root, tmp_path) == []


# -- dataset handles -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "handle",
    [
        "std1:../../owners/bob/datasets/x",
        "std1:" + "A" * 64,
        "std1:" + "0" * 63,
        "std1:" + "0" * 64 + "/../x",
        "std1:%2e%2e%2f" + "0" * 58,
        "std1:" + "0" * 63 + "\x00",
        "std1:" + "\uff10" * 64,  # fullwidth zeros
        "../datasets/" + "0" * 64 + ".json",
        "/etc/passwd",
        "std1:" + "0" * 10_000_000,
    ],
)
def test_a_malformed_dataset_handle_names_nothing(
    handle: str, root: LocalStore, tmp_path: Path
) -> None:
    with pytest.raises(DatasetNotFound, match=r"handles look like std1:<64 lowercase hex") as err:
        open_dataset(root.for_owner(ALICE), handle)
    assert len(str(err.value)) < 500
    with pytest.raises(ConfigError, match="not found \\(the request's train_data\\)") as bad:
        open_request_dataset(root.for_owner(ALICE), handle)
    assert len(str(bad.value)) < 500
    assert _files_outside(root, tmp_path) == []


def test_another_owners_dataset_fails_like_one_never_uploaded(root: LocalStore) -> None:
    theirs = _dataset(root, BOB, seed=1)
    alice = root.for_owner(ALICE)

    with pytest.raises(DatasetNotFound) as foreign:
        open_dataset(alice, theirs)
    with pytest.raises(DatasetNotFound) as unknown:
        open_dataset(alice, NEVER)

    assert str(foreign.value).replace(theirs, "<handle>") == str(unknown.value).replace(
        NEVER, "<handle>"
    )
    with pytest.raises(ConfigError) as foreign_request:
        open_request_dataset(alice, theirs, "eval_data")
    with pytest.raises(ConfigError) as unknown_request:
        open_request_dataset(alice, NEVER, "eval_data")
    assert type(foreign_request.value) is type(unknown_request.value)
    assert str(foreign_request.value).replace(theirs, "<handle>") == str(
        unknown_request.value
    ).replace(NEVER, "<handle>")
    assert open_dataset(root.for_owner(BOB), theirs).info.n_items == 4  # bob still has it


def test_a_dataset_name_is_a_label_and_never_reaches_a_key(
    root: LocalStore, tmp_path: Path
) -> None:
    writer = DatasetWriter(root.for_owner(ALICE), "labeled", name="../../../etc/passwd")
    writer.add([LabeledDoc(text="a", label="x"), LabeledDoc(text="b", label="y")])
    info = writer.commit()

    assert info.name == "../../../etc/passwd"
    keys = list(root.for_owner(ALICE).keys("datasets/"))
    assert f"datasets/{info.dataset_id}.json" in keys
    assert _files_outside(root, tmp_path) == []
    with pytest.raises(ConfigError, match="holds control characters"):
        DatasetWriter(root.for_owner(ALICE), name="a\x00b")
    with pytest.raises(ConfigError, match="at most 200 characters, got 10,000,000") as err:
        DatasetWriter(root.for_owner(ALICE), name="n" * 10_000_000)
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("kind", ["../labeled", "labeled/../x", "label\x00ed", "k" * 10_000_000])
def test_a_data_kind_is_one_of_the_known_kinds(kind: str) -> None:
    with pytest.raises(ConfigError, match="unknown data kind") as err:
        parse_kind(kind)
    assert "allowed: labeled, pairs, text_image, unlabeled" in str(err.value)
    assert len(str(err.value)) < 300


@pytest.mark.parametrize(
    "upload_id", ["../../etc/passwd", "%2e%2e", "a\\b", "\x00", "u" * 10_000_000]
)
def test_an_upload_id_names_only_open_uploads_of_its_owner(
    upload_id: str, root: LocalStore
) -> None:
    session = UploadSession()
    mine = session.begin(root.for_owner(ALICE), "labeled")

    with pytest.raises(UploadNotFound, match="no open upload") as err:
        session.add(root.for_owner(ALICE), upload_id, [LabeledDoc(text="a", label="x")])
    assert len(str(err.value)) < 400
    with pytest.raises(UploadNotFound) as foreign:
        session.add(root.for_owner(BOB), mine, [LabeledDoc(text="a", label="x")])
    with pytest.raises(UploadNotFound) as unknown:
        session.add(root.for_owner(BOB), "f" * 32, [LabeledDoc(text="a", label="x")])
    assert str(foreign.value).replace(mine, "<id>") == str(unknown.value).replace("f" * 32, "<id>")
    session.abort_all()


# -- run ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run_id",
    ["../run-20240101000000-abcdef", "run-20240101000000-abcdef/../x", "%2e%2e", "\x00", ""],
)
def test_a_malformed_run_id_is_not_found(run_id: str, root: LocalStore) -> None:
    with pytest.raises(RunNotFound, match="list your runs"):
        RunRegistry(root).get(ALICE, run_id)


def test_another_owners_run_fails_like_one_never_created(root: LocalStore) -> None:
    registry = RunRegistry(root)
    request = RunRequest(model="mlp", model_options={"input_dim": 4}, train_data=NEVER)
    theirs = registry.create(BOB, request).run_id
    never = "run-20000101000000-000000"

    with pytest.raises(RunNotFound) as foreign:
        registry.get(ALICE, theirs)
    with pytest.raises(RunNotFound) as unknown:
        registry.get(ALICE, never)

    assert str(foreign.value).replace(theirs, "<id>") == str(unknown.value).replace(never, "<id>")


# -- model handles ---------------------------------------------------------------------------


def _archive(root: LocalStore, owner: str, content: bytes) -> ModelHandle:
    """An object where a published archive lies (owned_archive only looks it up)."""
    namespace = root.for_owner(owner)
    digest = hashlib.sha256(content).hexdigest()
    info = namespace.put_bytes(f"models/{digest}.tar", content)
    return ModelHandle(uri=namespace.uri(info.key), sha256=info.sha256, size=info.size)


def test_a_model_handle_opens_in_its_owners_namespace(root: LocalStore) -> None:
    handle = _archive(root, ALICE, b"alice's archive")

    info = owned_archive(root.for_owner(ALICE), str(handle))

    assert info.key == f"models/{handle.sha256}.tar"
    assert root.for_owner(ALICE).get_bytes(info.key) == b"alice's archive"


def test_another_owners_model_fails_like_one_never_published(root: LocalStore) -> None:
    theirs = _archive(root, BOB, b"bob's archive")
    never = _archive(root, ALICE, b"gone")
    root.for_owner(ALICE).delete(f"models/{never.sha256}.tar")
    alice = root.for_owner(ALICE)

    with pytest.raises(ModelNotFound) as foreign:
        owned_archive(alice, str(theirs))
    with pytest.raises(ModelNotFound) as unknown:
        owned_archive(alice, never.to_json())

    assert str(foreign.value).replace(theirs.sha256, "<sha>") == str(unknown.value).replace(
        never.sha256, "<sha>"
    )


@pytest.mark.parametrize(
    "where",
    [
        "{alice}/../bob/models/{name}",
        "{alice}/models/../../bob/models/{name}",
        "{alice}/models/%2e%2e/%2e%2e/bob/models/{name}",
        "{alice}/models\\..\\..\\bob\\models\\{name}",
        "{alice}/models/{name}\x00",
        "{alice}/\uff0e\uff0e/bob/models/{name}",
        "{alice}/../../../../../../etc/{name}",
        "{alice}evil/models/{name}",
        "file:///etc/{name}",
        "s3://elsewhere/owners/alice/models/{name}",
        "{alice}/runs/r1/{name}x",  # an object that is not a published archive
    ],
)
def test_a_model_handle_pointing_anywhere_else_is_not_found(
    where: str, root: LocalStore, tmp_path: Path
) -> None:
    theirs = _archive(root, BOB, b"bob's archive")
    alice = root.for_owner(ALICE)
    alice.put_bytes("runs/r1/placeholder", b"x")  # alice's namespace exists
    uri = where.format(alice=alice.uri(), name=f"{theirs.sha256}.tar")
    handle = ModelHandle(uri=uri, sha256=theirs.sha256, size=theirs.size)

    with pytest.raises(ModelNotFound) as caught:
        owned_archive(alice, str(handle))

    assert str(caught.value).startswith(f"no published model with digest {theirs.sha256} in")
    assert "bob" not in str(caught.value)
    assert _files_outside(root, tmp_path) == []


@pytest.mark.parametrize("text", ["../x", "stm1:../x", "stm1:" + "0" * 64 + ":1@", "h" * 100_000])
def test_a_malformed_model_handle_says_what_a_handle_is(text: str, root: LocalStore) -> None:
    with pytest.raises(ConfigError, match="stm<format>:<sha256>:<size>@<uri>") as err:
        owned_archive(root.for_owner(ALICE), text)
    assert len(str(err.value)) < 5000


# -- backbone names and checkpoints ----------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        "../all-MiniLM-L6-v2",
        "./all-MiniLM-L6-v2",
        "/etc/passwd",
        "~/models/bert",
        "..\\all-MiniLM-L6-v2",
        "C:\\models\\bert",
        "%2e%2e/all-MiniLM-L6-v2",
        "a/b/all-MiniLM-L6-v2",
        "file:///srv/models/bert",
        "all-MiniLM-L6-v2\x00",
        "\uff41ll-MiniLM-L6-v2",  # fullwidth a
        "all-MiniLM-L6-v2\u2215x",
        "m" * 10_000_000,
    ],
)
def test_a_requested_model_is_a_registered_backbone_never_a_path(model: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        registered_model_name(model)
    assert time.perf_counter() - started < 0.5
    message = str(err.value)
    assert f"Allowed: {', '.join(REGISTRY)}" in message or "allowed: " in message
    assert len(message) < 1000


def test_registered_names_resolve_to_their_registry_spelling() -> None:
    assert registered_model_name("sentence-transformers/ALL-minilm-l6-v2") == "all-MiniLM-L6-v2"
    assert registered_model_name("mlp") == "mlp"


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"train_data": "std1:" + "0" * 10_000_000}, "train_data: String should have at most"),
        ({"eval_data": "../" * 100}, "eval_data: String should have at most"),
        ({"name": "run\nFINISHED"}, "name: holds control characters"),
        ({"name": "x\x00"}, "name: holds control characters"),
    ],
)
def test_a_run_request_bounds_its_names_and_handles(fields: dict[str, str], said: str) -> None:
    request = {"model": "mlp", "model_options": {"input_dim": 4}, "train_data": NEVER, **fields}
    with pytest.raises(ConfigError, match=said) as err:
        RunRequest.from_dict(request)
    assert len(str(err.value)) < 1000


def test_a_checkpoint_naming_a_model_folder_is_refused_where_only_registered_ones_may_load(
    root: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_model("mlp", input_dim=4, pretrained=False)
    spec = {**model.spec.to_dict(), "backbone": "/srv/models/someone-elses-model"}
    tensors = {name: value.detach().clone() for name, value in model.state_dict().items()}
    metadata = {"format": CHECKPOINT_FORMAT, "spec": json.dumps(spec), "info": "{}"}
    mine = root.for_owner(ALICE)
    mine.put_bytes("runs/r1/model.safetensors", save_safetensors(tensors, metadata=metadata))

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was rebuilt from a path named by a stored spec")

    monkeypatch.setattr(checkpoint_module, "_rebuild", never)
    with pytest.raises(CheckpointError, match="not a registered backbone") as err:
        load_model_checkpoint(mine, "runs/r1/model.safetensors", registered_only=True)
    assert "never reads model folders" in str(err.value)
