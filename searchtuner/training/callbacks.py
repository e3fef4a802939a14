"""Callbacks: evaluation, early stopping, best model, checkpoints, progress, WiSE-FT.

The training loop only fires named hooks; everything else that happens during training is a
callback. A callback that holds state across a checkpoint implements ``state_dict`` and
``load_state_dict`` so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from searchtuner.errors import ConfigError

if TYPE_CHECKING:
    from searchtuner.training.state import TrainState
    from searchtuner.training.trainer import Trainer


class Callback:
    """Base class: override the hooks you need. ``trainer`` gives access to the model."""

    def on_fit_begin(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_epoch_begin(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_train_batch_begin(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_train_batch_end(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_evaluate(
        self, trainer: Trainer, state: TrainState, metrics: dict[str, float]
    ) -> None: ...
    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_log(self, trainer: Trainer, state: TrainState, record: dict[str, Any]) -> None: ...
    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None: ...
    def on_exception(self, trainer: Trainer, state: TrainState, error: BaseException) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class Evaluation(Callback):
    """Evaluates before training, after every epoch and, optionally, every N steps."""

    def __init__(self, every_steps: int | None = None) -> None:
        self.every_steps = every_steps
        self._last_step: int | None = None

    def _run(self, trainer: Trainer, state: TrainState) -> None:
        if self._last_step == state.global_step:
            return
        self._last_step = state.global_step
        metrics = trainer.evaluate()
        state.evaluations.append(
            {"step": state.global_step, "epoch": state.epoch, "metrics": metrics}
        )
        trainer.fire("on_evaluate", metrics)

    def on_fit_begin(self, trainer: Trainer, state: TrainState) -> None:
        if state.metrics_before is None:
            state.metrics_before = trainer.evaluate()
            self._last_step = state.global_step
            trainer.fire("on_evaluate", state.metrics_before)

    def on_train_batch_end(self, trainer: Trainer, state: TrainState) -> None:
        if self.every_steps and state.global_step % self.every_steps == 0:
            self._run(trainer, state)

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        self._run(trainer, state)

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._last_step = state.get("last_step")


def _improved(value: float, best: float | None, min_delta: float) -> bool:
    return best is None or value > best + min_delta


class EarlyStopping(Callback):
    """Stops when the monitored metric has not improved for ``patience`` evaluations."""

    def __init__(self, metric: str, patience: int, min_delta: float = 0.0) -> None:
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.best: float | None = None
        self.bad_evaluations = 0

    def on_evaluate(self, trainer: Trainer, state: TrainState, metrics: dict[str, float]) -> None:
        value = _metric(metrics, self.metric)
        if _improved(value, self.best, self.min_delta):
            self.best, self.bad_evaluations = value, 0
            return
        self.bad_evaluations += 1
        if self.bad_evaluations >= self.patience:
            state.should_stop = True
            state.stop_reason = (
                f"early stopping: {self.metric} did not improve on {self.best:.4f} for "
                f"{self.patience} evaluation(s)"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_evaluations = state["best"], state["bad_evaluations"]


class BestModel(Callback):
    """Keeps the weights with the best monitored metric; restores them at the end."""

    def __init__(self, metric: str, restore: bool = True) -> None:
        self.metric, self.restore = metric, restore
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_evaluate(self, trainer: Trainer, state: TrainState, metrics: dict[str, float]) -> None:
        value = _metric(metrics, self.metric)
        if _improved(value, state.best_metric, 0.0):
            state.best_metric, state.best_step = value, state.global_step
            self.best_weights = {
                k: v.detach().to("cpu", copy=True) for k, v in trainer.model.state_dict().items()
            }

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        if self.restore and self.best_weights is not None and state.best_step != state.global_step:
            trainer.model.load_state_dict(self.best_weights)
            trainer.log({"event": "restored_best", "step": state.best_step,
                         self.metric: state.best_metric})  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"best_weights": self.best_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_weights = state.get("best_weights")


class TrainingCheckpoint(Callback):
    """Writes a resumable checkpoint every N optimizer steps, keeping the newest ``keep``."""

    def __init__(self, directory: str | Path, every_steps: int, keep: int = 2) -> None:
        self.directory, self.every_steps, self.keep = Path(directory), every_steps, keep

    def on_train_batch_end(self, trainer: Trainer, state: TrainState) -> None:
        if state.global_step % self.every_steps == 0 and trainer.is_main:
            trainer.save_checkpoint(self.directory / f"step-{state.global_step:08d}.pt")
            for old in sorted(self.directory.glob("step-*.pt"))[: -self.keep]:
                old.unlink()


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest checkpoint that TrainingCheckpoint wrote into ``directory``, if any."""
    found = sorted(Path(directory).glob("step-*.pt"))
    return found[-1] if found else None


class Progress(Callback):
    """Hands every log record to ``sink`` (default: print a line per record)."""

    def __init__(self, sink: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.sink = sink or _print_record

    def on_log(self, trainer: Trainer, state: TrainState, record: dict[str, Any]) -> None:
        if trainer.is_main:
            self.sink(record)


def _print_record(record: dict[str, Any]) -> None:
    if record.get("event") == "progress":
        eta = record["eta_seconds"]
        print(
            f"epoch {record['epoch'] + 1} step {record['step']}/{record['total_steps']} "
            f"loss {record['loss']:.4f} lr {record['learning_rate']:.2e} "
            f"{record['samples_per_second']:.1f} samples/s eta {_clock(eta)}",
            flush=True,
        )
    elif record.get("event") == "evaluation":
        scores = ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items() if "@" in k)
        print(f"evaluation at step {record['step']}: {scores}", flush=True)
    elif record.get("event") == "finished":
        print(f"finished after {record['step']} steps", flush=True)
    else:
        shown = {k: v for k, v in record.items() if k != "time"}
        print(" ".join(f"{k}={v}" for k, v in shown.items()), flush=True)


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


class WiseFT(Callback):
    """WiSE-FT (Wortsman et al. 2022): mix the tuned weights with the pretrained ones.

    At the end of training every backbone weight becomes ``alpha·tuned + (1−alpha)·pretrained``;
    new layers (projection head, pooling parameters) keep their tuned values, as they have no
    pretrained counterpart.
    """

    def __init__(self, alpha: float) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"wise_ft_alpha must be between 0 and 1, got {alpha}")
        self.alpha = alpha
        self.pretrained: dict[str, torch.Tensor] | None = None

    def on_fit_begin(self, trainer: Trainer, state: TrainState) -> None:
        if self.pretrained is None:
            self.pretrained = {
                k: v.detach().to("cpu", copy=True)
                for k, v in trainer.model.state_dict().items()
                if ".backbone." in f".{k}" and v.is_floating_point()
            }

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        if self.pretrained is None:
            return
        current = trainer.model.state_dict()
        with torch.no_grad():
            for key, before in self.pretrained.items():
                tuned = current[key]
                tuned.copy_(before.to(tuned) * (1 - self.alpha) + tuned * self.alpha)
        trainer.log({"event": "wise_ft", "alpha": self.alpha})

    def state_dict(self) -> dict[str, Any]:
        return {"pretrained": self.pretrained}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pretrained = state.get("pretrained")


def _metric(metrics: dict[str, float], name: str) -> float:
    if name not in metrics:
        raise ConfigError(f"unknown eval_metric {name!r}; available: {', '.join(metrics)}")
    return float(metrics[name])
