"""ONNX export of an EmbeddingModel, and a runner for the exported file with onnxruntime.

The graph takes what the model's preprocessor produces — ``input_ids`` and ``attention_mask``
(text; dynamic batch and sequence axes), ``pixel_values`` (images; dynamic batch) or
``features`` (tensors; dynamic batch) — and outputs ``sentence_embedding`` (a unique name: an
output called ``embedding`` clashes with a node name inside BERT).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from searchtuner.artifacts.errors import BundleError
from searchtuner.artifacts.manifest import build_preprocessor, verify_bundle
from searchtuner.errors import ConfigError
from searchtuner.models.embedding_model import EmbeddingModel
from searchtuner.models.preprocessing import Preprocessor
from searchtuner.types import Modality

OUTPUT_NAME = "sentence_embedding"
OPSET_VERSION = 17
ONNX_FILE = "model.onnx"

INPUT_NAMES: dict[Modality, tuple[str, ...]] = {
    Modality.TEXT: ("input_ids", "attention_mask"),
    Modality.IMAGE: ("pixel_values",),
    Modality.TENSOR: ("features",),
}
_DTYPES = {
    "input_ids": np.int64,
    "attention_mask": np.int64,
    "pixel_values": np.float32,
    "features": np.float32,
}
# Texts of different lengths, so that the traced graph contains the padding-mask path.
_TEXT_EXAMPLE = ["an example sentence for the export, long enough to need padding", "short"]


class _PositionalInputs(nn.Module):
    """Adapts ``model(batch_dict)`` to the positional inputs that the ONNX exporter traces."""

    def __init__(self, model: EmbeddingModel, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, *inputs: Tensor) -> Tensor:
        out: Tensor = self.model(dict(zip(self.names, inputs, strict=True)))
        return out


def export_onnx(
    model: EmbeddingModel, path: str | Path, *, opset_version: int = OPSET_VERSION
) -> Path:
    """Write the model as an ONNX graph with dynamic batch (and, for text, sequence) axes.

    The model is traced in eval mode on an example batch from its own preprocessor; its
    train/eval mode is restored afterwards.

    Args:
        model: the embedding model (on any device; the graph does not depend on it).
        path: the ``.onnx`` file to write.
        opset_version: the ONNX opset (17 by default).

    Returns:
        The path written.

    Raises:
        ConfigError: the model's operations cannot be expressed in ONNX, or the ``onnx``
            package is missing.
    """
    target = Path(path)
    names = INPUT_NAMES[model.modality]
    preprocessor = model.backbone.preprocessor
    items = _TEXT_EXAMPLE if model.modality is Modality.TEXT else preprocessor.example()
    batch = model.preprocess(items)
    inputs = tuple(batch[name].to(model.device) for name in names)
    input_axes = {0: "batch", 1: "sequence"} if model.modality is Modality.TEXT else {0: "batch"}
    dynamic_axes = {name: input_axes for name in names}
    dynamic_axes[OUTPUT_NAME] = {0: "batch"}

    wrapper = _PositionalInputs(model, names)
    was_training = model.training
    # The exporter puts the module it is given back into that module's *own* previous mode
    # afterwards; a fresh wrapper is in train mode, which would switch on dropout in the
    # user's model. So the wrapper goes to eval first and the model's mode is restored here.
    wrapper.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracing warns about Python control flow on shapes; the parity tests cover it.
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            # Pooling indexes with non-negative positions only, the case this warns about.
            warnings.filterwarnings("ignore", message="Exporting aten::index operator")
            torch.onnx.export(
                wrapper,
                inputs,
                str(target),
                dynamo=False,
                opset_version=opset_version,
                input_names=list(names),
                output_names=[OUTPUT_NAME],
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    except ImportError as err:
        raise ConfigError(
            f"ONNX export needs the onnx package ({err}); run `pip install onnx==1.23.2` or "
            "save the bundle with onnx=False"
        ) from err
    except RuntimeError as err:  # torch.onnx's OnnxExporterError included
        raise ConfigError(
            f"cannot export {model.spec.backbone} to ONNX: {err}; save the bundle with onnx=False"
        ) from err
    finally:
        model.train(was_training)
    return target


class OnnxEmbedder:
    """Runs an exported ``model.onnx`` with onnxruntime on the CPU.

    Args:
        path: the ``.onnx`` file.
        preprocessor: turns raw items into the graph's inputs (needed by :meth:`encode`;
            :meth:`from_bundle` rebuilds the bundle's own).
        threads: intra-op threads for onnxruntime (default: its own choice).

    Raises:
        ConfigError: onnxruntime is not installed.
        BundleError: the file is not a loadable ONNX model.
    """

    def __init__(
        self,
        path: str | Path,
        preprocessor: Preprocessor | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except (RuntimeError, ValueError) as err:  # onnxruntime's errors derive from these
            raise BundleError(f"cannot load the ONNX model {path}: {err}") from err
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.preprocessor = preprocessor

    @classmethod
    def from_bundle(cls, directory: str | Path, *, threads: int | None = None) -> OnnxEmbedder:
        """Open a bundle's ``model.onnx`` with the bundle's preprocessing (files verified).

        Raises:
            BundleError: the bundle fails verification or holds no ONNX file.
        """
        folder = Path(directory)
        manifest = verify_bundle(folder)
        if ONNX_FILE not in manifest.files:
            raise BundleError(
                f"{folder} holds no {ONNX_FILE}; save the bundle with onnx=True to export one"
            )
        return cls(folder / ONNX_FILE, build_preprocessor(folder, manifest), threads=threads)

    def run(self, batch: Mapping[str, Tensor | np.ndarray]) -> np.ndarray:
        """Embed one preprocessed batch.

        Args:
            batch: the preprocessor's output (tensors or arrays), keyed by input name.

        Returns:
            float32 array ``(B, D)``.

        Raises:
            ConfigError: an input the graph needs is missing from ``batch``.
        """
        missing = [name for name in self.input_names if name not in batch]
        if missing:
            raise ConfigError(
                f"the batch lacks {missing}; this ONNX model takes {self.input_names}"
            )
        feeds = {name: _as_array(batch[name], name) for name in self.input_names}
        (out,) = self.session.run([OUTPUT_NAME], feeds)
        return np.asarray(out, dtype=np.float32)

    def encode(self, items: Sequence[Any], *, batch_size: int = 32) -> np.ndarray:
        """Embed raw items (texts, images, arrays) with the preprocessor, in order.

        Raises:
            ConfigError: no preprocessor was given, or batch_size is below 1.
        """
        if self.preprocessor is None:
            raise ConfigError(
                "this OnnxEmbedder has no preprocessor; pass one, or open a bundle with "
                "OnnxEmbedder.from_bundle(folder)"
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        chunks = [
            self.run(self.preprocessor(list(items[start : start + batch_size])))
            for start in range(0, len(items), batch_size)
        ]
        if not chunks:
            dim = self.session.get_outputs()[0].shape[-1]
            return np.empty((0, dim if isinstance(dim, int) else 0), dtype=np.float32)
        return np.concatenate(chunks)


def _as_array(value: Tensor | np.ndarray, name: str) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    return array.astype(_DTYPES.get(name, array.dtype), copy=False)


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ConfigError(
            "running ONNX models needs onnxruntime; run `pip install onnxruntime==1.32.0`"
        ) from err
    return onnxruntime
