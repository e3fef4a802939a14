"""The trainer worker: one process that takes one run from PREPARING to FINISHED.

Started by :class:`~searchtuner.runs.supervisor.RunSupervisor` as::

    python -m searchtuner.runs.worker --store URI --owner OWNER --run RUN_ID --scratch DIR

It loads the run's datasets, builds the model, resumes from the newest training checkpoint in
the store if there is one, trains while writing progress events and checkpoints, evaluates,
and publishes the model. Everything it knows goes to the store, so a worker that dies at any
point loses at most the steps since its last checkpoint.

A run asking for several processes (``processes_per_node``, ``nnodes``) is started by
torchrun, which runs this module once per process (docs/distributed.md has the command
line). Rank 0 does all of the above; the other ranks train in step with it and write
nothing (:mod:`searchtuner.runs.replica`).

Exit codes: 0 when the worker wrote a terminal state itself (FINISHED or FAILED) or found the
run terminal already; 1 after a crash that left the run live (the supervisor relaunches it);
2 for bad arguments; 3 when the supervisor that started it is gone; 4 when it saw a cancel
request; 143 after SIGTERM. Only exit code 0 comes with a terminal state; for every other
exit, the supervisor decides what the run becomes.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from searchtuner.artifacts.checkpoint import save_model_checkpoint
from searchtuner.artifacts.publish import publish_checkpoint
from searchtuner.errors import ConfigError, SearchTunerError
from searchtuner.models.build import build_model
from searchtuner.models.embedding_model import EmbeddingModel
from searchtuner.runs.errors import InvalidTransition, RunNotFound
from searchtuner.runs.event_sink import EventLogHandler, EventSink
from searchtuner.runs.records import RunRecord
from searchtuner.runs.registry import RunRegistry, run_key
from searchtuner.runs.request import open_request_dataset, registered_model_name
from searchtuner.runs.states import RunState
from searchtuner.store.base import Store
from searchtuner.store.errors import NotFound, StoreError
from searchtuner.store.factory import open_store
from searchtuner.telemetry.run_trace import RunTrace
from searchtuner.telemetry.tracing import install_from_env
from searchtuner.training import distributed
from searchtuner.training.callbacks import Callback, Progress
from searchtuner.training.config import TrainConfig
from searchtuner.training.state import TrainState
from searchtuner.training.trainer import Trainer, TrainResult

logger = logging.getLogger("searchtuner.runs.worker")

EXIT_OK = 0
EXIT_CRASHED = 1
EXIT_USAGE = 2
EXIT_ORPHANED = 3
EXIT_CANCELLED = 4
EXIT_TERMINATED = 128 + signal.SIGTERM
KEEP_CHECKPOINTS = 2
"""Training checkpoints kept in the store: the newest, and one to fall back on."""
PROGRESS_WRITE_INTERVAL = 0.5
"""Seconds between writes of the run record's progress (events are not throttled)."""
CANCEL_CHECK_INTERVAL = 2.0
"""Seconds between looks at the cancel marker while training."""
CHECKPOINT_INTERVAL = 120.0
"""Default seconds of training between checkpoints (and one at each epoch's end but the last):
a crash loses at most two minutes of training, and a short run pays for no checkpoint it
would never use. A MiniLM checkpoint (weights + optimizer state) is ~180 MB."""
_CARD_PARAMETERS = ("objective", "epochs", "batch_size", "learning_rate", "loss", "miner",
                    "distance", "optimizer", "scheduler", "warmup_ratio", "seed")  # fmt: skip


class WorkerStopped(BaseException):  # a control-flow signal, like KeyboardInterrupt
    """Stop now without writing a terminal state (SIGTERM, a cancel request).

    A BaseException, so that no ``except Exception`` on the way up swallows it.
    """

    def __init__(self, exit_code: int, why: str) -> None:
        super().__init__(why)
        self.exit_code = exit_code


