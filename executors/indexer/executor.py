"""Indexer: an exact in-memory index behind ``/index``, ``/search``, ``/count`` and ``/clear``.

Put it after the encoder (``flows/search.yml``): the encoder fills each document's
``embedding``, ``/index`` stores the documents, and ``/search`` answers each query document
with its ``top_k`` best matches, best first, each carrying its ``score``.

The index lives in memory (:class:`ExactIndex`: numpy, exact). With ``persist`` and a
workspace (``workspace:`` of the executor or the Flow) it is loaded from the workspace at
start and written back when the executor closes.
"""

import sys
from pathlib import Path
from typing import Any

import numpy as np
from docarray import BaseDoc, DocList
from docarray.base_doc import AnyDoc
from docarray.typing import NdArray
from jina import Executor, requests
from jina.constants import __cache_path__
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from searchtuner.errors import ConfigError, DataError

try:
    from executors.common.errors import InvalidRequest
    from executors.indexer.index import ExactIndex, parse_metric
except ModuleNotFoundError:  # jina imports this file by path (py_modules), maybe from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from executors.common.errors import InvalidRequest
    from executors.indexer.index import ExactIndex, parse_metric

PAYLOAD_FIELDS = ("text", "label", "uri", "tags")


# `Field({})`, not `default_factory=dict`: jina's HTTP gateway rebuilds these schemas from their
# JSON schema, where only a plain default makes a field optional (pydantic copies it per doc).


class IndexDoc(BaseDoc):
    """A document to index, or a query: the encoder in front fills ``embedding``."""

    text: str | None = None
    label: str | None = None
    uri: str | None = None
    tags: dict[str, Any] = Field({})
    embedding: NdArray | None = None


class Match(BaseDoc):
    """An indexed document found for a query (its id is the indexed document's id)."""

    text: str | None = None
    label: str | None = None
    uri: str | None = None
    tags: dict[str, Any] = Field({})
    score: float = 0.0


class SearchResult(BaseDoc):
    """A query (same id, text, label, uri and tags; no embedding) and its matches, best first."""

    text: str | None = None
    label: str | None = None
    uri: str | None = None
    tags: dict[str, Any] = Field({})
    matches: DocList[Match] = Field(DocList[Match]())


class IndexStats(BaseDoc):
    """What the index holds: ``/count`` and ``/clear`` answer with one of these."""

    count: int = 0
    dim: int = 0  # 0 while the index is empty
    metric: str = "cosine"


class SearchParameters(BaseModel):
    """The ``parameters`` ``/search`` reads. Other keys are left alone: jina sends a Flow's
    parameters to every executor in it, so keys meant for the encoder arrive here too."""

    model_config = ConfigDict(extra="ignore")

    top_k: int = Field(10, ge=1, le=10_000, description="matches per query")
    exclude_self: bool = Field(
        False,
        description="never match the indexed document whose id is the query's id (for "
        "queries that are indexed documents themselves)",
    )


