"""Loose-end cells (``Cell(merge_op='loose_end')``: ENAS, NASNet, AmoebaNet): the number of loose ends as a derived
label, so that every cost that depends on a cell's output width stays a small table.

A loose-end cell concatenates only the nodes no later node takes as input, so its output width is ``C * K`` with
``K`` the number of loose ends, a function of all the cell's input choices at once. The profiler tabulates every
consumer of that width (the concatenation, the next cells' preprocessing, the classifier) over ``K``, a synthetic
label ``'<cell label>/loose_ends'`` with values ``1 .. num_nodes``; ``K`` is never sampled, it is computed:

* per sample, ``count(sample)`` (so ``profile(sample)`` is exact);
* in NNI's expression, a ``MutableExpression`` over the input labels (``expression``);
* in the expected latency, its exact distribution under independent input choices (``distribution``).

Why not a Poisson-binomial over the "node i is loose" indicators: they are not independent. Node ``i`` and node
``j`` compete for the same later slot (a slot that takes ``i`` cannot take ``j``), so the product of marginals is
off (uniform inputs, 3 nodes: 9/16 against the true 1/2). The exact law comes from ``F(m) = P(every slot takes a
cell input or a node in m) = prod_s sum_{j allowed by m} p_s[j]``, one product per subset ``m`` of nodes, and a
fixed Moebius inversion from ``F`` to ``P(taken = m)``, hence to ``P(K = k)``: a matmul, a product and a matmul,
differentiable in the probabilities.
"""

from __future__ import annotations

import copy
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from nni.mutable import Categorical, MutableExpression
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from ..errors import InvalidInput

_logger = logging.getLogger(__name__)

__all__ = ["LooseEnds", "SUFFIX", "MERGE_RULES", "loose_end_cells", "adapt_input_widths"]

SUFFIX = "/loose_ends"
MERGE_RULES = ("all", "loose_end")
_MAX_NODES = 12  # 2 ** nodes subsets in the exact law


