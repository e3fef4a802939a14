"""RunSupervisor: launches a worker process per run, watches it, resumes or ends the run.

It lives inside a long-running service process (the trainer executor). All of its work
happens on one background thread; the public methods may be called from any thread.

Each worker runs in a process group of its own (``start_new_session``), so cancelling a run
signals the worker and everything it started (data-loader processes), and a crash of the
worker cannot take the service down with it. A run with ``processes_per_node > 1`` starts
torchrun instead (:func:`torchrun_command`); torchrun passes SIGTERM on to its processes,
which sit in sessions of their own, and they exit by themselves once torchrun or the
supervisor is gone. A worker that dies without finishing (killed, out of memory) is
launched again and resumes from its last checkpoint, up to ``max_attempts`` crashes.
Stopping the supervisor stops its workers but leaves their runs live in the store, and the
next supervisor to start resumes them.

A run with ``nnodes > 1`` is not this supervisor's to start: it stays QUEUED, with an event
saying so, until an external launcher (the Job in ``k8s/training``) starts it; that launch's
rank 0 moves it on. The supervisor neither counts it against ``max_concurrent`` nor watches,
resumes or fails it; cancelling it works as for any run (the cancel marker, which the
launched worker heeds at its next check).

**Fairness.** Queued runs wait in one first-in-first-out queue per owner, and a free slot
goes to the owner served longest ago (see :class:`FairQueue`): an owner who queued many runs
takes turns with the others instead of making them wait for all of them.

Run one supervisor per store: a second one would resume the same runs on start-up. Create
and start it in the process that keeps it (for a Jina executor: in ``__init__``, which runs in
the forked executor process), since its thread does not survive a fork; call :meth:`stop` when
that process shuts down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import searchtuner
from searchtuner.errors import ConfigError, SearchTunerError
from searchtuner.runs.errors import RunNotFound
from searchtuner.runs.launch import waiting_message
from searchtuner.runs.records import RunRecord, parse_time, utc_now
from searchtuner.runs.registry import RunRegistry
from searchtuner.runs.states import WORKER_STATES, RunState
from searchtuner.store.base import Store
from searchtuner.store.factory import open_store

logger = logging.getLogger("searchtuner.runs.supervisor")

STALE_VALIDATION_SECONDS = 60.0
"""A run still CREATED/VALIDATING this long after its last update when a supervisor starts
was being validated by a service that died."""
CANCEL_EXTRA_WAIT = 5.0
"""Seconds ``cancel`` waits beyond ``cancel_grace`` for a killed worker to be reaped."""
LOG_TAIL_CHARS = 4000
"""How much of a crashed worker's output goes into the run's log."""
CANCELLED_BY_USER = "cancelled by the user"


class FairQueue:
    """Queued runs: first in first out within each owner, round-robin between owners.

    The next run is the head of the queue of the owner whose run was launched longest ago;
    owners without a launch (since this queue was made) come before every other, in the
    order in which they started waiting. A launch moves its owner behind every other owner
    that waits. So with one slot, alice's a1 … a4 queued before bob's b1, b2 start as a1, b1,
    a2, b2, a3, a4. A run put back at the head of its owner's queue (:meth:`appendleft`: a
    crash retry, a resumed run) goes before the owner's other runs, but waits for the owner's
    turn like them.

    Not thread-safe: the supervisor uses it under its lock.
    """

    def __init__(self) -> None:
        self._runs: dict[str, deque[str]] = {}  # owner -> run ids, next to start first
        self._waiting_since: dict[str, int] = {}  # owner -> ticket when their queue filled
        self._served: dict[str, int] = {}  # owner -> number of their last launch
        self._tickets = 0
        self._launches = 0

    def append(self, owner: str, run_id: str) -> None:
        """Queue a run behind the owner's other queued runs."""
        self._queue_of(owner).append(run_id)

    def appendleft(self, owner: str, run_id: str) -> None:
        """Queue a run ahead of the owner's other queued runs."""
        self._queue_of(owner).appendleft(run_id)

    def remove(self, owner: str, run_id: str) -> bool:
        """Take a run out of the queue; whether it was there."""
        runs = self._runs.get(owner)
        if runs is None or run_id not in runs:
            return False
        runs.remove(run_id)
        self._forget_if_empty(owner)
        return True

    def popleft(self) -> tuple[str, str]:
        """The next run to start, as ``(owner, run_id)``, taken out of the queue.

        Taking a run out does not count as serving its owner (the run may turn out to be
        cancelled meanwhile): call :meth:`served` once it is launched.

        Raises:
            IndexError: the queue is empty.
        """
        if not self._runs:
            raise IndexError("pop from an empty FairQueue")
        owner = min(self._runs, key=self._rank)
        run_id = self._runs[owner].popleft()
        self._forget_if_empty(owner)
        return owner, run_id

    def served(self, owner: str) -> None:
        """Record that a run of ``owner`` was launched: the owner goes behind the others."""
        self._served[owner] = self._launches
        self._launches += 1

    def order(self) -> list[tuple[str, str]]:
        """Every queued ``(owner, run_id)`` in the order they will start, if each launches
        and no other run is queued meanwhile."""
        runs = {owner: list(queue) for owner, queue in self._runs.items()}
        served = dict(self._served)
        launches = self._launches
        out: list[tuple[str, str]] = []
        while runs:
            owner = min(runs, key=lambda o: (served.get(o, -1), self._waiting_since[o]))
            out.append((owner, runs[owner].pop(0)))
            if not runs[owner]:
                del runs[owner]
            served[owner] = launches
            launches += 1
        return out

    def clear(self) -> None:
        """Forget every queued run (who was served when is kept)."""
        self._runs.clear()
        self._waiting_since.clear()

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, tuple) or len(item) != 2:
            return False
        owner, run_id = item
        runs = self._runs.get(owner)
        return runs is not None and run_id in runs

    def __len__(self) -> int:
        return sum(len(runs) for runs in self._runs.values())

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.order())

    def _queue_of(self, owner: str) -> deque[str]:
        if owner not in self._runs:
            self._runs[owner] = deque()
            self._waiting_since[owner] = self._tickets
            self._tickets += 1
        return self._runs[owner]

    def _forget_if_empty(self, owner: str) -> None:
        if not self._runs[owner]:
            del self._runs[owner], self._waiting_since[owner]

    def _rank(self, owner: str) -> tuple[int, int]:
        # -1: never served goes first; ties (only between never-served owners) go to who
        # started waiting first.
        return self._served.get(owner, -1), self._waiting_since[owner]


