"""ShuffleNet V2 (Ma et al., ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, ECCV 2018)
at 1.0x: channel split, two branches, concatenation and channel shuffle, as in the paper's Fig. 3 (c)/(d)."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ClassifierHead, ConvBNAct, channel_shuffle, init_weights
from .registry import register

_PAPER = "Ma et al., ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, ECCV 2018"


class ShuffleUnit(nn.Module):
    """Stride 1: split channels in half, right half -> 1x1 -> dw 3x3 -> 1x1, concat, shuffle.
    Stride 2: left = dw 3x3/2 -> 1x1, right = 1x1 -> dw 3x3/2 -> 1x1 on the whole input, concat, shuffle."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.stride = stride
        branch = out_ch // 2
        if stride > 1:
            self.left = nn.Sequential(ConvBNAct(in_ch, in_ch, 3, stride, groups=in_ch, act=None),
                                      ConvBNAct(in_ch, branch, 1))
        else:
            self.left = None
        right_in = in_ch if stride > 1 else branch
        self.right = nn.Sequential(ConvBNAct(right_in, branch, 1),
                                   ConvBNAct(branch, branch, 3, stride, groups=branch, act=None),
                                   ConvBNAct(branch, branch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.left is None:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.right(x2)), dim=1)
        else:
            out = torch.cat((self.left(x), self.right(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """3x3/2 conv (24), 3x3/2 max pool, stages of [4, 8, 4] units, 1x1 conv, pool, FC."""

    def __init__(self, widths=(24, 116, 232, 464, 1024), repeats=(4, 8, 4), num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(ConvBNAct(3, widths[0], 3, 2), nn.MaxPool2d(3, 2, 1))
        in_ch = widths[0]
        stages = []
        for out_ch, n in zip(widths[1:4], repeats):
            stages.append(nn.Sequential(*[ShuffleUnit(in_ch if i == 0 else out_ch, out_ch, 2 if i == 0 else 1)
                                          for i in range(n)]))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.conv5 = ConvBNAct(in_ch, widths[4], 1)
        self.head = ClassifierHead(widths[4], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv5(self.stages(self.stem(x))))


@register("shufflenet_v2_x1_0", kind="cnn", paper=_PAPER)
def shufflenet_v2_x1_0(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """ShuffleNet V2 1.0x: widths 24-116-232-464-1024, units [4, 8, 4]."""
    return ShuffleNetV2(num_classes=num_classes)
