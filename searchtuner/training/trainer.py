"""The training loop: ``train(model, data, config=...)`` and the Trainer behind it."""

from __future__ import annotations

import contextlib
import inspect
import math
import pickle
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from searchtuner.data.readers import Source
from searchtuner.errors import ConfigError
from searchtuner.evaluation.evaluate import Evaluator
from searchtuner.evaluation.metrics import ComparisonReport, RetrievalResult, compare
from searchtuner.models.dual_encoder import DualEncoder
from searchtuner.models.embedding_model import EmbeddingModel
from searchtuner.training import distributed
from searchtuner.training.callbacks import (
    BestModel,
    Callback,
    EarlyStopping,
    Evaluation,
    Progress,
    TrainingCheckpoint,
    WiseFT,
)
from searchtuner.training.config import Precision, Scheduler, TrainConfig, optimizer_class
from searchtuner.training.samplers import RankShardSampler
from searchtuner.training.state import TrainState
from searchtuner.training.tasks import Batch, Task, bucketed_forward, make_task
from searchtuner.types import Modality

Model = EmbeddingModel | DualEncoder
CHECKPOINT_FORMAT = 1


@dataclass
class TrainResult:
    """What training produced: the tuned model and how the run went."""

    model: Model
    state: TrainState
    logs: list[dict[str, Any]]
    comparison: ComparisonReport | None = None
    """Before/after metrics and the queries whose results changed most (with eval data)."""

    @property
    def metrics_before(self) -> dict[str, float] | None:
        return self.state.metrics_before

    @property
    def metrics_after(self) -> dict[str, float] | None:
        return self.state.metrics_after

    @property
    def samples_per_second(self) -> float:
        return self.state.samples_per_second


