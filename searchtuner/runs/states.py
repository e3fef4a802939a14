"""The run state machine: which states exist and which changes between them are legal.

::

    CREATED → VALIDATING → QUEUED → PREPARING → TRAINING → EVALUATING → PUBLISHING → FINISHED
       └──────────┴──────────┴─────────┴───────────┴───────────┴────────────┴──→ FAILED | CANCELLED

A worker that crashed (or whose service restarted) is launched again and starts over at
PREPARING, so PREPARING, TRAINING, EVALUATING and PUBLISHING may also go back to PREPARING.
"""

from __future__ import annotations

import itertools
from enum import StrEnum

from searchtuner.runs.errors import InvalidTransition


class RunState(StrEnum):
    """Where a run is; the values are what the API shows, so they equal the names."""

    CREATED = "CREATED"
    VALIDATING = "VALIDATING"
    QUEUED = "QUEUED"
    PREPARING = "PREPARING"
    TRAINING = "TRAINING"
    EVALUATING = "EVALUATING"
    PUBLISHING = "PUBLISHING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FORWARD: tuple[RunState, ...] = (
    RunState.CREATED,
    RunState.VALIDATING,
    RunState.QUEUED,
    RunState.PREPARING,
    RunState.TRAINING,
    RunState.EVALUATING,
    RunState.PUBLISHING,
    RunState.FINISHED,
)
"""The path of a run that succeeds, in order."""

TERMINAL_STATES: frozenset[RunState] = frozenset(
    {RunState.FINISHED, RunState.FAILED, RunState.CANCELLED}
)
"""States a run never leaves."""

LIVE_STATES: frozenset[RunState] = frozenset(RunState) - TERMINAL_STATES
"""States of a run that is still going (or waiting to go)."""

WORKER_STATES: frozenset[RunState] = frozenset(
    {RunState.PREPARING, RunState.TRAINING, RunState.EVALUATING, RunState.PUBLISHING}
)
"""States in which a worker process owns the run; a relaunched worker restarts at PREPARING."""


def _legal() -> dict[RunState, frozenset[RunState]]:
    legal: dict[RunState, set[RunState]] = {state: set() for state in RunState}
    for old, new in itertools.pairwise(FORWARD):
        legal[old].add(new)
    for state in LIVE_STATES:
        legal[state] |= {RunState.FAILED, RunState.CANCELLED}
    for state in WORKER_STATES:
        legal[state].add(RunState.PREPARING)
    return {state: frozenset(targets) for state, targets in legal.items()}


TRANSITIONS: dict[RunState, frozenset[RunState]] = _legal()
"""For each state, the states it may change to."""


def check_transition(old: RunState | str, new: RunState | str) -> None:
    """Refuse a state change the lifecycle does not allow.

    Args:
        old: the run's current state.
        new: the state asked for.

    Raises:
        InvalidTransition: the change is not legal; the message lists the legal ones.
    """
    old_state, new_state = RunState(old), RunState(new)
    allowed = TRANSITIONS[old_state]
    if new_state in allowed:
        return
    if old_state in TERMINAL_STATES:
        raise InvalidTransition(
            f"the run is {old_state.value} and cannot become {new_state.value}: a finished, "
            "failed or cancelled run never changes state again; start a new run instead"
        )
    names = ", ".join(sorted(s.value for s in allowed))
    raise InvalidTransition(
        f"a run cannot go from {old_state.value} to {new_state.value}; from {old_state.value} "
        f"it can go to: {names}"
    )
