"""ConvNeXt (Liu et al., A ConvNet for the 2020s, CVPR 2022): ConvNeXt-T as in the authors' reference code
(facebookresearch/ConvNeXt): 4x4/4 patchify stem, depthwise 7x7 -> channels-last LayerNorm -> Linear 4x ->
GELU -> Linear -> layer scale, channels-first LayerNorm + 2x2/2 conv between stages.

Stochastic depth (drop path 0.1 in training) is the identity at inference and is left out.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import LayerNorm2d
from .registry import register

_PAPER = "Liu et al., A ConvNet for the 2020s, CVPR 2022"


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)            # (N, C, H, W) -> (N, H, W, C)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        y = (self.gamma * y).permute(0, 3, 1, 2)
        return x + y


class ConvNeXt(nn.Module):
    def __init__(self, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), num_classes: int = 1000):
        super().__init__()
        self.downsample = nn.ModuleList([nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0]))])
        for i in range(3):
            self.downsample.append(nn.Sequential(LayerNorm2d(dims[i]), nn.Conv2d(dims[i], dims[i + 1], 2, 2)))
        self.stages = nn.ModuleList(nn.Sequential(*[ConvNeXtBlock(d) for _ in range(n)])
                                    for n, d in zip(depths, dims))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        for m in self.modules():                          # the reference initialisation: trunc-normal(0.02)
            if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.is_meta:
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for down, stage in zip(self.downsample, self.stages):
            x = stage(down(x))
        return self.head(self.norm(x.mean((-2, -1))))


@register("convnext_tiny", kind="cnn", paper=_PAPER)
def convnext_tiny(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """ConvNeXt-T: depths 3-3-9-3, dims 96-192-384-768, layer scale 1e-6."""
    return ConvNeXt((3, 3, 9, 3), (96, 192, 384, 768), num_classes)
