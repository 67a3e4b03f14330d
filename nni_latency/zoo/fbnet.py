"""FBNet (Wu et al., FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural Architecture Search,
CVPR 2019): the searched FBNet-A/B/C of the paper's Fig. 4, with block choices as in the authors' model
definitions (facebookresearch/mobile-vision, ``fbnet_modeldef_cls_fbnet``).

Candidate blocks: ``k{3,5}_e{1,3,6}`` inverted residuals (ReLU; the 1x1 expansion is absent when e = 1, as in the
reference builder), ``g2`` variants with both 1x1 convs in 2 groups and a channel shuffle, and ``skip`` (identity).

Parameters: FBNet-A 4.3 M and FBNet-C 5.6 M match the paper (4.3 / 5.5 M); FBNet-B has 4.8 M against the paper's
4.5 M with the authors' released definition (its 1984-wide head), while its 291 M MACs match the paper's 295 M.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ._layers import ClassifierHead, ConvBNAct, InvertedResidual, init_weights
from .registry import register

_PAPER = ("Wu et al., FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural Architecture "
          "Search, CVPR 2019")

# Each stage: list of (block, output channels, stride). Stem: 3x3/2 conv, 16 channels; head: 1x1 conv.
_FBNET_A = [
    [("skip", 16, 1)],
    [("k3_e3", 24, 2), ("k3_e1", 24, 1), ("skip", 24, 1), ("skip", 24, 1)],
    [("k5_e6", 32, 2), ("k3_e3", 32, 1), ("k5_e1", 32, 1), ("k3_e3", 32, 1)],
    [("k5_e6", 64, 2), ("k5_e3", 64, 1), ("k5_e1_g2", 64, 1), ("k5_e6", 64, 1),
     ("k3_e6", 112, 1), ("k5_e1_g2", 112, 1), ("k5_e3", 112, 1), ("k3_e1_g2", 112, 1)],
    [("k5_e6", 184, 2), ("k5_e6", 184, 1), ("k5_e3", 184, 1), ("k5_e6", 184, 1), ("k5_e6", 352, 1)],
]
_FBNET_B = [
    [("k3_e1", 16, 1)],
    [("k3_e6", 24, 2), ("k5_e1", 24, 1), ("k3_e1", 24, 1), ("k3_e1", 24, 1)],
    [("k5_e6", 32, 2), ("k5_e3", 32, 1), ("k3_e6", 32, 1), ("k5_e6", 32, 1)],
    [("k5_e6", 64, 2), ("k5_e6", 64, 1), ("skip", 64, 1), ("k5_e3", 64, 1),
     ("k5_e6", 112, 1), ("k3_e1", 112, 1), ("k5_e1", 112, 1), ("k5_e3", 112, 1)],
    [("k5_e6", 184, 2), ("k5_e1", 184, 1), ("k5_e6", 184, 1), ("k5_e6", 184, 1), ("k3_e6", 352, 1)],
]
_FBNET_C = [
    [("k3_e1", 16, 1)],
    [("k3_e6", 24, 2), ("skip", 24, 1), ("k3_e1", 24, 1), ("k3_e1", 24, 1)],
    [("k5_e6", 32, 2), ("k5_e3", 32, 1), ("k5_e6", 32, 1), ("k3_e6", 32, 1)],
    [("k5_e6", 64, 2), ("k5_e3", 64, 1), ("k5_e6", 64, 1), ("k5_e6", 64, 1),
     ("k5_e6", 112, 1), ("k5_e6", 112, 1), ("k5_e6", 112, 1), ("k5_e3", 112, 1)],
    [("k5_e6", 184, 2), ("k5_e6", 184, 1), ("k5_e6", 184, 1), ("k5_e6", 184, 1), ("k3_e6", 352, 1)],
]

_BLOCK = re.compile(r"k(\d)_e(\d)(?:_g(\d))?$")


class FBNet(nn.Module):
    """3x3/2 stem (16), 22 searched blocks, 1x1 conv head, pool, FC."""

    def __init__(self, stages, head_ch: int, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(3, 16, 3, 2)]
        in_ch = 16
        for stage in stages:
            for op, out_ch, stride in stage:
                if op == "skip":
                    if in_ch != out_ch or stride != 1:
                        raise ValueError("an FBNet skip block cannot change the shape")
                    layers.append(nn.Identity())
                    continue
                k, e, g = _BLOCK.match(op).groups()
                layers.append(InvertedResidual(in_ch, in_ch * int(e), out_ch, int(k), stride, act=nn.ReLU,
                                               groups=int(g or 1)))
                in_ch = out_ch
        layers.append(ConvBNAct(in_ch, head_ch, 1))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(head_ch, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("fbnet_a", kind="cnn", paper=_PAPER)
def fbnet_a(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """FBNet-A: 22 searched blocks (3 skips, 3 g2 blocks), head conv 1504."""
    return FBNet(_FBNET_A, 1504, num_classes)


@register("fbnet_b", kind="cnn", paper=_PAPER)
def fbnet_b(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """FBNet-B: 22 searched blocks (1 skip), head conv 1984."""
    return FBNet(_FBNET_B, 1984, num_classes)


@register("fbnet_c", kind="cnn", paper=_PAPER)
def fbnet_c(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """FBNet-C: 22 searched blocks (1 skip), head conv 1984."""
    return FBNet(_FBNET_C, 1984, num_classes)
