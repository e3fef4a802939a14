"""Search quality in the search Flow: the pretrained model and the tuned one, side by side.

The held-out WordNet definitions (1,000, ``load_supersense("test")``) are indexed with each
model, and every definition searches the others (it never finds itself); a result is relevant
when it has the query's supersense. The retrieval metrics of both models are shown side by
side (``searchtuner.evaluation``), and three queries with their top results before and after.

The search runs through the search Flow (``flows/search.yml``: the encoder executor, then the
indexer; ``python -m flows.search``), one Flow per model, as a child process talked to over
HTTP, so this module does not import jina. Without the Flow (an installed wheel, no jina, no
encoder executor) the same search runs in this process, and the output says so.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from searchtuner import evaluation
from searchtuner.errors import ConfigError, SearchTunerError
from searchtuner.evaluation import RetrievalResult, compare
from searchtuner.service.processes import ProcessGroup, free_port

# Documents per HTTP request. Jina's HTTP gateway cuts a request into parts of 100 documents
# and answers with the first part only: more than 100 would lose answers.
REQUEST_SIZE = 100
READY_LINE = "The search Flow is serving"  # what python -m flows.search prints once it serves
BATCH_SIZE = 16  # short texts of varied length: small batches pad less (faster on a CPU)


@dataclass(frozen=True)
class Ranking:
    """Every query's best index positions (-1 where none) and scores, and what it took.

    Attributes:
        positions: ``(n_queries, k)`` positions into the indexed texts, best first.
        scores: ``(n_queries, k)`` their scores (cosine similarity).
        seconds: wall-clock seconds of each stage (``start``, ``index``, ``search``).
        where: how the search ran, for people.
    """

    positions: np.ndarray
    scores: np.ndarray
    seconds: dict[str, float]
    where: str


def flow_unavailable() -> str | None:
    """Why the search Flow cannot run here, or None when it can."""
    root = _repository()
    for part in ("flows/search.py", "executors/encoder/config.yml", "executors/indexer/config.yml"):
        if not (root / part).is_file():
            return f"{part} is not in {root} (the search Flow needs a checkout of the repository)"
    if importlib.util.find_spec("jina") is None:
        return "jina is not installed (pip install -e '.[service]')"
    return None


class SearchFlow:
    """``python -m flows.search`` as a child process group on 127.0.0.1, used over HTTP.

    Args:
        model: a model handle or a bundle folder, for the encoder.
        log: where the Flow's output goes.
        workspace: the indexer's workspace (its index is saved there on stop), or None.
        backend: the encoder's backend, ``torch`` or ``onnx`` (the bundle's ``model.onnx``).
        batch_size: the encoder's texts per forward pass.
    """

    def __init__(
        self,
        model: str | Path,
        log: Path,
        workspace: Path | None = None,
        *,
        backend: str = "torch",
        batch_size: int = 64,
    ) -> None:
        self.model = str(model)
        self.workspace = workspace
        self.backend, self.batch_size = backend, batch_size
        self.grpc_port, self.http_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        command = [
            sys.executable, "-m", "flows.search", "--model", self.model,
            "--backend", self.backend, "--batch-size", str(self.batch_size),
            "--port", str(self.grpc_port), "--http-port", str(self.http_port),
        ]  # fmt: skip
        if workspace is not None:
            command += ["--workspace", str(workspace)]
        self.group = ProcessGroup(command, cwd=_repository(), log=log, name="the search Flow")

    @property
    def log(self) -> Path:
        """The Flow's output."""
        return self.group.log

    def start(self) -> SearchFlow:
        """Start the Flow's process; :meth:`wait_ready` waits for it."""
        self.group.start()
        return self

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Wait until the Flow serves: the launcher says so once every executor is up, then
        ``/count`` crosses the encoder and the indexer over HTTP.

        Raises:
            SearchTunerError: the Flow exited, or was not ready within ``timeout`` seconds;
                the message ends with the tail of its log.
        """
        import requests

        def ready() -> bool:
            if READY_LINE not in self.group.tail(lines=200):
                return False
            answer = requests.post(f"{self.url}/count", json={"data": []}, timeout=10)
            return answer.status_code == 200

        self.group.wait_until(ready, timeout)

    def post(
        self,
        endpoint: str,
        docs: Sequence[dict[str, Any]],
        parameters: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Send documents to an endpoint in requests of ``REQUEST_SIZE``; the answers' docs.

        Raises:
            SearchTunerError: the Flow answered with an error (its message says why).
        """
        import requests

        out: list[dict[str, Any]] = []
        for start in range(0, max(len(docs), 1), REQUEST_SIZE):
            body = {
                "data": list(docs[start : start + REQUEST_SIZE]),
                "parameters": parameters or {},
            }
            answer = requests.post(f"{self.url}{endpoint}", json=body, timeout=600)
            if answer.status_code != 200:
                raise SearchTunerError(
                    f"the search Flow refused {endpoint} ({answer.status_code}): "
                    f"{answer.text[:2000]}"
                )
            out.extend(answer.json()["data"])
        return out

    def stop(self, timeout: float = 60.0) -> None:
        """Stop like Ctrl-C (the indexer saves its index), SIGKILL after ``timeout``."""
        self.group.stop(timeout)

    def tail(self, lines: int = 30) -> str:
        """The last lines of the Flow's output."""
        return self.group.tail(lines)

    def __enter__(self) -> SearchFlow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rank_with_flow(flow: SearchFlow, texts: Sequence[str], k: int) -> Ranking:
    """Index ``texts`` in a started Flow, search each against the others; its ranking.

    Raises:
        SearchTunerError: the Flow failed, or answered with a document it was not sent.
    """
    began = time.perf_counter()
    flow.wait_ready()
    ready = time.perf_counter()
    docs = [{"id": str(i), "text": text} for i, text in enumerate(texts)]
    flow.post("/index", docs)
    indexed = time.perf_counter()
    answers = flow.post("/search", docs, {"top_k": k, "exclude_self": True})
    searched = time.perf_counter()
    positions = np.full((len(texts), k), -1, dtype=np.int64)
    scores = np.full((len(texts), k), -np.inf, dtype=np.float32)
    if [answer["id"] for answer in answers] != [doc["id"] for doc in docs]:
        raise SearchTunerError("the search Flow answered other queries than it was sent")
    for row, answer in enumerate(answers):
        for rank, match in enumerate(answer["matches"][:k]):
            positions[row, rank] = int(match["id"])
            scores[row, rank] = match["score"]
    seconds = {"start": ready - began, "index": indexed - ready, "search": searched - indexed}
    where = f"search Flow (encoder: {flow.backend}, indexer), HTTP"
    return Ranking(positions, scores, seconds, where=where)


