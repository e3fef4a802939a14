"""Training scenarios run by torchrun for the data-parallel tests, and by one process for
the reference they are compared with.

Under torchrun: ``python -m torch.distributed.run ... distributed_script.py OUT --bert ...``.
Every process trains each scenario; rank 0 writes ``OUT/<scenario>.json`` (losses per step,
the process group's shape) and ``OUT/<scenario>.pt`` (the trained weights), and each process
writes ``OUT/rank<N>.json``: where torchrun placed it and a digest of its weights per
scenario, so the test can check that every process ends with the same model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

import searchtuner
from searchtuner.data import LabeledDoc, PairDoc
from searchtuner.training import (
    Callback,
    Progress,
    TrainConfig,
    Trainer,
    TrainState,
    distributed,
    train,
)

QUIET = [Progress(lambda record: None)]
WORDS = [
    *("red", "green", "blue", "cat", "dog", "fish", "oak", "pine", "rose", "lake", "hill"),
    *("road", "bread", "milk", "rice", "iron", "gold", "salt", "wind", "rain", "snow", "star"),
]
SCENARIOS = ("labels", "accumulate", "pairs", "cached_pairs", "resume")


def clusters() -> list[LabeledDoc]:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    vectors = centres[np.arange(64) % 4] + rng.normal(size=(64, 16))
    return [
        LabeledDoc(tensor=vector.astype(np.float32), label=f"c{i % 4}")
        for i, vector in enumerate(vectors)
    ]


def pairs() -> list[PairDoc]:
    """32 pairs; documents of 3 to 6 words, so shards differ in length (and in the random
    numbers their dropout draws)."""
    rng = np.random.default_rng(2)
    found = []
    for i in range(32):
        words = list(rng.choice(WORDS, 2 + i % 4, replace=False))
        found.append(PairDoc(query=f"{words[0]} {words[1]}", document=" ".join(words) + f" {i}"))
    return found


def setup(
    name: str, bert: Path, bert_dropout: Path, device: str = "cpu", precision: str = "auto"
) -> tuple[Any, list[Any], TrainConfig]:
    """The model, data and config of one scenario (the same in every process)."""
    torch.manual_seed(0)
    common: dict[str, Any] = {"warmup_ratio": 0.0, "log_every_steps": 1, "device": device,
                              "precision": precision}  # fmt: skip
    # Plain SGD without clipping: a gradient off by a constant factor (a gather that does not
    # make up for DDP's average) changes every step. AdamW would hide it: its steps do not
    # depend on the scale of the gradient.
    sgd: dict[str, Any] = {"optimizer": "SGD", "max_grad_norm": None}
    if name == "labels":  # 3 epochs of 4 batches, evaluated after each
        model = searchtuner.build_model("mlp", input_dim=16, hidden_dims=[32], output_dim=8)
        config = TrainConfig(**common, **sgd, learning_rate=0.05, epochs=3, batch_size=16,
                             samples_per_label=4, miner="all")  # fmt: skip
        return model, clusters(), config
    if name == "accumulate":  # 3 epochs of 8 batches of 8 (one label per process), 2 a step
        model = searchtuner.build_model("mlp", input_dim=16, hidden_dims=[32], output_dim=8)
        config = TrainConfig(**common, **sgd, learning_rate=0.05, epochs=3, batch_size=8,
                             samples_per_label=4, gradient_accumulation_steps=2)  # fmt: skip
        return model, clusters(), config
    common.update(epochs=2, batch_size=8, max_steps=6)  # 6 steps of 8 pairs
    if name == "pairs":
        config = TrainConfig(**common, **sgd, learning_rate=5e-3)
        return searchtuner.build_model(bert), pairs(), config
    if name == "cached_pairs":
        config = TrainConfig(**common, **sgd, learning_rate=5e-3,
                             loss="CachedMultipleNegativesRankingLoss",
                             loss_options={"mini_batch_size": 3})  # fmt: skip
        return searchtuner.build_model(bert), pairs(), config
    if name == "resume":  # AdamW, whose state must resume too; dropout on; 4 steps
        config = TrainConfig(**{**common, "max_steps": 4}, learning_rate=1e-3)
        return searchtuner.build_model(bert_dropout), pairs(), config
    raise ValueError(name)


def tiny_berts(folder: Path, tokenizer_dir: Path) -> tuple[Path, Path]:
    """Two 2-layer random BERTs: without dropout (runs comparable bit for bit), and with."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    found = []
    for name, dropout in (("bert", 0.0), ("bert-dropout", 0.1)):
        config = BertConfig(
            vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
        )  # fmt: skip
        torch.manual_seed(0)
        BertModel(config).save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
        found.append(folder / name)
    return found[0], found[1]


