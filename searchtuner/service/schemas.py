"""The documents the service's endpoints take and return (docarray v2, no jina).

One schema per message, shared by the executors, the gateway and the Python SDK, so that a
plain jina ``Client`` can call every operation with these classes too. Text fields default to
``""`` and dicts to ``{}``: a request that misses a field still reaches the executor, which
then names the missing field in its error instead of failing inside the transport.

Endpoints (gRPC, and HTTP through jina's default routes):

============================  =====================  ==================  ==================
endpoint                      docs in                parameters          docs out
============================  =====================  ==================  ==================
``/datasets/begin``           ``UploadRequest``                          ``UploadStatus``
``/datasets/append``          ``IngestDoc`` batches  ``upload_id``       ``UploadStatus``
``/datasets/append_packed``   ``PackedBatch``        ``upload_id``       ``UploadStatus``
``/datasets/commit``          ``UploadRequest``      ``upload_id``       ``DatasetDoc``
``/datasets/list``            none                                       ``DatasetDoc``
``/runs/create``              ``FitRequest``                             ``RunDoc``
``/runs/get`` ``/runs/list``  ``RunQuery``                               ``RunDoc``
``/runs/cancel``              ``RunQuery``                               ``RunDoc``
``/runs/delete``              ``RunQuery``                               ``RunDoc``
``/runs/events``              ``RunQuery``           ``after``/``limit`` ``EventDoc``
``/runs/metrics``             ``RunQuery``                               ``MetricsDoc``
``/runs/logs``                ``RunQuery``                               ``LogDoc``
``/publish``                  ``PublishRequest``                         ``PublishResponse``
``/telemetry/metrics``        ``TelemetrySnapshot``                      ``TelemetrySnapshot``
============================  =====================  ==================  ==================

Every request may carry ``parameters={"token": ...}``: the owner is derived from the token
(or is the single local owner when the service runs without tokens).
"""

# No `from __future__ import annotations` here: jina rebuilds these models from their JSON
# schemas, and pydantic must see real types, not strings.
from typing import Any

from docarray import BaseDoc
from docarray.typing import NdArray
from pydantic import Field


class IngestDoc(BaseDoc):
    """One item of a dataset upload; which fields are set depends on the kind of data.

    Labelled data: ``text`` / ``image`` / ``tensor`` + ``label``; pairs: ``query`` +
    ``document``; text–image pairs: ``text`` + ``image``; unlabelled: one of ``text`` /
    ``image`` / ``tensor``. A ``LabeledDoc``, ``PairDoc``... sent instead arrives as this class
    (fields match by name).
    """

    text: str | None = None
    image: bytes | None = Field(default=None, description="Encoded image file (PNG, JPEG...).")
    tensor: NdArray | None = None
    label: str | None = None
    query: str | None = None
    document: str | None = None
    uri: str | None = Field(
        default=None, description="Refused by the service: it never reads files by path."
    )
    tags: dict[str, Any] = Field(default_factory=dict)


class UploadRequest(BaseDoc):
    """Start (``/datasets/begin``) or finish (``/datasets/commit``) a dataset upload."""

    kind: str = Field(default="", description="labeled, pairs, text_image or unlabeled; '' infers")
    name: str = Field(default="", description="A name for people; the handle identifies it.")
    upload_id: str = Field(default="", description="The upload to commit.")


class UploadStatus(BaseDoc):
    """An open upload: its id, and how many items the answered request added."""

    upload_id: str = ""
    received: int = 0


class DatasetDoc(BaseDoc):
    """A stored dataset: its handle (reusable by many runs) and validation report."""

    handle: str = ""
    name: str = ""
    kind: str = ""
    n_items: int = 0
    created_at: str = ""
    ok: bool = True
    report: dict[str, Any] = Field(default_factory=dict, description="DataReport.to_dict()")
    report_text: str = Field(default="", description="The report, formatted for people.")


