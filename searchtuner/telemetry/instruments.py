"""The service's metrics: their names, and the instruments the executors feed.

====================================  =============================================  ==========
OpenTelemetry name                    Prometheus name                                from
====================================  =============================================  ==========
``searchtuner.runs`` {state}          ``searchtuner_runs``                           registry
``searchtuner.queue.length``          ``searchtuner_queue_length``                   supervisor
``searchtuner.workers``               ``searchtuner_workers``                        supervisor
``searchtuner.training.throughput``   ``searchtuner_training_throughput_per_second`` run progress
  {run_id}
``searchtuner.ingest.documents``      ``searchtuner_ingest_documents_total``         ingest
``searchtuner.ingest.throughput``     ``searchtuner_ingest_throughput_per_second``   ingest
``searchtuner.encode.duration``       ``searchtuner_encode_duration_seconds``        encoder
  {backend} (histogram)
``searchtuner.encode.documents``      ``searchtuner_encode_documents_total``         encoder
  {backend}
====================================  =============================================  ==========

The run and queue gauges are observed when a reader collects (a scrape, an OTLP push), from
the registry and the supervisor; the ingest and encode instruments are fed as work is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from searchtuner.telemetry.rate_window import RateWindow
from searchtuner.telemetry.run_census import RunCensus

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

RUNS = "searchtuner.runs"
QUEUE_LENGTH = "searchtuner.queue.length"
WORKERS = "searchtuner.workers"
TRAINING_THROUGHPUT = "searchtuner.training.throughput"
INGEST_DOCUMENTS = "searchtuner.ingest.documents"
INGEST_THROUGHPUT = "searchtuner.ingest.throughput"
ENCODE_DURATION = "searchtuner.encode.duration"
ENCODE_DOCUMENTS = "searchtuner.encode.documents"

ENCODE_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Seconds: an encode call takes from a millisecond (one short text, ONNX) to seconds (a batch
of images on a CPU)."""


def observe_runs(
    meter: Meter, census: RunCensus, supervisor_status: Callable[[], Mapping[str, Any]]
) -> None:
    """Register the trainer's gauges: runs by state, queue length, workers, samples/s.

    Args:
        meter: the trainer process's meter.
        census: reads the run registry.
        supervisor_status: :meth:`RunSupervisor.status` (``queued`` and ``running`` lists).
    """
    from opentelemetry.metrics import Observation

    def runs(options: CallbackOptions) -> Iterable[Observation]:
        census_now = census.look()
        if census_now is None:
            return []
        return [Observation(n, {"state": s.value}) for s, n in census_now.states.items()]

    def throughput(options: CallbackOptions) -> Iterable[Observation]:
        census_now = census.look()
        if census_now is None:
            return []
        speeds = census_now.samples_per_second.items()
        return [Observation(speed, {"run_id": run_id}) for run_id, speed in speeds]

    def queue(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(len(supervisor_status().get("queued", ())))]

    def workers(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(len(supervisor_status().get("running", ())))]

    meter.create_observable_gauge(
        RUNS, [runs], unit="{run}", description="Runs by state, read from the run registry."
    )
    meter.create_observable_gauge(
        QUEUE_LENGTH,
        [queue],
        unit="{run}",
        description="Runs waiting in the trainer's queue for a worker slot.",
    )
    meter.create_observable_gauge(
        WORKERS, [workers], unit="{process}", description="Trainer worker processes running."
    )
    meter.create_observable_gauge(
        TRAINING_THROUGHPUT,
        [throughput],
        unit="{sample}/s",
        description="Training samples per second of each run in TRAINING (its last progress).",
    )


class IngestMeter:
    """Counts ingested documents; the rate over the last ``window`` seconds is a gauge.

    Args:
        meter: the ingest process's meter.
        window: seconds the throughput gauge looks back.
    """

    def __init__(self, meter: Meter, window: float = 60.0) -> None:
        from opentelemetry.metrics import Observation

        self.rate = RateWindow(window)
        self._documents = meter.create_counter(
            INGEST_DOCUMENTS,
            unit="{document}",
            description="Dataset items validated and stored by the ingest executor.",
        )

        def throughput(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(self.rate.rate())]

        meter.create_observable_gauge(
            INGEST_THROUGHPUT,
            [throughput],
            unit="{document}/s",
            description=f"Documents ingested per second over the last {window:g} s.",
        )

    def record(self, documents: int) -> None:
        """``documents`` items were stored."""
        self._documents.add(documents)
        self.rate.add(documents)


class EncodeMeter:
    """Times encode calls (a histogram) and counts the documents embedded.

    Args:
        meter: the encoder process's meter.
        backend: ``torch`` or ``onnx``, a label of every measurement.
    """

    def __init__(self, meter: Meter, backend: str) -> None:
        self.attributes = {"backend": backend}
        self._duration = meter.create_histogram(
            ENCODE_DURATION,
            unit="s",
            description="Time to embed one batch of documents (the model's forward passes).",
            explicit_bucket_boundaries_advisory=ENCODE_BUCKETS,
        )
        self._documents = meter.create_counter(
            ENCODE_DOCUMENTS, unit="{document}", description="Documents embedded."
        )

    @contextmanager
    def measure(self, documents: int) -> Iterator[None]:
        """Time the block as one encode call of ``documents`` documents (if it succeeds)."""
        start = time.perf_counter()
        yield
        self._duration.record(time.perf_counter() - start, self.attributes)
        self._documents.add(documents, self.attributes)
