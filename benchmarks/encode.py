"""Encoding throughput: the search Flow against the model called directly,
and ONNX Runtime against PyTorch, on the CPU, in the same run.

Texts: WordNet definitions (``searchtuner.datasets.load_supersense``, train + test: 3,000
short glosses), in file order, cut into requests of 64. Model: all-MiniLM-L6-v2, saved once
as a bundle with ``model.onnx`` (or ``--model``: a handle or bundle folder).

Phases, each in its own fresh interpreter, one after another, ``--rounds`` times interleaved:

- ``direct``: ``searchtuner.encode(model, batch, batch_size=64)`` on each batch of 64 (the
  same work a Flow does per request), and once on all texts (sorted by length across all of
  them, so padded less); the ONNX peer is ``searchtuner.serving.Encoder(backend="onnx")``.
- ``flow``: the search Flow (``flows/search.yml``, started as ``python -m flows.search``
  starts it: encoder with its default dynamic batching of 64 documents / 10 ms, then the
  indexer) on 127.0.0.1; a jina gRPC ``Client`` posts the texts as ``TextDoc`` in requests
  of 64 to ``/encode`` (embedded by the encoder, passed on by the indexer) and waits for all
  answers. Timed from the
  first request sent to the last answer received, after a warm-up pass.
- ``*_batch16``: the same with ``batch_size=16`` (the encoder's option, and ``encode``'s):
  each request of 64 texts, sorted by length, runs as four forward passes that pad less.

Every phase runs with ``--threads`` intra-op threads (torch and ONNX Runtime alike). The Flow's
gateway, its client and its executor share the same cores, as they would on one machine.

    python benchmarks/encode.py [--docs 3000] [--rounds 3] [--threads 2] [--out results.json]

One JSON object on stdout (best docs/s of the rounds per phase, every round, ratios, and how
far the embeddings of each path are from the direct PyTorch ones); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "executors" / "encoder" / "config.yml"
MODEL_NAME = "all-MiniLM-L6-v2"
REQUEST_SIZE = 64
BATCH_SIZE = 64
SMALL_BATCH_SIZE = 16
# (name, worker, backend, batch size): run in this order in every round.
PHASES = [
    ("direct_torch", "direct", "torch", BATCH_SIZE),
    ("direct_onnx", "direct", "onnx", BATCH_SIZE),
    ("flow_torch", "flow", "torch", BATCH_SIZE),
    ("flow_onnx", "flow", "onnx", BATCH_SIZE),
    ("direct_torch_batch16", "direct", "torch", SMALL_BATCH_SIZE),
    ("flow_torch_batch16", "flow", "torch", SMALL_BATCH_SIZE),
]
WARMUP_BATCHES = 4


# -- workers (each in a fresh interpreter) --------------------------------------------------


def load_texts(n: int) -> list[str]:
    from searchtuner.datasets import load_supersense

    texts = [text for split in ("train", "test") for text, _ in load_supersense(split)]
    if n > len(texts):
        raise SystemExit(f"--docs {n}: there are {len(texts)} WordNet definitions")
    return texts[:n]


def batches(texts: list[str], size: int = REQUEST_SIZE) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds() -> float:
    usage = os.times()
    return usage.user + usage.system


def run_bundle(job: dict[str, Any]) -> dict[str, Any]:
    import searchtuner

    model = searchtuner.build_model(MODEL_NAME)
    folder = searchtuner.save_bundle(model, Path(job["folder"]), onnx=True)
    return {"bundle": str(folder), "embedding_dim": model.embedding_dim}


def run_direct(job: dict[str, Any]) -> dict[str, Any]:
    import searchtuner
    from searchtuner.serving import Encoder

    texts = load_texts(job["docs"])
    if job["backend"] == "torch":
        model = searchtuner.get_model(job["model"])

        def encode(items: list[str]) -> np.ndarray:
            return searchtuner.encode(model, items, batch_size=job["batch_size"])

    else:
        encoder = Encoder(
            job["model"], backend="onnx", threads=job["threads"], batch_size=job["batch_size"]
        )

        def encode(items: list[str]) -> np.ndarray:
            return encoder.encode(items)

    for batch in batches(texts)[:WARMUP_BATCHES]:
        encode(batch)
    cpu, started = cpu_seconds(), time.perf_counter()
    per_batch = np.concatenate([encode(batch) for batch in batches(texts)])
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    all_started = time.perf_counter()
    encode(texts)
    all_seconds = time.perf_counter() - all_started
    np.save(job["embeddings"], per_batch)
    return {
        "docs_per_second": len(texts) / seconds,
        "seconds": seconds,
        "cpu_share_of_threads": cpu / (seconds * job["threads"]),
        "all_at_once_docs_per_second": len(texts) / all_seconds,
    }


def run_flow(job: dict[str, Any]) -> dict[str, Any]:
    from docarray import DocList
    from docarray.documents import TextDoc
    from jina import Client, Flow

    sys.path.insert(0, str(REPO))
    from flows.search import configure, parser

    texts = load_texts(job["docs"])
    # flows/search.yml as `python -m flows.search` starts it (encoder, then indexer), on free
    # ports of 127.0.0.1, with this phase's backend, batch size and threads.
    args = parser().parse_args(
        ["--model", job["model"], "--backend", job["backend"], "--batch-size",
         str(job["batch_size"]), "--port", str(free_port()), "--http-port", str(free_port())]
    )  # fmt: skip
    config, overrides = configure(args)
    (encoder,) = [e for e in config["executors"] if e["name"] == "encoder"]
    encoder["uses_with"]["threads"] = job["threads"]
    flow = Flow.load_config(config, uses_with=overrides)
    with flow:
        client = Client(host=f"grpc://127.0.0.1:{args.port}")

        def post(items: list[str]) -> DocList[TextDoc]:
            docs = DocList[TextDoc](TextDoc(text=t) for t in items)
            answer: DocList[TextDoc] = client.post(
                "/encode",
                inputs=docs,
                request_size=REQUEST_SIZE,
                results_in_order=True,
                return_type=DocList[TextDoc],
            )
            return answer

        post(texts[: WARMUP_BATCHES * REQUEST_SIZE])
        started = time.perf_counter()
        answer = post(texts)
        seconds = time.perf_counter() - started
    if [doc.text for doc in answer] != texts:
        raise SystemExit("the Flow answered with other documents, or in another order")
    np.save(job["embeddings"], np.stack([np.asarray(doc.embedding) for doc in answer]))
    return {"docs_per_second": len(texts) / seconds, "seconds": seconds}


WORKERS = {"bundle": run_bundle, "direct": run_direct, "flow": run_flow}


def worker_main(job: dict[str, Any], result_path: str) -> None:
    if job["kind"] != "flow":  # a Flow's executor sets its own, from `threads`
        import torch

        torch.set_num_threads(job["threads"])
    Path(result_path).write_text(json.dumps(WORKERS[job["kind"]](job)), encoding="utf-8")


# -- orchestration (the parent imports neither torch nor jina) ------------------------------


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in a fresh interpreter; its output goes to our stderr."""
    threads = str(job["threads"])
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "RAYON_NUM_THREADS": threads,  # the fast tokenizers' thread pool
        "PYTHONWARNINGS": "ignore",
        "JINA_LOG_LEVEL": "WARNING",
    }
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--worker", json.dumps(job), str(result_path)]
        print(f"--- {job.get('name', job['kind'])}", file=sys.stderr, flush=True)
        done = subprocess.run(command, env=env, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if done.returncode != 0:
            raise SystemExit(f"worker {job} failed with exit status {done.returncode}")
        result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
        return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=3000, help="WordNet definitions to encode")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads everywhere")
    parser.add_argument("--model", default="", help=f"handle or bundle (default: {MODEL_NAME})")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker_main(json.loads(args.worker[0]), args.worker[1])
        return
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="encode-bench-") as scratch:
        base = {"docs": args.docs, "threads": args.threads}
        model = (
            args.model or run_job({**base, "kind": "bundle", "folder": f"{scratch}/b"})["bundle"]
        )
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in PHASES}
        for round_no in range(args.rounds):
            for name, kind, backend, batch_size in PHASES:
                embeddings = f"{scratch}/{name}-{round_no}.npy"
                job = {**base, "name": name, "kind": kind, "backend": backend, "model": model}
                result = run_job({**job, "batch_size": batch_size, "embeddings": embeddings})
                # Against the direct PyTorch embeddings of this round, and against its own
                # direct peer (same backend and batch size): 0.0 when the Flow adds nothing.
                peer = name.replace("flow_", "direct_")
                for key, other in (("direct_torch", "direct_torch"), ("peer", peer)):
                    reference = np.load(f"{scratch}/{other}-{round_no}.npy")
                    difference = float(np.abs(np.load(embeddings) - reference).max())
                    result[f"max_abs_difference_vs_{key}"] = difference
                rounds[name].append(result)
    report = summarise(args, rounds, load_before)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