class FitRequest(BaseDoc):
    """Start a fine-tuning run (``/runs/create``); see ``searchtuner.runs.RunRequest``."""

    model: str = Field(default="", description="A backbone name, e.g. all-MiniLM-L6-v2.")
    model_options: dict[str, Any] = Field(
        default_factory=dict, description="build_model options: pooling, freeze, output_dim..."
    )
    train_data: str = Field(default="", description="A dataset handle (std1:...).")
    eval_data: str = Field(default="", description="A dataset handle, or '' for none.")
    config: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields.")
    name: str = ""
    onnx: bool = True
    checkpoint_every_steps: int = Field(
        default=0, description="Save a resumable checkpoint every N steps; 0 lets the worker pick."
    )
    processes_per_node: int = Field(
        default=1, description="Training processes per node (one per GPU); >1: data-parallel."
    )
    nnodes: int = Field(default=1, description="Nodes the run spans (multi-node deployments).")


class RunQuery(BaseDoc):
    """Names one run (empty ``run_id`` for ``/runs/list``)."""

    run_id: str = ""


class RunDoc(BaseDoc):
    """A run's record: lifecycle state, progress, and the model handle once published."""

    run_id: str = ""
    name: str = ""
    state: str = ""
    reason: str = ""
    created_at: str = ""
    updated_at: str = ""
    queued_at: str = Field(default="", description="When the run last entered QUEUED.")
    started_at: str = Field(default="", description="When a worker first started it.")
    attempt: int = 0
    progress: dict[str, Any] = Field(default_factory=dict)
    model_handle: str = ""
    conversion: dict[str, Any] = Field(
        default_factory=dict, description="The converter's findings: the model's summary."
    )
    request: dict[str, Any] = Field(default_factory=dict)


class EventDoc(BaseDoc):
    """One event of a run: a state change, progress, a log line, metrics or a checkpoint."""

    run_id: str = ""
    seq: int = 0
    time: str = ""
    type: str = ""
    level: str = "info"
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class MetricsDoc(BaseDoc):
    """Retrieval metrics of a run's model before and after fine-tuning."""

    run_id: str = ""
    before: dict[str, float] = Field(default_factory=dict)
    after: dict[str, float] = Field(default_factory=dict)
    history: list[dict[str, Any]] = Field(default_factory=list)


class LogDoc(BaseDoc):
    """A run's log, rendered as text."""

    run_id: str = ""
    text: str = ""


class PublishRequest(BaseDoc):
    """Publish one stored checkpoint (``/publish``)."""

    owner: str = Field(
        default="",
        description="Leave empty: the checkpoint is in the namespace of the request token's "
        "owner (owners/<owner>/ in the store); naming another owner finds nothing.",
    )
    checkpoint_key: str = Field(
        default="",
        description="The checkpoint's key inside the owner's namespace, e.g. "
        "'runs/<run>/model.safetensors' (written by save_model_checkpoint).",
    )


class PublishResponse(BaseDoc):
    """The handle of a published model; its ``id`` is the request document's ``id``."""

    handle: str = Field(
        default="",
        description="The compact model handle, stm<format>:<sha256>:<size>@<uri>; "
        "searchtuner.get_model(handle) loads the model.",
    )
    uri: str = Field(default="", description="Where the bundle archive is stored.")
    sha256: str = Field(default="", description="The archive's SHA-256, lowercase hex.")
    size: int = Field(default=0, description="The archive's size in bytes.")
    format_version: int = Field(default=0, description="The bundle format inside the archive.")


class Empty(BaseDoc):
    """No content: for endpoints that take no documents."""


class PackedBatch(BaseDoc):
    """A batch of items in one document (``/datasets/append_packed``): zlib-compressed JSON
    lines or CSV rows (with their header line).

    docarray encodes and decodes each document of a DocList separately, which costs far more
    than the bytes of a short text; a batch of thousands of items packed into one document
    crosses each gRPC hop at the cost of its bytes. The SDK and the REST upload send these.
    """

    format: str = Field(default="jsonl", description="jsonl or csv")
    data: bytes = Field(default=b"", description="zlib-compressed rows")
    items: int = Field(default=0, description="How many rows the batch holds.")


class TelemetrySnapshot(BaseDoc):
    """What one process of the service measures (``/telemetry/metrics``): each executor of the
    chain appends one, and the gateway merges them into its ``GET /metrics``."""

    service: str = Field(default="", description="The part that measured: ingest, trainer...")
    text: str = Field(default="", description="Its metrics in the Prometheus text format.")
