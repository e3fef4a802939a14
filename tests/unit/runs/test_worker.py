"""The trainer worker, run in this process: success, failures, and resuming after a stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import searchtuner
from searchtuner.runs import RunRegistry, RunState
from searchtuner.runs import worker as worker_module
from searchtuner.runs.worker import EXIT_OK, EXIT_TERMINATED, WorkerStopped, run_worker
from searchtuner.store import Store
from tests.unit.runs.helpers import OWNER, clusters, mlp_request, queue_run, upload

S = RunState


def _queued(registry: RunRegistry, store: Store, **config: Any) -> str:
    train = upload(store, clusters(64))
    evaluation = upload(store, clusters(16, seed=1)) if config.pop("with_eval", False) else None
    run_id = queue_run(registry, mlp_request(train, eval_data=evaluation, **config))
    registry.transition(OWNER, run_id, S.QUEUED)
    return run_id


def test_a_run_goes_from_queued_to_finished(
    registry: RunRegistry, store: Store, tmp_path: Path
) -> None:
    run_id = _queued(registry, store, epochs=2, with_eval=True)
    registry.update(OWNER, run_id, attempt=1)
    code = run_worker(store, OWNER, run_id, tmp_path / "scratch", flush_interval=0.2)
    record = registry.get(OWNER, run_id)
    assert code == EXIT_OK, registry.logs(OWNER, run_id)
    assert record.state is S.FINISHED and record.reason is None
    events = registry.events(OWNER, run_id)
    assert [e.data["state"] for e in events if e.type == "state"] == [
        "CREATED", "VALIDATING", "QUEUED", "PREPARING", "TRAINING", "EVALUATING", "PUBLISHING",
        "FINISHED",
    ]  # fmt: skip
    steps = [e.data["step"] for e in events if e.type == "progress"]
    assert steps == sorted(steps) and steps[-1] == 16  # 64 items / batch 8 × 2 epochs
    assert record.progress["fraction"] == 1.0 and record.progress["epochs"] == 2
    assert any(e.type == "log" and "loaded 64 training item(s)" in e.message for e in events)
    # Metrics before and after, in the record, in metrics.json and as events.
    metrics = registry.metrics(OWNER, run_id)
    assert set(metrics["before"]) == set(metrics["after"]) and "map@10" in metrics["after"]
    assert record.metrics == {"before": metrics["before"], "after": metrics["after"]}
    assert [h["step"] for h in metrics["history"]] == steps
    assert any(e.type == "metrics" and "before → after" in e.message for e in events)
    # Checkpoints: at most two kept, each announced by an event.
    mine = store.for_owner(OWNER)
    kept = list(mine.keys(f"runs/{run_id}/checkpoints/"))
    assert 1 <= len(kept) <= 2
    assert {e.data["key"] for e in events if e.type == "checkpoint"} >= set(kept)
    # The published model loads, and its card knows where it came from.
    model = searchtuner.get_model(record.model_handle)
    vectors = searchtuner.encode(model, clusters(4))
    assert vectors.shape == (4, 16) and np.isfinite(vectors).all()
    assert "TRAINING   epoch 2/2 step 16/16" in registry.logs(OWNER, run_id)


def test_a_request_error_fails_the_run_with_what_to_fix(
    registry: RunRegistry, store: Store, tmp_path: Path
) -> None:
    missing = "std1:" + "e" * 64
    run_id = queue_run(registry, mlp_request(missing))
    registry.transition(OWNER, run_id, S.QUEUED)
    assert run_worker(store, OWNER, run_id, tmp_path, flush_interval=0.2) == EXIT_OK
    record = registry.get(OWNER, run_id)
    assert record.state is S.FAILED
    assert record.reason == (
        f"dataset {missing} not found (the request's train_data); upload it first with POST "
        "/datasets or searchtuner.Client.upload; fix the request and start a new run"
    )


def test_an_unexpected_error_fails_the_run_with_the_traceback_in_the_log(
    registry: RunRegistry, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(worker_module, "publish_checkpoint", broken)
    run_id = _queued(registry, store)
    assert run_worker(store, OWNER, run_id, tmp_path, flush_interval=0.2) == EXIT_OK
    record = registry.get(OWNER, run_id)
    assert (record.state, record.reason) == (
        S.FAILED,
        "internal error in the trainer worker: RuntimeError: the disk is on fire; the log has "
        "the traceback",
    )
    errors = [e for e in registry.events(OWNER, run_id) if e.type == "log" and e.level == "error"]
    assert any("Traceback (most recent call last)" in e.message for e in errors)


def test_a_stopped_worker_leaves_the_run_live_and_the_next_one_resumes(
    registry: RunRegistry, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save = worker_module._StoreCheckpoint._save

    def save_then_stop(self: Any, trainer: Any, state: Any) -> None:
        save(self, trainer, state)
        raise WorkerStopped(EXIT_TERMINATED, "stopped by SIGTERM")  # as the signal handler does

    monkeypatch.setattr(worker_module._StoreCheckpoint, "_save", save_then_stop)
    run_id = _queued(registry, store, epochs=2, checkpoint_every_steps=3)
    assert run_worker(store, OWNER, run_id, tmp_path, flush_interval=0.2) == EXIT_TERMINATED
    assert registry.get(OWNER, run_id).state is S.TRAINING
    assert [k.rsplit("/", 1)[1] for k in store.for_owner(OWNER).keys(f"runs/{run_id}/")
            if "/checkpoints/" in k] == ["step-00000003.pt"]  # fmt: skip

    monkeypatch.setattr(worker_module._StoreCheckpoint, "_save", save)
    assert run_worker(store, OWNER, run_id, tmp_path, flush_interval=0.2) == EXIT_OK
    events = registry.events(OWNER, run_id)
    training = [e for e in events if e.type == "state" and e.data["state"] == "TRAINING"]
    assert [e.data["resumed_from_step"] for e in training] == [0, 3]
    assert "resuming from step 3" in training[1].message
    assert registry.get(OWNER, run_id).state is S.FINISHED
    steps = [e.data["step"] for e in events if e.type == "progress"]
    assert steps[-1] == 16 and 4 in steps  # the resumed attempt went on from step 4
