"""Process counts of a run: validated with messages that say what to change, and launched
through torchrun when there are several (the launch itself: tests/integration)."""

from __future__ import annotations

import sys

import pytest
import torch

from searchtuner.errors import ConfigError
from searchtuner.runs import RunRequest, validate_request
from searchtuner.runs.launch import gpus_per_node, max_nodes
from searchtuner.runs.supervisor import torchrun_command
from searchtuner.service.schemas import FitRequest
from searchtuner.store import Store
from tests.unit.runs.helpers import OWNER, clusters, mlp_request, upload


def test_one_process_is_the_default() -> None:
    request = mlp_request("std1:" + "0" * 64)
    assert (request.processes_per_node, request.nnodes, request.world_size) == (1, 1, 1)
    assert (FitRequest().processes_per_node, FitRequest().nnodes) == (1, 1)


@pytest.mark.parametrize(("field", "value"), [("processes_per_node", 0), ("nnodes", 0),
                                              ("processes_per_node", 65)])  # fmt: skip
def test_process_counts_out_of_range_are_refused(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"invalid run request: {field}: Input should be"):
        RunRequest(model="mlp", train_data="std1:x", **{field: value})


def test_a_batch_that_does_not_split_over_the_processes_is_refused(store: Store) -> None:
    train = upload(store, clusters(64))
    # Labelled data: each process takes whole groups of samples_per_label=2 items.
    request = mlp_request(train, batch_size=12).model_copy(update={"processes_per_node": 2})
    assert validate_request(request, store.for_owner(OWNER))["train_items"] == 64
    request = mlp_request(train, batch_size=12).model_copy(update={"processes_per_node": 4})
    with pytest.raises(ConfigError) as caught:
        validate_request(request, store.for_owner(OWNER))
    assert str(caught.value) == (
        "batch_size=12 (the global batch of one step) does not split evenly over 4 processes "
        "in whole groups of samples_per_label=2; use batch_size 8 or 16 "
        "(processes_per_node=4 × nnodes=1)"
    )


def test_more_nodes_than_the_deployment_launches_are_refused(store: Store) -> None:
    request = mlp_request(upload(store, clusters(64))).model_copy(update={"nnodes": 2})
    with pytest.raises(ConfigError) as caught:
        validate_request(request, store.for_owner(OWNER))
    assert str(caught.value).startswith(
        "nnodes=2, but this deployment launches runs on at most 1 node(s) "
        "(SEARCHTUNER_MAX_NODES=1); use nnodes <= 1"
    )
    assert "raise SEARCHTUNER_MAX_NODES" in str(caught.value)
    assert validate_request(request, store.for_owner(OWNER), max_nodes=2)["train_items"] == 64


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, 1), ({"SEARCHTUNER_MAX_NODES": ""}, 1), ({"SEARCHTUNER_MAX_NODES": " 4 "}, 4)],
)
def test_the_deployment_says_how_many_nodes_it_launches(env: dict[str, str], expected: int) -> None:
    assert max_nodes(env) == expected


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_a_bad_max_nodes_setting_says_what_to_set(value: str) -> None:
    with pytest.raises(ConfigError, match=rf"SEARCHTUNER_MAX_NODES='{value}' is not a positive"):
        max_nodes({"SEARCHTUNER_MAX_NODES": value})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a converter without CUDA")
def test_cuda_runs_are_checked_against_the_training_nodes_not_the_converter(store: Store) -> None:
    """On Kubernetes the converter runs on the CPU image and the trainer on GPU nodes: with
    SEARCHTUNER_GPUS_PER_NODE set, a CUDA run is checked against the training nodes' GPUs."""
    owner_store = store.for_owner(OWNER)
    request = mlp_request(upload(store, clusters(64)), device="cuda").model_copy(
        update={"processes_per_node": 2}
    )

    with pytest.raises(ConfigError, match=r"CUDA is not available here"):
        validate_request(request, owner_store)  # unset: runs train on this (CPU) machine
    assert validate_request(request, owner_store, gpus_per_node=2)["train_items"] == 64
    with pytest.raises(ConfigError, match=r"processes_per_node=2 asks for one GPU per process, "
                       r"but a training node has 1; use processes_per_node <= 1"):  # fmt: skip
        validate_request(request, owner_store, gpus_per_node=1)
    with pytest.raises(
        ConfigError, match=r"training nodes have no GPU \(SEARCHTUNER_GPUS_PER_NODE=0\)"
    ):
        validate_request(request, owner_store, gpus_per_node=0)
    single = request.model_copy(
        update={"processes_per_node": 1, "config": {**request.config, "device": "cuda:3"}}
    )
    with pytest.raises(ConfigError, match=r"a training node has 2 GPU\(s\).*'cuda:0'..'cuda:1'"):
        validate_request(single, owner_store, gpus_per_node=2)


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, None), ({"SEARCHTUNER_GPUS_PER_NODE": " 0"}, 0), ({"SEARCHTUNER_GPUS_PER_NODE": "8"}, 8)],
)
def test_the_deployment_says_how_many_gpus_a_training_node_has(
    env: dict[str, str], expected: int | None
) -> None:
    assert gpus_per_node(env) == expected
    with pytest.raises(ConfigError, match=r"SEARCHTUNER_GPUS_PER_NODE='-1' is not an integer >= 0"):
        gpus_per_node({"SEARCHTUNER_GPUS_PER_NODE": "-1"})


def test_several_processes_start_through_torchrun() -> None:
    worker = ["-m", "searchtuner.runs.worker", "--store", "file:///s", "--run", "r1"]
    assert torchrun_command(worker, 4, watch_pid=77) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4",
        "--max-restarts=0", "-m", "searchtuner.runs.worker", "--",
        "--store", "file:///s", "--run", "r1", "--watch-pid", "77",
    ]  # fmt: skip
