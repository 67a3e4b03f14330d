"""FastViT (Vasu et al., "FastViT: A Fast Hybrid Vision Transformer using Structural Reparameterization", ICCV 2023)
in its deployed (reparameterised) form: RepMixer token mixing, conv FFNs, large-kernel patch embeddings.

Deploy form, as ``reparameterize_model`` leaves the official network: every MobileOne block is one conv with bias,
RepMixer is one 3x3 depthwise conv with bias (layer scale and both BN branches folded in), the patch embedding's
7x7 + 3x3 branches are one 7x7 depthwise-grouped conv; the ConvFFN's 7x7 depthwise conv keeps its BatchNorm (the
official code does not fold it). T8 has no attention stage (all four stages use RepMixer), so it has no positional
conv either. The paper trains and evaluates at 256, so the registered input size is 256.

Parameters: 4.00 M, which is what the released definition gives (timm lists 4.0 M for its train-time form, whose
extra BN/scale branches fold away here). The paper's table says 3.6 M; neither form of the released code has that
count (its 1000-class head alone is 0.77 M), so the 11% gap is left as is rather than bent to the number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._attention import LayerScale2d, check_size
from .registry import register

# Output stride 32: 64 leaves 2x2 in the last stage (all-conv network, no minimum size).
SMALL_SIZES = {"fastvit_t8": 64}


class SqueezeExcite(nn.Module):
    """MobileOne SE: global average pool -> 1x1 (C/16) -> ReLU -> 1x1 (C) -> sigmoid -> scale."""

    def __init__(self, channels: int, rd_ratio: float = 0.0625):
        super().__init__()
        hidden = int(channels * rd_ratio)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.reduce(F.avg_pool2d(x, kernel_size=x.shape[-2:])))
        return x * torch.sigmoid(self.expand(s))


def rep_conv(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1, act: bool = True,
             se: bool = False) -> nn.Sequential:
    """A reparameterised MobileOne block: conv (with bias) [-> SE] [-> GELU]."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=groups)]
    if se:
        layers.append(SqueezeExcite(out_ch))
    if act:
        layers.append(nn.GELU())
    return nn.Sequential(*layers)


class ConvFFN(nn.Module):
    """7x7 depthwise conv-BN -> 1x1 (ratio x C) -> GELU -> 1x1."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(dim, dim, 7, 1, 3, groups=dim, bias=False), nn.BatchNorm2d(dim))
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.conv(x))))


class RepMixerBlock(nn.Module):
    """Deployed RepMixer (3x3 depthwise conv with bias), then x + ls * ConvFFN(x)."""

    def __init__(self, dim: int, mlp_ratio: float):
        super().__init__()
        self.token_mixer = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio))
        self.layer_scale = LayerScale2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.token_mixer(x)
        return x + self.layer_scale(self.mlp(x))


def patch_embed(in_ch: int, out_ch: int) -> nn.Sequential:
    """Deployed PatchEmbed: 7x7 stride-2 conv grouped per input channel (no activation), then 1x1 conv + GELU."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 7, 2, 3, groups=in_ch), rep_conv(out_ch, out_ch, 1))


class FastViT(nn.Module):
    def __init__(self, image_size: int, num_classes: int, dims=(48, 96, 192, 384), depths=(2, 2, 4, 2),
                 mlp_ratio: float = 3.0, cls_ratio: float = 2.0):
        super().__init__()
        check_size("FastViT", image_size, 32)
        d0 = dims[0]
        layers: list[nn.Module] = [rep_conv(3, d0, 3, 2), rep_conv(d0, d0, 3, 2, groups=d0), rep_conv(d0, d0, 1)]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:
                layers.append(patch_embed(dims[i - 1], dim))
            layers += [RepMixerBlock(dim, mlp_ratio) for _ in range(depth)]
        final = int(dims[-1] * cls_ratio)
        layers.append(rep_conv(dims[-1], final, 3, groups=dims[-1], se=True))  # final_conv
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(final, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(-2, -1)))


@register("fastvit_t8", kind="hybrid", input_size=256,
          paper="Vasu et al., FastViT: A Fast Hybrid Vision Transformer using Structural Reparameterization, ICCV 2023")
def fastvit_t8(image_size: int = 256, num_classes: int = 1000) -> nn.Module:
    """FastViT-T8 (deployed): dims 48-96-192-384, depths 2-2-4-2, RepMixer in all stages, MLP ratio 3."""
    return FastViT(image_size, num_classes)
