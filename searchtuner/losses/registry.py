"""Build losses and distances by name: every pytorch-metric-learning loss plus our own.

Names match exactly, case-insensitively, or in snake_case with or without the ``Loss``
suffix: ``"TripletMarginLoss"``, ``"tripletmarginloss"``, ``"triplet_margin"`` and
``"triplet-margin"`` are one loss, as are ``"ArcFaceLoss"`` and ``"arcface"``.

Two kinds of loss come out of :func:`make_loss`:

* metric losses (pytorch-metric-learning's): ``loss(embeddings (B, D), labels (B,),
  indices_tuple=None)``;
* pair losses (:data:`PAIR_LOSSES`, see :func:`takes_pairs`): ``loss(queries, documents)`` for
  query/document pairs, two views of one item (SimCSE) or text/image pairs (CLIP).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning import losses as pml_losses
from torch import nn

from searchtuner.errors import ConfigError, invalid_choice
from searchtuner.losses.cached_multiple_negatives_ranking import (
    CachedMultipleNegativesRankingLoss,
)
from searchtuner.losses.clip import CLIPLoss
from searchtuner.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss

# --------------------------------------------------------------------------- distances

_DISTANCES: dict[str, Callable[[], Any]] = {
    "cosine": pml_distances.CosineSimilarity,
    "euclidean": lambda: pml_distances.LpDistance(normalize_embeddings=True, p=2),
    # pytorch-metric-learning normalises by default, which would make "dot" equal "cosine".
    "dot": lambda: pml_distances.DotProductSimilarity(normalize_embeddings=False),
    "lp": lambda: pml_distances.LpDistance(normalize_embeddings=False, p=2),
}


def distance_names() -> list[str]:
    """Every name :func:`make_distance` accepts."""
    return list(_DISTANCES)


def make_distance(name: str) -> pml_distances.BaseDistance:
    """A pytorch-metric-learning distance by name.

    Args:
        name: ``"cosine"`` (cosine similarity), ``"euclidean"`` (L2 distance of
            L2-normalised embeddings), ``"dot"`` (dot product of raw embeddings) or ``"lp"``
            (L2 distance of raw embeddings).

    Returns:
        A new distance object.

    Raises:
        ConfigError: if the name is unknown; the message lists the allowed names.
    """
    factory = _DISTANCES.get(name.lower()) if isinstance(name, str) else None
    if factory is None:
        raise invalid_choice("distance", name, _DISTANCES)
    return factory()


# --------------------------------------------------------------------------- name matching


def name_key(name: str, suffix: str) -> str:
    """The key names are matched by: lower case, letters and digits only, no ``suffix``."""
    key = re.sub(r"[^0-9a-z]", "", name.lower())
    if key.endswith(suffix) and key != suffix:
        key = key[: -len(suffix)]
    return key


# --------------------------------------------------------------------------- constructing


def accepted_options(cls: type) -> list[str]:
    """Keyword arguments ``cls`` accepts, following ``**kwargs`` up its base classes."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass in (nn.Module, object):
            break
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        for param in params:
            named = param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
            if named and param.name != "self" and param.name not in names:
                names.append(param.name)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def required_options(cls: type) -> list[str]:
    """Arguments without a default; a ``*args`` constructor passes on its base's ones."""
    required: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        required += [
            p.name
            for p in params
            if p.name != "self"
            and p.default is p.empty
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if not any(p.kind is p.VAR_POSITIONAL for p in params):
            break
    return required


def build(kind: str, name: str, cls: type, options: Mapping[str, Any], distance: str | None) -> Any:
    """Construct ``cls(**options)`` (plus a distance), turning every failure into a ConfigError.

    Args:
        kind: ``"loss"`` or ``"miner"``, for messages.
        name: the canonical name, for messages.
        cls: the class to construct.
        options: keyword arguments, already merged with defaults and injected values.
        distance: a :func:`make_distance` name to pass as ``distance=``, or None.

    Returns:
        The constructed object.

    Raises:
        ConfigError: on an unknown option (the message lists the accepted ones), a missing
            required option, a distance the class cannot use (the message lists those it
            can), or a value the library rejects (the message carries the library's).
    """
    accepted = accepted_options(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for {kind} {name}; "
            f"accepted: {', '.join(accepted) if accepted else '(none)'}"
        )
    missing = [o for o in required_options(cls) if o not in options]
    if missing:
        raise ConfigError(f"{kind} {name} needs the option(s) {', '.join(missing)}")
    kwargs = dict(options)
    if distance is not None:
        if "distance" not in accepted:
            raise ConfigError(
                f"{kind} {name} does not take a distance (it fixes its own similarity); "
                "leave distance unset"
            )
        kwargs["distance"] = make_distance(distance)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError, AssertionError, NotImplementedError) as err:
        reason = str(err).strip() or type(err).__name__
        if distance is not None:
            compatible = [d for d in _DISTANCES if _constructs(cls, {**options, "distance": d})]
            if distance.lower() not in compatible and _constructs(cls, options):
                raise ConfigError(
                    f"{kind} {name} cannot use distance {distance!r}; allowed: "
                    f"{', '.join(compatible) if compatible else '(none)'} (or leave distance "
                    "unset for its default)"
                ) from err
        raise ConfigError(
            f"cannot build {kind} {name} with options {dict(options)!r}: {reason}"
        ) from err


