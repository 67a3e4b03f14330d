"""MixNet (Tan & Le, MixConv: Mixed Depthwise Convolutional Kernels, BMVC 2019): MixNet-S, paper Fig. 7 and the
authors' TensorFlow reference (``mixnet_builder``): mixed-kernel depthwise convs (channels split into equal
groups, one kernel size per group, outputs concatenated) and grouped ("mixed 1x1") expansion/projection convs."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ClassifierHead, ConvBNAct, SqueezeExcite, init_weights, make_act
from .registry import register

_PAPER = "Tan & Le, MixConv: Mixed Depthwise Convolutional Kernels, BMVC 2019"


def _split(channels: int, parts: int) -> list[int]:
    sizes = [channels // parts] * parts
    sizes[0] += channels - sum(sizes)
    return sizes


class MixedConv(nn.Module):
    """Split the input channels into ``len(kernels)`` groups, run one conv per group (depthwise or 1x1 with its
    own kernel size), concatenate. A single kernel is a plain conv."""

    def __init__(self, in_ch: int, out_ch: int, kernels: list[int], stride: int = 1, depthwise: bool = False):
        super().__init__()
        self.in_splits = _split(in_ch, len(kernels))
        out_splits = self.in_splits if depthwise else _split(out_ch, len(kernels))
        self.convs = nn.ModuleList(
            nn.Conv2d(ci, co, k, stride, k // 2, groups=ci if depthwise else 1, bias=False)
            for k, ci, co in zip(kernels, self.in_splits, out_splits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.convs) == 1:
            return self.convs[0](x)
        parts = torch.split(x, self.in_splits, dim=1)
        return torch.cat([conv(p) for conv, p in zip(self.convs, parts)], dim=1)


class MixBlock(nn.Module):
    """[mixed 1x1 expand -> BN -> act] -> mixed depthwise -> BN -> act -> [SE] -> mixed 1x1 project -> BN,
    + identity when the shape is kept."""

    def __init__(self, in_ch: int, out_ch: int, kernels: list[int], stride: int, expansion: int,
                 exp_groups: int, proj_groups: int, se_ratio: float, act):
        super().__init__()
        mid = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [MixedConv(in_ch, mid, [1] * exp_groups), nn.BatchNorm2d(mid), make_act(act)]
        layers += [MixedConv(mid, mid, kernels, stride, depthwise=True), nn.BatchNorm2d(mid), make_act(act)]
        if se_ratio > 0:
            layers.append(SqueezeExcite(mid, max(1, int(in_ch * se_ratio)), act=act, gate=nn.Sigmoid))
        layers += [MixedConv(mid, out_ch, [1] * proj_groups), nn.BatchNorm2d(out_ch)]
        self.block = nn.Sequential(*layers)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_skip else out


# (repeats, dw kernels, expand groups, project groups, first stride, expansion, channels, SE ratio, swish)
_MIXNET_S = [
    (1, [3], 1, 1, 1, 1, 16, 0.0, False),
    (1, [3], 2, 2, 2, 6, 24, 0.0, False),
    (1, [3], 2, 2, 1, 3, 24, 0.0, False),
    (1, [3, 5, 7], 1, 1, 2, 6, 40, 0.5, True),
    (3, [3, 5], 2, 2, 1, 6, 40, 0.5, True),
    (1, [3, 5, 7], 1, 2, 2, 6, 80, 0.25, True),
    (2, [3, 5], 1, 2, 1, 6, 80, 0.25, True),
    (1, [3, 5, 7], 2, 2, 1, 6, 120, 0.5, True),
    (2, [3, 5, 7, 9], 2, 2, 1, 3, 120, 0.5, True),
    (1, [3, 5, 7, 9, 11], 1, 1, 2, 6, 200, 0.5, True),
    (2, [3, 5, 7, 9], 1, 2, 1, 6, 200, 0.5, True),
]


class MixNet(nn.Module):
    """3x3/2 stem (16, ReLU), MixNet blocks (ReLU in the first stages, swish later), 1x1 conv 1536, pool, FC."""

    def __init__(self, cfg, stem: int = 16, head: int = 1536, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, stem, 3, 2)]
        in_ch = stem
        for n, kernels, eg, pg, s, e, c, se, swish in cfg:
            for i in range(n):
                layers.append(MixBlock(in_ch, c, kernels, s if i == 0 else 1, e, eg, pg, se,
                                       nn.SiLU if swish else nn.ReLU))
                in_ch = c
        layers.append(ConvBNAct(in_ch, head, 1))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(head, num_classes, dropout)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("mixnet_s", kind="cnn", paper=_PAPER)
def mixnet_s(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """MixNet-S: 15 blocks with mixed 3x3..11x11 depthwise kernels, head 1536, 224 px."""
    return MixNet(_MIXNET_S, num_classes=num_classes)