def losses(logs: list[dict[str, Any]]) -> list[float]:
    return [r["loss"] for r in logs if r["event"] == "progress"]


def digest(model: torch.nn.Module) -> str:
    sha = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        sha.update(key.encode())
        sha.update(value.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


class _StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Trainer, state: TrainState) -> None:
        if state.global_step == self.step:
            raise RuntimeError("stopped")


def _resume_run(bert: Path, bert_dropout: Path, folder: Path, **options: str) -> dict[str, Any]:
    """Train 4 steps straight; then 2 steps, stop, and resume from the step-2 checkpoint."""
    model, docs, config = setup("resume", bert, bert_dropout, **options)
    straight = train(model, docs, config=config, callbacks=QUIET)
    model, docs, config = setup("resume", bert, bert_dropout, **options)
    config = config.model_copy(update={"checkpoint_dir": str(folder), "checkpoint_every_steps": 2})
    try:
        train(model, docs, config=config, callbacks=[*QUIET, _StopAt(2)])
    except RuntimeError as err:
        if str(err) != "stopped":
            raise
    distributed.barrier()  # rank 0 has written the checkpoint
    torch.manual_seed(1234)  # a resumed process starts from other random state
    model, docs, config = setup("resume", bert, bert_dropout, **options)
    trainer = Trainer(model, docs, config=config, callbacks=QUIET, rank=distributed.rank(),
                      world_size=distributed.world_size())  # fmt: skip
    resumed = trainer.fit(resume_from=folder / "step-00000002.pt")
    trainer.save_checkpoint(folder / f"final-rank{distributed.rank()}.pt")  # rank 0 writes
    return {
        "losses": losses(straight.logs),
        "resumed_losses": losses(resumed.logs),
        "same_weights": digest(straight.model) == digest(resumed.model),
        "model": resumed.model,
    }


def run(name: str, bert: Path, bert_dropout: Path, out: Path, **options: str) -> dict[str, Any]:
    """One scenario in this process (alone, or as one rank): losses and the trained model."""
    if name == "resume":
        return _resume_run(bert, bert_dropout, out / "checkpoints", **options)
    model, docs, config = setup(name, bert, bert_dropout, **options)
    evaluation = docs if name == "labels" else None
    trainer = Trainer(model, docs, eval_data=evaluation, config=config, callbacks=QUIET,
                      rank=distributed.rank(), world_size=distributed.world_size(),
                      local_rank=distributed.DistributedEnv.from_env().local_rank)  # fmt: skip
    result = trainer.fit()
    return {
        "losses": losses(result.logs),
        "model": result.model,
        "precision": trainer.precision.value,
        "evaluations": result.state.evaluations,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--bert", type=Path, required=True, help="tiny BERT without dropout")
    parser.add_argument("--bert-dropout", type=Path, required=True, help="tiny BERT, dropout")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    args = parser.parse_args(argv)
    env = distributed.DistributedEnv.from_env()
    device = distributed.device_for(args.device, env.local_rank, env.world_size)
    distributed.init_process_group(env, device)  # kept across scenarios; train() reuses it
    backend = torch.distributed.get_backend() if env.is_distributed else None
    me: dict[str, Any] = {"node": os.environ.get("GROUP_RANK"), "env": asdict(env), "digests": {}}
    for name in args.scenario or SCENARIOS:
        found = run(name, args.bert, args.bert_dropout, args.out, device=args.device,
                    precision=args.precision)  # fmt: skip
        model = found.pop("model")
        me["digests"][name] = digest(model)
        if env.is_main:
            torch.save({k: v.cpu() for k, v in model.state_dict().items()},
                       args.out / f"{name}.pt")  # fmt: skip
            record = {**found, "world_size": env.world_size, "backend": backend,
                      "device": str(device)}  # fmt: skip
            (args.out / f"{name}.json").write_text(json.dumps(record))
    (args.out / f"rank{env.rank}.json").write_text(json.dumps(me))
    distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1:])
