"""RateWindow: things per second over a sliding window."""

from __future__ import annotations

import pytest

from searchtuner.telemetry.rate_window import RateWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_covers_the_last_window_only() -> None:
    clock = Clock()
    window = RateWindow(10.0, clock=clock)
    assert window.rate() == 0.0
    window.add(50)
    clock.now += 4
    window.add(30)
    assert window.rate() == pytest.approx(8.0)  # 80 in the last 10 s
    clock.now += 7  # the first batch is 11 s old
    assert window.rate() == pytest.approx(3.0)
    clock.now += 10
    assert window.rate() == 0.0


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        RateWindow(0)
