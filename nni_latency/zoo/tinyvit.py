"""TinyViT (Wu et al., "TinyViT: Fast Pretraining Distillation for Small Vision Transformers", ECCV 2022): an MBConv
stage followed by three stages of window attention with a 3x3 depthwise conv between attention and MLP.

Attention is written out with LeViT-style learned biases over window offsets (gathered once in eval mode, as the
official code does), with LayerNorm inside the attention and MLP branches and BatchNorm on every conv. The three
attention stages use windows 7, 14, 7 (on 28x28, 14x14, 7x7 maps at 224); a map that does not divide by its window
is zero-padded to whole windows, as in the official code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._attention import AttentionBias, ConvBN, check_size, window_partition, window_reverse
from .registry import register

# 224 is the smallest size at which every attention stage divides by its window; 64 runs the official padding path
# (8x8 padded to 14 for window 7, 4x4 padded to one 14x14 window, 2x2 padded to one 7x7 window).
SMALL_SIZES = {"tinyvit_5m": 64}


class MBConv(nn.Module):
    def __init__(self, dim: int, expand_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1, self.act1 = ConvBN(dim, hidden, 1), nn.GELU()
        self.conv2, self.act2 = ConvBN(hidden, hidden, 3, groups=hidden), nn.GELU()
        self.conv3, self.act3 = ConvBN(hidden, dim, 1, bn_weight_init=0.0), nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.act3(x + y)


class PatchMerging(nn.Module):
    """1x1 conv-BN, GELU, 3x3 stride-2 depthwise conv-BN, GELU, 1x1 conv-BN; returns tokens."""

    def __init__(self, dim: int, out_dim: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.conv1 = ConvBN(dim, out_dim, 1)
        self.conv2 = ConvBN(out_dim, out_dim, 3, 2, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            B, _, C = x.shape
            x = x.view(B, self.resolution, self.resolution, C).permute(0, 3, 1, 2)
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.scale = self.key_dim ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias = AttentionBias(num_heads, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(self.norm(x)).view(B, N, self.num_heads, -1).permute(0, 2, 1, 3).chunk(3, dim=-1)
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.bias()
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, num_heads: int, window: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.resolution, self.window = resolution, window
        self.attn = Attention(dim, num_heads, window)
        self.local_conv = ConvBN(dim, dim, 3, groups=dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        H = W = self.resolution
        w = self.window
        if H == w and W == w:
            y = self.attn(x)
        else:
            y = x.view(B, H, W, C)
            pad = (w - H % w) % w
            if pad:
                y = F.pad(y, (0, 0, 0, pad, 0, pad))
            Hp = H + pad
            y = window_reverse(self.attn(window_partition(y, w)), w, Hp, Hp)
            if pad:
                y = y[:, :H, :W].contiguous()
            y = y.view(B, L, C)
        x = x + y
        x = self.local_conv(x.transpose(1, 2).reshape(B, C, H, W)).view(B, C, L).transpose(1, 2)
        return x + self.mlp(x)


class TinyViT(nn.Module):
    def __init__(self, image_size: int, num_classes: int, dims=(64, 128, 160, 320), depths=(2, 2, 6, 2),
                 heads=(2, 4, 5, 10), windows=(7, 7, 14, 7)):
        super().__init__()
        check_size("TinyViT", image_size, 32)
        self.patch_embed = nn.Sequential(ConvBN(3, dims[0] // 2, 3, 2, 1), nn.GELU(),
                                         ConvBN(dims[0] // 2, dims[0], 3, 2, 1))
        resolution = image_size // 4
        layers: list[nn.Module] = [MBConv(dims[0]) for _ in range(depths[0])]
        for i in range(1, len(dims)):
            layers.append(PatchMerging(dims[i - 1], dims[i], resolution))
            resolution = (resolution + 1) // 2
            layers += [TinyViTBlock(dims[i], resolution, heads[i], windows[i]) for _ in range(depths[i])]
        self.layers = nn.Sequential(*layers)
        self.norm_head = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.patch_embed(x))
        return self.head(self.norm_head(x.mean(dim=1)))


@register("tinyvit_5m", kind="hybrid",
          paper="Wu et al., TinyViT: Fast Pretraining Distillation for Small Vision Transformers, ECCV 2022")
def tinyvit_5m(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """TinyViT-5M: dims 64-128-160-320, depths 2-2-6-2, heads 2-4-5-10, windows 7-14-7, MBConv stage 1."""
    return TinyViT(image_size, num_classes)
