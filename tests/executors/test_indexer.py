"""The Indexer executor: its config loads, its methods run on DocLists against a brute-force
numpy oracle, its index survives a restart, bad requests fail with errors that say what to do,
and its README example (a Flow with the indexer alone, over gRPC and HTTP) runs.

The search Flow with the real encoder in front is tested end to end in
``tests/e2e/test_search_flow.py``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from docarray import DocList
from jina import Executor

from executors.common.errors import InvalidRequest
from executors.indexer.executor import IndexDoc, Indexer, SearchResult
from executors.indexer.index import ExactIndex
from searchtuner.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "executors" / "indexer" / "config.yml"
README = REPO / "executors" / "indexer" / "README.md"
DIM = 16


def _vectors(n: int, seed: int = 1, dim: int = DIM) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _docs(vectors: np.ndarray, prefix: str = "d") -> DocList[IndexDoc]:
    return DocList[IndexDoc](
        IndexDoc(id=f"{prefix}{i}", text=f"text {i}", label=f"L{i % 3}", tags={"i": i}, embedding=v)
        for i, v in enumerate(vectors)
    )


def _oracle(
    queries: np.ndarray, index: np.ndarray, k: int, metric: str, self_positions: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: score every pair, sort each row by (score desc, position asc)."""
    if metric == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        index = index / np.linalg.norm(index, axis=1, keepdims=True)
    scores = queries.astype(np.float64) @ index.astype(np.float64).T
    if self_positions:
        np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def _ids(result: SearchResult) -> list[str]:
    return [match.id for match in result.matches]


def test_the_config_loads_with_its_defaults() -> None:
    # Loaded once per process: jina imports py_modules by file path, and a second import of
    # executor.py warns that the name is taken.
    executor = Executor.load_config(str(CONFIG))
    assert type(executor).__name__ == "Indexer"
    assert executor.index.metric == "cosine"  # type: ignore[attr-defined]
    assert executor.defaults.top_k == 10  # type: ignore[attr-defined]
    assert executor.folder is None  # type: ignore[attr-defined]  # no workspace: memory only
    bound = {name: handler.fn.__name__ for name, handler in executor.requests.items()}
    assert bound["/index"] == "index_docs" and bound["/search"] == "search"
    assert bound["/count"] == "count" and bound["/clear"] == "clear"
    assert bound["/default"] == "passthrough"  # what lets it follow the encoder in a chain


@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("block_elements", [1 << 22, 50, 1])
def test_search_ranks_like_brute_force(metric: str, block_elements: int) -> None:
    index_vectors, query_vectors = _vectors(120, seed=1), _vectors(9, seed=2)
    executor = Indexer(metric=metric, block_elements=block_elements)
    executor.index_docs(_docs(index_vectors))

    results = executor.search(_docs(query_vectors, "q"), parameters={"top_k": 7})

    scores, order = _oracle(query_vectors, index_vectors, 7, metric)
    assert [r.id for r in results] == [f"q{i}" for i in range(9)]
    for result, expected_order, expected_scores in zip(results, order, scores, strict=True):
        assert _ids(result) == [f"d{j}" for j in expected_order]
        np.testing.assert_allclose(
            [m.score for m in result.matches], expected_scores, rtol=1e-5, atol=1e-5
        )


def test_matches_carry_the_indexed_fields_and_queries_keep_theirs() -> None:
    vectors = _vectors(5)
    executor = Indexer()
    sent = _docs(vectors)
    answer = executor.index_docs(sent)
    assert [d.id for d in answer] == [f"d{i}" for i in range(5)]
    assert (answer[2].text, answer[2].label, answer[2].tags) == ("text 2", "L2", {"i": 2})
    assert all(d.embedding is None for d in answer)  # the answer is small; the index keeps them
    assert all(d.embedding is not None for d in sent)  # the caller's documents are untouched

    query = IndexDoc(
        id="q", text="a query", label="L1", tags={"from": "user"}, embedding=vectors[3]
    )
    (result,) = executor.search(DocList[IndexDoc]([query]), parameters={"top_k": 2})

    assert (result.id, result.text, result.label, result.tags) == (
        "q", "a query", "L1", {"from": "user"},
    )  # fmt: skip
    best = result.matches[0]
    assert (best.id, best.text, best.label, best.tags) == ("d3", "text 3", "L0", {"i": 3})
    assert best.score == pytest.approx(1.0, abs=1e-6)
    assert result.matches[0].score >= result.matches[1].score


