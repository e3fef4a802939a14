"""The service under load: many clients at once, a queue of runs, status polled throughout.

One service (``python -m gateway.serve`` with ``--max-concurrent-runs 1``, all executors, on
127.0.0.1), three owners (alice, bob, carol), each with a token of their own.

``uploads``: ``--clients`` threads (default 16; even ones over HTTP, odd ones over gRPC,
owners in turn) each stream a labelled dataset of ``--rows`` rows (WordNet definitions and
their supersenses, tagged with the client's number so that no two datasets are the same)
through the SDK, all started at once. Every upload's latency and throughput, and every
failure.

``queue``: ``--runs`` tiny runs (default 8: all-MiniLM-L6-v2, 32 tokens, 3 steps of 16, no
ONNX) submitted one after another in a fixed order (alice a1, a2, a3, bob b1, alice a4, bob
b2, carol c1, alice a5), over HTTP and gRPC in turn, while ``--pollers`` threads (default 8,
owners and protocols in turn) read their owner's runs (``Client.get_run``: ``GET
/runs/{id}`` or ``/runs/get`` over gRPC) every ``--poll-interval`` seconds until every run
has ended (or ``--deadline``). Each poll's latency is filed by what the trainer was doing at
that moment (from the runs' state events): ``training`` (a run in TRAINING), ``worker`` (a
worker preparing, evaluating or publishing), ``no_worker``.

The start order is the order in which the supervisor launched the runs (each record's
``started_at``, read from the store; the PREPARING events must tell the same). It is checked
against the rule "first in first out within each owner, round-robin between owners, the
owner served longest ago goes next" (owners never served go first, in the order in which they
started waiting), computed here from the times the runs were queued and launched, and against
plain round-robin rounds (what the rule gives when everything after the first run is queued
before the second starts).

    python benchmarks/load.py [--clients 16] [--rows 3000] [--runs 8] [--out results.json]
    python benchmarks/load.py --quick       # smoke test: 8 clients x 300 rows, 4 runs

One JSON object on stdout (and in ``--out``); progress and the figures on stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OWNERS = ("alice", "bob", "carol")
SUBMISSION_PATTERN = ("alice", "alice", "alice", "bob", "alice", "bob", "carol", "alice")
"""Whose run the i-th submission is (repeated for more than eight runs)."""
MODEL = "all-MiniLM-L6-v2"
MODEL_OPTIONS = {"max_length": 32}
RUN_CONFIG = {"epochs": 1, "batch_size": 16, "max_steps": 3, "seed": 0}
TRAIN_LABELS, TRAIN_PER_LABEL = 20, 8
WORKER_STATES = ("PREPARING", "TRAINING", "EVALUATING", "PUBLISHING")
TERMINAL = ("FINISHED", "FAILED", "CANCELLED")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- pure helpers (tests/unit/test_load_benchmark.py) ------------------------------------


def percentile(values: Iterable[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value that at least ``p`` % of the values
    are less than or equal to (``p`` in (0, 100]; ``nan`` for no values)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    if not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], got {p}")
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


def summarize(seconds: Sequence[float]) -> dict[str, Any]:
    """Count, p50/p95/p99/max and mean of latencies, in milliseconds."""
    if not seconds:
        return {"n": 0}
    out: dict[str, Any] = {"n": len(seconds)}
    for p in (50, 95, 99):
        out[f"p{p}_ms"] = round(percentile(seconds, p) * 1000, 1)
    out["max_ms"] = round(max(seconds) * 1000, 1)
    out["mean_ms"] = round(sum(seconds) / len(seconds) * 1000, 1)
    return out


def submission_order(n: int) -> list[tuple[str, str]]:
    """``(owner, name)`` of the runs in the order they are submitted: a1, a2, a3, b1, ..."""
    counts: Counter[str] = Counter()
    order = []
    for i in range(n):
        owner = SUBMISSION_PATTERN[i % len(SUBMISSION_PATTERN)]
        counts[owner] += 1
        order.append((owner, f"{owner[0]}{counts[owner]}"))
    return order


def fair_order(arrivals: Sequence[tuple[float, str, str]], launches: Sequence[float]) -> list[str]:
    """The start order the fair rule gives: runs queued at ``arrivals`` (time, owner, name),
    a slot freeing at each of ``launches``.

    At each launch the runs queued by then wait in one first-in-first-out queue per owner;
    the next run is the head of the queue of the owner whose last launch is the oldest;
    owners not launched yet come first, in the order in which their queue last became
    non-empty. A launch with nothing queued by its time takes the next run to arrive.
    """
    pending = deque(sorted(arrivals, key=lambda a: a[0]))
    queues: dict[str, deque[str]] = {}
    waiting_since: dict[str, int] = {}
    last_launch: dict[str, int] = {}
    tickets = 0
    order: list[str] = []

    def admit() -> None:
        nonlocal tickets
        _, owner, name = pending.popleft()
        if owner not in queues:
            queues[owner] = deque()
            waiting_since[owner] = tickets
            tickets += 1
        queues[owner].append(name)

    for index, moment in enumerate(sorted(launches)):
        while pending and pending[0][0] <= moment:
            admit()
        if not queues and pending:
            admit()
        if not queues:
            break
        owner = min(queues, key=lambda o: (last_launch.get(o, -1), waiting_since[o]))
        order.append(queues[owner].popleft())
        if not queues[owner]:
            del queues[owner], waiting_since[owner]
        last_launch[owner] = index
    return order


def round_robin_rounds(queued: Sequence[tuple[str, str]], served: Sequence[str] = ()) -> list[str]:
    """Round-robin rounds over runs all queued at once (``(owner, name)`` in queue order):
    each round takes the next run of every owner that has one, owners never served first (in
    the order of their first queued run), then ``served`` (oldest last launch first)."""
    runs: dict[str, list[str]] = {}
    for owner, name in queued:
        runs.setdefault(owner, []).append(name)
    ranking = [o for o in runs if o not in served] + [o for o in served if o in runs]
    order: list[str] = []
    for depth in range(max((len(names) for names in runs.values()), default=0)):
        order.extend(runs[o][depth] for o in ranking if depth < len(runs[o]))
    return order


def fifo_within_owners(started: Sequence[str], submitted: Sequence[tuple[str, str]]) -> bool:
    """Whether each owner's runs started in the order that owner submitted them."""
    owner_of = {name: owner for owner, name in submitted}
    for owner in {owner for owner, _ in submitted}:
        theirs = [name for name in started if owner_of[name] == owner]
        if theirs != [name for o, name in submitted if o == owner]:
            return False
    return True