def rank_in_process(
    model: str | Path, texts: Sequence[str], labels: Sequence[Hashable], k: int
) -> Ranking:
    """The same search without the Flow: the model in this process, the same exact search."""
    import searchtuner
    from searchtuner.artifacts.handles import resolve_bundle
    from searchtuner.evaluation import retrieval_metrics

    began = time.perf_counter()
    loaded = searchtuner.load_bundle(resolve_bundle(str(model)))
    ready = time.perf_counter()
    embeddings = searchtuner.encode(loaded, list(texts), batch_size=BATCH_SIZE)
    indexed = time.perf_counter()
    found = retrieval_metrics(embeddings, list(labels), k=k, exclude_self=True)
    seconds = {"start": ready - began, "index": indexed - ready, "search": 0.0}
    return Ranking(found.topk_indices, found.topk_scores, seconds, where="in process")


def ranking_metrics(ranking: Ranking, labels: Sequence[Hashable], k: int) -> RetrievalResult:
    """Retrieval metrics of a ranking of labelled items that searched each other.

    Relevant means "same label"; the query itself is never retrieved and does not count as
    relevant, as in ``retrieval_metrics(embeddings, labels)``.

    Raises:
        ConfigError: the ranking's shape does not fit ``labels`` and ``k``.
        DataError: no item shares its label with another (nothing is relevant).
    """
    return evaluation.ranking_metrics(
        ranking.positions, ranking.scores, labels, labels, k=k, exclude_self=True
    )


def example_queries(before: RetrievalResult, after: RetrievalResult, n: int = 3) -> list[int]:
    """Queries that show the range of what changed, not the best case: those at evenly spaced
    percentiles (90th to 10th) of the change in average precision, largest gain first."""
    key = f"map@{before.k}"
    change = np.nan_to_num(after.per_query[key] - before.per_query[key], nan=0.0)
    order = np.argsort(-change, kind="stable")  # largest gain first; ties by position
    picks = np.rint(np.linspace(0.1, 0.9, n) * (len(order) - 1)).astype(np.int64)
    return list(dict.fromkeys(int(order[pick]) for pick in picks))


def pretrained_bundle(folder: Path, backbone: str, max_length: int = 64) -> Path:
    """The pretrained ``backbone`` as a bundle with ``model.onnx`` in ``folder`` (reused when
    already there)."""
    import searchtuner
    from searchtuner.artifacts.manifest import MANIFEST_NAME, verify_bundle

    if (folder / MANIFEST_NAME).is_file():
        verify_bundle(folder)
        return folder
    model = searchtuner.build_model(backbone, max_length=max_length)
    return searchtuner.save_bundle(model, folder, onnx=True)


def has_onnx(model: str | Path) -> bool:
    """Whether a bundle folder or a handle's bundle holds ``model.onnx``."""
    from searchtuner.artifacts.handles import resolve_bundle
    from searchtuner.artifacts.onnx_export import ONNX_FILE

    return (Path(resolve_bundle(str(model))) / ONNX_FILE).is_file()


