"""The operators of DARTS-like cell spaces, as their reference code writes them, for the profiling suite.

Cells run at 32 px (CIFAR) with 16-64 channels, so each op is tiny and hundreds of them run per network:
their per-call costs, not their FLOPs, set the time. The suite measures them one op per block
(``cell_op`` blocks, the op named by ``BlockSpec.variant``); ``nni_latency.nas`` profiles whole cells.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidInput

__all__ = ["CELL_OPS", "ReLUConvBN", "DilConv", "SepConv", "FactorizedReduce", "build_cell_op"]


class ReLUConvBN(nn.Sequential):
    """ReLU -> kxk conv -> BN: the 1x1 preprocessing of a cell's inputs."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1):
        super().__init__(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out))


class DilConv(nn.Sequential):
    """ReLU -> kxk depthwise conv (dilated) -> 1x1 conv -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, dilation: int = 2):
        padding = dilation * (kernel - 1) // 2
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))


class SepConv(nn.Sequential):
    """Two undilated ``DilConv`` units, the first one strided: DARTS' separable convolution."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__(DilConv(c_in, c_in, kernel, stride, dilation=1), DilConv(c_in, c_out, kernel, dilation=1))


class FactorizedReduce(nn.Module):
    """The skip connection of a reduction cell: ReLU, two strided 1x1 convs on offset grids, concatenated, BN."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        if c_out % 2:
            raise InvalidInput(f"factorized reduce needs an even output width, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


CELL_OPS = ("sep_conv", "dil_conv", "max_pool", "avg_pool", "factorized_reduce", "relu_conv_bn")


def build_cell_op(op: str, c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Module:
    """One cell op by name (``CELL_OPS``); pools keep the width, ``factorized_reduce`` always halves the map."""
    if op == "sep_conv":
        return SepConv(c_in, c_out, kernel, stride)
    if op == "dil_conv":
        return DilConv(c_in, c_out, kernel, stride)
    if op == "max_pool":
        return nn.MaxPool2d(kernel, stride, kernel // 2)
    if op == "avg_pool":
        return nn.AvgPool2d(kernel, stride, kernel // 2, count_include_pad=False)
    if op == "factorized_reduce":
        return FactorizedReduce(c_in, c_out)
    if op == "relu_conv_bn":
        return ReLUConvBN(c_in, c_out, kernel, stride)
    raise InvalidInput(f"unknown cell op {op!r}: use one of {', '.join(CELL_OPS)}")
