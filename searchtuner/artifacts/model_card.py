"""The model card (README.md) that travels in every bundle.

It states where the model came from (base model), what it was trained on (data statistics),
how (training parameters), what that changed (metrics before and after) and with which
library versions. Nothing time-dependent is written unless given, so that the same
checkpoint always produces the same bundle bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from searchtuner.errors import ConfigError


@dataclass(frozen=True)
class ModelCardInfo:
    """What the publisher knows about a model beyond its weights.

    Attributes:
        base_model: the model fine-tuned from (default: the spec's backbone).
        title: the card's heading (default: derived from the base model).
        description: a paragraph under the heading.
        data_statistics: e.g. ``{"train_items": 1950, "classes": 39}``.
        training_parameters: e.g. ``{"loss": "batch_all_triplet", "epochs": 1, "lr": 2e-5}``.
        metrics_before: evaluation of the base model, ``{metric: value}``.
        metrics_after: evaluation of the fine-tuned model, same metric names.
        run_id: the training run that produced the weights.
        created_at: a timestamp to print; none by default, so bundles are reproducible.
    """

    base_model: str | None = None
    title: str | None = None
    description: str | None = None
    data_statistics: dict[str, Any] = field(default_factory=dict)
    training_parameters: dict[str, Any] = field(default_factory=dict)
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    created_at: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCardInfo:
        """Build from a plain dict; unknown keys are refused with the list of known ones.

        Raises:
            ConfigError: a key that is not a field, or a value that is not JSON-serialisable.
        """
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown model card field(s) {unknown}; allowed: {', '.join(known)}")
        info = cls(**dict(data))
        info.to_dict()  # fail now, not halfway through writing a bundle
        return info

    @classmethod
    def coerce(cls, card: ModelCardInfo | Mapping[str, Any] | None) -> ModelCardInfo:
        """Accept a ModelCardInfo, a dict of its fields, or None (an empty card)."""
        if card is None:
            return cls()
        if isinstance(card, ModelCardInfo):
            card.to_dict()
            return card
        if isinstance(card, Mapping):
            return cls.from_dict(card)
        raise ConfigError(
            f"card must be a ModelCardInfo, a dict of its fields or None, got {type(card).__name__}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (numpy and torch scalars become Python numbers).

        Raises:
            ConfigError: a value that has no JSON form.
        """
        try:
            return json.loads(json.dumps(asdict(self), default=json_plain, sort_keys=True))
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"the model card holds a value that is not JSON-serialisable ({err}); pass "
                "numbers, strings, lists and dicts"
            ) from err