def run_worker(
    store: Store,
    owner: str,
    run_id: str,
    scratch: str | Path,
    *,
    flush_interval: float = 1.0,
    env: distributed.DistributedEnv | None = None,
) -> int:
    """Take one run from PREPARING to a terminal state, in this process.

    Args:
        store: the root store (the run lives in ``store.for_owner(owner)``).
        owner: the run's owner.
        run_id: the run.
        scratch: a local folder for checkpoints being written or downloaded.
        flush_interval: seconds between writes of buffered events.
        env: this process's place in a data-parallel run (rank 0; the other ranks run
            :func:`~searchtuner.runs.replica.run_replica`); default: one process.

    Returns:
        The exit code (see the module docstring).

    Raises:
        WorkerStopped: on SIGTERM (with the handler :func:`main` installs); events are
            flushed first.
    """
    registry = RunRegistry(store)
    try:
        record = registry.get(owner, run_id)
    except RunNotFound as err:
        logger.error("%s", err)
        return EXIT_USAGE
    if record.is_terminal:
        logger.info("run %s is %s already; nothing to do", run_id, record.state.value)
        return EXIT_OK
    if record.request.nnodes > 1:
        # Launched by a multi-node launcher, not by a supervisor, which would count attempts.
        record = registry.update(owner, run_id, attempt=record.attempt + 1)
    sink = EventSink(registry, owner, run_id, interval=flush_interval)
    handler = EventLogHandler(sink)
    root = logging.getLogger()
    old_level = root.level
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    root.addHandler(handler)
    sink.start()
    job = _Job(registry, sink, record, Path(scratch), env or distributed.DistributedEnv())
    run_trace = RunTrace(record).start()  # no-op unless tracing is on
    sink.on_transition.append(run_trace.phase)
    try:
        return job.run()
    finally:
        run_trace.end()
        root.removeHandler(handler)
        root.setLevel(old_level)
        try:
            sink.close()
        except SearchTunerError as err:
            print(f"searchtuner worker: the last events were not written: {err}", file=sys.stderr)


