"""PVTv2 (Wang et al., "PVT v2: Improved Baselines with Pyramid Vision Transformer", CVMJ 2022): a four-stage
pyramid of overlapping patch embeddings and spatial-reduction attention, with a depthwise conv inside the MLP.

Attention is written out (``softmax(q @ k^T * scale) @ v``) as in the official code. The paper's 3.4 M for b0 leaves
out the classifier; with its 1000-class head (0.26 M) the network has 3.67 M parameters, as timm reports too.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import check_size
from .registry import register

# 64 is the smallest multiple of 32 at which every spatial reduction is whole: 16/8 -> 2, 8/4 -> 2, 4/2 -> 2.
SMALL_SIZES = {"pvt_v2_b0": 64}


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_ch: int, dim: int, patch: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, stride, patch // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        H, W = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), H, W


class SRAttention(nn.Module):
    """Spatial-reduction attention: keys/values from the map shrunk by an ``sr x sr`` strided conv + LN."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        h = self.num_heads
        q = self.q(x).reshape(B, N, h, C // h).permute(0, 2, 1, 3)
        if self.sr_ratio > 1:
            x = self.sr(x.transpose(1, 2).reshape(B, C, H, W)).reshape(B, C, -1).transpose(1, 2)
            x = self.norm(x)
        k, v = self.kv(x).reshape(B, -1, 2, h, C // h).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class ConvMlp(nn.Module):
    """PVTv2 MLP: Linear -> 3x3 depthwise conv -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = self.fc1(x)
        B, N, C = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(B, C, H, W)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(x))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SRAttention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = ConvMlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), H, W)
        return x + self.mlp(self.norm2(x), H, W)


class Stage(nn.Module):
    def __init__(self, in_ch: int, dim: int, depth: int, num_heads: int, mlp_ratio: int, sr_ratio: int,
                 first: bool):
        super().__init__()
        self.patch_embed = OverlapPatchEmbed(in_ch, dim, 7 if first else 3, 4 if first else 2)
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_ratio, sr_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x, H, W = self.patch_embed(x)
        for block in self.blocks:
            x = block(x, H, W)
        return self.norm(x), H, W


class PyramidVisionTransformerV2(nn.Module):
    def __init__(self, image_size: int, num_classes: int, dims=(32, 64, 160, 256), depths=(2, 2, 2, 2),
                 heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1)):
        super().__init__()
        check_size("PVTv2", image_size, 32)
        in_chs = (3,) + tuple(dims[:-1])
        self.stages = nn.ModuleList([Stage(c, d, n, h, m, s, i == 0) for i, (c, d, n, h, m, s) in
                                     enumerate(zip(in_chs, dims, depths, heads, mlp_ratios, sr_ratios))])
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        for i, stage in enumerate(self.stages):
            x, H, W = stage(x)
            if i < len(self.stages) - 1:
                x = x.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()
        return self.head(x.mean(dim=1))


@register("pvt_v2_b0", kind="transformer",
          paper="Wang et al., PVT v2: Improved Baselines with Pyramid Vision Transformer, CVMJ 2022")
def pvt_v2_b0(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """PVTv2-b0: dims 32-64-160-256, depths 2-2-2-2, heads 1-2-5-8, MLP ratios 8-8-4-4, SR ratios 8-4-2-1."""
    return PyramidVisionTransformerV2(image_size, num_classes)
