"""TrainConfig: every training parameter, typed, with defaults that work and fail-fast checks."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from searchtuner.errors import ConfigError, invalid_choice, shorten


class Objective(StrEnum):
    """What the model learns from; ``auto`` picks by the kind of training data."""

    AUTO = "auto"
    LABELS = "labels"  # metric learning: same label close, different labels apart
    PAIRS = "pairs"  # query–document pairs, in-batch negatives
    CLIP = "clip"  # text–image pairs, dual encoder, symmetric contrastive loss
    SELF_SUPERVISED = "self_supervised"  # unlabelled: dropout views (text), augmentations (images)


class Scheduler(StrEnum):
    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"


class Precision(StrEnum):
    """Arithmetic of the model's forward and backward passes (weights stay float32)."""

    AUTO = "auto"  # bf16 on CUDA GPUs that support it, fp32 elsewhere
    FP32 = "fp32"
    BF16 = "bf16"  # autocast to bfloat16 on CUDA; losses are still computed in float32


class TrainConfig(BaseModel):
    """Training parameters. Beginners set none; experts can set every one.

    Unknown fields and out-of-range values fail at once with a message that names the field
    and what is allowed.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)

    objective: Objective = Field(Objective.AUTO, description="what to learn from (auto: by data)")
    epochs: int = Field(1, ge=1, le=1000, description="passes over the training data")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    batch_size: int = Field(
        32,
        ge=2,
        description=(
            "items per optimizer step over all processes (pairs for pairs); in data-parallel "
            "training each of N processes takes batch_size / N of them, and the loss is "
            "that of the whole batch, so results do not depend on N"
        ),
    )
    samples_per_label: int = Field(4, ge=2, description="items of each label in a batch")
    loss: str | None = Field(
        None, description="loss name; default by objective (TripletMarginLoss for labels)"
    )
    loss_options: dict[str, Any] = Field(default_factory=dict, description="loss arguments")
    miner: str | None = Field(
        "all", description="triplet miner for label losses: all, hard, semihard, easy-positive"
    )
    miner_options: dict[str, Any] = Field(default_factory=dict, description="miner arguments")
    distance: str = Field("cosine", description="cosine, euclidean, dot or lp")
    optimizer: str = Field("AdamW", description="a torch.optim optimizer by name")
    optimizer_options: dict[str, Any] = Field(default_factory=dict)
    learning_rate: float = Field(2e-5, gt=0, le=1, description="backbone learning rate")
    head_learning_rate: float | None = Field(
        None, gt=0, le=1, description="projection/pooling learning rate (default: 10× backbone)"
    )
    loss_learning_rate: float | None = Field(
        None, gt=0, le=10, description="learning rate of a loss's own parameters (default 1e-3)"
    )
    weight_decay: float = Field(0.01, ge=0, le=1)
    freeze_token_embeddings: bool = Field(
        True,
        description=(
            "text models: keep the token-embedding table fixed while training. It is half of "
            "MiniLM's weights, and a few thousand examples touch few of its rows: freezing it "
            "saves a third of the step time and the optimizer memory for it"
        ),
    )
    scheduler: Scheduler = Scheduler.LINEAR
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="share of steps to warm up over")
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient clipping; None: off")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    precision: Precision = Field(
        Precision.AUTO,
        description="auto: bf16 autocast on CUDA GPUs with bf16 support, fp32 elsewhere",
    )
    device: str = Field("cpu", description="cpu, cuda or cuda:N; never chosen automatically")
    seed: int = Field(0, ge=0)
    length_bucket_size: int | None = Field(
        8, ge=1, description="text: forward each batch in length-sorted chunks of this size"
    )
    num_workers: int = Field(0, ge=0, le=64, description="data-loading worker processes")
    eval_k: int = Field(10, ge=1, le=1000, description="rank cut-off of evaluation metrics")
    eval_metric: str = Field("map@k", description="metric for early stopping and best model")
    eval_every_steps: int | None = Field(None, ge=1, description="also evaluate every N steps")
    early_stopping_patience: int | None = Field(None, ge=1)
    restore_best: bool = Field(True, description="end with the best-evaluated weights")
    checkpoint_dir: str | None = Field(None, description="where training checkpoints go")
    checkpoint_every_steps: int | None = Field(None, ge=1)
    wise_ft_alpha: float | None = Field(
        None, ge=0, le=1, description="WiSE-FT: mix tuned (alpha) and pretrained (1-alpha)"
    )
    log_every_steps: int = Field(10, ge=1)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err)) from err

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as err:
            raise ConfigError(describe_validation_error(err)) from err

    @model_validator(mode="after")
    def _check_names(self) -> TrainConfig:
        from searchtuner.losses import loss_names, make_distance
        from searchtuner.miners import miner_names

        if self.loss is not None:
            names = loss_names()
            if _canonical(self.loss) not in {_canonical(n) for n in names}:
                raise invalid_choice("loss", self.loss, names)
        if self.miner is not None and self.miner.lower() != "none":
            allowed = miner_names()
            if _canonical(self.miner) not in {_canonical(n) for n in allowed}:
                raise invalid_choice("miner", self.miner, allowed)
        make_distance(self.distance)
        if _optimizer_class(self.optimizer) is None:
            raise invalid_choice("optimizer", self.optimizer, optimizer_names())
        if self.precision is Precision.BF16 and not self.device.startswith("cuda"):
            raise ConfigError("precision='bf16' is for CUDA devices; use precision='fp32' on CPU")
        return self

    @property
    def metric_name(self) -> str:
        return self.eval_metric.replace("@k", f"@{self.eval_k}")

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None) -> TrainConfig:
        """Build from untyped parameters (a request, a CLI), raising ConfigError on any fault."""
        return cls(**(params or {}))


def describe_validation_error(err: ValidationError) -> str:
    """One line per bad field: which field, what was given, what is allowed."""
    lines = []
    for problem in err.errors():
        where = shorten(".".join(str(p) for p in problem["loc"]) or "config")
        message = shorten(str(problem["msg"]).removeprefix("Value error, "), 2000)
        if problem["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(TrainConfig.model_fields))
            message = f"unknown training parameter; allowed: {allowed}"
        lines.append(f"{where}: {message} (got {shorten(repr(problem.get('input')))})")
    return "invalid training config: " + "; ".join(lines)


def _canonical(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def optimizer_names() -> list[str]:
    import torch

    return sorted(
        name
        for name in dir(torch.optim)
        if isinstance(getattr(torch.optim, name), type)
        and issubclass(getattr(torch.optim, name), torch.optim.Optimizer)
        and name != "Optimizer"
    )


def _optimizer_class(name: str) -> Any:
    import torch

    wanted = _canonical(name)
    for candidate in optimizer_names():
        if _canonical(candidate) == wanted:
            return getattr(torch.optim, candidate)
    return None


def optimizer_class(name: str) -> Any:
    """The torch optimizer class for a name (case and separators ignored)."""
    found = _optimizer_class(name)
    if found is None:
        raise invalid_choice("optimizer", name, optimizer_names())
    return found