def phase_at(moment: float, intervals: Sequence[tuple[float, float, str]]) -> str:
    """``training`` if a run was TRAINING at ``moment`` (epoch seconds), ``worker`` if a run
    was in another worker state, else ``no_worker``; ``intervals``: (start, end, state)."""
    states = {state for start, end, state in intervals if start <= moment < end}
    if "TRAINING" in states:
        return "training"
    if states & set(WORKER_STATES):
        return "worker"
    return "no_worker"


# ---- the service ---------------------------------------------------------------------------


def load_texts() -> list[tuple[str, str]]:
    from searchtuner.datasets import load_supersense

    return [row for split in ("train", "test") for row in load_supersense(split)]


def write_upload(path: Path, rows: list[tuple[str, str]], n: int, client: int) -> None:
    """``n`` labelled rows for one client, distinct from every other client's."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(n):
            text, label = rows[i % len(rows)]
            writer.writerow([f"{text} [client {client}, row {i}]", label])


def write_train(path: Path, rows: list[tuple[str, str]]) -> None:
    """The runs' training data: ``TRAIN_LABELS`` supersenses x ``TRAIN_PER_LABEL``."""
    labels = sorted({label for _, label in rows})[:TRAIN_LABELS]
    counts: Counter[str] = Counter()
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for text, label in rows:
            if label in labels and counts[label] < TRAIN_PER_LABEL:
                counts[label] += 1
                writer.writerow([text, label])


