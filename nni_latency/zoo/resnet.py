"""ResNet (He et al., Deep Residual Learning for Image Recognition, CVPR 2016), ResNeXt (Xie et al., Aggregated
Residual Transformations for Deep Neural Networks, CVPR 2017) and Wide ResNet (Zagoruyko & Komodakis, BMVC 2016).

ResNet-50/101 follow the paper (and its official Caffe models): the stride-2 of a stage sits in the first 1x1
conv of the bottleneck (3.8 / 7.6 GFLOPs in the paper). ResNeXt and Wide ResNet put it in the 3x3 conv, as
their papers / fb.resnet.torch code do (the layout torchvision calls "ResNet v1.5").
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ClassifierHead, init_weights
from .registry import register

_RESNET = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
_RESNEXT = "Xie et al., Aggregated Residual Transformations for Deep Neural Networks, CVPR 2017"
_WRN = "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016"


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """3x3 -> BN -> ReLU -> 3x3 -> BN, + shortcut, ReLU."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1, **_):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = _conv_bn(in_ch, planes, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv_bn(planes, out_ch, 3)
        self.downsample = _conv_bn(in_ch, out_ch, 1, stride) if stride != 1 or in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.relu(self.conv1(x)))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (grouped for ResNeXt) -> 1x1 (x4), + shortcut, ReLU; ``stride_in_1x1`` picks ResNet v1's layout."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64,
                 stride_in_1x1: bool = False):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_ch = planes * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = _conv_bn(in_ch, width, 1, s1)
        self.conv2 = _conv_bn(width, width, 3, s3, groups=groups)
        self.conv3 = _conv_bn(width, out_ch, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _conv_bn(in_ch, out_ch, 1, stride) if stride != 1 or in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.conv1(x))
        out = self.relu(self.conv2(out))
        out = self.conv3(out)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """7x7/2 stem, 3x3/2 max pool, four stages (64, 128, 256, 512 planes), global pool, FC."""

    def __init__(self, block, layers: list[int], num_classes: int = 1000, **block_kwargs):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        in_ch = 64
        stages = []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stage = []
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                stage.append(block(in_ch, planes, stride, **block_kwargs))
                in_ch = planes * block.expansion
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.head = ClassifierHead(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


@register("resnet18", kind="cnn", paper=_RESNET)
def resnet18(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """ResNet-18: basic blocks [2, 2, 2, 2]."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


@register("resnet34", kind="cnn", paper=_RESNET)
def resnet34(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """ResNet-34: basic blocks [3, 4, 6, 3]."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes)


@register("resnet50", kind="cnn", paper=_RESNET)
def resnet50(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """ResNet-50: bottlenecks [3, 4, 6, 3], stride in the first 1x1 conv (the paper's v1)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, stride_in_1x1=True)


@register("resnet101", kind="cnn", paper=_RESNET)
def resnet101(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """ResNet-101: bottlenecks [3, 4, 23, 3], stride in the first 1x1 conv (the paper's v1)."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, stride_in_1x1=True)


@register("resnext50_32x4d", kind="cnn", paper=_RESNEXT)
def resnext50_32x4d(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """ResNeXt-50 (32x4d): bottlenecks [3, 4, 6, 3], cardinality 32, width 4 per group, stride in the 3x3."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, groups=32, base_width=4)


@register("wide_resnet50_2", kind="cnn", paper=_WRN)
def wide_resnet50_2(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """WRN-50-2: ResNet-50 bottlenecks [3, 4, 6, 3] with 2x wider 1x1/3x3 inner convs, stride in the 3x3."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, base_width=128)
