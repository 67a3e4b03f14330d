"""The aten operator table: which cost class every operator belongs to, and which convolution path runs.

One table, so "free", "known" and "unknown" are never confused: free operators only change metadata and
cost nothing; every other known operator has a class whose features say what it costs; an operator in no
class is uncovered, warned about once (naming its module) and counted as data movement.

Classes of the memory-bound operators, because their cost per element differs by an order of magnitude:
``simple`` (one arithmetic op per element: add, relu, batch norm at inference), ``transcendental``
(exp, sigmoid, SiLU, GELU, softmax: a polynomial per element), ``norm`` (layer/group norm: two passes and
a reduction), ``move`` (concatenation, copies that make a permuted tensor contiguous, padding, gathers),
``reduce`` (means, sums, adaptive pooling) and ``window`` (max/avg pooling, costed per window element).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .protocol import Counting

_logger = logging.getLogger(__name__)

__all__ = ["FREE_OPS", "CONV_OPS", "MATMUL_OPS", "ATTENTION_OPS", "WINDOW_OPS", "MEMORY_CLASSES", "MEMORY_OPS",
           "memory_class", "conv_path", "OpClass", "OP_CLASSES", "OP_FEATURE_NAMES", "OVERHEAD_FEATURES",
           "classify_op", "op_class_of_feature", "numel", "vector_padded", "input_padded", "window_size"]

# Operators that only change tensor metadata (or are bookkeeping): free, never warned about.
FREE_OPS = frozenset({
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze",
    "slice", "select", "detach", "alias", "as_strided", "split", "split_with_sizes", "chunk", "unbind",
    "flatten", "unflatten", "empty", "empty_like", "empty_strided", "zeros", "zeros_like", "ones",
    "ones_like", "full", "full_like", "lift_fresh", "_to_copy_noop", "sym_size", "sym_stride", "size",
    "stride", "dim", "is_contiguous", "_local_scalar_dense", "item", "new_empty", "new_zeros",
    "new_ones", "narrow", "expand_as", "view_as", "reshape_as", "_reshape_alias", "set_", "resize_",
    "randn", "rand", "normal_", "uniform_", "arange", "scalar_tensor",
})

CONV_OPS = frozenset({"convolution", "_convolution", "convolution_overrideable"})
MATMUL_OPS = frozenset({"mm", "addmm", "bmm", "baddbmm", "matmul", "linear"})
# Fused attention: softmax(Q K^T / sqrt(d)) V in one kernel (CPU flash attention, CUDA flash/efficient/cuDNN).
ATTENTION_OPS = frozenset({
    "scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_fused_attention_overrideable",
})
# Windowed pooling: work is output elements x window size. Adaptive pooling is a reduction.
WINDOW_OPS = frozenset({"max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
                        "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d"})

MEMORY_CLASSES: dict[str, frozenset[str]] = {
    "simple": frozenset({
        "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "relu", "relu_", "relu6", "hardtanh",
        "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "leaky_relu", "leaky_relu_",
        "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "neg", "abs", "maximum",
        "minimum", "where", "sqrt", "rsqrt", "pow", "reciprocal", "sign", "floor", "ceil", "round", "fmod",
        "remainder", "fill_", "zero_", "addcmul", "addcdiv", "lerp", "masked_fill", "masked_fill_",
        "native_dropout", "dropout", "bernoulli_", "_native_batch_norm_legit_no_training",
        "_native_batch_norm_legit", "native_batch_norm", "batch_norm", "_batch_norm_impl_index",
    }),
    "transcendental": frozenset({
        "sigmoid", "sigmoid_", "silu", "silu_", "gelu", "gelu_", "tanh", "tanh_", "elu", "elu_", "mish",
        "mish_", "softplus", "exp", "log", "erf", "sin", "cos", "_softmax", "_safe_softmax", "softmax", "_log_softmax",
        "log_softmax",
    }),
    "norm": frozenset({"native_layer_norm", "native_group_norm", "layer_norm", "group_norm", "instance_norm",
                       "_fused_rms_norm", "rms_norm"}),
    "move": frozenset({
        "cat", "stack", "clone", "copy_", "contiguous", "_to_copy", "constant_pad_nd", "reflection_pad2d",
        "replication_pad2d", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "roll", "flip", "gather",
        "index_select", "_unsafe_index", "index", "embedding", "upsample_nearest2d", "upsample_bilinear2d",
        "im2col", "col2im",
    }),
    "reduce": frozenset({
        "mean", "sum", "amax", "amin", "max", "min", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d",
        "adaptive_avg_pool1d", "adaptive_max_pool2d", "linalg_vector_norm", "norm", "var_mean", "var", "std",
        "cumsum", "argmax",
    }),
}
MEMORY_OPS = frozenset().union(*MEMORY_CLASSES.values())
_CLASS_OF = {op: name for name, ops in MEMORY_CLASSES.items() for op in ops}


def memory_class(op: str) -> str | None:
    """The memory class of a non-compute operator (``simple``, ``transcendental``, ...); None if unknown."""
    if op in WINDOW_OPS:
        return "window"
    return _CLASS_OF.get(op)


def conv_path(args: Sequence[Any]) -> str:
    """``gemm`` when ATen runs this convolution as im2col + matrix multiply (its "slow" kernels, which it
    picks for 1x1 and small convolutions at batch 1 on one thread), else ``dnn`` (oneDNN, cuDNN).

    The two paths differ by 2-3x per FLOP and by tens of microseconds per call on CPUs, and ATen's choice
    depends on the thread count, so features count each path apart (at the thread count in effect).
    """
    try:
        backend = torch._C._select_conv_backend(*args[:9])  # input, weight, bias, stride, padding, ..., groups
    except (AttributeError, RuntimeError, TypeError) as error:  # a torch without the hook, or an odd call
        _logger.debug("conv backend unknown (%s); counting the oneDNN path", error)
        return "dnn"
    return "gemm" if str(backend).split(".")[-1].startswith("Slow") else "dnn"


# ---------------------------------------------------------------------------------------------------------------
# The operator-class table: each aten call belongs to one class, whose few features its cost is fitted on, from
# the in-place times of that class's own calls (``profiling``), not from block totals.

@dataclass(frozen=True)
class OpClass:
    """A class of aten calls that share one cost form: ``ms = sum_k w_k * feature_k`` over ``features``
    (``calls`` is the per-call constant). ``fallback`` lends its weights when a profile has too few calls of
    this class to fit them."""

    name: str
    doc: str
    features: tuple[str, ...]
    fallback: str | None = None


_CONV = ("calls", "vflops", "elements", "weights", "stream", "copied")
_MATMUL = ("calls", "vflops", "elements", "weights", "stream", "copied")
_MEMORY = ("calls", "elements", "beyond_l2")
_WINDOW = ("calls", "work", "elements", "beyond_l2")

OP_CLASSES: dict[str, OpClass] = {c.name: c for c in (
    OpClass("conv_gemm", "convolutions ATen runs as im2col + matrix multiply (1x1 and small ones on one thread)",
            ("calls", "flops", "im2col", "elements", "weights", "stream", "copied"), "conv_pointwise"),
    OpClass("conv_dense", "ungrouped convolutions with a spatial kernel, on oneDNN/cuDNN", _CONV, "conv_pointwise"),
    OpClass("conv_pointwise", "ungrouped 1x1 convolutions on oneDNN/cuDNN", _CONV, "conv_gemm"),
    OpClass("conv_grouped", "grouped, not depthwise, convolutions", _CONV, "conv_dense"),
    OpClass("conv_depthwise", "depthwise convolutions (groups == channels)", _CONV, "conv_grouped"),
    OpClass("addmm", "matrix multiplies with a bias (linear layers)", _MATMUL, "mm"),
    OpClass("mm", "matrix multiplies without a bias (bias-free linear layers)", _MATMUL, "addmm"),
    OpClass("bmm", "batched matrix multiplies (attention written out: Q K^T, then the weighted sum of V)", _MATMUL,
            "mm"),
    OpClass("attention", "fused attention (scaled_dot_product_attention)", ("calls", "vflops", "scores"), "bmm"),
    OpClass("batch_norm", "batch norm at inference (a scale and shift per channel)", _MEMORY, "simple"),
    OpClass("simple", "one arithmetic op per element, out of place (add, mul, relu, clamp, ...)", _MEMORY, "inplace"),
    OpClass("inplace", "one arithmetic op per element, in place (relu_, hardtanh_, add_, ...): no new tensor",
            _MEMORY, "simple"),
    OpClass("transcendental", "a polynomial per element (sigmoid, SiLU, GELU, tanh, exp)", _MEMORY, "simple"),
    OpClass("softmax", "softmax over rows: a max, an exp and a sum per row", _MEMORY, "transcendental"),
    OpClass("norm", "layer, group and RMS norm: two passes and a reduction", _MEMORY, "transcendental"),
    OpClass("move", "contiguous copies, concatenation, padding, gathers, upsampling", _MEMORY, "simple"),
    OpClass("transpose_copy", "copies that make a permuted or transposed tensor contiguous", _MEMORY, "move"),
    OpClass("reduce", "means, sums and adaptive pooling", _MEMORY, "simple"),
    OpClass("maxpool", "max pooling: work is outputs x window", _WINDOW, "avgpool"),
    OpClass("avgpool", "average pooling: work is outputs x window", _WINDOW, "reduce"),
)}
# Costs paid per call whatever the operator: Python dispatch of every aten call (free ones too) and of every
# module's forward. They are fitted on what block totals leave over the sum of their operators' times.
OVERHEAD_FEATURES = ("overhead.ops", "overhead.free_ops", "overhead.modules")
OP_FEATURE_NAMES: tuple[str, ...] = tuple(f"{c.name}.{f}" for c in OP_CLASSES.values() for f in c.features) \
    + OVERHEAD_FEATURES
_FEATURE_DOCS = {
    "calls": "calls", "vflops": "FLOPs with channels rounded up to the vector width", "flops": "FLOPs",
    "elements": "elements of the input and output", "weights": "weight elements read (the right operand of a "
    "matrix multiply)", "stream": "weight elements beyond the last-level cache (streamed "
    "from memory)", "copied": "elements of strided operands the kernel copies first", "im2col":
    "elements of the unfolded input", "scores": "attention scores", "beyond_l2": "elements beyond the L2 caches",
    "work": "outputs x window size"}


def op_feature_doc(name: str) -> str:
    """What an op-class feature (``class.feature``) counts."""
    group, _, feature = name.partition(".")
    if group == "overhead":
        return {"ops": "aten calls that do work", "free_ops": "aten calls that only change metadata",
                "modules": "module forward calls"}[feature]
    return f"{_FEATURE_DOCS[feature]} of {OP_CLASSES[group].doc}"


def op_class_of_feature(name: str) -> str:
    """The class (or ``overhead``) an op-class feature belongs to."""
    return name.partition(".")[0]


def numel(x: Any) -> int:
    """Elements of a tensor, or of all tensors in a (nested) list or tuple; 0 for anything else."""
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (list, tuple)):
        return sum(numel(v) for v in x)
    return 0


def vector_padded(channels: int, width: int) -> int:
    """``channels`` rounded up to a multiple of the vector width (how oneDNN blocks channels)."""
    return -(-channels // width) * width


def input_padded(channels: int, width: int) -> int:
    """Input channels as a convolution kernel loops over them: an RGB-like input (C_in <= 4) gets a kernel of
    its own that loops over channels unvectorised; anything wider is vector-padded."""
    return channels if channels <= 4 else vector_padded(channels, width)


def _strided(tensor: Any) -> bool:
    """A tensor a kernel has to copy first: neither contiguous nor the transpose of a contiguous matrix."""
    return isinstance(tensor, torch.Tensor) and not tensor.is_contiguous() and not (
        tensor.dim() >= 2 and tensor.transpose(-1, -2).is_contiguous())


def _conv(args: Sequence[Any], out: torch.Tensor, counting: Counting) -> tuple[str, dict[str, float]]:
    # convolution(input[N,Cin,*S], weight[Cout,Cin/g,*K] ([Cin,Cout/g,*K] transposed), bias, stride, padding,
    #             dilation, transposed, output_padding, groups) -> [N,Cout,*S']
    x, weight = args[0], args[1]
    transposed, groups = bool(args[6]), int(args[8])
    kernel = math.prod(weight.shape[2:])
    c_in, c_out = x.shape[1], out.shape[1]
    positions = (x.numel() // c_in) if transposed else (out.numel() // c_out)
    flops = 2.0 * (x.numel() * weight.shape[1] if transposed else out.numel() * weight.shape[1]) * kernel
    width = counting.vector_width
    if groups > 1 and groups == c_in:
        kind, vmacs = "depthwise", positions * vector_padded(max(c_in, c_out), width) * kernel
    else:
        kind = "grouped" if groups > 1 else ("pointwise" if kernel == 1 else "dense")
        vmacs = positions * groups * input_padded(c_in // groups, width) * vector_padded(c_out // groups, width) * kernel
    common = {"calls": 1.0, "elements": float(x.numel() + out.numel()), "weights": float(weight.numel()),
              "stream": float(max(weight.numel() - counting.llc_elements, 0)),
              "copied": float(x.numel() if not x.is_contiguous() else 0)}
    if conv_path(args) == "gemm":
        unfolded = 0 if kernel == 1 and all(s == 1 for s in args[3]) else positions * c_in * kernel
        return "conv_gemm", {**common, "flops": flops, "im2col": float(unfolded)}
    return f"conv_{kind}", {**common, "vflops": 2.0 * vmacs}


def _matmul(name: str, args: Sequence[Any], out: torch.Tensor, counting: Counting) -> tuple[str, dict[str, float]]:
    # mm(a[n,k], b[k,m]); addmm(bias, a, b); bmm(a[B,n,k], b[B,k,m]); baddbmm(bias, a, b) -> out
    a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
    width = counting.vector_width
    inner, cols = a.shape[-1], out.shape[-1]
    vflops = 2.0 * (out.numel() // cols) * vector_padded(inner, width) * vector_padded(cols, width)
    weights = b.numel() if b.dim() == 2 else 0  # a batched right operand is an activation, not a weight
    kind = {"addmm": "addmm", "mm": "mm", "bmm": "bmm", "baddbmm": "bmm"}.get(name, "mm")
    return kind, {"calls": 1.0, "vflops": vflops, "elements": float(a.numel() + out.numel()),
                  "weights": float(b.numel()), "stream": float(max(weights - counting.llc_elements, 0)),
                  "copied": float(sum(t.numel() for t in (a, b) if _strided(t)))}


def _attention(args: Sequence[Any], counting: Counting) -> tuple[str, dict[str, float]]:
    # attention(query[..., L, E], key[..., S, E], value[..., S, Ev], ...) -> [..., L, Ev]
    query, key, value = args[0], args[1], args[2]
    heads = math.prod(query.shape[:-2])
    queries, keys, width = query.shape[-2], key.shape[-2], counting.vector_width
    padded = heads * queries * vector_padded(keys, width) * (vector_padded(query.shape[-1], width)
                                                       + vector_padded(value.shape[-1], width))
    return "attention", {"calls": 1.0, "vflops": 2.0 * padded, "scores": float(heads * queries * keys)}


_INPLACE = "inplace"


def window_size(args: Sequence[Any]) -> int:
    """Input elements one output of a pooling window reads: the kernel, clipped to the padded input (HF's
    EfficientNet pools its 7x7 map with a 1280x1280 kernel and ``ceil_mode``: 49 elements, not 1.6 million)."""
    # pool(input, kernel_size, stride, padding, ...): kernel and padding per spatial dim (or one for all)
    x, kernel = args[0], list(args[1])
    dims = len(kernel)
    padding = list(args[3]) if len(args) > 3 and isinstance(args[3], (list, tuple)) and args[3] else [0]
    padding = padding * dims if len(padding) == 1 else padding
    sizes = list(x.shape[-dims:])
    return math.prod(min(k, size + 2 * pad) for k, size, pad in zip(kernel, sizes, padding))


def _memory(name: str, args: Sequence[Any], out: Any, counting: Counting) -> tuple[str, dict[str, float]]:
    category = memory_class(name) or "move"
    inputs = [a for a in args if isinstance(a, torch.Tensor)]
    if name in ("_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm",
                "batch_norm", "_batch_norm_impl_index"):
        cls = "batch_norm"
        elements = inputs[0].numel() + numel(out[0] if isinstance(out, (tuple, list)) else out)
    elif category == "window":
        result = out[0] if isinstance(out, (tuple, list)) else out
        cls = "maxpool" if name.startswith("max") else "avgpool"
        elements = numel(args[0]) + result.numel()
        features = {"calls": 1.0, "work": float(result.numel() * window_size(args)), "elements": float(elements),
                    "beyond_l2": float(max(elements - counting.l2_elements, 0))}
        return cls, features
    elif name.endswith("_") and category == "simple":
        cls, elements = _INPLACE, numel(args) + numel(out)
    elif name in ("_softmax", "_safe_softmax", "softmax", "_log_softmax", "log_softmax"):
        cls, elements = "softmax", numel(args) + numel(out)
    elif category == "move" and name in ("clone", "copy_", "contiguous", "_to_copy") and any(
            not t.is_contiguous() for t in inputs):
        cls, elements = "transpose_copy", numel(args) + numel(out)
    else:
        cls, elements = category, numel(args) + numel(out)
    return cls, {"calls": 1.0, "elements": float(elements),
                 "beyond_l2": float(max(elements - counting.l2_elements, 0))}


def classify_op(name: str, args: Sequence[Any], out: Any, counting: Counting) -> tuple[str, dict[str, float]] | None:
    """The class of one aten call and its features (``OP_CLASSES[cls].features``); None for a free call.

    An operator in no class is counted as data movement (``move``); ``memory_class`` says which are known.
    """
    if name in FREE_OPS:
        return None
    if name in CONV_OPS:
        return _conv(args, out, counting)
    if name in MATMUL_OPS:
        return _matmul(name, args, out, counting)
    if name in ATTENTION_OPS:
        return _attention(args, counting)
    return _memory(name, args, out, counting)
