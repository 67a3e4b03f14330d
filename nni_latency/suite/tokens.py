"""Transformer, hybrid and sequence block families for the micro-benchmark suite: attention over tokens, MLPs, patch
embedding, window attention (Swin's, with its relative-position bias), LeViT's attention, a MobileViT-style
conv-attention block, CoaT's convolutional position encoding, and sequence models (embeddings and recurrent layers,
temporal convolutions).

They exercise what CNN blocks never do: matrix multiplies with many rows (token MLPs, projections), fused and
explicit attention, softmax, LayerNorm, GELU, the permutes, copies and gathers attention needs, and recurrent
layers. Token blocks take ``(batch, tokens, width)``; a ``BlockSpec`` of a token family describes a ``resolution x
resolution`` grid of tokens of width ``c_in``, with ``heads`` heads and an MLP ratio of ``expansion``. Sequence
blocks take ``resolution`` steps (``TOKEN_INPUTS``).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..errors import InvalidInput

_logger = logging.getLogger(__name__)

__all__ = ["TokenAttention", "TokenMLP", "PatchEmbed", "WindowAttention", "MobileViTBlock", "ConvNeXtBlock",
           "TokenConvMLP", "RelativeWindowAttention", "BiasedAttention", "ConvPosEncoding", "SequenceEncoder",
           "TemporalBlock", "TOKEN_FAMILIES", "TOKEN_INPUTS", "TCN_DILATIONS"]


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


class RelativeWindowAttention(nn.Module):
    """Swin's (shifted) window attention, pre-norm with a residual: the map rolled by half a window when ``shift``,
    partitioned into windows, a relative-position bias gathered from a ``(2w-1)^2 x heads`` table by a precomputed
    index at every call (an ``index`` call) and added to the scores with the shifted windows' mask, the windows
    merged back and rolled back."""

    def __init__(self, width: int, heads: int, side: int, window: int, shift: bool):
        super().__init__()
        if side % window or width % heads:
            raise InvalidInput(f"Swin attention needs a {side}x{side} grid of {window}x{window} windows and a width "
                               f"{width} divisible by {heads} heads")
        self.side, self.window, self.heads, self.shift = side, window, heads, window // 2 if shift else 0
        self.norm, self.qkv, self.proj = nn.LayerNorm(width), nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.table = nn.Parameter(0.02 * torch.randn((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        offsets = (coords[:, :, None] - coords[:, None, :]) + window - 1  # 2 x w^2 x w^2, each in [0, 2w - 2]
        self.register_buffer("index", (offsets[0] * (2 * window - 1) + offsets[1]).flatten())
        windows = (side // window) ** 2
        self.register_buffer("mask", torch.zeros(windows, 1, window ** 2, window ** 2) if shift else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        side, w, heads = self.side, self.window, self.heads
        y = self.norm(x).view(batch, side, side, width)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = y.view(batch, side // w, w, side // w, w, width).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, width)
        q, k, v = self.qkv(y).reshape(y.shape[0], w * w, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        scores = (q * (width // heads) ** -0.5) @ k.transpose(-2, -1)
        bias = self.table[self.index].view(w * w, w * w, heads).permute(2, 0, 1).contiguous()
        scores = scores + bias.unsqueeze(0)
        if self.mask is not None:
            scores = (scores.view(batch, -1, heads, w * w, w * w) + self.mask).view(-1, heads, w * w, w * w)
        y = self.proj((scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, w * w, width))
        y = y.view(batch, side // w, side // w, w, w, width).permute(0, 1, 3, 2, 4, 5).reshape(batch, side, side, width)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        return x + y.reshape(batch, tokens, width)


class BiasedAttention(nn.Module):
    """LeViT's and EfficientFormer's attention with a residual: bias-free projections (``mm``) each followed by batch
    norm, 16-dim keys, 32-dim values, the attention biases gathered from a ``heads x tokens`` table by a precomputed
    index of offsets at every call (an ``index`` call), a Hardswish before the output projection."""

    def __init__(self, width: int, heads: int, side: int, key_dim: int = 16, value_dim: int = 32):
        super().__init__()
        self.heads, self.split = heads, (key_dim, key_dim, value_dim)
        self.qkv = nn.Linear(width, heads * sum(self.split), bias=False)
        self.qkv_norm = nn.BatchNorm1d(heads * sum(self.split))
        self.proj = nn.Sequential(nn.Hardswish(), nn.Linear(heads * value_dim, width, bias=False))
        self.proj_norm = nn.BatchNorm1d(width)
        points = torch.stack(torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")).flatten(1)
        offsets = (points[:, :, None] - points[:, None, :]).abs()
        self.biases = nn.Parameter(torch.zeros(heads, side * side))
        self.register_buffer("index", offsets[0] * side + offsets[1])  # tokens x tokens, into the biases

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        qkv = self.qkv_norm(self.qkv(x).flatten(0, 1)).view(batch, tokens, self.heads, -1)
        q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split(self.split, dim=3))
        scores = q @ k.transpose(-2, -1) * self.split[0] ** -0.5 + self.biases[:, self.index]
        y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, tokens, -1)
        return x + self.proj_norm(self.proj(y).flatten(0, 1)).view(batch, tokens, width)


class ConvPosEncoding(nn.Module):
    """CoaT's convolutional position encoding (CPVT's): the tokens after the class token made a map by a transposing
    copy, a 3x3 depthwise conv added to it, the map read back as tokens (a transposed view) and concatenated after the
    class token (a copy of strided tokens)."""

    def __init__(self, width: int, side: int):
        super().__init__()
        self.side, self.proj = side, nn.Conv2d(width, width, 3, padding=1, groups=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, width = x.shape
        cls, tokens = x[:, :1], x[:, 1:]
        feat = tokens.transpose(1, 2).reshape(batch, width, self.side, self.side)
        feat = self.proj(feat) + feat
        return torch.cat((cls, feat.flatten(2).transpose(1, 2)), dim=1)


class SequenceEncoder(nn.Module):
    """A language or speech model's encoder on ``steps`` steps of ``width`` features: word, position and segment
    embeddings gathered for the sequence's ids (buffers: the suite's inputs are floats) and added to its features, a
    2-layer bidirectional LSTM (oneDNN runs each layer and direction whole), and for ``gru`` a GRU layer on top
    (ATen runs it step by step: a matrix multiply and the gates' element-wise calls per step)."""

    def __init__(self, width: int, hidden: int, steps: int, gru: bool = False, vocabulary: int = 8192):
        super().__init__()
        self.words, self.positions = nn.Embedding(vocabulary, width), nn.Embedding(steps, width)
        self.segments = nn.Embedding(2, width)
        self.register_buffer("ids", torch.randint(0, vocabulary, (steps,)))
        self.register_buffer("steps", torch.arange(steps))
        self.lstm = nn.LSTM(width, hidden, num_layers=2, batch_first=True, bidirectional=True)
        self.gru = nn.GRU(2 * hidden, hidden, batch_first=True) if gru else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.words(self.ids) + self.positions(self.steps) + self.segments(self.steps % 2)
        y = self.lstm(x + tokens)[0]
        return y if self.gru is None else self.gru(y)[0]


class TemporalBlock(nn.Module):
    """Conv-TasNet's temporal block on (batch, channels, samples): a 1x1 conv to ``hidden`` channels, PReLU and global
    layer norm (a one-group GroupNorm), a depthwise 1-D conv dilated by ``dilation`` (above 6 it pads wider than
    oneDNN's depthwise kernel takes), PReLU and norm again, a 1x1 conv back, residual."""

    def __init__(self, channels: int, hidden: int, kernel: int = 3, dilation: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(channels, hidden, 1), nn.PReLU(), nn.GroupNorm(1, hidden),
            nn.Conv1d(hidden, hidden, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, groups=hidden),
            nn.PReLU(), nn.GroupNorm(1, hidden), nn.Conv1d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


# The dilations of a temporal block (``BlockSpec.variant`` of ``tcn``; none is 1): Conv-TasNet repeats 1, 2, ..., 128.
TCN_DILATIONS = ("", *(f"d{2 ** i}" for i in range(1, 8)))
# The input of the sequence families (time steps x features; channels x samples; a class token, then a grid).
TOKEN_INPUTS = {
    "sequence": lambda s: (s.batch, s.resolution, s.c_in),
    "tcn": lambda s: (s.batch, s.c_in, s.resolution),
    "conv_pos": lambda s: (s.batch, s.resolution ** 2 + 1, s.c_in),
}

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
    # What attention networks run that the families above lack (issue 28): a Swin stage's pair of blocks (windows,
    # shifted windows, relative-position gathers, GELU MLPs), LeViT's attention (bias-free projections, gathered
    # biases), CoaT's convolutional position encoding; and sequence models (c_out: hidden width; resolution: steps).
    "swin": lambda s: nn.Sequential(*(nn.Sequential(RelativeWindowAttention(s.c_in, s.heads, s.resolution, s.kernel,
                                                                            shift), TokenMLP(s.c_in, s.expansion))
                                      for shift in (False, True))),
    "levit": lambda s: BiasedAttention(s.c_in, s.heads, s.resolution),
    "conv_pos": lambda s: ConvPosEncoding(s.c_in, s.resolution),
    "sequence": lambda s: SequenceEncoder(s.c_in, s.c_out, s.resolution, gru=s.variant == "gru"),
    "tcn": lambda s: TemporalBlock(s.c_in, s.c_out, s.kernel, int(s.variant.removeprefix("d") or 1)),
}