class _Job:
    """One attempt at one run; see :func:`run_worker`."""

    def __init__(
        self,
        registry: RunRegistry,
        sink: EventSink,
        record: RunRecord,
        scratch: Path,
        env: distributed.DistributedEnv,
    ) -> None:
        self.registry, self.sink, self.record = registry, sink, record
        self.owner, self.run_id = record.owner, record.run_id
        self.request = record.request
        self.mine = registry.owner_store(self.owner)
        self.scratch = scratch
        self.env = env
        self.resumed_key: str | None = None
        scratch.mkdir(parents=True, exist_ok=True)

    def run(self) -> int:
        try:
            self._execute()
            # After an error the process exits instead: a group torn down while other ranks
            # wait in a collective can hang (NCCL).
            distributed.teardown()
            return EXIT_OK
        except (WorkerStopped, KeyboardInterrupt) as stop:
            code = stop.exit_code if isinstance(stop, WorkerStopped) else EXIT_TERMINATED
            logger.warning("worker stopped (%s); the run stays live", stop or "interrupted")
            return code
        except StoreError as err:
            if isinstance(err, RunNotFound):
                logger.error("%s; the run was deleted while it ran", err)
                return EXIT_CANCELLED
            # The store failed (unreachable, denied, corrupt object): not the request's fault,
            # and a relaunched worker resumes from the last checkpoint.
            logger.error("the artifact store failed: %s\n%s", err, traceback.format_exc())
            return EXIT_CRASHED
        except InvalidTransition as err:
            # Someone else ended the run (a cancel while this worker was not watching).
            logger.warning("the run was ended elsewhere: %s", err)
            return EXIT_CANCELLED
        except (SearchTunerError, FloatingPointError) as err:
            # FloatingPointError: the trainer's "the loss became nan … lower learning_rate".
            return self._fail(f"{err}; fix the request and start a new run")
        except Exception as err:
            logger.error("the trainer worker failed:\n%s", traceback.format_exc())
            if self.env.is_distributed:
                # Another rank that died surfaces here as an error of a collective (gloo:
                # "Connection reset by peer"), not told apart from a bug by its type: a
                # crash, which the supervisor resumes (and fails after max_attempts).
                return EXIT_CRASHED
            return self._fail(
                f"internal error in the trainer worker: {type(err).__name__}: {err}; the log "
                "has the traceback"
            )

    def _fail(self, reason: str) -> int:
        try:
            current = self.registry.get(self.owner, self.run_id)
            if current.is_terminal:
                return EXIT_CANCELLED
            self.sink.transition(RunState.FAILED, reason=reason)
        except StoreError as err:
            logger.error("could not record the failure (%s): %s", err, reason)
            return EXIT_CRASHED
        return EXIT_OK

    # -- the steps ---------------------------------------------------------------------------

    def _execute(self) -> None:
        request = self.request
        self.sink.transition(
            RunState.PREPARING,
            message=f"preparing (attempt {self.record.attempt})",
        )
        self._check_cancel()
        model_name = registered_model_name(request.model)
        config = request.train_config()
        env = self.env
        if env.is_distributed:  # joins the other ranks (searchtuner.runs.replica)
            device = distributed.device_for(config.device, env.local_rank, env.world_size)
            distributed.init_process_group(env, device)
            logger.info("training data-parallel: %d processes", env.world_size)
        train_set = open_request_dataset(self.mine, request.train_data, "train_data")
        train_docs = train_set.docs()
        eval_docs = None
        if request.eval_data is not None:
            eval_set = open_request_dataset(self.mine, request.eval_data, "eval_data")
            eval_docs = eval_set.docs()
        logger.info(
            "loaded %d training item(s)%s",
            len(train_docs),
            "" if eval_docs is None else f" and {len(eval_docs)} evaluation item(s)",
        )
        torch.manual_seed(config.seed)  # new layers (a projection head) start the same each time
        model = _build(model_name, request.model_options)
        progress = _RunProgress(self, config)
        checkpoints = _StoreCheckpoint(self)
        trainer = Trainer(
            model, train_docs, eval_data=eval_docs, config=config,
            callbacks=[progress, checkpoints, _CancelWatch(self)],
            rank=env.rank, world_size=env.world_size, local_rank=env.local_rank,
        )  # fmt: skip
        checkpoints.every_steps = request.checkpoint_every_steps
        resumed = self._resume(trainer)
        distributed.broadcast_object(self.resumed_key)  # the other ranks load it too
        self.sink.transition(
            RunState.TRAINING,
            message=(
                f"training: {trainer.total_steps} steps, a checkpoint every "
                + (
                    f"{checkpoints.every_steps} steps"
                    if checkpoints.every_steps
                    else f"{checkpoints.interval:.0f} s"
                )
                + (f"; resuming from step {resumed}" if resumed else "")
            ),
            data={"resumed_from_step": resumed, "total_steps": trainer.total_steps},
        )
        result = trainer.fit()
        metrics = self._evaluate(result, progress)
        self.sink.transition(RunState.PUBLISHING, message="publishing the model")
        handle = self._publish(trainer, result, model_name, train_docs, eval_docs)
        self.sink.transition(
            RunState.FINISHED,
            message=f"finished: model {handle}",
            model_handle=handle,
            metrics={"before": metrics["before"], "after": metrics["after"]},
        )

    def _check_cancel(self) -> None:
        if self.registry.cancel_requested(self.owner, self.run_id):
            raise WorkerStopped(EXIT_CANCELLED, "a cancel was requested")

    def _resume(self, trainer: Trainer) -> int:
        """Load the newest loadable checkpoint from the store; returns its step (0: none)."""
        prefix = run_key(self.run_id, "checkpoints/")
        keys = sorted(k for k in self.mine.keys(prefix) if k.endswith(".pt"))
        for key in reversed(keys):
            local = self.scratch / "resume" / Path(key).name
            try:
                self.mine.download(key, local)
                trainer.load_checkpoint(local)
            except (ConfigError, NotFound) as err:
                logger.warning("cannot resume from %s (%s); trying an older checkpoint", key, err)
                continue
            finally:
                local.unlink(missing_ok=True)
            logger.info("resuming from step %d (%s)", trainer.state.global_step, key)
            self.resumed_key = key
            return trainer.state.global_step
        if keys:
            logger.warning("no checkpoint could be loaded; training starts from the beginning")
        return 0

    def _evaluate(self, result: TrainResult, progress: _RunProgress) -> dict[str, Any]:
        record = self.sink.transition(
            RunState.EVALUATING,
            message="collecting metrics",
            progress=progress.latest or self.record.progress,
        )
        self.record = record
        before: dict[str, Any] = _plain(dict(result.metrics_before or {}))
        after: dict[str, Any] = _plain(dict(result.metrics_after or {}))
        self.sink.flush()  # the history below is read back from the stored progress events
        history: dict[int, dict[str, Any]] = {}
        for event in self.registry.events(self.owner, self.run_id):
            if event.type == "progress" and "step" in event.data:
                history[int(event.data["step"])] = {
                    k: event.data.get(k)
                    for k in ("step", "epoch", "loss", "learning_rate", "samples_per_second")
                }
        metrics = {
            "before": before,
            "after": after,
            "history": [history[step] for step in sorted(history)],
            "evaluations": _plain(result.state.evaluations),
            "stop_reason": result.state.stop_reason,
        }
        self.registry.put_metrics(self.owner, self.run_id, metrics)
        if before or after:
            shown = ", ".join(
                f"{name} {_number(before.get(name))} → {_number(after.get(name))}"
                for name in after
                if "@" in name
            )
            self.sink.emit(
                "metrics",
                f"metrics before → after: {shown}",
                data={"before": before, "after": after},
            )
        else:
            logger.info("no eval_data was given, so there are no before/after metrics")
        return metrics

    def _publish(
        self,
        trainer: Trainer,
        result: TrainResult,
        model_name: str,
        train_docs: list[Any],
        eval_docs: list[Any] | None,
    ) -> str:
        request, config = self.request, trainer.config
        dumped = config.model_dump(mode="json")
        parameters = {name: dumped[name] for name in _CARD_PARAMETERS}
        parameters.update(request.config)
        parameters["steps"] = result.state.global_step
        statistics: dict[str, Any] = {"train_items": len(train_docs)}
        labels = {getattr(doc, "label", None) for doc in train_docs} - {None}
        if labels:
            statistics["train_labels"] = len(labels)
        if eval_docs is not None:
            statistics["eval_items"] = len(eval_docs)
        info: dict[str, Any] = {
            "base_model": model_name,
            "run_id": self.run_id,
            "training_parameters": parameters,
            "data_statistics": statistics,
            "model_options": request.model_options,
            "train_data": request.train_data,
            "eval_data": request.eval_data,
        }
        if result.metrics_before is not None:
            info["metrics_before"] = result.metrics_before
        if result.metrics_after is not None:
            info["metrics_after"] = result.metrics_after
        if request.name:
            info["description"] = f"Trained by the SearchTuner run {request.name!r}."
        key = run_key(self.run_id, "model.safetensors")
        model = trainer.model
        if not isinstance(model, EmbeddingModel):
            raise ConfigError(
                "service runs publish single-tower embedding models; text–image dual encoders "
                "are trained with searchtuner.train in Python"
            )
        save_model_checkpoint(model, self.mine, key, info=info)
        handle = publish_checkpoint(self.mine, key, onnx=request.onnx)
        logger.info("published %s", handle)
        return str(handle)


