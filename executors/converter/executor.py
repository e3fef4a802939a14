"""Converter: checks a fine-tuning request and turns its backbone into an embedding model.

The first stage of ``/runs/create``. It records the run (CREATED), checks the request
(VALIDATING): the backbone is known, its conversion options (pooling, freezing, projection)
build a model, the training config is valid, the datasets exist for this owner and their
validation reports have no errors. It builds the model once to read its architecture and
stores the summary (layers, parameter counts, what trains) with the run. Only a run that
passes goes on to the trainer, which queues it; a request that fails gets an error saying
what to fix, and the run is recorded as FAILED with that reason.

An owner may have at most ``SEARCHTUNER_MAX_RUNS_PER_OWNER`` live runs (default 8; any state
but FINISHED, FAILED and CANCELLED): a request that would start more fails with
:class:`~searchtuner.service.limits.TooManyRuns` (HTTP 429) and records nothing.
"""

import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from docarray import DocList
from jina import requests

import searchtuner
from searchtuner.data.stored import open_dataset
from searchtuner.errors import SearchTunerError
from searchtuner.runs import RunRecord, RunRegistry, RunRequest, RunState, validate_request
from searchtuner.runs.launch import gpus_per_node, max_nodes
from searchtuner.service.limits import Limits, TooManyRuns, env_name
from searchtuner.service.schemas import FitRequest, RunDoc
from searchtuner.store import IntegrityError, StoreUnavailable, open_store

try:
    from executors.common.errors import InvalidRequest
    from executors.common.runs import run_doc
    from executors.common.service import ServiceExecutor, owner_of, store_uri_or_default
except ModuleNotFoundError:  # jina imports this file by path (py_modules), maybe from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from executors.common.errors import InvalidRequest
    from executors.common.runs import run_doc
    from executors.common.service import ServiceExecutor, owner_of, store_uri_or_default