@dataclass
class _Worker:
    """A worker process this supervisor started."""

    owner: str
    run_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    cancel: bool = False
    term_sent: float | None = None
    kill_sent: bool = False


class RunSupervisor:
    """Starts, watches and resumes trainer worker processes for queued runs.

    Args:
        store_uri: the artifact store (``file:///dir``, ``s3://bucket/prefix``, a path); the
            workers open it by the same URI.
        max_concurrent: workers running at once; more runs wait QUEUED, first in first out
            within each owner and taking turns between owners (:class:`FairQueue`).
        scratch_dir: local folder for the workers' scratch files and output logs.
        max_attempts: crashes after which a run is FAILED instead of resumed.
        poll_interval: seconds between looks at the workers.
        cancel_grace: seconds a worker gets after SIGTERM before SIGKILL.
        env: environment variables for the workers, on top of this process's (e.g.
            ``CUDA_VISIBLE_DEVICES``, ``OMP_NUM_THREADS``).

    Raises:
        ConfigError: a limit that is not positive.
    """

    def __init__(
        self,
        store_uri: str,
        *,
        max_concurrent: int = 1,
        scratch_dir: str | Path,
        max_attempts: int = 3,
        poll_interval: float = 0.5,
        cancel_grace: float = 5.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        for name, value in (("max_concurrent", max_concurrent), ("max_attempts", max_attempts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name, seconds in (("poll_interval", poll_interval), ("cancel_grace", cancel_grace)):
            if not seconds > 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {seconds!r}")
        self.store_uri = str(store_uri)
        self.max_concurrent, self.max_attempts = max_concurrent, max_attempts
        self.poll_interval, self.cancel_grace = float(poll_interval), float(cancel_grace)
        self.scratch_dir = Path(scratch_dir)
        self.env = dict(env or {})
        self._store: Store | None = None
        self._registry: RunRegistry | None = None
        self._cond = threading.Condition(threading.RLock())
        self._queue = FairQueue()
        self._running: dict[str, _Worker] = {}
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- public ------------------------------------------------------------------------------

    @property
    def registry(self) -> RunRegistry:
        """The run registry over the supervisor's store (opened on first use)."""
        with self._cond:
            if self._registry is None:
                self._store = open_store(self.store_uri)
                self._registry = RunRegistry(self._store)
            return self._registry

    def start(self) -> None:
        """Resume what a previous supervisor left, then start the background thread.

        Each owner's queue is rebuilt with the runs the previous service was running
        (PREPARING … PUBLISHING) first, then its QUEUED runs in the order they were queued;
        owners with a resumed run take the first turns. Who was served last is not stored, so
        owners then take turns from the owner whose oldest run waits longest. Runs stuck
        CREATED/VALIDATING for over a minute are FAILED.
        Calling ``start`` on a started supervisor does nothing.
        """
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self.scratch_dir.mkdir(parents=True, exist_ok=True)
            self._recover()
            self._thread = threading.Thread(
                target=self._loop, name="searchtuner-run-supervisor", daemon=True
            )
            self._thread.start()

    def submit(self, owner: str, run_id: str) -> RunRecord:
        """Queue a validated run (VALIDATING → QUEUED); it starts when a slot is free.

        A run already queued or running here, or already terminal (e.g. cancelled while it
        was validated), is returned unchanged. A run with ``nnodes > 1`` goes QUEUED with an
        event saying which launcher starts it, and is left to that launcher.

        Raises:
            RunNotFound: no such run for this owner. InvalidTransition: the run is CREATED.
        """
        registry = self.registry
        with self._cond:
            record = registry.get(owner, run_id)
            if record.is_terminal or run_id in self._running or (owner, run_id) in self._queue:
                return record
            request = record.request
            if _external(record):
                if record.state is not RunState.VALIDATING:
                    return record  # queued already, or being trained by its launcher
                message = waiting_message(run_id, request.nnodes, request.processes_per_node)
                return registry.transition(owner, run_id, RunState.QUEUED, message=message)
            # Queued first, to tell where it stands (other owners' runs that start before it
            # count); the lock keeps the thread from launching it before its state is QUEUED.
            self._queue.append(owner, run_id)
            ahead = self._queue.order().index((owner, run_id))
            message = "queued"
            if ahead:
                message += f"; {ahead} run(s) ahead"
            if len(self._running) >= self.max_concurrent:
                message += f"; waiting for one of {self.max_concurrent} worker slot(s)"
            try:
                record = registry.transition(owner, run_id, RunState.QUEUED, message=message)
            except BaseException:
                self._queue.remove(owner, run_id)
                raise
            self._cond.notify_all()
            return record

    def cancel(self, owner: str, run_id: str) -> RunRecord:
        """Cancel a run: at once if it waits, else SIGTERM, SIGKILL after ``cancel_grace``.

        A multi-node run (started by an external launcher) ends CANCELLED at once; its
        workers see the cancel marker at their next check and stop.

        Returns within ``cancel_grace`` + a few seconds. A terminal run is returned unchanged.
        The run's events, metrics and checkpoints stay in the store.

        Raises:
            RunNotFound: no such run for this owner.
        """
        registry = self.registry
        deadline = time.monotonic() + self.cancel_grace + CANCEL_EXTRA_WAIT
        with self._cond:
            record = registry.get(owner, run_id)
            if record.is_terminal:
                return record
            registry.request_cancel(owner, run_id)
            worker = self._running.get(run_id)
            if worker is None:
                # Queued here, or no worker of this supervisor runs it (not started yet, or
                # its previous service died: an orphaned worker exits within a second).
                self._queue.remove(owner, run_id)
                return self._end(owner, run_id, RunState.CANCELLED, CANCELLED_BY_USER)
            worker.cancel = True
            self._signal(worker, signal.SIGTERM)
            worker.term_sent = time.monotonic()
            self._cond.notify_all()
            while run_id in self._running and time.monotonic() < deadline:
                self._cond.wait(timeout=min(self.poll_interval, deadline - time.monotonic()))
        return registry.get(owner, run_id)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and the workers, leaving their runs live for the next start.

        Workers get SIGTERM, then SIGKILL once ``min(cancel_grace, timeout)`` has passed.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=max(0.1, deadline - time.monotonic()))
        with self._cond:
            workers = list(self._running.values())
            self._running.clear()
            self._queue.clear()
        for worker in workers:
            self._signal(worker, signal.SIGTERM)
        kill_at = time.monotonic() + min(self.cancel_grace, max(0.0, deadline - time.monotonic()))
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.0, kill_at - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(worker, signal.SIGKILL)
                worker.process.wait(timeout=5)
            self._signal(worker, signal.SIGKILL)  # what the worker started, if still there
        for worker in workers:
            try:
                self._after_stop(worker)
            except SearchTunerError as err:
                logger.warning("could not record the stop of run %s: %s", worker.run_id, err)

    def status(self) -> dict[str, Any]:
        """What the supervisor is doing: running and queued run ids, worker pids, limits.

        ``queued`` lists the waiting runs in the order they will start (if no other run is
        queued meanwhile); ``queued_owners`` gives each one's owner, in the same order.
        """
        with self._cond:
            order = self._queue.order()
            return {
                "alive": self._thread is not None and self._thread.is_alive(),
                "running": list(self._running),
                "queued": [run_id for _owner, run_id in order],
                "queued_owners": [owner for owner, _run_id in order],
                "workers": {run_id: w.process.pid for run_id, w in self._running.items()},
                "max_concurrent": self.max_concurrent,
            }

    # -- the background thread -------------------------------------------------------------

    def _loop(self) -> None:
        with self._cond:
            while not self._stopping:
                try:
                    self._reap()
                    self._escalate()
                    self._launch()
                except Exception:  # the thread must outlive a bad round; it retries next poll
                    logger.exception("the run supervisor hit an error; retrying")
                self._cond.notify_all()
                self._cond.wait(timeout=self.poll_interval)

    def _recover(self) -> None:
        registry = self.registry
        resume: list[tuple[str, str]] = []
        queued: list[tuple[str, str, str]] = []  # (queued_at, owner, run_id)
        now = datetime.now(UTC)
        for owner, run_id in registry.live_runs():
            if run_id in self._running or (owner, run_id) in self._queue:
                continue
            try:
                record = registry.get(owner, run_id)
            except RunNotFound:
                continue
            if record.state in (RunState.CREATED, RunState.VALIDATING):
                age = (now - parse_time(record.updated_at)).total_seconds()
                if age > STALE_VALIDATION_SECONDS:
                    reason = "the service restarted while validating this run; start it again"
                    self._end(owner, run_id, RunState.FAILED, reason)
                continue
            if registry.cancel_requested(owner, run_id):
                self._end(owner, run_id, RunState.CANCELLED, CANCELLED_BY_USER)
            elif _external(record):
                continue  # waits for, or is trained by, its multi-node launcher
            elif record.state is RunState.QUEUED:
                # A record from before queued_at existed: its creation is the closest guess.
                queued.append((record.queued_at or record.created_at, owner, run_id))
            elif record.state in WORKER_STATES:
                registry.append_events(owner, run_id, [{
                    "type": "log", "level": "warning",
                    "message": f"the trainer service restarted while the run was "
                               f"{record.state.value}; resuming from the last checkpoint",
                }])  # fmt: skip
                resume.append((owner, run_id))
        # Each owner's resumed runs go to the head of their queue, oldest first; walking the
        # owners in the order of their oldest resumed run makes them wait in that order too.
        by_owner: dict[str, list[str]] = {}
        for owner, run_id in resume:
            by_owner.setdefault(owner, []).append(run_id)
        for owner, run_ids in by_owner.items():
            for run_id in reversed(run_ids):
                self._queue.appendleft(owner, run_id)
        for _queued_at, owner, run_id in sorted(queued):
            self._queue.append(owner, run_id)
        self._cond.notify_all()

    def _launch(self) -> None:
        registry = self.registry
        while self._queue and len(self._running) < self.max_concurrent and not self._stopping:
            owner, run_id = self._queue.popleft()  # the fair pick: see FairQueue
            try:
                record = registry.get(owner, run_id)
            except RunNotFound:
                continue
            if record.is_terminal:
                continue
            if registry.cancel_requested(owner, run_id):
                self._end(owner, run_id, RunState.CANCELLED, CANCELLED_BY_USER)
                continue
            if record.state not in WORKER_STATES | {RunState.QUEUED}:
                logger.warning("not launching run %s: it is %s", run_id, record.state.value)
                continue
            if _external(record):
                continue  # submit and _recover never queue one; its launcher starts it
            first = {"started_at": utc_now()} if record.started_at is None else {}
            record = registry.update(owner, run_id, attempt=record.attempt + 1, **first)
            if self._spawn(record):
                self._queue.served(owner)

    def _spawn(self, record: RunRecord) -> bool:
        """Start a worker for the run; whether it started (if not, the run is FAILED)."""
        owner, run_id = record.owner, record.run_id
        folder = self.scratch_dir / owner / run_id
        (folder / "work").mkdir(parents=True, exist_ok=True)
        log_path = folder / f"worker-{record.attempt}.log"
        command = [
            sys.executable, "-m", "searchtuner.runs.worker",
            "--store", self._store_uri_for_workers(), "--owner", owner, "--run", run_id,
            "--scratch", str(folder / "work"),
        ]  # fmt: skip
        env = self._worker_env()
        processes = record.request.processes_per_node
        if processes > 1:
            command = torchrun_command(command[1:], processes, watch_pid=os.getpid())
            # torchrun would pin each process to one thread; share the node's cores instead.
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
        try:
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env=env, start_new_session=True, close_fds=True,
                )  # fmt: skip
        except OSError as err:
            self._end(owner, run_id, RunState.FAILED,
                      f"could not start the trainer worker ({err}); check the service's "
                      "Python environment and scratch_dir, then start the run again")  # fmt: skip
            return False
        logger.info("run %s: worker pid %d (attempt %d)", run_id, process.pid, record.attempt)
        self._running[run_id] = _Worker(owner, run_id, process, log_path)
        return True

    def _store_uri_for_workers(self) -> str:
        store = self._store
        # A relative local path would mean another folder if a worker's cwd ever differed.
        return store.uri() if store is not None else self.store_uri

    def _worker_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        # The worker imports this very searchtuner, installed or not.
        package_root = str(Path(searchtuner.__file__).resolve().parent.parent)
        paths = [package_root, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        return env

    def _escalate(self) -> None:
        now = time.monotonic()
        for worker in self._running.values():
            if (
                worker.term_sent is not None
                and not worker.kill_sent
                and now - worker.term_sent >= self.cancel_grace
            ):
                self._signal(worker, signal.SIGKILL)
                worker.kill_sent = True

    def _reap(self) -> None:
        for run_id, worker in list(self._running.items()):
            code = worker.process.poll()
            if code is None:
                continue
            self._signal(worker, signal.SIGKILL)  # what the worker started, if still there
            try:
                self._after_exit(worker, code)
            except SearchTunerError as err:
                # The store failed: keep the worker listed and decide on the next round.
                logger.warning("run %s: cannot record the worker's exit yet: %s", run_id, err)
                continue
            del self._running[run_id]

    def _after_exit(self, worker: _Worker, code: int) -> None:
        registry, owner, run_id = self.registry, worker.owner, worker.run_id
        try:
            record = registry.get(owner, run_id)
        except RunNotFound:
            return  # deleted meanwhile
        if record.is_terminal:
            self._clean(worker)
            return
        if worker.cancel or registry.cancel_requested(owner, run_id):
            self._end(owner, run_id, RunState.CANCELLED, CANCELLED_BY_USER)
            self._clean(worker)
            return
        how = describe_exit(code)
        crashes = record.crashes + 1
        registry.update(owner, run_id, crashes=crashes)
        events: list[dict[str, Any]] = []
        tail = _tail(worker.log_path)
        if tail:
            events.append({"type": "log", "level": "error",
                           "message": f"the worker's last output:\n{tail}"})  # fmt: skip
        if crashes < self.max_attempts:
            events.append({"type": "log", "level": "warning",
                           "message": f"worker exited with {how}; resuming from the last "
                                      f"checkpoint (attempt {crashes + 1} of "
                                      f"{self.max_attempts})",
                           "data": {"exit": how, "crashes": crashes}})  # fmt: skip
            registry.append_events(owner, run_id, events)
            self._queue.appendleft(owner, run_id)  # first of its owner's runs, at its turn
            return
        registry.append_events(owner, run_id, events)
        reason = f"the trainer worker crashed {crashes} times (last: {how}); see the logs"
        self._end(owner, run_id, RunState.FAILED, reason)
        self._clean(worker)

    def _after_stop(self, worker: _Worker) -> None:
        registry, owner, run_id = self.registry, worker.owner, worker.run_id
        try:
            record = registry.get(owner, run_id)
        except RunNotFound:
            return
        if record.is_terminal:
            self._clean(worker)
        elif worker.cancel or registry.cancel_requested(owner, run_id):
            self._end(owner, run_id, RunState.CANCELLED, CANCELLED_BY_USER)
            self._clean(worker)
        else:
            registry.append_events(owner, run_id, [{
                "type": "log", "level": "warning",
                "message": "the trainer service stopped; the run resumes from its last "
                           "checkpoint when the service starts again",
            }])  # fmt: skip

    def _end(self, owner: str, run_id: str, state: RunState, reason: str) -> RunRecord:
        """Write a terminal state, unless the run already has one."""
        record = self.registry.get(owner, run_id)
        if record.is_terminal:
            return record
        return self.registry.transition(owner, run_id, state, reason=reason)

    def _clean(self, worker: _Worker) -> None:
        shutil.rmtree(self.scratch_dir / worker.owner / worker.run_id / "work", ignore_errors=True)

    @staticmethod
    def _signal(worker: _Worker, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
            os.killpg(worker.process.pid, sig)


def _external(record: RunRecord) -> bool:
    """Whether an external multi-node launcher, not this supervisor, starts the run."""
    return record.request.nnodes > 1


def torchrun_command(
    worker: list[str], processes_per_node: int, *, watch_pid: int | None = None
) -> list[str]:
    """The command that starts ``worker`` (``["-m", "searchtuner.runs.worker", ...]``) as
    ``processes_per_node`` data-parallel processes on this node.

    ``--standalone`` picks a free rendezvous port on this host; torchrun does not restart
    failed processes (the supervisor resumes the run from its last checkpoint instead), and
    the processes watch ``watch_pid`` (the supervisor): torchrun's agent outlives a killed
    service, its workers must not. ``--`` after the module ends torchrun's options: it would
    otherwise take the worker's ``--run`` for an abbreviation of its ``--run-path``.
    """
    if worker[:1] != ["-m"]:
        raise ValueError(f"expected ['-m', module, ...], got {worker[:2]}")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={processes_per_node}", "--max-restarts=0", *worker[:2], "--",
        *worker[2:],
    ]  # fmt: skip
    if watch_pid is not None:
        command += ["--watch-pid", str(watch_pid)]
    return command


def describe_exit(code: int) -> str:
    """``exit code 1`` or ``killed by signal 9 (SIGKILL)`` for a Popen return code."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            return f"killed by signal {-code}"
        return f"killed by signal {-code} ({name})"
    return f"exit code {code}"


def _tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - chars * 4))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return text[-chars:].strip()
