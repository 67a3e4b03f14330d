"""EfficientFormer (Li et al., "EfficientFormer: Vision Transformers at MobileNet Speed", NeurIPS 2022): a
dimension-consistent design of 4-D pooling MetaBlocks (BN, conv MLP) ending in 3-D attention MetaBlocks (LN, MHSA).

Attention is written out with LeViT-style learned biases, ``softmax(q @ k^T * scale + B) @ v``, with key dim 32,
8 heads and value dim 4 x 32, as in the official code; biases are gathered once in eval mode. The classifier is
the official distilled pair (head + distillation head, averaged at inference), which the paper's count includes.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import AttentionBias, LayerScale, LayerScale2d, Mlp, check_size
from .registry import register

# Output stride 32: 64 leaves a 2x2 map (4 tokens) for the attention block.
SMALL_SIZES = {"efficientformer_l1": 64}


class Attention(nn.Module):
    def __init__(self, dim: int, resolution: int, key_dim: int = 32, num_heads: int = 8, attn_ratio: int = 4):
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.val_dim = attn_ratio * key_dim
        self.scale = key_dim ** -0.5
        self.qkv = nn.Linear(dim, num_heads * (2 * key_dim + self.val_dim))
        self.proj = nn.Linear(num_heads * self.val_dim, dim)
        self.bias = AttentionBias(num_heads, resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, self.num_heads, -1).permute(0, 2, 1, 3)
        q, k, v = qkv.split([self.key_dim, self.key_dim, self.val_dim], dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.bias()
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, -1)
        return self.proj(x)


class Meta4D(nn.Module):
    """x + ls * (AvgPool3x3(x) - x); x + ls * (1x1 conv-BN-GELU-1x1 conv-BN)(x)."""

    def __init__(self, dim: int, mlp_ratio: int = 4):
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.ls1 = LayerScale2d(dim)
        hidden = dim * mlp_ratio
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.BatchNorm2d(hidden), nn.GELU(),
                                 nn.Conv2d(hidden, dim, 1), nn.BatchNorm2d(dim))
        self.ls2 = LayerScale2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.pool(x) - x)
        return x + self.ls2(self.mlp(x))


class Meta3D(nn.Module):
    """x + ls * MHSA(LN(x)); x + ls * MLP(LN(x)) on flattened tokens."""

    def __init__(self, dim: int, resolution: int, mlp_ratio: int = 4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mixer = Attention(dim, resolution)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.token_mixer(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class Flat(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).transpose(1, 2)


class EfficientFormer(nn.Module):
    def __init__(self, image_size: int, num_classes: int, dims=(48, 96, 224, 448), depths=(3, 2, 6, 4),
                 num_vit: int = 1):
        super().__init__()
        check_size("EfficientFormer", image_size, 32)
        layers: list[nn.Module] = [
            nn.Conv2d(3, dims[0] // 2, 3, 2, 1), nn.BatchNorm2d(dims[0] // 2), nn.ReLU(),
            nn.Conv2d(dims[0] // 2, dims[0], 3, 2, 1), nn.BatchNorm2d(dims[0]), nn.ReLU(),
        ]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:
                layers += [nn.Conv2d(dims[i - 1], dim, 3, 2, 1), nn.BatchNorm2d(dim)]
            last = i == len(dims) - 1
            n4d = depth - num_vit if last else depth
            layers += [Meta4D(dim) for _ in range(n4d)]
            if last:
                layers.append(Flat())
                layers += [Meta3D(dim, image_size // 32) for _ in range(num_vit)]
        self.network = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)
        self.dist_head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.network(x)).mean(dim=1)
        return (self.head(x) + self.dist_head(x)) / 2


@register("efficientformer_l1", kind="hybrid",
          paper="Li et al., EfficientFormer: Vision Transformers at MobileNet Speed, NeurIPS 2022")
def efficientformer_l1(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """EfficientFormer-L1: widths 48-96-224-448, depths 3-2-6-4, last block MHSA (8 heads, key 32), MLP ratio 4."""
    return EfficientFormer(image_size, num_classes)
