"""Retrieval metrics for labelled embeddings, defined exactly as trec_eval defines them.

Relevance is label equality: an index item is relevant to a query when both carry the same
label. Query/document pairs are expressed by giving each pair its own label.

The search is exact and memory-bounded: queries and the index are both processed in chunks,
and a running top-k is kept per query, so peak memory is
``O(chunk_size * chunk_size + n_queries * k)`` however large the index.

Metrics (``k`` is the cut-off; ``R`` the number of relevant index items for a query, not
counting the query itself when it is excluded):

* ``precision@k`` — trec_eval ``P_k``: relevant items in the top k, divided by k (always k,
  even if fewer than k items could be retrieved).
* ``recall@k`` — ``recall_k``: relevant items in the top k, divided by R.
* ``map@k`` — ``map_cut_k``: sum of the precision at each relevant rank <= k, divided by R.
* ``map@k_st`` — the same sum divided by ``min(k, R)``, as sentence-transformers'
  ``InformationRetrievalEvaluator`` normalises it; higher than ``map@k`` whenever R > k.
* ``ndcg@k`` — ``ndcg_cut_k`` with binary gain and a ``log2(rank + 1)`` discount; the ideal
  DCG places ``min(R, k)`` relevant items first.
* ``mrr@k`` — reciprocal rank of the first relevant item within the top k, else 0.
* ``hit@k`` — ``success_k``: 1 if any relevant item is in the top k, else 0.

Queries with R = 0 have no judgements; like trec_eval, the averages leave them out. They are
counted in ``RetrievalResult.n_skipped`` and their per-query values are NaN.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import torch

from searchtuner.errors import ConfigError, DataError, invalid_choice

__all__ = [
    "ComparisonReport",
    "MetricChange",
    "QueryChange",
    "RankedItem",
    "RetrievalResult",
    "Similarity",
    "compare",
    "ranking_metrics",
    "retrieval_metrics",
]

ArrayLike = np.ndarray | torch.Tensor
Labels = Sequence[Hashable] | np.ndarray | torch.Tensor


class Similarity(StrEnum):
    """How a query and an index item are scored; higher scores rank first."""

    COSINE = "cosine"
    DOT = "dot"
    EUCLIDEAN = "euclidean"


@dataclass(frozen=True)
class RetrievalResult:
    """Averaged and per-query retrieval metrics, with the ranked results behind them.

    Attributes:
        metrics: metric name (e.g. ``"map@10"``) to its mean over queries with R > 0.
        per_query: metric name to an array of shape ``(n_queries,)``; NaN for skipped queries.
        topk_indices: ``(n_queries, k)`` index positions, best first; -1 where fewer than k
            items could be retrieved.
        topk_scores: ``(n_queries, k)`` scores matching ``topk_indices``; -inf where empty.
        topk_relevant: ``(n_queries, k)`` booleans, True where the retrieved item is relevant.
        relevant_counts: ``(n_queries,)`` R for each query.
        n_queries: number of queries given.
        n_skipped: queries left out of the averages because R = 0.
        k: the cut-off.
        similarity: the similarity used to rank.
    """

    metrics: dict[str, float]
    per_query: dict[str, np.ndarray]
    topk_indices: np.ndarray
    topk_scores: np.ndarray
    topk_relevant: np.ndarray
    relevant_counts: np.ndarray
    n_queries: int
    n_skipped: int
    k: int
    similarity: str


def retrieval_metrics(
    query_embeddings: ArrayLike,
    query_labels: Labels,
    index_embeddings: ArrayLike | None = None,
    index_labels: Labels | None = None,
    *,
    k: int = 10,
    exclude_self: bool | None = None,
    chunk_size: int = 1024,
    similarity: str = "cosine",
) -> RetrievalResult:
    """Rank the index for every query and compute trec_eval-compatible metrics at ``k``.

    Ties in score are broken by the lower index position first, so results are
    deterministic whatever the chunk size.

    Args:
        query_embeddings: ``(n_queries, dim)`` numpy array or torch tensor. Computation runs
            on this tensor's device (numpy arrays: CPU).
        query_labels: one hashable label per query.
        index_embeddings: ``(n_index, dim)``; None searches the queries themselves.
        index_labels: one label per index item; given exactly when ``index_embeddings`` is.
        k: the cut-off; metric keys carry it, e.g. ``"ndcg@10"``.
        exclude_self: never retrieve the index item at the query's own position. Defaults to
            True when the index is the query set, else False; with a separate index it needs
            as many index items as queries (query i is index item i).
        chunk_size: queries and index items scored at a time; bounds peak memory.
        similarity: ``"cosine"``, ``"dot"`` or ``"euclidean"`` (negative L2 distance).

    Returns:
        The metrics, per-query values and the top-k results.

    Raises:
        ConfigError: for an unknown similarity, a non-positive ``k`` or ``chunk_size``, or
            an index given without labels (or the reverse).
        DataError: for embeddings of the wrong shape or with non-finite values, label counts
            that do not match, or when no query has any relevant index item.
    """
    sim = _parse_similarity(similarity)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if (index_embeddings is None) != (index_labels is None):
        raise ConfigError(
            "give index_embeddings and index_labels together, or neither to search the queries"
        )

    queries = _as_matrix(query_embeddings, "query_embeddings", device=None)
    q_labels = _as_label_list(query_labels)
    _check_count(q_labels, queries.shape[0], "query_labels", "query_embeddings")
    self_index = index_embeddings is None
    if index_embeddings is None or index_labels is None:
        index, i_labels = queries, q_labels
    else:
        index = _as_matrix(index_embeddings, "index_embeddings", device=queries.device)
        i_labels = _as_label_list(index_labels)
        _check_count(i_labels, index.shape[0], "index_labels", "index_embeddings")
        if index.shape[1] != queries.shape[1]:
            raise DataError(
                f"query_embeddings have dimension {queries.shape[1]} but index_embeddings have "
                f"{index.shape[1]}; embed both with the same model"
            )
        if index.dtype != queries.dtype:
            dtype = torch.promote_types(index.dtype, queries.dtype)
            index, queries = index.to(dtype), queries.to(dtype)
    if exclude_self is None:
        exclude_self = self_index
    if exclude_self and index.shape[0] != queries.shape[0]:
        raise ConfigError(
            f"exclude_self needs query i to be index item i, but there are {queries.shape[0]} "
            f"queries and {index.shape[0]} index items; pass exclude_self=False"
        )

    scores, indices = _search(
        queries, index, k=k, exclude_self=exclude_self, chunk_size=chunk_size, similarity=sim
    )

    return ranking_metrics(
        indices, scores, q_labels, i_labels, k=k, exclude_self=exclude_self, similarity=sim
    )


def ranking_metrics(
    topk_indices: np.ndarray,
    topk_scores: np.ndarray,
    query_labels: Labels,
    index_labels: Labels,
    *,
    k: int,
    exclude_self: bool = False,
    similarity: Similarity | str = Similarity.COSINE,
) -> RetrievalResult:
    """Retrieval metrics of a ranking made elsewhere (a search service, an ANN index): the
    same definitions as :func:`retrieval_metrics`, which calls this after its exact search.

    Args:
        topk_indices: ``(n_queries, k)`` index positions, best first; ``-1`` where fewer than
            ``k`` results came back.
        topk_scores: ``(n_queries, k)`` their scores (kept in the result, not used).
        query_labels: one label per query.
        index_labels: one label per index item; an item is relevant to a query with its label.
        k: the ranking's depth.
        exclude_self: query ``i`` is index item ``i`` and was left out of its own results, so
            it does not count as one of its relevant items.
        similarity: how the scores were made (recorded in the result).

    Raises:
        ConfigError: the ranking's shape does not fit the labels and ``k``.
        DataError: no query has a relevant index item.
    """
    indices, scores = np.asarray(topk_indices), np.asarray(topk_scores)
    q_labels, i_labels = _as_label_list(query_labels), _as_label_list(index_labels)
    if indices.shape != (len(q_labels), k) or scores.shape != indices.shape:
        raise ConfigError(
            f"a ranking of shape {indices.shape} (scores {scores.shape}) does not fit "
            f"{len(q_labels)} queries at k={k}"
        )
    if exclude_self and len(i_labels) != len(q_labels):
        raise ConfigError(
            f"exclude_self needs query i to be index item i, but there are {len(q_labels)} "
            f"queries and {len(i_labels)} index items; pass exclude_self=False"
        )
    if indices.size and int(indices.max()) >= len(i_labels):
        raise ConfigError(
            f"the ranking names index item {int(indices.max())}, but there are "
            f"{len(i_labels)} index labels"
        )
    codes: dict[Hashable, int] = {}
    q_codes = np.array([codes.setdefault(label, len(codes)) for label in q_labels], dtype=np.int64)
    i_codes = np.array([codes.setdefault(label, len(codes)) for label in i_labels], dtype=np.int64)
    relevant_counts = np.bincount(i_codes, minlength=len(codes))[q_codes]
    if exclude_self:
        relevant_counts = relevant_counts - (q_codes == i_codes)
    valid = indices >= 0
    relevant = valid & (i_codes[np.where(valid, indices, 0)] == q_codes[:, None])

    per_query = _per_query_metrics(relevant, relevant_counts, k)
    judged = relevant_counts > 0
    if not judged.any():
        raise DataError(
            f"none of the {len(q_labels)} queries has a relevant index item (an item with the "
            "same label, other than itself); check that queries and index share labels"
        )
    metrics = {name: float(values[judged].mean()) for name, values in per_query.items()}
    return RetrievalResult(
        metrics=metrics,
        per_query=per_query,
        topk_indices=indices,
        topk_scores=scores,
        topk_relevant=relevant,
        relevant_counts=relevant_counts,
        n_queries=len(q_labels),
        n_skipped=int((~judged).sum()),
        k=k,
        similarity=_parse_similarity(similarity).value,
    )


def _parse_similarity(similarity: str) -> Similarity:
    try:
        return Similarity(similarity)
    except ValueError:
        raise invalid_choice("similarity", similarity, [s.value for s in Similarity]) from None


def _as_matrix(values: ArrayLike, name: str, device: torch.device | None) -> torch.Tensor:
    tensor = values.detach() if isinstance(values, torch.Tensor) else torch.as_tensor(values)
    if device is not None:
        tensor = tensor.to(device)
    if tensor.ndim != 2:
        raise DataError(f"{name} must have shape (n, dim), got {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise DataError(f"{name} is empty; give at least one embedding")
    if tensor.dtype != torch.float64:
        tensor = tensor.to(torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise DataError(f"{name} contains NaN or infinite values; check the model's output")
    return tensor


def _as_label_list(labels: Labels) -> list[Hashable]:
    if isinstance(labels, torch.Tensor | np.ndarray):
        return list(labels.tolist())
    return list(labels)


def _check_count(labels: list[Hashable], n: int, labels_name: str, embeddings_name: str) -> None:
    if len(labels) != n:
        raise DataError(
            f"{labels_name} has {len(labels)} labels but {embeddings_name} has {n} rows; "
            "give one label per embedding"
        )


def _search(
    queries: torch.Tensor,
    index: torch.Tensor,
    *,
    k: int,
    exclude_self: bool,
    chunk_size: int,
    similarity: Similarity,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k search in chunks; returns ``(scores, indices)`` as numpy arrays."""
    if similarity is Similarity.COSINE:
        queries = torch.nn.functional.normalize(queries, dim=1)
        index = torch.nn.functional.normalize(index, dim=1)
    index_sq = (index * index).sum(1) if similarity is Similarity.EUCLIDEAN else None
    n_q, n_i = queries.shape[0], index.shape[0]
    all_scores = torch.empty((n_q, k), dtype=queries.dtype)
    all_indices = torch.empty((n_q, k), dtype=torch.int64)
    for q_start in range(0, n_q, chunk_size):
        q = queries[q_start : q_start + chunk_size]
        q_sq = (q * q).sum(1, keepdim=True) if index_sq is not None else None
        best_scores = torch.full((q.shape[0], k), -torch.inf, dtype=q.dtype, device=q.device)
        best_indices = torch.full((q.shape[0], k), -1, dtype=torch.int64, device=q.device)
        for i_start in range(0, n_i, chunk_size):
            x = index[i_start : i_start + chunk_size]
            s = q @ x.T
            if index_sq is not None and q_sq is not None:
                s = -(q_sq + index_sq[i_start : i_start + chunk_size] - 2 * s).clamp_min(0).sqrt()
            if exclude_self:
                lo = max(q_start, i_start)
                hi = min(q_start + q.shape[0], i_start + x.shape[0])
                if lo < hi:
                    pos = torch.arange(lo, hi, device=q.device)
                    s[pos - q_start, pos - i_start] = -torch.inf
            best_scores, best_indices = _merge_topk(best_scores, best_indices, s, i_start, k)
        end = q_start + q.shape[0]
        all_scores[q_start:end] = best_scores.cpu()
        all_indices[q_start:end] = best_indices.cpu()
    # Only excluded items and padding score -inf (embeddings are finite): neither is a result.
    all_indices[torch.isneginf(all_scores)] = -1
    return all_scores.numpy(), all_indices.numpy()


