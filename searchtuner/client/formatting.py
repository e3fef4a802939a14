"""Runs, events and metrics as text for people: log lines and tables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class LogFormatter:
    """Turns a run's events into log lines: ``<time> <STATE> [LEVEL] <message>``.

    The state column is the state the run was in when the event happened, followed from the
    ``state`` events (as the service's own log shows it); the lines of a multi-line message
    (a traceback) are indented under the first.

    Args:
        state: the run's state before the first event.
    """

    def __init__(self, state: str = "") -> None:
        self.state = state

    def lines(self, event: Mapping[str, Any]) -> list[str]:
        """The log lines of one event (a dict with ``type``, ``time``, ``level``...)."""
        data = event.get("data") or {}
        if event.get("type") == "state":
            self.state = str(data.get("state", self.state))
        time = str(event.get("time", ""))
        stamp = time[:19] + "Z" if len(time) >= 19 else time
        level = str(event.get("level", "info"))
        shown = "" if level in ("info", "debug") else f"{level.upper()} "
        first, *rest = str(event.get("message", "")).splitlines() or [""]
        return [f"{stamp} {self.state:<10} {shown}{first}".rstrip(), *(f"    {r}" for r in rest)]


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], right: Sequence[int] = ()
) -> str:
    """A plain text table with a header row; columns in ``right`` are right-aligned."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return float(value)


def metrics_table(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """Metrics before and after fine-tuning: ``metric | before | after | change``.

    Every metric either side has is a row, sorted by name; a missing value shows as ``-``;
    the change is absolute, with the relative change in brackets when ``before`` is not 0.
    Returns ``""`` when there are no metrics.
    """
    names = sorted(set(before) | set(after))
    if not names:
        return ""
    rows = []
    for name in names:
        old, new = _number(before.get(name)), _number(after.get(name))
        change = "-"
        if old is not None and new is not None:
            change = f"{new - old:+.4f}"
            if old != 0:
                change += f" ({(new - old) / abs(old):+.1%})"
        rows.append(
            [
                name,
                "-" if old is None else f"{old:.4f}",
                "-" if new is None else f"{new:.4f}",
                change,
            ]
        )
    return format_table(["metric", "before", "after", "change"], rows, right=(1, 2, 3))


def progress_text(progress: Mapping[str, Any]) -> str:
    """A run's training progress in a few words, e.g. ``step 40/120, epoch 1/3, loss 0.412``."""
    parts = []
    step, total = progress.get("step"), progress.get("total_steps")
    if step is not None:
        parts.append(f"step {step}/{total}" if total else f"step {step}")
    epoch, epochs = progress.get("epoch"), progress.get("epochs")
    if epoch is not None:
        parts.append(f"epoch {epoch}/{epochs}" if epochs else f"epoch {epoch}")
    loss = _number(progress.get("loss"))
    if loss is not None:
        parts.append(f"loss {loss:.4g}")
    eta = _number(progress.get("eta_seconds"))
    if eta is not None and eta > 0:
        parts.append(f"about {eta:.0f} s left")
    return ", ".join(parts)


def percent(progress: Mapping[str, Any], state: str) -> str:
    """How far a run is, as ``42%``; ``100%`` once FINISHED, ``-`` when unknown."""
    if state == "FINISHED":
        return "100%"
    fraction = _number(progress.get("fraction"))
    if fraction is None:
        step, total = _number(progress.get("step")), _number(progress.get("total_steps"))
        fraction = step / total if step is not None and total else None
    return "-" if fraction is None else f"{min(max(fraction, 0.0), 1.0):.0%}"
