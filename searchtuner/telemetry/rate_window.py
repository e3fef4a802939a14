"""RateWindow: how many things per second over the last minute (ingested documents, say)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from searchtuner.errors import ConfigError


class RateWindow:
    """Counts added over a sliding window of ``window`` seconds, as a rate per second.

    Thread-safe. Memory is one entry per :meth:`add` within the window.

    Args:
        window: seconds looked back.
        clock: seconds, monotonic (tests).
    """

    def __init__(self, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not window > 0:
            raise ConfigError(f"window must be a positive number of seconds, got {window!r}")
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._events: deque[tuple[float, float]] = deque()
        self._total = 0.0

    def add(self, amount: float) -> None:
        """Count ``amount`` things now."""
        with self._lock:
            now = self._clock()
            self._events.append((now, amount))
            self._total += amount
            self._expire(now)

    def rate(self) -> float:
        """Things per second over the last ``window`` seconds."""
        with self._lock:
            self._expire(self._clock())
            return self._total / self.window

    def _expire(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.window:
            _, amount = self._events.popleft()
            self._total -= amount
        if not self._events:
            self._total = 0.0  # no drift from float sums
