"""The run state machine: every legal change passes, every other one is refused."""

from __future__ import annotations

import itertools

import pytest

from searchtuner.errors import SearchTunerError
from searchtuner.runs import (
    LIVE_STATES,
    TERMINAL_STATES,
    InvalidTransition,
    RunState,
    check_transition,
)

S = RunState
CHAIN = [S.CREATED, S.VALIDATING, S.QUEUED, S.PREPARING, S.TRAINING, S.EVALUATING,
         S.PUBLISHING, S.FINISHED]  # fmt: skip
RESUMABLE = {S.PREPARING, S.TRAINING, S.EVALUATING, S.PUBLISHING}


def _expected_legal() -> set[tuple[RunState, RunState]]:
    legal = set(itertools.pairwise(CHAIN))
    legal |= {(old, end) for old in LIVE_STATES for end in (S.FAILED, S.CANCELLED)}
    legal |= {(old, S.PREPARING) for old in RESUMABLE}
    return legal


def test_values_are_the_names_and_the_sets_partition_the_states() -> None:
    assert all(state.value == state.name for state in RunState)
    assert {S.FINISHED, S.FAILED, S.CANCELLED} == TERMINAL_STATES
    assert set(RunState) == LIVE_STATES | TERMINAL_STATES
    assert not LIVE_STATES & TERMINAL_STATES


@pytest.mark.parametrize(("old", "new"), sorted(_expected_legal()))
def test_legal_transitions_pass(old: RunState, new: RunState) -> None:
    check_transition(old, new)
    check_transition(old.value, new.value)  # strings, as read from JSON


@pytest.mark.parametrize(
    ("old", "new"), sorted(set(itertools.product(RunState, RunState)) - _expected_legal())
)
def test_illegal_transitions_are_refused(old: RunState, new: RunState) -> None:
    with pytest.raises(InvalidTransition) as caught:
        check_transition(old, new)
    assert isinstance(caught.value, SearchTunerError)
    message = str(caught.value)
    assert old.value in message and new.value in message
    if old in TERMINAL_STATES:
        assert "start a new run" in message
    else:
        assert "it can go to:" in message  # the legal moves are listed
