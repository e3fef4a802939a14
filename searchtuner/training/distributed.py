"""Data-parallel training over several processes, GPUs and nodes, launched by torchrun.

One run is one process group: ``torchrun`` starts a process per GPU (or several CPU
processes) on each node and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``... in their
environment. The :class:`~searchtuner.training.Trainer` does the rest when ``world_size > 1``:

* **Global batches.** ``TrainConfig.batch_size`` is the batch of one optimizer step summed
  over all processes. The sampler builds the very sequence of batches one process would,
  and each process takes one contiguous shard of every batch (``batch_size / world_size``
  items; for class-balanced batches whole label groups, so every shard is class-balanced).
* **Losses over the global batch.** Each process embeds its shard, gathers the embeddings
  (and labels) of all shards with :func:`all_gather`, and computes the loss of the whole
  global batch. In-batch negatives, mined triplets and the loss value are therefore those
  of one process with the same batch: negatives grow with the number of processes.
* **Gradients.** DDP averages the gradients of all processes (a cached GradCache loss runs
  its own backward passes; its gradients are averaged by :func:`all_reduce_gradients`).
  Both give the gradient of the global loss; see :func:`all_gather` for why.
* **Rank 0 speaks.** Every process computes the same weights, loss and metrics, so only rank
  0 prints progress, writes checkpoints, events and artifacts.
* **Exact resume.** Dropout draws are seeded per process and per micro-batch, so a resumed
  run needs no random state from the other processes: rank 0's checkpoint is enough.

Backends: NCCL for CUDA devices, gloo for the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

from searchtuner.device import resolve_device
from searchtuner.errors import ConfigError

T = TypeVar("T")

DEFAULT_TIMEOUT = timedelta(minutes=30)
"""How long a collective waits for the slowest process before the run fails."""

_ENV_NAMES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in its run, as torchrun describes it.

    Attributes:
        rank: this process, 0..world_size-1 over all nodes.
        world_size: processes in the run.
        local_rank: this process on its node (which GPU it uses).
        local_world_size: processes on this node.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, checkpoints and writes the run's results."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DistributedEnv:
        """Read torchrun's variables; a process started without torchrun is rank 0 of 1.

        Raises:
            ConfigError: a variable is not a number, or the numbers do not fit together.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for name in _ENV_NAMES:
            raw = environ.get(name)
            if raw is None:
                continue
            try:
                values[name] = int(raw)
            except ValueError as err:
                raise ConfigError(f"{name}={raw!r} is not a whole number") from err
        world = values.get("WORLD_SIZE", 1)
        rank = values.get("RANK", 0)
        local_rank = values.get("LOCAL_RANK", rank if world > 1 else 0)
        local_world = values.get("LOCAL_WORLD_SIZE", world)
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"RANK={rank} does not fit WORLD_SIZE={world}")
        if local_world < 1 or not 0 <= local_rank < local_world or local_world > world:
            raise ConfigError(
                f"LOCAL_RANK={local_rank} / LOCAL_WORLD_SIZE={local_world} do not fit "
                f"WORLD_SIZE={world}"
            )
        return cls(rank, world, local_rank, local_world)


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices, gloo for the CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def device_for(device: str | torch.device | None, local_rank: int, world_size: int) -> torch.device:
    """The device one process trains on: with several processes, ``cuda`` is the local rank's GPU.

    Raises:
        ConfigError: CUDA is absent, a GPU index is pinned while several processes run, or
            this node runs more processes than it has GPUs.
    """
    chosen = resolve_device(device)
    if chosen.type != "cuda" or world_size == 1:
        return chosen
    if chosen.index is not None:
        raise ConfigError(
            f"device={str(device)!r} pins one GPU, but {world_size} processes train this run; "
            "set device='cuda': each process then uses the GPU of its local rank"
        )
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(
            f"the process of local rank {local_rank} has no GPU of its own: {count} visible on "
            f"this node; run at most {count} process(es) per node"
        )
    return torch.device("cuda", local_rank)


def split_batch(batch_size: int, world_size: int, group_size: int = 1) -> int:
    """Items each process takes of a global batch of ``batch_size``.

    Args:
        batch_size: the global batch.
        world_size: processes sharing it.
        group_size: a shard must hold whole groups of this many items (``samples_per_label``
            of class-balanced batches, so that every shard is class-balanced).

    Raises:
        ConfigError: the batch does not split evenly; the message lists sizes that do.
    """
    unit = world_size * group_size
    if batch_size % unit == 0:
        return batch_size // world_size
    lower, upper = batch_size // unit * unit, (batch_size // unit + 1) * unit
    sizes = " or ".join(str(s) for s in (lower, upper) if s > 0)
    what = f"{world_size} processes"
    if group_size > 1:
        what += f" in whole groups of samples_per_label={group_size}"
    raise ConfigError(
        f"batch_size={batch_size} (the global batch of one step) does not split evenly over "
        f"{what}; use batch_size {sizes}"
    )


