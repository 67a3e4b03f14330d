"""Loose-end cells (ENAS, NASNet, AmoebaNet): the loose-end count's law against enumeration, the expected latency
against brute force over a small cell, ``profile`` against the frozen network, a latency-only search against random
samples, and the one-line errors. ``profile`` against the frozen network: tests/test_nas_spaces.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from nas_search import latency_only_search
from nni.nas.nn.pytorch import Cell, ModelSpace
from torch import nn

from nni_latency.nas import LatencyProfiler
from nni_latency.nas.label_tables import subsets
from nni_latency.nas.loose import LooseEnds
from nni_latency.nas.loss import ExpectedLatency
from nni_latency.spaces.hub import build_space

pytestmark = pytest.mark.filterwarnings("ignore::nni_latency.model.model.OutOfRangeWarning", "ignore::UserWarning")


def _cell_law(first: int, nodes: int, per_node: int, seed: int):
    """A LooseEnds over ``nodes`` nodes, random input distributions, and P(K) by enumerating every choice."""
    slots = tuple((first + i, f"c/input_{first + i}_{k}") for i in range(nodes) for k in range(per_node))
    loose = LooseEnds("c/loose_ends", first, slots)
    values = {label: subsets(list(range(node)), 1) for node, label in slots}
    rng = np.random.default_rng(seed)
    probs = {label: rng.dirichlet(np.ones(len(values[label]))) for label in values}
    law = np.zeros(nodes)
    for choice in itertools.product(*(range(len(values[label])) for _, label in slots)):
        sample = {label: list(values[label][c]) for (_, label), c in zip(slots, choice)}
        law[loose.count(sample) - 1] += np.prod([probs[label][c] for (_, label), c in zip(slots, choice)])
    return loose, values, probs, law


@pytest.mark.parametrize("first, nodes, per_node", [(1, 3, 1), (2, 4, 2), (2, 3, 2)])
def test_loose_end_law_is_exact(first, nodes, per_node):
    loose, values, probs, law = _cell_law(first, nodes, per_node, seed=nodes)
    vectors = {label: torch.tensor(p, dtype=torch.float64) for label, p in probs.items()}
    computed = loose.distribution(vectors, loose.plan(values)).numpy()
    np.testing.assert_allclose(computed, law, rtol=1e-9, atol=1e-12)


def test_loose_indicators_are_not_independent():
    # Why the law is not a Poisson-binomial: two nodes compete for one later slot.
    loose, values, probs, law = _cell_law(2, 4, 2, seed=4)
    marginal = [np.prod([1 - probs[label][node] if node < len(probs[label]) else 1.0
                         for later, label in loose.slots if later > node]) for node in range(2, 6)]
    poisson = np.zeros(5)
    poisson[0] = 1.0
    for p in marginal:
        poisson[1:] = poisson[1:] * (1 - p) + poisson[:-1] * p
        poisson[0] *= 1 - p
    assert abs(np.dot(np.arange(5), poisson) - np.dot(np.arange(1, 5), law)) < 1e-9  # the mean agrees...
    assert np.max(np.abs(poisson[1:] - law)) > 1e-3  # ...the law does not


class _LooseSpace(ModelSpace):
    """A stem, one loose-end cell of 3 nodes (one input each) and a 1x1 conv that reads the cell's 4 * K channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        ops = {"conv": lambda node, op, inp: nn.Conv2d(4, 4, 3, padding=1),
               "pool": lambda node, op, inp: nn.MaxPool2d(3, 1, 1)}
        self.cell = Cell(ops, num_nodes=3, num_ops_per_node=1, num_predecessors=1, merge_op="loose_end", label="c")
        self.head = nn.Conv2d(12, 8, 1)

    def forward(self, x):
        return self.head(self.cell([self.stem(x)]))


def test_expected_latency_matches_brute_force_on_a_small_cell(synthetic_model):
    torch.manual_seed(0)
    space = _LooseSpace().eval()
    profiler = LatencyProfiler(space, (1, 3, 8, 8), synthetic_model)
    assert "c/loose_ends" in profiler.derived
    labels = [label for label in profiler.label_values if label not in profiler.derived]
    generator = torch.Generator().manual_seed(1)
    logits = {label: torch.randn(len(ExpectedLatency(profiler)._candidates(label)), generator=generator,
                                 dtype=torch.float64, requires_grad=True) for label in labels}
    probs = {label: torch.softmax(logit, 0) for label, logit in logits.items()}
    expected = ExpectedLatency(profiler)(probs)
    brute = 0.0
    for values in itertools.product(*(profiler.label_values[label] for label in labels)):
        sample = {label: list(v) if isinstance(v, tuple) else v for label, v in zip(labels, values)}
        weight = np.prod([probs[label][profiler.space_labels.position(label, sample[label])].item() for label in labels])
        brute += weight * profiler.profile(sample)
    assert float(expected) == pytest.approx(brute, rel=1e-6)
    expected.backward()
    assert all(torch.any(logits[label].grad != 0) for label in labels if "input" in label and len(logits[label]) > 1)
    table = next(t.table for t in profiler.terms if t.labels == ("c/loose_ends",))
    assert np.all(np.diff(table) > 0)  # the concatenation and the head read 4 * K channels


@pytest.mark.parametrize("name", ["enas", "nasnet", "amoebanet"])
def test_latency_only_darts_search_ends_below_random_samples(name, synthetic_model):
    torch.manual_seed(0)
    space = build_space(name, 8, 10, width=4, num_cells=3)
    profiler = LatencyProfiler(space, (1, 3, 8, 8), synthetic_model)
    memo = latency_only_search(space, profiler, steps=30)
    rng = np.random.default_rng(0)
    random = [profiler.profile(profiler.space_labels.random_sample(rng)) for _ in range(16)]
    assert profiler.profile(memo) < min(random)


def test_an_unknown_merge_rule_is_one_line(synthetic_model):
    space = _LooseSpace()
    space.cell.merge_op = "sum"
    with pytest.raises(ValueError) as raised:
        LatencyProfiler(space, (1, 3, 8, 8), synthetic_model)
    message = str(raised.value)
    assert "\n" not in message and "'cell'" in message and "'sum'" in message and "FrozenLatencyProfiler" in message