def json_plain(value: Any) -> Any:
    """numpy/torch scalars and small arrays → Python values; anything else is refused."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def render_model_card(
    info: ModelCardInfo,
    *,
    spec: Mapping[str, Any],
    library_versions: Mapping[str, str],
    has_onnx: bool,
) -> str:
    """The README.md of a bundle, as markdown.

    Args:
        info: what the publisher knows (see :class:`ModelCardInfo`).
        spec: the model's ``ModelSpec.to_dict()``.
        library_versions: ``{distribution: version}``.
        has_onnx: whether the bundle holds ``model.onnx``.

    Returns:
        The markdown text, ending with a newline.
    """
    base = info.base_model or str(spec.get("backbone"))
    modality = str(spec.get("modality"))
    text = modality == "text"
    lines = ["---", "library_name: " + ("sentence-transformers" if text else "searchtuner")]
    lines += [f"base_model: {json.dumps(base)}", "tags:", "- searchtuner", "- embeddings"]
    if text:
        lines += ["- sentence-transformers", "- sentence-similarity"]
    lines += [f"pipeline_tag: {'sentence-similarity' if text else 'feature-extraction'}", "---"]
    lines += ["", f"# {info.title or f'{_short(base)} fine-tuned with SearchTuner'}", ""]
    if info.description:
        lines += [info.description.strip(), ""]
    lines += [
        f"A {modality} embedding model with {spec.get('embedding_dim')} dimensions, "
        f"fine-tuned from `{base}` with SearchTuner.",
        "",
    ]
    lines += _section("Model", ("property", "value"), _model_rows(spec, base))
    lines += _section("Training data", ("statistic", "value"), _value_rows(info.data_statistics))
    lines += _section(
        "Training parameters", ("parameter", "value"), _value_rows(info.training_parameters)
    )
    lines += _metrics_section(info.metrics_before, info.metrics_after)
    lines += _usage_section(modality, has_onnx, (spec.get("options") or {}).get("max_length"))
    lines += _section("Library versions", ("library", "version"), _value_rows(library_versions))
    provenance = []
    if info.run_id:
        provenance.append(f"- Training run: `{info.run_id}`")
    if info.created_at:
        provenance.append(f"- Created: {info.created_at}")
    if provenance:
        lines += ["## Provenance", "", *provenance, ""]
    lines += [
        "## Files",
        "",
        "`searchtuner.json` lists every file of this bundle with its SHA-256; SearchTuner "
        "refuses to load a bundle whose files do not match. Weights are stored as safetensors "
        "(no pickles).",
        "",
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _short(name: str) -> str:
    return name.rstrip("/").rsplit("/", 1)[-1] or name


def _section(title: str, header: tuple[str, str], rows: list[tuple[str, str]]) -> list[str]:
    if not rows:
        return []
    table = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    table += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows]
    return [f"## {title}", "", *table, ""]


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _value_rows(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    # Sorted: the manifest stores these dicts with sorted keys, and a card rendered again
    # from it must come out byte-identical.
    return [(str(key), _format(values[key])) for key in sorted(values, key=str)]


def _model_rows(spec: Mapping[str, Any], base: str) -> list[tuple[str, str]]:
    options = spec.get("options") or {}
    rows = [
        ("Base model", f"`{base}`"),
        ("Modality", str(spec.get("modality"))),
        ("Embedding dimension", str(spec.get("embedding_dim"))),
        ("Pooling", str(spec.get("pooling") or "none (the backbone outputs a vector)")),
        ("Projection head", f"linear → {spec['output_dim']}" if spec.get("output_dim") else "none"),
        ("L2-normalised", "yes" if spec.get("normalize") else "no"),
        ("Frozen during training", _describe_freeze(spec.get("freeze"))),
    ]
    rows += [(f"Option `{key}`", _format(options[key])) for key in sorted(options)]
    return rows


def _describe_freeze(freeze: Any) -> str:
    if freeze is True:
        return "the whole backbone"
    if freeze is False or freeze is None or freeze == 0:
        return "nothing"
    if isinstance(freeze, int):
        return f"the first {freeze} backbone blocks"
    return "parameters matching " + ", ".join(f"`{p}`" for p in freeze)


def _metrics_section(before: Mapping[str, float], after: Mapping[str, float]) -> list[str]:
    names = sorted({*before, *after}, key=str)
    if not names:
        return []
    rows = ["| metric | before | after | change |", "| --- | ---: | ---: | ---: |"]
    for name in names:
        old, new = before.get(name), after.get(name)
        change = "–"
        if _finite(old) and _finite(new):
            change = f"{float(new) - float(old):+.4f}"  # type: ignore[arg-type]
        rows.append(f"| {_cell(name)} | {_number(old)} | {_number(new)} | {change} |")
    return ["## Metrics", "", *rows, ""]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))


def _number(value: Any) -> str:
    return f"{float(value):.4f}" if _finite(value) else "–"


def _usage_section(modality: str, has_onnx: bool, max_length: int | None) -> list[str]:
    lines = [
        "## Usage",
        "",
        "With SearchTuner (from this folder, its archive or its model handle):",
        "",
        "```python",
        "import searchtuner",
        "",
        'model = searchtuner.get_model("path/to/this/folder")',
        f"embeddings = searchtuner.encode(model, {_example_items(modality)})",
        "```",
        "",
    ]
    if modality == "text":
        lines += [
            "With sentence-transformers (no SearchTuner needed; same embeddings):",
            "",
            "```python",
            "from sentence_transformers import SentenceTransformer",
            "",
            'model = SentenceTransformer("path/to/this/folder", device="cpu")',
            'embeddings = model.encode(["a query", "a document"])',
            "```",
            "",
        ]
    if has_onnx:
        lines += [
            "With onnxruntime (`model.onnx`; output `sentence_embedding`):",
            "",
            "```python",
            *_onnx_snippet(modality, max_length),
            "```",
            "",
        ]
    return lines


def _example_items(modality: str) -> str:
    return {
        "text": '["a query", "a document"]',
        "image": '["photo.jpg"]',
    }.get(modality, "vectors  # an (N, …) array")


def _onnx_snippet(modality: str, max_length: int | None) -> list[str]:
    head = [
        "import onnxruntime as ort",
        "",
        'session = ort.InferenceSession("path/to/this/folder/model.onnx",',
        '                               providers=["CPUExecutionProvider"])',
    ]
    if modality == "text":
        return [
            "from transformers import AutoTokenizer",
            *head,
            'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
            'batch = tokenizer(["a query", "a document"], padding=True, truncation=True,',
            f'                  max_length={max_length or 512}, return_tensors="np",',
            "                  return_token_type_ids=False)",
            '(embeddings,) = session.run(["sentence_embedding"], dict(batch))',
        ]
    name = "pixel_values" if modality == "image" else "features"
    return [
        *head,
        "# Or preprocess exactly as SearchTuner does:",
        "# from searchtuner.artifacts import OnnxEmbedder",
        '# embeddings = OnnxEmbedder.from_bundle("path/to/this/folder").encode(items)',
        f'(embeddings,) = session.run(["sentence_embedding"], {{"{name}": batch}})',
    ]
