"""MobileViT (Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer",
ICLR 2022): MobileNetV2 blocks plus MobileViT blocks that unfold 2x2 patches and run a transformer across them.

Follows Apple's ml-cvnets v1 code: SiLU everywhere, 4 heads with written-out attention (``softmax(q*s @ k^T) @ v``),
pre-norm transformer layers with a final LayerNorm, and a feature map that does not divide by the patch being
resized (bilinear) to fit and back, which is what happens at 224 (7x7 -> 8x8 in the last stage). The paper trains
and evaluates at 256, so the registered input size is 256.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._attention import check_size
from .registry import register

# 64 is the smallest multiple of 32 whose last stage (2x2) holds a whole 2x2 patch, so no resizing happens.
SMALL_SIZES = {"mobilevit_xxs": 64, "mobilevit_xs": 64, "mobilevit_s": 64}

_PAPER = ("Mehta & Rastegari, MobileViT: Light-weight, General-purpose, and Mobile-friendly Vision Transformer, "
          "ICLR 2022")


def conv_bn_act(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1,
                act: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(in_ch, out_ch, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_ch)]
    if act:
        layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def _make_divisible(value: float, divisor: int) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """MobileNetV2 block with SiLU: 1x1 expand, 3x3 depthwise, 1x1 project (+ identity when shapes allow)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = _make_divisible(int(round(in_ch * expand_ratio)), 8)
        self.block = nn.Sequential(conv_bn_act(in_ch, hidden, 1), conv_bn_act(hidden, hidden, 3, stride, hidden),
                                   conv_bn_act(hidden, out_ch, 1, act=False))
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_residual else self.block(x)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv_proj = nn.Linear(dim, 3 * dim, bias=True)
        self.out_proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv_proj(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, C)
        return self.out_proj(x)


class TransformerLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, num_heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.SiLU(), nn.Linear(ffn_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class MobileViTBlock(nn.Module):
    """Local 3x3 conv + 1x1 to width d; unfold 2x2 patches; L transformer layers; fold; 1x1 back; fuse by 3x3."""

    def __init__(self, channels: int, dim: int, ffn_dim: int, depth: int, num_heads: int = 4, patch: int = 2):
        super().__init__()
        self.patch = patch
        self.conv_3x3_in = conv_bn_act(channels, channels, 3)
        self.conv_1x1_in = nn.Conv2d(channels, dim, 1, bias=False)
        self.transformer = nn.Sequential(*[TransformerLayer(dim, ffn_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.conv_1x1_out = conv_bn_act(dim, channels, 1)
        self.conv_3x3_out = conv_bn_act(2 * channels, channels, 3)

    def unfold(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        p = self.patch
        B, C, H, W = x.shape
        new_h, new_w = math.ceil(H / p) * p, math.ceil(W / p) * p
        resized = (new_h, new_w) != (H, W)
        if resized:
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
        nh, nw = new_h // p, new_w // p
        x = x.reshape(B * C * nh, p, nw, p).transpose(1, 2)           # (B*C*nh, nw, p, p)
        x = x.reshape(B, C, nh * nw, p * p).transpose(1, 3)           # (B, P, N, C)
        x = x.reshape(B * p * p, nh * nw, C)
        return x, dict(B=B, size=(H, W), resized=resized, nh=nh, nw=nw)

    def fold(self, x: torch.Tensor, info: dict) -> torch.Tensor:
        p, B, nh, nw = self.patch, info["B"], info["nh"], info["nw"]
        C = x.shape[-1]
        x = x.contiguous().view(B, p * p, nh * nw, C).transpose(1, 3)  # (B, C, N, P)
        x = x.reshape(B * C * nh, nw, p, p).transpose(1, 2).reshape(B, C, nh * p, nw * p)
        if info["resized"]:
            x = F.interpolate(x, size=info["size"], mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        y = self.conv_1x1_in(self.conv_3x3_in(x))
        patches, info = self.unfold(y)
        patches = self.norm(self.transformer(patches))
        y = self.conv_1x1_out(self.fold(patches, info))
        return self.conv_3x3_out(torch.cat([shortcut, y], dim=1))


class MobileViT(nn.Module):
    def __init__(self, image_size: int, num_classes: int, channels, dims, ffn_dims, expand_ratio: int):
        super().__init__()
        check_size("MobileViT", image_size, 32)
        c1, c2, c3, c4, c5 = channels
        layers: list[nn.Module] = [conv_bn_act(3, 16, 3, 2), InvertedResidual(16, c1, 1, expand_ratio)]
        layers += [InvertedResidual(c1, c2, 2, expand_ratio), InvertedResidual(c2, c2, 1, expand_ratio),
                   InvertedResidual(c2, c2, 1, expand_ratio)]
        in_ch = c2
        for out_ch, dim, ffn, depth in zip((c3, c4, c5), dims, ffn_dims, (2, 4, 3)):
            layers += [InvertedResidual(in_ch, out_ch, 2, expand_ratio), MobileViTBlock(out_ch, dim, ffn, depth)]
            in_ch = out_ch
        layers.append(conv_bn_act(in_ch, min(4 * in_ch, 960), 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(min(4 * in_ch, 960), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(-2, -1)))


@register("mobilevit_xxs", kind="hybrid", paper=_PAPER, input_size=256)
def mobilevit_xxs(image_size: int = 256, num_classes: int = 1000) -> nn.Module:
    """MobileViT-XXS: channels 16-24-48-64-80, d 64-80-96, FFN 2d, L 2-4-3, MV2 expansion 2, head 320."""
    return MobileViT(image_size, num_classes, (16, 24, 48, 64, 80), (64, 80, 96), (128, 160, 192), 2)


@register("mobilevit_xs", kind="hybrid", paper=_PAPER, input_size=256)
def mobilevit_xs(image_size: int = 256, num_classes: int = 1000) -> nn.Module:
    """MobileViT-XS: channels 32-48-64-80-96, d 96-120-144, FFN 2d, L 2-4-3, MV2 expansion 4, head 384."""
    return MobileViT(image_size, num_classes, (32, 48, 64, 80, 96), (96, 120, 144), (192, 240, 288), 4)


@register("mobilevit_s", kind="hybrid", paper=_PAPER, input_size=256)
def mobilevit_s(image_size: int = 256, num_classes: int = 1000) -> nn.Module:
    """MobileViT-S: channels 32-64-96-128-160, d 144-192-240, FFN 2d, L 2-4-3, MV2 expansion 4, head 640."""
    return MobileViT(image_size, num_classes, (32, 64, 96, 128, 160), (144, 192, 240), (288, 384, 480), 4)
