"""SqueezeNet (Iandola et al., SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model
size, arXiv 1602.07360, 2016): version 1.1 of the authors' release (3x3/2 64-channel stem, pooling moved
earlier; 2.4x less computation than 1.0 at the same accuracy)."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import init_weights
from .registry import register

_PAPER = ("Iandola et al., SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size, "
          "2016 (v1.1 of the authors' release)")


class Fire(nn.Module):
    """1x1 squeeze -> ReLU -> [1x1 expand | 3x3 expand] -> ReLU, concatenated."""

    def __init__(self, in_ch: int, squeeze: int, expand1: int, expand3: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(in_ch, squeeze, 1), nn.ReLU(inplace=True))
        self.expand1 = nn.Sequential(nn.Conv2d(squeeze, expand1, 1), nn.ReLU(inplace=True))
        self.expand3 = nn.Sequential(nn.Conv2d(squeeze, expand3, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1(x), self.expand3(x)], dim=1)


class SqueezeNet11(nn.Module):
    """conv 3x3/2 (64), pool, fire2-3, pool, fire4-5, pool, fire6-9, dropout, conv 1x1 (classes), ReLU, pool."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d(1))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


@register("squeezenet1_1", kind="cnn", paper=_PAPER)
def squeezenet1_1(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """SqueezeNet 1.1: 3x3/2 64 stem, 8 fire modules, conv10 classifier."""
    return SqueezeNet11(num_classes)