class Indexer(Executor):
    """Stores embedded documents and answers queries with their nearest documents.

    Args:
        metric: ``cosine`` (default) or ``dot``.
        top_k: matches per query when a request does not set ``top_k``.
        persist: load the index from the workspace at start and save it there on close,
            when a workspace is set (the executor's or the Flow's ``workspace``); without
            one the index lives in memory only.
        block_elements: scores computed at once in a search (queries × documents); bounds
            the memory a search takes (about 12 bytes each).
        **kwargs: passed to :class:`jina.Executor`.

    Raises:
        ConfigError: an unknown metric, a ``top_k`` below 1, or a saved index whose metric
            is not ``metric``.
        DataError: a saved index that cannot be read.
    """

    def __init__(
        self,
        metric: str = "cosine",
        top_k: int = 10,
        persist: bool = True,
        block_elements: int = 1 << 22,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        try:
            self.defaults = SearchParameters(top_k=top_k)
        except ValidationError as err:
            raise ConfigError(f"top_k must be an integer from 1 to 10000, got {top_k!r}") from err
        self.index = ExactIndex(metric, block_elements=block_elements)
        self.folder = self._persist_folder() if persist else None
        if self.folder is not None and (self.folder / "index.json").exists():
            saved = ExactIndex.load(self.folder, block_elements=block_elements)
            if saved.metric is not parse_metric(metric):
                raise ConfigError(
                    f"the index saved in {self.folder} scores by {saved.metric.value}, but "
                    f"this indexer is set to {metric}: set metric: {saved.metric.value}, or "
                    "use another workspace"
                )
            self.index = saved
            self.logger.info(f"loaded {len(saved)} documents from {self.folder}")

    @requests(on="/index")
    def index_docs(self, docs: DocList[IndexDoc], **kwargs: Any) -> DocList[IndexDoc]:
        """Store the documents (a known id replaces its document); answer without embeddings.

        Raises:
            DataError: a document without an embedding, or one of another dimension.
        """
        if len(docs) == 0:
            return docs
        vectors = _embeddings(docs, "index")
        self.index.add([doc.id for doc in docs], vectors, [_payload(doc) for doc in docs])
        # The answer lists what was indexed, without the vectors: they stay here.
        return DocList[IndexDoc](IndexDoc(id=doc.id, **_payload(doc)) for doc in docs)

    @requests(on="/search")
    def search(
        self, docs: DocList[IndexDoc], parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> DocList[SearchResult]:
        """Answer each query with its ``top_k`` best matches (``parameters``: ``top_k``,
        ``exclude_self``), best first; fewer when the index holds fewer documents.

        Raises:
            InvalidRequest: a parameter of the wrong type or range.
            DataError: a query without an embedding, or one of another dimension.
        """
        config = _parameters(parameters or {}, self.defaults)
        results = DocList[SearchResult]()
        if len(docs) == 0:
            return results
        vectors = _embeddings(docs, "search")
        exclude = [doc.id for doc in docs] if config.exclude_self else None
        scores, positions = self.index.search(vectors, config.top_k, exclude=exclude)
        ids = self.index.ids
        for doc, row_scores, row_positions in zip(docs, scores, positions, strict=True):
            matches = DocList[Match](
                Match(id=ids[position], score=float(score), **self.index.payload(position))
                for score, position in zip(row_scores, row_positions, strict=True)
                if position >= 0
            )
            results.append(SearchResult(id=doc.id, **_payload(doc), matches=matches))
        return results

    @requests(on="/count")
    def count(self, **kwargs: Any) -> DocList[IndexStats]:
        """How many documents the index holds, their dimension and the metric."""
        return DocList[IndexStats]([self._stats()])

    @requests(on="/clear")
    def clear(self, **kwargs: Any) -> DocList[IndexStats]:
        """Remove every document (and, with persistence, the saved files at close)."""
        self.index.clear()
        return DocList[IndexStats]([self._stats()])

    @requests
    def passthrough(self, docs: DocList[AnyDoc], **kwargs: Any) -> DocList[AnyDoc]:
        """Leave requests for other endpoints (the encoder's ``/encode``) as they are.

        Jina refuses to start a chain in which the executor after the encoder binds neither
        the encoder's endpoints nor ``/default``, and checks at start that the two default
        routes take the same schema: the encoder's takes and returns ``AnyDoc``.
        """
        return None  # type: ignore[return-value]  # jina: None keeps the request's documents

    def close(self) -> None:
        """Save the index to the workspace (with ``persist``), then close."""
        if self.folder is not None:
            self.index.save(self.folder)
            self.logger.info(f"saved {len(self.index)} documents to {self.folder}")
        super().close()

    def _persist_folder(self) -> Path | None:
        # Executor.workspace falls back to jina's cache folder: persist only where asked to.
        workspace = self.workspace
        if not workspace or Path(__cache_path__) in Path(workspace).parents:
            return None
        return Path(workspace)

    def _stats(self) -> IndexStats:
        return IndexStats(
            count=len(self.index), dim=self.index.dim or 0, metric=self.index.metric.value
        )


def _parameters(values: dict[str, Any], defaults: SearchParameters) -> SearchParameters:
    try:
        return SearchParameters.model_validate({**defaults.model_dump(), **values})
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise InvalidRequest(
            f"bad search parameters ({problems}); send e.g. {{'top_k': 10, 'exclude_self': false}}"
        ) from err


def _embeddings(docs: DocList[IndexDoc], endpoint: str) -> np.ndarray:
    missing = [doc.id for doc in docs if doc.embedding is None]
    if missing:
        raise DataError(
            f"/{endpoint} needs an embedding on every document, but {len(missing)} of "
            f"{len(docs)} have none (first: id {missing[0]!r}); put the encoder in front of "
            "the indexer in the Flow, or set each document's embedding"
        )
    shapes = {np.shape(doc.embedding) for doc in docs}
    if len(shapes) > 1 or len(next(iter(shapes))) != 1:
        raise DataError(
            f"/{endpoint} needs one flat embedding per document, all of one length; got "
            f"shapes {sorted(shapes)}: embed every document with the same model"
        )
    return np.stack([np.asarray(doc.embedding, dtype=np.float32) for doc in docs])


def _payload(doc: IndexDoc) -> dict[str, Any]:
    return {name: getattr(doc, name) for name in PAYLOAD_FIELDS}
