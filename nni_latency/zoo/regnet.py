"""RegNetX / RegNetY (Radosavovic et al., Designing Network Design Spaces, CVPR 2020): widths and depths are
generated from the paper's quantized linear rule (w_0, w_a, w_m, d) with the group width and bottleneck ratio 1
made compatible as in the reference pycls code; RegNetY adds SE (ratio 0.25 of the block input width)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ._layers import ClassifierHead, ConvBNAct, SqueezeExcite, init_weights
from .registry import register

_PAPER = "Radosavovic et al., Designing Network Design Spaces, CVPR 2020"


def regnet_stages(w_a: float, w_0: int, w_m: float, depth: int, group_w: int, q: int = 8):
    """[(width, depth, group width)] per stage from the quantized linear parameterisation (paper Sec. 3.3)."""
    widths = []
    for j in range(depth):
        u = w_0 + w_a * j                                  # continuous width of block j
        s = round(math.log(u / w_0) / math.log(w_m))       # its quantized exponent
        widths.append(int(round(w_0 * w_m ** s / q)) * q)
    stages: list[list[int]] = []
    for w in widths:
        if stages and stages[-1][0] == w:
            stages[-1][1] += 1
        else:
            stages.append([w, 1])
    out = []
    for w, d in stages:
        g = min(group_w, w)
        w = max(g, int(round(w / g) * g))                  # width divisible by the group width
        out.append((w, d, g))
    return out


class RegNetBlock(nn.Module):
    """X block: 1x1 -> 3x3 group conv (stride) -> [SE] -> 1x1, + shortcut (1x1/s + BN when needed), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, group_w: int, se_ratio: float):
        super().__init__()
        self.a = ConvBNAct(in_ch, out_ch, 1)
        self.b = ConvBNAct(out_ch, out_ch, 3, stride, groups=out_ch // group_w)
        self.se = SqueezeExcite(out_ch, int(round(in_ch * se_ratio))) if se_ratio > 0 else None
        self.c = ConvBNAct(out_ch, out_ch, 1, act=None)
        self.proj = ConvBNAct(in_ch, out_ch, 1, stride, act=None) if in_ch != out_ch or stride != 1 else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.b(self.a(x))
        if self.se is not None:
            out = self.se(out)
        out = self.c(out)
        return self.relu(out + (x if self.proj is None else self.proj(x)))


class RegNet(nn.Module):
    """3x3/2 stem (32), four stages of X/Y blocks (first block stride 2), pool, FC."""

    def __init__(self, w_a: float, w_0: int, w_m: float, depth: int, group_w: int, se_ratio: float = 0.0,
                 num_classes: int = 1000):
        super().__init__()
        self.stem = ConvBNAct(3, 32, 3, 2)
        in_ch = 32
        stages = []
        for w, d, g in regnet_stages(w_a, w_0, w_m, depth, group_w):
            stages.append(nn.Sequential(*[RegNetBlock(in_ch if i == 0 else w, w, 2 if i == 0 else 1, g, se_ratio)
                                          for i in range(d)]))
            in_ch = w
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


@register("regnetx_400mf", kind="cnn", paper=_PAPER)
def regnetx_400mf(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """RegNetX-400MF: w0 24, wa 24.48, wm 2.54, d 22, g 16 -> widths 32-64-160-384, depths 1-2-7-12."""
    return RegNet(24.48, 24, 2.54, 22, 16, num_classes=num_classes)


@register("regnety_400mf", kind="cnn", paper=_PAPER)
def regnety_400mf(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """RegNetY-400MF: w0 48, wa 27.89, wm 2.09, d 16, g 8, SE 0.25 -> widths 48-104-208-440, depths 1-3-6-6."""
    return RegNet(27.89, 48, 2.09, 16, 8, se_ratio=0.25, num_classes=num_classes)
