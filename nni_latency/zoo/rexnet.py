"""ReXNet (Han et al., Rethinking Channel Dimensions for Efficient Model Design, CVPR 2021): ReXNet-1.0x as in the
authors' reference code (clovaai/rexnet): 16 inverted bottlenecks whose widths grow linearly from 16 to 180,
swish after the expansion, SE (1/12, with BN) + ReLU6 after the depthwise conv, and a residual added to the
first input-width channels of the output."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._layers import ConvBNAct, SqueezeExcite, init_weights
from .registry import register

_PAPER = "Han et al., Rethinking Channel Dimensions for Efficient Model Design, CVPR 2021"


class LinearBottleneck(nn.Module):
    """[1x1 expand -> BN -> swish] -> dw 3x3 -> BN -> [SE] -> ReLU6 -> 1x1 -> BN; partial residual."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int, se: bool, se_ratio: int = 12):
        super().__init__()
        self.in_ch = in_ch
        self.use_shortcut = stride == 1 and in_ch <= out_ch
        layers: list[nn.Module] = []
        mid = in_ch * expansion
        if expansion != 1:
            layers.append(ConvBNAct(in_ch, mid, 1, act=nn.SiLU))
        layers.append(ConvBNAct(mid, mid, 3, stride, groups=mid, act=None))
        if se:
            layers.append(SqueezeExcite(mid, mid // se_ratio, act=nn.ReLU, gate=nn.Sigmoid, norm=True))
        layers.append(nn.ReLU6())
        layers.append(ConvBNAct(mid, out_ch, 1, act=None))
        self.out = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.out(x)
        if self.use_shortcut:
            out[:, :self.in_ch] += x                      # in place, as the reference code does
        return out


class ReXNet(nn.Module):
    """3x3/2 stem (32, swish), 16 bottlenecks (widths 16 -> 180, +11.25 per block), 1x1 conv 1280 (swish),
    pool, dropout 0.2, 1x1 conv classifier."""

    def __init__(self, width: float = 1.0, depth: float = 1.0, in_width: int = 16, final_width: int = 180,
                 num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        layers_per_stage = [math.ceil(n * depth) for n in (1, 2, 2, 3, 3, 5)]
        strides = sum(([s] + [1] * (n - 1) for s, n in zip((1, 2, 2, 2, 1, 2), layers_per_stage)), [])
        ses = sum(([se] * n for se, n in zip((False, False, True, True, True, True), layers_per_stage)), [])
        expansions = [1] * layers_per_stage[0] + [6] * sum(layers_per_stage[1:])
        n_blocks = sum(layers_per_stage)
        stem = 32 if width >= 1.0 else 32 / width
        planes = in_width if width >= 1.0 else in_width / width
        in_chs, out_chs = [], []
        for i in range(n_blocks):
            if i == 0:
                in_chs.append(int(round(stem * width)))
            else:
                in_chs.append(int(round(planes * width)))
                planes += final_width / n_blocks
            out_chs.append(int(round(planes * width)))
        layers: list[nn.Module] = [ConvBNAct(3, int(round(stem * width)), 3, 2, act=nn.SiLU)]
        for ci, co, e, s, se in zip(in_chs, out_chs, expansions, strides, ses):
            layers.append(LinearBottleneck(ci, co, e, s, se))
        pen = int(1280 * width)
        layers.append(ConvBNAct(out_chs[-1], pen, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(pen, num_classes, 1, bias=True)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.dropout(self.pool(self.features(x)))), 1)


@register("rexnet_1_0", kind="cnn", paper=_PAPER)
def rexnet_1_0(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """ReXNet-1.0x: 16 blocks, widths 16 -> 180 linearly, SE from block 6, head 1280."""
    return ReXNet(1.0, 1.0, num_classes=num_classes)
