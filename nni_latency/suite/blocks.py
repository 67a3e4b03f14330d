"""Block families, ``BlockSpec`` (a hashable description that builds one of them) and ``ChainSpec`` (a short
sequence of blocks, as networks run them).

The micro-benchmark suite, the held-out test set, the FBNet space and the examples all build their
blocks from here, so a block means the same thing everywhere. Convolutional families live here; the
transformer and hybrid ones in ``tokens``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import InvalidInput
from .cell_ops import CELL_OPS, build_cell_op
from .tokens import TCN_DILATIONS, TOKEN_FAMILIES, TOKEN_INPUTS

__all__ = [
    "BlockSpec", "ChainSpec", "spec_from_dict", "FAMILIES", "TOKEN_INPUT_FAMILIES", "ACTIVATIONS", "build_block",
    "ConvBNAct", "MBConv", "DepthwiseSeparable", "BasicBlock", "Bottleneck", "SqueezeExcite", "ShuffleUnit", "Skip",
    "Classifier", "GhostBottleneck", "MixConv", "DenseLayer", "FullyConnected", "ConvAct", "StreamHead",
    "VECTOR_INPUT_FAMILIES", "OTHER_INPUTS", "VARIANTS", "FBNET_CANDIDATES", "Branches", "upsampling_stages", "aspp",
    "video_block",
]


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True), "relu6": lambda: nn.ReLU6(inplace=True),
    "hswish": lambda: nn.Hardswish(inplace=True), "silu": lambda: nn.SiLU(inplace=True), "gelu": lambda: nn.GELU(),
}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise InvalidInput(f"unknown activation {name!r}: use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


# FBNet's candidate blocks (Wu et al. 2019, Table 2): name -> (kernel, expansion, groups) of an MBConv; None marks
# the skip candidate. ``spaces.FBNetSpace`` searches over them; the held-out test set draws whole layers of them.
FBNET_CANDIDATES: dict[str, tuple[int, int, int] | None] = {
    "k3_e1": (3, 1, 1),
    "k3_e1_g2": (3, 1, 2),
    "k3_e3": (3, 3, 1),
    "k3_e6": (3, 6, 1),
    "k5_e1": (5, 1, 1),
    "k5_e1_g2": (5, 1, 2),
    "k5_e3": (5, 3, 1),
    "k5_e6": (5, 6, 1),
    "skip": None,
}


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


class GhostBottleneck(nn.Module):
    """GhostNet's bottleneck: two Ghost modules (half the channels from a 1x1 conv, half from a cheap depthwise
    conv on those, concatenated), a strided depthwise conv between them when downsampling, a shortcut."""

    class Ghost(nn.Module):
        def __init__(self, c_in: int, c_out: int, act: str | None):
            super().__init__()
            primary = -(-c_out // 2)
            self.primary = ConvBNAct(c_in, primary, 1, act=act)
            self.cheap = ConvBNAct(primary, primary, 3, groups=primary, act=act)
            self.c_out = c_out

        def forward(self, x):
            y = self.primary(x)
            return torch.cat((y, self.cheap(y)), dim=1)[:, :self.c_out]

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, expansion: int = 3, se: bool = False,
                 act: str = "relu"):
        super().__init__()
        hidden = c_in * expansion
        layers: list[nn.Module] = [self.Ghost(c_in, hidden, act)]
        if stride > 1:
            layers.append(ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=None))
        if se:
            layers.append(SqueezeExcite(hidden))
        layers.append(self.Ghost(hidden, c_out, None))
        self.body = nn.Sequential(*layers)
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            ConvBNAct(c_in, c_in, kernel, stride, groups=c_in, act=None), ConvBNAct(c_in, c_out, 1, act=None)))

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


class MixConv(nn.Module):
    """MixNet's block: 1x1 expand, the channels split into groups with 3x3, 5x5, ... depthwise kernels up to
    ``kernel``, concatenated, 1x1 project, residual when shapes match."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 5, stride: int = 1, expansion: int = 3,
                 act: str = "relu"):
        super().__init__()
        hidden = c_in * expansion
        kernels = list(range(3, max(kernel, 3) + 1, 2))
        splits = [hidden // len(kernels)] * len(kernels)
        splits[0] += hidden - sum(splits)
        self.splits = splits
        self.expand = ConvBNAct(c_in, hidden, 1, act=act)
        self.mixed = nn.ModuleList(nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False)
                                   for c, k in zip(splits, kernels))
        self.after = nn.Sequential(nn.BatchNorm2d(hidden), _activation(act))
        self.project = ConvBNAct(hidden, c_out, 1, act=None)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        parts = torch.split(self.expand(x), self.splits, dim=1)
        out = self.project(self.after(torch.cat([conv(p) for conv, p in zip(self.mixed, parts)], dim=1)))
        return out + x if self.residual else out


