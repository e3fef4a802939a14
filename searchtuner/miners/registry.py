"""Build miners by name: four named strategies plus every pytorch-metric-learning miner.

Named strategies (distances ``d``; with a similarity such as cosine, "closer" means "more
similar" and the margin is on the similarity gap):

* ``"all"``: every triplet ``(a, p, n)`` that violates the margin,
  ``d(a, n) - d(a, p) <= margin`` (``TripletMarginMiner(type_of_triplets="all")``).
* ``"hard"``: batch-hard, one triplet per anchor with its farthest positive and closest
  negative (``BatchHardMiner``).
* ``"semihard"``: triplets whose negative is farther than the positive but within the
  margin, ``0 < d(a, n) - d(a, p) <= margin`` (``TripletMarginMiner(type_of_triplets=
  "semihard")``).
* ``"easy-positive"``: one triplet per anchor with its closest positive and the closest
  negative farther than that positive (:class:`EasyPositiveMiner`, Xuan et al. 2020).

The margin of ``"all"`` and ``"semihard"`` defaults to 0.2 (see :data:`DEFAULT_OPTIONS`).
Class names match like loss names: ``"TripletMarginMiner"``, ``"triplet_margin"``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pytorch_metric_learning import miners as pml_miners
from torch import nn

from searchtuner.errors import ConfigError, invalid_choice
from searchtuner.losses.registry import build, name_key
from searchtuner.miners.easy_positive_miner import EasyPositiveMiner

#: The named strategies: class and the arguments the name fixes.
NAMED_MINERS: dict[str, tuple[type, dict[str, Any]]] = {
    "all": (pml_miners.TripletMarginMiner, {"type_of_triplets": "all"}),
    "hard": (pml_miners.BatchHardMiner, {}),
    "semihard": (pml_miners.TripletMarginMiner, {"type_of_triplets": "semihard"}),
    "easy-positive": (EasyPositiveMiner, {}),
}

#: Options used unless the caller sets them. 0.2 suits cosine similarity and the L2 distance
#: of normalised embeddings alike, and equals TripletMarginLoss's default margin here.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "all": {"margin": 0.2},
    "semihard": {"margin": 0.2},
    "TripletMarginMiner": {"margin": 0.2},
}

_EXCLUDED = {"BaseMiner"}


def _pml_miners() -> dict[str, type]:
    return {
        name: obj
        for name, obj in vars(pml_miners).items()
        if inspect.isclass(obj)
        and issubclass(obj, nn.Module)
        and name not in _EXCLUDED
        and not name.startswith("_")
    }


_MINERS: dict[str, type] = {**_pml_miners(), EasyPositiveMiner.__name__: EasyPositiveMiner}


def miner_names() -> list[str]:
    """Every name :func:`make_miner` accepts besides ``None`` / ``"none"``."""
    return [*NAMED_MINERS, *sorted(_MINERS)]


def resolve_miner_name(name: str) -> str:
    """The named strategy or class name a miner name in any accepted spelling stands for.

    Raises:
        ConfigError: if no miner matches; the message lists every miner name.
    """
    if isinstance(name, str):
        keys = {name_key(n, "miner"): n for n in _MINERS}
        keys.update({name_key(n, "miner"): n for n in NAMED_MINERS})
        found = keys.get(name_key(name, "miner"))
        if found is not None:
            return found
    raise invalid_choice("miner", name, ["none", *miner_names()])


def make_miner(
    name: str | None, options: Mapping[str, Any] | None = None, *, distance: str | None = None
) -> nn.Module | None:
    """Build a miner by name.

    Args:
        name: ``None``/``"none"`` for no mining, a named strategy (``"all"``, ``"hard"``,
            ``"semihard"``, ``"easy-positive"``) or a pytorch-metric-learning miner class
            name in any accepted spelling.
        options: constructor keyword arguments on top of :data:`DEFAULT_OPTIONS`.
        distance: a :func:`searchtuner.losses.make_distance` name; the miner's default
            distance (L2 of normalised embeddings) when None.

    Returns:
        The miner (a ``BaseMiner``, called as ``miner(embeddings, labels)``), or None.

    Raises:
        ConfigError: unknown name or option (the message lists the allowed ones), an option
            the name fixes, a distance the miner cannot use, or a value it rejects.
    """
    if name is None or (isinstance(name, str) and name.strip().lower() == "none"):
        if options:
            raise ConfigError(f"miner options {dict(options)!r} given without a miner")
        return None
    canonical = resolve_miner_name(name)
    user = dict(options or {})
    fixed: dict[str, Any] = {}
    if canonical in NAMED_MINERS:
        cls, fixed = NAMED_MINERS[canonical]
        clash = sorted(set(user) & set(fixed))
        if clash:
            raise ConfigError(
                f"miner {canonical!r} fixes {', '.join(clash)}; use {cls.__name__} to choose "
                f"{'it' if len(clash) == 1 else 'them'}"
            )
    else:
        cls = _MINERS[canonical]
    merged = {**DEFAULT_OPTIONS.get(canonical, {}), **user, **fixed}
    miner: nn.Module = build("miner", canonical, cls, merged, distance)
    return miner
