"""Who launches a run: the trainer service (one node), or an external multi-node launcher.

The trainer service's :class:`~searchtuner.runs.supervisor.RunSupervisor` starts processes
on its own node only. A deployment that also has a multi-node launcher (the Kubernetes Job in
``k8s/training``) says so with ``SEARCHTUNER_MAX_NODES``: the converter then accepts
``nnodes`` up to that value, and the supervisor leaves such runs QUEUED for the launcher.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from searchtuner.errors import ConfigError

MAX_NODES_ENV = "SEARCHTUNER_MAX_NODES"
"""The most nodes a run may span in this deployment (default 1: no multi-node launcher)."""

GPUS_PER_NODE_ENV = "SEARCHTUNER_GPUS_PER_NODE"
"""The GPUs a training node has, where runs train on other machines than the converter's
(Kubernetes: the trainer pod or the Job's pods). Unset: the converter's own machine is the
training machine, and its CUDA devices are counted."""


def max_nodes(env: Mapping[str, str] | None = None) -> int:
    """The deployment's ``SEARCHTUNER_MAX_NODES`` (default 1).

    Args:
        env: the variables to read (default ``os.environ``).

    Raises:
        ConfigError: the value is not a positive integer (a misconfigured deployment).
    """
    environ = os.environ if env is None else env
    text = environ.get(MAX_NODES_ENV, "").strip()
    if not text:
        return 1
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"{MAX_NODES_ENV}={text!r} is not a positive integer; set it to the most nodes "
            "your multi-node launcher starts a run on, or leave it unset (1)"
        )
    return value


def gpus_per_node(env: Mapping[str, str] | None = None) -> int | None:
    """The deployment's ``SEARCHTUNER_GPUS_PER_NODE``, or None where unset (count the GPUs of
    this machine instead).

    Args:
        env: the variables to read (default ``os.environ``).

    Raises:
        ConfigError: the value is not an integer >= 0 (a misconfigured deployment).
    """
    environ = os.environ if env is None else env
    text = environ.get(GPUS_PER_NODE_ENV, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(
            f"{GPUS_PER_NODE_ENV}={text!r} is not an integer >= 0; set it to the GPUs of a "
            "training node (the trainer pod's nvidia.com/gpu), or leave it unset where runs "
            "train on this machine"
        )
    return value


def waiting_message(run_id: str, nnodes: int, processes_per_node: int) -> str:
    """The event of a multi-node run the supervisor leaves QUEUED: what starts it, and how."""
    return (
        f"queued for a multi-node launch: nnodes={nnodes} × processes_per_node="
        f"{processes_per_node}; this trainer service does not start it. Start the Job in "
        f"k8s/training (torchrun or pytorchjob) with SEARCHTUNER_RUN={run_id} (docs/deploy.md, "
        '"Multi-node training"); its rank 0 moves the run on to PREPARING'
    )
