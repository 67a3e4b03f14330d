"""The inputs a module is counted and timed on: random tensors of a shape, of floats or of another dtype (integer
token ids for an ``nn.Embedding``, a bool mask), and where a module lives; one line saying why a module does not
take a shape, or cannot be counted at all.

An input is described by its shape (batch included) and, when it is not the module's own floating dtype, an
``InputSpec``: the shape with a dtype (``1,64:int64`` on the command line). Integer inputs are drawn uniformly in
``[0, high)``: ``high`` is the spec's own, or ``integer_bound(module)``, the smallest ``num_embeddings`` of the
module's embeddings (so every id is a row of every table it may index), or 2 when it has none (ids 0 and 1,
valid indices of any dimension of two or more).
"""

from __future__ import annotations

import itertools
import operator
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ..errors import InvalidInput, ShapeError, first_line
from .forward_checks import SHAPE_SEPARATOR

__all__ = ["random_like", "InputSpec", "INPUT_DTYPES", "DEFAULT_INTEGER_BOUND", "make_inputs", "input_specs", "parse_input",
           "format_inputs", "integer_bound", "with_bounds", "check_countable", "module_device_dtype",
           "failure_details"]

# The dtypes an input may be given in (``--input-shape 1,64:int64``), by the names users write.
INPUT_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float64": torch.float64, "fp64": torch.float64, "double": torch.float64,
    "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32,
    "int16": torch.int16, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}
# Integer inputs of a module without an embedding: 0 or 1.
DEFAULT_INTEGER_BOUND = 2
_EXAMPLE = "1,3,224,224 (an image), 1,196,192 (tokens) or 1,64:int64 (token ids)"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _as_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype).removeprefix("torch.") in INPUT_DTYPES:
        return INPUT_DTYPES[str(dtype).removeprefix("torch.")]
    raise InvalidInput(f"unknown input dtype {dtype!r}: use one of {', '.join(INPUT_DTYPES)}")


def _is_integer(dtype: torch.dtype | None) -> bool:
    return dtype is not None and not dtype.is_floating_point and not dtype.is_complex


class InputSpec(tuple):
    """The shape of one input (batch included; a tuple of ints, so it goes wherever a shape goes) with its dtype:
    None for the module's own floating dtype. An integer input draws its values in ``[0, high)`` (``high`` None:
    ``integer_bound`` of the module it is given to)."""

    dtype: torch.dtype | None
    high: int | None

    def __new__(cls, shape: Iterable[int], dtype: Any = None, high: int | None = None):
        try:
            dims = tuple(operator.index(d) for d in shape)  # ints, numpy ints, torch.Size; never floats
        except TypeError:
            dims = ()
        if not dims or any(d <= 0 for d in dims):
            raise ShapeError(f"input shape {tuple(shape) if not isinstance(shape, str) else shape} is invalid: give "
                             f"positive integers such as {_EXAMPLE}")
        spec = super().__new__(cls, dims)
        spec.dtype = _as_dtype(dtype if dtype is not None else getattr(shape, "dtype", None))
        if high is not None and (isinstance(high, bool) or operator.index(high) < 1):
            raise InvalidInput(f"the bound of integer input {spec.text} must be a positive integer, got {high!r}")
        spec.high = int(high) if high is not None else getattr(shape, "high", None)
        return spec

    @property
    def is_integer(self) -> bool:
        """Integer (or bool) values: ids, indices, masks."""
        return _is_integer(self.dtype)

    @property
    def text(self) -> str:
        """As ``--input-shape`` takes it: ``1,64:int64``, or ``1,3,224,224`` for the module's own floats."""
        return ",".join(map(str, self)) + (f":{_dtype_name(self.dtype)}" if self.dtype is not None else "")

    def with_high(self, high: int | None) -> InputSpec:
        return InputSpec(self, self.dtype, high)

    def __eq__(self, other):
        return tuple.__eq__(self, other) and getattr(other, "dtype", None) == self.dtype

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((tuple(self), self.dtype))

    def __repr__(self) -> str:
        extra = "" if self.dtype is None else f", {_dtype_name(self.dtype)}"
        return f"InputSpec({tuple(self)}{extra}{'' if self.high is None else f', high={self.high}'})"

    def __reduce__(self):
        return InputSpec, (tuple(self), None if self.dtype is None else _dtype_name(self.dtype), self.high)


def parse_input(text: str) -> InputSpec:
    """``"1,64:int64"`` (or ``1x64:int64``; no dtype: the module's floats) -> ``InputSpec((1, 64), int64)``."""
    sizes, sep, dtype = str(text).strip().partition(":")
    parts = [p.strip() for p in sizes.replace("x", ",").split(",")]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise InvalidInput(f"input shape {text!r} is malformed: give positive integers, e.g. {_EXAMPLE}")
    if sep and dtype.strip() not in INPUT_DTYPES:
        raise InvalidInput(f"input shape {text!r} names an unknown dtype {dtype.strip()!r}: use one of "
                           f"{', '.join(INPUT_DTYPES)}, e.g. 1,64:int64")
    return InputSpec(shape, dtype.strip() if sep else None)


def _is_shape(value: Any) -> bool:
    return isinstance(value, (list, tuple, torch.Size)) and all(
        not isinstance(d, (list, tuple, torch.Size, str, torch.dtype)) for d in value)


