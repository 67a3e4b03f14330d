"""The memory-bound aten operators of eager PyTorch: which class each call falls in, and what it adds.

Half of ``operators``' one dispatch table (``operators.HANDLERS``): the handlers of the operators whose time goes on
moving elements rather than on arithmetic. Their classes split by what an element costs there, measured in place at
1 thread with cold caches (ns per element of the input and output):

* a contiguous copy ~0.05; a copy whose reads run contiguously for fewer than 32 floats (a transpose, a split of
  4-16-dim heads, ``pixel_shuffle``) 0.15-0.5; the same copy with runs of 32 floats or more 0.08-0.1 (a window
  partition, a split of 32-dim heads: ``move``);
* a gather of whole rows (``embedding``, ``index_select``) ~0.1 plus the rows' reads; advanced indexing (``index``:
  Swin's relative-position table, LeViT's attention biases) ~4 per index plus 0.4 per element;
* per output, nearest upsampling 0.3-2 (the most on small maps), linear upsampling ~0.35 per tap (4 for bilinear);
* group norm ~0.1, instance norm (batch statistics computed in the call) ~0.6.

The block-level features these calls add (``elements_move``, ``ops_move``, ...) are what they always were: a class
refines how a call is priced by ``op_linear``, never what the other model kinds see.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ..protocol import Counting

__all__ = ["MEMORY_CLASSES", "WINDOW_OPS", "BATCH_NORM_OPS", "SOFTMAX_OPS", "COPY_OPS", "GATHER_OPS", "INDEX_OPS",
           "NEAREST_OPS", "LINEAR_UPSAMPLE_TAPS", "MEMORY_HANDLERS", "Classified", "memory_class", "numel",
           "window_size", "contiguous_run", "short_runs", "batch_statistics", "memory_call"]

# One classified call: (class, the class's features, the block-level features it adds, covered by a formula).
Classified = tuple[str, dict[str, float], dict[str, float], bool]

# Windowed pooling: work is output elements x window size. Adaptive pooling is a reduction.
WINDOW_OPS = frozenset({"max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
                        "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d"})
BATCH_NORM_OPS = frozenset({"_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm",
                            "batch_norm", "_batch_norm_impl_index"})
SOFTMAX_OPS = frozenset({"_softmax", "_safe_softmax", "softmax", "_log_softmax", "log_softmax"})
COPY_OPS = frozenset({"clone", "copy_", "contiguous", "_to_copy"})
# Copies that permute elements one by one, whatever their input's layout (sub-pixel convolution's shuffles).
PERMUTE_OPS = frozenset({"pixel_shuffle", "pixel_unshuffle"})
# Gathers of whole rows by an index tensor, and advanced indexing (an index computed per element).
GATHER_OPS = frozenset({"embedding", "index_select", "gather", "take", "_embedding_bag", "embedding_bag"})
INDEX_OPS = frozenset({"index", "_unsafe_index"})
NEAREST_OPS = frozenset({"upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
                         "_upsample_nearest_exact2d", "_upsample_nearest_exact3d"})
# Linear upsampling: input elements an output reads (2 per spatial dim for linear, 4 for cubic; antialiased ones
# widen that by the downscale).
LINEAR_UPSAMPLE_TAPS = {"upsample_linear1d": 2, "upsample_bilinear2d": 2, "upsample_trilinear3d": 2,
                        "upsample_bicubic2d": 4, "_upsample_bilinear2d_aa": 2, "_upsample_bicubic2d_aa": 4}
GROUP_NORM_OPS = frozenset({"native_group_norm", "group_norm"})

# The memory-bound operators by block-level category (``count.features.MEMORY_CATEGORIES``).
MEMORY_CLASSES: dict[str, frozenset[str]] = {
    "simple": frozenset({
        "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "relu", "relu_", "relu6", "hardtanh",
        "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "leaky_relu", "leaky_relu_",
        "clamp", "clamp_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "neg", "abs", "maximum",
        "minimum", "where", "sqrt", "rsqrt", "pow", "reciprocal", "sign", "floor", "ceil", "round", "fmod",
        "remainder", "fill_", "zero_", "addcmul", "addcdiv", "lerp", "masked_fill", "masked_fill_",
        "native_dropout", "dropout", "bernoulli_", "_prelu_kernel", "prelu", *BATCH_NORM_OPS,
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
        "im2col", "col2im", "repeat", "take", "_embedding_bag", "embedding_bag", "reflection_pad1d",
        "replication_pad1d", "reflection_pad3d", "replication_pad3d", *NEAREST_OPS, *LINEAR_UPSAMPLE_TAPS,
    }),
    "reduce": frozenset({
        "mean", "sum", "amax", "amin", "max", "min", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d",
        "adaptive_avg_pool1d", "adaptive_max_pool2d", "linalg_vector_norm", "norm", "var_mean", "var", "std",
        "cumsum", "argmax",
    }),
}
_CATEGORY_OF = {op: name for name, ops in MEMORY_CLASSES.items() for op in ops}
# A copy whose reads or writes run contiguously for fewer bytes than this (two cache lines, which the hardware fetches
# in pairs) costs 3-9x a contiguous copy per element in place; with longer runs 1.3-2x.
_SHORT_RUN_BYTES = 128


def memory_class(op: str) -> str | None:
    """The memory category of a non-compute operator (``simple``, ``transcendental``, ..., ``window``); None if
    unknown."""
    if op in WINDOW_OPS:
        return "window"
    return _CATEGORY_OF.get(op)


def numel(x: Any) -> int:
    """Elements of a tensor, or of all tensors in a (nested) list or tuple; 0 for anything else."""
    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (list, tuple)):
        return sum(numel(v) for v in x)
    return 0


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


def contiguous_run(tensor: torch.Tensor) -> int:
    """Elements a kernel reads in one contiguous run: the innermost dims (size-1 ones skipped) whose strides
    follow on from each other; 1 when the innermost stride is not 1 (a transpose)."""
    run = 1
    for size, stride in zip(reversed(tensor.shape), reversed(tensor.stride())):
        if size == 1:
            continue
        if stride != run:
            break
        run *= size
    return run


def short_runs(tensors: Sequence[Any]) -> bool:
    """Whether a copy of ``tensors`` reads or writes a strided one in runs shorter than two cache lines."""
    return any(isinstance(t, torch.Tensor) and not t.is_contiguous()
               and contiguous_run(t) * t.element_size() < _SHORT_RUN_BYTES for t in tensors)


def batch_statistics(name: str, args: Sequence[Any]) -> bool:
    """Whether a batch-norm call computes its statistics (training mode: instance norm, batch norm while
    training) instead of reading running ones: a pass for the statistics, one to normalise."""
    if name == "_native_batch_norm_legit_no_training":
        return False
    # native_batch_norm(input, weight, bias, running_mean, running_var, training, ...); the legit overload without
    # running statistics takes (input, weight, bias, training, ...)
    flags = [a for a in args[3:6] if isinstance(a, bool)]
    return bool(flags and flags[0])


def _sub_class(name: str, args: Sequence[Any], category: str) -> str:
    """The class of a covered memory-bound call: its category, refined where calls of one category cost
    differently per element (module docstring)."""
    if name in BATCH_NORM_OPS:
        return "instance_norm" if batch_statistics(name, args) else "batch_norm"
    if name in GATHER_OPS or name in INDEX_OPS:
        return "gather" if name in GATHER_OPS else "index"
    if name in NEAREST_OPS or name in LINEAR_UPSAMPLE_TAPS:
        return "upsample_nearest" if name in NEAREST_OPS else "upsample_linear"
    if name in GROUP_NORM_OPS:
        return "group_norm"
    if name in PERMUTE_OPS:
        return "transpose_copy"
    if name.endswith("_") and category == "simple":
        return "inplace"
    if name in SOFTMAX_OPS:
        return "softmax"
    if name in COPY_OPS or name in ("cat", "stack"):
        return "transpose_copy" if short_runs(_flat_tensors(args)) else category
    return category


def _flat_tensors(args: Sequence[Any]) -> list[torch.Tensor]:
    found = []
    for arg in args:
        if isinstance(arg, torch.Tensor):
            found.append(arg)
        elif isinstance(arg, (list, tuple)):
            found.extend(t for t in arg if isinstance(t, torch.Tensor))
    return found


def _index_elements(name: str, args: Sequence[Any]) -> int:
    # embedding(weight, indices); index_select / gather (self, dim, index); take(self, index);
    # index / _unsafe_index (self, [index or None per dim]); _embedding_bag(weight, indices, offsets, ...)
    if name in ("index_select", "gather"):
        return numel(args[2])
    return numel(args[1])


def _gathered(name: str, args: Sequence[Any], out: Any) -> int:
    """Elements read by index: the output, or for an embedding bag every row it sums."""
    if name in ("_embedding_bag", "embedding_bag"):
        return numel(args[1]) * args[0].shape[-1]
    return numel(out[0] if isinstance(out, (tuple, list)) else out)


def _taps(name: str, args: Sequence[Any], out: torch.Tensor) -> int:
    """Input elements one output of a linear upsampling reads: taps per spatial dim, to the power of the dims
    (antialiased resizing widens each by its downscale)."""
    taps, x = LINEAR_UPSAMPLE_TAPS[name], args[0]
    per_dim = [taps * max(1.0, size / max(o, 1)) if name.endswith("_aa") else taps
               for size, o in zip(x.shape[2:], out.shape[2:])]
    return math.prod(math.ceil(t) for t in per_dim)


def memory_call(name: str, args: Sequence[Any], out: Any, counting: Counting) -> Classified:
    # op(inputs...) -> outputs: elements read and written
    category = _CATEGORY_OF.get(name)
    covered = category is not None
    category = category or "move"  # an unknown operator is counted as data movement, and warned about once
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if name in BATCH_NORM_OPS:
        elements = tensors[0].numel() + numel(out[0] if isinstance(out, (tuple, list)) else out)
    else:
        elements = numel(args) + numel(out)
    cls = _sub_class(name, args, category) if covered else category
    all_elements = numel(args) + numel(out)
    adds = {f"elements_{category}": all_elements, f"ops_{category}": 1, "mem_elements": all_elements, "mem_ops": 1}
    if cls in ("gather", "index"):
        # the elements read by index and the index: not the table, most of which a gather never reads
        gathered = _gathered(name, args, out)
        return cls, {"calls": 1.0, "gathered": float(gathered),
                     "elements": float(_index_elements(name, args) + 2 * gathered)}, adds, covered
    features = {"calls": 1.0, "elements": float(elements), "beyond_l2": float(max(elements - counting.l2_elements, 0))}
    if cls == "upsample_linear":
        features["work"] = float(out.numel() * _taps(name, args, out))
    return cls, features, adds, covered


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


# The memory-bound half of the dispatch: pooling windows; every other non-compute call goes to ``memory_call``.
MEMORY_HANDLERS = dict.fromkeys(WINDOW_OPS, _window)
