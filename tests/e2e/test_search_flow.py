"""The search Flow end to end: a model fine-tuned by the real service (the session's
``service`` fixture) is served by ``python -m flows.search`` (encoder, then indexer) in a
child process on 127.0.0.1; documents are indexed and searched over gRPC and HTTP, and the
answers are checked against a plain numpy search over ``searchtuner.encode`` embeddings.
The search-quality demo runs through the same Flow, and its metrics are checked against
``searchtuner.evaluation.retrieval_metrics``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from docarray import DocList
from jina import Client
from jina.excepts import BadServer

import searchtuner
from executors.indexer.executor import IndexDoc, IndexStats, SearchResult
from searchtuner.client import Run
from searchtuner.evaluation import retrieval_metrics
from searchtuner.search_demo import SearchFlow, run_search_demo
from tests.e2e.service import Service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_TIMEOUT = 900.0
QUERIES = ["a domestic animal kept for companionship", "move quickly on foot", "great happiness"]


@pytest.fixture(scope="module")
def tuned(service: Service, wordnet_csv: dict[str, Path]) -> Run:
    """A run the real service fine-tuned (4 steps) and published."""
    run = searchtuner.Client(service.http, token=service.token).fit(
        "all-MiniLM-L6-v2",
        wordnet_csv["train"],
        wordnet_csv["eval"],
        model_options={"max_length": 32},
        name="search-flow-e2e",
        onnx=False,
        epochs=1,
        batch_size=16,
        max_steps=4,
    )
    run.wait(timeout=RUN_TIMEOUT, poll=1.0)
    assert run.state == "FINISHED", run.reason
    assert run.model_handle.startswith("stm1:")
    return run


@pytest.fixture(scope="module")
def model(tuned: Run) -> searchtuner.EmbeddingModel:
    """The tuned model, pulled from the service: the oracle's encoder."""
    return tuned.get_model()


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("search-flow")


@pytest.fixture(scope="module")
def search_flow(tuned: Run, flow_dir: Path) -> Iterator[SearchFlow]:
    """The search Flow serving the run's model by its handle, with a workspace."""
    flow = SearchFlow(tuned.model_handle, flow_dir / "flow.log", workspace=flow_dir / "ws")
    flow.start()
    try:
        flow.wait_ready()
        yield flow
    finally:
        flow.stop()


@pytest.fixture(scope="module")
def indexed(
    search_flow: SearchFlow, wordnet_rows: dict[str, list[tuple[str, str]]]
) -> list[tuple[str, str]]:
    """The eval rows, indexed over gRPC with ids, labels and tags."""
    rows = wordnet_rows["eval"]
    docs = DocList[IndexDoc](
        IndexDoc(id=f"d{i}", text=text, label=label, tags={"row": i})
        for i, (text, label) in enumerate(rows)
    )
    answer = _grpc(search_flow).post("/index", inputs=docs, return_type=DocList[IndexDoc])
    assert [doc.id for doc in answer] == [f"d{i}" for i in range(len(rows))]
    return rows


def _grpc(flow: SearchFlow) -> Client:
    return Client(host=f"grpc://127.0.0.1:{flow.grpc_port}")


