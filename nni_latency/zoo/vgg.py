"""VGG (Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015):
configurations A (VGG-11) and D (VGG-16) of the paper's Table 1, without batch norm as in the paper, with the
two 4096-wide fully connected layers.

The 7x7 adaptive average pool before the classifier (as in torchvision) is a no-op at 224 px and keeps the
FC layers the paper's size at other resolutions.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import init_weights
from .registry import register

_PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image Recognition, ICLR 2015"

_CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """3x3 conv (+bias) -> ReLU stacks with 2x2 max pools, then FC 4096 -> ReLU -> dropout, twice, -> FC."""

    def __init__(self, cfg, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Linear(4096, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register("vgg11", kind="cnn", paper=_PAPER)
def vgg11(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """VGG-11 (configuration A): 8 conv + 3 FC layers, no BN."""
    return VGG(_CFGS["A"], num_classes)


@register("vgg16", kind="cnn", paper=_PAPER)
def vgg16(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """VGG-16 (configuration D): 13 conv + 3 FC layers, no BN."""
    return VGG(_CFGS["D"], num_classes)
