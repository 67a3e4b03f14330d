"""The one small interface every runtime implements, and the shape of its operator table.

A runtime is what runs a network on the device: eager PyTorch (``runtimes.torch``) or ONNX Runtime
(``runtimes.onnxruntime``). It does three things, all under a ``MeasurementProtocol``:

* ``count(module, inputs, counting)``: the operator calls the runtime would make for ``module`` on ``inputs``,
  each classified by its ``OpTable`` and priced in features (``count.features``);
* ``measure(module, input_shape, protocol)``: the module's latency (a ``LatencyMeasurement``);
* ``time_ops(module, input_shape, protocol)``: the in-place time of each operator call (``OpTimes``).

Rows, fits, models, analysis and NAS only see features, measurements and op times: they never ask which runtime
produced them. A runtime's operator classes (``OpTable``) follow torchprofile's handler-table style: one class per
kind of call whose cost per feature is its own, a fallback class to borrow weights from, and a doc line each.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..count.features import BLOCK_FEATURE_NAMES, BLOCK_FEATURES, BlockFeatures, feature_role

__all__ = ["Runtime", "OpClass", "OpTable", "OpTimes", "FEATURE_DOCS"]

# What each operator-class feature counts (the part after the class name).
FEATURE_DOCS = {
    "calls": "calls", "vflops": "FLOPs with channels rounded up to the vector width", "flops": "FLOPs",
    "elements": "elements of the input and output", "weights": "weight elements read (the right operand of a "
    "matrix multiply)", "stream": "weight elements beyond the last-level cache (streamed from memory)",
    "copied": "elements of strided operands the kernel copies first", "im2col": "elements of the unfolded input",
    "scores": "attention scores", "beyond_l2": "elements beyond the L2 caches", "work": "outputs x window size",
    "gathered": "elements read by index (a gather, not a contiguous copy)", "steps": "sequential time steps"}
_OVERHEAD_DOCS = {"ops": "operator calls that do work", "free_ops": "calls that only change metadata",
                  "modules": "module forward calls", "nodes": "graph nodes run", "runs": "runs of the session"}


@dataclass(frozen=True)
class OpClass:
    """A class of operator calls that share one cost form: ``ms = sum_k w_k * feature_k`` over ``features``
    (``calls`` is the per-call constant). ``fallback`` lends its weights when a profile has too few calls of
    this class to fit them."""

    name: str
    doc: str
    features: tuple[str, ...]
    fallback: str | None = None


@dataclass(frozen=True)
class OpTable:
    """A runtime's operator classes and the per-call overheads that no class accounts for (dispatch of every
    call, module calls, graph nodes), fitted on what block totals leave over their operators' times."""

    runtime: str
    classes: Mapping[str, OpClass]
    overheads: tuple[str, ...]
    docs: Mapping[str, str] = field(default_factory=dict)  # overhead name -> what it counts, beyond the shared ones
    # A cost paid once per run of a whole graph (ORT's session.run): fitted as the model's intercept, which a
    # network pays once whatever its parts.
    fixed_cost: bool = False
    # Classes of calls that exist only because a part of a network was run alone (ORT's layout changes at the
    # edges of a graph exported by itself): a part is priced without them (``part_of_network``).
    edge_classes: tuple[str, ...] = ()
    # The runtime fuses operators across module boundaries (ORT folds a batch norm into the convolution before it,
    # an activation into the kernel), so parts of a network counted alone cost more than the network: the NAS
    # profiler scales its tables to the space's networks counted whole (``nas.fusion``).
    fuses_modules: bool = False
    # Where the per-call times come from, as the summaries name it.
    op_clock: str = "every call timed in place"

    @property
    def feature_names(self) -> tuple[str, ...]:
        """``class.feature`` for every class, then the ``overhead.*`` features."""
        return tuple(f"{c.name}.{f}" for c in self.classes.values() for f in c.features) + self.overheads

    @property
    def all_feature_names(self) -> tuple[str, ...]:
        """The block-level features, then this table's: what a row counted by this runtime holds."""
        return BLOCK_FEATURE_NAMES + self.feature_names

    @property
    def feature_docs(self) -> dict[str, str]:
        """What every feature of a row counted by this runtime counts."""
        return {name: self.doc(name) for name in self.all_feature_names}

    @property
    def feature_roles(self) -> dict[str, str]:
        """The role (compute, memory, overhead) of every feature of a row counted by this runtime."""
        return {name: feature_role(name) for name in self.all_feature_names}

    def part_of_network(self, features: Mapping[str, float]) -> dict[str, float]:
        """``features`` of a part counted alone, as the same part costs inside a network: without the calls of the
        edge classes, and without their per-call overheads."""
        part = dict(features)
        for cls in self.edge_classes:
            calls = part.get(f"{cls}.calls", 0.0)
            for name in self.overheads:
                part[name] = max(part.get(name, 0.0) - calls, 0.0)
            for feature in self.classes[cls].features:
                part[f"{cls}.{feature}"] = 0.0
        return part

    def doc(self, name: str) -> str:
        """What feature ``name`` (block-level, ``class.feature`` or ``overhead.x``) counts."""
        if name in BLOCK_FEATURES:
            return BLOCK_FEATURES[name][1]
        group, _, feature = name.partition(".")
        if group == "overhead":
            return {**_OVERHEAD_DOCS, **self.docs}[feature]
        return f"{FEATURE_DOCS[feature]} of {self.classes[group].doc}"


@dataclass(frozen=True)
class OpTimes:
    """In-place times of a module's operator calls that do work, in call order, with the clock's own cost removed.

    ``ops``: operator names; ``ms``: each call's time (its median over the passes) less ``overhead_ms``, the
    clock's cost per call (floored at 0); ``passes``: how many forward passes were timed.
    """

    ops: tuple[str, ...]
    ms: tuple[float, ...]
    overhead_ms: float
    passes: int

    @property
    def total_ms(self) -> float:
        return float(sum(self.ms))


class Runtime(abc.ABC):
    """A runtime: counts, times and times in place the operator calls it makes for a module (module docstring)."""

    name: str
    table: OpTable

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature a row counted by this runtime holds."""
        return self.table.all_feature_names

    def features(self, values: Mapping[str, float] | None = None, **kwargs: Any) -> BlockFeatures:
        """``BlockFeatures`` of this runtime's feature set."""
        return BlockFeatures(values, names=self.feature_names, **kwargs)

    @abc.abstractmethod
    def describe(self, protocol) -> dict[str, Any]:
        """What a device model records of the runtime: its name, version and settings under ``protocol``."""

    @abc.abstractmethod
    def count(self, module, inputs: Sequence[Any], counting) -> tuple[BlockFeatures, Any]:
        """The features of ``module(*inputs)`` as this runtime runs it, and the module's output."""

    @abc.abstractmethod
    def count_within(self, network, inputs: Sequence[Any], modules, counting) -> tuple[BlockFeatures, dict]:
        """The features of ``network(*inputs)`` as this runtime runs it, and what each of ``modules`` (disjoint
        ``(name, module)`` pairs) adds inside that one run, by name (a module that never runs is left out)."""

    @abc.abstractmethod
    def measure(self, module, input_shape, protocol, *, max_copies: int = 32, retries: int = 1):
        """A ``LatencyMeasurement`` of ``module`` on ``input_shape`` under ``protocol``; a copy is timed."""

    @abc.abstractmethod
    def time_ops(self, module, input_shape, protocol, passes: int | None = None) -> OpTimes | None:
        """The in-place time of each operator call of ``module``; None when passes run different calls."""