def _oracle(
    model: searchtuner.EmbeddingModel, rows: list[tuple[str, str]], queries: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every query against every row, from embeddings made outside the Flow."""
    index = searchtuner.encode(model, [text for text, _ in rows], batch_size=64)
    found = searchtuner.encode(model, queries, batch_size=64)
    index /= np.linalg.norm(index, axis=1, keepdims=True)
    found /= np.linalg.norm(found, axis=1, keepdims=True)
    scores = found @ index.T
    return scores, np.argsort(-scores, axis=1, kind="stable")


def test_search_over_grpc_finds_what_a_numpy_search_finds(
    search_flow: SearchFlow, indexed: list[tuple[str, str]], model: searchtuner.EmbeddingModel
) -> None:
    results = _grpc(search_flow).post(
        "/search",
        inputs=DocList[IndexDoc](IndexDoc(id=f"q{i}", text=q) for i, q in enumerate(QUERIES)),
        parameters={"top_k": 5},
        return_type=DocList[SearchResult],
    )

    scores, order = _oracle(model, indexed, QUERIES)
    assert [r.id for r in results] == ["q0", "q1", "q2"]
    for i, result in enumerate(results):
        assert len(result.matches) == 5
        assert result.matches[0].id == f"d{order[i, 0]}"  # the top match
        assert [m.id for m in result.matches] == [f"d{j}" for j in order[i, :5]]
        np.testing.assert_allclose(
            [m.score for m in result.matches], scores[i, order[i, :5]], atol=1e-5
        )
        best = result.matches[0]  # the indexed fields come back with it
        position = int(best.id[1:])
        assert (best.text, best.label, best.tags) == (*indexed[position], {"row": position})


def test_search_over_http_answers_like_grpc(
    search_flow: SearchFlow, indexed: list[tuple[str, str]]
) -> None:
    queries = [{"id": f"q{i}", "text": q} for i, q in enumerate(QUERIES)]
    over_http = search_flow.post("/search", queries, {"top_k": 3})
    over_grpc = _grpc(search_flow).post(
        "/search",
        inputs=DocList[IndexDoc](IndexDoc(**q) for q in queries),
        parameters={"top_k": 3},
        return_type=DocList[SearchResult],
    )

    assert [d["id"] for d in over_http] == [d.id for d in over_grpc]
    for http_doc, grpc_doc in zip(over_http, over_grpc, strict=True):
        assert [m["id"] for m in http_doc["matches"]] == [m.id for m in grpc_doc.matches]
        np.testing.assert_allclose(
            [m["score"] for m in http_doc["matches"]],
            [m.score for m in grpc_doc.matches],
            atol=1e-5,
        )
        assert {"text", "label", "tags", "score"} <= set(http_doc["matches"][0])


def test_indexed_documents_search_the_others_and_count(
    search_flow: SearchFlow, indexed: list[tuple[str, str]], model: searchtuner.EmbeddingModel
) -> None:
    docs = [{"id": f"d{i}", "text": text} for i, (text, _) in enumerate(indexed)]
    answers = search_flow.post("/search", docs, {"top_k": 4, "exclude_self": True})

    texts = [text for text, _ in indexed]
    _, order = _oracle(model, indexed, texts)
    for i, answer in enumerate(answers):
        ids = [m["id"] for m in answer["matches"]]
        assert f"d{i}" not in ids
        assert ids[0] == f"d{next(j for j in order[i] if j != i)}"
    # /count carries no documents: the encoder passes it on as it is
    count = requests.post(f"{search_flow.url}/count", json={"data": []}, timeout=60)
    assert count.status_code == 200, count.text
    assert count.json()["data"][0]["count"] == len(indexed)
    (stats,) = _grpc(search_flow).post("/count", return_type=DocList[IndexStats])
    assert (stats.count, stats.dim, stats.metric) == (len(indexed), 384, "cosine")
    ready = requests.get(f"{search_flow.url}/dry_run", timeout=60).json()  # jina's readiness
    assert ready["code"] in (0, "SUCCESS"), ready


def test_bad_requests_fail_with_what_to_fix(search_flow: SearchFlow) -> None:
    no_text = requests.post(
        f"{search_flow.url}/search", json={"data": [{"id": "q-empty"}]}, timeout=60
    )
    assert no_text.status_code == 500
    detail = no_text.json()["detail"]  # the encoder's error: which document, which field
    assert detail.startswith("DataError(") and "'q-empty'" in detail and "'text'" in detail
    with pytest.raises(BadServer) as caught:
        _grpc(search_flow).post(
            "/search",
            inputs=DocList[IndexDoc]([IndexDoc(text="a query")]),
            parameters={"top_k": 0},
            return_type=DocList[SearchResult],
        )
    status = caught.value.args[0].status
    assert status.exception.name == "InvalidRequest"
    assert "top_k: Input should be greater than or equal to 1" in status.exception.args[0]


def test_the_index_is_saved_in_the_workspace_and_loaded_at_start(
    tuned: Run, search_flow: SearchFlow, indexed: list[tuple[str, str]], flow_dir: Path
) -> None:
    """Stops the module's Flow (this test runs last in the module) and starts another on
    the same workspace."""
    before = search_flow.post("/search", [{"id": "q", "text": QUERIES[0]}], {"top_k": 5})
    search_flow.stop()

    saved = json.loads((flow_dir / "ws" / "indexer" / "0" / "index.json").read_text())
    assert (saved["count"], saved["dim"]) == (len(indexed), 384)
    with SearchFlow(tuned.model_handle, flow_dir / "flow2.log", workspace=flow_dir / "ws") as again:
        again.wait_ready()
        after = again.post("/search", [{"id": "q", "text": QUERIES[0]}], {"top_k": 5})
        # more than one HTTP request's worth (100): SearchFlow.post cuts them, none is lost
        many = [{"id": f"q{i}", "text": QUERIES[i % 3]} for i in range(150)]
        answers = again.post("/search", many, {"top_k": 1})
    assert [m["id"] for m in after[0]["matches"]] == [m["id"] for m in before[0]["matches"]]
    assert [a["id"] for a in answers] == [q["id"] for q in many]


def test_the_search_demo_runs_through_the_flow(
    tuned: Run,
    model: searchtuner.EmbeddingModel,
    wordnet_rows: dict[str, list[tuple[str, str]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = wordnet_rows["eval"]
    bundle = tuned.save_artifact(tmp_path / "tuned")

    outcome = run_search_demo(bundle, tmp_path / "demo", rows=rows, k=5, use_flow=True)

    out = capsys.readouterr().out
    assert outcome["where"] == "search Flow (encoder: torch, indexer), HTTP"  # no model.onnx
    assert "36 definitions indexed with each model; each searches the others (top 5)" in out
    assert "map@5" in out and "ndcg@5" in out and "mrr@5" in out
    assert out.count("   query [") == 3 and out.count("     tuned:") == 3
    pretrained = searchtuner.load_bundle(tmp_path / "demo" / "pretrained")
    labels = [label for _, label in rows]
    for name, served in (("before", pretrained), ("after", model)):
        embeddings = searchtuner.encode(served, [text for text, _ in rows], batch_size=64)
        direct = retrieval_metrics(embeddings, labels, k=5).metrics
        for metric, value in direct.items():
            assert outcome["metrics"][name][metric] == pytest.approx(value, abs=1e-6), metric

    # Without the Flow: the same search in this process (the pretrained bundle is reused).
    local = run_search_demo(bundle, tmp_path / "demo", rows=rows, k=5, use_flow=False)
    assert local["where"] == "in process"
    for name in ("before", "after"):
        assert local["metrics"][name] == pytest.approx(outcome["metrics"][name], abs=1e-6)
