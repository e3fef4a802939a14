"""Encoder: fills ``embedding`` on any documents with a published SearchTuner model.

A thin service around :class:`searchtuner.serving.Encoder`: the model (a handle or a bundle)
is loaded once, when the executor starts. ``/encode`` and every other endpoint (the default
route) embed the documents of the request and hand them on with all their other fields, so
the encoder chains in front of an indexer on ``/index`` and ``/search``.
"""

import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from docarray import DocList
from docarray.base_doc import AnyDoc
from jina import Executor, dynamic_batching, requests

from searchtuner import serving
from searchtuner.service.schemas import TelemetrySnapshot
from searchtuner.telemetry.instruments import EncodeMeter

try:
    from executors.common.telemetry import METRICS_ENDPOINT, ExecutorTelemetry
except ModuleNotFoundError:  # jina imports this file by path (py_modules), maybe from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from executors.common.telemetry import METRICS_ENDPOINT, ExecutorTelemetry

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
        threads: intra-op threads: PyTorch's, or the ONNX Runtime session's (default: the
            library's choice).
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
        # The model runs on one thread of its own. Jina runs an endpoint on any thread of its
        # pool, and PyTorch gives each new calling thread its own OpenMP team, whose idle
        # threads then spin on the cores the busy team needs (measured: ~25% more CPU time
        # per document).
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        if threads is not None and self.encoder.config.backend is serving.Backend.TORCH:
            self._compute.submit(torch.set_num_threads, threads).result()
        name = getattr(self.metas, "name", "") or type(self).__name__
        self.telemetry = ExecutorTelemetry(name, self.tracer, self.tracer_provider)
        meter = self.telemetry.meter
        backend_name = self.encoder.config.backend.value
        self.encode_meter = EncodeMeter(meter, backend_name) if meter is not None else None
        self.logger.info(f"serving {self.encoder.describe()}")

    @requests(on="/encode")
    @dynamic_batching(preferred_batch_size=PREFERRED_BATCH_SIZE, timeout=TIMEOUT_MS)
    def encode(self, docs: DocList[AnyDoc], **kwargs: Any) -> DocList[AnyDoc]:
        """Return the documents with ``embedding`` set; every other field as sent.

        Concurrent small requests are batched (see the README); a request must carry
        documents (jina's batch queue never answers one without).

        Raises:
            DataError: a document has no field this model reads (``text``; ``image``,
                ``bytes_``, ``blob``, ``tensor``, ``url``/``uri``; ``tensor``), carries
                another modality only, or its image does not decode. The message names the
                document by index and id; no document of the call is embedded.
        """
        return self._embed(docs)

    @requests
    def encode_other(self, docs: DocList[AnyDoc], **kwargs: Any) -> DocList[AnyDoc]:
        """Every other endpoint (``/index``, ``/search``...): embed the documents, if any,
        for the executor after this one; a request without documents passes unchanged.

        Raises:
            DataError: as :meth:`encode`.
        """
        if len(docs) == 0:  # e.g. an indexer's /count or /clear
            return None  # type: ignore[return-value]  # jina: None keeps the request as it is
        return self._embed(docs)

    @requests(on=METRICS_ENDPOINT)
    def telemetry_metrics(
        self, docs: DocList[TelemetrySnapshot], **kwargs: Any
    ) -> DocList[TelemetrySnapshot]:
        """Append this executor's metrics (encode latency, documents) in Prometheus text."""
        return self.telemetry.append_snapshot(docs)

    def _embed(self, docs: DocList[AnyDoc]) -> DocList[AnyDoc]:
        timer = self.encode_meter.measure(len(docs)) if self.encode_meter else nullcontext()
        with timer:
            embedded = self._compute.submit(self.encoder.embed_docs, docs).result()
        return DocList[AnyDoc](embedded)

    def close(self) -> None:
        """Stop the compute thread when the executor shuts down; push the last metrics."""
        self._compute.shutdown(wait=True)
        self.telemetry.close()
        super().close()
