"""Tasks: what a batch is and how its loss is computed, for each training objective.

* labels — metric learning: class-balanced batches, a miner builds (anchor, positive,
  negative) triplets inside every batch, a pytorch-metric-learning loss scores them;
* pairs — query–document pairs with in-batch negatives (MultipleNegativesRanking/InfoNCE,
  or its cached GradCache variant), batches without duplicates;
* clip — text–image pairs through a DualEncoder, symmetric contrastive loss;
* self_supervised — unlabelled items: two dropout views of each text (SimCSE) or two
  augmentations of each image, contrasted with in-batch negatives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from searchtuner.data.readers import Source, load_docs
from searchtuner.data.schemas import DataKind, kind_of
from searchtuner.encoding import as_items
from searchtuner.errors import ConfigError, DataError
from searchtuner.models.backbones.base import FeatureKind
from searchtuner.models.dual_encoder import DualEncoder
from searchtuner.models.embedding_model import EmbeddingModel
from searchtuner.training.config import Objective, TrainConfig
from searchtuner.training.samplers import (
    ClassBalancedBatchSampler,
    NoDuplicatesBatchSampler,
    RandomBatchSampler,
)
from searchtuner.types import Modality

Model = EmbeddingModel | DualEncoder
Forward = Callable[[dict[str, Tensor]], Tensor]

_OBJECTIVE_OF_KIND = {
    DataKind.LABELED: Objective.LABELS,
    DataKind.PAIRS: Objective.PAIRS,
    DataKind.TEXT_IMAGE: Objective.CLIP,
    DataKind.UNLABELED: Objective.SELF_SUPERVISED,
}
_DEFAULT_LOSS = {
    Objective.LABELS: "TripletMarginLoss",
    Objective.PAIRS: "MultipleNegativesRankingLoss",
    Objective.CLIP: "CLIPLoss",
    Objective.SELF_SUPERVISED: "MultipleNegativesRankingLoss",
}


@dataclass
class Batch:
    """One training batch: prepared items per side, plus labels for label objectives."""

    sides: list[list[Any]]
    labels: Tensor | None
    size: int

    def pin_memory(self) -> Batch:
        """The batch with its tensors in page-locked memory (DataLoader ``pin_memory``)."""
        labels = self.labels.pin_memory() if self.labels is not None else None
        return replace(self, labels=labels)


class Task:
    """Base class. ``loss_fn`` is an nn.Module so its parameters (if any) can be trained.

    The trainer sets ``device``, ``autocast`` (the mixed-precision context of every model
    call; losses run outside it, in float32) and ``gather``: in data-parallel training it
    turns this process's embeddings or labels into those of the whole global batch, so a
    task gathers every tensor its loss reads and computes the loss of the global batch.
    """

    objective: Objective
    loss_fn: nn.Module
    n_items: int
    own_backward = False
    """Whether :meth:`step_with_backward` runs the backward pass itself (GradCache)."""

    def __init__(self, model: Model, config: TrainConfig) -> None:
        self.model = model
        self.config = config
        self.device = torch.device("cpu")  # the trainer sets where batches go
        self.autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
        self.gather: Callable[[Tensor], Tensor] = _same

    @property
    def shard_group_size(self) -> int:
        """Items that must stay together when a batch is split over processes."""
        return 1

    def batch_sampler(self, rank: int = 0, world_size: int = 1) -> Any:
        raise NotImplementedError  # pragma: no cover

    def collate(self, indices: Sequence[int]) -> Batch:
        raise NotImplementedError  # pragma: no cover

    def loss(self, forward: Callable[[Modality, list[Any]], Tensor], batch: Batch) -> Tensor:
        """The batch's loss; ``forward(modality, prepared_items)`` embeds one side."""
        raise NotImplementedError  # pragma: no cover

    def step_with_backward(self, batch: Batch, scale: float) -> Tensor | None:
        """Losses that run their own backward (GradCache) do it here; others return None."""
        return None


