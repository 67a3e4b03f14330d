"""THE node table of ONNX Runtime: every node kind ORT runs after its graph optimizer (fused convolutions, blocked
NCHWc kernels, fused matrix multiplies and norms), its class, the features of that class, and what the node adds
to the block-level features, from one handler per kind of node (one dispatch).

Nodes come from ORT's own profiler (``session.profile_nodes``), with the shapes its kernels saw: an NCHWc kernel's
channels are already padded to its block, so a blocked convolution's FLOPs are the FLOPs its kernel runs. Classes
split where the cost per feature differs: blocked convolutions by kind (pointwise, dense, depthwise, grouped, and
the stem kernel that reads an unblocked RGB input), convolutions ORT leaves unblocked (1-D, 3-D, odd channel
counts), transposed convolutions, matrix multiplies with constant weights (linear layers) and between activations
(attention), recurrent layers, and memory-bound nodes by their cost per element. Layout changes are ORT's: a
``ReorderInput``/``ReorderOutput`` inside a graph is a node of its own (``reorder``); one at the graph's edge
(``reorder_edge``) exists only because the graph was exported alone, so a part of a network costs without it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from ...count.features import MEMORY_CATEGORIES
from ..base import OpClass, OpTable
from ..protocol import Counting
from .session import NodeRun

__all__ = ["TABLE", "OP_CLASSES", "FEATURE_NAMES", "classify_node", "Classified"]

_CONV = ("calls", "vflops", "elements", "weights")
_PLAIN_CONV = ("calls", "flops", "im2col", "elements", "weights")
_GEMM = ("calls", "flops", "elements", "weights", "stream")
_MATMUL = ("calls", "flops", "elements")
_MEMORY = ("calls", "elements", "beyond_l2")
_WINDOW = ("calls", "work", "elements")

TABLE = OpTable("onnxruntime", {c.name: c for c in (
    OpClass("conv_pointwise", "blocked (NCHWc) 1x1 convolutions", _CONV, "conv_dense"),
    OpClass("conv_dense", "blocked (NCHWc) ungrouped convolutions with a spatial kernel", _CONV, "conv_pointwise"),
    OpClass("conv_depthwise", "blocked (NCHWc) depthwise convolutions", _CONV, "conv_grouped"),
    OpClass("conv_grouped", "blocked (NCHWc) grouped, not depthwise, convolutions", _CONV, "conv_dense"),
    OpClass("conv_stem", "blocked convolutions reading an unblocked input of few channels (an RGB stem)", _CONV,
            "conv_dense"),
    OpClass("conv", "ungrouped convolutions ORT leaves unblocked (1-D, 3-D, shapes it does not block; FusedConv)",
            _PLAIN_CONV, "conv_transpose"),
    OpClass("conv_grouped_unblocked", "grouped convolutions ORT leaves unblocked (few channels per group): an "
                                      "im2col and a small matrix multiply per group", _PLAIN_CONV, "conv"),
    OpClass("conv_transpose", "transposed convolutions", _PLAIN_CONV, "conv"),
    OpClass("gemm", "matrix multiplies with constant weights (linear layers: Gemm, FusedGemm, MatMul)", _GEMM,
            "matmul"),
    OpClass("matmul", "matrix multiplies between activations (attention: MatMul, FusedMatMul)", _MATMUL, "gemm"),
    OpClass("attention", "fused attention nodes (com.microsoft Attention, MultiHeadAttention)", _MATMUL, "matmul"),
    OpClass("recurrent", "recurrent layers (LSTM, GRU, RNN): FLOPs of every gate at every step", _MATMUL, "gemm"),
    OpClass("elementwise", "one arithmetic op per element (Add, Mul, Relu, Clip, HardSwish, ...)", _MEMORY,
            "transcendental"),
    OpClass("transcendental", "a short polynomial per element (Sigmoid, Tanh, QuickGelu for SiLU, Exp)", _MEMORY,
            "elementwise"),
    OpClass("gelu", "the erf polynomial per element (Gelu, Erf, BiasGelu): twice a sigmoid's cost", _MEMORY,
            "transcendental"),
    OpClass("scalar", "per-element loops ORT runs unvectorized (PRelu, branching on each element's sign; Elu, Selu, "
                      "Celu, Softplus, Log, Sin, Cos, Sign): 1 to 10 ns an element against 0.1 for Add", _MEMORY,
            "transcendental"),
    OpClass("softmax", "softmax over rows", _MEMORY, "transcendental"),
    OpClass("norm", "layer, skip-layer, group, instance and batch norm", _MEMORY, "transcendental"),
    OpClass("reduce", "means, sums and global pooling", _MEMORY, "elementwise"),
    OpClass("maxpool", "max pooling (NCHW): work is outputs x window", _WINDOW, "pool_blocked"),
    OpClass("avgpool", "average pooling (NCHW): work is outputs x window", _WINDOW, "pool_blocked"),
    OpClass("pool_blocked", "max and average pooling in the blocked NCHWc layout", _WINDOW, "maxpool"),
    OpClass("transpose", "transposes that keep the innermost axis (attention heads): rows copied whole", _MEMORY,
            "move"),
    OpClass("transpose_inner", "transposes that move the innermost axis (NCHW to NHWC): every element read with a "
                               "stride", _MEMORY, "transpose"),
    OpClass("move", "contiguous copies: concatenation, splits, slices, padding, expand, casts", _MEMORY, "transpose"),
    OpClass("gather", "gathers by index (Gather, GatherElements, GatherND): reads that jump", _MEMORY, "move"),
    OpClass("resize", "upsampling and pixel shuffles (Resize, DepthToSpace)", _MEMORY, "move"),
    OpClass("reorder", "layout changes to and from the blocked NCHWc layout inside a graph", _MEMORY, "move"),
    OpClass("reorder_edge", "layout changes at the graph's input or output (only a graph exported alone has them)",
            _MEMORY, "reorder"),
    OpClass("view", "shape-only nodes that still run (Reshape, Flatten, Squeeze, Unsqueeze, Shape)", ("calls",),
            "elementwise"),
)}, overheads=("overhead.nodes",), docs={"nodes": "graph nodes ORT ran"}, fixed_cost=True,
    edge_classes=("reorder_edge",), fuses_modules=True,
    op_clock="every node's kernel time from ORT's profiler, in whole microseconds, less the profiler's own cost")
OP_CLASSES = TABLE.classes
FEATURE_NAMES = TABLE.all_feature_names

_ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Relu", "Clip", "LeakyRelu", "Max", "Min", "Neg", "Abs", "Sqrt", "Pow",
    "Reciprocal", "Where", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Not", "Xor",
    "HardSwish", "HardSigmoid", "Sum", "BiasAdd", "Floor", "Ceil", "Round", "Mod", "IsNaN", "Dropout", "Identity",
    "Affine", "ThresholdedRelu", "Shrink"})
_TRANSCENDENTAL = frozenset({"Sigmoid", "Tanh", "QuickGelu", "FastGelu", "Exp", "Softsign"})
_GELU = frozenset({"Gelu", "Erf", "BiasGelu", "BiasSplitGelu", "SkipGelu"})
_SCALAR = frozenset({"PRelu", "Elu", "Selu", "Celu", "Softplus", "Mish", "Log", "Sin", "Cos", "Sign"})
_SOFTMAX = frozenset({"Softmax", "LogSoftmax", "BiasSoftmax"})
_NORM = frozenset({"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                   "SkipSimplifiedLayerNormalization", "InstanceNormalization", "GroupNorm", "GroupNormalization",
                   "BatchNormalization", "LpNormalization", "EmbedLayerNormalization", "MeanVarianceNormalization"})
_REDUCE = frozenset({"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                     "ReduceSumSquare", "ReduceLogSumExp", "GlobalAveragePool", "GlobalMaxPool", "ArgMax",
                     "ArgMin", "CumSum", "TopK"})
_POOL = frozenset({"MaxPool", "AveragePool", "LpPool"})
_MOVE = frozenset({"Concat", "Split", "Slice", "Pad", "Expand", "Tile", "Cast", "SpaceToDepth", "ScatterND",
                   "ScatterElements", "Trilu", "Compress", "NonZero", "OneHot", "CastLike", "ReverseSequence"})
_GATHER = frozenset({"Gather", "GatherElements", "GatherND", "GatherBlockQuantized"})
_RESIZE = frozenset({"Resize", "Upsample", "DepthToSpace"})
_VIEW = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Size", "Constant", "ConstantOfShape",
                   "Range", "EyeLike"})
_REORDER = frozenset({"ReorderInput", "ReorderOutput"})
_GEMM_OPS = frozenset({"Gemm", "FusedGemm", "MatMul", "FusedMatMul", "MatMulInteger", "MatMulNBits"})
_ATTENTION = frozenset({"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention"})
_RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1}  # gates per step
# memory class -> the block-level category its elements add to (``count.features.MEMORY_CATEGORIES``)
_CATEGORY = {"elementwise": "simple", "transcendental": "transcendental", "gelu": "transcendental",
             "scalar": "transcendental", "softmax": "transcendental", "norm": "norm", "reduce": "reduce",
             "transpose": "move", "transpose_inner": "move", "move": "move", "gather": "move", "resize": "move",
             "reorder": "move", "reorder_edge": "move"}
assert set(_CATEGORY.values()) <= set(MEMORY_CATEGORIES)

# One classified node: (class, the class's features, the block-level features it adds, covered by a formula).
Classified = tuple[str, dict[str, float], dict[str, float], bool]


def _numel(shape: Sequence[int]) -> int:
    return math.prod(shape) if shape else 0


def _variable(node: NodeRun) -> list[tuple[int, ...]]:
    """The shapes of the node's inputs that are not constants (activations)."""
    return [shape for shape, constant in zip(node.inputs, node.constant + (False,) * len(node.inputs)) if not constant]