def _build(model_name: str, options: dict[str, Any]) -> EmbeddingModel:
    try:
        return build_model(model_name, **options)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model_options do not fit {model_name}: {err}") from err


def _number(value: Any) -> str:
    return "?" if not isinstance(value, int | float) or not math.isfinite(value) else f"{value:.4f}"


def _plain(value: Any) -> Any:
    """Floats that JSON can carry (NaN and infinities become None), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return _plain(value.item())
    return value


# -- callbacks -----------------------------------------------------------------------------


class _RunProgress(Progress):
    """Trainer log records → run events, and the record's ``progress`` (throttled)."""

    def __init__(self, job: _Job, config: TrainConfig) -> None:
        super().__init__(self._record)
        self.job, self.epochs = job, config.epochs
        self.latest: dict[str, Any] | None = None
        self._written_at = 0.0
        self._pending = False

    def _record(self, record: dict[str, Any]) -> None:
        kind = record.get("event")
        if kind == "progress":
            self._progress(record)
        elif kind == "evaluation":
            metrics = _plain(record["metrics"])
            shown = ", ".join(f"{k} {_number(v)}" for k, v in metrics.items() if "@" in k)
            self.job.sink.emit(
                "metrics", f"evaluation at step {record['step']}: {shown}",
                data={"step": record["step"], "metrics": metrics},
            )  # fmt: skip
        elif kind == "resumed":
            pass  # _Job._resume says it, with the checkpoint's key
        elif kind == "finished":
            self.job.sink.emit("log", f"training finished after {record['step']} steps")
            self._write(force=True)
        else:
            shown = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("time", "event"))
            self.job.sink.emit("log", f"{kind}: {shown}", data=_plain(record))

    def _progress(self, record: dict[str, Any]) -> None:
        total = max(1, int(record["total_steps"]))
        progress = _plain({
            "epoch": int(record["epoch"]) + 1, "epochs": self.epochs,
            "step": int(record["step"]), "total_steps": total,
            "loss": record["loss"], "learning_rate": record["learning_rate"],
            "samples_per_second": record["samples_per_second"],
            "eta_seconds": record["eta_seconds"],
            "fraction": min(1.0, int(record["step"]) / total),
        })  # fmt: skip
        self.job.sink.emit(
            "progress",
            f"epoch {progress['epoch']}/{self.epochs} step {progress['step']}/{total} loss "
            f"{_number(progress['loss'])} lr {record['learning_rate']:.2e} "
            f"{record['samples_per_second']:.1f} samples/s",
            data=progress,
        )
        self.latest = progress
        self._pending = True
        self._write(force=False)

    def _write(self, force: bool) -> None:
        now = time.monotonic()
        if not self._pending or (not force and now - self._written_at < PROGRESS_WRITE_INTERVAL):
            return
        self.job.registry.update(self.job.owner, self.job.run_id, progress=self.latest)
        self._written_at, self._pending = now, False


