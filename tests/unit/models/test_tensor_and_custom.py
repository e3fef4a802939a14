"""The mlp backbone and user-supplied modules cut at a named layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import searchtuner
from searchtuner import ConfigError, DataError


class TinyClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 12))
        self.act = nn.Tanh()
        self.fc = nn.Linear(12, 5)  # the classification head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.body(x)))


def test_mlp_embeds_vectors() -> None:
    model = searchtuner.build_model("mlp", input_dim=10, hidden_dims=[32, 6])
    data = np.random.default_rng(0).normal(size=(5, 10)).astype(np.float32)
    emb = searchtuner.encode(model, data)
    assert emb.shape == (5, 6)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(emb, searchtuner.encode(model, list(data), batch_size=2), atol=1e-6)


def test_mlp_options() -> None:
    with pytest.raises(ConfigError, match="needs input_dim"):
        searchtuner.build_model("mlp")
    with pytest.raises(ConfigError, match="takes no pooling"):
        searchtuner.build_model("mlp", input_dim=4, pooling="mean")
    model = searchtuner.build_model("mlp", input_dim=4, output_dim=3, freeze=1)
    assert model.embedding_dim == 3
    with pytest.raises(DataError, match=r"shape \(5,\)"):
        searchtuner.encode(model, [np.zeros(5)])


def test_custom_module_is_cut_at_the_layer_and_its_head_removed() -> None:
    net = TinyClassifier()
    x = torch.randn(4, 10)
    with torch.no_grad():
        expected = net.act(net.body(x))
    model = searchtuner.build_model(net, layer="act", input_shape=(10,), normalize=False)
    assert isinstance(net.fc, nn.Identity)
    assert not any(name.startswith("backbone.module.fc") for name, _ in model.named_parameters())
    assert model.embedding_dim == 12
    with torch.no_grad():
        got = model({"features": x})
    torch.testing.assert_close(got, expected)
    assert [name for name, _ in model.backbone.blocks()] == ["module.body", "module.act"]


def test_custom_module_freeze_and_projection() -> None:
    model = searchtuner.build_model(TinyClassifier(), layer="body.2", input_shape=(10,),
                                    freeze=1, output_dim=3)  # fmt: skip
    model.train()
    model({"features": torch.randn(3, 10)}).sum().backward()
    assert all(p.grad is None for p in model.backbone.module.body.parameters())
    assert model.projection.weight.grad is not None


def test_custom_module_errors_list_what_is_allowed() -> None:
    with pytest.raises(ConfigError, match=r"unknown layer of TinyClassifier 'fc2'.*body\.0"):
        searchtuner.build_model(TinyClassifier(), layer="fc2", input_shape=(10,))
    with pytest.raises(ConfigError, match="allowed: tensor, image"):
        searchtuner.build_model(TinyClassifier(), layer="act", input_shape=(10,), modality="text")
    with pytest.raises(ConfigError, match="needs layer="):
        searchtuner.build_model(TinyClassifier())
    with pytest.raises(ConfigError, match="image_size does not apply"):
        searchtuner.build_model(TinyClassifier(), layer="act", input_shape=(10,), image_size=8)


def test_custom_image_module() -> None:
    cnn = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 2)
    )
    model = searchtuner.build_model(cnn, layer="1", input_shape=(3, 16, 16), modality="image",
                                    pooling="max")  # fmt: skip
    images = np.random.default_rng(0).integers(0, 256, (2, 20, 20, 3), dtype=np.uint8)
    assert searchtuner.encode(model, images).shape == (2, 4)
    assert isinstance(cnn[3], nn.Identity)


def test_device_is_never_chosen_behind_the_users_back() -> None:
    model = searchtuner.build_model("mlp", input_dim=3)
    assert model.device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            searchtuner.build_model("mlp", input_dim=3, device="cuda")
