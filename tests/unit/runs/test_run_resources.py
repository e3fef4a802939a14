"""Process counts of a run: validated with messages that say what to change, and launched
through torchrun when there are several (the launch itself: tests/integration)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from searchtuner.errors import ConfigError
from searchtuner.runs import RunRegistry, RunRequest, RunState, RunSupervisor, validate_request
from searchtuner.runs.supervisor import torchrun_command
from searchtuner.service.schemas import FitRequest
from searchtuner.store import Store
from tests.unit.runs.helpers import OWNER, clusters, mlp_request, queue_run, upload, wait_for


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
    with pytest.raises(ConfigError, match=r"nnodes=2, but this service launches runs on at most 1"):
        validate_request(request, store.for_owner(OWNER))
    assert validate_request(request, store.for_owner(OWNER), max_nodes=2)["train_items"] == 64


def test_several_processes_start_through_torchrun() -> None:
    worker = ["-m", "searchtuner.runs.worker", "--store", "file:///s", "--run", "r1"]
    assert torchrun_command(worker, 4, watch_pid=77) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4",
        "--max-restarts=0", "-m", "searchtuner.runs.worker", "--",
        "--store", "file:///s", "--run", "r1", "--watch-pid", "77",
    ]  # fmt: skip


def test_a_multi_node_run_is_not_started_on_one_node(
    registry: RunRegistry, store: Store, tmp_path: Path
) -> None:
    request = mlp_request(upload(store, clusters(16))).model_copy(update={"nnodes": 2})
    run_id = queue_run(registry, request)
    supervisor = RunSupervisor(str(tmp_path / "store"), scratch_dir=tmp_path / "scratch",
                               poll_interval=0.05)  # fmt: skip
    try:
        supervisor.start()
        supervisor.submit(OWNER, run_id)
        wait_for("the run to end", lambda: registry.get(OWNER, run_id).is_terminal, timeout=10)
    finally:
        supervisor.stop(timeout=5)
    ended = registry.get(OWNER, run_id)
    assert ended.state is RunState.FAILED
    assert ended.reason is not None and ended.reason.startswith(
        "nnodes=2: this trainer service starts runs on its own node only"
    )
    assert not list((tmp_path / "scratch").glob(f"*/{run_id}/worker-*.log"))
