"""Latency features of a block, counted from one real forward pass at the aten-operator level.

Counting at the aten level (instead of with module hooks) sees functional code too: the residual
``x + y`` of a basic block, the ``x * scale`` of squeeze-excitation, the reshape-transpose of a
channel shuffle. Every feature is a sum over operators, so the features of a network are the sum
of the features of its blocks, which is what lets block predictions add up to whole networks.

FLOPs formula (documented once, used everywhere): FLOPs = 2 x multiply-accumulates, bias ignored.
    convolution           MACs = output elements x (C_in / groups) x prod(kernel)
    transposed conv       MACs = input elements  x (C_out / groups) x prod(kernel)
    mm / addmm / bmm      MACs = rows x inner x cols (x batch)

The ``vflops_*`` features repeat the per-kind FLOPs with every channel count rounded up to a multiple
of the device's fp32 vector width (``vector_width``: 16 on AVX-512, where oneDNN blocks channels by 16,
so a 24-channel conv costs about what a 32-channel one does). The width is a property of the profiled
device: it is recorded in the measurement protocol and the model, and predictions count with the model's.
Per-kind conv counts carry the per-call overhead, which differs by kind.

Path-aware features (``dnn_*``, ``gemm_*``, ``im2col_elements``) split convolutions by the kernel ATen runs
(``operators.conv_path``): oneDNN's blocked kernels, or im2col + matrix multiply, which ATen picks for 1x1
and small convolutions at batch 1 on one thread and which is 2-3x cheaper per FLOP there. The choice
depends on the thread count, so these features are counted at the profiled device's ``threads``.
Memory-bound operators are split into classes (``operators.MEMORY_CLASSES``) whose cost per element differs.
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import first_line
from .operators import ATTENTION_OPS, CONV_OPS, MATMUL_OPS, MEMORY_CLASSES, OP_FEATURE_NAMES, WINDOW_OPS, \
    classify_op, conv_path, input_padded, memory_class, numel, op_feature_doc, vector_padded, window_size
from .protocol import LEGACY_VECTOR_WIDTH, Counting

_logger = logging.getLogger(__name__)

__all__ = [
    "BlockFeatures",
    "OpRecord",
    "FEATURE_NAMES",
    "BLOCK_FEATURE_NAMES",
    "FEATURE_DOCS",
    "extract_features",
    "UncoveredOperatorWarning",
    "make_inputs",
    "run_counted",
    "FEATURE_ROLES",
    "ROLES",
    "DEFAULT_VECTOR_WIDTH",
    "module_device_dtype",
    "failure_details",
    "first_line",
    "warn_uncovered",
    "as_counting",
]

# The vector width features are counted at unless told otherwise: what every existing model was fitted with.
DEFAULT_VECTOR_WIDTH = LEGACY_VECTOR_WIDTH


class UncoveredOperatorWarning(UserWarning):
    """An operator that no feature formula covers; it is counted as a memory-bound op."""


_KINDS = ("dense", "pointwise", "grouped", "depthwise")
# THE table of block-level features: name -> (role, what it counts). The role says what a feature's cost term
# measures: arithmetic (compute), data movement (memory) or per-call overhead. Op-class features
# (``operators.OP_FEATURE_NAMES``: each operator class's own features) follow them in ``FEATURE_NAMES``.
_BLOCK_FEATURES: dict[str, tuple[str, str]] = {
    "acts": ("memory", "output elements of every convolution / linear op (the published ACTS)"),
    "inp": ("memory", "input elements of every convolution / linear op (the published INP)"),
    "flops": ("compute", "FLOPs (2 x MACs) of every convolution / linear op (the published FLOPs) and of fused "
                         "attention"),
    "flops_dense": ("compute", "FLOPs of ungrouped convolutions with a spatial kernel larger than 1"),
    "flops_pointwise": ("compute", "FLOPs of ungrouped 1x1 convolutions and matrix multiplies"),
    "flops_grouped": ("compute", "FLOPs of grouped convolutions that are not depthwise"),
    "flops_depthwise": ("compute", "FLOPs of depthwise convolutions (groups == C_in > 1)"),
    "weights": ("memory", "weight elements read by convolution / linear ops"),
    "mem_elements": ("memory", "input + output elements of every other non-view op (BN, activations, add, ...)"),
    "conv_ops": ("overhead", "number of convolution / linear op calls"),
    "mem_ops": ("overhead", "number of other non-view op calls"),
    **{f"vflops_{kind}": ("compute", f"FLOPs of {kind} convolutions with channels rounded up to a multiple of the "
                                     "vector width (16 on AVX-512)") for kind in _KINDS},
    **{f"convs_{kind}": ("overhead", f"number of {kind} convolutions") for kind in _KINDS},
    "vflops_matmul": ("compute", "FLOPs of matrix multiplies (linear layers) with sizes rounded up to a multiple "
                                 "of the vector width"),
    "matmuls": ("overhead", "number of matrix multiplies (linear layers)"),
    "conv_weights": ("memory", "weight elements read by convolutions"),
    "matmul_weights": ("memory", "weight elements read by matrix multiplies (a batch-1 linear layer streams them)"),
    "maxpool_work": ("memory", "output elements x window size of max pooling"),
    "avgpool_work": ("memory", "output elements x window size of average pooling"),
    **{f"dnn_vflops_{kind}": ("compute", f"vflops_{kind} of the {kind} convolutions run by oneDNN/cuDNN")
       for kind in _KINDS},
    **{f"dnn_convs_{kind}": ("overhead", f"number of {kind} convolutions run by oneDNN/cuDNN") for kind in _KINDS},
    "gemm_flops": ("compute", "FLOPs of convolutions ATen runs as im2col + matrix multiply"),
    "gemm_convs": ("overhead", "number of convolutions run as im2col + matrix multiply"),
    "im2col_elements": ("memory", "elements of the unfolded input those convolutions build (kernels > 1x1)"),
    "vflops_attention": ("compute", "FLOPs of fused attention, sizes rounded up to the vector width"),
    "attention_scores": ("memory", "attention scores computed by fused attention (batch x heads x queries x keys)"),
    "attentions": ("overhead", "number of fused attention calls"),
    **{f"elements_{name}": ("memory", f"input + output elements of {name} memory-bound operators")
       for name in MEMORY_CLASSES},
    **{f"ops_{name}": ("overhead", f"number of {name} memory-bound operator calls")
       for name in (*MEMORY_CLASSES, "window")},
}
_OP_ROLES = {"calls": "overhead", "vflops": "compute", "flops": "compute"}

ROLES: tuple[str, ...] = ("compute", "memory", "overhead")
BLOCK_FEATURE_NAMES: tuple[str, ...] = tuple(_BLOCK_FEATURES)
FEATURE_NAMES: tuple[str, ...] = BLOCK_FEATURE_NAMES + OP_FEATURE_NAMES
FEATURE_DOCS: dict[str, str] = {**{name: doc for name, (_, doc) in _BLOCK_FEATURES.items()},
                                **{name: op_feature_doc(name) for name in OP_FEATURE_NAMES}}
FEATURE_ROLES: dict[str, str] = {
    **{name: role for name, (role, _) in _BLOCK_FEATURES.items()},
    **{name: "overhead" if name.startswith("overhead.") else _OP_ROLES.get(name.rpartition(".")[2], "memory")
       for name in OP_FEATURE_NAMES}}
_FEATURE_SET = frozenset(FEATURE_NAMES)


@dataclass(frozen=True)
class OpRecord:
    """One aten call of a forward pass: its operator, class (``operators.OP_CLASSES``), that class's features,
    and what the call adds to the block's features (``FEATURE_NAMES``: any model kind can price it alone)."""

    op: str
    cls: str
    features: dict[str, float]
    adds: dict[str, float]


