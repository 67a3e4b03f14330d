"""The features a latency model prices, whatever runtime counted them: ``BlockFeatures`` (additive counts of one
module's work) and ``OpRecord`` (one operator call and what it adds).

Every feature is a sum over operator calls, so the features of a network are the sum of the features of its parts,
which is what lets block predictions add up to whole networks and NAS tables sum exactly. Two vocabularies:

* **block-level features** (``BLOCK_FEATURES``): FLOPs, elements and call counts by kind of work, the same for
  every runtime; what the ``relative_linear``, ``two_regime`` and ``flops`` kinds are fitted on.
* **operator-class features** (``class.feature``, e.g. ``conv_depthwise.vflops``): each runtime's own operator
  classes (``runtimes.base.OpTable``) with the few features each class's cost is fitted on (``op_linear``).

FLOPs formula (documented once, used everywhere): FLOPs = 2 x multiply-accumulates, bias ignored.
    convolution           MACs = output elements x (C_in / groups) x prod(kernel)
    transposed conv       MACs = input elements  x (C_out / groups) x prod(kernel)
    mm / addmm / bmm      MACs = rows x inner x cols (x batch)
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

__all__ = ["BlockFeatures", "OpRecord", "BLOCK_FEATURES", "BLOCK_FEATURE_NAMES", "MEMORY_CATEGORIES", "CONV_KINDS",
           "ROLES", "feature_role", "UncoveredOperatorWarning", "UncoveredUse", "warn_uncovered", "uncovered_floor_ms",
           "pricing_uncovered", "price_uncovered"]

ROLES: tuple[str, ...] = ("compute", "memory", "overhead")
CONV_KINDS = ("dense", "pointwise", "grouped", "depthwise")
# Memory-bound work by its cost per element: one arithmetic op, a polynomial, two passes and a reduction, data
# movement, reductions. Windowed pooling is costed per window element (``maxpool_work``, ``avgpool_work``).
MEMORY_CATEGORIES = ("simple", "transcendental", "norm", "move", "reduce")


class UncoveredOperatorWarning(UserWarning):
    """Operators that no cost formula covers, named in one warning with their calls: they are counted as data
    movement from their input and output sizes."""


# THE table of block-level features: name -> (role, what it counts). The role says what a feature's cost term
# measures: arithmetic (compute), data movement (memory) or per-call overhead.
BLOCK_FEATURES: dict[str, tuple[str, str]] = {
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
                                     "vector width (16 on AVX-512)") for kind in CONV_KINDS},
    **{f"convs_{kind}": ("overhead", f"number of {kind} convolutions") for kind in CONV_KINDS},
    "vflops_matmul": ("compute", "FLOPs of matrix multiplies (linear layers) with sizes rounded up to a multiple "
                                 "of the vector width"),
    "matmuls": ("overhead", "number of matrix multiplies (linear layers)"),
    "conv_weights": ("memory", "weight elements read by convolutions"),
    "matmul_weights": ("memory", "weight elements read by matrix multiplies (a batch-1 linear layer streams them)"),
    "maxpool_work": ("memory", "output elements x window size of max pooling"),
    "avgpool_work": ("memory", "output elements x window size of average pooling"),
    **{f"dnn_vflops_{kind}": ("compute", f"vflops_{kind} of the {kind} convolutions run by oneDNN/cuDNN")
       for kind in CONV_KINDS},
    **{f"dnn_convs_{kind}": ("overhead", f"number of {kind} convolutions run by oneDNN/cuDNN") for kind in CONV_KINDS},
    "gemm_flops": ("compute", "FLOPs of convolutions ATen runs as im2col + matrix multiply"),
    "gemm_convs": ("overhead", "number of convolutions run as im2col + matrix multiply"),
    "im2col_elements": ("memory", "elements of the unfolded input those convolutions build (kernels > 1x1)"),
    "vflops_attention": ("compute", "FLOPs of fused attention, sizes rounded up to the vector width"),
    "attention_scores": ("memory", "attention scores computed by fused attention (batch x heads x queries x keys)"),
    "attentions": ("overhead", "number of fused attention calls"),
    **{f"elements_{name}": ("memory", f"input + output elements of {name} memory-bound operators")
       for name in MEMORY_CATEGORIES},
    **{f"ops_{name}": ("overhead", f"number of {name} memory-bound operator calls")
       for name in (*MEMORY_CATEGORIES, "window")},
}
BLOCK_FEATURE_NAMES: tuple[str, ...] = tuple(BLOCK_FEATURES)
# The role of an operator-class feature follows from its last part: a call count is overhead, FLOPs are compute,
# anything else (elements, weights, windows) is memory; ``overhead.*`` is per-call dispatch.
_OP_ROLES = {"calls": "overhead", "vflops": "compute", "flops": "compute"}


def feature_role(name: str) -> str:
    """``compute``, ``memory`` or ``overhead``: what the cost term of feature ``name`` measures."""
    if name in BLOCK_FEATURES:
        return BLOCK_FEATURES[name][0]
    if name.startswith("overhead.") or name == "intercept":
        return "overhead"
    return _OP_ROLES.get(name.rpartition(".")[2], "memory")


@dataclass(frozen=True)
class OpRecord:
    """One operator call of a forward pass: its operator, class (its runtime's ``OpTable``), that class's
    features, and what the call adds to the block's features (any model kind can price it alone)."""

    op: str
    cls: str
    features: dict[str, float]
    adds: dict[str, float]


class BlockFeatures:
    """Additive latency features of one module, read as attributes (``features.flops``) or by name
    (``features["conv_depthwise.vflops"]``); absent ones are 0.

    ``ops`` keeps the module's operator calls in order (``OpRecord``), which the op-level profile times one by
    one. Which names exist depends on the runtime that counted them: ``names`` is its feature set (what
    ``as_dict()`` lists, zeros included); a model asks for its own (``as_dict(model.feature_names)``).
    """

    __slots__ = ("_values", "names", "op_counts", "uncovered", "ops")

    def __init__(self, values: Mapping[str, float] | None = None, /, *, op_counts: Mapping[str, int] | None = None,
                 uncovered: Sequence[str] = (), ops: Sequence[OpRecord] = (), names: Sequence[str] | None = None,
                 **named: float):
        merged = {**(values or {}), **named}
        bad = [name for name, value in merged.items()
               if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, (int, float))]
        if bad:
            raise TypeError(f"feature {bad[0]!r} must be a named number, got {merged[bad[0]]!r}")
        object.__setattr__(self, "_values", {name: float(v) for name, v in merged.items() if v})
        object.__setattr__(self, "names", tuple(names) if names is not None else None)
        object.__setattr__(self, "op_counts", dict(op_counts or {}))
        object.__setattr__(self, "uncovered", tuple(uncovered))
        object.__setattr__(self, "ops", tuple(ops))

    def __getattr__(self, name: str) -> float:
        if name in BLOCK_FEATURES or name in self._values or (self.names is not None and name in self.names):
            return self._values.get(name, 0.0)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    def __getitem__(self, name: str) -> float:
        return self._values.get(name, 0.0)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("BlockFeatures is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlockFeatures) and self._values == other._values

    def __hash__(self) -> int:
        return hash(frozenset(self._values.items()))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v:g}" for k, v in self._values.items() if k in BLOCK_FEATURES)
        return f"BlockFeatures({shown})"

    def __reduce__(self):
        return _rebuild, (self._values, self.op_counts, self.uncovered, self.ops, self.names)

    def values(self) -> dict[str, float]:
        """The features that are not zero."""
        return dict(self._values)

    def as_dict(self, names: Sequence[str] | None = None) -> dict[str, float]:
        """Every feature of ``names`` (zeros included); without names, of the feature set of the runtime that
        counted it (what a row of a profile holds), or the features that are not zero."""
        names = names if names is not None else self.names if self.names is not None else self._values
        return {name: self._values.get(name, 0.0) for name in names}

    def __add__(self, other: BlockFeatures) -> BlockFeatures:
        summed = dict(self._values)
        for name, value in other._values.items():
            summed[name] = summed.get(name, 0.0) + value
        return BlockFeatures(summed, op_counts=dict(Counter(self.op_counts) + Counter(other.op_counts)),
                             uncovered=tuple(sorted(set(self.uncovered) | set(other.uncovered))),
                             ops=self.ops + other.ops, names=self.names or other.names)


