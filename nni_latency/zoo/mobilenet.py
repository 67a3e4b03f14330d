"""MobileNetV1 (Howard et al., arXiv 1704.04861, 2017), MobileNetV2 (Sandler et al., CVPR 2018) and
MobileNetV3 (Howard et al., Searching for MobileNetV3, ICCV 2019), all at width 1.0 and 224 px."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ClassifierHead, ConvBNAct, InvertedResidual, init_weights, make_divisible
from .registry import register

_V1 = "Howard et al., MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications, 2017"
_V2 = "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018"
_V3 = "Howard et al., Searching for MobileNetV3, ICCV 2019"


class MobileNetV1(nn.Module):
    """3x3/2 conv (32), 13 depthwise-separable layers (dw 3x3 -> BN -> ReLU -> pw 1x1 -> BN -> ReLU), pool, FC."""

    # (output channels, stride of the depthwise conv), paper Table 1
    CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
           (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 32, 3, 2)]
        in_ch = 32
        for out_ch, stride in self.CFG:
            layers.append(nn.Sequential(ConvBNAct(in_ch, in_ch, 3, stride, groups=in_ch),
                                        ConvBNAct(in_ch, out_ch, 1)))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MobileNetV2(nn.Module):
    """3x3/2 conv (32), 17 inverted residuals (ReLU6), 1x1 conv 1280, pool, dropout 0.2, FC."""

    # (expansion t, output channels c, repeats n, first stride s), paper Table 2
    CFG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1)]

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 32, 3, 2, act=nn.ReLU6)]
        in_ch = 32
        for t, c, n, s in self.CFG:
            for i in range(n):
                layers.append(InvertedResidual(in_ch, in_ch * t, c, 3, s if i == 0 else 1, act=nn.ReLU6))
                in_ch = c
        layers.append(ConvBNAct(in_ch, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(1280, num_classes, dropout=0.2)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# MobileNetV3 bnecks, paper Tables 1 and 2: (kernel, expansion size, output channels, SE, activation, stride)
_V3_LARGE = [
    (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1),
]
_V3_SMALL = [
    (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1),
]


class MobileNetV3(nn.Module):
    """3x3/2 conv (16, h-swish), bnecks (SE: squeeze to make_divisible(exp/4), ReLU, hard-sigmoid), 1x1 conv,
    pool, 1x1 "FC" (no BN, h-swish), dropout 0.2, FC."""

    def __init__(self, cfg, last_conv: int, last_fc: int, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 16, 3, 2, act=nn.Hardswish)]
        in_ch = 16
        for k, exp, out, se, nl, s in cfg:
            act = nn.Hardswish if nl == "HS" else nn.ReLU
            se_ch = make_divisible(exp // 4, 8) if se else 0
            layers.append(InvertedResidual(in_ch, exp, out, k, s, act=act, se_ch=se_ch, se_act=nn.ReLU,
                                           se_gate=nn.Hardsigmoid))
            in_ch = out
        layers.append(ConvBNAct(in_ch, last_conv, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Flatten(1), nn.Linear(last_conv, last_fc), nn.Hardswish(inplace=True),
                                        nn.Dropout(0.2), nn.Linear(last_fc, num_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


@register("mobilenet_v1", kind="cnn", paper=_V1)
def mobilenet_v1(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """MobileNetV1 1.0-224."""
    return MobileNetV1(num_classes)


@register("mobilenet_v2", kind="cnn", paper=_V2)
def mobilenet_v2(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """MobileNetV2 1.0-224."""
    return MobileNetV2(num_classes)


@register("mobilenet_v3_large", kind="cnn", paper=_V3)
def mobilenet_v3_large(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """MobileNetV3-Large 1.0-224: 15 bnecks, last conv 960, FC 1280."""
    return MobileNetV3(_V3_LARGE, 960, 1280, num_classes)


@register("mobilenet_v3_small", kind="cnn", paper=_V3)
def mobilenet_v3_small(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """MobileNetV3-Small 1.0-224: 11 bnecks, last conv 576, FC 1024."""
    return MobileNetV3(_V3_SMALL, 576, 1024, num_classes)
