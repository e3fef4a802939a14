"""RunRequest: what a user asks a service run to do, and the checks made before it is queued."""

from __future__ import annotations

import inspect
import math
import re
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from searchtuner.data.schemas import DataKind
from searchtuner.device import resolve_device
from searchtuner.errors import ConfigError, invalid_choice, shorten
from searchtuner.models.build import build_model
from searchtuner.models.registry import REGISTRY
from searchtuner.runs.launch import GPUS_PER_NODE_ENV, MAX_NODES_ENV
from searchtuner.training.config import Objective, TrainConfig
from searchtuner.training.distributed import split_batch

if TYPE_CHECKING:
    from searchtuner.data.stored import StoredDataset
    from searchtuner.store.base import Store

SERVICE_MANAGED_CONFIG = ("checkpoint_dir", "checkpoint_every_steps")
"""TrainConfig fields the service sets itself; a request may not set them in ``config``."""

MODEL_OPTIONS = tuple(
    name for name in inspect.signature(build_model).parameters if name not in ("backbone", "device")
)
"""Keys allowed in ``RunRequest.model_options``: keyword arguments of ``build_model``.

``device`` is left out: it is a training parameter (``config["device"]``), so that the model
and the training loop cannot disagree about it.
"""

_ORGANISATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
MAX_MODEL_NAME = 200
MAX_HANDLE_LENGTH = 200
"""Longest dataset handle a request may give (a handle is 69 characters): a request is
stored with its run, so its strings are bounded."""
MAX_PROCESSES_PER_NODE = 64
MAX_NODES = 256


