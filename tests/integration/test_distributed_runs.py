"""A service run with ``processes_per_node=2``: the supervisor starts torchrun, both processes
resume from the checkpoint rank 0 picks, rank 0 alone writes the run's events and
checkpoints, and the run logs the losses of the same run in one process."""

from __future__ import annotations

from pathlib import Path

import pytest

from searchtuner.runs import RunRegistry, RunState, RunSupervisor
from searchtuner.runs.registry import run_key
from searchtuner.runs.worker import EXIT_OK, run_worker
from searchtuner.store import open_store
from tests.unit.runs.helpers import OWNER, clusters, mlp_request, queue_run, upload, wait_for

pytestmark = pytest.mark.integration

S = RunState
TIMEOUT = 180.0  # one torchrun launch on a busy 2-core machine


def _losses(registry: RunRegistry, run_id: str) -> dict[int, float]:
    history = registry.metrics(OWNER, run_id)["history"]
    return {entry["step"]: entry["loss"] for entry in history}


def test_a_two_process_run_resumes_where_one_process_stopped(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    registry, mine = RunRegistry(store), store.for_owner(OWNER)
    # 2 epochs of 32 batches of 8; a checkpoint every 8 steps.
    request = mlp_request(upload(store, clusters(256)), epochs=2, checkpoint_every_steps=8)
    one = queue_run(registry, request)
    registry.transition(OWNER, one, S.QUEUED)
    assert run_worker(store, OWNER, one, tmp_path / "one", flush_interval=0.2) == EXIT_OK
    kept = sorted(k.rsplit("/", 1)[1] for k in mine.keys(run_key(one, "checkpoints/")))
    assert kept == ["step-00000048.pt", "step-00000056.pt"]

    # The same run on two processes, stopped (as it were) after step 48 of one process: the
    # batch sequence does not depend on the number of processes. Its newest checkpoint is
    # unreadable, so rank 0 falls back to step 48, and rank 1 must follow rank 0's choice.
    two = queue_run(registry, request.model_copy(update={"processes_per_node": 2}))
    mine.put_bytes(run_key(two, "checkpoints/step-00000048.pt"),
                   mine.get_bytes(run_key(one, "checkpoints/step-00000048.pt")))  # fmt: skip
    mine.put_bytes(run_key(two, "checkpoints/step-00000052.pt"), b"not a checkpoint")
    supervisor = RunSupervisor(
        str(tmp_path / "store"), scratch_dir=tmp_path / "scratch", poll_interval=0.1,
        env={"OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"},
    )  # fmt: skip
    try:
        supervisor.start()
        supervisor.submit(OWNER, two)
        wait_for(f"run {two} to end", lambda: registry.get(OWNER, two).is_terminal, TIMEOUT)
    finally:
        supervisor.stop(timeout=10)
    record, events = registry.get(OWNER, two), registry.events(OWNER, two)
    assert record.state is S.FINISHED, registry.logs(OWNER, two)
    assert record.model_handle and (record.attempt, record.crashes) == (1, 0)
    training = [e.data for e in events if e.type == "state" and e.data["state"] == "TRAINING"]
    assert [t["resumed_from_step"] for t in training] == [48]
    assert any("cannot resume from" in e.message and "step-00000052" in e.message for e in events)
    # Rank 0 alone speaks: each line, progress step and checkpoint once.
    assert [e.message for e in events].count("training data-parallel: 2 processes") == 1
    steps = [e.data["step"] for e in events if e.type == "progress"]
    assert steps == list(range(50, 65, 2))
    assert [e.data["step"] for e in events if e.type == "checkpoint"] == [56]
    # Steps 49..64 on two processes give the losses of the same steps on one.
    expected = _losses(registry, one)
    found = _losses(registry, two)
    assert found == pytest.approx({step: expected[step] for step in found}, rel=1e-4, abs=1e-6)