def _constructs(cls: type, options: Mapping[str, Any]) -> bool:
    """Whether ``cls`` accepts these options; a ``distance`` given by name is made first."""
    kwargs = dict(options)
    if isinstance(kwargs.get("distance"), str):
        kwargs["distance"] = make_distance(kwargs["distance"])
    try:
        cls(**kwargs)
    except (TypeError, ValueError, AssertionError, NotImplementedError):
        return False
    return True


# --------------------------------------------------------------------------- losses

#: pytorch-metric-learning classes left out of :func:`loss_names`, with the reason.
EXCLUDED_LOSSES: dict[str, str] = {
    "BaseMetricLossFunction": "abstract base class",
    "BaseLossWrapper": "abstract base class",
    "GenericPairLoss": "abstract base class of the pair losses",
    "MultipleLosses": "combines loss objects built elsewhere; it has no defaults to build",
    "SelfSupervisedLoss": (
        "takes two views (embeddings, ref_emb) instead of labels; use "
        "MultipleNegativesRankingLoss, which does the same for two views"
    ),
    "VICRegLoss": "takes two views (embeddings, ref_emb) and rejects labels",
    "ManifoldLoss": "unsupervised: raises ValueError when given labels",
}

#: Our losses, which take two aligned batches of embeddings rather than labels.
PAIR_LOSSES: dict[str, type[nn.Module]] = {
    "MultipleNegativesRankingLoss": MultipleNegativesRankingLoss,
    "CachedMultipleNegativesRankingLoss": CachedMultipleNegativesRankingLoss,
    "CLIPLoss": CLIPLoss,
}

_ALIASES = {"InfoNCE": "MultipleNegativesRankingLoss"}

#: Options used unless the caller sets them, per loss.
#:
#: * TripletMarginLoss: margin 0.2 instead of the library's 0.05. 0.2 suits both cosine
#:   similarity (range [-1, 1]) and the L2 distance of normalised embeddings (range [0, 2]),
#:   and equals the default margin of the "all" and "semihard" miners, so a mined triplet is
#:   exactly one with a non-zero loss.
#: * RankedListLoss: the library has no defaults; margin 0.4 is the paper's (with the
#:   library's alpha = 1 + margin / 2 = 1.2), Tn 5.0 is the largest negative temperature the
#:   library takes without warning of overflow.
#: * CrossBatchMemory: wraps ContrastiveLoss (see :func:`make_loss`).
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "TripletMarginLoss": {"margin": 0.2},
    "RankedListLoss": {"margin": 0.4, "Tn": 5.0},
    "CrossBatchMemory": {"loss": "ContrastiveLoss", "memory_size": 1024},
}

