"""``FrozenLatencyProfiler`` memoises NasBench101 by the canonical graph: an isomorphic cell (two vertices swapped) and
choices that pruning drops hit the memo, with the prediction the frozen network of that sample gets."""

from __future__ import annotations

import numpy as np
import pytest

from nni_latency.nas import FrozenLatencyProfiler, predict_frozen
from nni_latency.spaces.hub import build_space

pytestmark = pytest.mark.filterwarnings("ignore::nni_latency.model.model.OutOfRangeWarning", "ignore::UserWarning")

SHAPE = (1, 3, 16, 16)


def _cell(base: dict, first: str, second: str, extra_op: str) -> dict:
    """A 4-vertex cell: input -> (op1, op2) -> output, with op3 (unused at 4 vertices) set to ``extra_op``."""
    sample = {k: v for k, v in base.items() if k != "cell/final"}
    sample.update({"cell/num_nodes": 4, "cell/op1": first, "cell/op2": second, "cell/op3": extra_op,
                   "cell/input1": [0], "cell/input2": [0], "cell/input3": [1, 2]})
    return sample


def test_isomorphic_cells_hit_the_memo(synthetic_model):
    space = build_space("nasbench101", 16, 10, stem_out_channels=8, num_stacks=1, num_modules_per_stack=1)
    profiler = FrozenLatencyProfiler(space, SHAPE, synthetic_model)
    base: dict = {}
    space.random(memo=base, random_state=np.random.RandomState(0))
    first = _cell(base, "conv3x3-bn-relu", "maxpool3x3", "conv1x1-bn-relu")
    swapped = _cell(base, "maxpool3x3", "conv3x3-bn-relu", "maxpool3x3")  # vertices 1 and 2 swapped; op3 pruned
    other = _cell(base, "conv3x3-bn-relu", "conv3x3-bn-relu", "conv1x1-bn-relu")
    latency = profiler.profile(first)
    assert (profiler.hits, profiler.misses) == (0, 1)
    assert profiler.profile(swapped) == latency and (profiler.hits, profiler.misses) == (1, 1)
    assert latency == pytest.approx(predict_frozen(space.freeze(dict(swapped)), SHAPE, synthetic_model), rel=1e-9)
    assert profiler.profile(other) != latency and profiler.hit_rate == pytest.approx(1 / 3)


def test_a_sample_outside_the_space_is_one_line(synthetic_model):
    space = build_space("nasbench101", 16, 10, stem_out_channels=8, num_stacks=1, num_modules_per_stack=1)
    profiler = FrozenLatencyProfiler(space, SHAPE, synthetic_model)
    base: dict = {}
    space.random(memo=base, random_state=np.random.RandomState(0))
    broken = {**_cell(base, "conv3x3-bn-relu", "maxpool3x3", "maxpool3x3"), "cell/input3": []}  # output unreachable
    with pytest.raises(ValueError) as raised:
        profiler.profile(broken)
    assert "\n" not in str(raised.value) and "not an architecture of NasBench101" in str(raised.value)