def train(
    model: Model,
    train_data: Source,
    *,
    eval_data: Source | None = None,
    config: TrainConfig | dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    resume_from: str | Path | None = None,
) -> TrainResult:
    """Fine-tune ``model`` on ``train_data`` in this process, or data-parallel under torchrun.

    Started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), every process must call
    ``train`` with the same arguments: it joins the process group (and leaves it when
    training ends, if it joined it), trains on its shard of each global batch, and every
    process ends with the same trained model; only rank 0 prints progress and writes
    checkpoints.

    Args:
        model: an EmbeddingModel, or a DualEncoder for text–image pairs.
        train_data: labelled documents, query–document pairs, text–image pairs or
            unlabelled documents: a DocList, a list of documents or dicts, a CSV or JSONL path.
        eval_data: labelled documents or pairs to evaluate on before training and after each
            epoch (retrieval metrics, early stopping, best model).
        config: a TrainConfig or a dict of its fields; defaults work for beginners.
        callbacks: extra callbacks; progress printing is on unless you pass your own Progress.
        resume_from: a checkpoint written by a previous run with the same data and config
            (under torchrun, a path every process can read).

    Returns:
        The TrainResult; ``result.model`` is ``model``, trained in place.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    env = distributed.DistributedEnv.from_env()
    device = distributed.device_for(cfg.device, env.local_rank, env.world_size)
    joined = distributed.init_process_group(env, device)
    trainer = Trainer(
        model, train_data, eval_data=eval_data, config=cfg, callbacks=callbacks,
        rank=env.rank, world_size=env.world_size, local_rank=env.local_rank,
    )  # fmt: skip
    result = trainer.fit(resume_from=resume_from)
    if joined:  # not after an error: tearing down while others wait in a collective can hang
        distributed.teardown()
    return result


class Trainer:
    """Runs one training job, alone or as one process of a data-parallel run.

    With ``world_size > 1`` the process group must exist (torchrun +
    :func:`searchtuner.training.distributed.init_process_group`; :func:`train` does both),
    and every process builds its Trainer with the same model, data and config. What each
    process then does is described in :mod:`searchtuner.training.distributed`.

    Args:
        model: the model to train in place.
        train_data: training documents (see :func:`train`).
        eval_data: evaluation documents, or None.
        config: the training parameters.
        callbacks: extra callbacks, fired on every process (``trainer.is_main`` tells rank 0).
        rank: this process's rank, 0..world_size-1.
        world_size: processes training this run.
        local_rank: this process's rank on its node, which picks its GPU for
            ``device='cuda'`` (default: ``rank``; pass it when the run spans several nodes).

    Raises:
        ConfigError: a parameter that does not fit the data, the device or the process group.
    """

    def __init__(
        self,
        model: Model,
        train_data: Source,
        *,
        eval_data: Source | None = None,
        config: TrainConfig | None = None,
        callbacks: Sequence[Callback] = (),
        rank: int = 0,
        world_size: int = 1,
        local_rank: int | None = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.model = model
        self.rank, self.world_size = rank, world_size
        _check_process_group(rank, world_size)
        self.device = distributed.device_for(
            self.config.device, rank if local_rank is None else local_rank, world_size
        )
        self.precision = resolve_precision(self.config.precision, self.device)
        _seed_everything(self.config.seed)
        self.model.to(self.device)
        self._frozen_here = (
            self._freeze_token_embeddings() if self.config.freeze_token_embeddings else []
        )
        self.task: Task = make_task(model, train_data, self.config)
        self.task.device = self.device
        self.task.autocast = self._autocast
        self.task.loss_fn.to(self.device)
        self.sampler = self.task.batch_sampler()
        if world_size > 1:
            self.sampler = RankShardSampler(
                self.sampler, rank, world_size, self.task.shard_group_size
            )
            self.task.gather = distributed.all_gather
        if len(self.sampler) == 0:
            raise ConfigError(
                f"batch_size {self.config.batch_size} is larger than the training data allows "
                f"({self.task.n_items} items); lower batch_size"
            )
        accumulate = self.config.gradient_accumulation_steps
        self.steps_per_epoch = max(1, len(self.sampler) // accumulate)
        total = self.steps_per_epoch * self.config.epochs
        self.total_steps = min(total, self.config.max_steps or total)
        self.optimizer = self._optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self._step_module: nn.Module = _LossStep(model, self.task.loss_fn, self._task_loss)
        self._ddp = False
        if world_size > 1:
            # Every process starts from rank 0's weights (a projection head is random).
            distributed.sync_states(self.model)
            distributed.sync_states(self.task.loss_fn)
            if not self.task.own_backward:  # GradCache: gradients averaged after its backward
                self._step_module = distributed.data_parallel(self._step_module, self.device)
                self._ddp = True
        self.evaluator = (
            Evaluator(model, eval_data, k=self.config.eval_k) if eval_data is not None else None
        )
        self.state = TrainState(total_steps=self.total_steps)
        self.retrievals: list[RetrievalResult] = []  # first and latest evaluation, in full
        self.logs: list[dict[str, Any]] = []
        self.callbacks = self._default_callbacks(callbacks)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- set-up ----------------------------------------------------------------------------

    def _default_callbacks(self, extra: Sequence[Callback]) -> list[Callback]:
        cfg = self.config
        found: list[Callback] = []
        if self.evaluator is not None:
            found.append(Evaluation(cfg.eval_every_steps))
            found.append(BestModel(cfg.metric_name, restore=cfg.restore_best))
            if cfg.early_stopping_patience:
                found.append(EarlyStopping(cfg.metric_name, cfg.early_stopping_patience))
        elif cfg.early_stopping_patience:
            raise ConfigError("early_stopping_patience needs eval_data to watch a metric")
        if cfg.checkpoint_every_steps:
            if not cfg.checkpoint_dir:
                raise ConfigError("checkpoint_every_steps needs checkpoint_dir")
            found.append(TrainingCheckpoint(cfg.checkpoint_dir, cfg.checkpoint_every_steps))
        if cfg.wise_ft_alpha is not None:
            found.append(WiseFT(cfg.wise_ft_alpha))
        if not any(isinstance(c, Progress) for c in extra):
            found.append(Progress())
        return [*found, *extra]

    def _freeze_token_embeddings(self) -> list[nn.Parameter]:
        """Fix the token-embedding tables of text towers for this run; returns what it froze."""
        towers = [self.model.text] if isinstance(self.model, DualEncoder) else [self.model]
        frozen = []
        for tower in towers:
            inner: Any = getattr(tower.backbone, "model", None)
            if tower.modality is not Modality.TEXT or not hasattr(inner, "get_input_embeddings"):
                continue
            weight = inner.get_input_embeddings().weight
            if weight.requires_grad:
                weight.requires_grad_(False)
                frozen.append(weight)
        return frozen

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        head_lr = cfg.head_learning_rate or cfg.learning_rate * 10
        groups: dict[str, list[nn.Parameter]] = {"decay": [], "no_decay": [], "head": []}
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            if ".backbone." not in f".{name}":
                groups["head"].append(param)
            elif param.ndim <= 1:  # biases and norm weights: no weight decay
                groups["no_decay"].append(param)
            else:
                groups["decay"].append(param)
        param_groups: list[dict[str, Any]] = [
            {"params": groups["decay"], "lr": cfg.learning_rate, "weight_decay": cfg.weight_decay},
            {"params": groups["no_decay"], "lr": cfg.learning_rate, "weight_decay": 0.0},
            {"params": groups["head"], "lr": head_lr, "weight_decay": cfg.weight_decay},
        ]
        loss_params = [p for p in self.task.loss_fn.parameters() if p.requires_grad]
        if loss_params:  # ArcFace's class centres, CLIP's temperature, …
            param_groups.append({"params": loss_params, "lr": cfg.loss_learning_rate or 1e-3,
                                 "weight_decay": 0.0})  # fmt: skip
        param_groups = [g for g in param_groups if g["params"]]
        if not param_groups:
            raise ConfigError("nothing to train: every parameter is frozen")
        cls = optimizer_class(cfg.optimizer)
        options = dict(cfg.optimizer_options)
        if (
            not {"fused", "foreach"} & options.keys()
            and "fused" in inspect.signature(cls).parameters
        ):
            # One fused kernel per step instead of a dozen ops per tensor: Adam(W)'s update
            # on MiniLM drops from ~110 ms to ~20 ms on two CPU cores.
            options["fused"] = True
        try:
            optimizer: torch.optim.Optimizer = cls(param_groups, **options)
            return optimizer
        except (TypeError, ValueError, RuntimeError) as err:
            raise ConfigError(f"optimizer {cfg.optimizer} rejects its options: {err}") from err

    def _lr_factor(self, step: int) -> float:
        warmup = int(self.config.warmup_ratio * self.total_steps)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if self.config.scheduler is Scheduler.CONSTANT:
            return 1.0
        progress = (step - warmup) / max(1, self.total_steps - warmup)
        if self.config.scheduler is Scheduler.LINEAR:
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    # -- the loop --------------------------------------------------------------------------

    def fire(self, hook: str, *args: Any) -> None:
        """Call ``hook`` on every callback, in order."""
        for callback in self.callbacks:
            getattr(callback, hook)(self, self.state, *args)

    def log(self, record: dict[str, Any]) -> None:
        """Keep a log record and hand it to the callbacks (progress, events)."""
        record = {"time": time.time(), **record}
        self.logs.append(record)
        self.fire("on_log", record)

    def fit(self, resume_from: str | Path | None = None) -> TrainResult:
        """Train until the planned steps are done or a callback stops it."""
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        state, cfg = self.state, self.config
        try:
            self.fire("on_fit_begin")
            while state.epoch < cfg.epochs and not self._done():
                self._run_epoch()
                if state.should_stop:
                    break
            self.fire("on_fit_end")
            comparison = None
            if self.evaluator is not None:
                state.metrics_after = self.evaluate(log=False)
                comparison = self._comparison()
            self.log({"event": "finished", "step": state.global_step,
                      "metrics_before": state.metrics_before,
                      "metrics_after": state.metrics_after})  # fmt: skip
        except BaseException as error:
            self.fire("on_exception", error)
            raise
        finally:
            for param in self._frozen_here:  # the model leaves as it came in
                param.requires_grad_(True)
        return TrainResult(self.model, state, self.logs, comparison)

    def _comparison(self) -> ComparisonReport | None:
        if self.evaluator is None or len(self.retrievals) < 2:
            return None
        queries, index = self.evaluator.queries, self.evaluator.index_items
        return compare(
            self.retrievals[0], self.retrievals[-1],
            query_texts=queries if all(isinstance(t, str) for t in queries) else None,
            index_texts=index if all(isinstance(t, str) for t in index) else None,
        )  # fmt: skip

    def _done(self) -> bool:
        return self.state.global_step >= self.total_steps or self.state.should_stop

    def _run_epoch(self) -> None:
        state, cfg = self.state, self.config
        self.sampler.set_epoch(state.epoch)
        self.fire("on_epoch_begin")
        self.model.train()
        accumulate = cfg.gradient_accumulation_steps
        # The loss stays on the device until a log record needs it: reading it every step
        # would wait for the GPU each time.
        loss_sum, n_losses = torch.zeros((), device=self.device), 0
        for batch in self._batches(state.batch_in_epoch):
            if state.batch_in_epoch % accumulate == 0:
                self.fire("on_train_batch_begin")
                started = time.perf_counter()
            self._seed_batch(state.epoch, state.batch_in_epoch)
            last = (state.batch_in_epoch + 1) % accumulate == 0
            loss_sum += self._forward_backward(batch, 1.0 / accumulate, sync=last)
            n_losses += 1
            state.batch_in_epoch += 1
            state.samples_seen += batch.size * self.world_size
            if state.batch_in_epoch % accumulate:
                continue
            self._optimizer_step()
            state.train_seconds += time.perf_counter() - started
            if (
                state.global_step % cfg.log_every_steps == 0
                or state.global_step == self.total_steps
            ):
                self._log_progress(loss_sum, n_losses)
                loss_sum, n_losses = torch.zeros((), device=self.device), 0
            self.fire("on_train_batch_end")
            if self._done():
                break
        else:  # the epoch ran out of batches
            state.epoch += 1
            state.batch_in_epoch = 0
            self.fire("on_epoch_end")
            return
        if state.global_step >= self.total_steps:
            # Stopped by max_steps inside the epoch: still the end of training.
            self.fire("on_epoch_end")

    def _batches(self, start: int) -> Iterator[Batch]:
        """This epoch's batches from position ``start``, collated. Only whole optimizer steps:
        micro-batches left over after the last full accumulation are not run (their gradient
        would leak into the next epoch's first step)."""
        stop = self.steps_per_epoch * self.config.gradient_accumulation_steps
        indices = list(self.sampler.iter_from(start))[: max(0, stop - start)]
        if self.config.num_workers == 0:
            yield from (self.task.collate(batch) for batch in indices)
            return
        loader = torch.utils.data.DataLoader(
            _Batches(self.task, indices), batch_size=None, shuffle=False,
            num_workers=self.config.num_workers, persistent_workers=False,
            pin_memory=self.device.type == "cuda",
            # A generator of its own: creating the loader must not consume the global RNG,
            # or a resumed run would draw different dropout masks.
            generator=torch.Generator().manual_seed(self.config.seed),
        )  # fmt: skip
        yield from loader

    def _seed_batch(self, epoch: int, batch: int) -> None:
        """Seed dropout and other draws of this micro-batch from its position alone.

        Each process draws its own numbers, and a resumed run (by any process) draws the
        same ones as an uninterrupted run, with no random state saved per process.
        """
        entropy = [self.config.seed, self.rank, epoch, batch]
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])
        torch.default_generator.manual_seed(seed)
        # A seeded augmentation (self-supervised images) has a generator of its own, used in
        # this process when the loss makes the views: seed it the same way (another stream).
        generator = getattr(getattr(self.task, "augment", None), "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(seed ^ 0x5EED)
        if self.device.type == "cuda":
            with torch.cuda.device(self.device):
                torch.cuda.manual_seed(seed)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The mixed-precision context of model calls (bf16 autocast, or nothing)."""
        if self.precision is not Precision.BF16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _forward_backward(self, batch: Batch, scale: float, sync: bool = True) -> Tensor:
        """Add the batch's gradient into the parameters; returns the detached loss.

        ``sync=False`` (a micro-batch before the last of an accumulation window) keeps DDP
        from averaging gradients that are not complete yet.
        """
        handled = self.task.step_with_backward(batch, scale)
        if handled is not None:
            return handled.detach()
        no_sync: Any = getattr(self._step_module, "no_sync", None)
        with contextlib.nullcontext() if sync or no_sync is None else no_sync():
            loss: Tensor = self._step_module(batch)
            (loss * scale).backward()
        return loss.detach()

    def _task_loss(self, batch: Batch) -> Tensor:
        return self.task.loss(self._embed, batch)

    def _embed(self, modality: Modality, prepared: list[Any]) -> Tensor:
        tower = self.model.tower(modality) if isinstance(self.model, DualEncoder) else self.model
        with self._autocast():
            return bucketed_forward(tower, prepared, self.config.length_bucket_size, self.device)

    def _optimizer_step(self) -> None:
        if self.world_size > 1 and not self._ddp:
            distributed.all_reduce_gradients(
                p for g in self.optimizer.param_groups for p in g["params"]
            )
        if self.config.max_grad_norm is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.global_step += 1
        self.state.learning_rate = float(self.optimizer.param_groups[0]["lr"])

    def _log_progress(self, loss_sum: Tensor, n_losses: int) -> None:
        state = self.state
        state.loss = float(loss_sum) / n_losses if n_losses else math.nan
        if n_losses and not math.isfinite(state.loss):
            raise FloatingPointError(
                f"the loss became {state.loss} by step {state.global_step}; lower "
                "learning_rate or check the data for extreme values"
            )
        rate = state.samples_per_second
        steps_left = self.total_steps - state.global_step
        per_step = state.train_seconds / max(1, state.global_step)
        self.log({
            "event": "progress", "epoch": state.epoch, "step": state.global_step,
            "total_steps": self.total_steps, "loss": state.loss,
            "learning_rate": state.learning_rate, "samples_per_second": rate,
            "eta_seconds": steps_left * per_step,
        })  # fmt: skip

    def evaluate(self, log: bool = True) -> dict[str, float]:
        """Score the current model on the eval data (retrieval metrics)."""
        if self.evaluator is None:
            raise ConfigError("no eval_data was given")
        result = self.evaluator.run(self.model)
        self.retrievals[1:] = [result]  # keep the first (before training) and the latest
        # Every process evaluates the same weights; rank 0's figures decide for all of them
        # (early stopping, best model), so no process can leave the loop alone.
        metrics = distributed.broadcast_object(result.metrics)
        self.model.train()
        if log:
            self.log({"event": "evaluation", "step": self.state.global_step, "metrics": metrics})
        return metrics

    # -- checkpoints -----------------------------------------------------------------------

    def save_checkpoint(self, path: str | Path) -> Path:
        """Everything a resumed run needs to continue exactly: weights, optimizer, RNGs, …

        In data-parallel training only rank 0 writes (every process holds the same state);
        the others return ``path`` without writing.

        Raises:
            FloatingPointError: the weights are no longer finite (nothing is written).
        """
        path = Path(path)
        if not self.is_main:
            return path
        finite = torch.stack([torch.isfinite(p).all() for p in self.model.parameters()])
        if not bool(finite.all()):
            raise FloatingPointError(
                f"the weights are not finite at step {self.state.global_step}; lower "
                "learning_rate or check the data for extreme values"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "model": self.model.state_dict(),
            "loss": self.task.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": self.state.to_dict(),
            "callbacks": [c.state_dict() for c in self.callbacks],
            "rng": _rng_state(),
        }
        partial = path.with_suffix(path.suffix + ".partial")
        torch.save(payload, partial)
        partial.replace(path)  # atomic: a reader never sees half a checkpoint
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` (no pickled code runs).

        In data-parallel training every process loads the same checkpoint, which may come
        from a run with another number of processes (the batch sequence is the same).
        """
        try:
            payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            # UnpicklingError: not a torch file at all (a truncated or foreign object).
            raise ConfigError(f"cannot read checkpoint {path}: {err}") from err
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(
                f"{path} is not a SearchTuner checkpoint of format {CHECKPOINT_FORMAT}"
            )
        self.model.load_state_dict(payload["model"])
        self.task.loss_fn.load_state_dict(payload["loss"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.state.load_dict(
            {k: v for k, v in payload["state"].items() if k != "samples_per_second"}
        )
        for callback, saved in zip(self.callbacks, payload["callbacks"], strict=False):
            callback.load_state_dict(saved)
        _set_rng_state(payload["rng"])
        self.log({"event": "resumed", "step": self.state.global_step, "checkpoint": str(path)})


class _LossStep(nn.Module):
    """The model and the loss as one module, so DDP sees one forward pass per batch.

    A batch embeds through the model several times (two sides, length buckets); called
    through DDP as one forward, its parameters are reduced once per backward.
    """

    def __init__(
        self, model: nn.Module, loss_fn: nn.Module, loss: Callable[[Batch], Tensor]
    ) -> None:
        super().__init__()
        self.model, self.loss_fn, self._loss = model, loss_fn, loss

    def forward(self, batch: Batch) -> Tensor:
        return self._loss(batch)


def resolve_precision(precision: Precision, device: torch.device) -> Precision:
    """``auto`` → bf16 on a CUDA GPU that supports it, else fp32; other values as they are."""
    if precision is not Precision.AUTO:
        return precision
    # Native bf16 only (compute capability 8.0+): emulated bf16 is slower than fp32.
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return Precision.BF16
    return Precision.FP32


def _check_process_group(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} does not fit world_size {world_size}")
    if world_size == 1:
        return
    if distributed.world_size() != world_size or distributed.rank() != rank:
        raise ConfigError(
            f"rank {rank} of {world_size} needs a process group of {world_size} processes: "
            "start them with torchrun and call searchtuner.train (which joins the group), or "
            "searchtuner.training.distributed.init_process_group before building the Trainer"
        )


class _Batches(torch.utils.data.Dataset[Batch]):
    def __init__(self, task: Task, batches: list[list[int]]) -> None:
        self.task, self.batches = task, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Batch:
        return self.task.collate(self.batches[i])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    numpy_state: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(numpy_state[1].astype(np.int64)),
        "numpy_pos": int(numpy_state[2]),
        "python": [int(x) for x in random.getstate()[1]],
    }
    # Training draws are seeded per micro-batch (Trainer._seed_batch), on every device and
    # process; these states are kept so that checkpoints keep their format.
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    keys = state["numpy"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
