"""Swin Transformer (Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", ICCV
2021): windowed attention with relative position bias, alternating with shifted windows under an attention mask.

As in the official classification code, a stage whose feature map is no larger than the window uses one window of
that size and no shift (stage 4 at 224). At 224 every stage divides by the window; at other sizes the feature map is
padded to whole windows the way the official detection backbone does (the shift mask is built on the padded map).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._attention import Mlp, check_size, window_partition, window_reverse
from .registry import register

# 224 is the smallest size whose four stages (56/28/14/7) all divide by the window of 7; 64 runs the same code with
# the official detection backbone's padding (16 -> 21, 8 -> 14) and single-window stages at 4x4 and 2x2.
SMALL_SIZES = {"swin_tiny": 64}


class WindowAttention(nn.Module):
    """Window MHSA: ``softmax(q * scale @ k^T + B + mask) @ v`` with a (2w-1)^2-entry relative bias table."""

    def __init__(self, dim: int, window: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * window - 1) ** 2, num_heads) * 0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1],
                             persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B_, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(N, N, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(B_ // nW, nW, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B_, N, C)
        return self.proj(x)


def _shift_mask(Hp: int, Wp: int, window: int, shift: int) -> torch.Tensor:
    """``(nW, w*w, w*w)`` mask: -100 between tokens that the cyclic shift brought from different regions."""
    img = torch.zeros(1, Hp, Wp, 1)
    region = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            img[:, hs, ws, :] = region
            region += 1
    windows = window_partition(img, window).squeeze(-1)
    mask = windows.unsqueeze(1) - windows.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, num_heads: int, window: int, shift: int, mlp_ratio: float = 4.0):
        super().__init__()
        if resolution <= window:  # official: one window covering the map, no shift
            window, shift = resolution, 0
        self.resolution, self.window, self.shift = resolution, window, shift
        self.padded = -(-resolution // window) * window
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        mask = _shift_mask(self.padded, self.padded, window, shift) if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        H = W = self.resolution
        shortcut = x
        x = self.norm1(x).view(B, H, W, C)
        pad = self.padded - H
        if pad:
            x = F.pad(x, (0, 0, 0, pad, 0, pad))
        if self.shift:
            x = torch.roll(x, shifts=(-self.shift, -self.shift), dims=(1, 2))
        windows = self.attn(window_partition(x, self.window), self.attn_mask)
        x = window_reverse(windows, self.window, self.padded, self.padded)
        if self.shift:
            x = torch.roll(x, shifts=(self.shift, self.shift), dims=(1, 2))
        if pad:
            x = x[:, :H, :W, :].contiguous()
        x = shortcut + x.view(B, L, C)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat -> LN(4C) -> Linear(4C, 2C, no bias)."""

    def __init__(self, dim: int, resolution: int):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        x = x.view(B, self.resolution, self.resolution, C)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class SwinTransformer(nn.Module):
    def __init__(self, image_size: int, num_classes: int, dim: int = 96, depths=(2, 2, 6, 2),
                 heads=(3, 6, 12, 24), window: int = 7, patch: int = 4):
        super().__init__()
        check_size("Swin", image_size, patch * 2 ** (len(depths) - 1))
        resolution = image_size // patch
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.patch_norm = nn.LayerNorm(dim)
        layers: list[nn.Module] = []
        for i, (depth, num_heads) in enumerate(zip(depths, heads)):
            if i > 0:
                layers.append(PatchMerging(dim, resolution))
                dim, resolution = dim * 2, resolution // 2
            layers += [SwinBlock(dim, resolution, num_heads, window, 0 if j % 2 == 0 else window // 2)
                       for j in range(depth)]
        self.layers = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_norm(self.patch_embed(x).flatten(2).transpose(1, 2))
        x = self.norm(self.layers(x))
        return self.head(x.mean(dim=1))


@register("swin_tiny", kind="transformer",
          paper="Liu et al., Swin Transformer: Hierarchical Vision Transformer using Shifted Windows, ICCV 2021")
def swin_tiny(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """Swin-T: patch 4, C=96, depths 2-2-6-2, heads 3-6-12-24, window 7 (shift 3), MLP ratio 4."""
    return SwinTransformer(image_size, num_classes)