def test_top_k_defaults_to_the_configured_value_and_caps_at_the_index_size() -> None:
    executor = Indexer(top_k=4)
    executor.index_docs(_docs(_vectors(6)))
    queries = _docs(_vectors(2, seed=3), "q")

    assert [len(r.matches) for r in executor.search(queries)] == [4, 4]
    assert [len(r.matches) for r in executor.search(queries, parameters={"top_k": 50})] == [6, 6]
    # jina carries parameters as protobuf Struct values: numbers arrive as floats
    assert [len(r.matches) for r in executor.search(queries, parameters={"top_k": 2.0})] == [2, 2]
    # keys meant for other executors of the Flow are not errors
    assert len(executor.search(queries, parameters={"batch_size": 8})[0].matches) == 4


def test_exclude_self_skips_the_query_s_own_document() -> None:
    vectors = _vectors(30)
    executor = Indexer()
    executor.index_docs(_docs(vectors))

    results = executor.search(_docs(vectors), parameters={"top_k": 5, "exclude_self": True})
    plain = executor.search(_docs(vectors), parameters={"top_k": 5})

    _, order = _oracle(vectors, vectors, 5, "cosine", self_positions=True)
    for i, (result, expected) in enumerate(zip(results, order, strict=True)):
        assert _ids(result) == [f"d{j}" for j in expected]
        assert f"d{i}" not in _ids(result)
    assert all(_ids(r)[0] == r.id for r in plain)  # without it, each finds itself first

    # a query whose id is not indexed excludes nothing; fewer documents than k: all others
    (other,) = executor.search(
        _docs(vectors[:1], "new"), parameters={"top_k": 40, "exclude_self": True}
    )
    assert len(other.matches) == 30
    small = Indexer()
    small.index_docs(_docs(vectors[:3]))
    found = small.search(_docs(vectors[:3]), parameters={"top_k": 5, "exclude_self": True})
    assert [sorted(_ids(r)) for r in found] == [["d1", "d2"], ["d0", "d2"], ["d0", "d1"]]


def test_equal_scores_list_the_document_indexed_first_first() -> None:
    vectors = np.zeros((6, 4), dtype=np.float32)
    vectors[:, 0] = 1.0  # all six score the same for any query
    for block_elements in (1 << 22, 1):
        executor = Indexer(block_elements=block_elements)
        executor.index_docs(_docs(vectors[[5, 1, 3, 0, 2, 4]]))
        (result,) = executor.search(_docs(vectors[:1], "q"), parameters={"top_k": 3})
        assert _ids(result) == ["d0", "d1", "d2"]


def test_indexing_a_known_id_replaces_it_and_count_and_clear_report() -> None:
    executor = Indexer()
    executor.index_docs(_docs(_vectors(4)))
    replacement = IndexDoc(id="d2", text="new text", embedding=_vectors(1, seed=9)[0])
    executor.index_docs(DocList[IndexDoc]([replacement]))

    (stats,) = executor.count()
    assert (stats.count, stats.dim, stats.metric) == (4, DIM, "cosine")
    (result,) = executor.search(_docs(_vectors(1, seed=9), "q"), parameters={"top_k": 1})
    assert (result.matches[0].id, result.matches[0].text) == ("d2", "new text")

    (cleared,) = executor.clear()
    assert (cleared.count, cleared.dim) == (0, 0)
    assert len(executor.search(_docs(_vectors(1), "q"))[0].matches) == 0
    executor.index_docs(_docs(_vectors(2, dim=5)))  # empty again: any dimension
    assert executor.count()[0].dim == 5


def test_the_index_survives_a_restart_in_its_workspace(tmp_path: Path) -> None:
    vectors, queries = _vectors(50), _docs(_vectors(4, seed=5), "q")
    first = Indexer(metas={"name": "indexer", "workspace": str(tmp_path)})
    first.index_docs(_docs(vectors))
    before = first.search(queries, parameters={"top_k": 6})
    first.close()

    folder = tmp_path / "indexer"
    assert sorted(p.name for p in folder.iterdir()) == ["index.json", "index.npz"]
    meta = json.loads((folder / "index.json").read_text())
    assert (meta["count"], meta["dim"], meta["metric"]) == (50, DIM, "cosine")
    assert meta["payloads"][7] == {"text": "text 7", "label": "L1", "uri": None, "tags": {"i": 7}}
    with np.load(folder / "index.npz", allow_pickle=False) as saved:  # no pickle inside
        assert saved["embeddings"].shape == (50, DIM)

    second = Indexer(metas={"name": "indexer", "workspace": str(tmp_path)})
    after = second.search(queries, parameters={"top_k": 6})
    assert second.count()[0].count == 50
    for a, b in zip(before, after, strict=True):
        assert _ids(a) == _ids(b)
        assert [m.score for m in a.matches] == [m.score for m in b.matches]
        assert [m.tags for m in a.matches] == [m.tags for m in b.matches]

    with pytest.raises(ConfigError, match="scores by cosine, but this indexer is set to dot"):
        Indexer(metric="dot", metas={"name": "indexer", "workspace": str(tmp_path)})
    assert Indexer(persist=False, metas={"workspace": str(tmp_path)}).folder is None


