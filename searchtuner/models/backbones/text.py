"""Hugging Face transformer encoders (BERT, MiniLM, RoBERTa, …) loaded from local folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from searchtuner.errors import ConfigError
from searchtuner.models.backbones.base import Backbone, FeatureKind
from searchtuner.models.preprocessing import Batch, TextPreprocessor

# Keys a tokenizer may produce that encoders accept.
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TransformerBackbone(Backbone):
    """A transformer encoder without its task heads (LM head, classifier, pooler).

    Args:
        path: a local folder with ``config.json``, weights and tokenizer files.
        pretrained: load the folder's weights; ``False`` initialises randomly from its config.
        max_length: truncate texts to this many tokens (default: the folder's
            sentence-transformers setting, else the model's maximum, capped at 512).
    """

    feature_kind = FeatureKind.TOKENS

    def __init__(self, path: str | Path, *, pretrained: bool = True, max_length: int | None = None):
        super().__init__()
        from transformers import AutoConfig, AutoTokenizer

        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"{folder} is not a Hugging Face model folder (no config.json); give a registered "
                "backbone name (see searchtuner.list_models()) or a folder saved with "
                "save_pretrained()"
            )
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"cannot read the model folder {folder}: {err}") from err
        # Task heads are not loaded: AutoModel builds the bare encoder, and BERT-style
        # poolers (a dense layer over [CLS] trained for next-sentence prediction) are dropped.
        self.model = _load_encoder(folder, config, pretrained)
        self.source = str(folder)
        self.feature_dim = int(config.hidden_size)
        limit = min(int(getattr(config, "max_position_embeddings", 512) or 512), 512)
        if max_length is None:
            max_length = _sentence_transformers_max_length(folder) or limit
        if max_length > limit:
            raise ConfigError(f"max_length {max_length} exceeds this model's limit of {limit}")
        self.max_length = max_length
        self.preprocessor = TextPreprocessor(tokenizer, max_length)

    def forward(self, batch: Batch) -> Tensor:
        inputs = {key: batch[key] for key in _MODEL_INPUTS if key in batch}
        hidden: Tensor = self.model(**inputs).last_hidden_state
        return hidden

    def blocks(self) -> list[tuple[str, nn.Module]]:
        found: list[tuple[str, nn.Module]] = []
        embeddings = getattr(self.model, "embeddings", None)
        if isinstance(embeddings, nn.Module):
            found.append(("model.embeddings", embeddings))
        name, layers = _layer_stack(self.model)
        found.extend((f"model.{name}.{i}", layer) for i, layer in enumerate(layers))
        return found

    def config(self) -> dict[str, Any]:
        return {"max_length": self.max_length}


def _load_encoder(folder: Path, config: Any, pretrained: bool) -> nn.Module:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    def load(**options: Any) -> nn.Module:
        if pretrained:
            return AutoModel.from_pretrained(folder, local_files_only=True, **options)
        return AutoModel.from_config(config, **options)

    # The pooler's weights are "unexpected" once it is left out: keep that report quiet.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        try:
            return load(add_pooling_layer=False)
        except TypeError:  # this architecture has no pooler to leave out
            return load()
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def _layer_stack(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The longest ModuleList in the model: the stack of transformer layers."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and (best is None or len(module) > len(best[1])):
            best = (name, module)
    if best is None:
        raise ConfigError(
            f"cannot find the layer stack of {type(model).__name__}; freeze by layer-name "
            "patterns instead of a block count"
        )
    return best


def _sentence_transformers_max_length(folder: Path) -> int | None:
    import json

    settings = folder / "sentence_bert_config.json"
    if settings.is_file():
        value = json.loads(settings.read_text()).get("max_seq_length")
        return int(value) if value else None
    return None
