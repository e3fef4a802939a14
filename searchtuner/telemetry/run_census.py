"""RunCensus: how many runs are in each state, and how fast the training ones go, from the store.

The run registry is the truth about runs (any process may have changed a state: the converter
fails a request, a worker finishes, the supervisor cancels), so the counts are read from it,
not kept in memory. Reading every record at every scrape would cost one object per run ever
made; terminal states never change, so a run read once as FINISHED, FAILED or CANCELLED is
remembered and only live runs are read again. A look costs one listing per owner plus one read
per live run, and happens at most once per ``min_interval`` seconds (one collection reads
several gauges: they share one look). With ``all_owners``, the owners are those of the
registry's owner index (:meth:`RunRegistry.owners`), read again at each look: an owner's first
run is counted from the next look on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from searchtuner.errors import ConfigError, DataError, SearchTunerError
from searchtuner.runs.errors import RunNotFound
from searchtuner.runs.registry import LIVE_INDEX, RUN_INDEX, RunRegistry
from searchtuner.runs.states import TERMINAL_STATES, RunState

logger = logging.getLogger("searchtuner.telemetry")

LOOK_INTERVAL = 1.0
"""Seconds a look at the registry is reused: the gauges of one collection share it."""


@dataclass(frozen=True)
class Census:
    """One look at the registry.

    Attributes:
        states: runs per state, every state present (0 where none).
        samples_per_second: ``{run_id: samples/s}`` of the runs in TRAINING that reported
            progress.
    """

    states: dict[RunState, int] = field(default_factory=lambda: dict.fromkeys(RunState, 0))
    samples_per_second: dict[str, float] = field(default_factory=dict)


class RunCensus:
    """Counts the runs of the given owners, and of every owner with a live run, by state.

    Args:
        registry: the run registry (over the root store).
        owners: owners whose finished runs are counted too (the service's owner); owners with
            a live run are found in the registry's live index.
        all_owners: count the runs of every owner that ever created one (what a service
            with many owners wants), not only of ``owners`` and of owners with a live run.
        min_interval: seconds during which a look is reused instead of read again.
        clock: seconds, monotonic (tests).
    """

    def __init__(
        self,
        registry: RunRegistry,
        owners: Iterable[str] = (),
        *,
        all_owners: bool = False,
        min_interval: float = LOOK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.owners = tuple(owners)
        self.all_owners = all_owners
        self.min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._ended: dict[tuple[str, str], RunState] = {}
        self._last: Census | None = None
        self._read_at = 0.0

    def look(self) -> Census | None:
        """The counts now (or from a look less than ``min_interval`` seconds ago).

        Returns ``None`` when the store cannot be read: an exporter then reports nothing for
        this round rather than numbers that are not true.
        """
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._read_at < self.min_interval:
                return self._last
            try:
                census = self._read()
            except SearchTunerError as err:
                logger.warning("cannot count the runs in the store: %s", err)
                return None
            self._last, self._read_at = census, now
            return census

    def _read(self) -> Census:
        census = Census()
        seen: set[tuple[str, str]] = set()
        for owner in self._owners():
            prefix = f"{RUN_INDEX}/"
            mine = self.registry.owner_store(owner)
            for key in list(mine.keys(prefix)):
                run = (owner, key[len(prefix) :])
                seen.add(run)
                state = self._ended.get(run)
                if state is None:
                    state = self._state(census, *run)
                if state is not None:
                    census.states[state] += 1
        # Deleted runs leave the index: forget them.
        for run in [run for run in self._ended if run not in seen]:
            del self._ended[run]
        return census

    def _state(self, census: Census, owner: str, run_id: str) -> RunState | None:
        try:
            record = self.registry.get(owner, run_id)
        except RunNotFound:  # deleted, or created but not yet written
            return None
        except (DataError, ConfigError) as err:  # a damaged record: its run is not counted
            logger.debug("run %s of %s is not counted: %s", run_id, owner, err)
            return None
        if record.state in TERMINAL_STATES:
            self._ended[(owner, run_id)] = record.state
        elif record.state is RunState.TRAINING:
            speed = (record.progress or {}).get("samples_per_second")
            if isinstance(speed, int | float) and not isinstance(speed, bool):
                census.samples_per_second[run_id] = float(speed)
        return record.state

    def _owners(self) -> list[str]:
        owners = dict.fromkeys(self.owners)
        if self.all_owners:  # the registry's owners include those with a live run
            owners.update(dict.fromkeys(self.registry.owners()))
            return list(owners)
        prefix = f"{LIVE_INDEX}/"
        for key in self.registry.store.keys(prefix):
            owner, _, _run = key[len(prefix) :].partition("/")
            owners.setdefault(owner)
        return list(owners)
