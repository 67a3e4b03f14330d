"""Transformer and hybrid block families for the micro-benchmark suite: attention over tokens, MLPs, patch
embedding, window attention and a MobileViT-style conv-attention block.

They exercise what CNN blocks never do: matrix multiplies with many rows (token MLPs, projections), fused and
explicit attention, softmax, LayerNorm, GELU, and the permutes and copies attention needs. Token blocks take
``(batch, tokens, width)``; a ``BlockSpec`` of a token family describes a ``resolution x resolution`` grid of
tokens of width ``c_in``, with ``heads`` heads and an MLP ratio of ``expansion``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..errors import InvalidInput

_logger = logging.getLogger(__name__)

__all__ = ["TokenAttention", "TokenMLP", "PatchEmbed", "WindowAttention", "MobileViTBlock", "ConvNeXtBlock",
           "TokenConvMLP", "TOKEN_FAMILIES"]


class TokenAttention(nn.Module):
    """Pre-norm multi-head self-attention with a residual: ``x + proj(attention(qkv(norm(x))))``.

    ``explicit`` computes ``softmax(q k^T * scale + bias) v`` with matrix multiplies and a learned bias per
    head and key, as LeViT, EfficientFormer and Swin do; otherwise the fused ``scaled_dot_product_attention``.
    """

    def __init__(self, width: int, heads: int, explicit: bool = False, tokens: int = 0):
        super().__init__()
        if width % heads:
            raise InvalidInput(f"attention width {width} is not divisible by {heads} heads")
        self.heads, self.explicit = heads, explicit
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.bias = nn.Parameter(torch.zeros(heads, 1, tokens)) if explicit else None

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        if self.explicit:
            scores = (q @ k.transpose(-2, -1)) * (width // self.heads) ** -0.5
            if self.bias is not None and self.bias.shape[-1] == tokens:
                scores = scores + self.bias
            out = scores.softmax(dim=-1) @ v
        else:
            out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attend(self.norm(x))


class TokenMLP(nn.Module):
    """Pre-norm transformer MLP with a residual: ``x + fc2(GELU(fc1(norm(x))))``."""

    def __init__(self, width: int, ratio: int = 4):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width * ratio)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(width * ratio, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class PatchEmbed(nn.Module):
    """ViT's patch embedding: a ``patch x patch`` convolution with that stride, flattened to tokens, normalised."""

    def __init__(self, c_in: int, width: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(c_in, width, patch, patch)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class WindowAttention(nn.Module):
    """Swin's window attention on a token grid: partition into ``window x window`` windows, explicit attention
    with a relative position bias in each, merge back, residual."""

    def __init__(self, width: int, heads: int, side: int, window: int):
        super().__init__()
        if side % window:
            raise InvalidInput(f"token grid {side}x{side} does not split into {window}x{window} windows")
        self.side, self.window = side, window
        self.attention = TokenAttention(width, heads, explicit=True, tokens=window * window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, width = x.shape
        side, window = self.side, self.window
        grid = self.attention.norm(x).view(batch, side // window, window, side // window, window, width)
        windows = grid.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, width)
        out = self.attention.attend(windows).view(batch, side // window, side // window, window, window, width)
        return x + out.permute(0, 1, 3, 2, 4, 5).reshape(batch, side * side, width)


class MobileViTBlock(nn.Module):
    """MobileViT's block: local 3x3 and 1x1 convs, 2x2 patches unfolded into token sequences, one transformer
    layer, folded back, a 1x1 projection, concatenation with the input and a 3x3 fusion conv."""

    def __init__(self, channels: int, width: int, heads: int, ratio: int = 2):
        super().__init__()
        self.local = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                   nn.SiLU(), nn.Conv2d(channels, width, 1, bias=False))
        self.attention = TokenAttention(width, heads)
        self.mlp = TokenMLP(width, ratio)
        self.project = nn.Sequential(nn.Conv2d(width, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.SiLU())
        self.fuse = nn.Sequential(nn.Conv2d(2 * channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width_px = x.shape
        y = self.local(x)
        d = y.shape[1]
        patches = y.reshape(batch, d, height // 2, 2, width_px // 2, 2).permute(0, 3, 5, 2, 4, 1)
        tokens = patches.reshape(batch * 4, (height // 2) * (width_px // 2), d)
        tokens = self.mlp(self.attention(tokens))
        y = tokens.reshape(batch, 2, 2, height // 2, width_px // 2, d).permute(0, 5, 3, 1, 4, 2)
        y = self.project(y.reshape(batch, d, height, width_px))
        return self.fuse(torch.cat((x, y), dim=1))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block: 7x7 depthwise conv, LayerNorm over channels (channels-last), a 4x GELU MLP, residual."""

    def __init__(self, channels: int, kernel: int = 7, ratio: int = 4):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels)
        self.norm = nn.LayerNorm(channels)
        self.fc1 = nn.Linear(channels, ratio * channels)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(ratio * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        return x + self.fc2(self.act(self.fc1(y))).permute(0, 3, 1, 2)


class TokenConvMLP(nn.Module):
    """PVTv2's MLP: fc1, the tokens turned into a map for a 3x3 depthwise conv and back, GELU, fc2.

    PVTv2 writes the map as ``x.transpose(1, 2).reshape(B, C, H, W)``, a channels-last view the conv reads in
    place; with ``contiguous`` the map is made NCHW first (``.contiguous()`` after the transpose, as much
    transformer code does before a conv), a transposing copy whose innermost stride is the width; the conv's
    NCHW output then goes back to tokens as a transposed view, which fc2's matrix multiply reads in place.
    """

    def __init__(self, width: int, side: int, ratio: int = 4, contiguous: bool = False):
        super().__init__()
        hidden = width * ratio
        self.side, self.contiguous = side, contiguous
        self.fc1 = nn.Linear(width, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        y = self.fc1(x).transpose(1, 2)
        if self.contiguous:
            y = y.contiguous()
        y = self.dwconv(y.reshape(batch, -1, self.side, self.side)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(y))


# family -> builder from a BlockSpec (heads: attention heads; expansion: MLP ratio; kernel: patch or window).
TOKEN_FAMILIES = {
    "attention": lambda s: TokenAttention(s.c_in, s.heads),
    "attention_explicit": lambda s: TokenAttention(s.c_in, s.heads, explicit=True, tokens=s.resolution ** 2),
    "mlp": lambda s: TokenMLP(s.c_in, s.expansion),
    "window_attention": lambda s: WindowAttention(s.c_in, s.heads, s.resolution, s.kernel),
    "patch_embed": lambda s: PatchEmbed(s.c_in, s.c_out, s.kernel),
    "mobilevit": lambda s: MobileViTBlock(s.c_in, s.c_out, s.heads, s.expansion),
    "convnext": lambda s: ConvNeXtBlock(s.c_in, s.kernel, s.expansion),
    # Attention written out (q @ k^T, softmax, @ v) with 1-12 heads, rows of 196-3136 keys, no bias table.
    "attention_heads": lambda s: TokenAttention(s.c_in, s.heads, explicit=True),
    "token_conv": lambda s: TokenConvMLP(s.c_in, s.resolution, s.expansion, contiguous=s.variant == "contiguous"),
}
