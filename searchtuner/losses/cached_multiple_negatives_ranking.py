"""GradCache version of the multiple negatives ranking loss (Gao et al., 2021).

The number of in-batch negatives is bounded by the size of the similarity matrix, not by the
activations of the model: embeddings are computed in mini-batches without a graph, the loss
gradient with respect to each embedding is cached, and each mini-batch is then embedded
again with a graph and back-propagated with its cached gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from searchtuner.errors import ConfigError, DataError
from searchtuner.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss

Batch = dict[str, Tensor]
Model = Callable[[Batch], Tensor]
Gather = Callable[[Tensor], Tensor]


class RandomState:
    """The CPU and CUDA random states at one moment, to replay dropout exactly.

    Args:
        batch: the tensors about to be embedded; the CUDA devices they live on (and the
            current CUDA device, when CUDA is in use) have their generator state recorded.
    """

    def __init__(self, batch: Batch) -> None:
        self.cpu_state = torch.get_rng_state()
        devices = {t.device.index for t in batch.values() if t.is_cuda}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            devices.add(torch.cuda.current_device())
        self.devices = sorted(d for d in devices if d is not None)
        self.cuda_states = [torch.cuda.get_rng_state(d) for d in self.devices]

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Run the block with the recorded state; the current state is restored after."""
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.cpu_state)
            for device, state in zip(self.devices, self.cuda_states, strict=True):
                torch.cuda.set_rng_state(state, device)
            yield


class CachedMultipleNegativesRankingLoss(MultipleNegativesRankingLoss):
    """Multiple negatives ranking loss whose batch size is not bound by memory.

    ``forward`` is the plain loss on ready embeddings; :meth:`step` runs the model itself
    with gradient caching and accumulates the parameter gradients.

    Args:
        scale: multiplier of the cosine similarities (inverse temperature).
        mini_batch_size: rows embedded at once; memory grows with this, not the batch size.
        symmetric: also rank the queries for each of the first ``B`` documents.

    Raises:
        ConfigError: if ``scale`` or ``mini_batch_size`` is not positive.
    """

    def __init__(
        self, scale: float = 20.0, mini_batch_size: int = 32, symmetric: bool = False
    ) -> None:
        super().__init__(scale=scale, symmetric=symmetric)
        if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int):
            raise ConfigError(f"mini_batch_size must be an integer, got {mini_batch_size!r}")
        if mini_batch_size < 1:
            raise ConfigError(f"mini_batch_size must be at least 1, got {mini_batch_size}")
        self.mini_batch_size = mini_batch_size

    def step(
        self, model: Model, query_batch: Batch, doc_batch: Batch, gather: Gather | None = None
    ) -> Tensor:
        """Compute the loss and accumulate its gradient into the model's parameters.

        Does not zero gradients or step an optimizer.

        Args:
            model: maps a batch (dict of tensors with a leading batch dimension) to ``(n, D)``
                embeddings; called once per mini-batch without and once with a graph.
            query_batch: the ``B`` queries.
            doc_batch: ``B + H`` documents: the positives in query order, then hard negatives.
            gather: data-parallel training: maps this process's cached embeddings to those
                of all processes (``searchtuner.training.distributed.all_gather``), so the
                loss is that of the global batch; positives and hard negatives are gathered
                apart, keeping every query's positive at its own row.

        Returns:
            The detached scalar loss.

        Raises:
            DataError: if a batch is empty or its tensors differ in length.
        """
        chunks = {
            side: list(_mini_batches(batch, self.mini_batch_size, side))
            for side, batch in (("query", query_batch), ("document", doc_batch))
        }
        states: dict[str, list[RandomState]] = {"query": [], "document": []}
        cached: dict[str, Tensor] = {}
        with torch.no_grad():
            for side, side_chunks in chunks.items():
                outputs = []
                for chunk in side_chunks:
                    states[side].append(RandomState(chunk))
                    outputs.append(model(chunk))
                cached[side] = torch.cat(outputs).detach().requires_grad_()

        queries, documents = cached["query"], cached["document"]
        if gather is not None:
            n = queries.shape[0]
            documents = torch.cat([gather(documents[:n]), *(
                [gather(documents[n:])] if documents.shape[0] > n else []
            )])  # fmt: skip
            queries = gather(queries)
        loss = self(queries, documents)
        loss.backward()

        for side, side_chunks in chunks.items():
            grad = cached[side].grad
            if grad is None:  # pragma: no cover - the loss always depends on both sides
                continue
            start = 0
            for chunk, state in zip(side_chunks, states[side], strict=True):
                with state.replay():
                    embeddings = model(chunk)
                stop = start + embeddings.shape[0]
                embeddings.backward(grad[start:stop])
                start = stop
        return loss.detach()


def _mini_batches(batch: Batch, size: int, side: str) -> Iterator[Batch]:
    """Slice every tensor of ``batch`` along its first dimension into chunks of ``size``."""
    lengths = {name: t.shape[0] for name, t in batch.items()}
    if not lengths or len(set(lengths.values())) != 1:
        raise DataError(
            f"the {side} batch must hold tensors of one common, non-zero length; got lengths "
            f"{lengths or '(no tensors)'}"
        )
    total = next(iter(lengths.values()))
    if total == 0:
        raise DataError(f"the {side} batch is empty")
    for start in range(0, total, size):
        yield {name: t[start : start + size] for name, t in batch.items()}
