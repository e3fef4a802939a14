"""Small shared enums."""

from __future__ import annotations

from enum import StrEnum


class Modality(StrEnum):
    """What kind of raw input a model or a document carries."""

    TEXT = "text"
    IMAGE = "image"
    TENSOR = "tensor"
