"""Data-parallel training with real torchrun processes on 127.0.0.1 (gloo on the CPU).

Two processes share every global batch: each embeds its shard, gathers the others', and
computes the loss of the whole batch, with DDP averaging gradients. So they must follow
the loss curve of one process with the same global batch to float precision — not merely
"about as well": without the gather the first loss already differs (half the negatives),
and with wrongly scaled gradients the curves part from the second step on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.integration.distributed_script import run, tiny_berts
from tests.integration.torchrun_launch import finish, free_port, script_args, start, torchrun

pytestmark = pytest.mark.integration

LOSS_TOLERANCE = {"rel": 1e-4, "abs": 1e-6}
"""Float32 rounding differs between a batch and its shards (~1e-6 measured over 12 steps)."""


@pytest.fixture(scope="module")
def berts(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> tuple[Path, Path]:
    return tiny_berts(tmp_path_factory.mktemp("berts"), minilm_dir)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory, berts: tuple[Path, Path]) -> Path:
    """Two torchrun agents, one process each, meeting through a c10d rendezvous on
    127.0.0.1 as two nodes would; they train every scenario. Returns their output folder."""
    out = tmp_path_factory.mktemp("two-nodes")
    node = torchrun(
        "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", "--rdzv-id=two-nodes",
        f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--local-addr=127.0.0.1",
    )  # fmt: skip
    command = node + script_args(out, berts)
    finish([start(command), start(command)])
    return out


def _reference(name: str, berts: tuple[Path, Path], tmp_path: Path) -> dict[str, Any]:
    return run(name, *berts, tmp_path)  # one process, the whole batch: no process group


def _ranks(out: Path) -> list[dict[str, Any]]:
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


def _same_on_every_rank(out: Path, name: str) -> None:
    digests = {found["digests"][name] for found in _ranks(out)}
    assert len(digests) == 1, f"{name}: the processes ended with different weights"


def test_the_processes_ran_as_two_nodes(two_nodes: Path) -> None:
    ranks = _ranks(two_nodes)
    assert [r["env"]["rank"] for r in ranks] == [0, 1]
    assert {r["node"] for r in ranks} == {"0", "1"}  # one agent (node) each
    assert all(r["env"]["local_world_size"] == 1 for r in ranks)
    found = json.loads((two_nodes / "labels.json").read_text())
    assert (found["world_size"], found["backend"], found["device"]) == (2, "gloo", "cpu")


@pytest.mark.parametrize(
    "name",
    [
        "labels",  # class-balanced shards, gathered embeddings and labels, mined triplets
        "accumulate",  # the same with gradient accumulation (DDP's no_sync)
        "pairs",  # in-batch negatives from both processes (MultipleNegativesRanking)
        "cached_pairs",  # GradCache: its own backward passes, gradients all-reduced
    ],
)
def test_two_processes_follow_the_loss_curve_of_one_with_the_same_global_batch(
    two_nodes: Path, berts: tuple[Path, Path], tmp_path: Path, name: str
) -> None:
    reference = _reference(name, berts, tmp_path)
    assert len(reference["losses"]) >= 6
    found = json.loads((two_nodes / f"{name}.json").read_text())
    assert found["losses"] == pytest.approx(reference["losses"], **LOSS_TOLERANCE)
    # Evaluated on every process, decided by rank 0's figures (labels: after each epoch).
    assert len(found["evaluations"]) == (3 if name == "labels" else 0)
    for mine, theirs in zip(found["evaluations"], reference["evaluations"], strict=True):
        assert mine["metrics"] == pytest.approx(theirs["metrics"], **LOSS_TOLERANCE)
    weights = torch.load(two_nodes / f"{name}.pt", weights_only=True)
    for key, value in reference["model"].state_dict().items():
        torch.testing.assert_close(weights[key], value.cpu(), rtol=1e-4, atol=1e-5, msg=key)
    _same_on_every_rank(two_nodes, name)


def test_a_data_parallel_run_resumes_exactly(two_nodes: Path) -> None:
    # 4 steps straight, against 2 steps + a stop + 2 steps resumed from rank 0's checkpoint,
    # with dropout on: each process draws its own masks, seeded by its rank and the batch.
    found = json.loads((two_nodes / "resume.json").read_text())
    assert found["same_weights"]
    assert found["resumed_losses"] == found["losses"][2:]
    _same_on_every_rank(two_nodes, "resume")
    # Every process called save_checkpoint at the end; only rank 0 wrote.
    assert sorted(p.name for p in (two_nodes / "checkpoints").iterdir()) == [
        "final-rank0.pt", "step-00000002.pt",
    ]  # fmt: skip
