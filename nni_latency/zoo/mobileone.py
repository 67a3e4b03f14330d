"""MobileOne (Vasu et al., MobileOne: An Improved One millisecond Mobile Backbone, CVPR 2023): MobileOne-S0 in
its deploy form, as the authors' reference code (apple/ml-mobileone) re-parameterises it: every block is one
conv with bias + ReLU (the k = 4 over-parameterised training branches fold into it)."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ClassifierHead, init_weights
from .registry import register

_PAPER = "Vasu et al., MobileOne: An Improved One millisecond Mobile Backbone, CVPR 2023"


def _block(in_ch: int, out_ch: int, kernel: int, stride: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=True),
                         nn.ReLU(inplace=True))


class MobileOne(nn.Module):
    """Stage 0: 3x3/2 conv to min(64, 64 w0); stages 1-4 of [2, 8, 10, 1] units at widths 64 w0, 128 w1, 256 w2,
    512 w3, each unit a depthwise 3x3 (first /2) then a 1x1; global pool, FC."""

    def __init__(self, widths=(0.75, 1.0, 1.0, 2.0), blocks=(2, 8, 10, 1), num_classes: int = 1000):
        super().__init__()
        in_ch = min(64, int(64 * widths[0]))
        layers: list[nn.Module] = [_block(3, in_ch, 3, 2, 1)]
        for base, w, n in zip((64, 128, 256, 512), widths, blocks):
            out_ch = int(base * w)
            for i in range(n):
                layers.append(_block(in_ch, in_ch, 3, 2 if i == 0 else 1, in_ch))
                layers.append(_block(in_ch, out_ch, 1, 1, 1))
                in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("mobileone_s0", kind="cnn", paper=_PAPER)
def mobileone_s0(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """MobileOne-S0 deploy form: width multipliers (0.75, 1, 1, 2), units 2-8-10-1, no SE."""
    return MobileOne((0.75, 1.0, 1.0, 2.0), (2, 8, 10, 1), num_classes)
