"""Miners: pick informative pairs or triplets from a batch (pytorch-metric-learning contract)."""

from searchtuner.miners.easy_positive_miner import EasyPositiveMiner
from searchtuner.miners.registry import (
    DEFAULT_OPTIONS,
    NAMED_MINERS,
    make_miner,
    miner_names,
    resolve_miner_name,
)

__all__ = [
    "DEFAULT_OPTIONS",
    "NAMED_MINERS",
    "EasyPositiveMiner",
    "make_miner",
    "miner_names",
    "resolve_miner_name",
]
