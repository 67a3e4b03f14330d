"""THE aten operator table of eager PyTorch: every operator's class, the features of that class, and what a call
adds to the block-level features, from one handler per kind of operator (one dispatch, ``HANDLERS``).

One table, so "free", "known" and "unknown" are never confused: free operators only change metadata and cost
nothing; every other known operator has a handler whose one-line comment gives its shape signature; an operator in
no class is uncovered, named in one warning per counted pass (``count.features.warn_uncovered``) and counted as
data movement.

One class, one kind of call: a class holds calls whose cost per feature is the same, measured in place at 1 thread.
The memory-bound classes (``memory``) split by what an element costs: one arithmetic op (``simple``, ``inplace``),
``batch_norm`` at inference, a polynomial (``transcendental``, ``softmax``), ``norm`` (layer norm), ``group_norm``,
``instance_norm`` (statistics computed in the call), copies (``move``), copies reading runs shorter than two cache
lines (``transpose_copy``), row gathers (``gather``), advanced indexing (``index``), nearest and linear
upsampling, reductions and pooling windows.

Convolutions are split by the kernel that runs them. ATen's own kernels (``conv_path``), which it picks for 1x1 and
small convolutions at batch 1 on one thread: im2col + GEMM (``conv_gemm``, 2-3x cheaper per FLOP there) and its
3-D form, vol2col + GEMM (``conv_gemm_3d``: 1.1-3x what ``conv_gemm``'s weights price it at, the more the larger
its unfolded volume). oneDNN's, per kind: dense, pointwise, grouped, depthwise; 3-D depthwise convolutions run on
another kernel (``conv_depthwise_3d``, 1.5x a 2-D one per FLOP); a depthwise convolution padded wider than oneDNN's
depthwise kernel takes (dilation 7, or a 15-wide kernel, with "same" padding) runs as a GEMM per channel
(``conv_depthwise_gemm``: 3x slower per FLOP for a 3x3, 25-40x for 15- to 31-wide kernels). Transposed
convolutions are a class of their own whichever path runs them (``conv_transposed``). The choices depend on the
thread count, so calls are classified at the profiled device's. Recurrent layers oneDNN runs whole
(``mkldnn_rnn_layer``: an LSTM layer) are ``rnn``; a GRU decomposes into matrix multiplies and element-wise calls.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from typing import Any, Callable, Sequence

import torch

from ..base import OpClass, OpTable
from ..protocol import Counting
from .memory import (MEMORY_CLASSES, MEMORY_HANDLERS, WINDOW_OPS, Classified, memory_call, memory_class, numel,
                     window_size)

_logger = logging.getLogger(__name__)

__all__ = ["FREE_OPS", "CONV_OPS", "MATMUL_OPS", "ATTENTION_OPS", "RNN_OPS", "WINDOW_OPS", "MEMORY_CLASSES", "TABLE",
           "OP_CLASSES", "OP_FEATURE_NAMES", "OVERHEAD_FEATURES", "FEATURE_NAMES", "FEATURE_DOCS", "FEATURE_ROLES",
           "HANDLERS", "classify_op", "conv_path", "memory_class", "numel", "vector_padded", "input_padded",
           "window_size", "depthwise_kernel_refuses", "Classified"]

# Operators that only change tensor metadata (or are bookkeeping): free, never warned about.
FREE_OPS = frozenset({
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze",
    "slice", "select", "detach", "alias", "as_strided", "split", "split_with_sizes", "chunk", "unbind",
    "flatten", "unflatten", "empty", "empty_like", "empty_strided", "zeros", "zeros_like", "ones",
    "ones_like", "full", "full_like", "lift_fresh", "_to_copy_noop", "sym_size", "sym_stride", "size",
    "stride", "dim", "is_contiguous", "_local_scalar_dense", "item", "new_empty", "new_zeros",
    "new_ones", "narrow", "expand_as", "view_as", "reshape_as", "_reshape_alias", "set_", "resize_",
    "randn", "rand", "normal_", "uniform_", "arange", "scalar_tensor", "_nnpack_available",
    # views a decomposed GRU or LSTM cell takes of its gates, and in-place transposes of metadata
    "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk", "transpose_", "t_", "squeeze_", "unsqueeze_",
})

CONV_OPS = frozenset({"convolution", "_convolution", "convolution_overrideable"})
MATMUL_OPS = frozenset({"mm", "addmm", "bmm", "baddbmm", "matmul", "linear"})
# Fused attention: softmax(Q K^T / sqrt(d)) V in one kernel (CPU flash attention, CUDA flash/efficient/cuDNN).
ATTENTION_OPS = frozenset({
    "scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_fused_attention_overrideable",
})
# A recurrent layer run whole by oneDNN (one call per layer and direction of an nn.LSTM on a CPU).
RNN_OPS = frozenset({"mkldnn_rnn_layer"})
# oneDNN's depthwise kernel takes at most this much padding on a side (AVX-512 jit_dw, measured on 971 shapes).
_DW_MAX_PADDING = 6

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
    OpClass("norm", "layer and RMS norm: two passes and a reduction", _MEMORY, "transcendental"),
    OpClass("move", "copies, concatenation and padding that read and write in runs of 32 floats or more", _MEMORY,
            "simple"),
    OpClass("transpose_copy", "copies that read or write runs shorter than 32 floats (a transpose made contiguous, "
            "a split of narrow heads, pixel shuffles)", _MEMORY, "move"),
    OpClass("reduce", "means, sums and adaptive pooling", _MEMORY, "simple"),
    OpClass("maxpool", "max pooling: work is outputs x window", _WINDOW, "avgpool"),
    OpClass("avgpool", "average pooling: work is outputs x window", _WINDOW, "reduce"),
    # Kinds of call the classes above priced as something they are not (issue 28); each its own cost per feature.
    OpClass("conv_transposed", "transposed convolutions (oneDNN's, or ATen's GEMM + col2im: im2col is the folded "
            "column buffer)", ("calls", "vflops", "im2col", "elements", "weights", "stream", "copied"), "conv_dense"),
    OpClass("conv_gemm_3d", "3-D convolutions ATen runs as vol2col + matrix multiply",
            ("calls", "flops", "im2col", "elements", "weights", "stream", "copied"), "conv_gemm"),
    OpClass("conv_depthwise_3d", "3-D depthwise convolutions (oneDNN's channels-last depthwise kernel)", _CONV,
            "conv_depthwise"),
    OpClass("conv_depthwise_gemm", "depthwise convolutions padded wider than oneDNN's depthwise kernel takes (large "
            "dilations and kernels): a GEMM per channel", _CONV, "conv_depthwise"),
    OpClass("rnn", "recurrent layers run whole (an LSTM layer): weights are the recurrent ones read every step",
            ("calls", "steps", "flops", "weights", "elements"), "mm"),
    OpClass("gather", "gathers of whole rows by an index tensor (embedding, index_select, gather)",
            ("calls", "gathered", "elements"), "move"),
    OpClass("index", "advanced indexing (a relative-position bias table indexed by a precomputed index)",
            ("calls", "gathered", "elements"), "gather"),
    OpClass("upsample_nearest", "nearest-neighbour upsampling", _MEMORY, "move"),
    OpClass("upsample_linear", "linear, bilinear, bicubic and trilinear upsampling: work is outputs x taps",
            _WINDOW, "upsample_nearest"),
    OpClass("group_norm", "group norm: statistics per group of channels, then a scale and shift", _MEMORY, "norm"),
    OpClass("instance_norm", "batch norm computing its own statistics (instance norm, batch norm in training)",
            _MEMORY, "group_norm"),
)}, overheads=("overhead.ops", "overhead.free_ops", "overhead.modules"),
    docs={"ops": "aten calls that do work", "free_ops": "aten calls that only change metadata"},
    op_clock="every aten call timed in place, the clock's own cost removed")
OP_CLASSES = TABLE.classes
# Costs paid per call whatever the operator: Python dispatch of every aten call (free ones too) and of every
# module's forward. They are fitted on what block totals leave over the sum of their operators' times.
OVERHEAD_FEATURES = TABLE.overheads
OP_FEATURE_NAMES: tuple[str, ...] = TABLE.feature_names
FEATURE_NAMES: tuple[str, ...] = TABLE.all_feature_names
FEATURE_DOCS: dict[str, str] = TABLE.feature_docs
FEATURE_ROLES: dict[str, str] = TABLE.feature_roles


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


def _hidden_copy(tensor: torch.Tensor) -> dict[str, float]:
    # A kernel that needs a dense layout copies a strided operand inside the operator, where no aten op shows
    # it (a token MLP's depthwise conv on transposed tokens, a projection of permuted heads): data movement.
    return {"elements_move": 2 * tensor.numel(), "ops_move": 1}


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
    path = conv_path(args)
    cls = _conv_class(kind, path, args, transposed)
    if path == "gemm":
        # im2col unfolds (C_in / groups) x kernel values per output position; a 1x1 stride-1 conv needs none.
        unfolded = 0 if kernel == 1 and all(s == 1 for s in args[3]) else positions * c_in * kernel
        adds.update(gemm_flops=flops, gemm_convs=1, im2col_elements=unfolded)
    else:
        adds.update({f"dnn_vflops_{kind}": 2.0 * vmacs, f"dnn_convs_{kind}": 1})
    if cls == "conv_transposed":
        # ATen's path multiplies into columns of C_out x kernel values per input position and folds them (col2im)
        folded = 0 if path == "dnn" or (kernel == 1 and all(s == 1 for s in args[3])) else positions * c_out * kernel
        return cls, {**features, "vflops": 2.0 * vmacs, "im2col": float(folded)}, adds, True
    if path == "gemm":
        return cls, {**features, "flops": flops, "im2col": float(unfolded)}, adds, True
    return cls, {**features, "vflops": 2.0 * vmacs}, adds, True


def _conv_class(kind: str, path: str, args: Sequence[Any], transposed: bool) -> str:
    """The class of a convolution of ``kind`` on ``path``: the kernel that runs it (module docstring)."""
    x = args[0]
    spatial = x.dim() - 2
    if transposed:
        return "conv_transposed"
    if path == "gemm":
        return "conv_gemm_3d" if spatial == 3 else "conv_gemm"
    if kind == "depthwise" and spatial == 3:
        return "conv_depthwise_3d"
    if kind == "depthwise" and x.device.type != "cuda" and depthwise_kernel_refuses(x, args[1], args[4], args[5]):
        return "conv_depthwise_gemm"  # oneDNN's choice (a CPU's, or what a meta pass stands for)
    return f"conv_{kind}"


def depthwise_kernel_refuses(x: torch.Tensor, weight: torch.Tensor, padding: Sequence[int],
                             dilation: Sequence[int]) -> bool:
    """Whether oneDNN's depthwise kernel turns down a 1-D or 2-D depthwise convolution, which oneDNN then runs as a
    GEMM per channel: in some spatial dim the padding exceeds 6 or the dilated kernel's reach ``(k - 1) x d``, or
    that reach exceeds the input plus its padding (what ``ONEDNN_VERBOSE`` shows on 971 shapes, 1-D and 2-D)."""
    dims = x.dim() - 2
    padding = list(padding) * dims if len(padding) == 1 else list(padding)
    dilation = list(dilation) * dims if len(dilation) == 1 else list(dilation)
    for size, k, pad, dil in zip(x.shape[2:], weight.shape[2:], padding, dilation):
        reach = (k - 1) * dil
        if pad > min(_DW_MAX_PADDING, reach) or reach > size + pad:
            return True
    return False


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


def _rnn(name: str, args: Sequence[Any], out: Any, counting: Counting) -> Classified:
    # mkldnn_rnn_layer(input[T,B,I], w_ih[G*H,I], w_hh[G*H,H], b_ih, b_hh, hx[B,H], cx[B,H], reverse, batch_sizes,
    #                  mode, hidden_size, num_layers, has_biases, bidirectional, batch_first, train)
    #   -> (output[T,B,H], hy, cy, workspace); G gates (4: LSTM); the input is time-major even when batch_first
    x, w_ih, w_hh = args[0], args[1], args[2]
    steps, batch = x.shape[0], x.shape[1]
    rows, inputs, hidden = w_ih.shape[0], w_ih.shape[1], w_hh.shape[1]
    flops = 2.0 * steps * batch * rows * (inputs + hidden)  # G gates x (input + hidden) x hidden x 2 per step
    width = counting.vector_width
    vflops = 2.0 * steps * batch * vector_padded(rows, width) * (vector_padded(inputs, width)
                                                                 + vector_padded(hidden, width))
    weights = w_ih.numel() + steps * w_hh.numel()  # the recurrent weights are read at every step
    output = out[0] if isinstance(out, (tuple, list)) else out
    features = {"calls": 1.0, "steps": float(steps), "flops": flops, "weights": float(weights),
                "elements": float(x.numel() + output.numel())}
    # The block-level features of the same layer decomposed, as ATen runs a GRU: the input's matrix multiply
    # [T*B, I] x [I, G*H], then one [B, H] x [H, G*H] per step.
    adds = {"acts": 2 * steps * batch * rows, "inp": steps * batch * (inputs + hidden), "flops": flops,
            "flops_pointwise": flops, "weights": weights, "matmul_weights": weights, "vflops_matmul": vflops,
            "matmuls": 1 + steps, "conv_ops": 1 + steps}
    return "rnn", features, adds, True


# THE dispatch: aten operator -> its handler (free operators have none; anything else is ``memory.memory_call``'s,
# which counts an unknown operator as data movement).
HANDLERS: dict[str, Callable[[str, Sequence[Any], Any, Counting], Classified]] = {
    **dict.fromkeys(CONV_OPS, _conv), **dict.fromkeys(MATMUL_OPS, _matmul),
    **dict.fromkeys(ATTENTION_OPS, _attention), **dict.fromkeys(RNN_OPS, _rnn), **MEMORY_HANDLERS,
}


def classify_op(name: str, args: Sequence[Any], out: Any, counting: Counting) -> Classified | None:
    """The class of one aten call, that class's features, what it adds to the block-level features, and whether
    a formula covers it; None for a free call."""
    if name in FREE_OPS:
        return None
    return HANDLERS.get(name, memory_call)(name, args, out, counting)
