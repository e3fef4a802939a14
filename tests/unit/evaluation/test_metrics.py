"""Retrieval metrics against trec_eval (pytrec_eval) and a brute-force reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import pytrec_eval
import torch

from searchtuner.errors import ConfigError, DataError
from searchtuner.evaluation import metrics as metrics_module
from searchtuner.evaluation.metrics import compare, ranking_metrics, retrieval_metrics

NAMES = ["precision", "recall", "map", "ndcg", "mrr", "hit"]


def trec_measures(k: int) -> dict[str, str]:
    """Our metric name -> pytrec_eval measure name."""
    return {
        f"precision@{k}": f"P_{k}",
        f"recall@{k}": f"recall_{k}",
        f"map@{k}": f"map_cut_{k}",
        f"ndcg@{k}": f"ndcg_cut_{k}",
        # Only the top k is in the run, so recip_rank is cut at k.
        f"mrr@{k}": "recip_rank",
        f"hit@{k}": f"success_{k}",
    }


def make_data(seed: int, n: int, n_labels: int, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)), rng.integers(0, n_labels, n)


def brute_force(
    queries: np.ndarray,
    q_labels: np.ndarray,
    index: np.ndarray,
    i_labels: np.ndarray,
    k: int,
    exclude_self: bool,
    similarity: str = "cosine",
) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Full score matrix, lexsort ranking, metrics by plain loops."""
    if similarity == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        index = index / np.linalg.norm(index, axis=1, keepdims=True)
    if similarity == "euclidean":
        scores = -np.linalg.norm(queries[:, None, :] - index[None, :, :], axis=2)
    else:
        scores = queries @ index.T
    positions = np.arange(len(index))
    top = np.full((len(queries), k), -1)
    values: dict[str, list[float]] = {f"{name}@{k}": [] for name in NAMES}
    values[f"map@{k}_st"] = []
    for i in range(len(queries)):
        keep = positions != i if exclude_self else np.ones(len(index), dtype=bool)
        candidates = positions[keep]
        order = candidates[np.lexsort((candidates, -scores[i, keep]))][:k]
        top[i, : len(order)] = order
        r = int(sum(1 for j in candidates if i_labels[j] == q_labels[i]))
        rel = [bool(i_labels[j] == q_labels[i]) for j in order]
        if r == 0:
            for v in values.values():
                v.append(math.nan)
            continue
        hits = 0
        ap = 0.0
        dcg = 0.0
        first = 0
        for rank, is_rel in enumerate(rel, start=1):
            if is_rel:
                hits += 1
                ap += hits / rank
                dcg += 1 / math.log2(rank + 1)
                first = first or rank
        ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(r, k) + 1))
        values[f"precision@{k}"].append(hits / k)
        values[f"recall@{k}"].append(hits / r)
        values[f"map@{k}"].append(ap / r)
        values[f"map@{k}_st"].append(ap / min(r, k))
        values[f"ndcg@{k}"].append(dcg / ideal)
        values[f"mrr@{k}"].append(1 / first if first else 0.0)
        values[f"hit@{k}"].append(1.0 if hits else 0.0)
    return top, values


def pytrec_oracle(
    result: metrics_module.RetrievalResult,
    q_labels: np.ndarray,
    i_labels: np.ndarray,
    exclude_self: bool,
) -> dict[str, dict[str, float]]:
    """trec_eval's per-query values for our top-k run; queries with R = 0 left out."""
    k = result.k
    qrel: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for i, label in enumerate(q_labels):
        relevant = {
            f"d{j}": 1 for j in np.flatnonzero(i_labels == label) if not (exclude_self and j == i)
        }
        if not relevant:
            continue
        qrel[f"q{i}"] = relevant
        # Distinct descending scores fix our order; trec_eval breaks ties by docno otherwise.
        run[f"q{i}"] = {
            f"d{j}": float(k - rank) for rank, j in enumerate(result.topk_indices[i]) if j >= 0
        }
    evaluator = pytrec_eval.RelevanceEvaluator(qrel, set(trec_measures(k).values()))
    return evaluator.evaluate(run)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 5, 10])
