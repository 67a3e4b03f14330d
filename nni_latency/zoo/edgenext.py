"""EdgeNeXt (Maaz et al., "EdgeNeXt: Efficiently Amalgamated CNN-Transformer Architecture for Mobile Vision
Applications", ECCV Workshops 2022): ConvNeXt-style conv encoders plus split depth-wise transposed attention (SDTA).

SDTA attends across channels (cross-covariance attention: an L2-normalised ``C/h x C/h`` map per head, scaled by a
learned temperature, explicit softmax), after a Res2Net-like cascade of 3x3 depthwise convs over channel splits.
The channels-first LayerNorms (stem, downsampling) are written out as the official code does. The paper trains and
evaluates at 256, so the registered input size is 256.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._attention import LayerScale, Mlp, check_size
from ._layers import LayerNorm2d
from .registry import register

# Output stride 32: 64 leaves 2x2 in the last stage (convolutions pad; attention is over channels).
SMALL_SIZES = {"edgenext_xx_small": 64}


class PositionalEncodingFourier(nn.Module):
    """Sinusoidal 2-D encoding (32 frequencies per axis) projected to ``dim`` by a 1x1 conv, built every call."""

    def __init__(self, dim: int, hidden_dim: int = 32, temperature: float = 10000.0):
        super().__init__()
        self.token_projection = nn.Conv2d(hidden_dim * 2, dim, 1)
        self.hidden_dim, self.temperature, self.scale = hidden_dim, temperature, 2 * math.pi

    def forward(self, B: int, H: int, W: int) -> torch.Tensor:
        device, dtype = self.token_projection.weight.device, self.token_projection.weight.dtype
        ones = torch.ones(B, H, W, device=device, dtype=dtype)
        y_embed, x_embed = ones.cumsum(1), ones.cumsum(2)
        eps = 1e-6
        y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
        x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale
        dim_t = torch.arange(self.hidden_dim, dtype=dtype, device=device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.hidden_dim)
        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return self.token_projection(torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2))


class XCA(nn.Module):
    """Cross-covariance attention: softmax(normalize(q) @ normalize(k)^T * temperature) @ v over channels."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 4, 1).unbind(0)
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.temperature
        x = (attn.softmax(dim=-1) @ v).permute(0, 3, 1, 2).reshape(B, N, C)
        return self.proj(x)


class ConvEncoder(nn.Module):
    """kxk depthwise conv -> LN -> Linear(4C) -> GELU -> Linear(C) -> layer scale, residual (channels last)."""

    def __init__(self, dim: int, kernel_size: int, expand_ratio: int = 4):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, expand_ratio * dim)
        self.gamma = LayerScale(dim, 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma(self.mlp(self.norm(y)))
        return x + y.permute(0, 3, 1, 2)


class SDTAEncoder(nn.Module):
    """Split depthwise cascade -> (+ positional encoding) -> XCA residual -> inverted-bottleneck MLP residual."""

    def __init__(self, dim: int, num_heads: int, scales: int, use_pos_emb: bool, expand_ratio: int = 4):
        super().__init__()
        self.width = max(int(math.ceil(dim / scales)), int(math.floor(dim // scales)))
        self.nums = 1 if scales == 1 else scales - 1
        self.convs = nn.ModuleList([nn.Conv2d(self.width, self.width, 3, padding=1, groups=self.width)
                                    for _ in range(self.nums)])
        self.pos_embd = PositionalEncodingFourier(dim) if use_pos_emb else None
        self.norm_xca = nn.LayerNorm(dim, eps=1e-6)
        self.gamma_xca = LayerScale(dim, 1e-6)
        self.xca = XCA(dim, num_heads)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, expand_ratio * dim)
        self.gamma = LayerScale(dim, 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        splits = torch.split(x, self.width, dim=1)
        outs = []
        sp = splits[0]
        for i, conv in enumerate(self.convs):
            sp = conv(sp if i == 0 else sp + splits[i])
            outs.append(sp)
        x = torch.cat(outs + [splits[self.nums]], dim=1)
        B, C, H, W = x.shape
        x = x.reshape(B, C, H * W).permute(0, 2, 1)
        if self.pos_embd is not None:
            x = x + self.pos_embd(B, H, W).reshape(B, -1, H * W).permute(0, 2, 1)
        x = x + self.gamma_xca(self.xca(self.norm_xca(x)))
        x = self.gamma(self.mlp(self.norm(x.reshape(B, H, W, C))))
        return shortcut + x.permute(0, 3, 1, 2)


class EdgeNeXt(nn.Module):
    def __init__(self, image_size: int, num_classes: int, dims=(24, 48, 88, 168), depths=(2, 2, 6, 2),
                 global_blocks=(0, 1, 1, 1), kernel_sizes=(3, 5, 7, 9), heads=(4, 4, 4, 4), scales=(2, 2, 3, 4),
                 use_pos_emb=(False, True, False, False)):
        super().__init__()
        check_size("EdgeNeXt", image_size, 32)
        layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0])]
        for i, dim in enumerate(dims):
            if i > 0:
                layers += [LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            for j in range(depths[i]):
                if j < depths[i] - global_blocks[i]:
                    layers.append(ConvEncoder(dim, kernel_sizes[i]))
                else:
                    layers.append(SDTAEncoder(dim, heads[i], scales[i], use_pos_emb[i]))
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.features(x).mean(dim=(-2, -1))))


@register("edgenext_xx_small", kind="hybrid", input_size=256,
          paper="Maaz et al., EdgeNeXt: Efficiently Amalgamated CNN-Transformer Architecture for Mobile Vision "
                "Applications, ECCV Workshops 2022")
def edgenext_xx_small(image_size: int = 256, num_classes: int = 1000) -> nn.Module:
    """EdgeNeXt-XXS: dims 24-48-88-168, depths 2-2-6-2 (last block of stages 2-4 SDTA, 4 heads), kernels 3-5-7-9."""
    return EdgeNeXt(image_size, num_classes)
