"""MnasNet (Tan et al., MnasNet: Platform-Aware Neural Architecture Search for Mobile, CVPR 2019): the searched
A1 model (with squeeze-and-excitation, paper Fig. 7) and the B1 model of the official TensorFlow release (no SE;
the network torchvision ships as ``mnasnet1_0``), both at depth multiplier 1.0 and 224 px."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ClassifierHead, ConvBNAct, InvertedResidual, init_weights
from .registry import register

_PAPER = "Tan et al., MnasNet: Platform-Aware Neural Architecture Search for Mobile, CVPR 2019"

# (repeats, kernel, first stride, expansion, output channels, SE ratio of the block input, skip allowed)
_A1 = [(1, 3, 1, 1, 16, 0.0, False), (2, 3, 2, 6, 24, 0.0, True), (3, 5, 2, 3, 40, 0.25, True),
       (4, 3, 2, 6, 80, 0.0, True), (2, 3, 1, 6, 112, 0.25, True), (3, 5, 2, 6, 160, 0.25, True),
       (1, 3, 1, 6, 320, 0.0, True)]
_B1 = [(1, 3, 1, 1, 16, 0.0, False), (3, 3, 2, 3, 24, 0.0, True), (3, 5, 2, 3, 40, 0.0, True),
       (3, 5, 2, 6, 80, 0.0, True), (2, 3, 1, 6, 96, 0.0, True), (4, 5, 2, 6, 192, 0.0, True),
       (1, 3, 1, 6, 320, 0.0, False)]


class MnasNet(nn.Module):
    """3x3/2 stem (32, ReLU), MBConv stages (ReLU; SE with ReLU and sigmoid), 1x1 conv 1280, pool, dropout, FC."""

    def __init__(self, cfg, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 32, 3, 2)]
        in_ch = 32
        for n, k, s, e, c, se, skip in cfg:
            for i in range(n):
                se_ch = max(1, int(in_ch * se)) if se else 0
                layers.append(InvertedResidual(in_ch, in_ch * e, c, k, s if i == 0 else 1, act=nn.ReLU,
                                               se_ch=se_ch, se_act=nn.ReLU, se_gate=nn.Sigmoid, skip=skip))
                in_ch = c
        layers.append(ConvBNAct(in_ch, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(1280, num_classes, dropout)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("mnasnet_a1", kind="cnn", paper=_PAPER)
def mnasnet_a1(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """MnasNet-A1 1.0-224: SepConv, MBConv6 k3 x2, MBConv3 k5 SE x3, MBConv6 k3 x4, k3 SE x2, k5 SE x3, k3 x1."""
    return MnasNet(_A1, num_classes)


@register("mnasnet_b1", kind="cnn", paper=_PAPER)
def mnasnet_b1(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """MnasNet-B1 1.0-224 (no SE): SepConv, MBConv3 k3 x3, MBConv3 k5 x3, MBConv6 k5 x3, k3 x2, k5 x4, k3 x1."""
    return MnasNet(_B1, num_classes)
