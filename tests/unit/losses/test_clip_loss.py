"""CLIPLoss against a hand computation; its temperature is learned and capped."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor

from searchtuner.errors import ConfigError, DataError
from searchtuner.losses import CLIPLoss, has_parameters


def _by_hand(text: Tensor, image: Tensor, scale: float) -> float:
    size = len(text)
    sims = [
        [
            scale * float(text[i] @ image[j] / (text[i].norm() * image[j].norm()))
            for j in range(size)
        ]
        for i in range(size)
    ]
    text_to_image = sum(
        -sims[i][i] + math.log(sum(math.exp(sims[i][j]) for j in range(size))) for i in range(size)
    )
    image_to_text = sum(
        -sims[j][j] + math.log(sum(math.exp(sims[i][j]) for i in range(size))) for j in range(size)
    )
    return (text_to_image + image_to_text) / (2 * size)


def test_matches_the_hand_computation() -> None:
    text, image = torch.randn(5, 4), torch.randn(5, 4)
    loss = CLIPLoss(init_temperature=0.1)(text, image)
    assert float(loss.detach()) == pytest.approx(_by_hand(text, image, 10.0), rel=1e-5)


def test_temperature_is_a_parameter_with_a_gradient() -> None:
    loss_fn = CLIPLoss()
    assert has_parameters(loss_fn)
    assert float(loss_fn.scale.detach()) == pytest.approx(1 / 0.07)
    loss_fn(torch.randn(6, 4), torch.randn(6, 4)).backward()
    grad = loss_fn.log_scale.grad
    assert grad is not None and float(grad) != 0.0


def test_scale_is_capped_at_max_scale() -> None:
    loss_fn = CLIPLoss(init_temperature=0.001, max_scale=50.0)
    assert float(loss_fn.scale.detach()) == pytest.approx(50.0)
    text, image = torch.randn(4, 3), torch.randn(4, 3)
    loss = loss_fn(text, image)
    assert float(loss.detach()) == pytest.approx(_by_hand(text, image, 50.0), rel=1e-5)
    loss.backward()
    grad = loss_fn.log_scale.grad
    assert grad is not None and float(grad) == 0.0


def test_fixed_temperature_is_a_buffer() -> None:
    loss_fn = CLIPLoss(init_temperature=0.05, learnable=False)
    assert not has_parameters(loss_fn)
    assert "log_scale" in loss_fn.state_dict()
    assert float(loss_fn.scale.detach()) == pytest.approx(20.0)


@pytest.mark.parametrize("options", [{"init_temperature": 0.0}, {"max_scale": -1.0}])
def test_bad_values(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        CLIPLoss(**options)


def test_mismatched_batches() -> None:
    with pytest.raises(DataError, match="same shape"):
        CLIPLoss()(torch.randn(4, 3), torch.randn(5, 3))