#: Options used with one distance, on top of :data:`DEFAULT_OPTIONS`. ContrastiveLoss's
#: margins (pos 0, neg 1) are for distances; with cosine similarity they would make the
#: negative term always zero, so they become pos 1 / neg 0 as the library recommends.
DISTANCE_DEFAULT_OPTIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("ContrastiveLoss", "cosine"): {"pos_margin": 1.0, "neg_margin": 0.0},
}

# Constructor arguments that make_loss fills from its keyword arguments.
_INJECTED = {"num_classes": "num_classes", "embedding_size": "embedding_dim"}
_INJECTED_ALIASES = {"descriptors_dim": "embedding_dim"}
_MEANING = {
    "num_classes": "the number of distinct labels",
    "embedding_dim": "the size of the embeddings",
}


def _pml_losses() -> dict[str, type]:
    found = {}
    for name, obj in vars(pml_losses).items():
        if (
            inspect.isclass(obj)
            and issubclass(obj, nn.Module)
            and name not in EXCLUDED_LOSSES
            and not name.startswith("_")
        ):
            found[name] = obj
    return found


_LOSSES: dict[str, type] = {**_pml_losses(), **PAIR_LOSSES}


def loss_names() -> list[str]:
    """Every loss :func:`make_loss` builds: pytorch-metric-learning's, ours, and aliases."""
    return sorted(_LOSSES) + list(_ALIASES)


def resolve_loss_name(name: str) -> str:
    """The canonical class name of a loss name in any accepted spelling.

    Raises:
        ConfigError: if no loss matches; the message lists every loss name.
    """
    if isinstance(name, str):
        keys = {name_key(n, "loss"): n for n in _LOSSES}
        keys.update({name_key(a, "loss"): target for a, target in _ALIASES.items()})
        found = keys.get(name_key(name, "loss"))
        if found is not None:
            return found
    raise invalid_choice("loss", name, loss_names())


def default_options(name: str, distance: str | None = None) -> dict[str, Any]:
    """The options :func:`make_loss` uses for a loss unless the caller overrides them."""
    canonical = resolve_loss_name(name)
    options = dict(DEFAULT_OPTIONS.get(canonical, {}))
    if distance is not None:
        options.update(DISTANCE_DEFAULT_OPTIONS.get((canonical, distance.lower()), {}))
    return options


def make_loss(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    num_classes: int | None = None,
    embedding_dim: int | None = None,
    distance: str | None = None,
) -> nn.Module:
    """Build a loss by name.

    ``options`` go to the loss's constructor on top of :func:`default_options`. Losses
    whose constructor requires ``num_classes`` or ``embedding_size`` (ArcFace, CosFace,
    SubCenterArcFace, ProxyAnchor, ProxyNCA, NormalizedSoftmax, SoftTriple, LargeMargin,
    SphereFace, P2SGrad's ``descriptors_dim``, CrossBatchMemory) get them from the keyword
    arguments unless set in ``options``.

    ``CrossBatchMemory`` (a memory bank of past embeddings as extra references) wraps
    another loss: its options are ``loss`` (a name among
    ``CrossBatchMemory.supported_losses()``, default ``ContrastiveLoss``), ``loss_options``,
    ``miner`` (a :func:`searchtuner.miners.make_miner` name), ``miner_options`` and
    ``memory_size`` (default 1024); the distance goes to the inner loss and miner.

    Args:
        name: a name from :func:`loss_names`, in any accepted spelling.
        options: constructor keyword arguments; ``distance`` may be given here by name.
        num_classes: number of classes, for losses with class proxies or weights.
        embedding_dim: size of the embeddings, for the same losses.
        distance: a :func:`make_distance` name, for losses that take a distance.

    Returns:
        The loss module; see :func:`has_parameters` and :func:`takes_pairs`.

    Raises:
        ConfigError: unknown name or option (the message lists the allowed ones), a needed
            ``num_classes``/``embedding_dim`` missing, a distance the loss cannot use, or an
            option value the loss rejects.
    """
    canonical = resolve_loss_name(name)
    user = dict(options or {})
    if "distance" in user:
        given = user.pop("distance")
        if distance is not None and given != distance:
            raise ConfigError(
                f"distance given twice ({distance!r} and options['distance']={given!r}); "
                "give it once"
            )
        if not isinstance(given, str):
            raise ConfigError(
                f"options['distance'] must be a distance name, one of "
                f"{', '.join(_DISTANCES)}; got {given!r}"
            )
        distance = given
    merged = {**default_options(canonical, distance), **user}
    if canonical == "CrossBatchMemory":
        return _make_cross_batch_memory(merged, embedding_dim, distance)
    cls = _LOSSES[canonical]
    _inject(canonical, cls, merged, num_classes=num_classes, embedding_dim=embedding_dim)
    loss: nn.Module = build("loss", canonical, cls, merged, distance)
    return loss


