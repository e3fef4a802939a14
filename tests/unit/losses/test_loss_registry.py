"""make_loss, make_distance and friends: names, options, injection, every loss working."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pytorch_metric_learning import distances, losses

from searchtuner.errors import ConfigError
from searchtuner.losses import (
    DEFAULT_OPTIONS,
    EXCLUDED_LOSSES,
    CachedMultipleNegativesRankingLoss,
    CLIPLoss,
    MultipleNegativesRankingLoss,
    has_parameters,
    loss_names,
    make_distance,
    make_loss,
    takes_pairs,
)

NUM_CLASSES = 4
DIM = 8
# Classes of equal size in contiguous groups: the layout SmoothAPLoss needs (an
# MPerClassSampler batch), and a valid batch for every other loss.
LABELS = torch.arange(NUM_CLASSES).repeat_interleave(4)
# Losses whose classes or proxies are trainable parameters.
PARAMETERISED = [
    "ArcFaceLoss",
    "CosFaceLoss",
    "SubCenterArcFaceLoss",
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "NormalizedSoftmaxLoss",
    "SoftTripleLoss",
    "LargeMarginSoftmaxLoss",
    "SphereFaceLoss",
    "P2SGradLoss",
    "CLIPLoss",
]


# HistogramLoss indexes with a list, which torch deprecates but still supports.
@pytest.mark.filterwarnings("ignore:Using a non-tuple sequence:UserWarning")
@pytest.mark.parametrize("name", loss_names())
def test_every_loss_gives_a_finite_scalar_with_a_gradient(name: str) -> None:
    loss = make_loss(name, num_classes=NUM_CLASSES, embedding_dim=DIM)
    embeddings = torch.randn(len(LABELS), DIM, requires_grad=True)
    if takes_pairs(loss):
        value = loss(embeddings, torch.randn(len(LABELS), DIM))
    else:
        value = loss(embeddings, LABELS)
    assert value.ndim == 0
    assert torch.isfinite(value)
    value.backward()
    assert embeddings.grad is not None
    assert torch.isfinite(embeddings.grad).all()
    assert embeddings.grad.abs().sum() > 0


def test_loss_names_cover_the_library_and_ours() -> None:
    names = set(loss_names())
    library = {
        n
        for n, obj in vars(losses).items()
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module)
    }
    assert library - names == set(EXCLUDED_LOSSES)
    assert {"MultipleNegativesRankingLoss", "InfoNCE", "CLIPLoss"} <= names
    assert "CachedMultipleNegativesRankingLoss" in names


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("TripletMarginLoss", losses.TripletMarginLoss),
        ("tripletmarginloss", losses.TripletMarginLoss),
        ("triplet_margin", losses.TripletMarginLoss),
        ("triplet_margin_loss", losses.TripletMarginLoss),
        ("Triplet-Margin", losses.TripletMarginLoss),
        ("arcface", losses.ArcFaceLoss),
        ("arc_face", losses.ArcFaceLoss),
        ("sub_center_arc_face", losses.SubCenterArcFaceLoss),
        ("ntxent", losses.NTXentLoss),
        ("InfoNCE", MultipleNegativesRankingLoss),
        ("info_nce", MultipleNegativesRankingLoss),
        ("multiple_negatives_ranking", MultipleNegativesRankingLoss),
        ("cached_multiple_negatives_ranking", CachedMultipleNegativesRankingLoss),
        ("clip", CLIPLoss),
    ],
)
def test_name_spellings(name: str, cls: type) -> None:
    assert type(make_loss(name, num_classes=NUM_CLASSES, embedding_dim=DIM)) is cls


def test_unknown_loss_lists_the_allowed_names() -> None:
    with pytest.raises(ConfigError) as info:
        make_loss("TripletMarginLos")
    message = str(info.value)
    assert "ArcFaceLoss" in message and "InfoNCE" in message
    assert "did you mean 'TripletMarginLoss'" in message


def test_unknown_option_lists_the_accepted_parameters() -> None:
    with pytest.raises(ConfigError) as info:
        make_loss("triplet_margin", {"margn": 0.1})
    message = str(info.value)
    assert "'margn'" in message
    for accepted in ("margin", "swap", "smooth_loss", "triplets_per_anchor", "distance"):
        assert accepted in message


def test_unknown_option_of_our_loss_lists_its_parameters() -> None:
    with pytest.raises(ConfigError, match="accepted: scale, symmetric"):
        make_loss("InfoNCE", {"temperature": 0.05})


@pytest.mark.parametrize(
    ("name", "options", "library_message"),
    [
        ("RankedListLoss", {"imbalance": 2.0}, "Imbalance must be between 0 and 1"),
        ("HistogramLoss", {"n_bins": 10, "delta": 0.5}, "delta and n_bins must satisfy"),
        ("PNPLoss", {"variant": "Z"}, "variant"),
    ],
)
def test_bad_value_carries_the_library_message(
    name: str, options: dict[str, object], library_message: str
) -> None:
    with pytest.raises(ConfigError, match=library_message):
        make_loss(name, options)


def test_our_losses_reject_bad_values() -> None:
    with pytest.raises(ConfigError, match="scale must be a positive"):
        make_loss("InfoNCE", {"scale": 0})


@pytest.mark.parametrize("missing", ["num_classes", "embedding_dim"])
def test_parameterised_loss_needs_num_classes_and_embedding_dim(missing: str) -> None:
    given = {"num_classes": NUM_CLASSES, "embedding_dim": DIM}
    del given[missing]
    with pytest.raises(ConfigError, match=missing):
        make_loss("ArcFaceLoss", **given)  # type: ignore[arg-type]


def test_injected_sizes_reach_the_loss() -> None:
    arcface = make_loss("arcface", num_classes=7, embedding_dim=5)
    assert isinstance(arcface.W, torch.Tensor)
    assert tuple(arcface.W.shape) == (5, 7)
    p2s = make_loss("P2SGradLoss", num_classes=7, embedding_dim=5)
    assert isinstance(p2s, losses.P2SGradLoss)
    overridden = make_loss("arcface", {"num_classes": 3}, num_classes=7, embedding_dim=5)
    assert isinstance(overridden.W, torch.Tensor)
    assert tuple(overridden.W.shape) == (5, 3)


@pytest.mark.parametrize("name", loss_names())
def test_has_parameters(name: str) -> None:
    loss = make_loss(name, num_classes=NUM_CLASSES, embedding_dim=DIM)
    assert has_parameters(loss) == (name in PARAMETERISED)


def test_clip_loss_with_a_fixed_temperature_has_no_parameters() -> None:
    assert not has_parameters(make_loss("CLIPLoss", {"learnable": False}))


def test_default_triplet_margin_suits_cosine() -> None:
    loss = make_loss("TripletMarginLoss", distance="cosine")
    assert loss.margin == DEFAULT_OPTIONS["TripletMarginLoss"]["margin"] == 0.2
    assert make_loss("TripletMarginLoss", {"margin": 0.1}).margin == 0.1


def test_contrastive_margins_follow_the_distance() -> None:
    cosine = make_loss("ContrastiveLoss", distance="cosine")
    euclidean = make_loss("ContrastiveLoss", distance="euclidean")
    assert (cosine.pos_margin, cosine.neg_margin) == (1.0, 0.0)
    assert (euclidean.pos_margin, euclidean.neg_margin) == (0, 1)


@pytest.mark.parametrize(
    ("distance", "cls", "normalized"),
    [
        ("cosine", distances.CosineSimilarity, True),
        ("euclidean", distances.LpDistance, True),
        ("dot", distances.DotProductSimilarity, False),
        ("lp", distances.LpDistance, False),
    ],
)
def test_distance_is_injected(distance: str, cls: type, normalized: bool) -> None:
    injected: Any = make_loss("triplet_margin", distance=distance).distance
    assert injected.normalize_embeddings is normalized
    assert type(injected) is cls
    assert type(make_loss("triplet_margin", {"distance": distance}).distance) is cls


def test_no_distance_keeps_the_loss_default() -> None:
    assert isinstance(make_loss("triplet_margin").distance, distances.LpDistance)
    assert isinstance(make_loss("SupConLoss").distance, distances.CosineSimilarity)


def test_distance_the_loss_cannot_use_lists_those_it_can() -> None:
    with pytest.raises(ConfigError) as info:
        make_loss("ArcFaceLoss", num_classes=3, embedding_dim=4, distance="euclidean")
    assert "cannot use distance 'euclidean'; allowed: cosine" in str(info.value)


def test_our_losses_take_no_distance() -> None:
    with pytest.raises(ConfigError, match="does not take a distance"):
        make_loss("MultipleNegativesRankingLoss", distance="euclidean")


def test_distances_compute_what_their_names_say() -> None:
    x = torch.randn(5, 3) * 3
    unit = torch.nn.functional.normalize(x, dim=1)
    torch.testing.assert_close(make_distance("cosine")(x), unit @ unit.T)
    torch.testing.assert_close(make_distance("euclidean")(x), torch.cdist(unit, unit))
    torch.testing.assert_close(make_distance("dot")(x), x @ x.T)
    torch.testing.assert_close(make_distance("lp")(x), torch.cdist(x, x))


def test_unknown_distance_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="allowed: cosine, euclidean, dot, lp"):
        make_distance("manhattan")


def test_cross_batch_memory_wraps_a_supported_loss_and_remembers() -> None:
    loss = make_loss(
        "CrossBatchMemory",
        {"loss": "triplet_margin", "miner": "hard", "memory_size": 64},
        embedding_dim=DIM,
        distance="cosine",
    )
    assert isinstance(loss, losses.CrossBatchMemory)
    assert isinstance(loss.loss, losses.TripletMarginLoss)
    assert isinstance(loss.loss.distance, distances.CosineSimilarity)
    for _ in range(2):
        loss(torch.randn(len(LABELS), DIM, requires_grad=True), LABELS)
    assert loss.queue_idx == 2 * len(LABELS)


def test_cross_batch_memory_rejects_an_unsupported_loss() -> None:
    with pytest.raises(ConfigError) as info:
        make_loss("CrossBatchMemory", {"loss": "arcface"}, embedding_dim=DIM)
    assert "ContrastiveLoss" in str(info.value) and "TripletMarginLoss" in str(info.value)


def test_cross_batch_memory_needs_embedding_dim() -> None:
    with pytest.raises(ConfigError, match="embedding_dim"):
        make_loss("CrossBatchMemory")


def test_takes_pairs() -> None:
    assert takes_pairs(make_loss("InfoNCE"))
    assert takes_pairs(make_loss("clip"))
    assert not takes_pairs(make_loss("triplet_margin"))
