"""NNI's ``Cell`` (DARTS, PNAS and the other NDS spaces) in the profiler: every op slot of a node costs a table
over its op label and the input label it chooses, never a product over the cell.

Why per (op, input): an NDS cell builds its ops from a factory that depends on the chosen input (a reduction
cell's op is strided on the cell's inputs and not on its nodes), so the op that runs is known only with the
input. As NNI's one-shot cells do, the factory is asked once per (node, input), with op index 0 (NNI's
``Cell`` asks factories not to depend on it). The rest of the cell (preprocessor, the sum of each node's ops,
the concatenation of the nodes, postprocessor) does not depend on the cell's choices when every node is
concatenated (``merge_op='all'``), and is one table over the labels of the cell's input shapes (the width).
``merge_op='loose_end'`` concatenates only the nodes no other node reads, ``K`` of them: that part is also a table
over the cell's derived label ``K`` (``loose``), and so is the cell's output width, so every consumer of it is
tabulated over ``K`` too. An NDS stage that can hold a single cell needs ``FrozenLatencyProfiler`` (NDS then
wires the next stage to the cell before it).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from nni.nas.nn.pytorch import Cell, Repeat
from nni.nas.nn.pytorch.base import recursive_freeze
from nni.nas.nn.pytorch.cell import create_cell_op_candidates, preprocess_cell_inputs
from nni.nas.profiler.pytorch.utils import profiler_leaf_module
from nni.nas.space import model_context
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..count.features import UncoveredOperatorWarning
from ..count.signature import module_signature
from .loose import MERGE_RULES, SUFFIX, adapt_input_widths
from .lut import LutRow
from .structure import FALLBACK_HINT, SpaceError, feature_row, marginal_latency

_logger = logging.getLogger(__name__)

__all__ = ["CellShim", "CellCall", "check_stage"]

MIN_CELLS_PER_STAGE = 2


@dataclass
class CellCall:
    """One distinct input of one cell, tabulated over the labels of its input shapes (and its own widths); every
    latency is a marginal cost (ms), what the part adds to the network."""

    labels: tuple[str, ...]
    shapes: dict[tuple[int, ...], tuple[tuple, tuple]]  # label index -> (input shapes, output shapes)
    fixed: np.ndarray                                   # (*sizes): everything but the op slots
    slots: list[tuple[str, str, np.ndarray]]            # (op label, input label, (*sizes, ops, inputs))
    output_structure: tuple[list[bool], Any]            # which outputs are tensors, and their pytree spec
    default_index: tuple[int, ...]
    records: list[tuple] = field(default_factory=list)  # lookup-table rows: (op label, op, input, shapes, ms, when)
    uncovered: dict[str, str] = field(default_factory=dict)


@profiler_leaf_module
class CellShim(nn.Module):
    """Stands in for an NNI ``Cell`` during shape inference; analyses it slot by slot (see the module docstring)."""

    def __init__(self, cell: Cell, name: str, analysis):
        super().__init__()
        if cell.merge_op not in MERGE_RULES:
            raise SpaceError(f"module {name!r} (Cell) merges its nodes with rule {cell.merge_op!r}, which the profiler "
                             f"does not know; use merge_op 'all' or 'loose_end', or use {FALLBACK_HINT}")
        self.cell = cell
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_analysis", analysis)

    def _call(self, args) -> CellCall:
        analysis = self._analysis
        shapes, spec = analysis.input_shapes(self._name, args)
        calls = analysis.calls.setdefault(id(self), {})
        key = repr((shapes, spec))
        if key not in calls:
            # Cells of the same structure on the same input (the normal cells of a stage) share one analysis.
            shared = (module_signature(self.cell), key)
            if shared not in analysis.cell_cache:
                analysis.cell_cache[shared] = _CellAnalysis(self.cell, self._name, analysis).run(shapes, spec)
            calls[key] = analysis.cell_cache[shared]
        return calls[key]

    def forward(self, *args):
        from nni.nas.profiler.pytorch.utils import ShapeTensor

        call = self._call(args)
        shapes = iter(call.shapes[call.default_index][1])
        is_tensor, spec = call.output_structure
        return tree_unflatten([ShapeTensor(torch.zeros(next(shapes))) if tensor else None for tensor in is_tensor],
                              spec)

    def _shape_forward(self, *args):
        # NNI looks this up on the class as the module's shape formula: ``formula(module, *inputs)``.
        call = self._call(args)
        outputs = iter(self._analysis.output_shapes(self._name, call))
        is_tensor, spec = call.output_structure
        return tree_unflatten([next(outputs) if tensor else None for tensor in is_tensor], spec)

    def add_terms(self, builder, name: str, guards: list) -> None:
        """Add the cell's latency tables (and lookup-table rows) to ``builder``, a ``walk.TermBuilder``."""
        for call in self._analysis.calls.get(id(self), {}).values():
            for op, where in call.uncovered.items():
                builder.uncovered.setdefault(op, []).append(where)
            builder.add(f"{name} (preprocessing, sums, concatenation)", call.labels, call.fixed, guards)
            for op_label, input_label, table in call.slots:
                builder.add(f"{name} {op_label}", call.labels + (op_label, input_label), table, guards)
            for op_label, value, j, in_shape, out_shape, latency, when in call.records:
                builder.records.append(LutRow(
                    layer=op_label, candidate=str(value), module=f"{name}.ops ({op_label}, input {j})",
                    input_shape=in_shape, output_shape=out_shape, predicted_ms=latency, when=when))


