"""Tables and log lines for people."""

from __future__ import annotations

from searchtuner.client.formatting import (
    LogFormatter,
    format_table,
    metrics_table,
    percent,
    progress_text,
)


def test_metrics_table_compares_before_and_after() -> None:
    before = {"ndcg@10": 0.5, "map@10": 0.4, "recall@10": 0.0}
    after = {"map@10": 0.5, "ndcg@10": 0.55, "recall@10": 0.25, "mrr@10": 0.61}
    lines = metrics_table(before, after).splitlines()
    assert lines[0].split() == ["metric", "before", "after", "change"]
    assert set(lines[1]) == {"-", " "}
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert list(rows) == ["map@10", "mrr@10", "ndcg@10", "recall@10"]  # sorted by name
    assert rows["map@10"] == ["0.4000", "0.5000", "+0.1000", "(+25.0%)"]
    assert rows["ndcg@10"] == ["0.5000", "0.5500", "+0.0500", "(+10.0%)"]
    assert rows["mrr@10"] == ["-", "0.6100", "-"]  # only after: nothing to compare
    assert rows["recall@10"] == ["0.0000", "0.2500", "+0.2500"]  # no relative change from 0
    widths = {len(line) for line in lines[:1] + lines[2:] if line.endswith(")")}
    assert len(widths) == 1  # columns line up


def test_a_drop_shows_a_minus_sign() -> None:
    table = metrics_table({"map@10": 0.5}, {"map@10": 0.25})
    assert "-0.2500 (-50.0%)" in table


def test_no_metrics_no_table() -> None:
    assert metrics_table({}, {}) == ""


def test_format_table_aligns_columns() -> None:
    text = format_table(["id", "n"], [["a", "1"], ["bbb", "100"]], right=(1,))
    assert text.splitlines() == ["id     n", "---  ---", "a      1", "bbb  100"]


def test_log_lines_follow_the_state() -> None:
    formatter = LogFormatter()
    state = {
        "type": "state",
        "time": "2026-11-23T18:00:01.250Z",
        "level": "info",
        "message": "training started",
        "data": {"state": "TRAINING"},
    }
    warning = {
        "type": "log",
        "time": "2026-11-23T18:00:02.000Z",
        "level": "warning",
        "message": "loss is nan\nTraceback: here",
        "data": {},
    }
    assert formatter.lines(state) == ["2026-11-23T18:00:01Z TRAINING   training started"]
    assert formatter.lines(warning) == [
        "2026-11-23T18:00:02Z TRAINING   WARNING loss is nan",
        "    Traceback: here",
    ]


def test_progress_in_words_and_percent() -> None:
    progress = {"step": 40, "total_steps": 120, "epoch": 1, "epochs": 3, "loss": 0.41234}
    assert progress_text(progress) == "step 40/120, epoch 1/3, loss 0.4123"
    assert percent(progress, "TRAINING") == "33%"
    assert percent({"fraction": 0.5}, "TRAINING") == "50%"
    assert percent({}, "QUEUED") == "-"
    assert percent({}, "FINISHED") == "100%"