def _inject(
    name: str,
    cls: type,
    options: dict[str, Any],
    *,
    num_classes: int | None,
    embedding_dim: int | None,
) -> None:
    given = {"num_classes": num_classes, "embedding_dim": embedding_dim}
    targets = {**_INJECTED, **_INJECTED_ALIASES}
    for option in required_options(cls):
        source = targets.get(option)
        if source is None or option in options:
            continue
        if given[source] is None:
            meaning = _MEANING[source]
            raise ConfigError(
                f"loss {name} learns per-class weights and needs {source} ({meaning}); "
                f"pass {source}= to make_loss"
            )
        options[option] = given[source]


def _make_cross_batch_memory(
    options: dict[str, Any], embedding_dim: int | None, distance: str | None
) -> nn.Module:
    # Imported here: the miner registry imports this module for make_distance.
    from searchtuner.miners.registry import make_miner

    accepted = ["loss", "loss_options", "miner", "miner_options", "memory_size", "embedding_size"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for loss CrossBatchMemory; "
            f"accepted: {', '.join(accepted)}"
        )
    supported = pml_losses.CrossBatchMemory.supported_losses()
    inner_name = options["loss"]
    try:
        inner_canonical = resolve_loss_name(inner_name)
    except ConfigError as err:
        raise invalid_choice("loss wrapped by CrossBatchMemory", inner_name, supported) from err
    if inner_canonical not in supported:
        raise invalid_choice("loss wrapped by CrossBatchMemory", inner_name, supported)
    inner = make_loss(inner_name, options.get("loss_options"), distance=distance)
    miner = make_miner(options.get("miner"), options.get("miner_options"), distance=distance)
    embedding_size = options.get("embedding_size", embedding_dim)
    if embedding_size is None:
        raise ConfigError(
            "loss CrossBatchMemory stores past embeddings and needs embedding_dim; pass "
            "embedding_dim= (the embedding size)"
        )
    cbm_options = {
        "loss": inner,
        "embedding_size": embedding_size,
        "memory_size": options["memory_size"],
        "miner": miner,
    }
    memory: nn.Module = build(
        "loss", "CrossBatchMemory", pml_losses.CrossBatchMemory, cbm_options, None
    )
    return memory


def has_parameters(loss: nn.Module) -> bool:
    """Whether the loss owns trainable parameters (class proxies, a learnable temperature).

    The trainer gives such parameters their own optimizer or learning rate.
    """
    return any(p.requires_grad for p in loss.parameters())


def takes_pairs(loss: nn.Module) -> bool:
    """Whether the loss is called as ``loss(queries, documents)`` instead of with labels."""
    return isinstance(loss, tuple(PAIR_LOSSES.values()))
