"""Backbone → embedding model conversion."""

from searchtuner.models.build import build_model
from searchtuner.models.embedding_model import EmbeddingModel, ModelSpec, ModelSummary
from searchtuner.models.registry import list_models

__all__ = ["EmbeddingModel", "ModelSpec", "ModelSummary", "build_model", "list_models"]
