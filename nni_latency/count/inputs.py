"""The inputs a module is counted and timed on: random tensors of a shape (integer ones for token ids), and where a
module lives; one line saying why a module does not take a shape."""

from __future__ import annotations

import itertools
import operator
from typing import Sequence

import torch
from torch import nn

from ..errors import ShapeError, first_line

__all__ = ["make_inputs", "module_device_dtype", "failure_details"]


def make_inputs(input_shape: Sequence[int] | Sequence[Sequence[int]], device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, seed: int | None = 0) -> tuple[torch.Tensor, ...]:
    """Random input tensors for a shape (``N,C,H,W``) or a list of shapes (one per argument)."""
    nested = len(input_shape) > 0 and all(isinstance(d, (list, tuple, torch.Size)) for d in input_shape)
    shapes = [tuple(shape) for shape in input_shape] if nested else [tuple(input_shape)]
    for index, shape in enumerate(shapes):
        try:
            dims = tuple(operator.index(d) for d in shape)  # ints, numpy ints, torch.Size; never floats
        except TypeError:
            dims = ()
        if not dims or any(d <= 0 for d in dims):
            raise ShapeError(f"input shape {shape} is invalid: give positive integers such as 1,3,224,224")
        shapes[index] = dims
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return tuple(torch.randn(*shape, generator=generator).to(device=device, dtype=dtype) for shape in shapes)


def module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where ``module`` lives and what it computes in (its first parameter or buffer); CPU fp32 if neither."""
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    if tensor is None or not tensor.is_floating_point():
        return torch.device("cpu"), torch.float32
    return tensor.device, tensor.dtype


def failure_details(module: nn.Module, error: Exception) -> str:
    """Why ``module`` failed on an input, in one line: the error's first line and, when it has a
    convolution, the input that convolution expects (for "shape does not fit" messages)."""
    first_conv = next((m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if first_conv is None:
        return first_line(error)
    return (f"{first_line(error)}; the first convolution expects {first_conv.weight.dim()}-d input "
            f"with C={first_conv.in_channels}")
