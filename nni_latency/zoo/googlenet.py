"""GoogLeNet / Inception v1 (Szegedy et al., Going Deeper with Convolutions, CVPR 2015), paper Table 1, without
the auxiliary classifiers (they are dropped at inference).

Deviations: every conv is followed by BatchNorm (as in torchvision's GoogLeNet) instead of the paper's two local
response normalisations; the "5x5" branch keeps the paper's 5x5 kernels (torchvision uses 3x3 there, which is
where its 6.6 M parameter figure comes from; with 5x5 the network has 7.0 M, the paper's Table 1 totals 6.8 M
counted in units of 1024).
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ConvBNAct, init_weights
from .registry import register

_PAPER = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"


class Inception(nn.Module):
    """1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max pool -> 1x1, concatenated."""

    def __init__(self, in_ch: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int):
        super().__init__()
        self.b1 = ConvBNAct(in_ch, c1, 1)
        self.b2 = nn.Sequential(ConvBNAct(in_ch, c3r, 1), ConvBNAct(c3r, c3, 3))
        self.b3 = nn.Sequential(ConvBNAct(in_ch, c5r, 1), ConvBNAct(c5r, c5, 5))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), ConvBNAct(in_ch, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            ConvBNAct(3, 64, 7, 2), pool(),
            ConvBNAct(64, 64, 1), ConvBNAct(64, 192, 3), pool(),
            Inception(192, 64, 96, 128, 16, 32, 32),       # 3a
            Inception(256, 128, 128, 192, 32, 96, 64),     # 3b
            pool(),
            Inception(480, 192, 96, 208, 16, 48, 64),      # 4a
            Inception(512, 160, 112, 224, 24, 64, 64),     # 4b
            Inception(512, 128, 128, 256, 24, 64, 64),     # 4c
            Inception(512, 112, 144, 288, 32, 64, 64),     # 4d
            Inception(528, 256, 160, 320, 32, 128, 128),   # 4e
            pool(),
            Inception(832, 256, 160, 320, 32, 128, 128),   # 5a
            Inception(832, 384, 192, 384, 48, 128, 128),   # 5b
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.4)
        self.fc = nn.Linear(1024, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


@register("googlenet", kind="cnn", paper=_PAPER)
def googlenet(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """GoogLeNet (Inception v1): 9 inception modules with 5x5 branches, BN, no auxiliary heads."""
    return GoogLeNet(num_classes)
