"""EncoderConfig: how a served model is loaded and run, typed, failing fast on a bad value."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from searchtuner.errors import ConfigError, shorten


class Backend(StrEnum):
    """What runs the model: PyTorch (CPU or CUDA) or ONNX Runtime (CPU, the bundle's ONNX)."""

    TORCH = "torch"
    ONNX = "onnx"


class EncoderConfig(BaseModel):
    """Everything an :class:`~searchtuner.serving.Encoder` needs; a bad value fails at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(
        min_length=1,
        description="a model handle (stm1:<sha256>:<size>@<uri>), a bundle folder or archive",
    )
    backend: Backend = Field(Backend.TORCH, description="torch, or onnx (the bundle's model.onnx)")
    batch_size: int = Field(64, ge=1, le=65536, description="items per forward pass")
    device: str = Field("cpu", description="cpu, cuda or cuda:N (torch); never chosen for you")
    allow_paths: bool = Field(
        False, description="read images named by a local path in uri/url (off on a service)"
    )
    threads: int | None = Field(
        None, ge=1, le=1024, description="onnx: the session's intra-op threads (default: ORT's)"
    )
    cache_dir: str | None = Field(
        None, description="where handles' bundles are unpacked (default: $SEARCHTUNER_CACHE)"
    )

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(_describe(err)) from err

    @model_validator(mode="after")
    def _check_device(self) -> EncoderConfig:
        if self.backend is Backend.ONNX and self.device != "cpu":
            raise ValueError(
                f"backend 'onnx' runs on the CPU (ONNX Runtime's CPU provider), but device "
                f"{self.device!r} was asked for; use backend 'torch' on {self.device!r}, or "
                "device 'cpu'"
            )
        return self


def _describe(err: ValidationError) -> str:
    """One clause per bad field: which field, what was given, what is allowed."""
    clauses = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = f"unknown option; allowed: {', '.join(EncoderConfig.model_fields)}"
        elif where == "model" and problem["type"] in ("missing", "string_too_short"):
            clauses.append(
                "model: required; give a model handle (stm1:<sha256>:<size>@<uri>) or the "
                "path of a bundle folder"
            )
            continue
        if not where:  # a check across fields: its message says it all
            clauses.append(message)
            continue
        clauses.append(f"{shorten(where)}: {message} (got {shorten(repr(problem.get('input')))})")
    return "invalid encoder config: " + "; ".join(clauses)
