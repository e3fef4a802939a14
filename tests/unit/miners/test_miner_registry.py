"""make_miner: names, options, distances and the miner contract."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import distances, miners

from searchtuner.errors import ConfigError
from searchtuner.miners import EasyPositiveMiner, make_miner, miner_names


@pytest.mark.parametrize("name", miner_names())
def test_every_miner_mines_index_tuples(name: str) -> None:
    embeddings = torch.randn(24, 8)
    labels = torch.arange(4).repeat(6)
    miner = make_miner(name)
    assert miner is not None
    indices = miner(embeddings, labels)
    assert len(indices) in (3, 4)
    for index in indices:
        assert index.dtype == torch.long
        assert index.numel() == 0 or (int(index.min()) >= 0 and int(index.max()) < 24)


@pytest.mark.parametrize("name", [None, "none", "None"])
def test_no_miner(name: str | None) -> None:
    assert make_miner(name) is None


def test_options_without_a_miner_are_an_error() -> None:
    with pytest.raises(ConfigError, match="without a miner"):
        make_miner(None, {"margin": 0.1})


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("all", miners.TripletMarginMiner),
        ("hard", miners.BatchHardMiner),
        ("SemiHard", miners.TripletMarginMiner),
        ("easy_positive", EasyPositiveMiner),
        ("TripletMarginMiner", miners.TripletMarginMiner),
        ("triplet_margin", miners.TripletMarginMiner),
        ("multisimilarityminer", miners.MultiSimilarityMiner),
        ("batch-hard", miners.BatchHardMiner),
    ],
)
def test_name_spellings(name: str, cls: type) -> None:
    assert type(make_miner(name)) is cls


def test_named_strategies_fix_their_type_and_default_margin() -> None:
    all_miner = make_miner("all")
    semihard = make_miner("semihard", {"margin": 0.05})
    assert isinstance(all_miner, miners.TripletMarginMiner)
    assert isinstance(semihard, miners.TripletMarginMiner)
    assert (all_miner.type_of_triplets, all_miner.margin) == ("all", 0.2)
    assert (semihard.type_of_triplets, semihard.margin) == ("semihard", 0.05)


def test_a_named_strategy_rejects_the_option_it_fixes() -> None:
    with pytest.raises(ConfigError, match="TripletMarginMiner"):
        make_miner("all", {"type_of_triplets": "hard"})


def test_unknown_miner_lists_the_allowed_names() -> None:
    with pytest.raises(ConfigError) as info:
        make_miner("semi-hardd")
    message = str(info.value)
    assert "easy-positive" in message and "TripletMarginMiner" in message
    assert "did you mean 'semihard'" in message


def test_unknown_option_lists_the_accepted_ones() -> None:
    with pytest.raises(ConfigError) as info:
        make_miner("semihard", {"margn": 0.1})
    assert "'margn'" in str(info.value) and "margin" in str(info.value)


def test_bad_value_carries_the_library_message() -> None:
    with pytest.raises(ConfigError, match="pos_strategy must be one of"):
        make_miner("BatchEasyHardMiner", {"pos_strategy": "medium"})


def test_distance_is_injected() -> None:
    miner = make_miner("hard", distance="cosine")
    assert isinstance(miner, miners.BatchHardMiner)
    assert isinstance(miner.distance, distances.CosineSimilarity)
    default = make_miner("hard")
    assert isinstance(default, miners.BatchHardMiner)
    assert isinstance(default.distance, distances.LpDistance)


def test_distance_the_miner_cannot_use_lists_those_it_can() -> None:
    with pytest.raises(ConfigError) as info:
        make_miner("DistanceWeightedMiner", distance="cosine")
    assert "cannot use distance 'cosine'; allowed: euclidean" in str(info.value)