def summarise(
    args: argparse.Namespace,
    rounds: dict[str, list[dict[str, Any]]],
    load_before: tuple[float, float, float],
) -> dict[str, Any]:
    best = {name: max(r["docs_per_second"] for r in runs) for name, runs in rounds.items()}
    median = {
        name: statistics.median(r["docs_per_second"] for r in runs) for name, runs in rounds.items()
    }
    all_at_once = max(r["all_at_once_docs_per_second"] for r in rounds["direct_torch"])
    return {
        "benchmark": "encode",
        "setup": {
            "model": args.model or MODEL_NAME,
            "texts": f"{args.docs} WordNet definitions (train + test), file order",
            "request_size": REQUEST_SIZE,
            "batch_size": f"{BATCH_SIZE} (*_batch16: {SMALL_BATCH_SIZE})",
            "threads": args.threads,
            "rounds": args.rounds,
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "docs_per_second_best": best,
        "docs_per_second_median": median,
        "direct_torch_all_at_once_docs_per_second": all_at_once,
        "ratios": {
            "flow_torch_vs_direct_torch": best["flow_torch"] / best["direct_torch"],
            "flow_torch_vs_direct_torch_median": median["flow_torch"] / median["direct_torch"],
            "flow_torch_vs_direct_all_at_once": best["flow_torch"] / all_at_once,
            "flow_onnx_vs_direct_onnx": best["flow_onnx"] / best["direct_onnx"],
            "onnx_vs_torch_direct": best["direct_onnx"] / best["direct_torch"],
            "onnx_vs_torch_flow": best["flow_onnx"] / best["flow_torch"],
            "flow_torch_batch16_vs_direct_torch_batch16": (
                best["flow_torch_batch16"] / best["direct_torch_batch16"]
            ),
            "batch16_vs_batch64_direct_torch": best["direct_torch_batch16"] / best["direct_torch"],
            "batch16_vs_batch64_flow_torch": best["flow_torch_batch16"] / best["flow_torch"],
        },
        "max_abs_difference": {
            name: {
                key: max(r[f"max_abs_difference_vs_{key}"] for r in runs)
                for key in ("direct_torch", "peer")
            }
            for name, runs in rounds.items()
        },
        "rounds": rounds,
    }


if __name__ == "__main__":  # jina starts executors in forked processes
    main()
