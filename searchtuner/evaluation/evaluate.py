"""evaluate: how well a model retrieves relevant items from labelled or paired data."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from searchtuner.data.readers import Source, load_docs
from searchtuner.data.schemas import DataKind, kind_of
from searchtuner.encoding import as_items
from searchtuner.errors import ConfigError, DataError
from searchtuner.evaluation.metrics import RetrievalResult, retrieval_metrics
from searchtuner.models.dual_encoder import DualEncoder
from searchtuner.models.embedding_model import EmbeddingModel
from searchtuner.types import Modality

Model = EmbeddingModel | DualEncoder


def evaluate(
    model: Model,
    query_data: Source,
    index_data: Source | None = None,
    *,
    k: int = 10,
    batch_size: int = 64,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Retrieval metrics of ``model`` on labelled or paired data, as trec_eval defines them.

    Relevance is "same label" for labelled documents, and "the paired document" for
    query–document pairs (the documents form the index) and text–image pairs (texts search
    the images). Without ``index_data`` labelled queries search each other, and a query never
    retrieves itself.

    Args:
        model: the embedding model (or a DualEncoder for text–image pairs).
        query_data: labelled documents or pairs (anything the readers take).
        index_data: labelled documents to search; default the queries themselves.
        k: rank cut-off.
        batch_size: items per forward pass.
        chunk_size: queries and index items per block of the search (bounds memory).

    Returns:
        ``{"precision@k", "recall@k", "map@k", "ndcg@k", "mrr@k", "hit@k", …}``.
    """
    evaluator = Evaluator(model, query_data, index_data, k=k, batch_size=batch_size,
                          chunk_size=chunk_size)  # fmt: skip
    return evaluator.run(model).metrics


def retrieve(
    model: Model,
    query_data: Source,
    index_data: Source | None = None,
    *,
    k: int = 10,
    batch_size: int = 64,
) -> tuple[RetrievalResult, Evaluator]:
    """Like :func:`evaluate`, but keeps the per-query results and the evaluator's items."""
    evaluator = Evaluator(model, query_data, index_data, k=k, batch_size=batch_size)
    return evaluator.run(model), evaluator


class Evaluator:
    """Reads evaluation data once and scores any model on it, as often as needed.

    Texts are tokenised once, so evaluating after every epoch costs only the forward passes.
    """

    def __init__(
        self,
        model: Model,
        query_data: Source,
        index_data: Source | None = None,
        *,
        k: int = 10,
        batch_size: int = 64,
        chunk_size: int = 1024,
    ) -> None:
        if k < 1 or batch_size < 1:
            raise ConfigError(
                f"k and batch_size must be at least 1, got k={k}, batch_size={batch_size}"
            )
        self.k, self.batch_size, self.chunk_size = k, batch_size, chunk_size
        docs = load_docs(query_data)
        kind = kind_of(docs[0])
        self.query_modality = self.index_modality = _modality(model)
        self.index: list[Any] | None = None
        self.index_labels: list[Hashable] | None = None
        if kind is DataKind.PAIRS:
            if index_data is not None:
                raise ConfigError(
                    "pairs bring their own index (the documents); leave index_data unset"
                )
            # A query's relevant item is its paired document; a repeated document counts once.
            self.queries = [doc.query for doc in docs]
            self.labels: list[Hashable] = [doc.document for doc in docs]
            self.index = list(dict.fromkeys(doc.document for doc in docs))
            self.index_labels = list(self.index)
        elif kind is DataKind.TEXT_IMAGE:
            if not isinstance(model, DualEncoder):
                raise ConfigError("text–image pairs are evaluated with a DualEncoder(text, image)")
            self.query_modality, self.index_modality = Modality.TEXT, Modality.IMAGE
            self.queries = [doc.text for doc in docs]
            self.labels = list(range(len(docs)))
            self.index = [doc.image if doc.image is not None else doc.uri for doc in docs]
            self.index_labels = list(self.labels)
        elif kind is DataKind.LABELED:
            self.queries, self.labels = _labelled(docs, self.query_modality)
            if index_data is not None:
                self.index, self.index_labels = _labelled(
                    load_docs(index_data), self.index_modality
                )
        else:
            raise ConfigError(f"evaluation needs labelled documents or pairs, got {kind} data")
        self._prepared_queries = _tower(model, self.query_modality).preprocess_items(self.queries)
        self._prepared_index = (
            None if self.index is None
            else _tower(model, self.index_modality).preprocess_items(self.index)
        )  # fmt: skip

    @property
    def index_items(self) -> list[Any]:
        return self.queries if self.index is None else self.index

    def run(self, model: Model) -> RetrievalResult:
        """Embed queries and index with ``model`` and compute the metrics."""
        query_emb = _embed(
            _tower(model, self.query_modality), self._prepared_queries, self.batch_size
        )
        index_emb = None
        if self._prepared_index is not None:
            index_emb = _embed(
                _tower(model, self.index_modality), self._prepared_index, self.batch_size
            )
        return retrieval_metrics(query_emb, self.labels, index_emb, self.index_labels, k=self.k,
                                 chunk_size=self.chunk_size)  # fmt: skip


def _modality(model: Model) -> Modality:
    return Modality.TEXT if isinstance(model, DualEncoder) else model.modality


def _tower(model: Model, modality: Modality) -> EmbeddingModel:
    return model.tower(modality) if isinstance(model, DualEncoder) else model


def _embed(model: EmbeddingModel, prepared: Sequence[Any], batch_size: int) -> np.ndarray:
    from searchtuner.encoding import encode_prepared

    return encode_prepared(model, prepared, batch_size=batch_size)


def _labelled(docs: Sequence[Any], modality: Modality) -> tuple[list[Any], list[Hashable]]:
    labels = [doc.label for doc in docs]
    missing = [i for i, label in enumerate(labels) if label is None]
    if missing:
        raise DataError(
            f"{len(missing)} documents have no label (first: item {missing[0]}); evaluation "
            "needs a label on every document"
        )
    return as_items(docs, modality), labels


__all__ = ["Evaluator", "evaluate", "retrieve"]
