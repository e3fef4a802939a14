"""evaluate: how well a model retrieves relevant items from labelled or paired data."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from searchtuner.data.readers import Source, load_docs
from searchtuner.data.schemas import DataKind, kind_of
from searchtuner.encoding import as_items, encode
from searchtuner.errors import ConfigError, DataError
from searchtuner.evaluation.metrics import RetrievalResult, retrieval_metrics
from searchtuner.models.embedding_model import EmbeddingModel


def evaluate(
    model: EmbeddingModel,
    query_data: Source,
    index_data: Source | None = None,
    *,
    k: int = 10,
    batch_size: int = 64,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Retrieval metrics of ``model`` on labelled or paired data, as trec_eval defines them.

    Relevance is "same label" for labelled documents, and "the paired document" for
    query–document pairs (the documents form the index). Without ``index_data`` labelled
    queries search each other, and a query never retrieves itself.

    Args:
        model: the embedding model.
        query_data: labelled documents or query–document pairs (anything the readers take).
        index_data: labelled documents to search; default the queries themselves.
        k: rank cut-off.
        batch_size: items per forward pass.
        chunk_size: queries and index items per block of the search (bounds memory).

    Returns:
        ``{"precision@k", "recall@k", "map@k", "ndcg@k", "mrr@k", "hit@k", …}``.
    """
    return retrieve(
        model, query_data, index_data, k=k, batch_size=batch_size, chunk_size=chunk_size
    ).result.metrics


class Retrieval:
    """A retrieval run: the metrics, and the texts of queries and index for reports."""

    def __init__(self, result: RetrievalResult, queries: list[Any], index: list[Any]) -> None:
        self.result = result
        self.queries = queries
        self.index = index


def retrieve(
    model: EmbeddingModel,
    query_data: Source,
    index_data: Source | None = None,
    *,
    k: int = 10,
    batch_size: int = 64,
    chunk_size: int = 1024,
) -> Retrieval:
    """Like :func:`evaluate`, but keeps per-query results and the items for a report."""
    queries, query_labels, index, index_labels = _split(model, query_data, index_data)
    query_emb = encode(model, queries, batch_size=batch_size)
    index_emb = None if index is None else encode(model, index, batch_size=batch_size)
    result = retrieval_metrics(
        query_emb, query_labels, index_emb, index_labels, k=k, chunk_size=chunk_size
    )
    return Retrieval(result, queries, queries if index is None else index)


def _split(
    model: EmbeddingModel, query_data: Source, index_data: Source | None
) -> tuple[list[Any], list[Hashable], list[Any] | None, list[Hashable] | None]:
    docs = load_docs(query_data)
    kind = kind_of(docs[0])
    if kind is DataKind.PAIRS:
        if index_data is not None:
            raise ConfigError(
                "query–document pairs bring their own index (the documents); leave index_data "
                "unset, or pass labelled queries"
            )
        documents = list(dict.fromkeys(doc.document for doc in docs))
        # A query's relevant item is its paired document; repeated documents count once.
        return [doc.query for doc in docs], [doc.document for doc in docs], documents, documents
    if kind is not DataKind.LABELED:
        raise ConfigError(
            f"evaluate needs labelled documents or query–document pairs, got {kind} data"
        )
    queries, query_labels = _labelled(model, docs)
    if index_data is None:
        return queries, query_labels, None, None
    index, index_labels = _labelled(model, load_docs(index_data))
    return queries, query_labels, index, index_labels


def _labelled(model: EmbeddingModel, docs: Sequence[Any]) -> tuple[list[Any], list[Hashable]]:
    labels = [doc.label for doc in docs]
    missing = [i for i, label in enumerate(labels) if label is None]
    if missing:
        raise DataError(
            f"{len(missing)} documents have no label (first: item {missing[0]}); evaluation "
            "needs a label on every document"
        )
    return as_items(docs, model.modality), labels
