"""CoaT-Lite (Xu et al., "Co-Scale Conv-Attentional Image Transformers", ICCV 2021): four serial stages of
conv-attention, i.e. factorized attention plus convolutional relative position encoding, each with a class token.

Factorized attention never forms an N x N map: ``q @ (softmax_N(k)^T @ v) * scale``, plus ``q * DWConv(v)`` where
the depthwise convs over the value map use 3x3 / 5x5 / 7x7 kernels for 2 / 3 / 3 of the 8 heads. A shared 3x3
depthwise conv (conditional position encoding) runs at the start of every block. CoaT-Lite has no parallel blocks;
it classifies from the last stage's class token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._attention import Mlp, check_size
from .registry import register

# Output stride 32: 64 leaves a 2x2 map (+ class token) in the last stage; all convs pad.
SMALL_SIZES = {"coat_lite_tiny": 64}


class ConvPosEnc(nn.Module):
    """x + DWConv3x3(x) on the image tokens; the class token passes through."""

    def __init__(self, dim: int, k: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, k, 1, k // 2, groups=dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        cls_token, feat = x[:, :1], x[:, 1:].transpose(1, 2).view(B, C, H, W)
        feat = (self.proj(feat) + feat).flatten(2).transpose(1, 2)
        return torch.cat((cls_token, feat), dim=1)


class ConvRelPosEnc(nn.Module):
    """q * DWConv(v) over the image tokens, kernel sizes split across heads; zero for the class token."""

    def __init__(self, head_dim: int, windows: dict[int, int]):
        super().__init__()
        self.conv_list = nn.ModuleList()
        self.channel_splits = []
        for window, heads in windows.items():
            ch = heads * head_dim
            self.conv_list.append(nn.Conv2d(ch, ch, window, padding=window // 2, groups=ch))
            self.channel_splits.append(ch)

    def forward(self, q: torch.Tensor, v: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, h, N, Ch = q.shape
        q_img, v_img = q[:, :, 1:, :], v[:, :, 1:, :]
        v_img = v_img.transpose(-1, -2).reshape(B, h * Ch, H, W)
        parts = torch.split(v_img, self.channel_splits, dim=1)
        conv_v = torch.cat([conv(p) for conv, p in zip(self.conv_list, parts)], dim=1)
        conv_v = conv_v.reshape(B, h, Ch, H * W).transpose(-1, -2)
        return F.pad(q_img * conv_v, (0, 0, 1, 0, 0, 0))


class FactorAttnConvRelPosEnc(nn.Module):
    def __init__(self, dim: int, num_heads: int, crpe: ConvRelPosEnc):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.crpe = crpe

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        factor_att = q @ (k.softmax(dim=2).transpose(-1, -2) @ v)
        x = self.scale * factor_att + self.crpe(q, v, H, W)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class SerialBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, cpe: ConvPosEnc, crpe: ConvRelPosEnc):
        super().__init__()
        self.cpe = cpe  # shared by the stage's blocks (registered once per block, counted once as a parameter)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.factoratt_crpe = FactorAttnConvRelPosEnc(dim, num_heads, crpe)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        x = self.cpe(x, H, W)
        x = x + self.factoratt_crpe(self.norm1(x), H, W)
        return x + self.mlp(self.norm2(x))


class Stage(nn.Module):
    def __init__(self, in_ch: int, dim: int, patch: int, depth: int, num_heads: int, mlp_ratio: int,
                 crpe_windows: dict[int, int]):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        cpe = ConvPosEnc(dim)
        crpe = ConvRelPosEnc(dim // num_heads, crpe_windows)
        self.blocks = nn.ModuleList([SerialBlock(dim, num_heads, mlp_ratio, cpe, crpe) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        B, _, H, W = x.shape
        x = self.norm(x.flatten(2).transpose(1, 2))
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        for block in self.blocks:
            x = block(x, H, W)
        return x, H, W


class CoaTLite(nn.Module):
    def __init__(self, image_size: int, num_classes: int, dims=(64, 128, 256, 320), depths=(2, 2, 2, 2),
                 mlp_ratios=(8, 8, 4, 4), num_heads: int = 8, crpe_windows=None):
        super().__init__()
        check_size("CoaT-Lite", image_size, 32)
        crpe_windows = crpe_windows or {3: 2, 5: 3, 7: 3}
        in_chs = (3,) + tuple(dims[:-1])
        self.stages = nn.ModuleList([Stage(c, d, 4 if i == 0 else 2, n, num_heads, m, crpe_windows)
                                     for i, (c, d, n, m) in enumerate(zip(in_chs, dims, depths, mlp_ratios))])
        self.norm4 = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        for i, stage in enumerate(self.stages):
            x, H, W = stage(x)
            if i < len(self.stages) - 1:
                x = x[:, 1:].reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous()
        return self.head(self.norm4(x)[:, 0])


@register("coat_lite_tiny", kind="hybrid", paper="Xu et al., Co-Scale Conv-Attentional Image Transformers, ICCV 2021")
def coat_lite_tiny(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """CoaT-Lite Tiny: dims 64-128-256-320, depths 2-2-2-2, 8 heads, MLP ratios 8-8-4-4, patch 4 then 2."""
    return CoaTLite(image_size, num_classes)
