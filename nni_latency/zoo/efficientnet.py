"""EfficientNet (Tan & Le, EfficientNet: Rethinking Model Scaling for CNNs, ICML 2019), its Lite variant (the
TensorFlow "EfficientNet-Lite" release: no SE, ReLU6, fixed stem/head) and TinyNet (Han et al., Model Rubik's
Cube: Twisting Resolution, Depth and Width for TinyNets, NeurIPS 2020), all built on the B0 base network.

B1 is evaluated at 240 px and TinyNet-A at 192 px in their papers, so those are their registered input sizes;
the networks are fully convolutional and run at any resolution.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._layers import ClassifierHead, ConvBNAct, InvertedResidual, init_weights, make_divisible
from .registry import register

_EFFNET = "Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, ICML 2019"
_LITE = "Tan & Le, EfficientNet (ICML 2019); EfficientNet-Lite, TensorFlow TPU reference models, 2020"
_TINYNET = "Han et al., Model Rubik's Cube: Twisting Resolution, Depth and Width for TinyNets, NeurIPS 2020"

# B0 base network, paper Table 1: (expansion, kernel, first stride, output channels, repeats)
_B0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
       (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]


class EfficientNet(nn.Module):
    """3x3/2 stem (32), MBConv stages, 1x1 head conv (1280), pool, dropout, FC.

    ``se`` adds squeeze-and-excitation (squeezed to 1/4 of the block's *input* channels, with the block's
    activation); ``depth_round`` is ``math.ceil`` (EfficientNet) or ``round`` (TinyNet); ``fix_ends`` keeps the
    first and last stage at one block (Lite).
    """

    def __init__(self, width: float = 1.0, depth: float = 1.0, dropout: float = 0.2, act=nn.SiLU, se: bool = True,
                 depth_round=math.ceil, fix_stem_head: bool = False, fix_ends: bool = False,
                 num_classes: int = 1000):
        super().__init__()
        stem = 32 if fix_stem_head else make_divisible(32 * width, 8)
        layers: list[nn.Module] = [ConvBNAct(3, stem, 3, 2, act=act)]
        in_ch = stem
        for idx, (e, k, s, c, n) in enumerate(_B0):
            out_ch = make_divisible(c * width, 8)
            repeats = n if fix_ends and idx in (0, len(_B0) - 1) else int(depth_round(n * depth))
            for i in range(repeats):
                se_ch = max(1, int(in_ch * 0.25)) if se else 0
                layers.append(InvertedResidual(in_ch, in_ch * e, out_ch, k, s if i == 0 else 1, act=act,
                                               se_ch=se_ch, se_act=act, se_gate=nn.Sigmoid))
                in_ch = out_ch
        head = 1280 if fix_stem_head else make_divisible(1280 * width, 8)
        layers.append(ConvBNAct(in_ch, head, 1, act=act))
        self.features = nn.Sequential(*layers)
        self.head = ClassifierHead(head, num_classes, dropout)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register("efficientnet_b0", kind="cnn", paper=_EFFNET)
def efficientnet_b0(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """EfficientNet-B0: width 1.0, depth 1.0, 224 px, dropout 0.2."""
    return EfficientNet(1.0, 1.0, 0.2, num_classes=num_classes)


@register("efficientnet_b1", kind="cnn", paper=_EFFNET, input_size=240)
def efficientnet_b1(image_size: int = 240, num_classes: int = 1000) -> nn.Module:
    """EfficientNet-B1: width 1.0, depth 1.1 (ceil: 2-3-3-4-4-5-2 blocks), 240 px, dropout 0.2."""
    return EfficientNet(1.0, 1.1, 0.2, num_classes=num_classes)


@register("efficientnet_lite0", kind="cnn", paper=_LITE)
def efficientnet_lite0(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """EfficientNet-Lite0: the B0 network without SE, with ReLU6, fixed 32 stem / 1280 head, dropout 0.2."""
    return EfficientNet(1.0, 1.0, 0.2, act=nn.ReLU6, se=False, fix_stem_head=True, fix_ends=True,
                        num_classes=num_classes)


@register("tinynet_a", kind="cnn", paper=_TINYNET, input_size=192)
def tinynet_a(image_size: int = 192, num_classes: int = 1000) -> nn.Module:
    """TinyNet-A: EfficientNet-B0 with (r, w, d) = (0.86, 1.0, 1.2), depth rounded (1-2-2-4-4-5-1), 192 px."""
    return EfficientNet(1.0, 1.2, 0.2, depth_round=round, fix_stem_head=True, num_classes=num_classes)
