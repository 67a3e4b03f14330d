"""Two whole networks to analyse, built from ``nni_latency.suite.blocks`` (no torchvision needed).

    nni-latency analyze examples/analyze/networks.py:resnet18_style --input-shape 1,3,224,224 --model MODEL
    nni-latency analyze examples/analyze/networks.py:mobilenet_v2_style --input-shape 1,3,224,224 --model MODEL

Both keep their pooling and flattening as functional code in ``forward``, as torchvision does, so the
report shows that work in its ``(rest)`` row.
"""

from __future__ import annotations

import torch
from torch import nn

from nni_latency.suite.blocks import BasicBlock, ConvBNAct, MBConv


class ResNetStyle(nn.Module):
    """ResNet-18 layout: 7x7 stem, max-pool, four stages of basic blocks, global pool, classifier."""

    def __init__(self, layers: tuple[int, ...] = (2, 2, 2, 2), widths: tuple[int, ...] = (64, 128, 256, 512),
                 num_classes: int = 1000):
        super().__init__()
        self.stem = ConvBNAct(3, widths[0], kernel=7, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, c_in = [], widths[0]
        for index, (count, width) in enumerate(zip(layers, widths)):
            stride = 1 if index == 0 else 2
            blocks = [BasicBlock(c_in if i == 0 else width, width, stride=stride if i == 0 else 1)
                      for i in range(count)]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        x = self.pool(self.stem(x))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(torch.mean(x, dim=(2, 3)), 1)
        return self.fc(x)


class MobileNetV2Style(nn.Module):
    """MobileNetV2 layout: 3x3 stem, seven stages of inverted residuals (MBConv, ReLU6), 1x1 head, classifier."""

    # expansion t, channels c, repeats n, first stride s (the MobileNetV2 paper's table 2)
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000, last_channels: int = 1280):
        super().__init__()
        self.stem = ConvBNAct(3, 32, kernel=3, stride=2, act="relu6")
        self.stages, c_in = [], 32
        for index, (expansion, c_out, repeats, stride) in enumerate(self.SETTINGS, start=1):
            stage = nn.Sequential(*[
                MBConv(c_in if i == 0 else c_out, c_out, kernel=3, stride=stride if i == 0 else 1,
                       expansion=expansion, act="relu6") for i in range(repeats)])
            self.add_module(f"stage{index}", stage)  # top-level children: one report row per stage
            self.stages.append(stage)
            c_in = c_out
        self.head = ConvBNAct(c_in, last_channels, kernel=1, act="relu6")
        self.classifier = nn.Linear(last_channels, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        x = self.head(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


def resnet18_style() -> nn.Module:
    torch.manual_seed(0)
    return ResNetStyle()


def mobilenet_v2_style() -> nn.Module:
    torch.manual_seed(0)
    return MobileNetV2Style()