class DenseLayer(nn.Module):
    """DenseNet's layer: BN-ReLU-1x1 (4 x growth) then BN-ReLU-3x3 (growth), concatenated onto its input;
    ``c_out - c_in`` is the growth rate."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__()
        growth = max(1, c_out - c_in)
        self.body = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.Conv2d(c_in, 4 * growth, 1, bias=False),
                                  nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True),
                                  nn.Conv2d(4 * growth, growth, kernel, padding=kernel // 2, bias=False))

    def forward(self, x):
        return torch.cat((x, self.body(x)), dim=1)


class FullyConnected(nn.Sequential):
    """A fully connected layer with its activation, as in VGG's and AlexNet's heads (weight-bandwidth bound)."""

    def __init__(self, c_in: int, c_out: int, act: str = "relu"):
        super().__init__(nn.Linear(c_in, c_out), _activation(act))


class ConvAct(nn.Sequential):
    """conv (with bias, no batch norm) -> in-place activation, as VGG, AlexNet and SqueezeNet run it: the
    activation rewrites the conv's output where it lies (``relu_``, ``hardtanh_``, ``hardswish_``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, act: str = "relu"):
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2), _activation(act))


class StreamHead(nn.Sequential):
    """A classifier head whose weights exceed the last-level cache, so streaming them, not the FLOPs, sets its
    time: VGG's first fully connected layer on the flattened ``kernel x kernel`` map (7: 512 x 7 x 7 inputs), or
    a 1x1 conv head on a pooled map (``kernel`` 1, as MobileNetV3's), each with its in-place ReLU.

    (A 7x7 conv on the 7x7 map, the same layer written fully convolutionally, runs some 30x slower than its
    bytes on ATen's CPU kernels; no network the suite aims at writes it so.)
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 7):
        if kernel == 1:
            super().__init__(nn.Conv2d(c_in, c_out, 1), nn.ReLU(inplace=True))
        else:
            super().__init__(nn.Flatten(), nn.Linear(c_in * kernel * kernel, c_out), nn.ReLU(inplace=True))


class Branches(nn.Module):
    """Parallel branches on one input, summed (a decoder stage's learned and resized paths) or concatenated (ASPP)."""

    def __init__(self, *branches: nn.Module, concat: bool = False):
        super().__init__()
        self.branches, self.concat = nn.ModuleList(branches), concat

    def forward(self, x):
        outs = [branch(x) for branch in self.branches]
        return torch.cat(outs, dim=1) if self.concat else sum(outs[1:], outs[0])


def upsampling_stages(c_in: int, c_out: int, kernel: int = 2, pixel_shuffle: bool = False) -> nn.Sequential:
    """Two x2 stages of a decoder, each a learned path plus a 1x1 projection of its input resized: a U-Net or GAN
    decoder's (a ``kernel``-wide transposed conv, instance norm, ReLU; bilinear, then nearest as FPN's) or a
    super-resolution upsampler's (a 3x3 conv to 4x the channels and a pixel shuffle, as EDSR's; nearest)."""
    stages: list[nn.Module] = []
    for c, mode in ((c_in, "nearest" if pixel_shuffle else "bilinear"), (c_out, "nearest")):
        learned = (nn.Sequential(nn.Conv2d(c, 4 * c_out, 3, padding=1), nn.PixelShuffle(2)) if pixel_shuffle else
                   nn.Sequential(nn.ConvTranspose2d(c, c_out, kernel, 2, (kernel - 1) // 2, kernel % 2),
                                 nn.InstanceNorm2d(c_out, affine=True), nn.ReLU(inplace=True)))
        resized = nn.Sequential(nn.Conv2d(c, c_out, 1), nn.Upsample(scale_factor=2.0, mode=mode))
        stages += [Branches(learned, resized), *([nn.LeakyReLU(0.2, inplace=True)] if pixel_shuffle else [])]
    return nn.Sequential(*stages)


def aspp(c_in: int, c_out: int, resolution: int) -> nn.Sequential:
    """DeepLab's atrous spatial pyramid pooling: a 1x1 conv, a plain 3x3 at rate 6, depthwise-separable ones at rates 12
    and 18 (MobileNet's), the pooled image upsampled back (bilinear); concatenated and projected."""
    separable = [nn.Sequential(nn.Conv2d(c_in, c_in, 3, padding=rate, dilation=rate, groups=c_in, bias=False),
                               ConvBNAct(c_in, c_out, 1)) for rate in (12, 18)]
    dilated = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=6, dilation=6, bias=False), nn.BatchNorm2d(c_out),
                            nn.ReLU(inplace=True))
    pooled = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_in, c_out, 1), nn.ReLU(inplace=True),
                           nn.Upsample(size=(resolution, resolution), mode="bilinear"))
    return nn.Sequential(Branches(ConvBNAct(c_in, c_out, 1), dilated, *separable, pooled, concat=True),
                         ConvBNAct(5 * c_out, c_out, 1))