def test_a_damaged_save_is_reported_not_loaded(tmp_path: Path) -> None:
    index = ExactIndex()
    index.add(["a", "b"], _vectors(2), [{"text": "a"}, {"text": "b"}])
    index.save(tmp_path / "one")
    other = ExactIndex()
    other.add(["a", "b"], _vectors(2, seed=7), [{}, {}])
    other.save(tmp_path / "two")
    (tmp_path / "one" / "index.npz").replace(tmp_path / "mixed.npz")
    (tmp_path / "two" / "index.npz").replace(tmp_path / "one" / "index.npz")

    with pytest.raises(DataError, match="do not belong together"):
        ExactIndex.load(tmp_path / "one")
    with pytest.raises(DataError, match=r"index\.npz is missing"):
        ExactIndex.load(tmp_path / "two")
    unsaveable = ExactIndex()
    unsaveable.add(["a"], _vectors(1), [{"tags": {"when": object()}}])
    with pytest.raises(DataError, match="not JSON"):
        unsaveable.save(tmp_path / "three")


def test_documents_without_embeddings_fail_with_what_to_do() -> None:
    executor = Indexer()
    docs = _docs(_vectors(3))
    docs[1].embedding = None

    with pytest.raises(DataError, match=r"1 of 3 have none \(first: id 'd1'\); put the encoder"):
        executor.index_docs(docs)
    with pytest.raises(DataError, match="/search needs an embedding on every document"):
        executor.search(docs)
    assert executor.count()[0].count == 0  # nothing of a failed request is kept


def test_a_dimension_mismatch_names_both_dimensions() -> None:
    executor = Indexer()
    executor.index_docs(_docs(_vectors(3)))

    with pytest.raises(DataError, match=r"dimension 8, but the index holds 16-dimensional"):
        executor.index_docs(_docs(_vectors(2, dim=8), "x"))
    with pytest.raises(DataError, match=r"dimension 8, but the index holds 16-dimensional"):
        executor.search(_docs(_vectors(2, dim=8), "q"))
    mixed = _docs(_vectors(2))
    mixed[1].embedding = np.ones(4, dtype=np.float32)
    with pytest.raises(DataError, match=r"all of one length; got shapes \[\(4,\), \(16,\)\]"):
        executor.index_docs(mixed)
    nan = _docs(_vectors(1), "n")
    nan[0].embedding[0] = np.nan
    with pytest.raises(DataError, match="NaN or infinite"):
        executor.index_docs(nan)
    assert executor.count()[0].count == 3


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"top_k": 0}, "top_k: Input should be greater than or equal to 1"),
        ({"top_k": "many"}, "top_k: Input should be a valid integer"),
        ({"exclude_self": "perhaps"}, "exclude_self: Input should be a valid boolean"),
    ],
)
def test_bad_parameters_fail_with_the_field_and_an_example(
    parameters: dict[str, object], message: str
) -> None:
    executor = Indexer()
    executor.index_docs(_docs(_vectors(2)))
    with pytest.raises(InvalidRequest, match=re.escape(message)) as caught:
        executor.search(_docs(_vectors(1), "q"), parameters=parameters)
    assert "send e.g. {'top_k': 10" in str(caught.value)


def test_bad_settings_fail_at_start() -> None:
    with pytest.raises(ConfigError, match=r"unknown metric 'cosin'.*did you mean 'cosine'"):
        Indexer(metric="cosin")
    for bad in (0, 10_001, "ten"):
        with pytest.raises(
            ConfigError, match=f"top_k must be an integer from 1 to 10000, got {bad!r}"
        ):
            Indexer(top_k=bad)  # type: ignore[arg-type]


@pytest.mark.integration
def test_the_readme_example_runs(tmp_path: Path) -> None:
    """The README's example: the indexer alone in a Flow, over gRPC and HTTP.

    It starts a Flow, so it runs as a script in a fresh interpreter (jina forks executors,
    and gRPC does not survive a fork after use in this process).
    """
    (block,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    (tmp_path / "executors").symlink_to(REPO / "executors")  # the example runs from the root
    script = tmp_path / "example.py"
    script.write_text(block)
    env = {**os.environ, "JINA_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert "grpc: cat -> ['kitten', 'lion']" in lines
    assert "http: cat -> ['kitten', 'lion']" in lines
    assert "count: 4" in lines
