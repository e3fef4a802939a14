"""The service's costs, each against a peer measured in the same run.

``ingest``: N short labelled texts (default one million) streamed into the running service,
over gRPC (the SDK's streamed appends) and over HTTP (a streamed CSV body), against the core
``DatasetWriter`` writing the same rows in this process. Prints docs/s and the ingest
executor process's peak memory during each upload (its ``VmHWM``, reset before each upload
through ``/proc/<pid>/clear_refs``).

``overhead``: the same small fine-tune (all-MiniLM-L6-v2 on a WordNet subset, with
evaluation before and after, published with ONNX) through the service, from ``POST /runs`` to
FINISHED, against ``searchtuner.train`` + ``publish_model`` called directly in a fresh process.
Prints the totals, the training phases and their ratio, and the fixed start-up cost.

    python benchmarks/service.py ingest [--docs 1000000] [--batch-size 5000]
    python benchmarks/service.py overhead [--repeat 2]

One JSON object on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.service import Service  # noqa: E402  (the e2e tests' launcher)

WORDS = [
    "river",
    "stone",
    "light",
    "quiet",
    "market",
    "garden",
    "engine",
    "letter",
    "winter",
    "silver",
    "paper",
    "window",
    "forest",
    "signal",
    "copper",
    "mirror",
    "harbor",
    "lantern",
    "meadow",
    "thunder",
]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- ingest -------------------------------------------------------------------------------


def write_texts(path: Path, n: int, labels: int = 40) -> int:
    """N distinct short texts (40-80 characters), labels cycling over ``labels`` classes."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(n):
            a, b, c = WORDS[i % 20], WORDS[(i // 20) % 20], WORDS[(i // 400) % 20]
            writer.writerow([f"the {a} {b} near the {c}, item number {i}", f"class-{i % labels}"])
    return path.stat().st_size


def process_named(name: str, ancestor: int) -> int:
    """The pid of the descendant of ``ancestor`` whose process name is ``name``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != name:
                continue
            pid = int(entry.name)
            parent = pid
            for _ in range(16):  # walk up the tree, bounded
                status = (Path("/proc") / str(parent) / "status").read_text()
                parent = int(status.split("PPid:")[1].split()[0])
                if parent == ancestor:
                    return pid
                if parent <= 1:
                    break
        except (OSError, IndexError, ValueError):
            continue
    raise RuntimeError(f"no process named {name!r} under pid {ancestor}")


def memory_mb(pid: int, field: str) -> float:
    status = (Path("/proc") / str(pid) / "status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


def reset_peak(pid: int) -> None:
    (Path("/proc") / str(pid) / "clear_refs").write_text("5")  # VmHWM := VmRSS


def direct_writer(path: Path, batch_size: int) -> dict[str, Any]:
    """The peer: the core DatasetWriter on a LocalStore, in a fresh process."""
    code = f"""
import json, resource, sys, tempfile, time
from searchtuner.data.stored import DatasetWriter, iter_batches
from searchtuner.store import open_store
store = open_store(tempfile.mkdtemp()).for_owner("bench")
start = time.perf_counter()
writer = DatasetWriter(store, kind="labeled")
for batch in iter_batches({str(path)!r}, {batch_size}, kind="labeled"):
    writer.add(batch)
info = writer.commit()
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"docs": info.n_items, "seconds": seconds, "peak_rss_mb": peak}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=3600
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["docs_per_s"] = result["docs"] / result["seconds"]
    result["note"] = "reads the CSV and writes shards in one process (no network, no gateway)"
    return result


def bench_ingest(n: int, batch_size: int) -> dict[str, Any]:
    from searchtuner.client import Client

    with tempfile.TemporaryDirectory(prefix="st-bench-") as folder:
        root = Path(folder)
        path = root / "texts.csv"
        size = write_texts(path, n)
        log(f"wrote {n:,} texts ({size / 1e6:.1f} MB) to {path}")
        service = Service(root / "data", root / "service.log").start()
        results: dict[str, Any] = {"docs": n, "csv_mb": round(size / 1e6, 1)}
        try:
            ingest = process_named("st-ingest", service.process.pid)  # type: ignore[union-attr]
            baseline = memory_mb(ingest, "VmRSS")
            results["ingest_rss_at_start_mb"] = round(baseline, 1)
            for protocol, url in (("grpc", service.grpc), ("http", service.http)):
                reset_peak(ingest)
                before = memory_mb(ingest, "VmRSS")
                log(f"uploading over {protocol} ...")
                start = time.perf_counter()
                dataset = Client(url, token=service.token, timeout=3600).upload(
                    path, kind="labeled", batch_size=batch_size
                )
                seconds = time.perf_counter() - start
                peak = memory_mb(ingest, "VmHWM")
                results[protocol] = {
                    "docs": dataset.n_items,
                    "seconds": round(seconds, 2),
                    "docs_per_s": round(dataset.n_items / seconds),
                    "ingest_rss_before_mb": round(before, 1),
                    "ingest_peak_rss_mb": round(peak, 1),
                    "ingest_peak_growth_mb": round(peak - before, 1),
                }
                log(json.dumps(results[protocol]))
        finally:
            service.stop()
        log("the peer: DatasetWriter in one process ...")
        peer = direct_writer(path, batch_size)
        results["peer_dataset_writer"] = {
            key: round(value, 2) if isinstance(value, float) else value
            for key, value in peer.items()
        }
        for protocol in ("grpc", "http"):
            results[protocol]["speed_vs_peer"] = round(
                results[protocol]["docs_per_s"] / peer["docs_per_s"], 3
            )
    return results


# ---- overhead -----------------------------------------------------------------------------

LABELS, TRAIN_PER_LABEL, EVAL_PER_LABEL = 20, 32, 16
CONFIG = {"epochs": 1, "batch_size": 32, "learning_rate": 2e-5, "seed": 0}
MODEL_OPTIONS = {"max_length": 64}


def subset(folder: Path) -> dict[str, Path]:
    from searchtuner.datasets import load_supersense

    paths = {}
    labels = sorted({label for _, label in load_supersense("train")})[:LABELS]
    for split, per in (("train", TRAIN_PER_LABEL), ("test", EVAL_PER_LABEL)):
        counts: dict[str, int] = {}
        rows = []
        for text, label in load_supersense(split):
            if label in labels and counts.get(label, 0) < per:
                counts[label] = counts.get(label, 0) + 1
                rows.append((text, label))
        paths[split] = folder / f"{split}.csv"
        with open(paths[split], "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    return paths


def direct_run(paths: dict[str, Path], store: Path) -> dict[str, Any]:
    """The peer: build, train (+ evaluation) and publish in one fresh process."""
    code = f"""
import json, time
t0 = time.perf_counter()
import searchtuner
from searchtuner.artifacts import publish_model
from searchtuner.data import read_csv
from searchtuner.store import open_store
from searchtuner.training import TrainConfig, train
train_docs = [r.doc for r in read_csv({str(paths["train"])!r}, kind="labeled")]
eval_docs = [r.doc for r in read_csv({str(paths["test"])!r}, kind="labeled")]
model = searchtuner.build_model("all-MiniLM-L6-v2", **{MODEL_OPTIONS!r})
t1 = time.perf_counter()
result = train(model, train_docs, eval_data=eval_docs, config=TrainConfig(**{CONFIG!r}))
t2 = time.perf_counter()
handle = publish_model(model, open_store({str(store)!r}).for_owner("bench"), onnx=True)
t3 = time.perf_counter()
print(json.dumps({{"startup_s": t1 - t0, "train_s": t2 - t1, "publish_s": t3 - t2,
                   "map@10": result.metrics_after["map@10"]}}))
"""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=3600
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["total_s"] = time.perf_counter() - start  # includes interpreter start-up
    return result


def service_run(service: Service, handles: dict[str, str]) -> dict[str, Any]:
    from datetime import datetime

    start = time.perf_counter()
    created = service.post(
        "/runs",
        json={
            "model": "all-MiniLM-L6-v2", "model_options": MODEL_OPTIONS,
            "train_data": handles["train"], "eval_data": handles["test"], "config": CONFIG,
        },
    )  # fmt: skip
    created.raise_for_status()
    run_id = created.json()["run_id"]
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        state = service.get(f"/runs/{run_id}").json()["state"]
        if state in ("FINISHED", "FAILED", "CANCELLED"):
            break
        time.sleep(0.25)
    total = time.perf_counter() - start
    if state != "FINISHED":
        raise RuntimeError(f"run {run_id} ended {state}")
    text = service.get(f"/runs/{run_id}/events", params={"follow": "false"}).text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    times = {}
    for event in events:
        if event["type"] == "state":
            times.setdefault(event["data"]["state"], datetime.fromisoformat(event["time"]))

    def between(a: str, b: str) -> float:
        return (times[b] - times[a]).total_seconds()

    metrics = service.get(f"/runs/{run_id}/metrics").json()
    return {
        "total_s": total,
        "validate_and_queue_s": between("CREATED", "QUEUED"),
        "worker_start_s": between("QUEUED", "PREPARING"),
        "prepare_s": between("PREPARING", "TRAINING"),
        "train_s": between("TRAINING", "EVALUATING"),
        "evaluate_record_s": between("EVALUATING", "PUBLISHING"),
        "publish_s": between("PUBLISHING", "FINISHED"),
        "map@10": metrics["after"]["map@10"],
    }


def bench_overhead(repeat: int) -> dict[str, Any]:
    from searchtuner.client import Client

    with tempfile.TemporaryDirectory(prefix="st-bench-") as folder:
        root = Path(folder)
        paths = subset(root)
        service = Service(root / "data", root / "service.log").start()
        try:
            client = Client(service.http, token=service.token)
            handles = {
                split: client.upload(path, kind="labeled", name=split).handle
                for split, path in paths.items()
            }
            direct, through = [], []
            for i in range(repeat):  # interleaved, so drift in machine load hits both
                log(f"round {i + 1}/{repeat}: direct ...")
                direct.append(direct_run(paths, root / f"direct-store-{i}"))
                log(json.dumps(direct[-1]))
                log(f"round {i + 1}/{repeat}: through the service ...")
                through.append(service_run(service, handles))
                log(json.dumps(through[-1]))
        finally:
            service.stop()

    def best(rows: list[dict[str, Any]], key: str) -> float:
        return min(row[key] for row in rows)

    direct_train, service_train = best(direct, "train_s"), best(through, "train_s")
    direct_total, service_total = best(direct, "total_s"), best(through, "total_s")
    fixed = service_total - service_train
    return {
        "rounds": repeat,
        "direct": direct,
        "service": through,
        "training_ratio_service_over_direct": round(service_train / direct_train, 3),
        "total_ratio_service_over_direct": round(service_total / direct_total, 3),
        "service_fixed_cost_s": round(fixed, 2),
        "direct_fixed_cost_s": round(direct_total - direct_train, 2),
        "model": "all-MiniLM-L6-v2",
        "data": f"{LABELS} supersenses x {TRAIN_PER_LABEL} train / {EVAL_PER_LABEL} eval",
        "config": CONFIG,
        "note": (
            "training = train() with its evaluation before and after (direct) vs the run's "
            "TRAINING state until EVALUATING (service); fixed = everything else: validation, "
            "queueing, worker start-up, dataset and model loading, publishing with ONNX"
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="what", required=True)
    ingest = commands.add_parser("ingest")
    ingest.add_argument("--docs", type=int, default=1_000_000)
    ingest.add_argument("--batch-size", type=int, default=5000)
    overhead = commands.add_parser("overhead")
    overhead.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("JINA_LOG_LEVEL", "WARNING")
    if args.what == "ingest":
        result = bench_ingest(args.docs, args.batch_size)
    else:
        result = bench_overhead(args.repeat)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