@pytest.mark.parametrize("self_index", [True, False])
def test_matches_pytrec_eval_and_brute_force(seed: int, k: int, self_index: bool) -> None:
    queries, q_labels = make_data(seed, n=53, n_labels=6)
    if self_index:
        index, i_labels = queries, q_labels
        kwargs = {}
    else:
        index, i_labels = make_data(seed + 100, n=71, n_labels=8)
        kwargs = {"index_embeddings": index, "index_labels": i_labels}

    result = retrieval_metrics(queries, q_labels, k=k, chunk_size=7, **kwargs)
    large = retrieval_metrics(queries, q_labels, k=k, chunk_size=1024, **kwargs)

    np.testing.assert_array_equal(result.topk_indices, large.topk_indices)
    np.testing.assert_allclose(result.topk_scores, large.topk_scores, rtol=0, atol=1e-12)
    assert result.metrics == pytest.approx(large.metrics, abs=1e-12)

    top, reference = brute_force(queries, q_labels, index, i_labels, k, exclude_self=self_index)
    np.testing.assert_array_equal(result.topk_indices, top)
    for name, values in reference.items():
        np.testing.assert_allclose(result.per_query[name], values, rtol=0, atol=1e-12)

    oracle = pytrec_oracle(result, q_labels, i_labels, exclude_self=self_index)
    assert result.n_queries == len(queries)
    assert result.n_skipped == len(queries) - len(oracle)
    for ours, theirs in trec_measures(k).items():
        for qid, measures in oracle.items():
            assert result.per_query[ours][int(qid[1:])] == pytest.approx(measures[theirs], abs=1e-9)
        mean = float(np.mean([measures[theirs] for measures in oracle.values()]))
        assert result.metrics[ours] == pytest.approx(mean, abs=1e-9)


def test_a_ranking_made_elsewhere_with_missing_results_and_brute_force_labels() -> None:
    """ranking_metrics on a ranking from outside (a search service): a ranking copied from
    retrieval_metrics gives the same figures; a short answer (-1) counts as not relevant."""
    queries, labels = make_data(5, n=40, n_labels=4)
    exact = retrieval_metrics(queries, labels, k=5)

    same = ranking_metrics(
        exact.topk_indices.copy(), exact.topk_scores.copy(), labels, labels, k=5,
        exclude_self=True,
    )  # fmt: skip
    cut = exact.topk_indices.copy()
    cut[:, 3:] = -1
    shorter = ranking_metrics(cut, exact.topk_scores, labels, labels, k=5, exclude_self=True)

    assert same.metrics == exact.metrics
    np.testing.assert_array_equal(same.relevant_counts, exact.relevant_counts)
    _, reference = brute_force(queries, labels, queries, labels, 5, exclude_self=True)
    expected_precision = (exact.topk_relevant[:, :3].sum(1) / 5)[exact.relevant_counts > 0]
    assert shorter.metrics["precision@5"] == pytest.approx(expected_precision.mean(), abs=1e-12)
    assert shorter.metrics["precision@5"] < same.metrics["precision@5"]
    np.testing.assert_allclose(same.per_query["map@5"], reference["map@5"], atol=1e-12)
    with pytest.raises(
        ConfigError, match=r"a ranking of shape \(40, 5\) .*does not fit 40 queries at k=10"
    ):
        ranking_metrics(exact.topk_indices, exact.topk_scores, labels, labels, k=10)
    with pytest.raises(ConfigError, match=r"names index item \d+, but there are 3 index labels"):
        ranking_metrics(exact.topk_indices[:3], exact.topk_scores[:3], labels[:3], labels[:3], k=5)


def test_metric_keys_carry_k() -> None:
    queries, labels = make_data(0, n=20, n_labels=3)
    result = retrieval_metrics(queries, labels, k=3)
    assert list(result.metrics) == [
        "precision@3",
        "recall@3",
        "map@3",
        "map@3_st",
        "ndcg@3",
        "mrr@3",
        "hit@3",
    ]
    assert result.topk_indices.shape == result.topk_scores.shape == (20, 3)


@pytest.mark.parametrize("similarity", ["cosine", "dot", "euclidean"])
def test_similarities_rank_like_brute_force(similarity: str) -> None:
    queries, labels = make_data(3, n=40, n_labels=4)
    result = retrieval_metrics(queries, labels, k=5, chunk_size=6, similarity=similarity)
    top, _ = brute_force(queries, labels, queries, labels, 5, True, similarity)
    np.testing.assert_array_equal(result.topk_indices, top)


def test_accepts_torch_tensors_and_float32() -> None:
    queries, labels = make_data(4, n=30, n_labels=3)
    from_numpy = retrieval_metrics(queries.astype(np.float32), list(labels), k=5)
    from_torch = retrieval_metrics(torch.from_numpy(queries).float(), torch.from_numpy(labels), k=5)
    np.testing.assert_array_equal(from_numpy.topk_indices, from_torch.topk_indices)
    assert from_numpy.metrics == from_torch.metrics