@dataclass(frozen=True)
class LooseEnds:
    """The loose-end count of the cells that share one label scope (NDS: every ``normal`` cell, every ``reduce``)."""

    label: str                                # '<cell label>/loose_ends'
    first: int                                # num_predecessors: inputs below it are the cell's, not nodes
    slots: tuple[tuple[int, str], ...]        # (node index, input label) of every op slot

    @property
    def num_nodes(self) -> int:
        return len({node for node, _ in self.slots})

    @property
    def values(self) -> list[int]:
        return list(range(1, self.num_nodes + 1))

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(label for _, label in self.slots)

    def mutable(self) -> Categorical:
        """The synthetic label the tables use; its default is every node loose, the width the space is built with."""
        mutable = Categorical(self.values, default=self.num_nodes, label="loose_ends")
        mutable.label = self.label  # NNI refuses a '/' in a new label; the cell's scope holds one
        return mutable

    def count(self, sample: Mapping[str, Any]) -> int:
        """``K`` of a sample: the nodes no slot takes as input."""
        taken = set()
        for _, label in self.slots:
            chosen = sample[label]
            taken.update(chosen if isinstance(chosen, (list, tuple)) else [chosen])
        return sum(node not in taken for node in range(self.first, self.first + self.num_nodes))

    def expression(self, mutables: Mapping[str, Any]) -> MutableExpression:
        """``K`` as an NNI expression over the input labels (what ``switch_case`` on the derived label switches on)."""
        def count(*chosen):
            return self.count(dict(zip(self.inputs, chosen)))

        template = "loose_ends(" + ", ".join("{}" for _ in self.slots) + ")"
        return MutableExpression(count, template, [mutables[label] for label in self.inputs])

    def plan(self, values: Mapping[str, Sequence]) -> tuple[torch.Tensor, torch.Tensor]:
        """(allowed, law): ``allowed`` (slots * 2^N, flat inputs) maps the concatenated input probabilities to
        ``F(m)`` per slot, ``law`` (2^N, N) maps ``prod_s F_s`` to ``P(K = 1 .. N)``; ``values[label]`` are an input
        label's values in table order (one-element tuples)."""
        nodes = self.num_nodes
        subsets = 2 ** nodes
        offsets = list(itertools.accumulate([0] + [len(values[label]) for label in self.inputs]))
        allowed = np.zeros((len(self.slots), subsets, offsets[-1]))
        for s, label in enumerate(self.inputs):
            for position, value in enumerate(values[label]):
                (j,) = value
                for m in range(subsets):
                    if j < self.first or (m >> (j - self.first)) & 1:
                        allowed[s, m, offsets[s] + position] = 1.0
        popcount = np.array([bin(m).count("1") for m in range(subsets)])
        # Moebius inversion: P(taken = m) = sum_{m' in m} (-1)^{|m - m'|} F(m'); K = nodes - |taken|.
        law = np.zeros((subsets, nodes))
        for m in range(subsets):
            k = nodes - popcount[m]
            if k < 1:
                continue  # the last node is always loose: F's mass never reaches these m
            for sub in range(subsets):
                if sub & ~m == 0:
                    law[sub, k - 1] += (-1.0) ** (popcount[m] - popcount[sub])
        return (torch.tensor(allowed.reshape(len(self.slots) * subsets, -1), dtype=torch.float64),
                torch.tensor(law, dtype=torch.float64))

    def distribution(self, vectors: Mapping[str, torch.Tensor], plan: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``P(K = 1 .. N)`` from each input label's distribution over its values (independent slots)."""
        allowed, law = plan
        flat = torch.cat([vectors[label] for label in self.inputs])
        allowed, law = allowed.to(flat), law.to(flat)
        per_slot = (allowed @ flat).view(len(self.slots), -1)
        return per_slot.prod(dim=0) @ law


def loose_end_cells(space: nn.Module) -> dict[str, LooseEnds]:
    """The loose-end count of every label scope of loose-end cells in ``space``; a cell with another merge rule, or
    two cells of one scope with different structures, is a one-line ``ValueError``."""
    from nni.nas.nn.pytorch import Cell

    from .structure import FALLBACK_HINT

    found: dict[str, LooseEnds] = {}
    for name, cell in space.named_modules():
        if not isinstance(cell, Cell):
            continue
        if cell.merge_op not in MERGE_RULES:
            raise InvalidInput(f"module {name!r} (Cell) merges its nodes with rule {cell.merge_op!r}, which the profiler "
                             f"does not know; use merge_op 'all' or 'loose_end', or use {FALLBACK_HINT}")
        if cell.merge_op != "loose_end":
            continue
        first = cell.num_predecessors
        slots = tuple((first + i, choice.label) for i, row in enumerate(cell.inputs) for choice in row)
        loose = LooseEnds(f"{cell.label}{SUFFIX}", first, slots)
        if loose.num_nodes > _MAX_NODES:
            raise InvalidInput(f"module {name!r} (Cell) has {loose.num_nodes} nodes, over the {_MAX_NODES} whose loose "
                             f"ends the profiler enumerates; use {FALLBACK_HINT}")
        if found.setdefault(loose.label, loose) != loose:
            raise InvalidInput(f"module {name!r} (Cell) shares the label {cell.label!r} with a cell of another "
                             f"structure, so its loose ends are not one count; give it its own label or use "
                             f"{FALLBACK_HINT}")
    return found


def adapt_input_widths(module: nn.Module, reference: Sequence[tuple], shapes: Sequence[tuple],
                       arguments) -> nn.Module:
    """``module``, built for inputs of ``reference`` shapes, rebuilt for inputs whose channel count differs (a
    loose-end cell's output, which the space builds at its widest): every convolution, linear layer and batch norm
    that reads such an input at its built width gets the new width, as the frozen network builds it.

    Which layers read which input: the reference run with that input set to NaN (two inputs of one built width can
    change to different widths). ``arguments(module, shapes)`` makes the positional arguments. Returns ``module``
    itself when the shapes agree.
    """
    changes = [(i, int(ref[1]), int(new[1])) for i, (ref, new) in enumerate(zip(reference, shapes))
               if len(ref) > 1 and tuple(ref) != tuple(new)]
    if not changes:
        return module
    names = {m: n for n, m in module.named_modules()}
    leaves = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    receivers: dict[str, tuple[int, int]] = {}
    for i, old, new in changes:
        def note(leaf, args, old=old, new=new):
            first = next((a for a in args if isinstance(a, torch.Tensor)), None)
            if first is not None and first.dim() > 1 and int(first.shape[1]) == old and bool(first.isnan().any()):
                receivers.setdefault(names[leaf], (old, new))

        flat, spec = tree_flatten(arguments(module, reference))
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        tensors[i].fill_(float("nan"))
        handles = [leaf.register_forward_pre_hook(note) for leaf in leaves]
        try:
            with torch.no_grad():
                module(*tree_unflatten(flat, spec))
        finally:
            for handle in handles:
                handle.remove()
    if "" in receivers:  # the module is the layer itself (a classifier)
        return _rewidth(module, *receivers[""], type(module).__name__)
    adapted = copy.deepcopy(module)
    for name, (old, new) in receivers.items():
        parent_name, _, attribute = name.rpartition(".")
        parent = adapted.get_submodule(parent_name) if parent_name else adapted
        setattr(parent, attribute, _rewidth(adapted.get_submodule(name), old, new, name))
    return adapted


def _rewidth(leaf: nn.Module, old: int, new: int, name: str) -> nn.Module:
    """A copy of ``leaf`` that reads ``new`` channels where it read ``old`` (its output width unchanged)."""
    parameter = next(leaf.parameters(), None)
    factory = {"device": parameter.device, "dtype": parameter.dtype} if parameter is not None else {}
    if isinstance(leaf, nn.Conv2d) and leaf.groups == 1 and leaf.in_channels == old:
        return nn.Conv2d(new, leaf.out_channels, leaf.kernel_size, leaf.stride, leaf.padding, leaf.dilation, 1,
                         leaf.bias is not None, leaf.padding_mode, **factory).train(leaf.training)
    if isinstance(leaf, nn.Linear) and leaf.in_features == old:
        return nn.Linear(new, leaf.out_features, leaf.bias is not None, **factory).train(leaf.training)
    if isinstance(leaf, nn.BatchNorm2d) and leaf.num_features == old:
        return nn.BatchNorm2d(new, leaf.eps, leaf.momentum, leaf.affine, leaf.track_running_stats,
                              **factory).train(leaf.training)
    from .structure import FALLBACK_HINT, SpaceError

    raise SpaceError(f"module {name!r} ({type(leaf).__name__}) reads a loose-end cell's output, whose width changes "
                     f"with the cell's input choices, and the profiler cannot rebuild it for another width; use "
                     f"{FALLBACK_HINT}")