class Converter(ServiceExecutor):
    """Validates fine-tuning requests and converts their backbones (``/runs/create``).

    Args:
        store_uri: the artifact store; default ``SEARCHTUNER_STORE`` or ``./searchtuner-data``.
        cache_size: how many converted models' summaries to keep, keyed by backbone and
            options.
        **kwargs: passed to :class:`jina.Executor`.

    The most nodes a run may span is the deployment's ``SEARCHTUNER_MAX_NODES`` (default 1;
    raise it where a multi-node launcher runs, see docs/distributed.md). Where runs train on
    other machines (Kubernetes), ``SEARCHTUNER_GPUS_PER_NODE`` gives a training node's GPUs:
    a CUDA run is then checked against it, not against this machine's devices.
    ``SEARCHTUNER_MAX_RUNS_PER_OWNER`` bounds each owner's live runs (see the module).
    """

    def __init__(self, store_uri: str = "", cache_size: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = open_store(store_uri_or_default(store_uri))
        self.registry = RunRegistry(self.store)
        self.cache_size = cache_size
        self.max_nodes = max_nodes()  # ConfigError: a misconfigured deployment fails to start
        self.gpus_per_node = gpus_per_node()  # None: runs train on this machine
        self.max_runs_per_owner = Limits.from_env().max_runs_per_owner  # ConfigError: as above
        # Counting an owner's live runs and recording a new one happen under this lock, so
        # that two requests of one owner cannot both take the last free place.
        self._create_lock = threading.Lock()
        self._summaries: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()

    @requests(on="/runs/create")
    def create(
        self, docs: DocList[FitRequest], parameters: dict[str, Any], **kwargs: Any
    ) -> DocList[RunDoc]:
        """Record and validate each request; answer with the runs in state VALIDATING.

        Raises:
            InvalidRequest: the request cannot run; the message says what to fix. The run
                is then stored as FAILED with the same reason, and so are the runs of the
                call recorded before it (the call fails as a whole).
            TooManyRuns: the owner's live runs and this request's would exceed
                ``SEARCHTUNER_MAX_RUNS_PER_OWNER``; nothing is recorded.
        """
        owner = owner_of(parameters)
        if not len(docs):
            raise InvalidRequest("/runs/create got no documents: send one FitRequest per run")
        # The whole call is refused before anything is recorded; _create checks again for
        # each run, against requests of the same owner that ran meanwhile.
        self._check_run_limit(owner, len(docs))
        records: list[RunRecord] = []
        tracing_context = kwargs.get("tracing_context")
        try:
            for doc in docs:
                with self.telemetry.span("searchtuner.validate", tracing_context) as span:
                    records.append(self._create(owner, doc))
                    if span is not None:
                        span.set_attribute("searchtuner.run.id", records[-1].run_id)
        except SearchTunerError as err:
            # The request fails as a whole, so the runs validated before this one never reach
            # the trainer: end them rather than leave them VALIDATING.
            for record in records:
                reason = f"not queued: another run of the same request was refused ({err})"
                self.registry.transition(owner, record.run_id, RunState.FAILED, reason=reason)
            raise
        return DocList[RunDoc]([run_doc(record) for record in records])

    def _create(self, owner: str, doc: FitRequest) -> RunRecord:
        try:
            request = RunRequest(
                model=doc.model,
                model_options=doc.model_options,
                train_data=doc.train_data,
                eval_data=doc.eval_data or None,
                config=doc.config,
                name=doc.name or None,
                onnx=doc.onnx,
                checkpoint_every_steps=doc.checkpoint_every_steps or None,
                processes_per_node=doc.processes_per_node,
                nnodes=doc.nnodes,
            )
        except SearchTunerError as err:  # nothing recorded: there is no valid request to keep
            raise InvalidRequest(f"the fit request is invalid: {err}") from err
        with self._create_lock:
            self._check_run_limit(owner, 1)
            record = self.registry.create(owner, request)
        record = self.registry.transition(owner, record.run_id, RunState.VALIDATING)
        namespace = self.store.for_owner(owner)
        try:
            summary = validate_request(
                request, namespace, max_nodes=self.max_nodes, gpus_per_node=self.gpus_per_node
            )
            for handle in filter(None, (request.train_data, request.eval_data)):
                report = open_dataset(namespace, handle).info.report
                if not report.ok:
                    problems = "; ".join(finding.message for finding in report.errors[:3])
                    raise InvalidRequest(
                        f"dataset {handle} has errors ({problems}); fix the data and upload "
                        "it again"
                    )
            summary["conversion"] = self._convert(request)
        except (StoreUnavailable, IntegrityError):
            raise  # the service's fault, not the request's: answered as such (503 / 500)
        except SearchTunerError as err:
            reason = str(err)
            self.registry.transition(owner, record.run_id, RunState.FAILED, reason=reason)
            raise InvalidRequest(f"run {record.run_id} cannot start: {reason}") from err
        except Exception as err:
            # An unexpected failure (a bug, weights that do not load): the run must not stay
            # VALIDATING, and the error still reaches the client.
            reason = f"internal error in the converter: {type(err).__name__}: {err}"
            self.registry.transition(owner, record.run_id, RunState.FAILED, reason=reason)
            raise
        return self.registry.update(owner, record.run_id, summary=summary)

    def _check_run_limit(self, owner: str, more: int) -> None:
        """Refuse ``more`` new runs that would take ``owner`` over the live-run limit.

        Raises:
            TooManyRuns: the message gives the limit, the count and what to do.
        """
        limit = self.max_runs_per_owner
        live = self.registry.live_count(owner)
        if live + more <= limit:
            return
        asked = "a new run" if more == 1 else f"{more} new runs"
        raise TooManyRuns(
            f"too many live runs: owner {owner} has {live} live run(s) (not yet FINISHED, "
            f"FAILED or CANCELLED) and {env_name('max_runs_per_owner')}={limit} allows at "
            f"most {limit} per owner, so {asked} cannot start; wait for a run to end or cancel "
            "one (POST /runs/<run_id>/cancel, searchtuner.Client.cancel), then send the "
            "request again"
        )

    def _convert(self, request: RunRequest) -> dict[str, Any]:
        """Build the embedding model once and describe it (cached by backbone and options)."""
        key = repr((request.model, sorted(request.model_options.items())))
        with self._cache_lock:
            if key in self._summaries:
                self._summaries.move_to_end(key)
                return self._summaries[key]
        # The architecture is what is described: pretrained weights would only cost time.
        options = {**request.model_options, "pretrained": False}
        model = searchtuner.build_model(request.model, **options)
        summary = model.summary()
        described = {
            "backbone": summary.backbone,
            "modality": summary.modality,
            "embedding_dim": summary.embedding_dim,
            "total_params": summary.total_params,
            "trainable_params": summary.trainable_params,
            "table": str(summary),
        }
        with self._cache_lock:
            self._summaries[key] = described
            while len(self._summaries) > self.cache_size:
                self._summaries.popitem(last=False)
        return described

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()
        super().close()
