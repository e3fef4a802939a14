"""Ingest: datasets streamed in as batches of documents, written to the store as they arrive.

An upload is three calls: ``/datasets/begin`` opens it (kind and name), any number of
``/datasets/append`` requests each carry one batch (their documents are validated and written
as one shard at once, so memory is bounded by the request, not the dataset), and
``/datasets/commit`` writes the manifest and answers with the dataset handle and the
validation report. A plain jina client streams the appends with ``Client.post(...,
request_size=N)``. The handle can be given to any number of runs. ``/datasets/abort`` drops
an upload a client gives up on.

The service's size limits (:class:`searchtuner.service.limits.Limits`, read from the
environment when the executor starts) are request errors (``TooLarge``, HTTP 413): a
document whose text, image or tensor is over ``SEARCHTUNER_MAX_DOCUMENT_BYTES``, and the
append that would take an upload over ``SEARCHTUNER_MAX_DATASET_ROWS`` rows or
``SEARCHTUNER_MAX_DATASET_BYTES`` stored bytes. Nothing of a refused request is stored and
the upload stays open, as after any other refused append.
"""

import sys
import tempfile
from pathlib import Path
from typing import Any

from docarray import DocList
from jina import requests

from searchtuner.data.readers import Record, iter_records
from searchtuner.data.stored import DatasetInfo, UploadSession, list_datasets
from searchtuner.data.stored.sizes import document_too_large, oversized_field
from searchtuner.service.limits import Limits
from searchtuner.service.packing import unpack
from searchtuner.service.schemas import (
    DatasetDoc,
    Empty,
    IngestDoc,
    PackedBatch,
    UploadRequest,
    UploadStatus,
)
from searchtuner.store import open_store
from searchtuner.telemetry.instruments import IngestMeter

try:
    from executors.common.errors import InvalidRequest
    from executors.common.service import ServiceExecutor, owner_of, store_uri_or_default
except ModuleNotFoundError:  # jina imports this file by path (py_modules), maybe from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from executors.common.errors import InvalidRequest
    from executors.common.service import ServiceExecutor, owner_of, store_uri_or_default

_FIELDS = ("text", "image", "tensor", "label", "query", "document")


