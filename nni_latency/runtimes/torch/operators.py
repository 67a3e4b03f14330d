"""THE aten operator table of eager PyTorch: every operator's class, the features of that class, and what a call
adds to the block-level features, from one handler per kind of operator (one dispatch).

One table, so "free", "known" and "unknown" are never confused: free operators only change metadata and cost
nothing; every other known operator has a handler whose one-line comment gives its shape signature; an operator in
no class is uncovered, warned about once (naming its module) and counted as data movement.

Classes of the memory-bound operators, because their cost per element differs by an order of magnitude:
``simple`` (one arithmetic op per element: add, relu), ``batch_norm`` (a scale and shift per channel),
``transcendental`` (exp, sigmoid, SiLU, GELU: a polynomial per element), ``softmax``, ``norm`` (layer/group norm:
two passes and a reduction), ``move`` (concatenation, contiguous copies, padding, gathers), ``transpose_copy``
(copies that make a permuted tensor contiguous), ``reduce`` (means, sums, adaptive pooling) and the pooling
windows (costed per window element).

Convolutions are split by the kernel ATen runs (``conv_path``): oneDNN's blocked kernels per kind, or im2col +
matrix multiply, which ATen picks for 1x1 and small convolutions at batch 1 on one thread and which is 2-3x
cheaper per FLOP there. The choice depends on the thread count, so calls are classified at the profiled device's.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any, Callable, Sequence

import torch

from ..base import OpClass, OpTable
from ..protocol import Counting

_logger = logging.getLogger(__name__)

__all__ = ["FREE_OPS", "CONV_OPS", "MATMUL_OPS", "ATTENTION_OPS", "WINDOW_OPS", "MEMORY_CLASSES", "TABLE",
           "OP_CLASSES", "OP_FEATURE_NAMES", "OVERHEAD_FEATURES", "FEATURE_NAMES", "FEATURE_DOCS", "FEATURE_ROLES",
           "classify_op", "conv_path", "memory_class", "numel", "vector_padded", "input_padded", "window_size",
           "Classified"]

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
BATCH_NORM_OPS = frozenset({"_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm",
                            "batch_norm", "_batch_norm_impl_index"})
SOFTMAX_OPS = frozenset({"_softmax", "_safe_softmax", "softmax", "_log_softmax", "log_softmax"})
COPY_OPS = frozenset({"clone", "copy_", "contiguous", "_to_copy"})

# The memory-bound operators by block-level category (``count.features.MEMORY_CATEGORIES``).
MEMORY_CLASSES: dict[str, frozenset[str]] = {
    "simple": frozenset({
        "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "relu", "relu_", "relu6", "hardtanh",
        "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "leaky_relu", "leaky_relu_",
        "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "neg", "abs", "maximum",
        "minimum", "where", "sqrt", "rsqrt", "pow", "reciprocal", "sign", "floor", "ceil", "round", "fmod",
        "remainder", "fill_", "zero_", "addcmul", "addcdiv", "lerp", "masked_fill", "masked_fill_",
        "native_dropout", "dropout", "bernoulli_", *BATCH_NORM_OPS,
    }),
    "transcendental": frozenset({
        "sigmoid", "sigmoid_", "silu", "silu_", "gelu", "gelu_", "tanh", "tanh_", "elu", "elu_", "mish",
        "mish_", "softplus", "exp", "log", "erf", "sin", "cos", *SOFTMAX_OPS,
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
_CATEGORY_OF = {op: name for name, ops in MEMORY_CLASSES.items() for op in ops}

_CONV = ("calls", "vflops", "elements", "weights", "stream", "copied")
_MATMUL = ("calls", "vflops", "elements", "weights", "stream", "copied")
_MEMORY = ("calls", "elements", "beyond_l2")
_WINDOW = ("calls", "work", "elements", "beyond_l2")

TABLE = OpTable("torch", {c.name: c for c in (
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
)}, overheads=("overhead.ops", "overhead.free_ops", "overhead.modules"),
    docs={"ops": "aten calls that do work", "free_ops": "aten calls that only change metadata"})
OP_CLASSES = TABLE.classes
# Costs paid per call whatever the operator: Python dispatch of every aten call (free ones too) and of every
# module's forward. They are fitted on what block totals leave over the sum of their operators' times.
OVERHEAD_FEATURES = TABLE.overheads
OP_FEATURE_NAMES: tuple[str, ...] = TABLE.feature_names
FEATURE_NAMES: tuple[str, ...] = TABLE.all_feature_names
FEATURE_DOCS: dict[str, str] = TABLE.feature_docs
FEATURE_ROLES: dict[str, str] = TABLE.feature_roles


def memory_class(op: str) -> str | None:
    """The memory category of a non-compute operator (``simple``, ``transcendental``, ..., ``window``); None if
    unknown."""
    if op in WINDOW_OPS:
        return "window"
    return _CATEGORY_OF.get(op)


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


def _strided(tensor: Any) -> bool:
    """A tensor a kernel has to copy first: neither contiguous nor the transpose of a contiguous matrix."""
    return isinstance(tensor, torch.Tensor) and not tensor.is_contiguous() and not (
        tensor.dim() >= 2 and tensor.transpose(-1, -2).is_contiguous())


def _hidden_copy(tensor: torch.Tensor) -> dict[str, float]:
    # A kernel that needs a dense layout copies a strided operand inside the operator, where no aten op shows
    # it (a token MLP's depthwise conv on transposed tokens, a projection of permuted heads): data movement.
    return {"elements_move": 2 * tensor.numel(), "ops_move": 1}


# One classified call: (class, the class's features, the block-level features it adds, covered by a formula).
Classified = tuple[str, dict[str, float], dict[str, float], bool]


def _conv(name: str, args: Sequence[Any], out: torch.Tensor, counting: Counting) -> Classified:
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
    features = {"calls": 1.0, "elements": float(x.numel() + out.numel()), "weights": float(weight.numel()),
                "stream": float(max(weight.numel() - counting.llc_elements, 0)),
                "copied": float(x.numel() if not x.is_contiguous() else 0)}
    adds = Counter({"acts": out.numel(), "inp": x.numel(), "flops": flops, f"flops_{kind}": flops,
                    "weights": weight.numel(), "conv_weights": weight.numel(), f"vflops_{kind}": 2.0 * vmacs,
                    f"convs_{kind}": 1, "conv_ops": 1})
    if not x.is_contiguous():  # ATen makes even a channels-last input dense before its CPU kernels run
        adds.update(_hidden_copy(x))
    if conv_path(args) == "gemm":
        # im2col unfolds (C_in / groups) x kernel values per output position; a 1x1 stride-1 conv needs none.
        unfolded = 0 if kernel == 1 and all(s == 1 for s in args[3]) else positions * c_in * kernel
        adds.update(gemm_flops=flops, gemm_convs=1, im2col_elements=unfolded)
        return "conv_gemm", {**features, "flops": flops, "im2col": float(unfolded)}, adds, True
    adds.update({f"dnn_vflops_{kind}": 2.0 * vmacs, f"dnn_convs_{kind}": 1})
    return f"conv_{kind}", {**features, "vflops": 2.0 * vmacs}, adds, True


def _matmul(name: str, args: Sequence[Any], out: torch.Tensor, counting: Counting) -> Classified:
    # mm(a[n,k], b[k,m]); addmm(bias, a, b); bmm(a[B,n,k], b[B,k,m]); baddbmm(bias, a, b) -> out
    a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
    width = counting.vector_width
    inner, cols = a.shape[-1], out.shape[-1]
    vflops = 2.0 * (out.numel() // cols) * vector_padded(inner, width) * vector_padded(cols, width)
    weights = b.numel() if b.dim() == 2 else 0  # a batched right operand is an activation, not a weight
    cls = {"addmm": "addmm", "mm": "mm", "bmm": "bmm", "baddbmm": "bmm"}.get(name, "mm")
    features = {"calls": 1.0, "vflops": vflops, "elements": float(a.numel() + out.numel()),
                "weights": float(b.numel()), "stream": float(max(weights - counting.llc_elements, 0)),
                "copied": float(sum(t.numel() for t in (a, b) if _strided(t)))}
    flops = 2.0 * out.numel() * inner
    adds = Counter({"acts": out.numel(), "inp": a.numel(), "flops": flops, "flops_pointwise": flops,
                    "weights": b.numel(), "matmul_weights": b.numel(), "vflops_matmul": vflops, "matmuls": 1,
                    "conv_ops": 1})
    for operand in (a, b):  # BLAS reads a matrix or its transpose in place; any other layout is copied first
        if not (operand.is_contiguous() or operand.transpose(-1, -2).is_contiguous()):
            adds.update(_hidden_copy(operand))
    if name in ("addmm", "baddbmm"):
        adds["elements_move"] += out.numel()  # the bias is broadcast into the output before the product
    return cls, features, adds, True


def _attention(name: str, args: Sequence[Any], out: Any, counting: Counting) -> Classified:
    # attention(query[..., L, E], key[..., S, E], value[..., S, Ev], ...) -> [..., L, Ev] (+ statistics)
    query, key, value = args[0], args[1], args[2]
    heads = math.prod(query.shape[:-2])  # batch x heads
    queries, keys, width = query.shape[-2], key.shape[-2], counting.vector_width
    padded = heads * queries * vector_padded(keys, width) * (vector_padded(query.shape[-1], width)
                                                             + vector_padded(value.shape[-1], width))
    flops = 2.0 * heads * queries * keys * (query.shape[-1] + value.shape[-1])
    adds = {"flops": flops, "vflops_attention": 2.0 * padded, "attention_scores": heads * queries * keys,
            "attentions": 1, "mem_elements": numel(args) + numel(out), "mem_ops": 1}
    return "attention", {"calls": 1.0, "vflops": 2.0 * padded, "scores": float(heads * queries * keys)}, adds, True


def _memory_class(name: str, args: Sequence[Any], category: str) -> str:
    if name in BATCH_NORM_OPS:
        return "batch_norm"
    if name.endswith("_") and category == "simple":
        return "inplace"
    if name in SOFTMAX_OPS:
        return "softmax"
    if name in COPY_OPS and any(isinstance(t, torch.Tensor) and not t.is_contiguous() for t in args):
        return "transpose_copy"
    return category


def _window(name: str, args: Sequence[Any], out: Any, counting: Counting) -> Classified:
    # pool(input[N,C,*S], kernel_size, stride, padding, ...) -> output (or (output, indices)); work = outputs x window
    result = out[0] if isinstance(out, (tuple, list)) else out
    elements = numel(args[0]) + result.numel()
    work = result.numel() * window_size(args)
    features = {"calls": 1.0, "work": float(work), "elements": float(elements),
                "beyond_l2": float(max(elements - counting.l2_elements, 0))}
    adds = {"maxpool_work" if name.startswith("max") else "avgpool_work": work, "ops_window": 1,
            "mem_elements": numel(args) + numel(out), "mem_ops": 1}
    return "maxpool" if name.startswith("max") else "avgpool", features, adds, True


def _memory(name: str, args: Sequence[Any], out: Any, counting: Counting) -> Classified:
    # op(inputs...) -> outputs: elements read and written
    category = _CATEGORY_OF.get(name)
    covered = category is not None
    category = category or "move"  # an unknown operator is counted as data movement, and warned about once
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if name in BATCH_NORM_OPS:
        elements = tensors[0].numel() + numel(out[0] if isinstance(out, (tuple, list)) else out)
    else:
        elements = numel(args) + numel(out)
    cls = _memory_class(name, tensors, category)
    all_elements = numel(args) + numel(out)
    adds = {f"elements_{category}": all_elements, f"ops_{category}": 1, "mem_elements": all_elements, "mem_ops": 1}
    features = {"calls": 1.0, "elements": float(elements), "beyond_l2": float(max(elements - counting.l2_elements, 0))}
    return cls, features, adds, covered


# THE dispatch: aten operator -> its handler (free operators have none; anything unknown is ``_memory``'s).
HANDLERS: dict[str, Callable[[str, Sequence[Any], Any, Counting], Classified]] = {
    **dict.fromkeys(CONV_OPS, _conv), **dict.fromkeys(MATMUL_OPS, _matmul),
    **dict.fromkeys(ATTENTION_OPS, _attention), **dict.fromkeys(WINDOW_OPS, _window),
}


def classify_op(name: str, args: Sequence[Any], out: Any, counting: Counting) -> Classified | None:
    """The class of one aten call, that class's features, what it adds to the block-level features, and whether
    a formula covers it; None for a free call."""
    if name in FREE_OPS:
        return None
    return HANDLERS.get(name, _memory)(name, args, out, counting)