def machine_snapshot() -> dict[str, Any]:
    """Load average and the busiest processes (what else is running on the machine)."""
    load1, load5, load15 = os.getloadavg()
    try:
        top = subprocess.run(
            ["ps", "-eo", "pcpu,etimes,comm", "--sort=-pcpu"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.splitlines()[1:6]  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        top = []
    return {
        "load_average": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "busiest_processes_pcpu_etimes_comm": [" ".join(line.split()) for line in top],
    }


class Owners:
    """Each owner's token and SDK clients (one client per thread: they are not shared)."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.tokens = {owner: service.new_token(owner) for owner in OWNERS}

    def client(self, owner: str, protocol: str, timeout: float = 600.0) -> Any:
        from searchtuner.client import Client

        url = self.service.http if protocol == "http" else self.service.grpc
        return Client(url, token=self.tokens[owner], timeout=timeout)


def bench_uploads(
    owners: Owners, rows: list[tuple[str, str]], folder: Path, clients: int, n: int
) -> dict[str, Any]:
    paths = []
    for i in range(clients):
        paths.append(folder / f"upload-{i}.csv")
        write_upload(paths[-1], rows, n, i)
    barrier = threading.Barrier(clients)
    results: list[dict[str, Any]] = [{} for _ in range(clients)]

    def upload(i: int) -> None:
        owner, protocol = OWNERS[i % len(OWNERS)], ("http", "grpc")[i % 2]
        result = results[i]
        result.update(client=i, owner=owner, protocol=protocol, ok=False)
        try:
            client = owners.client(owner, protocol)
            barrier.wait(timeout=120)
            start = time.perf_counter()
            result["start"] = time.time()
            dataset = client.upload(paths[i], kind="labeled", name=f"load-{i}")
            result["seconds"] = time.perf_counter() - start
            result["end"] = time.time()
            result.update(items=dataset.n_items, valid=dataset.ok, ok=dataset.n_items == n)
            if dataset.n_items != n:
                result["error"] = f"stored {dataset.n_items} of {n} rows"
            client.close()
        except Exception as err:  # every failure is counted and printed
            result["error"] = f"{type(err).__name__}: {err}"[:500]

    threads = [threading.Thread(target=upload, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=1800)
    stuck = sum(thread.is_alive() for thread in threads)
    done = [r for r in results if r.get("ok")]
    failures = [r for r in results if not r.get("ok")]
    wall = (max(r["end"] for r in done) - min(r["start"] for r in done)) if done else math.nan
    out: dict[str, Any] = {
        "clients": clients,
        "rows_per_client": n,
        "succeeded": len(done),
        "failed": len(failures),
        "stuck_after_timeout": stuck,
        "wall_s": round(wall, 2),
        "rows_per_s_all_clients": round(len(done) * n / wall) if done else 0,
        "upload_latency": summarize([r["seconds"] for r in done]),
        "failures": [{k: r.get(k) for k in ("client", "owner", "protocol", "error")}
                     for r in failures],
    }  # fmt: skip
    for protocol in ("http", "grpc"):
        mine = [r for r in done if r["protocol"] == protocol]
        out[protocol] = {
            "clients": len(mine),
            "upload_latency": summarize([r["seconds"] for r in mine]),
            "rows_per_s_per_client_median": round(percentile([n / r["seconds"] for r in mine], 50))
            if mine
            else 0,
        }
    out["per_client"] = [
        {k: (round(v, 3) if isinstance(v, float) and k == "seconds" else v)
         for k, v in r.items() if k not in ("start", "end")}
        for r in results
    ]  # fmt: skip
    return out


def bench_queue(
    owners: Owners,
    registry: Any,
    train_path: Path,
    n_runs: int,
    n_pollers: int,
    interval: float,
    deadline_s: float,
) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    handles = {}
    for owner in OWNERS:  # before the clock starts: each owner's training data
        with owners.client(owner, "http") as client:
            handles[owner] = client.upload(train_path, kind="labeled", name="load-train").handle
    order = submission_order(n_runs)
    lock = threading.Lock()
    run_ids: dict[str, list[str]] = {owner: [] for owner in OWNERS}
    seen: dict[str, str] = {}  # run id -> state last polled
    polls: list[dict[str, Any]] = []
    stop = threading.Event()

    def poller(j: int) -> None:
        owner, protocol = OWNERS[j % len(OWNERS)], ("http", "grpc")[j % 2]
        client = owners.client(owner, protocol, timeout=60)
        turn = 0
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                mine = list(run_ids[owner])
            if not mine:
                stop.wait(interval)
                continue
            run_id = mine[turn % len(mine)]
            turn += 1
            poll: dict[str, Any] = {"poller": j, "owner": owner, "protocol": protocol,
                                    "run_id": run_id, "at": time.time(), "ok": False}  # fmt: skip
            start = time.perf_counter()
            try:
                state = client.get_run(run_id).state
                poll.update(ok=True, state=state)
                with lock:
                    seen[run_id] = state
            except Exception as err:  # every failure is counted and printed
                poll["error"] = f"{type(err).__name__}: {err}"[:500]
            poll["seconds"] = time.perf_counter() - start
            with lock:
                polls.append(poll)
            stop.wait(interval)
        client.close()

    threads = [threading.Thread(target=poller, args=(j,), daemon=True) for j in range(n_pollers)]
    for thread in threads:
        thread.start()
    submitted: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # run id -> a1, b1, ...
    for i, (owner, name) in enumerate(order):
        protocol = ("http", "grpc")[i % 2]
        entry: dict[str, Any] = {"name": name, "owner": owner, "protocol": protocol}
        start = time.perf_counter()
        try:
            with owners.client(owner, protocol, timeout=300) as client:
                run = client.fit(
                    MODEL, handles[owner], model_options=MODEL_OPTIONS, onnx=False,
                    name=f"load-{name}", config=RUN_CONFIG,
                )  # fmt: skip
            entry.update(run_id=run.id, state=run.state)
            names[run.id] = name
            with lock:
                run_ids[owner].append(run.id)
        except Exception as err:
            entry["error"] = f"{type(err).__name__}: {err}"[:500]
        entry["seconds"] = round(time.perf_counter() - start, 3)
        submitted.append(entry)
        log(f"  submitted {name} over {protocol}: {entry.get('run_id', entry.get('error'))}")
    while time.monotonic() < deadline:
        with lock:
            ended = sum(seen.get(run_id) in TERMINAL for run_id in names)
        if ended == len(names):
            break
        time.sleep(0.5)
    timed_out = time.monotonic() >= deadline
    stop.set()
    for thread in threads:
        thread.join(timeout=120)

    # What happened to each run: its record in the store, its events through the API.
    runs: dict[str, dict[str, Any]] = {}
    intervals: list[tuple[float, float, str]] = []
    now = time.time()
    for entry in submitted:
        run_id, owner = entry.get("run_id"), entry["owner"]
        if run_id is None:
            continue
        with owners.client(owner, "http") as client:
            run = client.get_run(run_id)
            if timed_out and not run.is_final:
                run.cancel()
            events = client.get_run(run_id).events(limit=1000)
        record = registry.get(owner, run_id)
        states = [(stamp(e["time"]), e["data"]["state"]) for e in events if e["type"] == "state"]
        for (begin, state), (end, _) in zip(states, [*states[1:], (now, "")], strict=True):
            intervals.append((begin, end, state))
        first = {state: moment for moment, state in reversed(states)}
        runs[run_id] = {
            "name": entry["name"],
            "owner": owner,
            "state": record.state.value,
            "reason": record.reason,
            "queued_at": record.queued_at,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "attempt": record.attempt,
            "queued_event": first.get("QUEUED"),
            "preparing_event": first.get("PREPARING"),
            "queue_wait_s": _between(first, "QUEUED", ("PREPARING",)),
            "total_s": _between(first, "CREATED", TERMINAL),
            "seconds_in_state": _seconds_in_state(states),
        }
    launched = [r for r in runs.values() if r["started_at"]]
    started = [r["name"] for r in sorted(launched, key=lambda r: r["started_at"])]
    by_event = [
        r["name"]
        for r in sorted(
            (r for r in runs.values() if r["preparing_event"]), key=lambda r: r["preparing_event"]
        )
    ]
    arrivals = [(stamp(r["queued_at"]), r["owner"], r["name"]) for r in runs.values()
                if r["queued_at"]]  # fmt: skip
    expected = fair_order(arrivals, [stamp(r["started_at"]) for r in launched])
    first_run = [(o, n) for o, n in order[:1]]
    rounds = round_robin_rounds(first_run, ()) + round_robin_rounds(
        order[1:], [o for o, _ in first_run]
    )
    queued_before_second = None
    if len(launched) > 1:
        second = sorted(stamp(r["started_at"]) for r in launched)[1]
        queued_before_second = all(a[0] <= second for a in arrivals)

    for poll in polls:
        poll["phase"] = phase_at(poll["at"] + poll["seconds"] / 2, intervals)
    ok_polls = [p for p in polls if p["ok"]]
    failed_polls = [p for p in polls if not p["ok"]]
    latency: dict[str, Any] = {"all": summarize([p["seconds"] for p in ok_polls])}
    for phase in ("training", "worker", "no_worker"):
        latency[phase] = summarize([p["seconds"] for p in ok_polls if p["phase"] == phase])
    for protocol in ("http", "grpc"):
        latency[f"training_{protocol}"] = summarize(
            [
                p["seconds"]
                for p in ok_polls
                if p["phase"] == "training" and p["protocol"] == protocol
            ]
        )
    return {
        "runs": n_runs,
        "pollers": n_pollers,
        "poll_interval_s": interval,
        "timed_out": timed_out,
        "submission_order": [name for _, name in order],
        "start_order": started,
        "start_order_by_preparing_event": by_event,
        "expected_order_by_rule": expected,
        "round_robin_rounds_order": rounds,
        "all_queued_before_second_launch": queued_before_second,
        "fifo_per_owner": fifo_within_owners(started, order) if len(started) == n_runs else False,
        "round_robin": bool(started) and started == expected,
        "same_as_round_robin_rounds": started == rounds,
        "states": dict(Counter(r["state"] for r in runs.values())),
        "submit": {
            "failed": sum("error" in e for e in submitted),
            "latency": summarize([e["seconds"] for e in submitted if "error" not in e]),
            "per_run": submitted,
        },
        "status_polls": {
            "n": len(polls),
            "failed": len(failed_polls),
            "latency": latency,
            "failures": [
                {k: p.get(k) for k in ("poller", "protocol", "run_id", "error")}
                for p in failed_polls[:20]
            ],
        },
        "per_run": list(runs.values()),
    }


def stamp(text: str) -> float:
    """Epoch seconds of a record's or event's ISO 8601 time."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _between(first: dict[str, float], start: str, ends: Sequence[str]) -> float | None:
    later = [first[state] for state in ends if state in first]
    if start not in first or not later:
        return None
    return round(min(later) - first[start], 2)


def _seconds_in_state(states: Sequence[tuple[float, str]]) -> dict[str, float]:
    spent: dict[str, float] = {}
    for (begin, state), (end, _) in pairwise(states):
        spent[state] = spent.get(state, 0.0) + end - begin
    return {state: round(seconds, 2) for state, seconds in spent.items()}


def report(result: dict[str, Any]) -> None:
    """The figures, for people (stderr)."""
    up, queue = result["uploads"], result["queue"]
    log("")
    log(f"uploads: {up['clients']} clients x {up['rows_per_client']:,} rows at once: "
        f"{up['succeeded']} ok, {up['failed']} failed; {up['rows_per_s_all_clients']:,} rows/s "
        f"in all over {up['wall_s']} s")  # fmt: skip
    for protocol in ("http", "grpc"):
        lat = up[protocol]["upload_latency"]
        log(f"  {protocol}: {lat.get('n', 0)} uploads, latency p50 {lat.get('p50_ms')} ms, "
            f"max {lat.get('max_ms')} ms, median {up[protocol]['rows_per_s_per_client_median']:,}"
            " rows/s per client")  # fmt: skip
    for failure in up["failures"]:
        log(f"  FAILED: {failure}")
    polls = queue["status_polls"]
    log(f"queue: {queue['runs']} runs, states {queue['states']}; {polls['n']} status polls "
        f"by {queue['pollers']} pollers, {polls['failed']} failed; {queue['submit']['failed']} "
        "submissions failed")  # fmt: skip
    for phase, lat in polls["latency"].items():
        if lat.get("n"):
            figures = "  ".join(
                f"{k[:-3]} {lat[k]:>7} ms" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
            )
            log(f"  status latency {phase:<14} n={lat['n']:<5} {figures}")
    for failure in polls["failures"]:
        log(f"  FAILED poll: {failure}")
    log(f"  submitted:           {' '.join(queue['submission_order'])}")
    log(f"  started:             {' '.join(queue['start_order'])}")
    log(f"  expected (the rule): {' '.join(queue['expected_order_by_rule'])}")
    log(f"  round-robin rounds:  {' '.join(queue['round_robin_rounds_order'])}")
    log(f"  fifo_per_owner: {queue['fifo_per_owner']}, round_robin (follows the rule): "
        f"{queue['round_robin']}, same as round-robin rounds: "
        f"{queue['same_as_round_robin_rounds']}, all queued before the second launch: "
        f"{queue['all_queued_before_second_launch']}")  # fmt: skip
    log(f"load average before {result['machine']['before']['load_average']}, after "
        f"{result['machine']['after']['load_average']}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rows", type=int, default=3000, help="rows per client's dataset")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--pollers", type=int, default=8)
    parser.add_argument("--poll-interval", type=float, default=0.2)
    parser.add_argument("--deadline", type=float, default=3600.0, help="seconds for the runs")
    parser.add_argument("--quick", action="store_true", help="8 clients x 300 rows, 4 runs")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.rows, args.runs, args.deadline = 8, 300, 4, 900.0
    os.environ.setdefault("JINA_LOG_LEVEL", "WARNING")

    from searchtuner.runs.registry import RunRegistry
    from searchtuner.store import open_store
    from tests.e2e.service import Service  # the e2e tests' launcher

    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "before": machine_snapshot()}}
    rows = load_texts()
    with tempfile.TemporaryDirectory(prefix="st-load-") as folder:
        root = Path(folder)
        train_path = root / "train.csv"
        write_train(train_path, rows)
        service = Service(
            root / "data",
            root / "service.log",
            "alice",
            SEARCHTUNER_MAX_CONCURRENT_RUNS="1",
            SEARCHTUNER_MAX_RUNS_PER_OWNER=str(max(64, args.runs)),
        ).start()
        try:
            owners = Owners(service)
            registry = RunRegistry(open_store(service.store_uri))
            log(f"uploads: {args.clients} clients x {args.rows} rows ...")
            result["uploads"] = bench_uploads(owners, rows, root, args.clients, args.rows)
            log(f"queue: {args.runs} runs, {args.pollers} pollers ...")
            result["queue"] = bench_queue(
                owners, registry, train_path, args.runs, args.pollers, args.poll_interval,
                args.deadline,
            )  # fmt: skip
        except BaseException:
            log(service.tail(80))
            raise
        finally:
            service.stop()
    result["machine"]["after"] = machine_snapshot()
    result["settings"] = {
        "max_concurrent_runs": 1,
        "model": MODEL,
        "model_options": MODEL_OPTIONS,
        "config": RUN_CONFIG,
        "train_rows_per_run": TRAIN_LABELS * TRAIN_PER_LABEL,
        "onnx": False,
        "quick": args.quick,
    }
    report(result)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
