"""The SearchTuner client: fine-tune, follow and fetch models from a running service."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from searchtuner.artifacts import BlobReader, ModelHandle, StoreOpener, fetch_bundle, load_bundle
from searchtuner.artifacts.digests import staged_folder
from searchtuner.client.dataset import Dataset
from searchtuner.client.run import Run
from searchtuner.client.transport import Transport
from searchtuner.client.urls import DEFAULT_URL, ServiceURL, parse_url
from searchtuner.data.schemas import parse_kind
from searchtuner.errors import ConfigError, DataError
from searchtuner.service.schemas import FitRequest

if TYPE_CHECKING:
    import torch

    from searchtuner.models import EmbeddingModel

URL_ENV = "SEARCHTUNER_URL"
TOKEN_ENV = "SEARCHTUNER_TOKEN"
DEFAULT_TIMEOUT = 60.0
MAX_BATCH_SIZE = 10_000
_DATASET_HANDLE = re.compile(r"^std\d+:\S+$")
_MODEL_HANDLE = re.compile(r"^(stm\d+:|\{)")

DataSource = Dataset | str | os.PathLike[str] | Iterable[Any]
"""Training or evaluation data: a Dataset or its handle (``std1:...``), a CSV/JSONL path,
or a DocList / list of documents or dicts."""


def connect(url: ServiceURL, token: str | None, timeout: float) -> Transport:
    """The transport for a URL's scheme (gRPC needs the ``service`` extra, HTTP ``requests``).

    Raises:
        ConfigError: the library the transport needs is not installed.
    """
    if url.is_grpc:
        from searchtuner.client.grpc_transport import GrpcTransport

        return GrpcTransport(url, token, timeout)
    try:
        from searchtuner.client.http_transport import HttpTransport
    except ImportError as err:
        raise ConfigError(
            f"connecting over HTTP needs the requests package ({err}): pip install requests"
        ) from err
    return HttpTransport(url, token, timeout)


class Client:
    """A connection to a SearchTuner service.

    Creating a client makes no request; the first call does. Example::

        client = searchtuner.Client("http://127.0.0.1:54322")
        run = client.fit("all-MiniLM-L6-v2", "train.csv", "eval.csv", epochs=1)
        run.wait()
        model = run.get_model()

    Args:
        url: ``http://host:port``, ``https://host[:port][/prefix]`` or ``grpc://host:port``;
            default ``$SEARCHTUNER_URL``, else ``http://127.0.0.1:54322`` (where
            ``searchtuner serve`` answers).
        token: the caller's token, if the service uses tokens; default ``$SEARCHTUNER_TOKEN``.
        timeout: seconds a request may take (uploads and event streams allow longer).
        transport: a ready transport (for tests); ``url`` then only names it.

    Raises:
        ConfigError: a malformed URL or a timeout that is not positive.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        transport: Transport | None = None,
    ) -> None:
        if not timeout > 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url = parse_url(url or os.environ.get(URL_ENV) or DEFAULT_URL)
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.transport: Transport = transport or connect(self.url, token, timeout)

    def fit(
        self,
        model: str,
        train_data: DataSource,
        eval_data: DataSource | None = None,
        *,
        model_options: dict[str, Any] | None = None,
        name: str | None = None,
        onnx: bool = True,
        processes_per_node: int = 1,
        nnodes: int = 1,
        data_kind: str | None = None,
        progress: bool = False,
        config: Mapping[str, Any] | None = None,
        **training_parameters: Any,
    ) -> Run:
        """Start fine-tuning ``model`` on ``train_data``; returns the run at once.

        Data that is not a dataset handle is uploaded first (see :meth:`upload`).

        Args:
            model: a backbone name, e.g. ``all-MiniLM-L6-v2`` (``searchtuner models``).
            train_data: a Dataset or handle, a CSV/JSONL path, or a DocList/list.
            eval_data: the same, to measure retrieval before and after fine-tuning.
            model_options: conversion options: pooling, freeze, output_dim, normalize...
            name: a name for people.
            onnx: also export ``model.onnx`` into the model bundle.
            processes_per_node: training processes per node, one per GPU: more than one
                trains data-parallel; ``batch_size`` stays the batch of one step over all.
            nnodes: nodes the run spans (where the service can launch multi-node runs).
            data_kind: the kind of the data uploaded here (default: inferred).
            progress: show a progress bar while uploading.
            config: training settings as a dict; ``training_parameters`` override it.
            **training_parameters: training settings (epochs, batch_size, learning_rate,
                loss, miner, max_steps...); the service refuses unknown ones by name.

        Returns:
            The run (QUEUED, or further along).

        Raises:
            DataError: uploaded data failed validation (the message holds the report).
            ServiceError: the service refused the run (e.g. RequestError for a bad setting).
        """
        train = self._dataset_handle(train_data, "training", data_kind, progress)
        if eval_data is None:
            evaluation = ""
        elif _same_data(eval_data, train_data):
            evaluation = train  # uploaded once
        else:
            evaluation = self._dataset_handle(eval_data, "evaluation", data_kind, progress)
        request = FitRequest(
            model=model,
            model_options=dict(model_options or {}),
            train_data=train,
            eval_data=evaluation,
            config={**dict(config or {}), **training_parameters},
            name=name or "",
            onnx=onnx,
            processes_per_node=processes_per_node,
            nnodes=nnodes,
        )
        return Run(self, self.transport.create_run(request))

    def _dataset_handle(self, data: DataSource, role: str, kind: str | None, progress: bool) -> str:
        if isinstance(data, Dataset):
            return data.handle
        if isinstance(data, str) and _DATASET_HANDLE.match(data.strip()):
            return data.strip()
        if isinstance(data, str | os.PathLike) and not Path(data).is_file():
            raise ConfigError(
                f"the {role} data {os.fspath(data)!r} is neither a dataset handle (std1:...) "
                "nor a file that exists; give a CSV or JSONL path, a handle, or a DocList"
            )
        dataset = self.upload(data, kind=kind, progress=progress)
        if not dataset.ok:
            raise DataError(
                f"the {role} data failed validation (stored as {dataset.handle}); fix it and "
                f"upload again:\n{dataset.report_text}"
            )
        return dataset.handle

    def upload(
        self,
        data: str | os.PathLike[str] | Iterable[Any],
        kind: str | None = None,
        name: str | None = None,
        batch_size: int = 2000,
        progress: bool = False,
    ) -> Dataset:
        """Upload a dataset in batches and store it in the service.

        A file is read (and sent) piece by piece, never all at once.

        Args:
            data: a CSV/JSONL path, or a DocList/list of documents or dicts.
            kind: ``labeled``, ``pairs``, ``text_image`` or ``unlabeled`` (default: inferred).
            name: a name for people.
            batch_size: items per batch (1-10000).
            progress: show a progress bar.

        Returns:
            The stored dataset: its handle and validation report (check ``ok``).

        Raises:
            ConfigError: a bad kind or batch size, or data that is not a dataset.
            DataError: malformed rows (found while reading, before they are sent).
        """
        if isinstance(data, str) and _DATASET_HANDLE.match(data.strip()):
            raise ConfigError(f"{data!r} is a dataset handle: it is stored already, use it as is")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise ConfigError(f"batch_size must be an integer, got {batch_size!r}")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(f"batch_size must be 1..{MAX_BATCH_SIZE}, got {batch_size}")
        data_kind = parse_kind(kind)
        doc = self.transport.upload_dataset(
            data,
            kind=None if data_kind is None else data_kind.value,
            name=name or "",
            batch_size=batch_size,
            progress=progress,
        )
        return Dataset.from_doc(doc)

    def list_datasets(self) -> list[Dataset]:
        """The caller's datasets, newest first."""
        return [Dataset.from_doc(doc) for doc in self.transport.list_datasets()]

    def get_run(self, run_id: str) -> Run:
        """A run by its id.

        Raises:
            NotFoundError: no such run (or not the caller's).
        """
        return Run(self, self.transport.get_run(run_id))

    def list_runs(self) -> list[Run]:
        """The caller's runs, newest first."""
        return [Run(self, record) for record in self.transport.list_runs()]

    def cancel_run(self, run_id: str) -> Run:
        """Cancel a run; returns it as it is after cancelling."""
        return Run(self, self.transport.cancel_run(run_id))

    def delete_run(self, run_id: str) -> None:
        """Delete a run and what it stored (its published model stays)."""
        self.transport.delete_run(run_id)

    def get_model(
        self, source: Run | ModelHandle | str, *, device: str | torch.device | None = None
    ) -> EmbeddingModel:
        """Download (once; it is cached), verify and load a tuned model.

        Args:
            source: a Run, a run id, or a model handle (``stm1:...``).
            device: where the model goes (default: the CPU).

        Raises:
            ConfigError: the run has no model (yet), or its store is out of reach.
            BundleError: the archive does not match its handle's digest.
        """
        return load_bundle(self.bundle_folder(source), device=device)

    def pull(self, source: Run | ModelHandle | str, directory: str | os.PathLike[str]) -> Path:
        """Save a tuned model as a bundle folder that ``searchtuner.load_bundle`` loads.

        Args:
            source: a Run, a run id, or a model handle.
            directory: the folder to create; it must not exist or be empty.

        Returns:
            The folder.
        """
        cached = self.bundle_folder(source)
        target = Path(directory).expanduser()
        with staged_folder(target, "save the model") as staging:
            shutil.copytree(cached, staging, dirs_exist_ok=True)
        return target

    def bundle_folder(self, source: Run | ModelHandle | str) -> Path:
        """The verified, unpacked bundle of a model in the local cache (downloaded once).

        Over HTTP the archive comes through the service; otherwise (gRPC) it is read from
        the store the handle names, which must then be readable here (``file://`` on this
        machine, or ``s3://`` with credentials).
        """
        run_id, handle = self._model_of(source)
        if run_id is not None and self.transport.downloads_models:
            reader = self.transport.model_reader(run_id)
            return fetch_bundle(handle, store_opener=_single_reader(reader))
        if handle.uri.startswith("file://") and not _store_is_here(handle):
            return fetch_bundle(handle, store_opener=_out_of_reach)  # unless it is cached
        return fetch_bundle(handle)

    def _model_of(self, source: Run | ModelHandle | str) -> tuple[str | None, ModelHandle]:
        """The run (if known) and the handle of a model."""
        if isinstance(source, ModelHandle):
            return self._run_with(source), source
        if isinstance(source, str) and _MODEL_HANDLE.match(source.strip()):
            handle = ModelHandle.parse(source)
            return self._run_with(handle), handle
        run = source.refresh() if isinstance(source, Run) else self.get_run(str(source))
        if not run.model_handle:
            if run.is_final:
                why = f": {run.reason}" if run.reason else ""
                raise ConfigError(f"run {run.id} ended {run.state} and has no model{why}")
            raise ConfigError(
                f"run {run.id} is {run.state} and has no model yet; a model is published when "
                f"the run reaches FINISHED: wait for it (run.wait(), or `searchtuner logs "
                f"{run.id} -f`)"
            )
        return run.id, ModelHandle.parse(run.model_handle)

    def _run_with(self, handle: ModelHandle) -> str | None:
        """The caller's run that published ``handle``, when the service can send its model
        and the archive is not on this machine already."""
        if _store_is_here(handle) or not self.transport.downloads_models:
            return None
        for run in self.transport.list_runs():
            if run.model_handle and ModelHandle.parse(run.model_handle) == handle:
                return run.run_id
        return None

    def close(self) -> None:
        """Release the connection."""
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({str(self.url)!r})"


def _same_data(one: DataSource, other: DataSource) -> bool:
    """Whether two data arguments are the same file or the same object."""
    if isinstance(one, str | os.PathLike) and isinstance(other, str | os.PathLike):
        return Path(one).resolve() == Path(other).resolve()
    return one is other


def _single_reader(reader: BlobReader) -> StoreOpener:
    """A store opener that hands every URI to ``reader`` (it knows what to fetch)."""

    def opener(uri: str) -> tuple[BlobReader, str]:
        return reader, uri

    return opener


def _out_of_reach(uri: str) -> tuple[BlobReader, str]:
    raise ConfigError(
        f"the model archive lies in the service's store at {uri}, which is not on this "
        "machine; connect over HTTP (http://...) to download it through the service"
    )


def _store_is_here(handle: ModelHandle) -> bool:
    """Whether a ``file://`` handle's store (the folder its archive lies in) is on this
    machine; the store's own layout decides which files hold the archive."""
    parts = urlsplit(handle.uri)
    return parts.scheme == "file" and Path(url2pathname(parts.path)).parent.is_dir()