def _rebuild(values, op_counts, uncovered, ops, names=None) -> BlockFeatures:
    return BlockFeatures(values, op_counts=op_counts, uncovered=uncovered, ops=ops, names=names)


@dataclass(frozen=True)
class UncoveredUse:
    """How a counted pass used an operator no cost formula covers: its calls, the elements they read and wrote, and
    the modules that called it (the first one first)."""

    calls: int
    elements: float
    modules: tuple[str, ...]


def uncovered_floor_ms(uses: Mapping[str, UncoveredUse], weights: Mapping[str, float]) -> float:
    """A lower bound of the time the uncovered calls take: their elements at the cheapest per-element cost the model
    fitted for a memory-bound class (the smallest positive ``class.elements`` weight of a class without arithmetic
    terms, or ``elements_*`` weight of a block-level model).

    It is a lower bound because every such call reads its inputs and writes its outputs at least once, and no
    memory-bound operator of the device moved an element for less than that; their per-call costs and whatever
    arithmetic they do come on top. Divided by a network's predicted time it bounds their share of it from below.
    """
    compute = {name.partition(".")[0] for name in weights if "." in name and feature_role(name) == "compute"}
    costs = [w for name, w in weights.items() if w > 0 and (name.startswith("elements_") or (
        name.endswith(".elements") and name.partition(".")[0] not in compute))]
    return min(costs, default=0.0) * sum(use.elements for use in uses.values())


