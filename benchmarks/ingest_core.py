"""Ingest benchmark: a million short labelled texts through DatasetWriter into a LocalStore.

The data is generated deterministically (seeded; no downloads): texts of 40-80 characters
from a vocabulary of 5,000 made-up words, labels from 40 classes, 2% of the texts repeated
(so the duplicate detector has work to do). Ids are fixed, so shards are the same bytes in
every run.

Each measurement runs in its own subprocess, one after another, so peak memory is that
measurement's alone:

- ``writer``: documents are generated one batch at a time and handed to
  ``DatasetWriter.add``; ``commit`` writes the manifest. ``seconds`` counts add + commit
  (validation, encoding, hashing, writing); ``generate_seconds`` the building of the
  documents, which the caller pays whatever the store. Then the dataset is read back with
  ``open_dataset(...).iter_docs()`` (``read_seconds``).
- ``validate_list`` (the peer): ``validate()`` over the same documents held in one list in
  memory, the way data is validated before this module existed. Its time and peak memory
  give the writer's numbers a same-machine, same-run reference: the ratio is what to compare
  across runs on a noisy machine.

Memory: ``baseline_rss_mb`` is the resident size after imports, before any document exists;
``peak_rss_mb`` the high-water mark (VmHWM) at the end; ``rss_growth_mb`` their difference.

Usage::

    python benchmarks/ingest_core.py                 # 1,000,000 documents, batches of 2,000
    python benchmarks/ingest_core.py --n 100000 --batch-size 5000

Prints one JSON object on stdout: ``writer``, ``validate_list`` and ``comparison``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

N_LABELS = 40
VOCABULARY = 5_000
REPEAT_SHARE = 0.02


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}; this benchmark needs Linux")


def generate(n: int, batch_size: int, seed: int = 0) -> Iterator[list[Any]]:
    """``n`` labelled short texts in batches, the same for the same seed."""
    from searchtuner.data import LabeledDoc

    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(VOCABULARY)]
    labels = [f"class_{i:02d}" for i in range(N_LABELS)]
    recent: list[tuple[str, str]] = []
    batch: list[Any] = []
    for index in range(n):
        if recent and rng.random() < REPEAT_SHARE:
            text, label = rng.choice(recent)
        else:
            length = rng.randint(40, 80)
            text = " ".join(rng.choices(words, k=14))[:length].strip()
            label = labels[rng.randrange(N_LABELS)]
            if len(recent) < 10_000:
                recent.append((text, label))
            else:
                recent[rng.randrange(len(recent))] = (text, label)
        batch.append(LabeledDoc(id=f"{index:032x}", text=text, label=label))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_writer(n: int, batch_size: int) -> dict[str, Any]:
    from searchtuner.data.stored import DatasetWriter, open_dataset
    from searchtuner.store import LocalStore

    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as folder:
        store = LocalStore(folder).for_owner("bench")
        baseline = _status_mb("VmRSS")
        writer = DatasetWriter(store, kind="labeled", name="bench")
        spent = generating = 0.0
        batches = generate(n, batch_size)
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            generating += time.perf_counter() - start
            if batch is None:
                break
            start = time.perf_counter()
            writer.add(batch)
            spent += time.perf_counter() - start
            del batch
        start = time.perf_counter()
        info = writer.commit()
        commit_seconds = time.perf_counter() - start
        spent += commit_seconds
        peak_write = _status_mb("VmHWM")
        start = time.perf_counter()
        read = sum(1 for _ in open_dataset(store, info.handle).iter_docs())
        read_seconds = time.perf_counter() - start
        stored = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    return {
        "docs": n,
        "batch_size": batch_size,
        "seconds": round(spent, 3),
        "docs_per_s": round(n / spent),
        "commit_seconds": round(commit_seconds, 3),
        "generate_seconds": round(generating, 3),
        "end_to_end_docs_per_s": round(n / (spent + generating)),
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(peak_write, 1),
        "rss_growth_mb": round(peak_write - baseline, 1),
        "bytes_stored": stored,
        "shards": len(info.shards),
        "report_ok": info.report.ok,
        "findings": {f.code: f.count for f in info.report.findings},
        "read_docs": read,
        "read_seconds": round(read_seconds, 3),
        "read_docs_per_s": round(read / read_seconds),
        "handle": info.handle,
    }


def run_validate_list(n: int, batch_size: int) -> dict[str, Any]:
    from searchtuner.data import validate

    baseline = _status_mb("VmRSS")
    start = time.perf_counter()
    docs = [doc for batch in generate(n, batch_size) for doc in batch]
    generating = time.perf_counter() - start
    start = time.perf_counter()
    report = validate(docs, kind="labeled")
    spent = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    return {
        "docs": n,
        "seconds": round(spent, 3),
        "docs_per_s": round(n / spent),
        "generate_seconds": round(generating, 3),
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_growth_mb": round(peak - baseline, 1),
        "findings": {f.code: f.count for f in report.findings},
    }


WORKERS = {"writer": run_writer, "validate_list": run_validate_list}


def _in_subprocess(worker: str, n: int, batch_size: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", worker, "--n", str(n)]
    command += ["--batch-size", str(batch_size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the {worker} subprocess failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="documents to write")
    parser.add_argument("--batch-size", type=int, default=2_000, help="documents per batch")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(WORKERS[args.worker](args.n, args.batch_size)))
        return
    writer = _in_subprocess("writer", args.n, args.batch_size)
    peer = _in_subprocess("validate_list", args.n, args.batch_size)
    same = writer["findings"] == peer["findings"]
    comparison = {
        "writer_seconds_over_validate_seconds": round(writer["seconds"] / peer["seconds"], 3),
        "writer_rss_growth_over_validate_rss_growth": round(
            writer["rss_growth_mb"] / max(peer["rss_growth_mb"], 1e-9), 3
        ),
        "same_findings": same,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    print(json.dumps({"writer": writer, "validate_list": peer, "comparison": comparison}, indent=2))


if __name__ == "__main__":
    main()