def test_string_labels() -> None:
    queries, labels = make_data(5, n=30, n_labels=3)
    as_text = [f"class-{label}" for label in labels]
    assert retrieval_metrics(queries, as_text).metrics == retrieval_metrics(queries, labels).metrics


def test_self_index_never_retrieves_the_query() -> None:
    queries, labels = make_data(6, n=25, n_labels=5)
    result = retrieval_metrics(queries, labels, k=10, chunk_size=4)
    assert not (result.topk_indices == np.arange(25)[:, None]).any()
    # Without exclusion every query finds itself first (cosine similarity 1).
    kept = retrieval_metrics(queries, labels, k=10, exclude_self=False)
    np.testing.assert_array_equal(kept.topk_indices[:, 0], np.arange(25))
    assert kept.metrics["mrr@10"] == 1.0


def test_separate_index_with_exclude_self_pairs_positions() -> None:
    queries, labels = make_data(7, n=12, n_labels=2)
    index = queries.copy()
    result = retrieval_metrics(queries, labels, index, labels, k=4, exclude_self=True)
    same = retrieval_metrics(queries, labels, k=4)
    np.testing.assert_array_equal(result.topk_indices, same.topk_indices)
    with pytest.raises(ConfigError, match="exclude_self"):
        retrieval_metrics(queries, labels, index[:5], labels[:5], exclude_self=True)


def test_fewer_items_than_k_pads_and_divides_by_k() -> None:
    queries = np.eye(3)
    labels = ["a", "a", "b"]
    result = retrieval_metrics(queries, labels, k=5)
    assert (result.topk_indices[:, 2:] == -1).all()
    assert np.isneginf(result.topk_scores[:, 2:]).all()
    # Query 0: its one relevant item is retrieved, precision is 1/5 (trec_eval's P_5).
    assert result.per_query["precision@5"][0] == pytest.approx(0.2)
    assert result.per_query["recall@5"][0] == 1.0


def test_queries_without_relevant_items_are_skipped() -> None:
    queries, _ = make_data(8, n=6, n_labels=1)
    labels = ["a", "a", "b", "b", "c", "d"]  # "c" and "d" occur once: R = 0
    result = retrieval_metrics(queries, labels, k=3)
    assert result.n_skipped == 2
    assert np.isnan(result.per_query["map@3"][4:]).all()
    assert result.metrics["hit@3"] == pytest.approx(np.mean(result.per_query["hit@3"][:4]))
    with pytest.raises(DataError, match="relevant"):
        retrieval_metrics(queries, ["a", "b", "c", "d", "e", "f"])


def test_map_divides_by_all_relevant_but_st_by_min_k_r() -> None:
    # One query, 20 relevant items all ranked first: trec map_cut_10 = 10/20.
    queries = np.ones((1, 2))
    index = np.vstack([np.ones((20, 2)), -np.ones((5, 2))])
    result = retrieval_metrics(queries, [0], index, [0] * 20 + [1] * 5, k=10)
    assert result.metrics["map@10"] == pytest.approx(0.5)
    assert result.metrics["map@10_st"] == pytest.approx(1.0)
    assert result.metrics["ndcg@10"] == pytest.approx(1.0)


def test_ties_break_by_lower_position_whatever_the_chunking() -> None:
    rng = np.random.default_rng(9)
    # Integer vectors from a small pool: many exact score ties, exact dot products.
    pool = rng.integers(-2, 3, (6, 4)).astype(np.float64)
    queries = pool[rng.integers(0, 6, 40)]
    labels = rng.integers(0, 3, 40)
    results = [
        retrieval_metrics(queries, labels, k=8, chunk_size=c, similarity="dot")
        for c in (1, 3, 7, 1000)
    ]
    top, _ = brute_force(queries, labels, queries, labels, 8, True, "dot")
    for result in results:
        np.testing.assert_array_equal(result.topk_indices, top)
    all_same = retrieval_metrics(np.ones((10, 3)), [0] * 10, k=4, chunk_size=3)
    np.testing.assert_array_equal(all_same.topk_indices[0], [1, 2, 3, 4])
    np.testing.assert_array_equal(all_same.topk_indices[5], [0, 1, 2, 3])


