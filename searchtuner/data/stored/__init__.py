"""Datasets stored in the artifact store, written batch by batch and addressed by a handle.

Typical use::

    from searchtuner.data.stored import DatasetWriter, iter_batches, open_dataset

    mine = store.for_owner("alice")
    writer = DatasetWriter(mine, kind="labeled", name="support tickets")
    for batch in iter_batches("train.csv", batch_size=2000):
        writer.add(batch)  # validates incrementally, writes one shard per batch
    info = writer.commit()  # the manifest: handle, counts, validation report
    print(info.handle, info.report.ok)

    dataset = open_dataset(mine, info.handle)  # any number of runs can reuse the handle
    for doc in dataset.iter_docs():  # streamed shard by shard, every read verified
        ...

Layout in the owner's namespace::

    datasets/shards/<sha256>.bin   one shard per batch, named by its content
    datasets/<dataset_id>.json     the manifest: shard digests in order, counts, kind, report

The handle is ``std1:<dataset_id>`` where ``dataset_id`` is the sha256 of the manifest's
canonical content (kind, shard list, counts, validation settings and report; not the name or
the time): uploading the same data in the same batches twice gives the same handle and
stores nothing twice. A handle only opens in the store of the owner who uploaded it.

Shards hold no pickles: a columnar JSON header and raw image/tensor bytes
(:mod:`searchtuner.data.stored.shards`, which says why not docarray's protobuf). The report
at commit equals :func:`~searchtuner.data.validate` over the whole upload, rows numbered from
1 across batches; errors in it do not block the commit, runs refuse datasets whose
``info.report.ok`` is False. Memory while writing: one batch, plus 28 bytes per document.
"""

from searchtuner.data.stored.batches import iter_batches
from searchtuner.data.stored.dataset import (
    DatasetNotFound,
    StoredDataset,
    delete_dataset,
    list_datasets,
    open_dataset,
    parse_handle,
)
from searchtuner.data.stored.info import HANDLE_PREFIX, DatasetInfo, ShardRef
from searchtuner.data.stored.uploads import TooManyUploads, UploadNotFound, UploadSession
from searchtuner.data.stored.writer import DatasetWriter

__all__ = [
    "HANDLE_PREFIX",
    "DatasetInfo",
    "DatasetNotFound",
    "DatasetWriter",
    "ShardRef",
    "StoredDataset",
    "TooManyUploads",
    "UploadNotFound",
    "UploadSession",
    "delete_dataset",
    "iter_batches",
    "list_datasets",
    "open_dataset",
    "parse_handle",
]