def _conv(node: NodeRun, counting: Counting) -> Classified:
    # Conv(X[N,C,*S], W[M,C/g,*K], B[M], Sum?) -> Y[N,M,*S']; NCHWc kernels see C and M padded to their block
    x, weight, out = node.inputs[0], node.inputs[1], node.outputs[0]
    groups, kernel = int(node.attributes.get("group", 1)), _numel(weight[2:])
    flops = 2.0 * _numel(out) * weight[1] * kernel
    sums = sum(_numel(shape) for shape in node.inputs[3:])  # a residual added in the kernel
    elements = float(_numel(x) + _numel(out) + sums)
    blocked = node.domain.endswith("nchwc")
    if not blocked:
        kind = "grouped" if groups > 1 and weight[1] > 1 else "depthwise" if groups > 1 else (
            "dense" if kernel > 1 else "pointwise")
        cls = "conv_grouped_unblocked" if groups > 1 else "conv"
    elif groups > 1 and groups == x[1] and weight[1] == 1:
        cls, kind = "conv_depthwise", "depthwise"
    elif groups > 1:
        cls, kind = "conv_grouped", "grouped"
    elif x[1] < 8:
        cls, kind = "conv_stem", "dense"
    else:
        kind = "pointwise" if kernel == 1 else "dense"
        cls = f"conv_{kind}"
    features = {"calls": 1.0, "vflops" if blocked else "flops": flops, "elements": elements,
                "weights": float(_numel(weight))}
    if not blocked:  # MLAS unfolds the input (im2col) for a kernel larger than 1x1 or a stride: C_in x kernel a point
        pointwise = kernel == 1 and all(s == 1 for s in node.attributes.get("strides", [1]))
        features["im2col"] = 0.0 if pointwise else float(_numel(out) // max(out[1], 1) * x[1] * kernel)
    adds = {"acts": _numel(out), "inp": _numel(x), "flops": flops, f"flops_{kind}": flops, "weights": _numel(weight),
            "conv_weights": _numel(weight), f"vflops_{kind}": flops, f"convs_{kind}": 1, "conv_ops": 1,
            f"dnn_vflops_{kind}": flops, f"dnn_convs_{kind}": 1}
    return cls, features, adds, True


def _conv_transpose(node: NodeRun, counting: Counting) -> Classified:
    # ConvTranspose(X[N,C,*S], W[C,M/g,*K], B?) -> Y[N,M,*S']: every input position spreads into a kernel window
    x, weight, out = node.inputs[0], node.inputs[1], node.outputs[0]
    flops = 2.0 * _numel(x) * weight[1] * _numel(weight[2:])
    features = {"calls": 1.0, "flops": flops, "im2col": float(_numel(x) * weight[1] * _numel(weight[2:])),
                "elements": float(_numel(x) + _numel(out)), "weights": float(_numel(weight))}
    adds = {"acts": _numel(out), "inp": _numel(x), "flops": flops, "flops_dense": flops, "weights": _numel(weight),
            "conv_weights": _numel(weight), "vflops_dense": flops, "convs_dense": 1, "conv_ops": 1}
    return "conv_transpose", features, adds, True


def _gemm(node: NodeRun, counting: Counting) -> Classified:
    # Gemm(A[M,K], B[K,N] or [N,K], C?) / MatMul(A[..,M,K], B[..,K,N]) / FusedMatMul(transA, transB) -> [.., M, N]
    a, b, out = node.inputs[0], node.inputs[1], node.outputs[0]
    inner = a[-2] if node.attributes.get("transA") else a[-1]
    flops = 2.0 * _numel(out) * inner
    constant = len(node.constant) > 1 and node.constant[1]
    width = counting.vector_width
    padded = 2.0 * (_numel(out) // max(out[-1], 1)) * (-(-inner // width) * width) * (-(-out[-1] // width) * width)
    adds = {"acts": _numel(out), "inp": _numel(a), "flops": flops, "flops_pointwise": flops, "vflops_matmul": padded,
            "matmuls": 1, "conv_ops": 1}
    elements = float(_numel(a) + _numel(out) + (0 if constant else _numel(b)))
    if not constant:
        return "matmul", {"calls": 1.0, "flops": flops, "elements": elements}, adds, True
    adds.update(weights=_numel(b), matmul_weights=_numel(b))
    return "gemm", {"calls": 1.0, "flops": flops, "elements": elements, "weights": float(_numel(b)),
                    "stream": float(max(_numel(b) - counting.llc_elements, 0))}, adds, True


def _attention(node: NodeRun, counting: Counting) -> Classified:
    # Attention(input[B,S,H], weights[H,3H], ...) and kin: the projections and the scores, at the input's size
    elements = float(sum(map(_numel, _variable(node))) + sum(map(_numel, node.outputs)))
    flops = 2.0 * sum(_numel(shape) for shape, constant in zip(node.inputs, node.constant) if constant) * (
        node.inputs[0][-2] if len(node.inputs[0]) > 1 else 1)
    adds = {"flops": flops, "attentions": 1, "mem_elements": elements, "mem_ops": 1}
    return "attention", {"calls": 1.0, "flops": flops, "elements": elements}, adds, True


def _recurrent(node: NodeRun, counting: Counting) -> Classified:
    # LSTM/GRU/RNN(X[T,B,I], W[D,G*H,I], R[D,G*H,H], ...) -> Y[T,D,B,H]: per step and direction, G gates of
    # (I + H) x H multiply-accumulates
    x, w, r = node.inputs[0], node.inputs[1], node.inputs[2]
    steps, batch = x[0], x[1]
    flops = 2.0 * steps * batch * w[0] * w[1] * (w[2] + r[2])
    elements = float(_numel(x) + sum(map(_numel, node.outputs)))
    adds = {"flops": flops, "flops_pointwise": flops, "vflops_matmul": flops, "matmuls": steps, "conv_ops": 1,
            "weights": _numel(w) + _numel(r), "matmul_weights": _numel(w) + _numel(r)}
    return "recurrent", {"calls": 1.0, "flops": flops, "elements": elements}, adds, True


def _window(node: NodeRun, counting: Counting) -> Classified:
    # MaxPool/AveragePool(X[N,C,*S], kernel_shape, pads) -> Y: work is outputs x window (clipped to the input)
    x, out = node.inputs[0], node.outputs[0]
    kernel = node.attributes.get("kernel_shape", [])
    pads = list(node.attributes.get("pads", [])) or [0] * (2 * len(kernel))
    window = math.prod(min(k, s + pads[i] + pads[i + len(kernel)]) for i, (k, s) in
                       enumerate(zip(kernel, x[2:]))) if kernel else 1
    elements = float(_numel(x) + _numel(out))
    kind = "maxpool" if node.op == "MaxPool" else "avgpool"
    cls = "pool_blocked" if node.domain.endswith("nchwc") else kind
    adds = {f"{kind}_work": _numel(out) * window, "ops_window": 1, "mem_elements": elements, "mem_ops": 1}
    return cls, {"calls": 1.0, "work": float(_numel(out) * window), "elements": elements}, adds, True


def _memory_class(node: NodeRun) -> tuple[str, bool]:
    op = node.op
    if op == "Transpose":
        perm = list(node.attributes.get("perm") or range(len(node.inputs[0]) - 1, -1, -1))
        return ("transpose_inner" if perm and perm[-1] != len(perm) - 1 else "transpose"), True
    if op in _REORDER:
        edge = (op == "ReorderInput" and node.from_graph_input) or (op == "ReorderOutput" and node.to_graph_output)
        return ("reorder_edge" if edge else "reorder"), True
    for cls, ops in (("elementwise", _ELEMENTWISE), ("transcendental", _TRANSCENDENTAL), ("gelu", _GELU),
                     ("scalar", _SCALAR),
                     ("softmax", _SOFTMAX),
                     ("norm", _NORM), ("reduce", _REDUCE), ("move", _MOVE),
                     ("gather", _GATHER), ("resize", _RESIZE)):
        if op in ops:
            return cls, True
    return "move", False  # a node no formula covers: counted as data movement, and warned about


def _memory(node: NodeRun, counting: Counting) -> Classified:
    # Op(inputs...) -> outputs: elements of the activations read and written
    cls, covered = _memory_class(node)
    elements = float(sum(map(_numel, _variable(node))) + sum(map(_numel, node.outputs)))
    category = _CATEGORY[cls]
    features = {"calls": 1.0, "elements": elements, "beyond_l2": float(max(elements - counting.l2_elements, 0))}
    adds = {f"elements_{category}": elements, f"ops_{category}": 1, "mem_elements": elements, "mem_ops": 1}
    return cls, features, adds, covered


def _view(node: NodeRun, counting: Counting) -> Classified:
    # Reshape(X, shape) -> X viewed: no data moves, the node still runs
    return "view", {"calls": 1.0}, {}, True


# THE dispatch: a node kind -> its handler (anything else is ``_memory``'s, warned about when unknown).
HANDLERS: dict[str, Callable[[NodeRun, Counting], Classified]] = {
    "Conv": _conv, "FusedConv": _conv, "NhwcConv": _conv, "ConvTranspose": _conv_transpose,
    **dict.fromkeys(_GEMM_OPS, _gemm), **dict.fromkeys(_ATTENTION, _attention),
    **dict.fromkeys(_RECURRENT, _recurrent), **dict.fromkeys(_POOL, _window), **dict.fromkeys(_VIEW, _view),
}


def classify_node(node: NodeRun, counting: Counting) -> Classified:
    """The class of one node ORT ran, that class's features, what it adds to the block-level features, and
    whether a formula covers it."""
    try:
        return HANDLERS.get(node.op, _memory)(node, counting)
    except IndexError:  # a node whose shapes the profiler did not report in full: data movement, warned about
        return _memory(node, counting)[:3] + (False,)

