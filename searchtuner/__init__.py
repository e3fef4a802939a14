"""SearchTuner: fine-tune pretrained models into embedding models for neural search."""

from searchtuner.artifacts import ModelHandle, get_model, load_bundle, save_bundle
from searchtuner.client import Client  # the SDK; importing it imports neither jina nor requests
from searchtuner.data import DataReport, validate
from searchtuner.encoding import encode
from searchtuner.errors import ConfigError, DataError, SearchTunerError
from searchtuner.evaluation import evaluate
from searchtuner.models import EmbeddingModel, build_model, list_models

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ConfigError",
    "DataError",
    "DataReport",
    "EmbeddingModel",
    "ModelHandle",
    "SearchTunerError",
    "__version__",
    "build_model",
    "encode",
    "evaluate",
    "get_model",
    "list_models",
    "load_bundle",
    "save_bundle",
    "validate",
]
