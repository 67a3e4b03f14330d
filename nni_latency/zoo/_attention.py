"""Shared pieces of the zoo's transformer and hybrid networks: attention, MLPs, layer scale, conv/linear + BN.

Private (underscore) module: the registry does not import it for networks. It depends on torch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Mlp", "MultiHeadAttention", "LayerScale", "LayerScale2d", "ConvBN", "LinearBN", "BNLinear",
    "AttentionBias", "abs_offset_index", "window_partition", "window_reverse", "check_size",
]


def check_size(name: str, image_size: int, multiple: int, minimum: int = 0) -> None:
    """Raise a one-line ``ValueError`` unless ``image_size`` is a positive multiple of ``multiple`` (>= minimum)."""
    if image_size <= 0 or image_size % multiple or image_size < minimum:
        floor = f" and at least {minimum}" if minimum else ""
        raise ValueError(f"{name} needs an image size that is a multiple of {multiple}{floor}, got {image_size}")


class Mlp(nn.Module):
    """Token MLP: Linear -> activation -> Linear (the transformer FFN)."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None, act: type[nn.Module] = nn.GELU,
                 bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = act()
        self.fc2 = nn.Linear(hidden, out_dim or dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MultiHeadAttention(nn.Module):
    """Global multi-head self-attention over tokens ``(B, N, C)``.

    ``fused=True`` calls ``F.scaled_dot_product_attention`` (what timm's ViT, and so DeiT, runs today);
    ``fused=False`` writes it out: ``softmax(q * scale @ k^T) @ v``.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, fused: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused = fused
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch, channels last (``... x C``)."""

    def __init__(self, dim: int, init_value: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class LayerScale2d(nn.Module):
    """Per-channel learnable scale of a residual branch, channels first (``B x C x H x W``)."""

    def __init__(self, dim: int, init_value: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class ConvBN(nn.Sequential):
    """Conv2d (no bias) followed by BatchNorm2d."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 1, stride: int = 1, padding: int | None = None,
                 groups: int = 1, bn_weight_init: float = 1.0):
        super().__init__()
        padding = kernel_size // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        nn.init.constant_(self.bn.weight, bn_weight_init)


class LinearBN(nn.Module):
    """Linear (no bias) followed by BatchNorm1d over every token (LeViT's ``Linear_BN``)."""

    def __init__(self, in_features: int, out_features: int, bn_weight_init: float = 1.0):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)
        nn.init.constant_(self.bn.weight, bn_weight_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return self.bn(x.flatten(0, 1)).reshape_as(x)


class BNLinear(nn.Sequential):
    """BatchNorm1d followed by Linear (LeViT's classifier ``BN_Linear``)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.linear = nn.Linear(in_features, out_features)


def abs_offset_index(resolution: int, stride: int = 1) -> torch.Tensor:
    """``(Nq, Nk)`` index of the |dy|, |dx| offset between query and key positions on a square grid.

    Keys lie on the full ``resolution x resolution`` grid; queries on every ``stride``-th point of it (LeViT's
    subsampling attention), so the table the index points into has ``resolution ** 2`` entries.
    """
    k = torch.stack(torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")).flatten(1)
    steps = torch.arange(0, resolution, stride)
    q = torch.stack(torch.meshgrid(steps, steps, indexing="ij")).flatten(1)
    offset = (q[:, :, None] - k[:, None, :]).abs()
    return offset[0] * resolution + offset[1]


class AttentionBias(nn.Module):
    """Learned per-head attention biases indexed by absolute 2-D offset (LeViT, EfficientFormer, TinyViT).

    ``forward()`` returns the ``(heads, Nq, Nk)`` bias. As in the official code, eval mode gathers it once and
    reuses it (the reference implementations precompute ``self.ab`` in ``train(False)``); training gathers on
    every call.
    """

    def __init__(self, num_heads: int, resolution: int, stride: int = 1):
        super().__init__()
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, resolution * resolution))
        self.register_buffer("attention_bias_idxs", abs_offset_index(resolution, stride), persistent=False)
        self._cache: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True):
        super().train(mode)
        self._cache = {}
        return self

    def forward(self) -> torch.Tensor:
        if self.training:
            return self.attention_biases[:, self.attention_bias_idxs]
        key = str(self.attention_biases.device)
        if key not in self._cache:
            with torch.no_grad():
                self._cache[key] = self.attention_biases[:, self.attention_bias_idxs]
        return self._cache[key]

    def _apply(self, fn, recurse=True):  # .to()/.half(): the cached gather is stale
        self._cache = {}
        return super()._apply(fn, recurse)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * H/w * W/w, w * w, C)`` non-overlapping windows."""
    B, H, W, C = x.shape
    x = x.view(B, H // window, window, W // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, C)


def window_reverse(windows: torch.Tensor, window: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, w * w, C)`` -> ``(B, H, W, C)``."""
    C = windows.shape[-1]
    x = windows.view(-1, H // window, W // window, window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


class Residual(nn.Module):
    """``x + body(x)``: the residual wrapper LeViT and EfficientViT put around their token mixers and MLPs."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
