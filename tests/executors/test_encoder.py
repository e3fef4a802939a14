"""The Encoder executor at three levels: its config loads, its method runs on DocLists, and a
real Flow (encoder → a typed executor standing in for an indexer) serves it over gRPC on
127.0.0.1, with dynamic batching. Embeddings are checked against ``searchtuner.encode`` with
the same model: bit for bit with PyTorch, within 1e-4 with ONNX Runtime.
"""

import asyncio
import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from docarray import DocList
from docarray.base_doc import AnyDoc
from docarray.documents import ImageDoc, TextDoc
from jina import Client, Executor, Flow
from jina.excepts import BadServer
from PIL import Image

import searchtuner
from executors.encoder.executor import Encoder
from searchtuner.errors import ConfigError, DataError, SearchTunerError
from tests.executors.probe import Product, Stats
from tests.flow_host import hosted_flow

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "executors" / "encoder" / "config.yml"
README = REPO / "executors" / "encoder" / "README.md"
# Distinct token lengths: length-sorted batching then orders them one way only.
TEXTS = [
    "a lamp",
    "a brass desk lamp with a green glass shade",
    "oak table",
    "a small round side table",
    "chair",
    "an office chair with armrests and wheels",
    "a tall bookcase of pine",
    "sofa bed for two people",
]


# ---------------------------------------------------------------------------------- models


def _text_model(tiny_bert_dir: Path) -> searchtuner.EmbeddingModel:
    torch.manual_seed(0)
    return searchtuner.build_model(tiny_bert_dir, pooling="mean", output_dim=8, max_length=16)