def _merge_topk(
    best_scores: torch.Tensor,
    best_indices: torch.Tensor,
    chunk_scores: torch.Tensor,
    offset: int,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge one index chunk into the running top-k, ordered by (score desc, position asc).

    The running top-k holds only positions below ``offset`` and is already in that order, so
    a stable descending sort of ``[running, chunk candidates]`` keeps lower positions first
    among equal scores, provided the chunk candidates are themselves in ascending position.
    """
    kk = min(k, chunk_scores.shape[1])
    values, local = torch.topk(chunk_scores, kk, dim=1)
    # torch.topk picks arbitrarily among scores tied with the k-th; if any row has such a
    # tie, take that chunk's candidates with a stable sort instead.
    if bool(((chunk_scores >= values[:, -1:]).sum(1) > kk).any()):
        values, local = torch.sort(chunk_scores, dim=1, descending=True, stable=True)
        values, local = values[:, :kk], local[:, :kk]
    else:
        local, _ = local.sort(dim=1)
        values = chunk_scores.gather(1, local)
    scores = torch.cat([best_scores, values], dim=1)
    indices = torch.cat([best_indices, local + offset], dim=1)
    scores, order = torch.sort(scores, dim=1, descending=True, stable=True)
    return scores[:, :k], indices.gather(1, order[:, :k])


def _per_query_metrics(
    relevant: np.ndarray, relevant_counts: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Per-query metrics from the ``(n, k)`` relevance of the ranked results."""
    ranks = np.arange(1, k + 1)
    rel = relevant.astype(np.float64)
    n_rel = rel.sum(1)
    judged = relevant_counts > 0
    r = np.where(judged, relevant_counts, 1).astype(np.float64)
    ap_sum = (rel * np.cumsum(rel, axis=1) / ranks).sum(1)
    discount = 1.0 / np.log2(ranks + 1)
    dcg = (rel * discount).sum(1)
    ideal = np.cumsum(discount)[np.minimum(r, k).astype(np.int64) - 1]
    first = np.where(relevant.any(1), relevant.argmax(1) + 1, 0)
    values = {
        f"precision@{k}": n_rel / k,
        f"recall@{k}": n_rel / r,
        f"map@{k}": ap_sum / r,
        f"map@{k}_st": ap_sum / np.minimum(r, k),
        f"ndcg@{k}": dcg / ideal,
        f"mrr@{k}": np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0),
        f"hit@{k}": (n_rel > 0).astype(np.float64),
    }
    return {name: np.where(judged, v, np.nan) for name, v in values.items()}


