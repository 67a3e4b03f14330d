"""Counting a module's features from one real forward pass at the aten-operator level.

Counting at the aten level (instead of with module hooks) sees functional code too: the residual ``x + y`` of a
basic block, the ``x * scale`` of squeeze-excitation, the reshape-transpose of a channel shuffle. A
``TorchDispatchMode`` hands every call to the operator table (``operators.classify_op``) and sums what it adds.

The ``vflops`` features round every channel count up to a multiple of the device's fp32 vector width (16 on
AVX-512, where oneDNN blocks channels by 16, so a 24-channel conv costs about what a 32-channel one does). The width
is a property of the profiled device: it is recorded in the protocol and the model, and predictions count with
the model's (``Counting``).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ...count.features import BlockFeatures, OpRecord, UncoveredUse, price_uncovered, warn_uncovered
from ...count.inputs import failure_details, make_inputs, module_device_dtype
from ...errors import ShapeError
from ..protocol import LEGACY_VECTOR_WIDTH, Counting, detect_cache_kb
from .operators import FEATURE_NAMES, classify_op

_logger = logging.getLogger(__name__)

__all__ = ["run_counted", "extract_features", "count_within", "as_counting", "DEFAULT_VECTOR_WIDTH"]

# The vector width features are counted at unless told otherwise: what every existing model was fitted with.
DEFAULT_VECTOR_WIDTH = LEGACY_VECTOR_WIDTH


class _FeatureCounter(TorchDispatchMode):
    """Accumulates features for every aten op that runs while the mode is active, and keeps each call's record."""

    def __init__(self, module_stack: list[str], counting: Counting):
        super().__init__()
        self.counting = counting
        self.totals: Counter[str] = Counter()
        self.op_counts: Counter[str] = Counter()
        self.uncovered: dict[str, UncoveredUse] = {}  # "aten.op" -> its calls, elements and modules
        self.ops: list[OpRecord] = []
        self._module_stack = module_stack

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        classified = classify_op(name, args, out, self.counting)
        if classified is None:
            self.totals["overhead.free_ops"] += 1
            return out
        cls, op_features, adds, covered = classified
        if not covered:
            self._note_uncovered(f"aten.{name}", op_features.get("elements", 0.0))
        delta: Counter[str] = Counter({f"{cls}.{feature}": value for feature, value in op_features.items()})
        delta["overhead.ops"] += 1
        delta.update(adds)
        self.op_counts[name] += 1
        self.totals.update(delta)
        self.ops.append(OpRecord(name, cls, op_features, dict(delta)))
        return out

    def _note_uncovered(self, op: str, elements: float) -> None:
        where = self._module_stack[-1] if self._module_stack else "<root>"
        use = self.uncovered.get(op, UncoveredUse(0, 0.0, ()))
        modules = use.modules if where in use.modules else (*use.modules, where)
        self.uncovered[op] = UncoveredUse(use.calls + 1, use.elements + elements, modules)


def as_counting(counting: Counting | int | None = None, threads: int | None = None) -> Counting:
    """A ``Counting``: given, or built from a vector width and thread count (the former arguments), with this
    host's cache sizes."""
    if isinstance(counting, Counting):
        return counting
    return Counting(int(counting or DEFAULT_VECTOR_WIDTH), int(threads or 1), detect_cache_kb("cpu", 2),
                    detect_cache_kb("cpu", 3))


