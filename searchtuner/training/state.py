"""TrainState: the small record of where training is, shared with every callback."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainState:
    """Where training stands. Callbacks read it; a few fields are theirs to set.

    Attributes:
        epoch: the current epoch, from 0.
        batch_in_epoch: batches of the current epoch already consumed (for exact resume).
        global_step: optimizer steps taken.
        total_steps: optimizer steps planned.
        samples_seen: training items (pairs, for pair objectives) processed.
        loss: mean loss over the last logging window.
        learning_rate: the backbone's current learning rate.
        train_seconds: time spent in the training loop (evaluation excluded).
        metrics_before: evaluation metrics before training, if there is eval data.
        evaluations: every evaluation as ``{"step", "epoch", "metrics"}``.
        best_metric: the best value of the monitored metric, and ``best_step`` its step.
        should_stop: set by a callback (early stopping) to end training after this step.
        stop_reason: why training ended early, in words.
    """

    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    total_steps: int = 0
    samples_seen: int = 0
    loss: float = math.nan
    learning_rate: float = 0.0
    train_seconds: float = 0.0
    metrics_before: dict[str, float] | None = None
    metrics_after: dict[str, float] | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None
    should_stop: bool = False
    stop_reason: str | None = None

    @property
    def samples_per_second(self) -> float:
        return self.samples_seen / self.train_seconds if self.train_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples_per_second"] = self.samples_per_second
        return data

    def load_dict(self, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if key in self.__dataclass_fields__:
                setattr(self, key, value)
