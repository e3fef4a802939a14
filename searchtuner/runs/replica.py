"""The worker of ranks 1..N-1 of a data-parallel run: it trains in step with rank 0, silently.

``python -m searchtuner.runs.worker`` started by torchrun runs :func:`run_worker` on rank 0
and :func:`run_replica` on every other rank. A replica reads the run's request and datasets
and the checkpoint rank 0 resumes from, and trains its shard of every batch; it writes
nothing: no state, event, checkpoint or model. Rank 0 holds the same weights and does all
of that.

A replica leaves when training ends, when rank 0 has ended the run (a failure rank 0
recorded while this process waits in a collective; seen in the run record within
:data:`RUN_CHECK_INTERVAL`), or when torchrun stops it because another rank failed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from pathlib import Path

from searchtuner.errors import SearchTunerError
from searchtuner.runs.errors import RunNotFound
from searchtuner.runs.registry import RunRegistry
from searchtuner.runs.request import open_request_dataset, registered_model_name
from searchtuner.store.base import Store
from searchtuner.training import distributed
from searchtuner.training.trainer import Trainer

logger = logging.getLogger("searchtuner.runs.replica")

EXIT_OK = 0
EXIT_CRASHED = 1
EXIT_USAGE = 2
RUN_CHECK_INTERVAL = 2.0
"""Seconds between a replica's looks at whether rank 0 has ended the run."""
REQUEST_ERROR_GRACE = 30.0
"""Seconds a replica that met an error in the request waits for rank 0 to record it."""


def run_replica(
    store: Store, owner: str, run_id: str, scratch: str | Path, env: distributed.DistributedEnv
) -> int:
    """Train one run as rank ``env.rank`` (not 0) of its process group, writing nothing.

    Returns:
        The exit code: 0 when training ended (or the run was over already), 1 after an
        error (torchrun then stops the other ranks), 2 when the run does not exist.
    """
    from searchtuner.runs.worker import _build  # the worker imports this module lazily

    registry = RunRegistry(store)
    try:
        record = registry.get(owner, run_id)
    except RunNotFound as err:
        logger.error("%s", err)
        return EXIT_USAGE
    if record.is_terminal:
        return EXIT_OK
    _leave_when_ended(registry, owner, run_id)
    request = record.request
    try:
        config = request.train_config()
        device = distributed.device_for(config.device, env.local_rank, env.world_size)
        distributed.init_process_group(env, device)
        mine = registry.owner_store(owner)
        train_docs = open_request_dataset(mine, request.train_data, "train_data").docs()
        eval_docs = None
        if request.eval_data is not None:
            eval_docs = open_request_dataset(mine, request.eval_data, "eval_data").docs()
        model = _build(registered_model_name(request.model), request.model_options)
        trainer = Trainer(
            model, train_docs, eval_data=eval_docs, config=config, rank=env.rank,
            world_size=env.world_size, local_rank=env.local_rank,
        )  # fmt: skip
        key: str | None = distributed.broadcast_object(None)  # what rank 0 resumed from
        if key is not None:
            local = Path(scratch) / f"rank-{env.rank}" / Path(key).name
            try:
                mine.download(key, local)
                trainer.load_checkpoint(local)
            finally:
                local.unlink(missing_ok=True)
        trainer.fit()
        distributed.teardown()  # not after an error: see the worker
    except (SearchTunerError, FloatingPointError) as err:
        # Rank 0 meets the same problem and records it as the run's reason: exiting first
        # would make torchrun stop rank 0 before it can.
        logger.error("rank %d stopped: %s", env.rank, err)
        _wait_until_ended(registry, owner, run_id, REQUEST_ERROR_GRACE)
        return EXIT_CRASHED
    except Exception:
        logger.error("rank %d failed:\n%s", env.rank, traceback.format_exc())
        return EXIT_CRASHED
    return EXIT_OK


def _wait_until_ended(registry: RunRegistry, owner: str, run_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if registry.get(owner, run_id).is_terminal:
                return
        except SearchTunerError:
            return
        time.sleep(min(RUN_CHECK_INTERVAL / 4, max(0.0, deadline - time.monotonic())))


def _leave_when_ended(registry: RunRegistry, owner: str, run_id: str) -> None:
    """Exit (code 0) once the run is terminal: rank 0 ended it and will not train on."""

    def watch() -> None:
        while True:
            time.sleep(RUN_CHECK_INTERVAL)
            try:
                ended = registry.get(owner, run_id).is_terminal
            except SearchTunerError:
                continue  # the store hiccuped, or the run was deleted: torchrun decides
            if ended:
                os.write(2, b"searchtuner replica: rank 0 ended the run; exiting\n")
                os._exit(EXIT_OK)

    threading.Thread(target=watch, name="run-watch", daemon=True).start()