@pytest.fixture(scope="module")
def text_bundle(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random BERT bundle with model.onnx."""
    folder = tmp_path_factory.mktemp("text") / "bundle"
    return searchtuner.save_bundle(_text_model(tiny_bert_dir), folder, onnx=True)


@pytest.fixture(scope="module")
def text_model(text_bundle: Path) -> searchtuner.EmbeddingModel:
    """The bundle loaded with the core library: the reference the encoder must match."""
    return searchtuner.load_bundle(text_bundle)


@pytest.fixture(scope="module")
def mlp_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = searchtuner.build_model("mlp", input_dim=12, hidden_dims=[16], output_dim=8)
    return searchtuner.save_bundle(model, tmp_path_factory.mktemp("mlp") / "bundle", onnx=True)


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = searchtuner.build_model("mobilenet_v2", pretrained=False, image_size=32, output_dim=8)
    return searchtuner.save_bundle(model, tmp_path_factory.mktemp("image") / "bundle", onnx=False)


@pytest.fixture
def text_encoder(text_bundle: Path) -> Iterator[Encoder]:
    # Per test, closed after it: no compute thread of the parent is alive when the Flow tests
    # below fork the test process.
    executor = Encoder(model=str(text_bundle))
    yield executor
    executor.close()


@pytest.fixture(autouse=True)
def _close_encoders(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every encoder a test makes: each owns a compute thread with its own OpenMP team,
    and the Flow tests later in this process fork; idle torch threads left behind have
    crashed the forking process before."""
    made: list[Encoder] = []
    init = Encoder.__init__

    def tracked(self: Encoder, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(Encoder, "__init__", tracked)
    yield
    for executor in made:
        compute = getattr(executor, "_compute", None)
        if compute is not None:
            compute.shutdown(wait=True)


def _png(seed: int, size: int = 40) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _products() -> DocList[Product]:
    return DocList[Product](
        Product(text=text, title=f"item {i}", price=10.0 + i) for i, text in enumerate(TEXTS)
    )


def _embeddings(docs: Any) -> np.ndarray:
    return np.stack([np.asarray(doc.embedding) for doc in docs])


# ------------------------------------------------------------------- level 1: config loads


def test_the_config_loads_the_model_with_its_defaults(text_bundle: Path) -> None:
    # Loaded once per process: jina imports py_modules by file path, and a second import of
    # executor.py warns that the name is taken.
    executor = Executor.load_config(str(CONFIG), uses_with={"model": str(text_bundle)})
    assert type(executor).__name__ == "Encoder"
    described = executor.encoder.describe()  # type: ignore[attr-defined]
    assert described["bundle"] == str(text_bundle)
    assert (described["backend"], described["device"], described["batch_size"]) == (
        "torch", "cpu", 64,
    )  # fmt: skip
    assert (described["modality"], described["embedding_dim"]) == ("text", 8)
    assert executor.encoder.config.allow_paths is False  # type: ignore[attr-defined]
    assert executor.requests["/encode"].fn.__name__ == "encode"
    assert executor.requests["/default"].fn.__name__ == "encode_other"
    batching = executor.dynamic_batching  # type: ignore[attr-defined]
    assert (batching["encode"]["preferred_batch_size"], batching["encode"]["timeout"]) == (64, 10)
    assert "encode_other" not in batching  # doc-less requests (/count) must not wait in a queue
    executor.close()


# ------------------------------------------------------------ level 2: the method on DocLists


@pytest.mark.parametrize("batch_size", [64, 3])
def test_text_embeddings_equal_searchtuner_encode_bit_for_bit(
    text_bundle: Path, text_model: searchtuner.EmbeddingModel, batch_size: int
) -> None:
    executor = Encoder(model=str(text_bundle), batch_size=batch_size)

    answer = executor.encode(_products())

    expected = searchtuner.encode(text_model, TEXTS, batch_size=batch_size)
    assert np.array_equal(_embeddings(answer), expected)


def test_every_other_field_is_kept_and_the_callers_documents_are_untouched(
    text_encoder: Encoder, text_model: searchtuner.EmbeddingModel
) -> None:
    # What jina hands the executor in a Flow: AnyDoc, with whatever fields the client sent.
    sent = DocList[AnyDoc](
        AnyDoc(id=f"p{i}", text=t, title=f"item {i}", price=1.5 * i, tags={"i": i})
        for i, t in enumerate(TEXTS[:3])
    )
    typed = _products()[:3]

    answer = text_encoder.encode(sent)
    typed_answer = text_encoder.encode(typed)

    expected = searchtuner.encode(text_model, TEXTS[:3])
    for i, doc in enumerate(answer):
        assert (doc.id, doc.text, doc.title, doc.price, doc.tags) == (
            f"p{i}", TEXTS[i], f"item {i}", 1.5 * i, {"i": i},
        )  # fmt: skip
        assert np.array_equal(doc.embedding, expected[i])
    assert [d.title for d in typed_answer] == ["item 0", "item 1", "item 2"]
    assert np.array_equal(_embeddings(typed_answer), expected)
    assert all("embedding" not in vars(doc) for doc in sent)
    assert all(doc.embedding is None for doc in typed)


def test_the_default_route_embeds_documents_and_passes_a_request_without_any(
    text_encoder: Encoder, text_model: searchtuner.EmbeddingModel
) -> None:
    answer = text_encoder.encode_other(_products())
    nothing = text_encoder.encode_other(DocList[AnyDoc]())

    assert np.array_equal(_embeddings(answer), searchtuner.encode(text_model, TEXTS))
    assert nothing is None  # jina then hands the request on as it came (e.g. /count)
    assert text_encoder.encoder.encode([]).shape == (0, 8)


def test_docarray_text_and_image_documents_work(
    text_encoder: Encoder, text_model: searchtuner.EmbeddingModel, image_bundle: Path
) -> None:
    texts = text_encoder.encode(DocList[TextDoc]([TextDoc(text=t) for t in TEXTS[:2]]))
    images = Encoder(model=str(image_bundle)).encode(
        DocList[ImageDoc]([ImageDoc(bytes_=_png(0)), ImageDoc(tensor=np.zeros((40, 40, 3)))])
    )

    assert np.array_equal(_embeddings(texts), searchtuner.encode(text_model, TEXTS[:2]))
    model = searchtuner.load_bundle(image_bundle)
    assert np.array_equal(
        _embeddings(images), searchtuner.encode(model, [_png(0), np.zeros((40, 40, 3))])
    )


def test_image_fields_bytes_and_arrays_and_paths_only_when_allowed(
    image_bundle: Path, tmp_path: Path
) -> None:
    model = searchtuner.load_bundle(image_bundle)
    path = tmp_path / "photo.png"
    path.write_bytes(_png(2))
    pixels = np.random.default_rng(3).integers(0, 256, size=(36, 48, 3), dtype=np.uint8)
    docs = DocList[AnyDoc](
        [
            AnyDoc(image=_png(1)),
            AnyDoc(blob=_png(2)),
            AnyDoc(tensor=pixels),
            AnyDoc(uri=str(path)),
            AnyDoc(url=path.as_uri()),
        ]
    )

    with pytest.raises(DataError, match=r"document 3 .*allow_paths is off") as refused:
        Encoder(model=str(image_bundle)).encode(docs)
    answer = Encoder(model=str(image_bundle), allow_paths=True).encode(docs)

    assert "document 4" in str(refused.value)  # every refused document is named
    expected = searchtuner.encode(model, [_png(1), _png(2), pixels, str(path), str(path)])
    assert np.array_equal(_embeddings(answer), expected)


def test_tensor_documents_with_the_mlp_on_both_backends(mlp_bundle: Path) -> None:
    vectors = np.random.default_rng(1).normal(size=(5, 12)).astype(np.float32)
    docs = DocList[AnyDoc](AnyDoc(tensor=v, label=f"L{i}") for i, v in enumerate(vectors))
    model = searchtuner.load_bundle(mlp_bundle)

    by_torch = Encoder(model=str(mlp_bundle)).encode(docs)
    by_onnx = Encoder(model=str(mlp_bundle), backend="onnx").encode(docs)

    assert np.array_equal(_embeddings(by_torch), searchtuner.encode(model, vectors))
    np.testing.assert_allclose(_embeddings(by_onnx), _embeddings(by_torch), atol=1e-4)
    assert [d.label for d in by_onnx] == [f"L{i}" for i in range(5)]
    with pytest.raises(DataError, match=r"document 1 .*shape \(3,\); this model takes \(12,\)"):
        Encoder(model=str(mlp_bundle)).encode(
            DocList[AnyDoc]([AnyDoc(tensor=vectors[0]), AnyDoc(tensor=np.ones(3))])
        )


def test_the_onnx_backend_is_within_1e_4_of_torch(
    text_bundle: Path, text_model: searchtuner.EmbeddingModel
) -> None:
    executor = Encoder(model=str(text_bundle), backend="onnx", batch_size=3, threads=1)

    answer = executor.encode(_products())

    expected = searchtuner.encode(text_model, TEXTS, batch_size=3)
    np.testing.assert_allclose(_embeddings(answer), expected, atol=1e-4)
    assert executor.encoder.describe()["backend"] == "onnx"


@pytest.mark.slow
def test_all_minilm_l6_v2_on_wordnet_definitions(
    minilm: searchtuner.EmbeddingModel, tmp_path: Path
) -> None:
    """The real model on real short texts: torch bit for bit, ONNX Runtime within 1e-4."""
    from searchtuner.datasets import load_supersense

    texts = [text for text, _ in load_supersense("test")[:96]]
    bundle = searchtuner.save_bundle(minilm, tmp_path / "minilm", onnx=True)
    docs = DocList[TextDoc](TextDoc(text=t) for t in texts)

    by_torch = _embeddings(Encoder(model=str(bundle)).encode(docs))
    by_onnx = _embeddings(Encoder(model=str(bundle), backend="onnx").encode(docs))

    expected = searchtuner.encode(minilm, texts, batch_size=64)
    assert np.array_equal(by_torch, expected)
    np.testing.assert_allclose(by_onnx, expected, atol=1e-4)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (AnyDoc(title="no text"), r"document 1 \(id 'bad'\) has none of 'text' \(it has 'title'\)"),
        (AnyDoc(text=""), r"document 1 \(id 'bad'\) arrived with no fields but its id.*gRPC"),
        (
            AnyDoc(image=_png(0)),
            r"document 1 .*carries an image \('image'\) but this model embeds text",
        ),
        (
            AnyDoc(tensor=np.ones(12)),
            r"document 1 .*carries a tensor \('tensor'\) .*or serve an image or tensor model",
        ),
        (AnyDoc(text=b"bytes"), r"document 1 .*has a bytes in 'text'; this text model needs a str"),
    ],
)
def test_a_document_without_usable_text_fails_the_whole_call_naming_it(
    text_encoder: Encoder, doc: AnyDoc, message: str
) -> None:
    doc.id = "bad"
    docs = DocList[AnyDoc]([AnyDoc(text="fine", id="good"), doc])

    with pytest.raises(DataError, match=message) as caught:
        text_encoder.encode(docs)

    assert isinstance(caught.value, SearchTunerError)
    assert str(caught.value).startswith("1 of 2 documents cannot be embedded by this text model")
    assert all("embedding" not in vars(d) for d in docs)  # nothing half written


