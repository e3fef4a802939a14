"""The pieces of data-parallel training that need no process group: torchrun's environment,
how a global batch splits over processes, and what the trainer refuses. Real processes:
tests/integration/test_distributed_training.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

import searchtuner
from searchtuner.data import LabeledDoc
from searchtuner.errors import ConfigError
from searchtuner.training import Precision, Progress, TrainConfig, Trainer
from searchtuner.training.distributed import DistributedEnv, all_gather, split_batch
from searchtuner.training.samplers import (
    ClassBalancedBatchSampler,
    NoDuplicatesBatchSampler,
    RandomBatchSampler,
    RankShardSampler,
)
from searchtuner.training.trainer import resolve_precision

QUIET = [Progress(lambda record: None)]
LABELS = [i % 6 for i in range(60)]


def test_torchrun_environment_is_read_and_checked() -> None:
    assert DistributedEnv.from_env({}) == DistributedEnv(0, 1, 0, 1)
    env = DistributedEnv.from_env(
        {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    )
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (3, 4, 1, 2)
    assert env.is_distributed and not env.is_main
    with pytest.raises(ConfigError, match=r"RANK=4 does not fit WORLD_SIZE=4"):
        DistributedEnv.from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ConfigError, match=r"WORLD_SIZE='two' is not a whole number"):
        DistributedEnv.from_env({"WORLD_SIZE": "two"})


def test_a_global_batch_splits_evenly_or_says_which_sizes_do() -> None:
    assert split_batch(32, 4) == 8
    assert split_batch(32, 2, group_size=4) == 16
    with pytest.raises(
        ConfigError, match=r"batch_size=30 .* over 4 processes; use batch_size 28 or 32"
    ):
        split_batch(30, 4)
    with pytest.raises(
        ConfigError, match=r"whole groups of samples_per_label=4; use batch_size 8 or 16"
    ):
        split_batch(12, 2, group_size=4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ClassBalancedBatchSampler(LABELS, 12, 2, seed=3),
        lambda: NoDuplicatesBatchSampler([(i % 17, i) for i in range(60)], 12, seed=3),
        lambda: RandomBatchSampler(60, 12, seed=3),
    ],
)
def test_the_shards_of_all_ranks_are_the_batches_of_one_process(make: object) -> None:
    one = make()  # type: ignore[operator]
    for epoch in (0, 1):
        one.set_epoch(epoch)
        expected = list(one)
        shards = []
        for rank in range(3):
            sampler = RankShardSampler(make(), rank, 3)  # type: ignore[operator]
            sampler.set_epoch(epoch)
            assert len(sampler) == len(one)
            shards.append(list(sampler))
            assert list(sampler.iter_from(2)) == shards[-1][2:]  # resuming mid-epoch
        assert [a + b + c for a, b, c in zip(*shards, strict=True)] == expected


def test_class_balanced_shards_hold_whole_label_groups() -> None:
    labels = np.array(LABELS)
    for rank in range(2):
        sampler = RankShardSampler(ClassBalancedBatchSampler(LABELS, 12, 3), rank, 2, 3)
        for shard in sampler:
            assert len(shard) == 6
            assert set(Counter(labels[shard].tolist()).values()) == {3}  # 2 labels × 3 items


def test_shards_that_would_split_a_label_group_are_refused() -> None:
    # 4 labels × 3 items cannot go to 3 processes in whole groups of 3.
    with pytest.raises(ConfigError, match=r"batch_size=12 .* over 3 processes in whole groups"):
        RankShardSampler(ClassBalancedBatchSampler(LABELS, 12, 3), 0, 3, 3)
    with pytest.raises(ConfigError, match="built with world_size=1"):
        RankShardSampler(RandomBatchSampler(60, 12, rank=1, world_size=2), 0, 2)
    with pytest.raises(ConfigError, match="complete batches"):
        RankShardSampler(RandomBatchSampler(60, 12, drop_last=False), 0, 2)


def _docs() -> list[LabeledDoc]:
    rng = np.random.default_rng(0)
    return [LabeledDoc(tensor=rng.normal(size=8).astype(np.float32), label=f"c{i % 4}")
            for i in range(32)]  # fmt: skip


def test_a_trainer_of_several_processes_needs_their_process_group() -> None:
    model = searchtuner.build_model("mlp", input_dim=8, hidden_dims=[8])
    with pytest.raises(ConfigError, match=r"rank 1 of 2 needs a process group of 2 processes"):
        Trainer(model, _docs(), config=TrainConfig(batch_size=8), rank=1, world_size=2)
    with pytest.raises(ConfigError, match=r"rank 2 does not fit world_size 2"):
        Trainer(model, _docs(), config=TrainConfig(batch_size=8), rank=2, world_size=2)


def test_without_a_process_group_gathering_is_the_identity() -> None:
    tensor = torch.ones(3, 2, requires_grad=True)
    assert all_gather(tensor) is tensor


def test_a_file_that_is_no_checkpoint_is_a_config_error(tmp_path: Path) -> None:
    trainer = Trainer(searchtuner.build_model("mlp", input_dim=8, hidden_dims=[8]), _docs(),
                      config=TrainConfig(batch_size=8), callbacks=QUIET)  # fmt: skip
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save(torch.zeros(2), tmp_path / "tensor.pt")
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        trainer.load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ConfigError, match="is not a SearchTuner checkpoint"):
        trainer.load_checkpoint(tmp_path / "tensor.pt")


def test_precision_auto_is_bf16_on_cuda_only() -> None:
    assert TrainConfig().precision is Precision.AUTO
    assert resolve_precision(Precision.AUTO, torch.device("cpu")) is Precision.FP32
    assert resolve_precision(Precision.FP32, torch.device("cuda")) is Precision.FP32


def test_a_non_finite_loss_fails_at_the_next_log_record() -> None:
    docs = _docs()
    docs[0] = LabeledDoc(tensor=np.full(8, np.inf, dtype=np.float32), label="c0")
    config = TrainConfig(batch_size=8, epochs=2, log_every_steps=3)
    trainer = Trainer(searchtuner.build_model("mlp", input_dim=8, hidden_dims=[8]), docs,
                      config=config, callbacks=QUIET)  # fmt: skip
    with pytest.raises(FloatingPointError, match=r"the loss became nan by step \d+; lower"):
        trainer.fit()
    # Read at the log record after the bad batch (every 3 steps), not at every step.
    assert trainer.state.global_step in (3, 6) and trainer.total_steps == 8