@dataclass(frozen=True)
class MetricChange:
    """One metric before and after, e.g. fine-tuning."""

    name: str
    before: float
    after: float

    @property
    def change(self) -> float:
        """``after - before``."""
        return self.after - self.before


@dataclass(frozen=True)
class RankedItem:
    """One retrieved index item."""

    rank: int
    index: int
    score: float
    relevant: bool
    text: str | None = None


@dataclass(frozen=True)
class QueryChange:
    """A query whose average precision changed, with its results before and after."""

    query_index: int
    query_text: str | None
    before: float
    after: float
    before_results: list[RankedItem]
    after_results: list[RankedItem]

    @property
    def change(self) -> float:
        """``after - before`` of the query's average precision."""
        return self.after - self.before


@dataclass(frozen=True)
class ComparisonReport:
    """Metrics before and after, and the queries that gained or lost the most.

    Attributes:
        metrics: one row per metric, in the order of ``RetrievalResult.metrics``.
        improved: queries whose average precision (``map@k``) rose most, largest first.
        worsened: queries whose average precision fell most, largest fall first.
        k: the cut-off both results share.
    """

    metrics: list[MetricChange]
    improved: list[QueryChange]
    worsened: list[QueryChange]
    k: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form, for model cards and reports."""

        def query(q: QueryChange) -> dict[str, Any]:
            return {
                "query_index": q.query_index,
                "query_text": q.query_text,
                "before": q.before,
                "after": q.after,
                "change": q.change,
                "before_results": [vars(item) for item in q.before_results],
                "after_results": [vars(item) for item in q.after_results],
            }

        return {
            "k": self.k,
            "metrics": {
                m.name: {"before": m.before, "after": m.after, "change": m.change}
                for m in self.metrics
            },
            "improved": [query(q) for q in self.improved],
            "worsened": [query(q) for q in self.worsened],
        }

    def __str__(self) -> str:
        width = max([len("metric"), *(len(m.name) for m in self.metrics)])
        lines = [f"{'metric':<{width}} | {'before':>8} | {'after':>8} | {'change':>8}"]
        lines.append(f"{'-' * width}-|-{'-' * 8}-|-{'-' * 8}-|-{'-' * 8}")
        for m in self.metrics:
            lines.append(
                f"{m.name:<{width}} | {m.before:>8.4f} | {m.after:>8.4f} | {m.change:>+8.4f}"
            )
        for title, queries in (("Most improved", self.improved), ("Most worsened", self.worsened)):
            if not queries:
                continue
            lines.append("")
            lines.append(f"{title} queries (average precision@{self.k}; results +relevant / -not):")
            for q in queries:
                name = _shorten(q.query_text) if q.query_text is not None else f"#{q.query_index}"
                lines.append(f"  query {name}: {q.before:.4f} -> {q.after:.4f} ({q.change:+.4f})")
                for label, items in (("before", q.before_results), ("after", q.after_results)):
                    shown = ", ".join(_item_str(item) for item in items)
                    lines.append(f"    {label}: {shown}")
        return "\n".join(lines)


def _item_str(item: RankedItem) -> str:
    mark = "+" if item.relevant else "-"
    what = _shorten(item.text) if item.text is not None else f"#{item.index}"
    return f"{mark}{what}"


def _shorten(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def compare(
    before: RetrievalResult,
    after: RetrievalResult,
    *,
    query_texts: Sequence[str] | None = None,
    index_texts: Sequence[str] | None = None,
    n_examples: int = 3,
    n_results: int = 5,
) -> ComparisonReport:
    """Compare two evaluations of the same queries and index, e.g. before and after tuning.

    Args:
        before: the baseline evaluation.
        after: the evaluation to compare with it (same queries, index and k).
        query_texts: optional text of each query, shown in the examples.
        index_texts: optional text of each index item, shown in the examples.
        n_examples: how many queries to show in each direction (improved, worsened).
        n_results: how many top results to show per example query.

    Returns:
        The per-metric changes and example queries.

    Raises:
        ConfigError: if the results do not cover the same queries and k, or ``n_examples``
            or ``n_results`` is negative.
        DataError: if ``query_texts`` does not have one text per query.
    """
    if before.n_queries != after.n_queries or before.k != after.k:
        raise ConfigError(
            f"cannot compare results for {before.n_queries} queries at k={before.k} with "
            f"results for {after.n_queries} queries at k={after.k}; evaluate the same queries "
            "with the same k"
        )
    if n_examples < 0 or n_results < 0:
        raise ConfigError(f"n_examples and n_results must be >= 0, got {n_examples}, {n_results}")
    if query_texts is not None and len(query_texts) != before.n_queries:
        raise DataError(
            f"query_texts has {len(query_texts)} texts for {before.n_queries} queries; "
            "give one text per query"
        )
    k = before.k
    metrics = [
        MetricChange(name, value, after.metrics[name])
        for name, value in before.metrics.items()
        if name in after.metrics
    ]
    ap_key = f"map@{k}"
    delta = after.per_query[ap_key] - before.per_query[ap_key]
    candidates = np.flatnonzero(~np.isnan(delta))
    # Stable sorts so equal changes list the lower query position first.
    up = candidates[np.argsort(-delta[candidates], kind="stable")]
    down = candidates[np.argsort(delta[candidates], kind="stable")]

    def example(i: int) -> QueryChange:
        return QueryChange(
            query_index=int(i),
            query_text=None if query_texts is None else query_texts[i],
            before=float(before.per_query[ap_key][i]),
            after=float(after.per_query[ap_key][i]),
            before_results=_ranked(before, i, n_results, index_texts),
            after_results=_ranked(after, i, n_results, index_texts),
        )

    return ComparisonReport(
        metrics=metrics,
        improved=[example(i) for i in up[:n_examples] if delta[i] > 0],
        worsened=[example(i) for i in down[:n_examples] if delta[i] < 0],
        k=k,
    )


def _ranked(
    result: RetrievalResult, query: int, n: int, texts: Sequence[str] | None
) -> list[RankedItem]:
    items = []
    for rank in range(min(n, result.k)):
        idx = int(result.topk_indices[query, rank])
        if idx < 0:
            break
        items.append(
            RankedItem(
                rank=rank + 1,
                index=idx,
                score=float(result.topk_scores[query, rank]),
                relevant=bool(result.topk_relevant[query, rank]),
                text=None if texts is None else texts[idx],
            )
        )
    return items