class _CellSums(nn.Module):
    """The functional code of NNI 3.0's ``Cell.forward``: each node sums its ops' outputs (``torch.stack`` then
    ``torch.sum``), and the cell concatenates its nodes (all of them, or the last ``loose`` of them: with every node of
    one shape, which ``K`` nodes are loose changes nothing the device model sees)."""

    def __init__(self, concat_dim: int, loose: int | None = None):
        super().__init__()
        self.concat_dim, self.loose = concat_dim, loose

    def forward(self, node_inputs: list[list[torch.Tensor]]) -> torch.Tensor:
        states = [torch.sum(torch.stack(inputs), 0) for inputs in node_inputs]
        return torch.cat(states if self.loose is None else states[len(states) - self.loose:], self.concat_dim)


class _CellAnalysis:
    """Tabulates one call of a cell: its fixed part, and each op slot over (op, input)."""

    def __init__(self, cell: Cell, name: str, analysis):
        self.cell, self.name, self.analysis = cell, name, analysis
        self.labels = analysis.labels
        self.model = analysis.model
        self.counter, self.names = analysis.counter, analysis.names
        self._cache: dict[tuple, tuple] = analysis.op_cache
        self.uncovered: dict[str, str] = {}
        self.records: list[tuple] = []

    def run(self, shapes: list, spec) -> CellCall:
        analysis, cell = self.analysis, self.cell
        slot_labels = {m.label for row in list(cell.ops) + list(cell.inputs) for m in row}
        own = set(cell.simplify()) - slot_labels  # widths of the cell's modules (NDS: 'width')
        loose = f"{cell.label}{SUFFIX}" if cell.merge_op == "loose_end" else None
        own |= {loose} if loose else set()
        dims, shape_labels = analysis.shape_labels(shapes)
        labels = self.labels.sort(shape_labels | own)
        analysis.check_count(self.name, cell, labels)
        sizes = self.labels.sizes(labels)
        first = cell.num_predecessors
        nodes = [[(cell.ops[i - first][k].label, cell.inputs[i - first][k].label) for k in range(cell.num_ops_per_node)]
                 for i in range(first, first + cell.num_nodes)]
        tables = {op: np.zeros(sizes + (len(self.labels.values[op]), len(self.labels.values[inp])))
                  for node in nodes for op, inp in node}
        fixed = np.zeros(sizes)
        cases: dict[tuple[int, ...], tuple[tuple, tuple]] = {}
        default = self.labels.default_sample()
        default_index = tuple(self.labels.position(label, default[label]) for label in labels)
        structure = None
        for index, combination in self.labels.grid(labels):
            sample = {**default, **combination}
            concrete = analysis.concrete_shapes(dims, sample)
            inputs = preprocess_cell_inputs(cell.num_predecessors, *analysis.arguments(cell, concrete, spec))
            preprocessor = adapt_input_widths(recursive_freeze(cell.preprocessor, sample)[0],
                                              analysis.concrete_shapes(dims, self.labels.reference(sample)), concrete,
                                              lambda _, shapes: (preprocess_cell_inputs(
                                                  cell.num_predecessors, *analysis.arguments(cell, shapes, spec)),))
            latency, states = self._part(preprocessor, (inputs,))
            states = list(states)
            when = {label: combination[label] for label in labels}
            for i, node in enumerate(nodes, start=first):
                node_shape = self._node(tables, index, i, node, sample, states, when)
                states.append(torch.zeros(node_shape))
            node_inputs = [[state] * cell.num_ops_per_node for state in states[first:]]
            if loose and len({tuple(state.shape) for state in states[first:]}) > 1:
                raise SpaceError(f"cell {self.name!r} concatenates its loose ends, and its nodes have different shapes, "
                                 f"so its width depends on which nodes are loose; use {FALLBACK_HINT}")
            sums, this_cell = self._part(_CellSums(cell.concat_dim, combination[loose] if loose else None),
                                         (node_inputs,))
            post, output = self._part(recursive_freeze(cell.postprocessor, sample)[0], (this_cell, inputs))
            fixed[index] = latency + sums + post
            flat, out_spec = tree_flatten(output)
            cases[index] = (concrete, tuple(tuple(t.shape) for t in flat if isinstance(t, torch.Tensor)))
            structure = structure or ([isinstance(t, torch.Tensor) for t in flat], out_spec)
        slots = [(op, inp, tables[op]) for node in nodes for op, inp in node]
        return CellCall(labels, cases, fixed, slots, structure, default_index, self.records, self.uncovered)

    def _part(self, module: nn.Module, args: tuple) -> tuple[float, Any]:
        """Marginal latency and output of a fixed part of the cell (or of its sums) on ``args``."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncoveredOperatorWarning)
            try:
                total, output = self.counter(module, args)
            except (RuntimeError, ValueError, IndexError, TypeError) as error:
                raise SpaceError(f"{type(module).__name__} of cell {self.name!r} fails on its input: {error}") from error
        self.analysis.forward_passes += 1
        self._note(total.uncovered)
        return float(marginal_latency(self.model, feature_row(total, self.names))), output

    def _node(self, tables: dict, index: tuple, i: int, node: list[tuple[str, str]], sample: Mapping[str, Any],
              states: list[torch.Tensor], when: dict) -> tuple:
        """Fill the (op, input) tables of node ``i``'s slots at one combination; returns the node's output shape."""
        node_shape = None
        op_label = node[0][0]
        for j in range(i):
            for value, module in self._candidates(i, j, op_label, sample).items():
                latency, out_shape = self._op(module, tuple(states[j].shape), op_label, value)
                if node_shape is not None and out_shape != node_shape:
                    raise SpaceError(f"cell {self.name!r}: node {i} gets outputs of shapes {node_shape} and {out_shape} "
                                     f"from different ops or inputs ({op_label}={value!r}, input {j}); the profiler "
                                     f"needs every op of a node to give one shape; use {FALLBACK_HINT}")
                node_shape = out_shape
                for slot_op, slot_input in node:
                    position = (self.labels.position(slot_op, value), self.labels.position(slot_input, [j]))
                    tables[slot_op][index + position] = latency
                    self.records.append((slot_op, value, j, tuple(states[j].shape), out_shape, float(latency),
                                         {slot_input: [j], **when}))
        return node_shape

    def _candidates(self, i: int, j: int, op_label: str, sample: Mapping[str, Any]) -> dict[str, nn.Module]:
        cell = self.cell
        if cell.op_candidates_factory is not None:
            with model_context(dict(sample)):
                candidates, _ = create_cell_op_candidates(cell.op_candidates_factory, i, 0, j)
        else:
            choice = cell.ops[i - cell.num_predecessors][0]
            candidates = {name: recursive_freeze(choice[name], dict(sample))[0] for name in choice.names}
        return {name: candidates[name] for name in self.labels.values[op_label] if name in candidates}

    def _op(self, module: nn.Module, shape: tuple, op_label: str, value: Any) -> tuple[float, tuple]:
        key = (module_signature(module), shape)
        if key not in self._cache:
            x = self.analysis.arguments(module, [shape], None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UncoveredOperatorWarning)
                try:
                    total, output = self.counter(module, tuple(x))
                except (RuntimeError, ValueError, IndexError, TypeError) as error:
                    raise SpaceError(f"op {value!r} of {op_label!r} in cell {self.name!r} fails on input {shape}: "
                                     f"{error}") from error
            self.analysis.forward_passes += 1
            latency = float(marginal_latency(self.model, feature_row(total, self.names)))
            self._cache[key] = (latency, tuple(output.shape), total.uncovered)
        latency, out_shape, uncovered = self._cache[key]
        self._note(uncovered)
        return latency, out_shape

    def _note(self, uncovered) -> None:
        for op in uncovered:
            self.uncovered.setdefault(op, self.name)


def check_stage(module: Repeat, name: str) -> None:
    """An NDS stage whose depth choice allows one cell is wired differently when frozen (see module docstring)."""
    from nni.nas.hub.pytorch.nasnet import NDSStage

    if not isinstance(module, NDSStage) or isinstance(module.depth_choice, int):
        return
    fewest = min(module.depth_choice.grid())
    if fewest < MIN_CELLS_PER_STAGE:
        labels = ", ".join(sorted(module.depth_choice.simplify()))
        raise SpaceError(
            f"module {name!r} (NDSStage) holds {fewest} cell(s) for some values of {labels!r}; NDS then feeds the next "
            "stage from the cell before this stage, a wiring the space's modules do not hold, so latency tables "
            f"cannot follow it; let every stage hold {MIN_CELLS_PER_STAGE}+ cells (num_cells >= "
            f"{3 * MIN_CELLS_PER_STAGE}) or use {FALLBACK_HINT}")