# The model pricing the counted passes for the uncovered-operator warning (``pricing_uncovered``); None: none does.
_PRICING: contextvars.ContextVar[Any] = contextvars.ContextVar("nni_latency_uncovered_pricing", default=None)


@contextlib.contextmanager
def pricing_uncovered(model: Any) -> Iterator[Any]:
    """Within it, the uncovered-operator warning of every counted pass gives a lower bound of the uncovered calls'
    share of ``model``'s prediction (asked through ``model.cost_terms``): only a caller that holds a model (its
    ``count``) can price a pass, counting alone cannot."""
    token = _PRICING.set(model)
    try:
        yield model
    finally:
        _PRICING.reset(token)


def price_uncovered(uses: Mapping[str, UncoveredUse], features: BlockFeatures) -> tuple[float | None, float | None]:
    """(``uncovered_floor_ms``, the predicted ms) of a counted pass under the model of ``pricing_uncovered``;
    (None, None) outside it. The prediction is the model's affine piece at ``features`` (no range check, no clamp:
    the caller's own prediction warns)."""
    model = _PRICING.get()
    if model is None:
        return None, None
    terms = model.cost_terms(features)
    return uncovered_floor_ms(uses, terms.coefficients), terms.predict(features.as_dict(list(terms.coefficients)))


# Operators already named in each warnings context (``warnings.catch_warnings``, which every command runs in): the
# list of filters it installs -> the names. A few contexts are remembered, so the memo stays small.
_REPORTED: dict[int, tuple[list, set[str]]] = {}
_CONTEXTS_KEPT = 32


def _not_yet_reported(ops: Sequence[str]) -> list[str]:
    filters = warnings.filters
    kept, reported = _REPORTED.pop(id(filters), (filters, set()))
    if kept is not filters:  # a context that ended, whose list's id was reused
        reported = set()
    _REPORTED[id(filters)] = (filters, reported)
    while len(_REPORTED) > _CONTEXTS_KEPT:
        del _REPORTED[next(iter(_REPORTED))]
    fresh = [op for op in ops if op not in reported]
    reported.update(fresh)
    return fresh


def _use_text(op: str, use: UncoveredUse) -> str:
    calls = f"{use.calls} call{'s' if use.calls != 1 else ''}, {use.elements:.3g} elements, " if use.calls else ""
    others = f" and {len(use.modules) - 1} other module(s)" if len(use.modules) > 1 else ""
    return f"{op} ({calls}in module {use.modules[0]!r}{others})"


def warn_uncovered(uses: str | Mapping[str, UncoveredUse], modules: Sequence[str] = (), stacklevel: int = 1, *,
                   floor_ms: float | None = None, predicted_ms: float | None = None) -> None:
    """Name every operator of ``uses`` (operator -> ``UncoveredUse``; or one operator's name and the ``modules``
    using it) that has no cost formula in ONE ``UncoveredOperatorWarning``, with its calls and elements and, given
    ``floor_ms`` (``uncovered_floor_ms``) and the network's ``predicted_ms``, a lower bound of their share of it.

    Each operator is named once per warnings context: once per command (the command line runs each command in its
    own ``warnings.catch_warnings``), or once per process outside any. Filter ``UncoveredOperatorWarning`` to
    silence it; ``stacklevel`` as in ``warnings.warn``, counted from the caller of this function.
    """
    if isinstance(uses, str):
        uses = {uses: UncoveredUse(0, 0.0, tuple(modules) or ("<root>",))}
    fresh = _not_yet_reported(sorted(uses))
    if not fresh:
        return
    named = ", ".join(_use_text(op, uses[op]) for op in fresh)
    verb = "has" if len(fresh) == 1 else "have"
    share = ""
    if floor_ms is not None and predicted_ms:
        share = (f"; they take at least {100 * floor_ms / predicted_ms:.2g}% of the predicted {predicted_ms:.3g} ms "
                 "(their elements at the cheapest per-element cost the model fitted)")
    warnings.warn(f"operator {named} {verb} no cost formula; counted as data movement from input and output sizes, so "
                  f"the time may be far off{share}", UncoveredOperatorWarning, stacklevel=stacklevel + 1)
