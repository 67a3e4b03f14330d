"""Convolutional block families, and ``BlockSpec``, a hashable description that builds one of them.

The micro-benchmark suite, the held-out test set, the FBNet space and the examples all build their
blocks from here, so a block means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

__all__ = [
    "BlockSpec", "FAMILIES", "ACTIVATIONS", "build_block", "ConvBNAct", "MBConv", "DepthwiseSeparable", "BasicBlock",
    "Bottleneck", "SqueezeExcite", "ShuffleUnit", "Skip", "Classifier",
]


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True), "relu6": lambda: nn.ReLU6(inplace=True),
    "hswish": lambda: nn.Hardswish(inplace=True), "silu": lambda: nn.SiLU(inplace=True),
}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ConvBNAct(nn.Sequential):
    """conv -> batch norm -> optional activation; the unit every family is made of."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 act: str | None = "relu"):
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(c_out)]
        if act:
            layers.append(_activation(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, two 1x1 convs, a sigmoid gate multiplied into the input."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        scale = x.mean((2, 3), keepdim=True)
        scale = torch.sigmoid(self.expand(torch.relu(self.reduce(scale))))
        return x * scale


class MBConv(nn.Module):
    """Inverted residual (MobileNetV2 / FBNet): 1x1 expand, kxk depthwise, 1x1 project, residual if shapes match."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, expansion: int = 6,
                 groups: int = 1, se: bool = False, act: str = "relu"):
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNAct(c_in, hidden, 1, groups=groups, act=act))
        layers.append(ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden))
        layers.append(ConvBNAct(hidden, c_out, 1, groups=groups, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        out = self.body(x)
        return out + x if self.residual else out


class DepthwiseSeparable(nn.Sequential):
    """MobileNetV1 unit: kxk depthwise then 1x1 pointwise, each with BN and activation."""


    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, act: str = "relu"):
        super().__init__(ConvBNAct(c_in, c_in, kernel, stride, groups=c_in, act=act),
                         ConvBNAct(c_in, c_out, 1, act=act))


class _Residual(nn.Module):
    def __init__(self, body: nn.Module, c_in: int, c_out: int, stride: int, act: str = "relu"):
        super().__init__()
        self.body = body
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out
                         else ConvBNAct(c_in, c_out, 1, stride, act=None))
        self.act = _activation(act)

    def forward(self, x):
        return self.act(self.body(x) + self.shortcut(x))


class BasicBlock(_Residual):
    """ResNet basic block: two kxk convs (optionally grouped) and a shortcut."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1, se: bool = False,
                 act: str = "relu"):
        layers = [ConvBNAct(c_in, c_out, kernel, stride, groups=groups, act=act),
                  ConvBNAct(c_out, c_out, kernel, groups=groups, act=None)]
        if se:
            layers.append(SqueezeExcite(c_out))
        super().__init__(nn.Sequential(*layers), c_in, c_out, stride, act)


class Bottleneck(_Residual):
    """ResNet / ResNeXt bottleneck: 1x1 reduce, kxk (grouped for ResNeXt), 1x1 expand, shortcut."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 reduction: int = 4, se: bool = False, act: str = "relu"):
        mid = max(groups, (c_out // reduction) // groups * groups)
        layers = [ConvBNAct(c_in, mid, 1, act=act), ConvBNAct(mid, mid, kernel, stride, groups=groups, act=act),
                  ConvBNAct(mid, c_out, 1, act=None)]
        if se:
            layers.append(SqueezeExcite(c_out))
        super().__init__(nn.Sequential(*layers), c_in, c_out, stride, act)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: split channels, 1x1-dw-1x1 on one half, concatenate and shuffle."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.stride = stride
        branch_out = c_out // 2
        branch_in = c_in if stride > 1 else c_in // 2
        self.branch = nn.Sequential(ConvBNAct(branch_in, branch_out, 1),
                                    ConvBNAct(branch_out, branch_out, kernel, stride, groups=branch_out, act=None),
                                    ConvBNAct(branch_out, branch_out, 1))
        self.proj = (nn.Sequential(ConvBNAct(c_in, c_in, kernel, stride, groups=c_in, act=None),
                                   ConvBNAct(c_in, branch_out, 1)) if stride > 1 else None)

    def forward(self, x):
        if self.proj is None:
            keep, work = x.chunk(2, dim=1)
        else:
            keep, work = self.proj(x), x
        out = torch.cat((keep, self.branch(work)), dim=1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class Classifier(nn.Sequential):
    """Network head: global average pool, flatten, fully connected layer."""

    def __init__(self, c_in: int, classes: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, classes))


class Skip(nn.Module):
    """FBNet's skip candidate: identity, or a 1x1 projection when the stride or width changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.proj = None if stride == 1 and c_in == c_out else ConvBNAct(c_in, c_out, 1, stride, act=None)

    def forward(self, x):
        return x if self.proj is None else self.proj(x)


FAMILIES: dict[str, Callable[[BlockSpec], nn.Module]] = {
    "mbconv": lambda s: MBConv(s.c_in, s.c_out, s.kernel, s.stride, s.expansion, s.groups, s.se, s.act),
    "conv_bn_relu": lambda s: ConvBNAct(s.c_in, s.c_out, s.kernel, s.stride, s.groups, s.act),
    "dw_separable": lambda s: DepthwiseSeparable(s.c_in, s.c_out, s.kernel, s.stride, s.act),
    "basic": lambda s: BasicBlock(s.c_in, s.c_out, s.kernel, s.stride, s.groups, s.se, s.act),
    "bottleneck": lambda s: Bottleneck(s.c_in, s.c_out, s.kernel, s.stride, s.groups, se=s.se, act=s.act),
    "shuffle": lambda s: ShuffleUnit(s.c_in, s.c_out, s.kernel, s.stride),
    "skip": lambda s: Skip(s.c_in, s.c_out, s.stride),
    # Stems and transitions: the window ops whose cost per element differs from BN or activations.
    "classifier": lambda s: Classifier(s.c_in, s.c_out),
    "maxpool": lambda s: nn.MaxPool2d(s.kernel, s.stride, s.kernel // 2),
    "avgpool": lambda s: nn.AvgPool2d(s.kernel, s.stride, s.kernel // 2),
}


@dataclass(frozen=True)
class BlockSpec:
    """A block family with its hyper-parameters and the input it is measured on (batch included)."""

    family: str
    c_in: int
    c_out: int
    resolution: int
    stride: int = 1
    kernel: int = 3
    expansion: int = 1
    groups: int = 1
    se: bool = False
    batch: int = 1
    act: str = "relu"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.c_in, self.resolution, self.resolution)

    @property
    def key(self) -> str:
        """A stable, readable identifier; the resume logic of a profiling run matches on it."""
        extras = f"_e{self.expansion}" if self.family == "mbconv" else ""
        extras += f"_g{self.groups}" if self.groups != 1 else ""
        extras += "_se" if self.se else ""
        extras += f"_{self.act}" if self.act != "relu" else ""
        return (f"{self.family}_k{self.kernel}{extras}_c{self.c_in}-{self.c_out}_r{self.resolution}"
                f"_s{self.stride}_b{self.batch}")

    def build(self, seed: int | None = None) -> nn.Module:
        """The block; with ``seed``, its weights are drawn from a generator seeded with it, and the caller's
        random state is left as it was."""
        if self.family not in FAMILIES:
            raise ValueError(f"unknown block family {self.family!r}: use one of {', '.join(FAMILIES)}")
        if seed is None:
            return FAMILIES[self.family](self)
        with torch.random.fork_rng(devices=[]):  # blocks are built on the CPU: only its generator is used
            torch.default_generator.manual_seed(seed)
            return FAMILIES[self.family](self)

    def to_dict(self) -> dict:
        return asdict(self)


def build_block(spec: BlockSpec | dict) -> nn.Module:
    """Build a block from a ``BlockSpec`` or its dict form (as stored in a JSONL dataset)."""
    return (spec if isinstance(spec, BlockSpec) else BlockSpec(**spec)).build()
