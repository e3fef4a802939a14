"""Encoder: fills ``embedding`` on any documents with a published SearchTuner model.

A thin service around :class:`searchtuner.serving.Encoder`: the model (a handle or a bundle)
is loaded once, when the executor starts. ``/encode`` and every other endpoint (the default
route) embed the documents of the request and hand them on with all their other fields, so
the encoder chains in front of an indexer on ``/index`` and ``/search``.
"""

from typing import Any

import torch
from docarray import DocList
from docarray.base_doc import AnyDoc
from jina import Executor, dynamic_batching, requests

from searchtuner import serving

# What the decorator gives; config.yml repeats it, and `uses_dynamic_batching` overrides it.
PREFERRED_BATCH_SIZE = 64
TIMEOUT_MS = 10


class Encoder(Executor):
    """Embeds the text, image or tensor of each document with one model.

    Args:
        model: a model handle (``stm1:<sha256>:<size>@<uri>``), or the path of a bundle
            folder or archive on the executor's machine.
        backend: ``torch``, or ``onnx`` (ONNX Runtime on the CPU, the bundle's
            ``model.onnx``).
        batch_size: items per forward pass.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (torch only); never chosen for you.
        allow_paths: read images named by a local path in ``uri``/``url``. Off: a service
            should not read its own disk on a caller's behalf.
        threads: intra-op threads: torch's in this executor's process, or the ONNX Runtime
            session's (default: the library's choice).
        cache_dir: where handles' bundles are unpacked (default: ``$SEARCHTUNER_CACHE/models``
            or ``~/.cache/searchtuner/models``).
        **kwargs: passed to :class:`jina.Executor`.
    """

    def __init__(
        self,
        model: str = "",
        backend: str = "torch",
        batch_size: int = 64,
        device: str = "cpu",
        allow_paths: bool = False,
        threads: int | None = None,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.encoder = serving.Encoder(
            model,
            backend=backend,
            batch_size=batch_size,
            device=device,
            allow_paths=allow_paths,
            threads=threads,
            cache_dir=cache_dir or None,
        )
        if threads is not None and self.encoder.config.backend is serving.Backend.TORCH:
            torch.set_num_threads(threads)  # this process serves this executor only
        self.logger.info(f"serving {self.encoder.describe()}")

    @requests(on=["/encode", "/default"])
    @dynamic_batching(preferred_batch_size=PREFERRED_BATCH_SIZE, timeout=TIMEOUT_MS)
    def encode(self, docs: DocList[AnyDoc], **kwargs: Any) -> DocList[AnyDoc]:
        """Return the documents with ``embedding`` set; every other field as sent.

        Raises:
            DataError: a document has no field this model reads (``text``; ``image``,
                ``bytes_``, ``blob``, ``tensor``, ``url``/``uri``; ``tensor``), carries
                another modality only, or its image does not decode. The message names the
                document by index and id; no document of the call is embedded.
        """
        return DocList[AnyDoc](self.encoder.embed_docs(docs))