class RunRequest(BaseModel):
    """A fine-tuning run as a user asks for it: a backbone, data handles and parameters.

    Only JSON values are accepted, so a request can be stored, shown and replayed as is. Any
    problem raises :class:`~searchtuner.errors.ConfigError` naming the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(
        min_length=1,
        max_length=MAX_MODEL_NAME,
        description="a registered backbone, e.g. all-MiniLM-L6-v2",
    )
    model_options: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of build_model: pooling, freeze, output_dim, ...",
    )
    train_data: str = Field(
        min_length=1, max_length=MAX_HANDLE_LENGTH, description="handle of an uploaded dataset"
    )
    eval_data: str | None = Field(
        None, min_length=1, max_length=MAX_HANDLE_LENGTH, description="handle of an eval dataset"
    )
    config: dict[str, Any] = Field(default_factory=dict, description="TrainConfig fields")
    name: str | None = Field(None, max_length=200, description="a name to show in listings")
    onnx: bool = Field(True, description="put model.onnx into the published bundle")
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="save a resumable checkpoint every N steps (default: 4 per epoch)"
    )
    processes_per_node: int = Field(
        1,
        ge=1,
        le=MAX_PROCESSES_PER_NODE,
        description=(
            "training processes on each node: one per GPU with device 'cuda', or several CPU "
            "processes; more than one trains data-parallel (torchrun). config.batch_size "
            "stays the batch of one step over all processes"
        ),
    )
    nnodes: int = Field(
        1,
        ge=1,
        le=MAX_NODES,
        description="nodes the run spans (multi-node runs need a deployment that launches them)",
    )

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(describe_request_error(err)) from err

    @classmethod
    def from_dict(cls, data: Any) -> RunRequest:
        """Build from untyped JSON (an HTTP body, a Jina ``parameters`` dict).

        Raises:
            ConfigError: not an object, or a field is missing, unknown or invalid.
        """
        if not isinstance(data, dict):
            raise ConfigError(
                f"a run request must be a JSON object with fields {', '.join(cls.model_fields)}, "
                f"got {type(data).__name__}"
            )
        return cls(**data)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        # A name is a label for listings and logs, never a key or a path; control
        # characters would let it forge lines in logs and event streams.
        if value is not None and not value.isprintable():
            raise ValueError(
                "holds control characters (newlines, tabs, NUL, ...); use printable characters only"
            )
        return value

    @field_validator("model_options")
    @classmethod
    def _check_model_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(MODEL_OPTIONS))
        if unknown:
            hint = " (set device in config)" if "device" in unknown else ""
            raise ValueError(
                f"unknown option(s) {', '.join(unknown)}{hint}; allowed: {', '.join(MODEL_OPTIONS)}"
            )
        _check_json(value, "model_options")
        return value

    @field_validator("config")
    @classmethod
    def _check_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        managed = sorted(set(value) & set(SERVICE_MANAGED_CONFIG))
        if managed:
            raise ValueError(
                f"{', '.join(managed)} is set by the service, which keeps checkpoints in the "
                "artifact store; remove it (use the request's checkpoint_every_steps instead)"
            )
        _check_json(value, "config")
        return value

    @property
    def world_size(self) -> int:
        """Training processes over all nodes."""
        return self.processes_per_node * self.nnodes

    def train_config(self) -> TrainConfig:
        """The validated training parameters.

        Raises:
            ConfigError: an unknown field or a bad value; the message names it.
        """
        return TrainConfig.from_dict(self.config)


def describe_request_error(err: ValidationError) -> str:
    """One clause per bad field of a request: which field, what is wrong, what is allowed."""
    problems = []
    for problem in err.errors():
        where = shorten(".".join(str(p) for p in problem["loc"]) or "request")
        message = shorten(str(problem["msg"]).removeprefix("Value error, "), 2000)
        if problem["type"] == "extra_forbidden":
            message = f"unknown field; allowed: {', '.join(RunRequest.model_fields)}"
        elif problem["type"] == "missing":
            message = "required"
        problems.append(f"{where}: {message}")
    return "invalid run request: " + "; ".join(problems)


def _check_json(value: Any, where: str) -> None:
    """Refuse anything but JSON values (finite numbers, strings, bools, None, lists, dicts)."""
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}; use a finite number")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has the key {key!r}; keys must be strings")
            _check_json(item, f"{where}.{key}")
        return
    raise ValueError(
        f"{where} is a {type(value).__name__}; only JSON values (numbers, strings, booleans, "
        "null, lists, objects) are accepted"
    )


def registered_model_name(model: str) -> str:
    """The registry's spelling of a backbone name; a service run accepts nothing else.

    Names match case-insensitively, with or without an organisation prefix
    (``sentence-transformers/all-MiniLM-L6-v2``). Filesystem paths are refused: a run must
    never make the service read its own files.

    Raises:
        ConfigError: a path, or a name that is not registered; the message lists the names.
    """
    names = list(REGISTRY)
    if not isinstance(model, str) or not 0 < len(model) <= MAX_MODEL_NAME:
        size = f"{len(model):,} characters" if isinstance(model, str) else type(model).__name__
        raise ConfigError(
            f"model must be the name of a registered backbone (1-{MAX_MODEL_NAME} characters), "
            f"got {size}. Allowed: {', '.join(names)}"
        )
    parts = model.split("/")
    organisation_ok = len(parts) == 1 or (len(parts) == 2 and _ORGANISATION.fullmatch(parts[0]))
    if organisation_ok:
        for name in names:
            if name.lower() == parts[-1].lower():
                return name
    if "\\" in model or model.startswith((".", "~", "/")) or not organisation_ok:
        raise ConfigError(
            f"model {model!r} looks like a file path; the service builds only registered "
            f"backbones (it never reads files on the server). Allowed: {', '.join(names)}"
        )
    raise invalid_choice("model", model, names)


def open_request_dataset(
    owner_store: Store, handle: str, what: str = "train_data"
) -> StoredDataset:
    """Open one of the request's datasets, turning 'not found' into a request error.

    Raises:
        ConfigError: no such dataset for this owner, or its validation report has errors.
    """
    from searchtuner.data.stored import DatasetNotFound, open_dataset

    try:
        dataset = open_dataset(owner_store, handle)
    except DatasetNotFound as err:
        # One message for a handle of another owner and one never uploaded: an owner must not
        # learn what other namespaces hold. A malformed handle names nothing anywhere.
        shown = handle if len(handle) <= 100 else f"{handle[:100]}..."
        raise ConfigError(
            f"dataset {shown} not found (the request's {what}); upload it first with "
            "POST /datasets or searchtuner.Client.upload"
        ) from err
    info = dataset.info
    if not info.ok:
        problems = "; ".join(f"[{f.code}] {f.message}" for f in info.report.errors)
        raise ConfigError(
            f"dataset {handle} (the request's {what}) cannot be trained on, its validation "
            f"report has errors: "
            f"{problems}; fix the data and upload it again"
        )
    return dataset


def validate_request(
    request: RunRequest,
    owner_store: Store,
    *,
    build: bool = True,
    max_nodes: int = 1,
    gpus_per_node: int | None = None,
) -> dict[str, Any]:
    """Check everything about a request that can be checked before a worker starts.

    Args:
        request: the request.
        owner_store: the owner's view of the store (``store.for_owner(owner)``).
        build: also build the model architecture without pretrained weights, which catches
            options that do not fit the backbone (e.g. ``mlp`` without ``input_dim``) in well
            under a second.
        max_nodes: the most nodes the deployment can launch a run on. The trainer service's
            own supervisor starts runs on its node only (1); a deployment with a multi-node
            launcher (Kubernetes) raises it (the service passes
            :func:`searchtuner.runs.launch.max_nodes`, ``SEARCHTUNER_MAX_NODES``).
        gpus_per_node: the GPUs of a training node, where runs train on other machines than
            this one (the service passes :func:`searchtuner.runs.launch.gpus_per_node`,
            ``SEARCHTUNER_GPUS_PER_NODE``); None: runs train here, so CUDA must be available
            here and its devices are counted.

    Returns:
        A summary: ``{"model", "train_items", "eval_items", "kind", ...}``; with ``build``
        also ``embedding_dim`` and ``parameters``/``trainable_parameters``.

    Raises:
        ConfigError: the first problem found (model name, options, training parameters,
            device, datasets); the message says what to change.
    """
    model = registered_model_name(request.model)
    config = request.train_config()
    if gpus_per_node is None:
        device = resolve_device(config.device)  # CUDA asked for where there is none: say so now
    else:
        device = _device_on_training_nodes(config.device, gpus_per_node)
    _check_processes(request, config, device, max_nodes, gpus_per_node)
    summary: dict[str, Any] = {"model": model}
    if build:
        options = {**request.model_options, "pretrained": False}
        try:
            built = build_model(model, **options)
        except ConfigError as err:
            raise ConfigError(f"model_options do not fit {model}: {err}") from err
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"model_options do not fit {model}: {err}; see searchtuner.build_model for "
                "the type of each option"
            ) from err
        summary["embedding_dim"] = built.spec.embedding_dim
        summary["parameters"] = sum(p.numel() for p in built.parameters())
        summary["trainable_parameters"] = sum(
            p.numel() for p in built.parameters() if p.requires_grad
        )
    train = open_request_dataset(owner_store, request.train_data, "train_data")
    summary["train_items"] = train.info.n_items
    summary["kind"] = None if train.info.kind is None else train.info.kind.value
    if request.world_size > 1:
        labels = config.objective is Objective.LABELS or (
            config.objective is Objective.AUTO and train.info.kind is DataKind.LABELED
        )
        group = config.samples_per_label if labels else 1
        try:
            split_batch(config.batch_size, request.world_size, group)
        except ConfigError as err:
            raise ConfigError(
                f"{err} (processes_per_node={request.processes_per_node} × nnodes={request.nnodes})"
            ) from err
    summary["eval_items"] = None
    if request.eval_data is not None:
        evaluation = open_request_dataset(owner_store, request.eval_data, "eval_data")
        summary["eval_items"] = evaluation.info.n_items
    return summary


def _device_on_training_nodes(name: str | None, gpus_per_node: int) -> torch.device:
    """The device asked for, checked against the training nodes' GPUs (not this machine's)."""
    try:
        device = torch.device(name or "cpu")
    except RuntimeError as err:
        raise ConfigError(f"unknown device {name!r}; use 'cpu', 'cuda' or 'cuda:N'") from err
    if device.type == "cuda" and gpus_per_node == 0:
        raise ConfigError(
            f"device {name!r} asked for, but this deployment's training nodes have no GPU "
            f"({GPUS_PER_NODE_ENV}=0); use 'cpu'"
        )
    if device.type == "cuda" and device.index is not None and device.index >= gpus_per_node:
        raise ConfigError(
            f"device {name!r} asked for, but a training node has {gpus_per_node} GPU(s) "
            f"({GPUS_PER_NODE_ENV}); use 'cuda' or 'cuda:0'..'cuda:{gpus_per_node - 1}'"
        )
    return device


def _check_processes(
    request: RunRequest,
    config: TrainConfig,
    device: torch.device,
    max_nodes: int,
    gpus_per_node: int | None = None,
) -> None:
    """Refuse process counts this deployment or this node cannot run."""
    if request.nnodes > max_nodes:
        raise ConfigError(
            f"nnodes={request.nnodes}, but this deployment launches runs on at most "
            f"{max_nodes} node(s) ({MAX_NODES_ENV}={max_nodes}); use nnodes <= {max_nodes} "
            "(processes_per_node for the GPUs of one node), or, where a multi-node launcher "
            f"runs (the Job in k8s/training), raise {MAX_NODES_ENV} on the converter "
            "(docs/distributed.md)"
        )
    if request.processes_per_node == 1 or device.type != "cuda":
        return
    if device.index is not None:
        raise ConfigError(
            f"config.device={config.device!r} pins one GPU, but processes_per_node="
            f"{request.processes_per_node}; set device='cuda': each process uses its own GPU"
        )
    count = torch.cuda.device_count() if gpus_per_node is None else gpus_per_node
    if request.processes_per_node > count:
        raise ConfigError(
            f"processes_per_node={request.processes_per_node} asks for one GPU per process, "
            f"but a training node has {count}; use processes_per_node <= {count}"
        )
