"""GhostNet (Han et al., GhostNet: More Features from Cheap Operations, CVPR 2020) at width 1.0, following the
paper's Table 1 and the authors' reference code (huawei-noah/Efficient-AI-Backbones)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._layers import ConvBNAct, SqueezeExcite, init_weights, make_divisible
from .registry import register

_PAPER = "Han et al., GhostNet: More Features from Cheap Operations, CVPR 2020"


class GhostModule(nn.Module):
    """1x1 primary conv to ceil(out/2) channels + a cheap 3x3 depthwise conv on them; concatenated, cut to out."""

    def __init__(self, in_ch: int, out_ch: int, relu: bool = True, ratio: int = 2, dw_size: int = 3):
        super().__init__()
        self.out_ch = out_ch
        init_ch = math.ceil(out_ch / ratio)
        act = nn.ReLU if relu else None
        self.primary = ConvBNAct(in_ch, init_ch, 1, act=act)
        self.cheap = ConvBNAct(init_ch, init_ch * (ratio - 1), dw_size, groups=init_ch, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary(x)
        out = torch.cat([x1, self.cheap(x1)], dim=1)
        return out[:, :self.out_ch]


class GhostBottleneck(nn.Module):
    """Ghost module (ReLU) -> [depthwise kxk/2 + BN] -> [SE, hard-sigmoid] -> ghost module (linear), + shortcut
    (identity, or depthwise kxk + BN + 1x1 + BN when the shape changes)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, kernel: int, stride: int, se_ratio: float):
        super().__init__()
        self.ghost1 = GhostModule(in_ch, mid_ch, relu=True)
        self.dw = ConvBNAct(mid_ch, mid_ch, kernel, stride, groups=mid_ch, act=None) if stride > 1 else None
        self.se = (SqueezeExcite(mid_ch, make_divisible(mid_ch * se_ratio, 4), act=nn.ReLU, gate=nn.Hardsigmoid)
                   if se_ratio > 0 else None)
        self.ghost2 = GhostModule(mid_ch, out_ch, relu=False)
        if in_ch == out_ch and stride == 1:
            self.shortcut = None
        else:
            self.shortcut = nn.Sequential(ConvBNAct(in_ch, in_ch, kernel, stride, groups=in_ch, act=None),
                                          ConvBNAct(in_ch, out_ch, 1, act=None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost1(x)
        if self.dw is not None:
            out = self.dw(out)
        if self.se is not None:
            out = self.se(out)
        out = self.ghost2(out)
        return out + (x if self.shortcut is None else self.shortcut(x))


# (kernel, expansion size, output channels, SE ratio, stride), paper Table 1, grouped by stage
_CFG = [
    [(3, 16, 16, 0.0, 1)],
    [(3, 48, 24, 0.0, 2)],
    [(3, 72, 24, 0.0, 1)],
    [(5, 72, 40, 0.25, 2)],
    [(5, 120, 40, 0.25, 1)],
    [(3, 240, 80, 0.0, 2)],
    [(3, 200, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 184, 80, 0.0, 1), (3, 480, 112, 0.25, 1),
     (3, 672, 112, 0.25, 1)],
    [(5, 672, 160, 0.25, 2)],
    [(5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0.0, 1), (5, 960, 160, 0.25, 1)],
]


class GhostNet(nn.Module):
    """3x3/2 stem (16), 16 ghost bottlenecks, 1x1 conv 960, pool, 1x1 conv 1280 (bias, ReLU, no BN), dropout, FC."""

    def __init__(self, width: float = 1.0, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        in_ch = make_divisible(16 * width, 4)
        layers: list[nn.Module] = [ConvBNAct(3, in_ch, 3, 2)]
        for stage in _CFG:
            blocks = []
            for k, exp, c, se, s in stage:
                out_ch = make_divisible(c * width, 4)
                blocks.append(GhostBottleneck(in_ch, make_divisible(exp * width, 4), out_ch, k, s, se))
                in_ch = out_ch
            layers.append(nn.Sequential(*blocks))
        last = make_divisible(960 * width, 4)
        layers.append(ConvBNAct(in_ch, last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(last, 1280, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv_head(self.pool(self.features(x))))
        return self.classifier(self.dropout(self.flatten(x)))


@register("ghostnet", kind="cnn", paper=_PAPER)
def ghostnet(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """GhostNet 1.0x: 16 ghost bottlenecks (SE in 7), 224 px, dropout 0.2."""
    return GhostNet(1.0, num_classes)