class BlockFeatures:
    """Additive latency features of one block: ``FEATURE_NAMES`` (see ``FEATURE_DOCS``), read as attributes
    (``features.flops``) or by name (``features["conv_depthwise.vflops"]``); absent ones are 0.

    ``ops`` keeps the block's aten calls in order (``OpRecord``), which the op-level profile times one by one.
    """

    __slots__ = ("_values", "op_counts", "uncovered", "ops")

    def __init__(self, values: Mapping[str, float] | None = None, /, *, op_counts: Mapping[str, int] | None = None,
                 uncovered: Sequence[str] = (), ops: Sequence[OpRecord] = (), **named: float):
        merged = {**(values or {}), **named}
        unknown = set(merged) - _FEATURE_SET
        if unknown:
            raise TypeError(f"unknown feature(s) {', '.join(sorted(unknown))}; features are {', '.join(FEATURE_NAMES)}")
        object.__setattr__(self, "_values", {name: float(v) for name, v in merged.items() if v})
        object.__setattr__(self, "op_counts", dict(op_counts or {}))
        object.__setattr__(self, "uncovered", tuple(uncovered))
        object.__setattr__(self, "ops", tuple(ops))

    def __getattr__(self, name: str) -> float:
        if name in _FEATURE_SET:
            return self._values.get(name, 0.0)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def __getitem__(self, name: str) -> float:
        if name not in _FEATURE_SET:
            raise KeyError(name)
        return self._values.get(name, 0.0)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("BlockFeatures is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlockFeatures) and self._values == other._values

    def __hash__(self) -> int:
        return hash(frozenset(self._values.items()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:g}" for k, v in self._values.items() if k in _BLOCK_FEATURES)
        return f"BlockFeatures({shown})"

    def __reduce__(self):
        return _rebuild, (self._values, self.op_counts, self.uncovered, self.ops)

    def as_dict(self) -> dict[str, float]:
        """Every numeric feature, keyed by ``FEATURE_NAMES``."""
        return {name: self._values.get(name, 0.0) for name in FEATURE_NAMES}

    def __add__(self, other: BlockFeatures) -> BlockFeatures:
        summed = dict(self._values)
        for name, value in other._values.items():
            summed[name] = summed.get(name, 0.0) + value
        return BlockFeatures(summed, op_counts=dict(Counter(self.op_counts) + Counter(other.op_counts)),
                             uncovered=tuple(sorted(set(self.uncovered) | set(other.uncovered))),
                             ops=self.ops + other.ops)


def _rebuild(values, op_counts, uncovered, ops) -> BlockFeatures:
    return BlockFeatures(values, op_counts=op_counts, uncovered=uncovered, ops=ops)


# Windowed pooling: op name -> the feature holding its work (outputs x window size).
_WINDOW_FEATURE = {op: "maxpool_work" if op.startswith("max") else "avgpool_work" for op in WINDOW_OPS}


def _conv_features(args: Sequence[Any], out: torch.Tensor, width: int) -> dict[str, float]:
    # convolution(input[N,Cin,*S], weight[Cout,Cin/g,*K] or [Cin,Cout/g,*K] if transposed, bias, stride,
    #             padding, dilation, transposed, output_padding, groups) -> [N,Cout,*S']
    x, weight = args[0], args[1]
    transposed, groups = bool(args[6]), int(args[8])
    kernel = math.prod(weight.shape[2:])
    c_in, c_out = x.shape[1], out.shape[1]
    if transposed:
        macs = x.numel() * (weight.shape[1]) * kernel  # weight[1] is C_out / groups
        positions = x.numel() // c_in  # the sliding happens over the input positions
    else:
        macs = out.numel() * weight.shape[1] * kernel  # weight[1] is C_in / groups
        positions = out.numel() // c_out
    flops = 2.0 * macs
    if groups > 1 and groups == c_in:
        kind = "depthwise"
        vector_macs = positions * vector_padded(max(c_in, c_out), width) * kernel
    else:
        kind = "grouped" if groups > 1 else ("pointwise" if kernel == 1 else "dense")
        vector_macs = (positions * groups * input_padded(c_in // groups, width)
                       * vector_padded(c_out // groups, width) * kernel)
    features = {"acts": out.numel(), "inp": x.numel(), "flops": flops, f"flops_{kind}": flops,
                "weights": weight.numel(), "conv_weights": weight.numel(), f"vflops_{kind}": 2.0 * vector_macs,
                f"convs_{kind}": 1}
    if not x.is_contiguous():  # ATen makes even a channels-last input dense before its CPU kernels run
        features.update(_hidden_copy(x))
    if conv_path(args) == "gemm":
        # im2col unfolds (C_in / groups) x kernel values per output position; a 1x1 stride-1 conv needs none.
        unfolded = 0 if kernel == 1 and all(s == 1 for s in args[3]) else positions * c_in * kernel
        features.update(gemm_flops=flops, gemm_convs=1, im2col_elements=unfolded)
    else:
        features.update({f"dnn_vflops_{kind}": 2.0 * vector_macs, f"dnn_convs_{kind}": 1})
    return features


def _matmul_features(name: str, args: Sequence[Any], out: torch.Tensor, width: int) -> dict[str, float]:
    # mm(a[n,k], b[k,m]); addmm(bias, a, b); bmm(a[B,n,k], b[B,k,m]); baddbmm(bias, a, b) -> out
    a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
    inner, cols = a.shape[-1], out.shape[-1]
    flops = 2.0 * out.numel() * inner
    vector_flops = 2.0 * (out.numel() // cols) * vector_padded(inner, width) * vector_padded(cols, width)
    features = Counter({"acts": out.numel(), "inp": a.numel(), "flops": flops, "flops_pointwise": flops,
                        "weights": b.numel(), "matmul_weights": b.numel(), "vflops_matmul": vector_flops, "matmuls": 1})
    for operand in (a, b):  # BLAS reads a matrix or its transpose in place; any other layout is copied first
        if not (operand.is_contiguous() or operand.transpose(-1, -2).is_contiguous()):
            features.update(_hidden_copy(operand))
    if name in ("addmm", "baddbmm"):
        features["elements_move"] += out.numel()  # the bias is broadcast into the output before the product
    return features


def _hidden_copy(tensor: torch.Tensor) -> dict[str, float]:
    # A kernel that needs a dense layout copies a strided operand inside the operator, where no aten op shows
    # it (a token MLP's depthwise conv on transposed tokens, a projection of permuted heads): data movement.
    return {"elements_move": 2 * tensor.numel(), "ops_move": 1}


def _attention_features(args: Sequence[Any], width: int) -> dict[str, float]:
    # attention(query[..., L, E], key[..., S, E], value[..., S, Ev], ...) -> [..., L, Ev] (+ statistics)
    query, key, value = args[0], args[1], args[2]
    heads = math.prod(query.shape[:-2])  # batch x heads
    queries, keys, dim, value_dim = query.shape[-2], key.shape[-2], query.shape[-1], value.shape[-1]
    padded = heads * queries * vector_padded(keys, width) * (vector_padded(dim, width)
                                                              + vector_padded(value_dim, width))
    flops = 2.0 * heads * queries * keys * (dim + value_dim)
    return {"flops": flops, "vflops_attention": 2.0 * padded, "attention_scores": heads * queries * keys,
            "attentions": 1}


class _FeatureCounter(TorchDispatchMode):
    """Accumulates features for every aten op that runs while the mode is active, and keeps each call's record."""

    def __init__(self, module_stack: list[str], counting: Counting):
        super().__init__()
        self.counting = counting
        self.vector_width = counting.vector_width
        self.totals: Counter[str] = Counter()
        self.op_counts: Counter[str] = Counter()
        self.uncovered: dict[str, str] = {}
        self.ops: list[OpRecord] = []
        self._module_stack = module_stack

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        classified = classify_op(name, args, out, self.counting)
        if classified is None:
            self.totals["overhead.free_ops"] += 1
            return out
        cls, op_features = classified
        delta: Counter[str] = Counter({f"{cls}.{feature}": value for feature, value in op_features.items()})
        delta["overhead.ops"] += 1
        self.op_counts[name] += 1
        if name in CONV_OPS:
            delta.update(_conv_features(args, out, self.vector_width))
            delta["conv_ops"] += 1
        elif name in MATMUL_OPS:
            delta.update(_matmul_features(name, args, out, self.vector_width))
            delta["conv_ops"] += 1
        else:
            elements = numel(args) + numel(out)
            if name in ATTENTION_OPS:
                delta.update(_attention_features(args, self.vector_width))
            else:
                category = memory_class(name)
                if category is None:
                    category = "move"  # counted as data movement, and warned about once
                    self.uncovered.setdefault(name, self._module_stack[-1] if self._module_stack else "<root>")
                if category == "window":
                    # pool(input, kernel_size, ...) -> output (or (output, indices)); work = outputs x window
                    result = out[0] if isinstance(out, (tuple, list)) else out
                    delta[_WINDOW_FEATURE[name]] += result.numel() * window_size(args)
                else:
                    delta[f"elements_{category}"] += elements
                delta[f"ops_{category}"] += 1
            delta["mem_elements"] += elements
            delta["mem_ops"] += 1
        self.totals.update(delta)
        self.ops.append(OpRecord(name, cls, op_features, dict(delta)))
        return out


def as_counting(counting: Counting | int | None = None, threads: int | None = None) -> Counting:
    """A ``Counting``: given, or built from a vector width and thread count (the former arguments), with this
    host's cache sizes."""
    if isinstance(counting, Counting):
        return counting
    from .protocol import detect_cache_kb

    return Counting(int(counting or DEFAULT_VECTOR_WIDTH), int(threads or 1), detect_cache_kb("cpu", 2),
                    detect_cache_kb("cpu", 3))


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
            raise ValueError(f"input shape {shape} is invalid: give positive integers such as 1,3,224,224")
        shapes[index] = dims
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return tuple(torch.randn(*shape, generator=generator).to(device=device, dtype=dtype) for shape in shapes)


def failure_details(module: nn.Module, error: Exception) -> str:
    """Why ``module`` failed on an input, in one line: the error's first line and, when it has a
    convolution, the input that convolution expects (for "shape does not fit" messages)."""
    first_conv = next((m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if first_conv is None:
        return first_line(error)
    return (f"{first_line(error)}; the first convolution expects {first_conv.weight.dim()}-d input "
            f"with C={first_conv.in_channels}")


def run_counted(module: nn.Module, inputs: tuple[torch.Tensor, ...], counting: Counting | int | None = None,
                threads: int | None = None) -> tuple[BlockFeatures, Any]:
    """Run ``module(*inputs)`` once in eval mode with no grad, counting features; returns (features, output).

    ``meta_counting`` says how the device counts (``protocol.counting``, ``LatencyModel.counting``; a vector width
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
    for op, where in counter.uncovered.items():
        warn_uncovered(op, [where], stacklevel=2)
    counter.totals["overhead.modules"] += modules_called[0]
    features = BlockFeatures({name: float(v) for name, v in counter.totals.items()},
                             op_counts=dict(counter.op_counts), uncovered=tuple(sorted(counter.uncovered)),
                             ops=counter.ops)
    return features, output


def warn_uncovered(op: str, modules: Sequence[str], stacklevel: int = 1) -> None:
    """Warn that ``aten.op`` (used in ``modules``) has no feature formula; ``stacklevel`` as in
    ``warnings.warn``, counted from the caller of this function.

    The warning goes through ``warnings``' own registry, so under the default filters each message is
    shown once; filter ``UncoveredOperatorWarning`` to silence it.
    """
    others = f" and {len(modules) - 1} other module(s)" if len(modules) > 1 else ""
    warnings.warn(f"operator aten.{op} (in module {modules[0]!r}{others}) is not covered by the conv formula; "
                  "it is counted as a memory-bound op from its input and output sizes",
                  UncoveredOperatorWarning, stacklevel=stacklevel + 1)


def extract_features(module: nn.Module, input_shape: Sequence[int] | Sequence[Sequence[int]],
                     counting: Counting | int | None = None, threads: int | None = None) -> BlockFeatures:
    """Features of ``module`` for one input of ``input_shape`` (batch included), from one forward pass.

    ``meta_counting`` is the profiled device's (``LatencyModel.count`` passes the model's).
    Raises ``ValueError`` with a one-line explanation if the shape does not fit the module.
    """
    device, dtype = module_device_dtype(module)
    inputs = make_inputs(input_shape, device=device, dtype=dtype)
    try:
        features, _ = run_counted(module, inputs, counting, threads)
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        shape_text = " and ".join(",".join(map(str, t.shape)) for t in inputs)
        raise ValueError(f"input shape {shape_text} does not fit {type(module).__name__} "
                         f"({failure_details(module, error)})") from error
    return features


def module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where ``module`` lives and what it computes in (its first parameter or buffer); CPU fp32 if neither."""
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    if tensor is None or not tensor.is_floating_point():
        return torch.device("cpu"), torch.float32
    return tensor.device, tensor.dtype
