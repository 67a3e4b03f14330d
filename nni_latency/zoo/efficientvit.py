"""EfficientViT from MIT (Cai et al., "EfficientViT: Multi-Scale Linear Attention for High-Resolution Dense
Prediction", ICCV 2023): MBConv stages, then stages of lightweight multi-scale ReLU linear attention + MBConv.

This is the MIT network (not MSRA's cascaded-group-attention EfficientViT-M). Its attention never forms an N x N map:
q and k go through ReLU, ``k^T @ [v, 1]`` is a (d x d+1) matrix per head, and ``q @ that`` is normalised by its last
column. Queries/keys/values come from a 1x1 conv plus a multi-scale branch (5x5 depthwise + grouped 1x1).
B0 is in the official repository (the paper tables start at B1); both are registered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._attention import Residual, check_size
from .registry import register

# Output stride 32: 64 leaves 2x2 in the last stage (linear attention has no minimum token count).
SMALL_SIZES = {"efficientvit_b0": 64, "efficientvit_b1": 64}

_PAPER = "Cai et al., EfficientViT: Multi-Scale Linear Attention for High-Resolution Dense Prediction, ICCV 2023"


def conv(in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1, groups: int = 1, bias: bool = False,
         norm: bool = True, act: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=groups,
                                         bias=bias)]
    if norm:
        layers.append(nn.BatchNorm2d(out_ch))
    if act:
        layers.append(nn.Hardswish())
    return nn.Sequential(*layers)




def ds_conv(ch: int) -> nn.Sequential:
    """Depthwise-separable conv: 3x3 dw-BN-Hardswish, 1x1-BN."""
    return nn.Sequential(conv(ch, ch, 3, groups=ch, act=True), conv(ch, ch, 1))


def mb_conv(in_ch: int, out_ch: int, stride: int, expand_ratio: float, fewer_norm: bool = False) -> nn.Sequential:
    """1x1 expand-Hardswish, 3x3 dw-Hardswish, 1x1 project-BN; ``fewer_norm`` (attention stages): the first two
    convs carry a bias instead of a BatchNorm."""
    mid = round(in_ch * expand_ratio)
    return nn.Sequential(conv(in_ch, mid, 1, bias=fewer_norm, norm=not fewer_norm, act=True),
                         conv(mid, mid, 3, stride, groups=mid, bias=fewer_norm, norm=not fewer_norm, act=True),
                         conv(mid, out_ch, 1))


class LiteMLA(nn.Module):
    """Lightweight multi-scale linear attention (ReLU kernel), heads of width ``head_dim``."""

    def __init__(self, channels: int, head_dim: int, scales=(5,), eps: float = 1e-15):
        super().__init__()
        heads = channels // head_dim
        total = heads * head_dim
        self.head_dim, self.eps = head_dim, eps
        self.qkv = nn.Conv2d(channels, 3 * total, 1, bias=False)
        self.aggreg = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3 * total, 3 * total, s, padding=s // 2, groups=3 * total, bias=False),
                          nn.Conv2d(3 * total, 3 * total, 1, groups=3 * heads, bias=False))
            for s in scales])
        self.kernel_func = nn.ReLU()
        self.proj = conv(total * (1 + len(scales)), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        qkv = self.qkv(x)
        qkv = torch.cat([qkv] + [op(qkv) for op in self.aggreg], dim=1)
        qkv = qkv.reshape(B, -1, 3 * self.head_dim, H * W).transpose(-1, -2)
        q, k, v = qkv.chunk(3, dim=-1)
        q, k = self.kernel_func(q), self.kernel_func(k)
        v = F.pad(v, (0, 1), mode="constant", value=1.0)
        dtype = v.dtype  # the reference code runs this product in float32 under half precision
        q, k, v = q.float(), k.float(), v.float()
        out = q @ (k.transpose(-1, -2) @ v)
        out = (out[..., :-1] / (out[..., -1:] + self.eps)).to(dtype)
        return self.proj(out.transpose(-1, -2).reshape(B, -1, H, W))


class EfficientViTBlock(nn.Module):
    def __init__(self, channels: int, head_dim: int, expand_ratio: float):
        super().__init__()
        self.context_module = Residual(LiteMLA(channels, head_dim))
        self.local_module = Residual(mb_conv(channels, channels, 1, expand_ratio, fewer_norm=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local_module(self.context_module(x))


class EfficientViT(nn.Module):
    def __init__(self, image_size: int, num_classes: int, widths, depths, head_dim: int, head_widths,
                 expand_ratio: float = 4.0):
        super().__init__()
        check_size("EfficientViT", image_size, 32)
        layers: list[nn.Module] = [conv(3, widths[0], 3, 2, act=True)]
        layers += [Residual(ds_conv(widths[0])) for _ in range(depths[0])]
        in_ch = widths[0]
        for i, (width, depth) in enumerate(zip(widths[1:], depths[1:])):
            attention_stage = i >= 2
            layers.append(mb_conv(in_ch, width, 2, expand_ratio, fewer_norm=attention_stage))
            if attention_stage:
                layers += [EfficientViTBlock(width, head_dim, expand_ratio) for _ in range(depth)]
            else:
                layers += [Residual(mb_conv(width, width, 1, expand_ratio)) for _ in range(depth - 1)]
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.head_conv = conv(in_ch, head_widths[0], 1, act=True)
        self.classifier = nn.Sequential(nn.Linear(head_widths[0], head_widths[1], bias=False),
                                        nn.LayerNorm(head_widths[1]), nn.Hardswish(),
                                        nn.Linear(head_widths[1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head_conv(self.features(x))
        return self.classifier(x.mean(dim=(-2, -1)))


@register("efficientvit_b0", kind="hybrid", paper=_PAPER)
def efficientvit_b0(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """EfficientViT-B0 (MIT): widths 8-16-32-64-128, depths 1-2-2-2-2, head dim 16, head 1024-1280."""
    return EfficientViT(image_size, num_classes, (8, 16, 32, 64, 128), (1, 2, 2, 2, 2), 16, (1024, 1280))


@register("efficientvit_b1", kind="hybrid", paper=_PAPER)
def efficientvit_b1(image_size: int = 224, num_classes: int = 1000) -> nn.Module:
    """EfficientViT-B1 (MIT): widths 16-32-64-128-256, depths 1-2-3-3-4, head dim 16, head 1536-1600."""
    return EfficientViT(image_size, num_classes, (16, 32, 64, 128, 256), (1, 2, 3, 3, 4), 16, (1536, 1600))