def init_process_group(
    env: DistributedEnv, device: torch.device, *, timeout: timedelta = DEFAULT_TIMEOUT
) -> bool:
    """Join the run's process group (NCCL on CUDA, gloo on the CPU) as torchrun set it up.

    Does nothing for a single process, or when the group exists already.

    Returns:
        Whether this call created the group (then :func:`teardown` is the caller's to call).

    Raises:
        ConfigError: torchrun's rendezvous variables are missing, or an existing group does
            not match ``env``.
    """
    if not env.is_distributed:
        return False
    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (env.rank, env.world_size):
            raise ConfigError(
                f"a process group of rank {dist.get_rank()} of {dist.get_world_size()} exists "
                f"already, but this process is rank {env.rank} of {env.world_size}"
            )
        return False
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={env.world_size} but {' and '.join(missing)} not set: start the "
            "processes with torchrun (python -m torch.distributed.run), which sets them"
        )
    kwargs: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.set_device(device)
        kwargs["device_id"] = device  # NCCL connects at once, on this process's GPU
    dist.init_process_group(
        backend_for(device), rank=env.rank, world_size=env.world_size, timeout=timeout, **kwargs
    )
    return True


def teardown() -> None:
    """Leave the process group, if this process is in one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def barrier() -> None:
    """Wait for every process (no-op for a single process)."""
    if world_size() > 1:
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` as process ``src`` has it, on every process (a small picklable value)."""
    if world_size() == 1:
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=src)
    result: T = box[0]
    return result


class _GatherRows(torch.autograd.Function):
    """All processes' rows in rank order; gradients flow back to this process's own rows."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        world, me = dist.get_world_size(), dist.get_rank()
        ctx.rows, ctx.start, ctx.world = tensor.shape[0], me * tensor.shape[0], world
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        parts[me] = tensor  # this process's rows are its own tensor, bit for bit
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        # Every process computes the same loss L of the gathered rows, so this process
        # holds dL/d(own rows) in full. DDP then *averages* the parameter gradients over
        # the W processes; scaling by W turns that average into the sum over processes,
        # which is the gradient of L. No communication is needed in the backward pass.
        own: Tensor = grad[ctx.start : ctx.start + ctx.rows] * ctx.world
        return own


def all_gather(tensor: Tensor) -> Tensor:
    """The rows of ``tensor`` from every process, concatenated in rank order.

    Differentiable, for one use: every process computes the *same* loss of the gathered
    rows (the loss of the global batch). The gradient of this process's rows is then
    complete here, and it is scaled by the world size so that DDP's average over processes
    gives the gradient of that loss. Tensors without gradient (labels) are gathered as they
    are. Every process must pass a tensor of the same shape.

    Returns:
        ``tensor`` itself for a single process; else ``(world_size * rows, ...)``.
    """
    if world_size() == 1:
        return tensor
    if tensor.requires_grad:
        gathered: Tensor = _GatherRows.apply(tensor)
        return gathered
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def sync_states(module: nn.Module, src: int = 0) -> None:
    """Copy process ``src``'s parameters and buffers into every process's ``module``."""
    if world_size() == 1:
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)


_USED_PARAMETERS: dict[tuple[int, ...], list[bool]] = {}


def all_reduce_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over all processes, in one message per dtype.

    For losses that run their own backward passes (GradCache), where DDP cannot see the
    forward. A parameter without a gradient counts as a zero gradient, and one that no process
    gave a gradient keeps none (as in one process: the optimizer then skips it, weight decay
    included).
    """
    if world_size() == 1:
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    key = tuple(id(p) for p in params)
    used = _USED_PARAMETERS.get(key)
    if used is None:  # once per model: the same parameters get gradients every step
        had = torch.tensor([p.grad is not None for p in params], dtype=torch.int32)
        if dist.get_backend() == "nccl":
            had = had.to(params[0].device)
        dist.all_reduce(had)  # how many processes gave each parameter a gradient
        used = _USED_PARAMETERS[key] = [count > 0 for count in had.tolist()]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    by_dtype: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for p in params:
        assert p.grad is not None  # set above
        by_dtype.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    scale = 1.0 / dist.get_world_size()
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat.mul_(scale)
        for grad, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
            grad.copy_(part.view_as(grad))
    for p, is_used in zip(params, used, strict=True):
        if not is_used:
            p.grad = None


def data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``module`` in DistributedDataParallel on ``device``.

    ``find_unused_parameters``: backbones carry layers the embedding does not use (BERT's
    pooler under mean pooling), which DDP would otherwise wait for forever.
    """
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True,
    )
