"""Helpers for the run lifecycle tests: tiny datasets, requests, bounded waits."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pytest

from searchtuner.data import LabeledDoc
from searchtuner.data.stored import DatasetWriter
from searchtuner.runs import RunRegistry, RunRequest, RunState
from searchtuner.store import Store

T = TypeVar("T")
OWNER = "alice"
DIM = 8


def clusters(n: int, *, labels: int = 4, seed: int = 0) -> list[LabeledDoc]:
    """Feature vectors around one centre per label: an mlp learns them in a few steps."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(size=(labels, DIM))
    return [
        LabeledDoc(
            tensor=(centres[i % labels] + rng.normal(scale=1.5, size=DIM)).astype(np.float32),
            label=f"c{i % labels}",
        )
        for i in range(n)
    ]


def upload(store: Store, docs: list[LabeledDoc], owner: str = OWNER) -> str:
    """Store ``docs`` as a dataset of ``owner``; returns its handle."""
    writer = DatasetWriter(store.for_owner(owner))
    writer.add(docs)
    return writer.commit().handle


def mlp_request(train: str, *, eval_data: str | None = None, **config: Any) -> RunRequest:
    """A request for a tiny mlp run on ``train``; ``config`` overrides training parameters."""
    checkpoint_every = config.pop("checkpoint_every_steps", None)
    return RunRequest(
        model="mlp",
        model_options={"input_dim": DIM, "hidden_dims": [16]},
        train_data=train,
        eval_data=eval_data,
        config={
            "batch_size": 8,
            "samples_per_label": 2,
            "learning_rate": 1e-2,
            "log_every_steps": 2,
            **config,
        },
        onnx=False,
        checkpoint_every_steps=checkpoint_every,
    )


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def queue_run(registry: RunRegistry, request: RunRequest, owner: str = OWNER) -> str:
    """Create a run and bring it to VALIDATING, as the executor does before ``submit``."""
    record = registry.create(owner, request)
    registry.transition(owner, record.run_id, RunState.VALIDATING)
    return record.run_id