class Ingest(ServiceExecutor):
    """Receives dataset uploads and stores them as validated, content-addressed datasets.

    Args:
        store_uri: the artifact store (``file:///dir`` or ``s3://bucket/prefix``); default
            ``SEARCHTUNER_STORE`` or ``./searchtuner-data``.
        upload_idle_timeout: seconds after which an upload nobody appends to is dropped.
        max_open_uploads: how many uploads may be open at once.
        **kwargs: passed to :class:`jina.Executor`.

    Raises:
        ConfigError: a ``SEARCHTUNER_MAX_*`` variable is not a positive whole number (the
            executor does not start).
    """

    def __init__(
        self,
        store_uri: str = "",
        upload_idle_timeout: float = 3600.0,
        max_open_uploads: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Read once: a misconfigured limit fails the start, not every request.
        self.limits = Limits.from_env()
        self.store = open_store(store_uri_or_default(store_uri))
        self.uploads = UploadSession(idle_timeout_s=upload_idle_timeout, max_open=max_open_uploads)
        meter = self.telemetry.meter
        self.ingest_meter = IngestMeter(meter) if meter is not None else None

    @requests(on="/datasets/begin")
    def begin(
        self, docs: DocList[UploadRequest], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[UploadStatus]:
        """Open an upload; the answer's ``upload_id`` goes into every append's parameters."""
        owner = owner_of(parameters)
        request = docs[0] if len(docs) else UploadRequest()
        kind = request.kind or parameters.get("kind") or None
        name = request.name or parameters.get("name") or None
        upload_id = self.uploads.begin(
            self.store.for_owner(owner), kind=kind, name=name, limits=self.limits
        )
        return DocList[UploadStatus]([UploadStatus(upload_id=upload_id, received=0)])

    @requests(on="/datasets/append")
    def append(
        self, docs: DocList[IngestDoc], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[UploadStatus]:
        """Validate and store one batch of the upload named by ``parameters['upload_id']``.

        Raises:
            InvalidRequest: no upload id, or a document with a ``uri``.
            TooLarge: a document over the size limit (named by its position in the request
                and its id), or a batch that takes the upload over the dataset limits;
                nothing of the batch is stored and the upload stays open.
        """
        owner = owner_of(parameters)
        upload_id = _upload_id(parameters.get("upload_id"), "/datasets/append")
        limit = self.limits.max_document_bytes
        items = [_as_item(doc, offset, limit) for offset, doc in enumerate(docs)]
        received = self.uploads.add(self.store.for_owner(owner), upload_id, items)
        self._count(len(items))
        return DocList[UploadStatus]([UploadStatus(upload_id=upload_id, received=received)])

    @requests(on="/datasets/append_packed")
    def append_packed(
        self, docs: DocList[PackedBatch], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[UploadStatus]:
        """Like ``/datasets/append``, with each document a packed batch of rows (the SDK's
        and the REST upload's way: thousands of rows cross the Flow as one document).

        Rows that do not parse become findings of the dataset's report, numbered by their
        position in the upload, as rows of a file given to ``searchtuner.validate`` do.

        Every packed batch of the request is read and checked (files named by path, document
        sizes) before any is stored, so such a refusal stores nothing of the request.

        Raises:
            InvalidRequest: no upload id, or a row that names an image file.
            TooLarge: a row over the document size limit (named by its row and its packed
                batch's position in the request), or a batch that takes the upload over the
                dataset limits; the upload stays open.
        """
        owner = owner_of(parameters)
        upload_id = _upload_id(parameters.get("upload_id"), "/datasets/append_packed")
        store = self.store.for_owner(owner)
        batches = [self._read_packed(doc, number) for number, doc in enumerate(docs)]
        received = 0
        for records in batches:
            received += self.uploads.add(store, upload_id, records)
            self._count(len(records))
        return DocList[UploadStatus]([UploadStatus(upload_id=upload_id, received=received)])

    def _read_packed(self, doc: PackedBatch, number: int) -> list[Record]:
        """The rows of one packed batch, refusing files by path and oversized documents."""
        limit = self.limits.max_document_bytes
        records = []
        with tempfile.TemporaryDirectory(prefix="searchtuner-batch-") as folder:
            for offset, record in enumerate(iter_records(unpack(doc, folder))):
                if record.doc is not None and getattr(record.doc, "uri", None) is not None:
                    raise InvalidRequest(
                        f"row {offset + 1} of a packed batch names an image file "
                        f"({record.doc.uri!r}): the service never reads files by path; send "
                        "the image's bytes (base64 in JSON lines) instead"
                    )
                found = oversized_field(record, limit)
                if found is not None:  # stop reading: the rest of the batch is not needed
                    where = (
                        f"row {offset + 1} of the packed batch in document {number} of the request"
                    )
                    raise document_too_large(where, found, limit)
                records.append(record)
        return records

    @requests(on="/datasets/commit")
    def commit(
        self, docs: DocList[UploadRequest], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[DatasetDoc]:
        """Finish the upload: write its manifest; answer with the handle and the report."""
        owner = owner_of(parameters)
        given = docs[0].upload_id if len(docs) else ""
        upload_id = _upload_id(given or parameters.get("upload_id"), "/datasets/commit")
        info = self.uploads.commit(self.store.for_owner(owner), upload_id)
        return DocList[DatasetDoc]([dataset_doc(info)])

    @requests(on="/datasets/abort")
    def abort(
        self, docs: DocList[UploadRequest], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[UploadStatus]:
        """Drop an open upload and the shards it stored that no dataset uses.

        For a client that gives up after a refused append (e.g. ``TooLarge``), so that the
        upload's shards do not wait for the idle timeout; committed datasets are untouched.

        Raises:
            InvalidRequest: no upload id.
            UploadNotFound: the upload is not open for this owner.
        """
        owner = owner_of(parameters)
        given = docs[0].upload_id if len(docs) else ""
        upload_id = _upload_id(given or parameters.get("upload_id"), "/datasets/abort")
        self.uploads.abort(self.store.for_owner(owner), upload_id)
        return DocList[UploadStatus]([UploadStatus(upload_id=upload_id, received=0)])

    @requests(on="/datasets/list")
    def list(
        self, docs: DocList[Empty], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[DatasetDoc]:
        """The owner's datasets, newest first."""
        owner = owner_of(parameters)
        infos = reversed(list_datasets(self.store.for_owner(owner)))
        return DocList[DatasetDoc]([dataset_doc(info) for info in infos])

    def _count(self, documents: int) -> None:
        if self.ingest_meter is not None:
            self.ingest_meter.record(documents)

    def close(self) -> None:
        """Abort open uploads (their clients must upload again) and release the store."""
        self.uploads.abort_all()
        self.store.close()
        super().close()


def dataset_doc(info: DatasetInfo) -> DatasetDoc:
    """The wire form of a stored dataset's info."""
    return DatasetDoc(
        handle=info.handle,
        name=info.name or "",
        kind=str(info.kind or ""),
        n_items=info.n_items,
        created_at=info.created_at,
        ok=info.report.ok,
        report=info.report.to_dict(),
        report_text=str(info.report),
    )


def _upload_id(value: object, endpoint: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(
            f"{endpoint} needs parameters={{'upload_id': ...}}: the id that /datasets/begin "
            "returned"
        )
    return value


def _as_item(doc: IngestDoc, offset: int, limit: int) -> dict[str, Any]:
    """The set fields of an uploaded document, as the dataset readers take them.

    Raises:
        InvalidRequest: the document has a ``uri``.
        TooLarge: a field of the document is over ``limit`` bytes.
    """
    if doc.uri is not None:
        raise InvalidRequest(
            f"document {offset} of the batch has a 'uri' ({doc.uri!r}): the service never "
            "reads files by path; send the file's bytes in 'image' instead"
        )
    # Checked here, before the batch is validated: a 10 MB text is refused unhashed, uncopied.
    found = oversized_field(doc, limit)
    if found is not None:
        raise document_too_large(f"document {offset} of the request (id {doc.id!r})", found, limit)
    item: dict[str, Any] = {name: getattr(doc, name) for name in _FIELDS}
    item = {name: value for name, value in item.items() if value is not None}
    if doc.tags:
        item["tags"] = doc.tags
    return item
