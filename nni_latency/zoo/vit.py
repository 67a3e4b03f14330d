"""ViT/DeiT (Touvron et al., "Training data-efficient image transformers & distillation through attention", ICML
2021; the ViT of Dosovitskiy et al., ICLR 2021): a 16x16-patch plain transformer with a class token.

DeiT-Ti is the ViT-Ti network, so it is registered once (``deit_tiny``). The reference code (DeiT's ``models.py``
on timm's ``VisionTransformer``) runs attention through ``F.scaled_dot_product_attention``, and so does this one.
The distillation-token variants (``deit_*_distilled``) are not the ones here: these are the plain classifiers.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import Mlp, MultiHeadAttention, check_size
from .registry import register

PATCH = 16
# Smallest size: the patch grid must be whole; 64 gives a 4x4 grid (17 tokens), the same code path as 224.
SMALL_SIZES = {"deit_tiny": 64, "deit_small": 64}

_PAPER = "Touvron et al., Training data-efficient image transformers & distillation through attention, ICML 2021"


class Block(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)); x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiHeadAttention(dim, num_heads, qkv_bias=True, fused=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int, num_classes: int, dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0):
        super().__init__()
        check_size("ViT", image_size, PATCH)
        self.grid = image_size // PATCH
        self.num_tokens = self.grid * self.grid + 1
        self.patch_embed = nn.Conv2d(3, dim, PATCH, PATCH)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


@register("deit_tiny", kind="transformer", paper=_PAPER)
def deit_tiny(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """DeiT-Ti (= ViT-Ti/16): patch 16, width 192, depth 12, 3 heads, MLP ratio 4, class token."""
    return VisionTransformer(image_size, num_classes, dim=192, depth=12, num_heads=3)


@register("deit_small", kind="transformer", paper=_PAPER)
def deit_small(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """DeiT-S (= ViT-S/16): patch 16, width 384, depth 12, 6 heads, MLP ratio 4, class token."""
    return VisionTransformer(image_size, num_classes, dim=384, depth=12, num_heads=6)