def run_counted(module: nn.Module, inputs: tuple[torch.Tensor, ...], counting: Counting | int | None = None,
                threads: int | None = None) -> tuple[BlockFeatures, Any]:
    """Run ``module(*inputs)`` once in eval mode with no grad, counting features; returns (features, output).

    ``counting`` says how the device counts (``protocol.counting``, ``LatencyModel.counting``; a vector width
    and ``threads`` still work): ATen picks convolution kernels by its thread count, which is set for the pass;
    the process's own setting and the module's training flag are restored afterwards.
    """
    counting = as_counting(counting, threads)
    stack: list[str] = []
    handles = []
    modules_called = [0]

    def enter(label: str):
        def hook(*_):
            stack.append(label)
            modules_called[0] += 1
        return hook

    def leave(*_):
        if stack:
            stack.pop()

    for qualified_name, sub in module.named_modules():
        handles.append(sub.register_forward_pre_hook(enter(f"{qualified_name or '<root>'} ({type(sub).__name__})")))
        handles.append(sub.register_forward_hook(leave))
    was_training = module.training
    module.eval()
    counter = _FeatureCounter(stack, counting)
    process_threads = torch.get_num_threads()
    try:
        if counting.threads != process_threads:
            torch.set_num_threads(counting.threads)
        with torch.no_grad(), counter:
            output = module(*inputs)
    finally:
        if torch.get_num_threads() != process_threads:
            torch.set_num_threads(process_threads)
        for handle in handles:
            handle.remove()
        module.train(was_training)
    counter.totals["overhead.modules"] += modules_called[0]
    features = BlockFeatures({name: float(v) for name, v in counter.totals.items()},
                             op_counts=dict(counter.op_counts), uncovered=tuple(sorted(counter.uncovered)),
                             ops=counter.ops, names=FEATURE_NAMES)
    if counter.uncovered:  # every uncovered operator of the pass in one warning, priced by a model that counts it
        floor_ms, predicted_ms = price_uncovered(counter.uncovered, features)
        warn_uncovered(counter.uncovered, stacklevel=2, floor_ms=floor_ms, predicted_ms=predicted_ms)
    return features, output


def extract_features(module: nn.Module, input_shape: Sequence[int] | Sequence[Sequence[int]],
                     counting: Counting | int | None = None, threads: int | None = None) -> BlockFeatures:
    """Features of ``module`` for one input of ``input_shape`` (batch included), from one forward pass.

    ``counting`` is the profiled device's (``LatencyModel.count`` passes the model's). Raises ``ValueError``
    with a one-line explanation if the shape does not fit the module.
    """
    device, dtype = module_device_dtype(module)
    inputs = make_inputs(input_shape, device=device, dtype=dtype)
    try:
        features, _ = run_counted(module, inputs, counting, threads)
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        shape_text = " and ".join(",".join(map(str, t.shape)) for t in inputs)
        raise ShapeError(f"input shape {shape_text} does not fit {type(module).__name__} "
                         f"({failure_details(module, error)})") from error
    return features


class _Call(nn.Module):
    """One call of a module's own ``forward`` with its keyword arguments bound, as a module ``run_counted``
    can count (its training flag is off, so counting never switches the real module's)."""

    def __init__(self, forward, kwargs):
        super().__init__()
        self._forward, self._kwargs = forward, kwargs
        self.train(False)

    def forward(self, *args):
        return self._forward(*args, **self._kwargs)


def count_within(network: nn.Module, inputs: Sequence[torch.Tensor], modules: Sequence[tuple[str, nn.Module]],
                 counting: Counting | None = None) -> tuple[BlockFeatures, dict[str, BlockFeatures]]:
    """The features of ``network(*inputs)``, and those each of ``modules`` (disjoint, by name) adds inside that one
    pass, whatever its arguments: each call is counted by a counter of its own, nested in the whole network's.
    A module never called is left out."""
    counted: dict[str, BlockFeatures] = {}
    patched = []

    def counted_forward(name: str, original):
        def forward(*args, **kwargs):
            features, output = run_counted(_Call(original, kwargs), args, counting)
            counted[name] = counted[name] + features if name in counted else features
            return output
        return forward

    try:
        for name, module in modules:
            patched.append((module, module.__dict__.get("forward")))
            module.forward = counted_forward(name, module.forward)
        whole, _ = run_counted(network, tuple(inputs), counting)
    finally:
        for module, own in patched:
            if own is None:
                del module.forward
            else:
                module.forward = own
    return whole, counted
