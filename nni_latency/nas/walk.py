"""The walk over a model space that turns its units into latency terms, as NNI's nn-Meter profiler recurses:
a ``LayerChoice`` becomes a switch on its label, a ``Repeat`` a sum guarded by ``depth >= d``, and every
unit call a table over the labels it depends on; LayerChoice candidates also become lookup-table rows.

The intercept (``structure``): a device model's prediction for zero features is paid once per network, a
term without labels; every unit, and the functional code of every container, adds its marginal cost
``predict(f) - predict(0)``. For the affine device models (``relative_linear``, ``flops``) the sum is exactly
``predict_module`` of the frozen network, and a skip candidate costs nothing. A lookup-table row carries the
same marginal cost: what the candidate adds to the network.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from nni.nas.nn.pytorch import LayerChoice, Repeat
from torch import nn

from ..count.features import BlockFeatures
from .label_tables import LatencyTerm, product, reduce_table
from .lut import LutRow
from .structure import marginal_latency
from .units import SpaceAnalysis, UnitCall, UnitShim

_logger = logging.getLogger(__name__)

__all__ = ["TermBuilder"]


class TermBuilder:
    """Walks the space like NNI's nn-Meter profiler and turns every unit call into a guarded latency table."""

    def __init__(self, analysis: SpaceAnalysis, model=None):
        self.analysis = analysis
        self.labels = analysis.labels
        self.model = model if model is not None else analysis.model  # a part of the model (``nas.parts``) too
        self.intercept = self.model.predict_one(BlockFeatures())
        self.terms: list[LatencyTerm] = [LatencyTerm((), np.asarray(self.intercept), ("intercept",))]
        self.records: list[LutRow] = []
        self.uncovered: dict[str, list[str]] = {}

    def latency(self, features: np.ndarray) -> np.ndarray:
        """Predicted cost (ms) of feature rows as parts of the network (the intercept is paid once)."""
        return marginal_latency(self.model, features)

    def add(self, name: str, labels: Sequence[str], table: np.ndarray, guards: list) -> None:
        labels, table = product(self.labels, [(labels, table)] + guards)
        labels, table = reduce_table(labels, table)
        if np.any(table != 0):
            self.terms.append(LatencyTerm(labels, np.asarray(table, float), (name,)))

    def walk(self, module: nn.Module, name: str, guards: list, candidate: tuple[str, Any] | None = None) -> None:
        """Add the terms of ``module`` under ``guards`` (the label tables that say whether it runs)."""
        analysis = self.analysis
        shim = analysis.shims.get(id(module))
        if isinstance(shim, UnitShim):
            return self._unit(shim, name, guards, candidate)
        if shim is not None:  # a cell: its own walk (``cells``)
            return shim.add_terms(self, name, guards)
        if isinstance(module, LayerChoice):
            label = module.label
            for value in module.names:
                onehot = np.array([v == value for v in self.labels.values[label]], float)
                self.walk(module[value], f"{name}.{value}", guards + [((label,), onehot)], candidate=(label, value))
            return None
        if isinstance(module, Repeat):
            return self._repeat(module, name, guards)
        for child_name, child in module.named_children():
            self.walk(child, f"{name}.{child_name}" if name else child_name, guards)
        glue = analysis.glue_table(module, name)
        if glue is not None:
            labels, table = glue
            self.add(f"{name or '<space>'} (own ops)", labels, self.latency(table), guards)
        return None

    def _repeat(self, module: Repeat, name: str, guards: list) -> None:
        depth = module.depth_choice
        for d, block in enumerate(module.blocks, start=1):
            if isinstance(depth, int):
                block_guards = guards
            else:
                depth_labels = self.labels.sort(depth.simplify())
                active = self.analysis.tabulate(lambda s: float(depth.freeze(s) >= d), depth_labels,
                                                 f"the depth of {name!r}", dtype=float)
                block_guards = guards + [(depth_labels, active)]
            self.walk(block, f"{name}.blocks.{d - 1}", block_guards)

    def _unit(self, shim: UnitShim, name: str, guards: list, candidate: tuple[str, Any] | None) -> None:
        calls = self.analysis.calls.get(id(shim), {})
        if not calls:
            _logger.debug("module %r never runs in the space's forward; it adds no latency", name)
        for call in calls.values():
            for op in call.uncovered:
                self.uncovered.setdefault(op, []).append(name)
            latency = self.latency(call.features)
            labels, table = reduce_table(call.labels, latency)
            self.add(name, labels, table, guards)
            if candidate is not None:
                self._record(candidate, name, call, latency)

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
                features=dict(zip(self.model.feature_names, map(float, call.features[index]))),
                when={k: v for k, v in sample.items() if k != label}))
