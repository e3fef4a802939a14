"""Serving a published model: load it once, embed documents with PyTorch or ONNX Runtime.

``Encoder`` is the core of the search Flow's encoder executor (``executors/encoder``), and
works without jina: ``Encoder(handle_or_folder, backend="onnx").embed_docs(docs)``.
"""

from searchtuner.serving.config import Backend, EncoderConfig
from searchtuner.serving.documents import read_inputs, with_embeddings
from searchtuner.serving.encoder import Encoder

__all__ = ["Backend", "Encoder", "EncoderConfig", "read_inputs", "with_embeddings"]