class LabelTask(Task):
    objective = Objective.LABELS

    def __init__(self, model: Model, config: TrainConfig, docs: Sequence[Any]) -> None:
        super().__init__(model, config)
        if isinstance(model, DualEncoder):
            raise ConfigError("labelled documents train one EmbeddingModel, not a DualEncoder")
        from searchtuner.losses import has_parameters, make_loss
        from searchtuner.miners import make_miner

        labels = [doc.label for doc in docs]
        missing = [i for i, label in enumerate(labels) if label is None]
        if missing:
            raise DataError(
                f"{len(missing)} training documents have no label (first: item {missing[0]})"
            )
        self.modality = model.modality
        self.items = model.preprocess_items(as_items(docs, model.modality))
        names = sorted(set(labels))
        index = {name: i for i, name in enumerate(names)}
        self.label_ids = torch.tensor([index[label] for label in labels], dtype=torch.long)
        self.labels = labels
        self.n_items = len(self.items)
        self.loss_fn = make_loss(
            config.loss or _DEFAULT_LOSS[self.objective], config.loss_options,
            num_classes=len(names), embedding_dim=model.embedding_dim, distance=config.distance,
        )  # fmt: skip
        # Proxy and classification losses (ArcFace, ProxyAnchor, …) need no mined tuples.
        self.miner = None
        if not has_parameters(self.loss_fn):
            self.miner = make_miner(config.miner, config.miner_options, distance=config.distance)

    def batch_sampler(self, rank: int = 0, world_size: int = 1) -> Any:
        return ClassBalancedBatchSampler(
            self.labels, self.config.batch_size, self.config.samples_per_label,
            seed=self.config.seed, rank=rank, world_size=world_size,
        )  # fmt: skip

    @property
    def shard_group_size(self) -> int:
        return self.config.samples_per_label  # each label's items stay on one process

    def collate(self, indices: Sequence[int]) -> Batch:
        return Batch(
            [[self.items[i] for i in indices]], self.label_ids[list(indices)], len(indices)
        )

    def loss(self, forward: Callable[[Modality, list[Any]], Tensor], batch: Batch) -> Tensor:
        embeddings = self.gather(forward(self.modality, batch.sides[0]).float())
        labels = None
        if batch.labels is not None:
            labels = self.gather(to_device(batch.labels, embeddings.device))
        tuples = self.miner(embeddings, labels) if self.miner is not None else None
        loss: Tensor = self.loss_fn(embeddings, labels, tuples)
        return loss


class PairTask(Task):
    objective = Objective.PAIRS

    def __init__(self, model: Model, config: TrainConfig, docs: Sequence[Any]) -> None:
        super().__init__(model, config)
        if isinstance(model, DualEncoder) or model.modality is not Modality.TEXT:
            raise ConfigError("query–document pairs train a text EmbeddingModel")
        from searchtuner.losses import make_loss

        self.queries = model.preprocess_items([doc.query for doc in docs])
        self.documents = model.preprocess_items([doc.document for doc in docs])
        self.keys = [(doc.query, doc.document) for doc in docs]
        self.n_items = len(docs)
        self.loss_fn = make_loss(config.loss or _DEFAULT_LOSS[self.objective], config.loss_options)
        self.cached = hasattr(self.loss_fn, "step")
        self.own_backward = self.cached
        if self.cached and config.gradient_accumulation_steps > 1:
            raise ConfigError(
                "the cached loss already splits batches to save memory; set "
                "gradient_accumulation_steps=1 and raise batch_size instead"
            )

    def batch_sampler(self, rank: int = 0, world_size: int = 1) -> Any:
        return NoDuplicatesBatchSampler(self.keys, self.config.batch_size, seed=self.config.seed,
                                        rank=rank, world_size=world_size)  # fmt: skip

    def collate(self, indices: Sequence[int]) -> Batch:
        return Batch([[self.queries[i] for i in indices], [self.documents[i] for i in indices]],
                     None, len(indices))  # fmt: skip

    def step_with_backward(self, batch: Batch, scale: float) -> Tensor | None:
        if not self.cached:
            return None
        model = self.model
        assert isinstance(model, EmbeddingModel)  # checked in __init__
        collate = model.backbone.preprocessor.collate
        queries = _to(collate(batch.sides[0]), self.device)
        documents = _to(collate(batch.sides[1]), self.device)
        step: Callable[..., Tensor] = self.loss_fn.step  # type: ignore[assignment]

        def embed(part: dict[str, Tensor]) -> Tensor:
            with self.autocast():
                return model(part).float()

        loss = step(embed, queries, documents, gather=self.gather)
        return loss

    def loss(self, forward: Callable[[Modality, list[Any]], Tensor], batch: Batch) -> Tensor:
        queries = self.gather(forward(Modality.TEXT, batch.sides[0]).float())
        documents = self.gather(forward(Modality.TEXT, batch.sides[1]).float())
        loss: Tensor = self.loss_fn(queries, documents)
        return loss


