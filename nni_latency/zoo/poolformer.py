"""PoolFormer (Yu et al., "MetaFormer Is Actually What You Need for Vision", CVPR 2022): a MetaFormer whose token
mixer is a 3x3 average pool minus its input, with GroupNorm(1) norms and layer scale.

Counted with the transformers: it is the MetaFormer block with attention swapped for pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from ._attention import LayerScale2d, check_size
from .registry import register

# Output stride 32; 64 leaves a 2x2 map for the last stage (the pool needs no minimum size).
SMALL_SIZES = {"poolformer_s12": 64}


class PoolMixer(nn.Module):
    def __init__(self, pool_size: int = 3):
        super().__init__()
        self.pool = nn.AvgPool2d(pool_size, 1, pool_size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x


class PoolFormerBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float = 4.0, ls_init: float = 1e-5):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.token_mixer = PoolMixer()
        self.ls1 = LayerScale2d(dim, ls_init)
        self.norm2 = nn.GroupNorm(1, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1))
        self.ls2 = LayerScale2d(dim, ls_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.token_mixer(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PoolFormer(nn.Module):
    def __init__(self, image_size: int, num_classes: int, dims=(64, 128, 320, 512), depths=(2, 2, 6, 2)):
        super().__init__()
        check_size("PoolFormer", image_size, 32)
        layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 7, 4, 2)]  # patch embedding
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:
                layers.append(nn.Conv2d(dims[i - 1], dim, 3, 2, 1))  # downsampling embedding
            layers += [PoolFormerBlock(dim) for _ in range(depth)]
        self.network = nn.Sequential(*layers)
        self.norm = nn.GroupNorm(1, dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.network(x))
        return self.head(x.mean(dim=(-2, -1)))


@register("poolformer_s12", kind="transformer",
          paper="Yu et al., MetaFormer Is Actually What You Need for Vision, CVPR 2022")
def poolformer_s12(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """PoolFormer-S12: dims 64-128-320-512, depths 2-2-6-2, 3x3 pooling mixer, MLP ratio 4, GroupNorm(1)."""
    return PoolFormer(image_size, num_classes)
