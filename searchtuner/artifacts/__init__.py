"""Model artifacts: checkpoints, bundles (safetensors + JSON + ONNX + model card), handles.

``save_model_checkpoint`` stores a whole model and what is known about it as one safetensors
object; ``publish_checkpoint`` turns it into a bundle with a model card. ``save_bundle``
writes a model into a folder that SearchTuner, sentence-transformers (text models) and
onnxruntime can all load; ``publish_bundle`` stores its deterministic archive under its
digest in any :class:`searchtuner.store.Store` and returns a :class:`ModelHandle`;
``get_model`` turns a folder, an archive or a handle (``file://`` or ``s3://``) back into an
EmbeddingModel, verifying every digest on the way.
"""

from searchtuner.artifacts.archive import pack_bundle, unpack_bundle
from searchtuner.artifacts.bundle import load_bundle, save_bundle
from searchtuner.artifacts.checkpoint import (
    CHECKPOINT_FORMAT,
    load_model_checkpoint,
    save_model_checkpoint,
)
from searchtuner.artifacts.errors import BundleError, CheckpointError
from searchtuner.artifacts.handles import (
    BlobReader,
    ModelHandle,
    ModelNotFound,
    StoreOpener,
    default_store_opener,
    fetch_bundle,
    get_model,
    opener_from_store_factory,
    owned_archive,
    publish_bundle,
    publish_model,
)
from searchtuner.artifacts.manifest import FORMAT_VERSION, BundleManifest, verify_bundle
from searchtuner.artifacts.model_card import ModelCardInfo, render_model_card
from searchtuner.artifacts.onnx_export import OnnxEmbedder, export_onnx
from searchtuner.artifacts.publish import card_from_info, publish_checkpoint

__all__ = [
    "CHECKPOINT_FORMAT",
    "FORMAT_VERSION",
    "BlobReader",
    "BundleError",
    "BundleManifest",
    "CheckpointError",
    "ModelCardInfo",
    "ModelHandle",
    "ModelNotFound",
    "OnnxEmbedder",
    "StoreOpener",
    "card_from_info",
    "default_store_opener",
    "export_onnx",
    "fetch_bundle",
    "get_model",
    "load_bundle",
    "load_model_checkpoint",
    "opener_from_store_factory",
    "owned_archive",
    "pack_bundle",
    "publish_bundle",
    "publish_checkpoint",
    "publish_model",
    "render_model_card",
    "save_bundle",
    "save_model_checkpoint",
    "unpack_bundle",
    "verify_bundle",
]