def run_search_demo(
    tuned: str | Path,
    work_dir: str | Path,
    *,
    pretrained: str | Path | None = None,
    backbone: str = "all-MiniLM-L6-v2",
    rows: Sequence[tuple[str, str]] | None = None,
    k: int = 10,
    n_results: int = 5,
    use_flow: bool | None = None,
) -> dict[str, Any]:
    """Compare search with the pretrained and the tuned model; print each step.

    Args:
        tuned: the tuned model: a bundle folder or a model handle.
        work_dir: where the pretrained bundle and the Flows' logs go.
        pretrained: the pretrained model (default: ``backbone`` with 64 tokens at most, saved
            as a bundle in ``work_dir``).
        backbone: the backbone the tuned model started from.
        rows: ``(text, label)`` items (default: the 1,000 held-out WordNet definitions).
        k: the cut-off of the metrics.
        n_results: results shown per example query.
        use_flow: search through the search Flow (default: when it can run here).

    Returns:
        ``{"where", "metrics": {"before", "after"}, "seconds": {"before", "after"}}``.

    Raises:
        ConfigError: ``use_flow=True`` where the Flow cannot run.
        SearchTunerError: a Flow did not start or failed.
    """
    from searchtuner.datasets import load_supersense

    began = time.perf_counter()
    folder = Path(work_dir).expanduser().resolve()
    items = list(rows) if rows is not None else load_supersense("test")
    texts, labels = [text for text, _ in items], [label for _, label in items]
    reason = flow_unavailable()
    if use_flow and reason:
        raise ConfigError(f"the search Flow cannot run here: {reason}")
    flow = reason is None if use_flow is None else use_flow
    if pretrained is None:
        pretrained = pretrained_bundle(folder / "pretrained", backbone)
    models = {"before": pretrained, "after": tuned}
    # ONNX Runtime embeds short texts ~1.15x faster than PyTorch on a CPU (benchmarks/encode.py).
    backend = "onnx" if all(has_onnx(model) for model in models.values()) else "torch"
    print(
        f"   {len(texts):,} definitions indexed with each model; each searches the others (top {k})"
    )
    if not flow:
        print(f"   (searching in process: {reason or 'use_flow=False'})")
    rankings: dict[str, Ranking] = {}
    if flow:
        flows = {
            name: SearchFlow(
                model,
                folder / "logs" / f"search-flow-{name}.log",
                backend=backend,
                batch_size=BATCH_SIZE,
            )
            for name, model in models.items()
        }
        try:
            for search_flow in flows.values():  # both start at once: their loading overlaps
                search_flow.start()
            for name, search_flow in flows.items():
                rankings[name] = rank_with_flow(search_flow, texts, k)
        finally:
            for search_flow in flows.values():
                search_flow.stop()
    else:
        for name, model in models.items():
            rankings[name] = rank_in_process(model, texts, labels, k)
    for name, title in (("before", "pretrained"), ("after", "tuned")):
        s = rankings[name].seconds
        print(
            f"   {title:<10} {rankings[name].where}: ready in {s['start']:.1f} s, indexed in "
            f"{s['index']:.1f} s, searched in {s['search']:.1f} s"
        )
    results = {name: ranking_metrics(r, labels, k) for name, r in rankings.items()}
    report = compare(results["before"], results["after"], n_examples=0)
    print()
    print(f"   {'metric':<12} {'pretrained':>10} {'tuned':>8} {'change':>8}")
    for row in report.metrics:
        print(f"   {row.name:<12} {row.before:>10.4f} {row.after:>8.4f} {row.change:>+8.4f}")
    print(
        f"\n   Example queries, top {n_results} (+ same supersense as the query, - another):\n"
        "   those at the 90th, 50th and 10th percentile of the change in average precision"
    )
    key = f"map@{k}"
    for query in example_queries(results["before"], results["after"]):
        ap = [results[name].per_query[key][query] for name in ("before", "after")]
        print(
            f"   query [{labels[query]}] {_short(texts[query], 60)!r} (AP@{k} {ap[0]:.2f} -> "
            f"{ap[1]:.2f})"
        )
        for name, title in (("before", "pretrained"), ("after", "tuned")):
            print(f"     {title}:")
            result = results[name]
            for rank in range(min(n_results, k)):
                position = int(result.topk_indices[query, rank])
                if position < 0:
                    break
                mark = "+" if result.topk_relevant[query, rank] else "-"
                print(
                    f"       {mark} {result.topk_scores[query, rank]:.3f} "
                    f"[{labels[position]}] {_short(texts[position], 60)}"
                )
    print(f"   (step done in {time.perf_counter() - began:.0f} s)")
    return {
        "where": rankings["after"].where,
        "metrics": {name: result.metrics for name, result in results.items()},
        "seconds": {name: ranking.seconds for name, ranking in rankings.items()},
    }


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _repository() -> Path:
    import searchtuner

    return Path(searchtuner.__file__).resolve().parents[1]
