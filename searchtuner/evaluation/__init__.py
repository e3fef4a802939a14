"""Evaluation of embedding models for search: trec_eval-compatible retrieval metrics."""

from searchtuner.evaluation.evaluate import Evaluator, evaluate, retrieve
from searchtuner.evaluation.metrics import (
    ComparisonReport,
    MetricChange,
    QueryChange,
    RankedItem,
    RetrievalResult,
    Similarity,
    compare,
    ranking_metrics,
    retrieval_metrics,
)

__all__ = [
    "ComparisonReport",
    "Evaluator",
    "MetricChange",
    "QueryChange",
    "RankedItem",
    "RetrievalResult",
    "Similarity",
    "compare",
    "evaluate",
    "ranking_metrics",
    "retrieval_metrics",
    "retrieve",
]
