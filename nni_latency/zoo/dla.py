"""DLA (Yu et al., Deep Layer Aggregation, CVPR 2018): DLA-34 as in the authors' reference code (ucbdrive/dla):
basic residual blocks aggregated by hierarchical trees whose roots concatenate their children (and, at stage
roots, the downsampled stage input) and fuse them with 1x1 conv + BN + ReLU.

The reference code also builds a 1x1 projection in trees of depth > 1 whose output is never used; it is left out
here (no effect on the outputs; 0.04 M fewer parameters and no dead compute).
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ConvBNAct, init_weights
from .registry import register

_PAPER = "Yu et al., Deep Layer Aggregation, CVPR 2018"


class DLABasicBlock(nn.Module):
    """3x3 (stride) -> BN -> ReLU -> 3x3 -> BN, + residual (given, or the input), ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBNAct(in_ch, out_ch, 3, stride)
        self.conv2 = ConvBNAct(out_ch, out_ch, 3, act=None)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        residual = x if residual is None else residual
        return self.relu(self.conv2(self.conv1(x)) + residual)


class Root(nn.Module):
    """Concatenate the children, 1x1 conv -> BN -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = ConvBNAct(in_ch, out_ch, 1)

    def forward(self, *children: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat(children, dim=1))


class Tree(nn.Module):
    """A hierarchical aggregation tree of ``levels`` levels (the reference ``Tree``)."""

    def __init__(self, levels: int, in_ch: int, out_ch: int, stride: int = 1, level_root: bool = False,
                 root_dim: int = 0):
        super().__init__()
        if root_dim == 0:
            root_dim = 2 * out_ch
        if level_root:
            root_dim += in_ch
        if levels == 1:
            self.tree1 = DLABasicBlock(in_ch, out_ch, stride)
            self.tree2 = DLABasicBlock(out_ch, out_ch, 1)
            self.root = Root(root_dim, out_ch)
        else:
            self.tree1 = Tree(levels - 1, in_ch, out_ch, stride, root_dim=0)
            self.tree2 = Tree(levels - 1, out_ch, out_ch, root_dim=root_dim + out_ch)
            self.root = None
        self.levels = levels
        self.level_root = level_root
        self.downsample = nn.MaxPool2d(stride, stride) if stride > 1 else None
        self.project = (ConvBNAct(in_ch, out_ch, 1, act=None) if levels == 1 and in_ch != out_ch else None)

    def forward(self, x: torch.Tensor, children: list[torch.Tensor] | None = None) -> torch.Tensor:
        children = [] if children is None else children
        bottom = self.downsample(x) if self.downsample is not None else x
        if self.level_root:
            children.append(bottom)
        if self.levels == 1:
            residual = self.project(bottom) if self.project is not None else bottom
            x1 = self.tree1(x, residual)
            x2 = self.tree2(x1)
            return self.root(x2, x1, *children)
        x1 = self.tree1(x)
        children.append(x1)
        return self.tree2(x1, children=children)


class DLA(nn.Module):
    """7x7 conv (stride 1), level 0-1 plain 3x3 convs (level 1 /2), trees for levels 2-5 (each /2), pool,
    1x1 conv classifier."""

    def __init__(self, levels=(1, 1, 1, 2, 2, 1), channels=(16, 32, 64, 128, 256, 512), num_classes: int = 1000):
        super().__init__()
        self.base = ConvBNAct(3, channels[0], 7)
        self.level0 = ConvBNAct(channels[0], channels[0], 3)
        self.level1 = ConvBNAct(channels[0], channels[1], 3, 2)
        self.level2 = Tree(levels[2], channels[1], channels[2], 2, level_root=False)
        self.level3 = Tree(levels[3], channels[2], channels[3], 2, level_root=True)
        self.level4 = Tree(levels[4], channels[3], channels[4], 2, level_root=True)
        self.level5 = Tree(levels[5], channels[4], channels[5], 2, level_root=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels[5], num_classes, 1, bias=True)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.level1(self.level0(self.base(x)))
        x = self.level5(self.level4(self.level3(self.level2(x))))
        return torch.flatten(self.fc(self.pool(x)), 1)


@register("dla34", kind="cnn", paper=_PAPER)
def dla34(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """DLA-34: levels 1-1-1-2-2-1, channels 16-32-64-128-256-512, basic blocks."""
    return DLA(num_classes=num_classes)