def video_block(channels: int, hidden: int) -> nn.Module:
    """A video network's bottleneck on (batch, channels, frames, height, width; 16 frames at 112 px, 2 at 14): a
    temporal 3x1x1 conv (SlowFast's), depthwise 3x3x3 (X3D's) and 1x3x3 convs, a 1x1x1 projection, residual."""
    layers: list[nn.Module] = []
    for c_in, c_out, kernel, groups in ((channels, hidden, (3, 1, 1), 1), (hidden, hidden, (3, 3, 3), hidden),
                                        (hidden, hidden, (1, 3, 3), hidden), (hidden, channels, (1, 1, 1), 1)):
        layers += [nn.Conv3d(c_in, c_out, kernel, padding=tuple(k // 2 for k in kernel), groups=groups, bias=False),
                   nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]
    return _Residual(nn.Sequential(*layers[:-1]), channels, channels, 1)


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
    # Operators real networks spend time in that the families above do not run.
    "ghost": lambda s: GhostBottleneck(s.c_in, s.c_out, s.kernel, s.stride, s.expansion, s.se, s.act),
    "mixconv": lambda s: MixConv(s.c_in, s.c_out, s.kernel, s.stride, s.expansion, s.act),
    "dense": lambda s: DenseLayer(s.c_in, s.c_out, s.kernel),
    "linear": lambda s: FullyConnected(s.c_in, s.c_out, s.act),
    # What real networks run that the families above do not (issue 17): weights streamed from memory, in-place
    # activations straight after a conv, few channels per group (RegNet, ResNeXt), cell-space ops at 32 px.
    "stream_head": lambda s: StreamHead(s.c_in, s.c_out, s.kernel),
    "stream_linear": lambda s: nn.Linear(s.c_in, s.c_out, bias=s.variant != "nobias"),  # mm without a bias
    "conv_act": lambda s: ConvAct(s.c_in, s.c_out, s.kernel, s.stride, s.act),
    "grouped_conv": lambda s: ConvBNAct(s.c_in, s.c_out, s.kernel, s.stride, s.groups, s.act),
    "cell_op": lambda s: build_cell_op(s.variant, s.c_in, s.c_out, s.kernel, s.stride),
    # Beyond classification (issue 28): decoders, dense prediction (dilated convs), video (3-D convs).
    "unet_up": lambda s: upsampling_stages(s.c_in, s.c_out, s.kernel),
    "sr_up": lambda s: upsampling_stages(s.c_in, s.c_out, pixel_shuffle=True),
    "aspp": lambda s: aspp(s.c_in, s.c_out, s.resolution),
    "video": lambda s: video_block(s.c_in, s.c_out),
    **TOKEN_FAMILIES,
}
# Families whose input is a token sequence (batch, resolution^2, c_in) or a vector (batch, c_in).
TOKEN_INPUT_FAMILIES = frozenset({"attention", "attention_explicit", "mlp", "window_attention", "token_conv",
                                  "attention_heads", "swin", "levit"})
VECTOR_INPUT_FAMILIES = frozenset({"linear", "stream_linear"})
# The input of the families that take none of those nor a map: sequences, signals (``tokens``) and video clips.
OTHER_INPUTS: dict[str, Callable[[BlockSpec], tuple[int, ...]]] = {
    **TOKEN_INPUTS, "video": lambda s: (s.batch, s.c_in, max(2, s.resolution // 7), s.resolution, s.resolution)}
# The op a family with variants runs (``BlockSpec.variant``); the other families have none.
VARIANTS: dict[str, tuple[str, ...]] = {"stream_linear": ("", "nobias"), "token_conv": ("", "contiguous"),
                                        "cell_op": CELL_OPS, "sequence": ("", "gru"), "tcn": TCN_DILATIONS}


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
    heads: int = 0  # attention heads of the token families (0 for the others)
    variant: str = ""  # the op of a family that has several (``VARIANTS``); "" for the others

    def __post_init__(self):
        if self.variant not in VARIANTS.get(self.family, ("",)):
            raise InvalidInput(f"block family {self.family!r} has no variant {self.variant!r}: use one of "
                             f"{', '.join(repr(v) for v in VARIANTS.get(self.family, ('',)))}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.family in OTHER_INPUTS:
            return OTHER_INPUTS[self.family](self)
        if self.family in TOKEN_INPUT_FAMILIES:
            return (self.batch, self.resolution * self.resolution, self.c_in)
        if self.family in VECTOR_INPUT_FAMILIES:
            return (self.batch, self.c_in)
        return (self.batch, self.c_in, self.resolution, self.resolution)

    @property
    def key(self) -> str:
        """A stable, readable identifier; the resume logic of a profiling run matches on it."""
        extras = f"_e{self.expansion}" if self.family == "mbconv" else ""
        extras += f"_g{self.groups}" if self.groups != 1 else ""
        extras += "_se" if self.se else ""
        extras += f"_{self.act}" if self.act != "relu" else ""
        extras += f"_h{self.heads}" if self.heads else ""
        extras += f"_{self.variant}" if self.variant else ""
        return (f"{self.family}_k{self.kernel}{extras}_c{self.c_in}-{self.c_out}_r{self.resolution}"
                f"_s{self.stride}_b{self.batch}")

    def build(self, seed: int | None = None) -> nn.Module:
        """The block; with ``seed``, its weights are drawn from a generator seeded with it, and the caller's
        random state is left as it was."""
        if self.family not in FAMILIES:
            raise InvalidInput(f"unknown block family {self.family!r}: use one of {', '.join(FAMILIES)}")
        if seed is None:
            return FAMILIES[self.family](self)
        with torch.random.fork_rng(devices=[]):  # blocks are built on the CPU: only its generator is used
            torch.default_generator.manual_seed(seed)
            return FAMILIES[self.family](self)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ChainSpec:
    """Blocks run one after another, each on the previous one's output, as inside a network.

    Features add up, so a chain is one more row of the same regression; its measurement carries the costs
    a block pays only inside a network (its input written by another kernel just before, another kernel's
    code and weights evicted from the caches in between), which no block timed alone sees.
    """

    blocks: tuple[BlockSpec, ...]

    def __post_init__(self):
        if not self.blocks:
            raise InvalidInput("a chain needs at least one block")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.blocks[0].input_shape

    @property
    def batch(self) -> int:
        return self.blocks[0].batch

    @property
    def family(self) -> str:
        return "chain"

    @property
    def key(self) -> str:
        return "chain[" + "+".join(block.key for block in self.blocks) + "]"

    def build(self, seed: int | None = None) -> nn.Module:
        return nn.Sequential(*(block.build(None if seed is None else seed + i) for i, block in enumerate(self.blocks)))

    def to_dict(self) -> dict:
        return {"family": "chain", "blocks": [block.to_dict() for block in self.blocks]}


def spec_from_dict(data: dict) -> BlockSpec | ChainSpec:
    """A ``BlockSpec`` or ``ChainSpec`` from its dict form (as stored in a JSONL dataset)."""
    if data.get("family") == "chain":
        return ChainSpec(tuple(BlockSpec(**block) for block in data["blocks"]))
    return BlockSpec(**data)


def build_block(spec: BlockSpec | ChainSpec | dict) -> nn.Module:
    """Build a block (or a chain) from its spec or its dict form (as stored in a JSONL dataset)."""
    return (spec if isinstance(spec, (BlockSpec, ChainSpec)) else spec_from_dict(spec)).build()
