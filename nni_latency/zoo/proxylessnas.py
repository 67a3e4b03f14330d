"""ProxylessNAS (Cai et al., ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware,
ICLR 2019): the network searched for the mobile (Pixel 1) target, as released by the authors
(``proxyless_mobile`` config of mit-han-lab/ProxylessNAS); blocks the search set to "zero" are left out."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ClassifierHead, ConvBNAct, InvertedResidual, init_weights
from .registry import register

_PAPER = "Cai et al., ProxylessNAS: Direct Neural Architecture Search on Target Task and Hardware, ICLR 2019"

# (output channels, kernel, expansion, stride); the searched zero ops (identity blocks) are omitted
_MOBILE = [
    (16, 3, 1, 1),
    (32, 5, 3, 2), (32, 3, 3, 1),
    (40, 7, 3, 2), (40, 3, 3, 1), (40, 5, 3, 1), (40, 5, 3, 1),
    (80, 7, 6, 2), (80, 5, 3, 1), (80, 5, 3, 1), (80, 5, 3, 1),
    (96, 5, 6, 1), (96, 5, 3, 1), (96, 5, 3, 1), (96, 5, 3, 1),
    (192, 7, 6, 2), (192, 7, 6, 1), (192, 7, 3, 1), (192, 7, 3, 1),
    (320, 7, 6, 1),
]


class ProxylessNAS(nn.Module):
    """3x3/2 stem (32, ReLU6), MBConv blocks (ReLU6), 1x1 feature-mix conv 1280, pool, FC."""

    def __init__(self, cfg, stem: int = 32, last: int = 1280, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, stem, 3, 2, act=nn.ReLU6)]
        in_ch = stem
        for out_ch, k, e, s in cfg:
            layers.append(InvertedResidual(in_ch, in_ch * e, out_ch, k, s, act=nn.ReLU6))
            in_ch = out_ch
        layers.append(ConvBNAct(in_ch, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(last, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("proxylessnas_mobile", kind="cnn", paper=_PAPER)
def proxylessnas_mobile(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """ProxylessNAS-Mobile: 20 MBConv blocks (k3/5/7, e3/6), head 1280, 224 px."""
    return ProxylessNAS(_MOBILE, num_classes=num_classes)