def test_image_documents_that_cannot_be_read_are_named(image_bundle: Path) -> None:
    executor = Encoder(model=str(image_bundle), allow_paths=True)
    cases = [
        (AnyDoc(text="a photo of a cat"), r"carries text \('text'\) but this model embeds images"),
        (AnyDoc(image="cat.png"), r"has a str in 'image'; put the encoded image"),
        (AnyDoc(uri="https://example.com/cat.png"), r"the encoder downloads nothing"),
        (AnyDoc(uri="/no/such/cat.png"), r"'/no/such/cat.png' in 'uri', which does not exist"),
        (AnyDoc(image=b"not an image"), r"document 1 .*cannot be embedded: .*does not decode"),
    ]
    for doc, message in cases:
        with pytest.raises(DataError, match=message):
            executor.encode(DocList[AnyDoc]([AnyDoc(image=_png(0)), doc]))


def test_many_bad_documents_are_summarised(text_encoder: Encoder) -> None:
    docs = DocList[AnyDoc](AnyDoc(id=f"d{i}", title="x") for i in range(9))

    with pytest.raises(DataError, match=r"^9 of 9 documents .*document 4 .*; and 4 more$"):
        text_encoder.encode(docs)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "tensorrt"}, r"backend: Input should be 'torch' or 'onnx'"),
        ({"batch_size": 0}, r"batch_size: Input should be greater than or equal to 1"),
        ({"device": "cuda:0", "backend": "onnx"}, r"backend 'onnx' runs on the CPU"),
        ({"colour": "red"}, r"colour: unknown option; allowed: model, backend"),
    ],
)
def test_bad_settings_fail_at_start_saying_what_is_allowed(
    text_bundle: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        searchtuner.serving.Encoder(text_bundle, **options)


def test_a_missing_model_or_model_onnx_fails_at_start(tiny_bert_dir: Path, tmp_path: Path) -> None:
    no_onnx = searchtuner.save_bundle(_text_model(tiny_bert_dir), tmp_path / "b", onnx=False)

    with pytest.raises(ConfigError, match=r"model: required; give a model handle"):
        Encoder()
    with pytest.raises(ConfigError, match=r"is not a bundle folder, a bundle archive or a model"):
        Encoder(model="my-model")
    with pytest.raises(ConfigError, match=r"holds none; publish the model with onnx=True"):
        Encoder(model=str(no_onnx), backend="onnx")
    assert Encoder(model=str(no_onnx)).encoder.describe()["backend"] == "torch"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is absent")
def test_cuda_is_used_only_when_asked_and_refused_where_absent(text_bundle: Path) -> None:
    assert Encoder(model=str(text_bundle)).encoder.runtime.model.device.type == "cpu"
    with pytest.raises(ConfigError, match=r"CUDA is not available here; use 'cpu'"):
        Encoder(model=str(text_bundle), device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_embeddings_match_the_cpu(
    text_bundle: Path, text_model: searchtuner.EmbeddingModel
) -> None:
    answer = Encoder(model=str(text_bundle), device="cuda").encode(_products())

    np.testing.assert_allclose(
        _embeddings(answer), searchtuner.encode(text_model, TEXTS), atol=1e-4
    )


def test_a_model_handle_is_fetched_once_and_served(
    text_bundle: Path, text_model: searchtuner.EmbeddingModel, tmp_path: Path
) -> None:
    from searchtuner.artifacts import publish_bundle
    from searchtuner.store import LocalStore

    handle = publish_bundle(text_bundle, LocalStore(tmp_path / "store").for_owner("alice"))

    executor = Encoder(model=str(handle), cache_dir=str(tmp_path / "cache"))

    assert executor.encoder.folder.parent == tmp_path / "cache"
    answer = executor.encode(_products())
    assert np.array_equal(_embeddings(answer), searchtuner.encode(text_model, TEXTS))


# ------------------------------------------------- level 3: a Flow over gRPC on 127.0.0.1


BATCH = 8  # the Flow's preferred batch size
WAIT_MS = 20_000  # ...and how long a request waits for others: far longer than any test


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def flow(
    text_bundle: Path,
    text_model: searchtuner.EmbeddingModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[int]:
    """The Flow, served from a child process (tests.flow_host). A batch leaves when it holds 8
    documents, or after 20 s: every test sends 8, so none waits for the timer, unless
    batching fails."""
    described = (
        Flow(port=_free_port(), host="127.0.0.1")
        .add(
            name="encoder",
            uses=str(CONFIG),
            uses_with={"model": str(text_bundle)},
            uses_dynamic_batching={"encode": {"preferred_batch_size": BATCH, "timeout": WAIT_MS}},
        )
        .add(name="probe", uses="Probe")
    )
    folder = tmp_path_factory.mktemp("encoder-flow")
    with hosted_flow(described, folder, imports=["tests.executors.probe"]) as port:
        yield port


def _client(port: int, **options: Any) -> Client:
    return Client(host=f"grpc://127.0.0.1:{port}", **options)


@pytest.mark.integration
def test_a_flow_embeds_and_every_field_reaches_the_next_executor(
    flow: int, text_model: searchtuner.EmbeddingModel
) -> None:
    client = _client(flow)

    indexed = client.post("/index", inputs=_products(), return_type=DocList[Product])
    encoded = client.post("/encode", inputs=_products(), return_type=DocList[Product])

    expected = searchtuner.encode(text_model, TEXTS)
    assert [d.title for d in indexed] == [f"item {i}|price={10.0 + i}|dim=8" for i in range(8)]
    assert np.array_equal(_embeddings(indexed), expected)
    assert [(d.text, d.title, d.price) for d in encoded] == [
        (t, f"item {i}", 10.0 + i) for i, t in enumerate(TEXTS)
    ]
    assert np.array_equal(_embeddings(encoded), expected)


@pytest.mark.integration
def test_a_request_without_documents_crosses_the_encoder(flow: int) -> None:
    """An indexer's /count or /clear: the encoder's default route is not batched, because
    jina's batch queue never answers a request that holds no documents."""
    answer = _client(flow).post("/count", return_type=DocList[Stats])

    assert [doc.count for doc in answer] == [42]


@pytest.mark.integration
def test_dynamic_batching_merges_concurrent_one_document_requests(
    flow: int, text_model: searchtuner.EmbeddingModel
) -> None:
    """Eight concurrent requests of one document each: they can only come back before the
    20 s timer if the batch queue merged them into one batch of 8. Merged, each embedding is
    that of ``searchtuner.encode`` on the eight texts together, bit for bit."""
    client = _client(flow, asyncio=True)

    async def one(text: str) -> DocList[Product]:
        docs = DocList[Product]([Product(text=text, title=text)])
        async for answer in client.post("/encode", inputs=docs, return_type=DocList[Product]):
            return answer
        raise AssertionError("no answer")

    async def all_at_once() -> list[DocList[Product]]:
        return await asyncio.gather(*(one(text) for text in TEXTS))

    started = time.monotonic()
    answers = asyncio.run(all_at_once())
    elapsed = time.monotonic() - started

    assert elapsed < WAIT_MS / 1000 / 2, f"took {elapsed:.1f} s: the requests were not batched"
    assert [a[0].title for a in answers] == TEXTS
    together = searchtuner.encode(text_model, TEXTS)
    assert np.array_equal(np.stack([a[0].embedding for a in answers]), together)


@pytest.mark.integration
def test_with_dynamic_batching_a_bad_document_fails_the_requests_batched_with_it(
    flow: int,
) -> None:
    """What the README warns of: jina hands the batch's error to each of its requests."""
    client = _client(flow, asyncio=True)

    async def one(text: str) -> str:
        docs = DocList[Product]([Product(text=text)])
        try:
            async for _ in client.post("/encode", inputs=docs, return_type=DocList[Product]):
                pass
        except BadServer as err:
            return str(err.args[0].status.exception.args[0])
        return "embedded"

    async def all_at_once() -> list[str]:
        return await asyncio.gather(*(one(text) for text in ["", *TEXTS[1:]]))

    outcomes = asyncio.run(all_at_once())

    assert len(set(outcomes)) == 1, outcomes
    assert re.match(r"1 of 8 documents .*has none of 'text'", outcomes[0])


@pytest.mark.integration
def test_a_bad_document_fails_its_batch_with_the_reason_and_the_flow_serves_on(
    flow: int, text_model: searchtuner.EmbeddingModel
) -> None:
    client = _client(flow)
    docs = _products()
    docs[5].text = ""

    with pytest.raises(BadServer) as caught:
        client.post("/index", inputs=docs, return_type=DocList[Product])
    after = client.post("/index", inputs=_products(), return_type=DocList[Product])

    status = caught.value.args[0].status
    assert status.exception.name == "DataError"
    assert re.search(
        rf"document 5 \(id '{docs[5].id}'\) has none of 'text'", status.exception.args[0]
    )
    assert np.array_equal(_embeddings(after), searchtuner.encode(text_model, TEXTS))


# ------------------------------------------------------------------------- the README


@pytest.mark.integration
def test_the_readme_examples_run(text_bundle: Path, tmp_path: Path) -> None:
    """The README's YAML loads as a Flow; its Python example runs as the script it is, in a
    fresh interpreter (it starts its own Flow), against a bundle folder named my-model."""
    text = README.read_text()
    (yaml_block,) = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    (python_block,) = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    flow = Flow.load_config(yaml_block)
    assert [name for name in flow._deployment_nodes] == ["encoder", "indexer"]

    (tmp_path / "executors").symlink_to(REPO / "executors")
    (tmp_path / "my-model").symlink_to(text_bundle)
    (tmp_path / "example.py").write_text(python_block)
    done = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env={**os.environ, "SEARCHTUNER_CACHE": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert "(3, 8)" in done.stdout
