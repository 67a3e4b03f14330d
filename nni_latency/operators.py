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
from typing import Any, Sequence

import torch

_logger = logging.getLogger(__name__)

__all__ = ["FREE_OPS", "CONV_OPS", "MATMUL_OPS", "ATTENTION_OPS", "WINDOW_OPS", "MEMORY_CLASSES", "MEMORY_OPS",
           "memory_class", "conv_path"]

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
