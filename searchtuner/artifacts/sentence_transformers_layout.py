"""The files that make a text bundle a folder ``sentence_transformers.SentenceTransformer`` loads.

The layout is the classic one (module types ``sentence_transformers.models.*``, pooling as
``pooling_mode_*`` flags) that every sentence-transformers release from 2.x to 6.x reads, so a
user can take the model to any of them. sentence-transformers itself is not needed to write it.

Module chain, in the order SearchTuner's EmbeddingModel applies them:
``0`` Transformer (the folder root: HF ``config.json``, weights, tokenizer) → ``1_Pooling`` →
``2_Dense`` (only with a projection head) → ``N_Normalize`` (only when L2-normalised).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from searchtuner.errors import ConfigError
from searchtuner.models.embedding_model import EmbeddingModel

# sentence-transformers' pooling flags, in the order its Pooling config lists them.
_POOLING_FLAGS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
    "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
}
# The SearchTuner token poolings, all of which sentence-transformers has.
_SUPPORTED = ("mean", "cls", "max")


def write_json(path: Path, data: Any) -> None:
    """Write JSON the same way every time (sorted keys, two-space indent, final newline)."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_sentence_transformers_files(
    model: EmbeddingModel, directory: Path, *, versions: dict[str, str]
) -> None:
    """Add the sentence-transformers module files to a folder that already holds the HF model.

    Args:
        model: a text EmbeddingModel (transformer backbone, token pooling).
        directory: the bundle folder; ``config.json``, the weights and the tokenizer are
            written there by the caller.
        versions: library versions, for ``config_sentence_transformers.json``.

    Raises:
        ConfigError: pooling or projection that sentence-transformers cannot express.
    """
    spec = model.spec
    if spec.pooling not in _SUPPORTED:
        raise ConfigError(
            f"pooling {spec.pooling!r} has no sentence-transformers equivalent; use one of "
            f"{', '.join(_SUPPORTED)}"
        )
    hidden = int(model.backbone.feature_dim)
    modules: list[dict[str, Any]] = [_module(0, "", "Transformer")]

    write_json(
        directory / "sentence_bert_config.json",
        {"max_seq_length": int(spec.options["max_length"]), "do_lower_case": False},
    )

    pooling_dir = directory / "1_Pooling"
    pooling_dir.mkdir()
    pooling = {flag: spec.pooling == mode for mode, flag in _POOLING_FLAGS.items()}
    write_json(pooling_dir / "config.json", {"word_embedding_dimension": hidden, **pooling})
    modules.append(_module(1, "1_Pooling", "Pooling"))

    if spec.output_dim is not None:
        linear = model.projection
        if not isinstance(linear, nn.Linear) or linear.bias is None:
            raise ConfigError(
                "the projection head must be one nn.Linear with a bias to be saved for "
                "sentence-transformers; rebuild the model with output_dim=..."
            )
        dense_dir = directory / f"{len(modules)}_Dense"
        dense_dir.mkdir()
        write_json(
            dense_dir / "config.json",
            {
                "in_features": int(linear.in_features),
                "out_features": int(linear.out_features),
                "bias": True,
                "activation_function": "torch.nn.modules.linear.Identity",
            },
        )
        weights = {"linear.weight": linear.weight, "linear.bias": linear.bias}
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in weights.items()},
            dense_dir / "model.safetensors",
            metadata={"format": "pt"},
        )
        modules.append(_module(len(modules), dense_dir.name, "Dense"))

    if spec.normalize:
        # Normalize has no parameters: an empty folder, as sentence-transformers writes it.
        normalize_dir = directory / f"{len(modules)}_Normalize"
        normalize_dir.mkdir()
        modules.append(_module(len(modules), normalize_dir.name, "Normalize"))

    write_json(directory / "modules.json", modules)
    st_versions = {
        "pytorch": versions.get("torch", "unknown"),
        "transformers": versions.get("transformers", "unknown"),
    }
    write_json(
        directory / "config_sentence_transformers.json",
        {
            "__version__": st_versions,
            "prompts": {},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _module(index: int, path: str, kind: str) -> dict[str, Any]:
    return {
        "idx": index,
        "name": str(index),
        "path": path,
        "type": f"sentence_transformers.models.{kind}",
    }