class _StoreCheckpoint(Callback):
    """Saves resumable checkpoints into the store while training goes on.

    With ``every_steps`` set (the request's ``checkpoint_every_steps``), every that many steps;
    otherwise every :data:`CHECKPOINT_INTERVAL` seconds of training. Also at each epoch's end
    but the last (after the last, the trained model itself is saved for publishing). The
    state is written to local disk at the step (it must be the state of that step); its
    upload to the store, pruning and the event happen on a background thread while the next
    steps train, one upload at a time.
    """

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.every_steps: int | None = None
        self.interval = CHECKPOINT_INTERVAL
        self._last = time.monotonic()
        self._upload: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._saved_step = -1

    def on_fit_begin(self, trainer: Trainer, state: TrainState) -> None:
        self._last = time.monotonic()

    def on_train_batch_end(self, trainer: Trainer, state: TrainState) -> None:
        if state.batch_in_epoch >= len(trainer.sampler) or state.global_step >= trainer.total_steps:
            return  # on_epoch_end decides; after the last step the model itself is saved
        if self.every_steps is not None:
            due = state.global_step % self.every_steps == 0
        else:
            due = time.monotonic() - self._last >= self.interval
        if due:
            self._save(trainer, state)

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        if state.global_step < trainer.total_steps:
            self._save(trainer, state)

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        self.wait()

    def on_exception(self, trainer: Trainer, state: TrainState, error: BaseException) -> None:
        self.wait(raise_failure=False)

    def wait(self, raise_failure: bool = True) -> None:
        """Wait for the upload in flight; re-raise its error (a store failure) if any."""
        if self._upload is not None:
            self._upload.join()
            self._upload = None
        failure, self._failure = self._failure, None
        if failure is not None and raise_failure:
            raise failure

    def _save(self, trainer: Trainer, state: TrainState) -> None:
        if state.global_step == self._saved_step:
            return  # e.g. an epoch that ended on a step just saved: the same weights again
        self._saved_step = state.global_step
        self.wait()  # one upload at a time; an earlier failure surfaces here
        name = f"step-{state.global_step:08d}.pt"
        local = trainer.save_checkpoint(self.job.scratch / "checkpoints" / name)
        self._last = time.monotonic()
        step, epoch = state.global_step, state.epoch
        self._upload = threading.Thread(
            target=self._store, args=(local, name, step, epoch), name="checkpoint-upload",
            daemon=True,
        )  # fmt: skip
        self._upload.start()

    def _store(self, local: Path, name: str, step: int, epoch: int) -> None:
        job = self.job
        key = run_key(job.run_id, f"checkpoints/{name}")
        try:
            info = job.mine.put_file(key, local)
            prefix = run_key(job.run_id, "checkpoints/")
            older = sorted(k for k in job.mine.keys(prefix) if k != key)
            for old in older[: max(0, len(older) - (KEEP_CHECKPOINTS - 1))]:
                job.mine.delete(old)
            job.sink.emit(
                "checkpoint", f"checkpoint saved at step {step}",
                data={"step": step, "epoch": epoch, "key": key, "size": info.size},
            )  # fmt: skip
            job.sink.flush()  # rare and what a resume depends on: visible at once
        except BaseException as err:  # handed to the training thread by wait()
            self._failure = err
        finally:
            local.unlink(missing_ok=True)


