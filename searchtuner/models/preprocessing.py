"""Preprocessors: raw inputs (texts, images, tensors) → the batch a backbone reads.

Every EmbeddingModel carries one, so callers hand over raw data and never a tokenizer or an
image transform of their own. A preprocessor's ``config()`` is plain JSON, so a saved model
restores the same preprocessing.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from searchtuner.errors import ConfigError, DataError
from searchtuner.types import Modality

Batch = dict[str, Tensor]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocessor(Protocol):
    """Turns a list of raw items into a batch of tensors for one backbone."""

    modality: Modality

    def __call__(self, items: Sequence[Any]) -> Batch: ...

    def prepare(self, items: Sequence[Any]) -> list[Any]: ...

    def collate(self, prepared: Sequence[Any]) -> Batch: ...

    def config(self) -> dict[str, Any]: ...

    def example(self) -> list[Any]: ...


class TextPreprocessor:
    """Tokenises texts with a Hugging Face tokenizer, padding to the longest in the batch.

    Args:
        tokenizer: a loaded Hugging Face tokenizer.
        max_length: texts are truncated to this many tokens.
    """

    modality = Modality.TEXT

    def __init__(self, tokenizer: Any, max_length: int) -> None:
        if max_length < 2:
            raise ConfigError(f"max_length must be at least 2 tokens, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)

    def __call__(self, items: Sequence[Any]) -> Batch:
        return self.collate(self.prepare(items))

    def prepare(self, items: Sequence[Any]) -> list[list[int]]:
        """Tokenise without padding: one list of token ids per text (cacheable per item)."""
        texts = list(items)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(
                    f"item {i}: a text model needs str inputs, got {type(text).__name__}; "
                    "pass texts, or build an image/tensor model for other data"
                )
        encoded = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, return_attention_mask=False,
            return_token_type_ids=False,
        )  # fmt: skip
        ids: list[list[int]] = encoded["input_ids"]
        return ids

    def collate(self, prepared: Sequence[Sequence[int]]) -> Batch:
        """Pad token-id lists to the longest of them; the mask marks the real tokens."""
        longest = max((len(ids) for ids in prepared), default=0)
        input_ids = torch.full((len(prepared), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prepared), longest), dtype=torch.long)
        for row, ids in enumerate(prepared):
            input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            mask[row, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else 0

    def config(self) -> dict[str, Any]:
        return {"type": "text", "max_length": self.max_length}

    def example(self) -> list[Any]:
        return ["a short example sentence", "another one"]


class ImagePreprocessor:
    """Decodes images, resizes the shorter side, centre-crops and normalises.

    Accepts encoded bytes (PNG, JPEG, …), a path to an image file, a PIL image, or an array
    (``H×W``, ``H×W×C`` or ``C×H×W``; uint8 in 0–255 or float in 0–1).

    Args:
        size: output height and width in pixels.
        mean: per-channel mean subtracted after scaling to 0–1.
        std: per-channel standard deviation divided by.
    """

    modality = Modality.IMAGE

    def __init__(
        self,
        size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if size < 8:
            raise ConfigError(f"image_size must be at least 8 pixels, got {size}")
        self.size = int(size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        self._std = torch.tensor(self.std).view(1, 3, 1, 1)

    def prepare(self, items: Sequence[Any]) -> list[Any]:
        """Images are decoded per batch (decoded pixels would not fit in memory for long)."""
        return list(items)

    def collate(self, prepared: Sequence[Any]) -> Batch:
        return self(prepared)

    def __call__(self, items: Sequence[Any]) -> Batch:
        pixels = torch.stack([self._resize(to_chw_float(item, i)) for i, item in enumerate(items)])
        return {"pixel_values": (pixels - self._mean) / self._std}

    def _resize(self, image: Tensor) -> Tensor:
        _, height, width = image.shape
        scale = self.size / min(height, width)
        new_h, new_w = max(self.size, round(height * scale)), max(self.size, round(width * scale))
        if (new_h, new_w) != (height, width):
            image = F.interpolate(
                image.unsqueeze(0), size=(new_h, new_w), mode="bilinear", antialias=True
            ).squeeze(0)
        top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
        return image[:, top : top + self.size, left : left + self.size]

    def config(self) -> dict[str, Any]:
        return {"type": "image", "size": self.size, "mean": self.mean, "std": self.std}

    def example(self) -> list[Any]:
        return [np.zeros((self.size, self.size, 3), dtype=np.uint8)] * 2


class TensorPreprocessor:
    """Stacks numeric arrays of one fixed shape into a float32 batch.

    Args:
        input_shape: the shape of one item, without the batch dimension.
    """

    modality = Modality.TENSOR

    def __init__(self, input_shape: Sequence[int]) -> None:
        self.input_shape = tuple(int(d) for d in input_shape)
        if not self.input_shape or any(d <= 0 for d in self.input_shape):
            raise ConfigError(f"input_shape must be positive sizes, got {tuple(input_shape)}")

    def prepare(self, items: Sequence[Any]) -> list[Any]:
        return list(items)

    def collate(self, prepared: Sequence[Any]) -> Batch:
        return self(prepared)

    def __call__(self, items: Sequence[Any]) -> Batch:
        rows = []
        for i, item in enumerate(items):
            row = torch.as_tensor(np.asarray(item, dtype=np.float32))
            if tuple(row.shape) != self.input_shape:
                raise DataError(
                    f"item {i}: tensor of shape {tuple(row.shape)}, but this model takes "
                    f"{self.input_shape}; reshape the data or rebuild the model with "
                    f"input_shape={tuple(row.shape)}"
                )
            rows.append(row)
        return {"features": torch.stack(rows)}

    def config(self) -> dict[str, Any]:
        return {"type": "tensor", "input_shape": list(self.input_shape)}

    def example(self) -> list[Any]:
        return [np.zeros(self.input_shape, dtype=np.float32)] * 2


def to_chw_float(item: Any, index: int = 0) -> Tensor:
    """Decode one image of any accepted form into a ``3×H×W`` float tensor in 0–1.

    Raises:
        DataError: the item is not an image or does not decode; the message names the item.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(item, bytes | bytearray):
            with Image.open(io.BytesIO(item)) as img:
                array = np.asarray(img.convert("RGB"))
        elif isinstance(item, str | Path):
            with Image.open(item) as img:
                array = np.asarray(img.convert("RGB"))
        elif isinstance(item, Image.Image):
            array = np.asarray(item.convert("RGB"))
        elif isinstance(item, np.ndarray | Tensor):
            array = np.asarray(item.detach().cpu() if isinstance(item, Tensor) else item)
        else:
            raise DataError(
                f"item {index}: {type(item).__name__} is not an image; pass encoded bytes, "
                "a file path, a PIL image or an H×W×C array"
            )
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(
            f"item {index}: the image does not decode ({err}); pass a PNG/JPEG/WebP file or "
            "its bytes"
        ) from err
    return _array_to_chw(array, index)


def _array_to_chw(array: np.ndarray, index: int) -> Tensor:
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.transpose(array, (1, 2, 0))
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise DataError(
            f"item {index}: an image array must be H×W, H×W×C or C×H×W with 1, 3 or 4 "
            f"channels, got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise DataError(f"item {index}: the image array holds NaN or infinite values")
    # A copy: arrays from PIL are read-only, and the caller's array must stay untouched.
    image = torch.from_numpy(np.array(array)).permute(2, 0, 1).float()
    if array.dtype == np.uint8:
        image = image / 255.0
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image[:3].contiguous()
