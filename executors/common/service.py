"""What every SearchTuner executor in the fine-tuning Flow shares.

The Flow chains its executors (ingest → converter → trainer → publisher) behind one gateway.
Jina 3 sends a request through every executor that binds its endpoint or a default one, and
refuses at start-up a chain in which an executor binds neither an endpoint of its
predecessor nor ``/default``. So each executor binds ``/default`` to a pass-through that
leaves the documents as they are (typed ``AnyDoc`` so that every field survives the hop), and
the requests of one executor cross the others untouched.

Each also answers ``/telemetry/metrics`` with what it measures (see ``executors/common/
telemetry.py``), and has ``self.telemetry`` for spans and metric instruments.
"""

import contextlib
from pathlib import Path
from typing import Any

from docarray import DocList
from docarray.base_doc import AnyDoc
from jina import Executor, requests

from executors.common.telemetry import METRICS_ENDPOINT, ExecutorTelemetry
from searchtuner.service.owners import owner_of, store_uri_or_default
from searchtuner.service.schemas import TelemetrySnapshot

__all__ = ["ServiceExecutor", "owner_of", "store_uri_or_default"]


class ServiceExecutor(Executor):
    """An executor of the fine-tuning Flow: owner resolution and the pass-through route.

    Each names its process ``st-<executor name>`` (Linux), so that ``ps``, ``top`` and the
    benchmarks can tell the executors of a Flow apart.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        executor_name = getattr(self.metas, "name", "") or type(self).__name__
        name = f"st-{executor_name}".lower()[:15]
        with contextlib.suppress(OSError):  # no /proc (not Linux): the name is cosmetic
            Path("/proc/self/comm").write_text(name)
        self.telemetry = ExecutorTelemetry(executor_name, self.tracer, self.tracer_provider)

    @requests(on=METRICS_ENDPOINT)
    def telemetry_metrics(
        self, docs: DocList[TelemetrySnapshot], **kwargs: Any
    ) -> DocList[TelemetrySnapshot]:
        """Append this executor's metrics (Prometheus text) for the gateway's ``/metrics``."""
        return self.telemetry.append_snapshot(docs)

    @requests
    def passthrough(self, docs: DocList[AnyDoc], **kwargs: Any) -> DocList[AnyDoc]:
        """Leave requests meant for another executor of the chain unchanged."""
        return None  # type: ignore[return-value]  # jina: None keeps the request's documents

    def close(self) -> None:
        """Send the metrics not yet pushed, then close as jina does."""
        self.telemetry.close()
        super().close()
