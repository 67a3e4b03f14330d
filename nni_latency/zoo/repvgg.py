"""RepVGG (Ding et al., RepVGG: Making VGG-style ConvNets Great Again, CVPR 2021): RepVGG-A0 in its deploy form
(each block re-parameterised into one 3x3 conv with bias + ReLU) and in its training form (3x3 conv-BN +
1x1 conv-BN + identity BN, summed, ReLU)."""

from __future__ import annotations

import torch
from torch import nn

from ._layers import ClassifierHead, init_weights
from .registry import register

_PAPER = "Ding et al., RepVGG: Making VGG-style ConvNets Great Again, CVPR 2021"


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(out_ch))


class RepVGGBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, deploy: bool):
        super().__init__()
        self.deploy = deploy
        self.relu = nn.ReLU(inplace=True)
        if deploy:
            self.reparam = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=True)
        else:
            self.dense = _conv_bn(in_ch, out_ch, 3, stride)
            self.one = _conv_bn(in_ch, out_ch, 1, stride)
            self.identity = nn.BatchNorm2d(in_ch) if in_ch == out_ch and stride == 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.relu(self.reparam(x))
        out = self.dense(x) + self.one(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return self.relu(out)


class RepVGG(nn.Module):
    """Stage 0: one block 3->min(64, 64a) /2; stages 1-4 of [2, 4, 14, 1] blocks (first /2) at widths
    64a, 128a, 256a, 512b; global pool, FC."""

    def __init__(self, blocks=(2, 4, 14, 1), a: float = 0.75, b: float = 2.5, deploy: bool = True,
                 num_classes: int = 1000):
        super().__init__()
        in_ch = min(64, int(64 * a))
        layers: list[nn.Module] = [RepVGGBlock(3, in_ch, 2, deploy)]
        for n, w in zip(blocks, (int(64 * a), int(128 * a), int(256 * a), int(512 * b))):
            for i in range(n):
                layers.append(RepVGGBlock(in_ch, w, 2 if i == 0 else 1, deploy))
                in_ch = w
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(in_ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("repvgg_a0", kind="cnn", paper=_PAPER)
def repvgg_a0(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """RepVGG-A0 deploy form: blocks 1-2-4-14-1, widths 48-48-96-192-1280, single 3x3 convs."""
    return RepVGG(deploy=True, num_classes=num_classes)


@register("repvgg_a0_train", kind="cnn", paper=_PAPER)
def repvgg_a0_train(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """RepVGG-A0 training form: each block 3x3 conv-BN + 1x1 conv-BN (+ identity BN), summed."""
    return RepVGG(deploy=False, num_classes=num_classes)
