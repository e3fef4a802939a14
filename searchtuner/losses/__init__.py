"""Losses: pytorch-metric-learning's by name, plus pair and cross-modal losses of our own."""

from searchtuner.losses.cached_multiple_negatives_ranking import (
    CachedMultipleNegativesRankingLoss,
)
from searchtuner.losses.clip import CLIPLoss
from searchtuner.losses.multiple_negatives_ranking import MultipleNegativesRankingLoss
from searchtuner.losses.registry import (
    DEFAULT_OPTIONS,
    DISTANCE_DEFAULT_OPTIONS,
    EXCLUDED_LOSSES,
    PAIR_LOSSES,
    default_options,
    distance_names,
    has_parameters,
    loss_names,
    make_distance,
    make_loss,
    resolve_loss_name,
    takes_pairs,
)

__all__ = [
    "DEFAULT_OPTIONS",
    "DISTANCE_DEFAULT_OPTIONS",
    "EXCLUDED_LOSSES",
    "PAIR_LOSSES",
    "CLIPLoss",
    "CachedMultipleNegativesRankingLoss",
    "MultipleNegativesRankingLoss",
    "default_options",
    "distance_names",
    "has_parameters",
    "loss_names",
    "make_distance",
    "make_loss",
    "resolve_loss_name",
    "takes_pairs",
]
