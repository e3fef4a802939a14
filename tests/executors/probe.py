"""Executors and documents that stand beside the encoder in the test Flow.

They live in a module of their own because the Flow runs in a child process
(:mod:`tests.flow_host`), which imports this module so that ``uses: Probe`` resolves.
"""

# No `from __future__ import annotations`: jina reads the Probe executor's annotations as its
# schemas, and needs real types for that, not strings.

from typing import Any

from docarray import BaseDoc, DocList
from docarray.base_doc import AnyDoc
from docarray.typing import NdArray
from jina import Executor, requests


class Product(BaseDoc):
    """A user's document: the field the model reads, fields it does not, and the embedding."""

    text: str = ""
    title: str = ""
    price: float = 0.0
    embedding: NdArray | None = None


class Stats(BaseDoc):
    count: int = 0


class Probe(Executor):
    """Stands in for an indexer: typed with the user's class on /index, an endpoint without
    documents (/count), and a pass-through (typed AnyDoc, as the gateway requires behind the
    encoder) on every other endpoint. /index writes what it received into ``title``, so the
    client sees what crossed the hop."""

    @requests(on="/count")
    def count(self, **kwargs: Any) -> DocList[Stats]:
        return DocList[Stats]([Stats(count=42)])

    @requests(on="/index")
    def index(self, docs: DocList[Product], **kwargs: Any) -> DocList[Product]:
        for doc in docs:
            width = None if doc.embedding is None else doc.embedding.shape[0]
            doc.title = f"{doc.title}|price={doc.price}|dim={width}"
        return docs

    @requests
    def passthrough(self, docs: DocList[AnyDoc], **kwargs: Any) -> DocList[AnyDoc]:
        return None  # type: ignore[return-value]  # jina: None keeps the documents
