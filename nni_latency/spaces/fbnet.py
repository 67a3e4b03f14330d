"""The FBNet search space (Wu et al., CVPR 2019, Table 1) as an NNI 3.0 ``ModelSpace``.

Layout: a 3x3 stem conv (16 channels, stride 2), 22 searched layers in stages of [1, 4, 4, 4, 4, 4, 1]
with [16, 24, 32, 64, 112, 184, 352] channels, a 1x1 head conv, global pooling and a classifier.
Every searched layer is a ``LayerChoice`` labelled ``stage{i}.{j}`` whose candidates are keyed by name
(``k3_e6``, ``skip``, ...), so an exported architecture reads ``{"stage2.0": "k5_e6", ...}``.

Skip: FBNet's reference implementation keeps ``skip`` in every layer and makes it a 1x1 conv + BN
projection where the stride or width changes (``blocks.Skip`` does exactly that), so that every layer
has the same 9 choices. ``projection_skip=False`` instead drops ``skip`` from those layers (8 choices),
so "skip" always means "no computation".

The ``_g2`` candidates use groups=2 on both 1x1 convs; FBNet also shuffles channels after the grouped
expansion, which ``blocks.MBConv`` does not (the latency difference is a memory copy, and the
accuracy difference is small on the scaled-down spaces searched here).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import Sequence

from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from torch import nn

from ..errors import InvalidInput
from ..suite.blocks import FBNET_CANDIDATES, MBConv, Skip

_logger = logging.getLogger(__name__)

__all__ = ["FBNetSpace", "CANDIDATES", "CANDIDATE_NAMES", "PAPER_STAGES", "PAPER_CHANNELS", "PAPER_STRIDES",
           "PAPER_STEM_STRIDE", "PAPER_HEAD_CHANNELS", "make_divisible", "default_strides", "candidate_layer"]

CANDIDATES = FBNET_CANDIDATES
CANDIDATE_NAMES: tuple[str, ...] = tuple(CANDIDATES)

PAPER_STAGES = (1, 4, 4, 4, 4, 4, 1)
PAPER_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
PAPER_STRIDES = (1, 2, 2, 2, 1, 2, 1)
PAPER_STEM_STRIDE = 2
PAPER_STEM_CHANNELS = 16
PAPER_HEAD_CHANNELS = 1984  # FBNet-B/C; FBNet-A uses 1504
PAPER_INPUT_SIZE = 224


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a scaled width to a multiple of ``divisor`` without losing more than 10% (MobileNet rule).

    Multiples of 8 keep the grouped (g=2) candidates valid and the kernels on their fast paths.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def default_strides(input_size: int, min_resolution: int = 4) -> tuple[int, tuple[int, ...]]:
    """(stem stride, stage strides) for ``input_size``: the paper's downsamplings, earliest dropped first.

    At 224 the paper halves the resolution five times (stem and stages 2, 3, 4, 6) to end at 7x7.
    A smaller input keeps only as many halvings as leave at least ``min_resolution`` pixels, dropping
    the earliest ones first, as CIFAR ports of ImageNet spaces do, so the wide late stages keep theirs.
    """
    positions = [("stem", PAPER_STEM_STRIDE)] + [(index, s) for index, s in enumerate(PAPER_STRIDES)]
    halvings = [p for p, s in positions if s == 2]
    keep = 0
    while keep < len(halvings) and input_size / 2 ** (keep + 1) >= min_resolution:
        keep += 1
    kept = set(halvings[len(halvings) - keep:])
    stem = 2 if "stem" in kept else 1
    return stem, tuple(2 if index in kept else 1 for index in range(len(PAPER_STRIDES)))


def candidate_layer(name: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """Build one named candidate; ``skip`` becomes a projection when the shape changes."""
    spec = CANDIDATES[name]
    if spec is None:
        return Skip(c_in, c_out, stride)
    kernel, expansion, groups = spec
    return MBConv(c_in, c_out, kernel=kernel, stride=stride, expansion=expansion, groups=groups)


class FBNetSpace(ModelSpace):
    """FBNet's supernet space: 22 ``LayerChoice`` layers of 9 candidates at full size.

    Parameters
    ----------
    num_classes
        Classifier outputs.
    input_size
        Input resolution; picks the strides with ``default_strides`` unless ``strides`` is given.
    width_mult
        Scales every width (stem, stages, head), rounded to multiples of 8.
    depth_mult
        Scales the number of layers per stage (at least one each): 0.5 gives 12 searched layers.
    head_channels
        Width of the 1x1 conv before pooling, before ``width_mult`` (paper: 1984, FBNet-A 1504).
    strides
        ``(stem_stride, (s1, ..., s7))`` to override the strides derived from ``input_size``.
    projection_skip
        Keep ``skip`` where the shape changes, as a 1x1 projection (True, FBNet's code), or drop it there.
    candidates
        Subset of ``CANDIDATE_NAMES`` to search over, in that order.
    """

    def __init__(self, num_classes: int = 1000, input_size: int = PAPER_INPUT_SIZE, width_mult: float = 1.0,
                 depth_mult: float = 1.0, head_channels: int = PAPER_HEAD_CHANNELS,
                 strides: tuple[int, Sequence[int]] | None = None, projection_skip: bool = True,
                 candidates: Sequence[str] = CANDIDATE_NAMES, dropout: float = 0.0):
        super().__init__()
        if width_mult <= 0 or depth_mult <= 0:
            raise InvalidInput(f"width_mult and depth_mult must be positive, got {width_mult} and {depth_mult}")
        unknown = [name for name in candidates if name not in CANDIDATES]
        if unknown or not candidates:
            raise InvalidInput(f"unknown FBNet candidate(s) {unknown or candidates!r}: use names from "
                             f"{', '.join(CANDIDATE_NAMES)}")
        stem_stride, stage_strides = strides if strides is not None else default_strides(input_size)
        if len(stage_strides) != len(PAPER_STAGES):
            raise InvalidInput(f"strides needs one stride per stage ({len(PAPER_STAGES)}), got {len(stage_strides)}")
        self.input_size = input_size
        self.num_classes = num_classes
        self.stem_stride, self.stage_strides = stem_stride, tuple(stage_strides)
        self.depths = tuple(max(1, math.ceil(n * depth_mult)) for n in PAPER_STAGES)
        self.widths = tuple(make_divisible(c * width_mult) for c in PAPER_CHANNELS)
        stem_width = make_divisible(PAPER_STEM_CHANNELS * width_mult)
        head_width = make_divisible(head_channels * width_mult)

        self.stem = nn.Sequential(nn.Conv2d(3, stem_width, 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        c_in = stem_width
        for stage, (depth, width, stage_stride) in enumerate(zip(self.depths, self.widths, self.stage_strides), 1):
            for index in range(depth):
                stride = stage_stride if index == 0 else 1
                same_shape = stride == 1 and c_in == width
                names = [n for n in candidates if n != "skip" or same_shape or projection_skip]
                choices = OrderedDict((n, candidate_layer(n, c_in, width, stride)) for n in names)
                layers.append(LayerChoice(choices, label=f"stage{stage}.{index}"))
                c_in = width
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(c_in, head_width, 1, bias=False), nn.BatchNorm2d(head_width),
                                  nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_width, num_classes)
        _logger.debug("FBNetSpace: %d searched layers, widths %s, strides %s/%s", len(layers), self.widths,
                      stem_stride, self.stage_strides)

    def forward(self, x):
        x = self.layers(self.stem(x))
        x = self.pool(self.head(x)).flatten(1)
        return self.classifier(self.dropout(x))