def _is_pair(value: Any) -> bool:
    """A ``(shape, dtype)`` pair: ``((1, 64), torch.int64)`` or ``((1, 64), "int64")``."""
    return isinstance(value, (list, tuple)) and len(value) == 2 and _is_shape(value[0]) and (
        isinstance(value[1], torch.dtype) or str(value[1]).removeprefix("torch.") in INPUT_DTYPES)


def input_specs(input_shape: Any) -> list[InputSpec]:
    """Every input of ``input_shape``, as ``InputSpec`` s. It may be a shape (``(1, 3, 224, 224)``), an
    ``InputSpec``, a list of them (a forward of several inputs), a ``(shape, dtype)`` pair (``((1, 64),
    torch.int64)``) or a list of pairs, or the text ``--input-shape`` takes (``"1,64:int64;1,64:bool"``)."""
    if isinstance(input_shape, str):
        return [parse_input(part) for part in input_shape.split(SHAPE_SEPARATOR)]
    if isinstance(input_shape, InputSpec) or _is_shape(input_shape):
        return [InputSpec(input_shape)]
    if _is_pair(input_shape):
        return [InputSpec(*input_shape)]
    items = list(input_shape) if isinstance(input_shape, (list, tuple)) else []
    specs = []
    for item in items:
        if _is_pair(item):
            specs.append(InputSpec(*item))
        elif isinstance(item, str):
            specs.append(parse_input(item))
        else:
            specs.append(InputSpec(item))
    if not specs:
        raise ShapeError(f"input shape {input_shape!r} is invalid: give positive integers such as {_EXAMPLE}")
    return specs


def format_inputs(input_shape: Any) -> str:
    """The inputs as ``--input-shape`` writes them: ``1,3,224,224``, ``1,64:int64;1,64:bool``."""
    return SHAPE_SEPARATOR.join(spec.text for spec in input_specs(input_shape))


def integer_bound(module: nn.Module) -> int:
    """The exclusive upper bound of the integer inputs ``module`` is counted on: the smallest ``num_embeddings``
    of its ``nn.Embedding`` / ``nn.EmbeddingBag`` s (every id then indexes every table), else 2."""
    sizes = [m.num_embeddings for m in module.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    return min(sizes) if sizes else DEFAULT_INTEGER_BOUND


def with_bounds(specs: Sequence[InputSpec], module: nn.Module) -> list[InputSpec]:
    """``specs`` with every integer input that has no bound of its own bounded by ``integer_bound(module)``."""
    if not any(spec.is_integer and spec.high is None for spec in specs):
        return list(specs)
    bound = integer_bound(module)
    return [spec.with_high(bound) if spec.is_integer and spec.high is None else spec for spec in specs]


def make_inputs(input_shape: Any, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                seed: int | None = 0) -> tuple[torch.Tensor, ...]:
    """Random input tensors for ``input_shape`` (any form ``input_specs`` takes): floats of ``dtype`` from a normal
    distribution, an input of its own integer dtype uniform in ``[0, high)`` (``DEFAULT_INTEGER_BOUND`` when its
    spec has no bound), a bool input half True."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    tensors = []
    for spec in input_specs(input_shape):
        if spec.dtype == torch.bool:
            tensor = torch.rand(*spec, generator=generator) < 0.5
        elif spec.is_integer:
            high = spec.high or DEFAULT_INTEGER_BOUND
            tensor = torch.randint(0, high, tuple(spec), generator=generator, dtype=spec.dtype)
        else:
            tensor = torch.randn(*spec, generator=generator).to(dtype=spec.dtype or dtype)
        tensors.append(tensor.to(device=device))
    return tuple(tensors)


def random_like(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Another random input of ``tensor``'s shape and kind (the rotate protocol's copies): floats from a normal
    distribution, integers in the range ``tensor``'s own values take (ids stay valid), bools half True."""
    if tensor.is_floating_point():
        return torch.randn(tensor.shape, generator=generator).to(tensor)
    if tensor.dtype == torch.bool:
        return (torch.rand(tensor.shape, generator=generator) < 0.5).to(tensor.device)
    high = int(tensor.max()) + 1 if tensor.numel() else 1
    return torch.randint(0, max(high, 1), tuple(tensor.shape), generator=generator, dtype=tensor.dtype).to(tensor.device)


def check_countable(module: Any) -> None:
    """Refuse, in one line, a module no forward pass can count: a ``torch.jit.script`` module (or one holding one).
    Counting runs the module eagerly with forward hooks, which scripted modules refuse, and a device model prices
    eager PyTorch, not TorchScript's interpreter. Traced modules (``torch.jit.trace``) take hooks and are counted."""
    if not isinstance(module, nn.Module):
        return
    for name, sub in module.named_modules():
        if isinstance(sub, torch.jit.ScriptModule) and not isinstance(sub, torch.jit.TracedModule):
            scripted = getattr(sub, "original_name", type(sub).__name__)
            outer = getattr(module, "original_name", type(module).__name__)
            where = f"{outer}'s submodule {name!r} ({scripted}) is" if name else f"{scripted} is"
            raise InvalidInput(f"{where} a torch.jit.script module, which cannot be counted: counting runs a module "
                               "eagerly with forward hooks, which TorchScript modules do not take (and the device "
                               "model prices eager PyTorch); give the nn.Module before torch.jit.script")


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