def test_search_is_chunked_on_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Peak memory is bounded: no score block is ever larger than chunk x chunk."""
    n, chunk, k = 1500, 128, 10
    rng = np.random.default_rng(10)
    queries = rng.standard_normal((n, 16)).astype(np.float32)
    labels = rng.integers(0, 30, n)
    blocks: list[tuple[int, ...]] = []
    merge = metrics_module._merge_topk

    def spy(
        best_scores: torch.Tensor,
        best_indices: torch.Tensor,
        chunk_scores: torch.Tensor,
        offset: int,
        k: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        blocks.append(tuple(chunk_scores.shape))
        assert best_scores.shape[1] == k
        return merge(best_scores, best_indices, chunk_scores, offset, k)

    monkeypatch.setattr(metrics_module, "_merge_topk", spy)
    chunked = retrieval_metrics(queries, labels, k=k, chunk_size=chunk)
    n_chunks = math.ceil(n / chunk)
    assert len(blocks) == n_chunks * n_chunks
    assert max(rows * cols for rows, cols in blocks) <= chunk * chunk < n * n // 100

    monkeypatch.setattr(metrics_module, "_merge_topk", merge)
    whole = retrieval_metrics(queries, labels, k=k, chunk_size=n)
    np.testing.assert_array_equal(chunked.topk_indices, whole.topk_indices)
    assert chunked.metrics == pytest.approx(whole.metrics, abs=1e-12)


def test_unknown_similarity_lists_choices() -> None:
    queries, labels = make_data(0, n=5, n_labels=2)
    with pytest.raises(ConfigError, match=r"unknown similarity 'cosin'.*did you mean 'cosine'"):
        retrieval_metrics(queries, labels, similarity="cosin")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ConfigError, "k must be"),
        ({"chunk_size": 0}, ConfigError, "chunk_size must be"),
        ({"index_embeddings": np.ones((3, 4))}, ConfigError, "together"),
        ({"index_embeddings": np.ones((3, 5)), "index_labels": [0, 1, 2]}, DataError, "dimension"),
        ({"index_embeddings": np.ones((3, 4)), "index_labels": [0, 1]}, DataError, "one label"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        retrieval_metrics(np.ones((4, 4)), [0, 0, 1, 1], **kwargs)  # type: ignore[arg-type]


def test_invalid_embeddings() -> None:
    with pytest.raises(DataError, match="shape"):
        retrieval_metrics(np.ones(4), [0, 0, 1, 1])
    with pytest.raises(DataError, match="NaN"):
        retrieval_metrics(np.array([[1.0, np.nan], [1.0, 0.0]]), [0, 0])
    with pytest.raises(DataError, match="one label"):
        retrieval_metrics(np.ones((4, 2)), [0, 0, 1])


def test_compare_reports_changes_and_examples() -> None:
    queries, labels = make_data(11, n=40, n_labels=4)
    before = retrieval_metrics(queries, labels, k=5)
    # "Tuned" embeddings: the label mixed in, so most queries improve.
    tuned = queries + 3 * np.eye(8)[labels]
    after = retrieval_metrics(tuned, labels, k=5)
    texts = [f"text {i}" for i in range(40)]
    report = compare(before, after, query_texts=texts, index_texts=texts, n_examples=2)

    rows = {m.name: m for m in report.metrics}
    assert set(rows) == set(before.metrics)
    assert rows["map@5"].change == pytest.approx(after.metrics["map@5"] - before.metrics["map@5"])
    assert rows["map@5"].change > 0
    assert 1 <= len(report.improved) <= 2
    best = report.improved[0]
    delta = after.per_query["map@5"] - before.per_query["map@5"]
    assert best.change == pytest.approx(np.nanmax(delta))
    assert best.query_text == texts[best.query_index]
    assert [item.index for item in best.after_results] == list(after.topk_indices[best.query_index])
    assert all(item.text == texts[item.index] for item in best.before_results)
    assert all(q.change < 0 for q in report.worsened)

    as_dict = report.to_dict()
    json.dumps(as_dict)
    assert as_dict["metrics"]["map@5"]["after"] == after.metrics["map@5"]
    table = str(report)
    assert table.splitlines()[0].split("|")[0].strip() == "metric"
    assert "map@5_st" in table
    assert "Most improved" in table


def test_compare_rejects_mismatched_results() -> None:
    queries, labels = make_data(12, n=20, n_labels=3)
    with pytest.raises(ConfigError, match="same k"):
        compare(retrieval_metrics(queries, labels, k=3), retrieval_metrics(queries, labels, k=5))