class ClipTask(Task):
    objective = Objective.CLIP

    def __init__(self, model: Model, config: TrainConfig, docs: Sequence[Any]) -> None:
        super().__init__(model, config)
        if not isinstance(model, DualEncoder):
            raise ConfigError(
                "text–image pairs train a DualEncoder(text_model, image_model); build both "
                "towers with the same output_dim"
            )
        from searchtuner.losses import make_loss

        images = [doc.image if doc.image is not None else doc.uri for doc in docs]
        self.texts = model.text.preprocess_items([doc.text for doc in docs])
        self.images = model.image.preprocess_items(images)
        self.keys = [(doc.text,) for doc in docs]
        self.n_items = len(docs)
        self.loss_fn = make_loss(config.loss or _DEFAULT_LOSS[self.objective], config.loss_options)

    def batch_sampler(self, rank: int = 0, world_size: int = 1) -> Any:
        return NoDuplicatesBatchSampler(self.keys, self.config.batch_size, seed=self.config.seed,
                                        rank=rank, world_size=world_size)  # fmt: skip

    def collate(self, indices: Sequence[int]) -> Batch:
        return Batch([[self.texts[i] for i in indices], [self.images[i] for i in indices]],
                     None, len(indices))  # fmt: skip

    def loss(self, forward: Callable[[Modality, list[Any]], Tensor], batch: Batch) -> Tensor:
        texts = self.gather(forward(Modality.TEXT, batch.sides[0]).float())
        images = self.gather(forward(Modality.IMAGE, batch.sides[1]).float())
        loss: Tensor = self.loss_fn(texts, images)
        return loss


class SelfSupervisedTask(Task):
    """SimCSE for texts (dropout is the augmentation); random crops, flips, jitter for images."""

    objective = Objective.SELF_SUPERVISED

    def __init__(self, model: Model, config: TrainConfig, docs: Sequence[Any]) -> None:
        super().__init__(model, config)
        if isinstance(model, DualEncoder):
            raise ConfigError("unlabelled data trains one EmbeddingModel, not a DualEncoder")
        from searchtuner.losses import make_loss

        self.modality = model.modality
        if self.modality is Modality.TEXT and not _has_dropout(model):
            raise ConfigError(
                "SimCSE needs dropout in the text model to make two views of each text; this "
                "model has none"
            )
        self.items = model.preprocess_items(as_items(docs, model.modality))
        self.n_items = len(self.items)
        self.loss_fn = make_loss(config.loss or _DEFAULT_LOSS[self.objective], config.loss_options)
        self.augment: Any = None
        if self.modality is Modality.IMAGE:
            from searchtuner.augment import ImageAugment

            size = int(model.spec.options.get("image_size", 224))
            self.augment = ImageAugment(size, seed=config.seed)
        elif self.modality is Modality.TENSOR:
            raise ConfigError("self-supervised training supports text and image models")

    def batch_sampler(self, rank: int = 0, world_size: int = 1) -> Any:
        return RandomBatchSampler(self.n_items, self.config.batch_size, seed=self.config.seed,
                                  rank=rank, world_size=world_size)  # fmt: skip

    def collate(self, indices: Sequence[int]) -> Batch:
        return Batch([[self.items[i] for i in indices]], None, len(indices))

    def loss(self, forward: Callable[[Modality, list[Any]], Tensor], batch: Batch) -> Tensor:
        if self.augment is None:
            first = forward(self.modality, batch.sides[0]).float()
            second = forward(self.modality, batch.sides[0]).float()
        else:
            first, second = self._image_views(forward, batch)
        loss: Tensor = self.loss_fn(self.gather(first), self.gather(second))
        return loss

    def _image_views(self, forward: Any, batch: Batch) -> tuple[Tensor, Tensor]:
        model = self.model
        assert isinstance(model, EmbeddingModel)  # checked in __init__
        pixels = model.backbone.preprocessor.collate(batch.sides[0])["pixel_values"]
        one, two = self.augment.two_views(pixels)
        with self.autocast():
            return (model({"pixel_values": to_device(one, self.device)}).float(),
                    model({"pixel_values": to_device(two, self.device)}).float())  # fmt: skip