class _CancelWatch(Callback):
    """Stops training soon after a cancel request, even if no SIGTERM arrives."""

    def __init__(self, job: _Job) -> None:
        self.job = job
        self._checked_at = time.monotonic()

    def on_train_batch_end(self, trainer: Trainer, state: TrainState) -> None:
        if time.monotonic() - self._checked_at >= CANCEL_CHECK_INTERVAL:
            self._checked_at = time.monotonic()
            self.job._check_cancel()


# -- the process ---------------------------------------------------------------------------


def _watch_parent(interval: float = 1.0, also: int | None = None) -> None:
    """Exit (code 3) once the process that started this one is gone, or process ``also``.

    The run stays live in the store, so the next supervisor resumes it; without this, an
    orphaned worker would keep training and writing beside the resumed one. Under torchrun
    the parent is torchrun's agent, so the supervisor passes its own pid as ``also``.
    """
    parent = os.getppid()

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent or (also is not None and gone(also)):
                os.write(2, b"searchtuner worker: the supervisor is gone; exiting\n")
                os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
    raise WorkerStopped(EXIT_TERMINATED, "stopped by SIGTERM")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one run's worker; see the module docstring for the exit codes."""
    parser = argparse.ArgumentParser(
        prog="python -m searchtuner.runs.worker",
        description="Take one SearchTuner run from PREPARING to FINISHED (or FAILED).",
    )
    parser.add_argument("--store", required=True, help="store URI (file:///dir, s3://bucket)")
    parser.add_argument("--owner", required=True, help="the run's owner")
    parser.add_argument("--run", "--run-id", required=True, dest="run_id", help="the run id")
    parser.add_argument("--scratch", required=True, help="a local folder for checkpoints")
    parser.add_argument("--flush-interval", type=float, default=1.0,
                        help="seconds between writes of buffered events")  # fmt: skip
    parser.add_argument("--no-parent-watch", action="store_true",
                        help="keep running when the starting process exits")  # fmt: skip
    parser.add_argument("--watch-pid", type=int, default=None,
                        help="also exit when this process (the supervisor) is gone")  # fmt: skip
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # left by a launcher that ends its own options with `--`
        argv = argv[1:]
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )  # fmt: skip
    signal.signal(signal.SIGTERM, _on_sigterm)
    if not args.no_parent_watch:
        _watch_parent(also=args.watch_pid)
    try:
        store = open_store(args.store)
        env = distributed.DistributedEnv.from_env()  # torchrun's RANK, WORLD_SIZE, ...
    except SearchTunerError as err:
        print(f"searchtuner worker: {err}", file=sys.stderr)
        return EXIT_USAGE
    if not env.is_main:
        from searchtuner.runs.replica import run_replica

        try:
            return run_replica(store, args.owner, args.run_id, args.scratch, env)
        except WorkerStopped as stop:
            return stop.exit_code
        finally:
            store.close()
    tracer_provider = install_from_env("searchtuner-worker")  # None unless tracing is on
    try:
        return run_worker(
            store, args.owner, args.run_id, args.scratch, flush_interval=args.flush_interval,
            env=env,
        )  # fmt: skip
    except WorkerStopped as stop:  # SIGTERM outside the job (while starting or flushing)
        return stop.exit_code
    finally:
        store.close()
        if tracer_provider is not None:
            tracer_provider.shutdown()  # sends the spans still batched


if __name__ == "__main__":
    sys.exit(main())
