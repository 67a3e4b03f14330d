"""Building pieces shared by the zoo's convolutional networks (private: not a network module).

Only torch is used here; every piece is made of standard ``torch.nn`` modules so that a latency model sees
the same operators a hand-written reference implementation would run.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

__all__ = [
    "make_divisible", "make_act", "ConvBNAct", "SqueezeExcite", "channel_shuffle", "ChannelShuffle",
    "InvertedResidual", "ClassifierHead", "init_weights",
]

ActFactory = Optional[Callable[..., nn.Module]]

_INPLACE_ACTS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.ELU, nn.LeakyReLU)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going more than 10% below it (the rule of
    the MobileNet/EfficientNet reference code)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def make_act(act: ActFactory) -> nn.Module:
    """An activation module from its class (``None`` -> identity); in-place where torch allows it."""
    if act is None:
        return nn.Identity()
    if isinstance(act, type) and issubclass(act, _INPLACE_ACTS):
        return act(inplace=True)
    return act()


class ConvBNAct(nn.Sequential):
    """``Conv2d`` (no bias, "same" padding) -> ``BatchNorm2d`` -> activation (omitted when ``act`` is None)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: ActFactory = nn.ReLU, bn: bool = True, bias: bool | None = None, dilation: int = 1):
        padding = (kernel - 1) // 2 * dilation
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, stride, padding, dilation=dilation,
                                             groups=groups, bias=(not bn) if bias is None else bias)]
        if bn:
            layers.append(nn.BatchNorm2d(out_ch))
        if act is not None:
            layers.append(make_act(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., CVPR 2018) with 1x1 convolutions as the two FC layers:
    global average pool -> conv(C->r) + bias -> act -> conv(r->C) + bias -> gate -> rescale."""

    def __init__(self, channels: int, reduced: int, act: ActFactory = nn.ReLU, gate: ActFactory = nn.Sigmoid,
                 norm: bool = False):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.norm = nn.BatchNorm2d(reduced) if norm else nn.Identity()
        self.act = make_act(act)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.act(self.norm(self.reduce(self.pool(x))))))
        return x * scale


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: (N, g*c, H, W) -> view (N, g, c, H, W) -> transpose -> (N, c*g, H, W)."""
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, c, h, w)


class ChannelShuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class InvertedResidual(nn.Module):
    """The MobileNetV2 inverted bottleneck and its NAS descendants (MnasNet, EfficientNet, MobileNetV3, FBNet,
    ProxylessNAS): [1x1 expand -> act] -> kxk depthwise (stride) -> act -> [SE] -> 1x1 project (linear),
    plus the identity shortcut when the stride is 1 and the widths match.

    ``mid_ch == in_ch`` drops the expansion conv (the depthwise-separable first block of MobileNetV2/EfficientNet)
    unless ``force_expand``; ``groups > 1`` makes the 1x1 convs grouped with a channel shuffle before the
    depthwise conv (FBNet's ``g2`` candidates, as in its reference code: the shuffle stays even where an e1 block
    has no expansion conv); ``se_ch > 0`` adds squeeze-and-excitation after the depthwise conv.
    """

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                 act: ActFactory = nn.ReLU, se_ch: int = 0, se_act: ActFactory = nn.ReLU,
                 se_gate: ActFactory = nn.Sigmoid, skip: bool | None = None, groups: int = 1,
                 force_expand: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        if mid_ch != in_ch or force_expand:
            layers.append(ConvBNAct(in_ch, mid_ch, 1, groups=groups, act=act))
        if groups > 1:
            layers.append(ChannelShuffle(groups))
        layers.append(ConvBNAct(mid_ch, mid_ch, kernel, stride, groups=mid_ch, act=act))
        if se_ch > 0:
            layers.append(SqueezeExcite(mid_ch, se_ch, act=se_act, gate=se_gate))
        layers.append(ConvBNAct(mid_ch, out_ch, 1, groups=groups, act=None))
        self.block = nn.Sequential(*layers)
        can_skip = stride == 1 and in_ch == out_ch
        self.use_skip = can_skip if skip is None else (skip and can_skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_skip else out


class ClassifierHead(nn.Module):
    """Global average pool -> flatten -> [dropout] -> linear."""

    def __init__(self, in_ch: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.flatten(self.pool(x))))


def init_weights(model: nn.Module) -> nn.Module:
    """He-normal (fan-out) convolutions and unit norms, the reference initialisation of most of these networks.

    Weights are random either way; this keeps activations at a sane magnitude through deep stacks (torch's
    default conv init shrinks them layer by layer, towards denormals that would distort CPU timings). Linear
    layers keep torch's default initialisation (re-initialising VGG's 100 M FC weights costs a second).
    Nothing is done for a model built on the meta device (there is nothing to initialise; counting parameters
    or FLOPs there stays instant).
    """
    if any(p.is_meta for p in model.parameters()):
        return model
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    return model


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an (N, C, H, W) tensor, computed the way the reference code's
    ``channels_first`` LayerNorm does (mean and biased variance over dim 1, then affine)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]
