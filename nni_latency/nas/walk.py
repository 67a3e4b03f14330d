"""The walk over a model space that turns its units into latency terms, as NNI's nn-Meter profiler recurses:
a ``LayerChoice`` becomes a switch on its label, a ``Repeat`` a sum guarded by ``depth >= d``, and every
unit call a table over the labels it depends on; LayerChoice candidates also become lookup-table rows.

Block overhead. A device model's prediction for zero features (its intercept) is the fixed cost of one
micro-benchmarked block. It is counted once per *block* that runs a convolution or linear layer, where a
block is a unit outside any user-defined container, or the outermost user-defined container that holds
choices (e.g. an inverted residual with a kernel choice). Everything else (pooling, dropout, identity and
skip candidates, functional code in a container's forward, layers inside a container block) adds its
marginal cost ``predict(f) - predict(0)``. A frozen network's prediction is therefore the sum of its
blocks' ``predict_module`` values, and a skip candidate costs nothing.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from torch import nn

from nni.nas.nn.pytorch import InputChoice, LayerChoice, ModelSpace, Repeat

from ..features import FEATURE_NAMES, BlockFeatures
from .lut import LutRow
from .tables import LatencyTerm, product, reduce_table
from .units import SpaceAnalysis, UnitCall, UnitShim

_logger = logging.getLogger(__name__)

__all__ = ["TermBuilder", "CONV_OPS_COLUMN"]

CONV_OPS_COLUMN = FEATURE_NAMES.index("conv_ops")


class TermBuilder:
    """Walks the space like NNI's nn-Meter profiler and turns every unit call into a guarded latency table."""

    def __init__(self, analysis: SpaceAnalysis):
        self.analysis = analysis
        self.labels = analysis.labels
        self.model = analysis.model
        self.overhead = self.model.predict_one(BlockFeatures())
        self.terms: list[LatencyTerm] = []
        self.records: list[LutRow] = []
        self.uncovered: dict[str, list[str]] = {}

    def latency(self, features: np.ndarray, block: bool) -> np.ndarray:
        """Predicted contribution (ms) of each feature row; ``block`` rows carry the block overhead."""
        flat = features.reshape(-1, len(FEATURE_NAMES))
        predicted = self.model.predict(flat) if len(flat) else np.zeros(0)
        marginal = predicted - self.overhead
        if block:
            predicted = np.where(flat[:, CONV_OPS_COLUMN] > 0, predicted, marginal)
        else:
            predicted = marginal
        return predicted.reshape(features.shape[:-1])

    def add(self, name: str, labels: Sequence[str], table: np.ndarray, guards: list) -> None:
        labels, table = product(self.labels, [(labels, table)] + guards)
        labels, table = reduce_table(labels, table)
        if np.any(table != 0):
            self.terms.append(LatencyTerm(labels, np.asarray(table, float), (name,)))

    def walk(self, module: nn.Module, name: str, guards: list, inside_block: bool,
             candidate: tuple[str, Any] | None = None) -> bool:
        """Add the terms of ``module``; returns whether it runs any convolution / linear op."""
        analysis = self.analysis
        if id(module) in analysis.shims:
            return self._unit(analysis.shims[id(module)], name, guards, inside_block, candidate)
        if isinstance(module, LayerChoice):
            has_conv = False
            label = module.label
            for value in module.names:
                onehot = np.array([v == value for v in self.labels.values[label]], float)
                has_conv = self.walk(module[value], f"{name}.{value}", guards + [((label,), onehot)], inside_block,
                                     candidate=(label, value)) or has_conv
            return has_conv
        if isinstance(module, Repeat):
            return self._repeat(module, name, guards, inside_block)
        if isinstance(module, InputChoice):
            return False
        block = not inside_block and _is_user_container(module)
        has_conv = False
        for child_name, child in module.named_children():
            path = f"{name}.{child_name}" if name else child_name
            has_conv = self.walk(child, path, guards, inside_block or block) or has_conv
        glue = analysis.glue_features(module, name or "<space>")
        if glue is not None:
            self.add(f"{name or '<space>'} (own ops)", (), self.latency(glue[None, :], block=False)[0], guards)
        if block and has_conv:
            self.add(f"{name} (block overhead)", (), np.array(self.overhead), guards)
        return has_conv

    def _repeat(self, module: Repeat, name: str, guards: list, inside_block: bool) -> bool:
        depth = module.depth_choice
        has_conv = False
        for d, block in enumerate(module.blocks, start=1):
            if isinstance(depth, int):
                block_guards = guards
            else:
                depth_labels = self.labels.sort(depth.simplify())
                active = self.analysis._tabulate(lambda s: float(depth.freeze(s) >= d), depth_labels,
                                                 f"the depth of {name!r}", dtype=float)
                block_guards = guards + [(depth_labels, active)]
            has_conv = self.walk(block, f"{name}.blocks.{d - 1}", block_guards, inside_block) or has_conv
        return has_conv

    def _unit(self, shim: UnitShim, name: str, guards: list, inside_block: bool,
              candidate: tuple[str, Any] | None) -> bool:
        calls = self.analysis.calls.get(id(shim), {})
        if not calls:
            _logger.debug("module %r never runs in the space's forward; it adds no latency", name)
            return False
        has_conv = False
        for call in calls.values():
            for op in call.uncovered:
                self.uncovered.setdefault(op, []).append(name)
            latency = self.latency(call.features, block=not inside_block)
            has_conv = has_conv or bool(np.any(call.features[..., CONV_OPS_COLUMN] > 0))
            labels, table = reduce_table(call.labels, latency)
            self.add(name, labels, table, guards)
            if candidate is not None:
                self._record(candidate, name, call, latency)
        return has_conv

    def _record(self, candidate: tuple[str, Any], name: str, call: UnitCall, latency: np.ndarray) -> None:
        """Lookup-table rows of a LayerChoice candidate, one per distinct input shape it can receive."""
        label, value = candidate
        seen = set()
        for index, sample in self.labels.grid(call.labels):
            in_shapes, out_shapes = call.shapes[index]
            key = (in_shapes, out_shapes, round(float(latency[index]), 9))
            if key in seen:
                continue
            seen.add(key)
            self.records.append(LutRow(
                layer=label, candidate=str(value), module=name,
                input_shape=in_shapes[0] if in_shapes else (), output_shape=out_shapes[0] if out_shapes else (),
                predicted_ms=float(latency[index]),
                features=dict(zip(FEATURE_NAMES, map(float, call.features[index]))),
                when={k: v for k, v in sample.items() if k != label}))


def _is_user_container(module: nn.Module) -> bool:
    """A module class written by a user (not a torch/NNI container): the granularity of a block."""
    if isinstance(module, (ModelSpace, LayerChoice, Repeat, InputChoice, nn.ModuleList, nn.ModuleDict)):
        return False
    return type(module) is not nn.Sequential
