"""DenseNet (Huang et al., Densely Connected Convolutional Networks, CVPR 2017): DenseNet-121 (DenseNet-BC,
growth rate 32, bottleneck width 4k, compression 0.5), paper Table 1."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import init_weights
from .registry import register

_PAPER = "Huang et al., Densely Connected Convolutional Networks, CVPR 2017"


def _bn_relu_conv(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True),
                         nn.Conv2d(in_ch, out_ch, kernel, 1, kernel // 2, bias=False))


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 (4k) -> BN-ReLU-3x3 (k); the k new maps are concatenated to the input."""

    def __init__(self, in_ch: int, growth: int, bn_size: int):
        super().__init__()
        self.bottleneck = _bn_relu_conv(in_ch, bn_size * growth, 1)
        self.conv = _bn_relu_conv(bn_size * growth, growth, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(self.bottleneck(x))], dim=1)


class DenseNet(nn.Module):
    """7x7/2 conv, 3x3/2 max pool, dense blocks joined by transitions (BN-ReLU-1x1 (x0.5) - 2x2 avg pool),
    final BN-ReLU, pool, FC."""

    def __init__(self, blocks=(6, 12, 24, 16), growth: int = 32, init_ch: int = 64, bn_size: int = 4,
                 num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, init_ch, 7, 2, 3, bias=False), nn.BatchNorm2d(init_ch),
                                   nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        ch = init_ch
        for i, n in enumerate(blocks):
            for _ in range(n):
                layers.append(DenseLayer(ch, growth, bn_size))
                ch += growth
            if i < len(blocks) - 1:
                layers.append(nn.Sequential(*_bn_relu_conv(ch, ch // 2, 1), nn.AvgPool2d(2, 2)))
                ch //= 2
        layers += [nn.BatchNorm2d(ch), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register("densenet121", kind="cnn", paper=_PAPER)
def densenet121(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """DenseNet-121: dense blocks [6, 12, 24, 16], k = 32, 64 stem channels."""
    return DenseNet((6, 12, 24, 16), 32, 64, 4, num_classes)
