"""One real service for the end-to-end tests, and the data they upload."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from searchtuner.datasets import load_supersense
from tests.e2e.service import Service
from tests.scratch import free_disk

LABELS = 6
TRAIN_PER_LABEL = 16
EVAL_PER_LABEL = 6


def _rows(split: str, per_label: int) -> list[tuple[str, str]]:
    counts: dict[str, int] = {}
    rows = []
    for text, label in load_supersense(split):
        if label not in counts and len(counts) == LABELS:
            continue
        if counts.get(label, 0) < per_label:
            counts[label] = counts.get(label, 0) + 1
            rows.append((text, label))
    return rows


@pytest.fixture(scope="session")
def wordnet_rows() -> dict[str, list[tuple[str, str]]]:
    """A small labelled WordNet set: 6 supersenses, 16 train and 6 eval definitions each."""
    train = _rows("train", TRAIN_PER_LABEL)
    labels = {label for _, label in train}
    evaluation = [row for row in _rows("test", 10**6) if row[1] in labels]
    per: dict[str, int] = {}
    kept = []
    for text, label in evaluation:
        if per.get(label, 0) < EVAL_PER_LABEL:
            per[label] = per.get(label, 0) + 1
            kept.append((text, label))
    return {"train": train, "eval": kept}


@pytest.fixture(scope="session")
def wordnet_csv(
    tmp_path_factory: pytest.TempPathFactory, wordnet_rows: dict[str, list[tuple[str, str]]]
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("wordnet")
    paths = {}
    for split, rows in wordnet_rows.items():
        path = folder / f"{split}.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        paths[split] = path
    return paths


E2E = Path(__file__).parent
_done_with_service: list[Callable[[], None]] = []


@pytest.fixture(scope="session")
def service_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The data directory the service keeps for all of tests/e2e (restarts included)."""
    root = tmp_path_factory.mktemp("service")
    return root / "data", root / "service.log"


@pytest.fixture(scope="session")
def service(service_dirs: tuple[Path, Path]) -> Iterator[Service]:
    data, log = service_dirs
    running = Service(data, log).start()

    def done() -> None:
        running.stop()
        free_disk(data.parent)

    _done_with_service.append(done)
    yield running
    if done in _done_with_service:
        _done_with_service.remove(done)
        done()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Once the last end-to-end test is done, stop the shared service and delete what it
    stored (gigabytes of trained models and checkpoints), not only when the session ends."""
    if nextitem is None or E2E not in nextitem.path.parents:
        while _done_with_service:
            _done_with_service.pop()()
