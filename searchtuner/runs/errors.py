"""Errors of the run lifecycle; each message says what to do next."""

from __future__ import annotations

from searchtuner.errors import ConfigError, SearchTunerError
from searchtuner.store.errors import NotFound


class InvalidTransition(SearchTunerError):
    """A state change that the run lifecycle does not allow (e.g. FINISHED → TRAINING)."""


class RunNotFound(NotFound):
    """No run with this id for this owner (never created, deleted, or another owner's)."""


class RunIsLive(ConfigError):
    """An operation that needs a finished run (delete) was asked of a live one."""
