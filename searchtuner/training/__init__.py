"""Training: contrastive metric learning from labels, pairs, text–image pairs, or views."""

from searchtuner.training.callbacks import (
    BestModel,
    Callback,
    EarlyStopping,
    Evaluation,
    Progress,
    TrainingCheckpoint,
    WiseFT,
    latest_checkpoint,
)
from searchtuner.training.config import Objective, Precision, Scheduler, TrainConfig
from searchtuner.training.state import TrainState
from searchtuner.training.trainer import Trainer, TrainResult, train

__all__ = [
    "BestModel",
    "Callback",
    "EarlyStopping",
    "Evaluation",
    "Objective",
    "Precision",
    "Progress",
    "Scheduler",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TrainingCheckpoint",
    "WiseFT",
    "latest_checkpoint",
    "train",
]
