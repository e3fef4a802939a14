"""CNN backbones: classifier removed, spatial pooling, freezing, every image input form."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import searchtuner
from searchtuner import ConfigError, DataError

BACKBONES = ["mobilenet_v2", "efficientnet-lite0"]


def _images(n: int = 3, size: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("name", BACKBONES)
def test_classifier_is_gone_and_dimension_is_right(name: str) -> None:
    model = searchtuner.build_model(name, pretrained=False, image_size=32)
    names = [n for n, _ in model.state_dict().items()]
    assert not any("classifier" in n or "_fc" in n for n in names)
    assert model.embedding_dim == 1280
    info = {m["name"]: m for m in searchtuner.list_models()}[name]
    assert info["params"] == sum(p.numel() for p in model.backbone.parameters())
    assert searchtuner.encode(model, _images()).shape == (3, 1280)


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("pooling", ["avg", "max", "gem"])
def test_spatial_pooling_matches_a_hand_computation(name: str, pooling: str) -> None:
    model = searchtuner.build_model(name, pretrained=False, image_size=64, pooling=pooling,
                                    normalize=False)  # fmt: skip
    batch = model.preprocess(_images(2))
    with torch.no_grad():
        fmap = model.backbone(batch).numpy().astype(np.float64)
        got = model(batch).numpy()
    if pooling == "avg":
        expected = fmap.mean(axis=(2, 3))
    elif pooling == "max":
        expected = fmap.max(axis=(2, 3))
    else:
        expected = (np.clip(fmap, 1e-6, None) ** 3).mean(axis=(2, 3)) ** (1 / 3)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BACKBONES)
def test_frozen_blocks_get_no_gradient_and_keep_batchnorm_statistics(name: str) -> None:
    model = searchtuner.build_model(name, pretrained=False, image_size=32, freeze=3, output_dim=8)
    frozen_block = model.backbone.blocks()[0][1]
    stats_before = {k: v.clone() for k, v in frozen_block.state_dict().items()}
    model.train()
    model(model.preprocess(_images(4))).sum().backward()
    frozen = {id(p) for _, block in model.backbone.blocks()[:3] for p in block.parameters()}
    for p in model.parameters():
        if id(p) in frozen:
            assert p.grad is None and not p.requires_grad
    assert model.projection.weight.grad is not None
    last = model.backbone.blocks()[-1][1]
    assert any(p.grad is not None for p in last.parameters())
    for key, value in frozen_block.state_dict().items():
        torch.testing.assert_close(value, stats_before[key], msg=f"frozen {key} drifted")


def test_every_image_form_gives_the_same_embedding(tmp_path: Path) -> None:
    model = searchtuner.build_model("mobilenet_v2", pretrained=False, image_size=32)
    array = _images(1)[0]
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    path = tmp_path / "x.png"
    path.write_bytes(buffer.getvalue())
    forms = [array, buffer.getvalue(), str(path), path, Image.fromarray(array),
             array.transpose(2, 0, 1), array.astype(np.float32) / 255.0]  # fmt: skip
    embeddings = searchtuner.encode(model, forms)
    for row in embeddings[1:]:
        np.testing.assert_allclose(row, embeddings[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_grayscale_images_are_accepted() -> None:
    model = searchtuner.build_model("mobilenet_v2", pretrained=False, image_size=32)
    gray = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    assert searchtuner.encode(model, [gray, gray[:, :, None]]).shape == (2, 1280)


def test_a_broken_image_is_named(tmp_path: Path) -> None:
    model = searchtuner.build_model("mobilenet_v2", pretrained=False, image_size=32)
    with pytest.raises(DataError, match="item 1: the image does not decode"):
        searchtuner.encode(model, [_images(1)[0], b"not an image"])
    with pytest.raises(DataError, match="item 0"):
        searchtuner.encode(model, [np.zeros((5, 5, 7))])


def test_cnn_options_that_do_not_fit() -> None:
    with pytest.raises(ConfigError, match="allowed: avg, max, gem"):
        searchtuner.build_model("mobilenet_v2", pretrained=False, pooling="cls")
    with pytest.raises(ConfigError, match="max_length does not apply"):
        searchtuner.build_model("efficientnet-lite0", pretrained=False, max_length=32)
    with pytest.raises(ConfigError, match="has 19 blocks"):
        searchtuner.build_model("mobilenet_v2", pretrained=False, freeze=20)


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKBONES)
def test_pretrained_weights_load_and_separate_images(name: str) -> None:
    model = searchtuner.build_model(name)
    # A checkerboard and its inverse look alike to ImageNet features; noise does not.
    board = (np.indices((224, 224)).sum(0) // 16 % 2 * 255).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    emb = searchtuner.encode(model, [board, 255 - board, noise])
    assert emb[0] @ emb[1] > emb[0] @ emb[2]