def _has_dropout(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules())


def make_task(model: Model, data: Source, config: TrainConfig) -> Task:
    """Read the training data and build the task its kind (or ``config.objective``) calls for."""
    docs = load_docs(data)
    kind = kind_of(docs[0])
    objective = config.objective
    if objective is Objective.AUTO:
        if kind is None:
            raise DataError("cannot tell what kind of training data this is; set objective")
        objective = _OBJECTIVE_OF_KIND[kind]
    expected = {v: k for k, v in _OBJECTIVE_OF_KIND.items()}[objective]
    if objective is Objective.SELF_SUPERVISED and kind is DataKind.LABELED:
        expected = kind  # labelled data can train without its labels, too
    if kind is not expected:
        raise ConfigError(
            f"objective {objective.value!r} needs {expected.value} data, got {kind} data; "
            "set objective='auto' to choose by data"
        )
    task_class = {
        Objective.LABELS: LabelTask,
        Objective.PAIRS: PairTask,
        Objective.CLIP: ClipTask,
        Objective.SELF_SUPERVISED: SelfSupervisedTask,
    }[objective]
    return task_class(model, config, docs)


def bucketed_forward(model: EmbeddingModel, prepared: list[Any], bucket_size: int | None,
                     device: torch.device) -> Tensor:  # fmt: skip
    """Embed prepared items; texts go through in length-sorted chunks to cut padding.

    Padding a batch to its longest text wastes most of the compute on short texts. Sorting
    the batch by length and running chunks of ``bucket_size`` pads each chunk only to its
    own longest text; the embeddings are put back in the batch's order, and gradients flow
    exactly as through one forward pass (layer norm works per token, so chunking changes no
    value). Models with batch norm are never chunked: their statistics depend on the batch.
    """
    collate = model.backbone.preprocessor.collate
    if (
        bucket_size is None
        or model.backbone.feature_kind is not FeatureKind.TOKENS
        or len(prepared) <= bucket_size
        or not all(isinstance(p, list) for p in prepared)
    ):
        return model(_to(collate(prepared), device))
    order = sorted(range(len(prepared)), key=lambda i: len(prepared[i]))
    parts = [
        model(_to(collate([prepared[i] for i in order[start : start + bucket_size]]), device))
        for start in range(0, len(order), bucket_size)
    ]
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return torch.cat(parts)[to_device(inverse, device)]


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device``; to a GPU through page-locked memory, without waiting for it."""
    if device.type != "cuda" or tensor.device.type == "cuda":
        return tensor.to(device)
    pinned = tensor if tensor.is_pinned() else tensor.pin_memory()
    return pinned.to(device, non_blocking=True)


def _to(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: to_device(v, device) for k, v in batch.items()}


def _same(tensor: Tensor) -> Tensor:
    return tensor
