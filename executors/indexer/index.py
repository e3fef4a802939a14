"""An exact in-memory vector index: numpy matmul, top-k in bounded blocks, files without pickle.

Every query is scored against every stored embedding, so results are exact. At the scale the
search Flow is for (1k–100k documents of a few hundred dimensions) that costs one matrix
product per block of queries: 100k × 384 float32 is 154 MB in memory and about 40 MFLOP per
query, a few milliseconds on two cores. An approximate graph index (HNSW) only pays off from
millions of documents, and would give up exactness and deterministic ties, which the tests and
the search-quality demo compare against.

Ranking is by score, highest first; equal scores list the document indexed first first, so a
result never depends on the block size.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from searchtuner.errors import ConfigError, DataError, invalid_choice

FORMAT = "searchtuner-exact-index"
FORMAT_VERSION = 1
EMBEDDINGS_FILE = "index.npz"
META_FILE = "index.json"


class Metric(StrEnum):
    """How a query scores a document; higher scores rank first."""

    COSINE = "cosine"  # dot product of L2-normalised embeddings
    DOT = "dot"  # raw dot product (for models trained for it)


def parse_metric(value: str) -> Metric:
    """The metric named ``value``; a ConfigError lists the allowed names otherwise."""
    try:
        return Metric(value)
    except ValueError:
        raise invalid_choice("metric", value, [m.value for m in Metric]) from None


class ExactIndex:
    """Embeddings with their ids and payloads (JSON-able dicts); exact top-k search.

    Args:
        metric: ``"cosine"`` (embeddings are L2-normalised when added) or ``"dot"``.
        block_elements: scores computed at once (queries × documents); bounds peak memory at
            about 12 bytes per element (the scores and argpartition's positions).

    Raises:
        ConfigError: an unknown metric or a non-positive ``block_elements``.
    """

    def __init__(self, metric: str = "cosine", *, block_elements: int = 1 << 22) -> None:
        self.metric = parse_metric(metric)
        if block_elements < 1:
            raise ConfigError(f"block_elements must be at least 1, got {block_elements}")
        self.block_elements = block_elements
        self._matrix = np.empty((0, 0), dtype=np.float32)  # capacity rows; the first _size used
        self._size = 0
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._payloads: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return self._size

    @property
    def dim(self) -> int | None:
        """The embedding dimension, fixed by the first document; None while empty."""
        return self._matrix.shape[1] if self._size else None

    @property
    def ids(self) -> list[str]:
        """Document ids in the order they were first added."""
        return list(self._ids)

    @property
    def embeddings(self) -> np.ndarray:
        """The stored ``(n, dim)`` embeddings (L2-normalised for cosine); a read-only view."""
        view = self._matrix[: self._size]
        view.flags.writeable = False
        return view

    def payload(self, position: int) -> dict[str, Any]:
        """The payload stored with the document at ``position``."""
        return self._payloads[position]

    def add(
        self,
        ids: Sequence[str],
        embeddings: np.ndarray,
        payloads: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Add documents; a document whose id is already stored replaces it in place.

        Args:
            ids: one id per document.
            embeddings: ``(n, dim)`` finite values, ``dim`` the index's dimension once set.
            payloads: what to return with each match (text, label, tags, …), or None.

        Raises:
            DataError: counts that differ, a wrong shape or dimension, non-finite values.
        """
        vectors = self._check_vectors(embeddings, "the documents' embeddings")
        if len(ids) != vectors.shape[0] or (payloads is not None and len(payloads) != len(ids)):
            raise DataError(
                f"got {len(ids)} ids, {vectors.shape[0]} embeddings and "
                f"{'no' if payloads is None else len(payloads)} payloads; give one of each per "
                "document"
            )
        if self.metric is Metric.COSINE:
            vectors = _normalised(vectors)
        if self._size == 0:
            self._matrix = np.empty((0, vectors.shape[1]), dtype=np.float32)
        rows = np.empty(len(ids), dtype=np.int64)
        for i, doc_id in enumerate(ids):
            row = self._rows.get(doc_id)
            if row is None:
                row = self._rows[doc_id] = len(self._ids)
                self._ids.append(doc_id)
                self._payloads.append({})
            rows[i] = row
            self._payloads[row] = dict(payloads[i]) if payloads is not None else {}
        self._reserve(len(self._ids))
        self._matrix[rows] = vectors  # a repeated id: the last one wins, as numpy assigns
        self._size = len(self._ids)

    def search(
        self, queries: np.ndarray, k: int, *, exclude: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents for each query, best first.

        Args:
            queries: ``(n, dim)`` query embeddings.
            k: how many results per query.
            exclude: per query, the id of a document it must not retrieve (e.g. its own id,
                when the queries are indexed documents), or None.

        Returns:
            ``(scores, positions)``, both ``(n, k)``: positions into :attr:`ids`, -1 (score
            -inf) where fewer than ``k`` documents could be retrieved.

        Raises:
            ConfigError: a non-positive ``k``.
            DataError: a wrong shape or dimension, non-finite values, or an ``exclude`` list
                that is not one entry per query.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"top_k must be a positive integer, got {k!r}")
        vectors = self._check_vectors(queries, "the queries' embeddings")
        n = vectors.shape[0]
        if exclude is not None and len(exclude) != n:
            raise DataError(f"exclude has {len(exclude)} entries for {n} queries; give one each")
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        positions = np.full((n, k), -1, dtype=np.int64)
        if self._size == 0 or n == 0:
            return scores, positions
        if self.metric is Metric.COSINE:
            vectors = _normalised(vectors)
        own = np.full(n, -1, dtype=np.int64)
        for i, doc_id in enumerate(exclude or ()):
            if doc_id is not None:
                own[i] = self._rows.get(doc_id, -1)
        matrix = self._matrix[: self._size]
        kk = min(k, self._size)
        step = max(1, self.block_elements // self._size)
        for start in range(0, n, step):
            block = vectors[start : start + step] @ matrix.T
            mine = own[start : start + step]
            hit = np.flatnonzero(mine >= 0)
            block[hit, mine[hit]] = -np.inf
            top_scores, top_positions = _top_k(block, kk)
            scores[start : start + step, :kk] = top_scores
            positions[start : start + step, :kk] = top_positions
        positions[np.isneginf(scores)] = -1  # only excluded documents score -inf
        return scores, positions

    def clear(self) -> None:
        """Remove every document (the dimension is free again)."""
        self._matrix = np.empty((0, 0), dtype=np.float32)
        self._size = 0
        self._ids, self._rows, self._payloads = [], {}, []

    def save(self, folder: str | Path) -> None:
        """Write the index to ``folder``: ``index.npz`` (embeddings) and ``index.json``.

        The JSON file holds the metric, ids, payloads and the SHA-256 of the embeddings; each
        file is written to a temporary name and renamed, the JSON last, so a reader never sees
        a half-written file and :meth:`load` notices files from two different saves.

        Raises:
            DataError: a payload that JSON cannot represent.
        """
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        matrix = np.ascontiguousarray(self._matrix[: self._size])
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "metric": self.metric.value,
            "count": self._size,
            "dim": self.dim,
            "sha256": hashlib.sha256(matrix.tobytes()).hexdigest(),
            "ids": self._ids,
            "payloads": self._payloads,
        }
        try:
            text = json.dumps(meta, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise DataError(
                f"cannot save the index to {target}: a document's text, label or tags are not "
                f"JSON ({err}); keep tags to strings, numbers, booleans, lists and dicts"
            ) from err
        _write_atomically(target / EMBEDDINGS_FILE, lambda f: np.savez(f, embeddings=matrix))
        _write_atomically(target / META_FILE, lambda f: f.write(text.encode("utf-8")))

    @classmethod
    def load(cls, folder: str | Path, *, block_elements: int = 1 << 22) -> ExactIndex:
        """Read an index written by :meth:`save` (nothing is unpickled).

        Raises:
            DataError: missing files, another format, or files that do not belong together.
        """
        source = Path(folder)
        meta_path, npz_path = source / META_FILE, source / EMBEDDINGS_FILE
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            with np.load(npz_path, allow_pickle=False) as data:
                matrix = np.asarray(data["embeddings"], dtype=np.float32)
        except FileNotFoundError as err:
            raise DataError(
                f"no saved index in {source}: {err.filename} is missing; index the documents "
                "again, or point the workspace at the folder of a saved index"
            ) from err
        except (ValueError, KeyError, OSError) as err:
            raise DataError(
                f"the saved index in {source} cannot be read ({err}); delete {meta_path.name} "
                f"and {npz_path.name} and index the documents again"
            ) from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise DataError(f"{meta_path} is not a SearchTuner index file")
        if meta.get("version") != FORMAT_VERSION:
            raise DataError(
                f"{meta_path} has format version {meta.get('version')}; this indexer reads "
                f"version {FORMAT_VERSION}: index the documents again"
            )
        ids, payloads = meta.get("ids"), meta.get("payloads")
        digest = hashlib.sha256(np.ascontiguousarray(matrix).tobytes()).hexdigest()
        if (
            digest != meta.get("sha256")
            or matrix.ndim != 2
            or not isinstance(ids, list)
            or not isinstance(payloads, list)
            or not len(ids) == len(payloads) == matrix.shape[0]
            or len(set(ids)) != len(ids)
        ):
            raise DataError(
                f"{npz_path.name} and {meta_path.name} in {source} do not belong together (a "
                "save was interrupted?); delete both and index the documents again"
            )
        index = cls(meta["metric"], block_elements=block_elements)
        if matrix.shape[0]:  # as saved: already normalised for cosine, so not normalised again
            index._matrix = matrix
            index._size = matrix.shape[0]
            index._ids = [str(doc_id) for doc_id in ids]
            index._rows = {doc_id: row for row, doc_id in enumerate(index._ids)}
            index._payloads = [dict(payload) for payload in payloads]
        return index

    def _check_vectors(self, values: np.ndarray, what: str) -> np.ndarray:
        vectors = np.asarray(values, dtype=np.float32)
        if vectors.ndim != 2:
            raise DataError(f"{what} must have shape (n, dim), got {vectors.shape}")
        if self._size and vectors.shape[1] != self._matrix.shape[1]:
            raise DataError(
                f"{what} have dimension {vectors.shape[1]}, but the index holds "
                f"{self._matrix.shape[1]}-dimensional embeddings: use the model the index was "
                "built with, or clear the index first"
            )
        if not np.isfinite(vectors).all():
            raise DataError(f"{what} contain NaN or infinite values; check the model's output")
        return vectors

    def _reserve(self, rows: int) -> None:
        """Grow the matrix's capacity geometrically, so adding n documents costs O(n)."""
        capacity = self._matrix.shape[0]
        if rows <= capacity:
            return
        grown = np.empty((max(rows, 2 * capacity, 1024), self._matrix.shape[1]), np.float32)
        grown[: self._size] = self._matrix[: self._size]
        self._matrix = grown


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)  # a zero vector stays zero (scores 0)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``k`` best columns by (score desc, column asc); ``k <= scores.shape[1]``."""
    n_cols = scores.shape[1]
    if k < n_cols:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(n_cols), scores.shape)
    values = np.take_along_axis(scores, candidates, axis=1)
    order = np.lexsort((candidates, -values), axis=1)
    positions = np.take_along_axis(candidates, order, axis=1)
    values = np.take_along_axis(values, order, axis=1)
    if k < n_cols:
        # argpartition picks arbitrarily among scores tied with the k-th; rows with such a
        # tie take their top k from a stable sort, which keeps the lower column first.
        tied = np.flatnonzero((scores >= values[:, -1:]).sum(axis=1) > k)
        if tied.size:
            stable = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k]
            positions[tied] = stable
            values[tied] = np.take_along_axis(scores[tied], stable, axis=1)
    return values, positions


def _write_atomically(path: Path, write: Any) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
