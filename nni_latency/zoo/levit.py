"""LeViT (Graham et al., "LeViT: a Vision Transformer in ConvNet's Clothing for Faster Inference", ICCV 2021): a
conv stem to 1/16, then attention stages joined by "subsample" attention, with BatchNorm and Hardswish throughout.

Linear layers are followed by BatchNorm (``Linear_BN``), attention is written out with per-head learned biases over
the |dx|, |dy| offset (gathered once in eval mode, like the official code), and a Hardswish precedes every attention
projection. The classifier is the official distilled pair of BN+Linear heads averaged at inference; the paper's
parameter counts include both.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import AttentionBias, BNLinear, ConvBN, LinearBN, Residual, check_size
from .registry import register

# Stride-16 stem: 64 gives 4x4 tokens, then 2x2 and 1x1 after the two subsampling attentions.
SMALL_SIZES = {"levit_128s": 64, "levit_128": 64}

_PAPER = "Graham et al., LeViT: a Vision Transformer in ConvNet's Clothing for Faster Inference, ICCV 2021"


class Attention(nn.Module):
    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: float, resolution: int):
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.scale = key_dim ** -0.5
        self.qkv = LinearBN(dim, num_heads * (2 * key_dim + self.val_dim))
        self.proj = nn.Sequential(nn.Hardswish(), LinearBN(num_heads * self.val_dim, dim, bn_weight_init=0.0))
        self.bias = AttentionBias(num_heads, resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(x).view(B, N, self.num_heads, -1).split([self.key_dim, self.key_dim, self.val_dim], 3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.bias()
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, -1)
        return self.proj(x)


class Subsample(nn.Module):
    def __init__(self, stride: int, resolution: int):
        super().__init__()
        self.stride, self.resolution = stride, resolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, C = x.shape
        x = x.view(B, self.resolution, self.resolution, C)[:, ::self.stride, ::self.stride]
        return x.reshape(B, -1, C)


class AttentionSubsample(nn.Module):
    """Shrinking attention: queries from every other token, keys/values from all, output width ``out_dim``."""

    def __init__(self, in_dim: int, out_dim: int, key_dim: int, num_heads: int, attn_ratio: float,
                 stride: int, resolution: int):
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.val_dim = int(attn_ratio * key_dim)
        self.scale = key_dim ** -0.5
        self.kv = LinearBN(in_dim, num_heads * (key_dim + self.val_dim))
        self.q = nn.Sequential(Subsample(stride, resolution), LinearBN(in_dim, num_heads * key_dim))
        self.proj = nn.Sequential(nn.Hardswish(), LinearBN(num_heads * self.val_dim, out_dim))
        self.bias = AttentionBias(num_heads, resolution, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        k, v = self.kv(x).view(B, N, self.num_heads, -1).split([self.key_dim, self.val_dim], dim=3)
        k, v = k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        q = self.q(x)
        q = q.view(B, q.shape[1], self.num_heads, self.key_dim).permute(0, 2, 1, 3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.bias()
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, q.shape[2], -1)
        return self.proj(x)




def _mlp(dim: int, ratio: float) -> nn.Module:
    hidden = int(dim * ratio)
    return Residual(nn.Sequential(LinearBN(dim, hidden), nn.Hardswish(), LinearBN(hidden, dim, bn_weight_init=0.0)))


class LeViT(nn.Module):
    def __init__(self, image_size: int, num_classes: int, dims=(128, 256, 384), heads=(4, 6, 8),
                 depths=(2, 3, 4), key_dim: int = 16, attn_ratio: float = 2.0, mlp_ratio: float = 2.0):
        super().__init__()
        check_size("LeViT", image_size, 16)
        d = dims[0]
        self.stem = nn.Sequential(ConvBN(3, d // 8, 3, 2, 1), nn.Hardswish(), ConvBN(d // 8, d // 4, 3, 2, 1),
                                  nn.Hardswish(), ConvBN(d // 4, d // 2, 3, 2, 1), nn.Hardswish(),
                                  ConvBN(d // 2, d, 3, 2, 1))
        resolution = image_size // 16
        blocks: list[nn.Module] = []
        for i, (dim, num_heads, depth) in enumerate(zip(dims, heads, depths)):
            if i > 0:  # ['Subsample', key_dim, in_dim // key_dim heads, attn ratio 4, mlp ratio 2, stride 2]
                blocks.append(AttentionSubsample(dims[i - 1], dim, key_dim, dims[i - 1] // key_dim, 4.0, 2,
                                                 resolution))
                resolution = (resolution - 1) // 2 + 1
                blocks.append(_mlp(dim, 2.0))
            for _ in range(depth):
                blocks.append(Residual(Attention(dim, key_dim, num_heads, attn_ratio, resolution)))
                blocks.append(_mlp(dim, mlp_ratio))
        self.blocks = nn.Sequential(*blocks)
        self.head = BNLinear(dims[-1], num_classes)
        self.head_dist = BNLinear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)
        x = self.blocks(x).mean(dim=1)
        return (self.head(x) + self.head_dist(x)) / 2


@register("levit_128s", kind="hybrid", paper=_PAPER)
def levit_128s(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """LeViT-128S: widths 128-256-384, heads 4-6-8, depths 2-3-4, key dim 16, attn ratio 2, MLP ratio 2."""
    return LeViT(image_size, num_classes, heads=(4, 6, 8), depths=(2, 3, 4))


@register("levit_128", kind="hybrid", paper=_PAPER)
def levit_128(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """LeViT-128: widths 128-256-384, heads 4-8-12, depths 4-4-4, key dim 16, attn ratio 2, MLP ratio 2."""
    return LeViT(image_size, num_classes, heads=(4, 8, 12), depths=(4, 4, 4))
