"""Every space of NNI 3.0's hub and FBNetSpace, in small versions: the profiler builds, and ``profile(sample)``
equals the device model's prediction of the frozen network (``predict_frozen``) for random samples; spaces
that latency tables cannot follow get a one-line error naming the module, the label and the fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nni_latency.nas import FrozenLatencyProfiler, LatencyProfiler, predict_frozen
from nni_latency.spaces.hub import SPACES, build_space, profiler_for
from nni_latency.suite.blocks import ConvBNAct

# the synthetic device model has no matmul rows, so classifiers are out of its range; expected here
pytestmark = pytest.mark.filterwarnings("ignore::nni_latency.model.model.OutOfRangeWarning",
                                        "ignore::UserWarning")

# name -> (arguments of a small version, input size); widths and depths as lists search over them
SMALL = {
    "fbnet": ({"width_mult": 0.25, "depth_mult": 0.25}, 32),
    "proxylessnas": ({"width_mult": 0.25}, 32),
    "mobilenetv3": ({"width_multipliers": (0.25, 0.5), "expand_ratios": (3, 6), "depth_range": (1, 2)}, 32),
    "shufflenet": ({}, 32),
    "autoformer": ({"search_embed_dim": (32, 48), "search_mlp_ratio": (2.0, 3.0), "search_num_heads": (2, 4),
                    "search_depth": (1, 2), "patch_size": 8}, 32),
    "darts": ({"width": (4, 8), "num_cells": 3}, 16),
    "pnas": ({"width": 4, "num_cells": 3}, 16),
    "nasbench201": ({"stem_out_channels": 4, "num_modules_per_stack": 1}, 16),
    "enas": ({"width": 4, "num_cells": 3}, 16),
    "nasnet": ({"width": 4, "num_cells": 3}, 16),
    "amoebanet": ({"width": 4, "num_cells": 3}, 16),
    "nasbench101": ({"stem_out_channels": 8, "num_stacks": 1, "num_modules_per_stack": 1}, 16),
}
# ProxylessNAS and ShuffleNetSpace (with its channel search) are checked the same way in test_nas_profiler.py.
TABLES = [name for name in SMALL if SPACES[name].tables and name not in ("proxylessnas", "shufflenet")]


@pytest.mark.parametrize("name", sorted(set(SMALL) | set(SPACES)))
def test_every_space_of_the_hub_has_a_small_version(name):
    assert name in SMALL and name in SPACES
    small, _ = _space(name)
    assert _parameters(small) < _parameters(build_space(name))  # really a smaller version of the same space


def _parameters(space: nn.Module) -> int:
    return sum(parameter.numel() for parameter in space.parameters())


def _space(name):
    arguments, size = SMALL[name]
    torch.manual_seed(0)
    return build_space(name, size, 10, **arguments), (1, 3, size, size)


@pytest.mark.parametrize("name", TABLES)
def test_profile_equals_the_prediction_of_the_frozen_network(name, synthetic_model):
    space, shape = _space(name)
    profiler = profiler_for(name, space, shape, synthetic_model)
    assert isinstance(profiler, LatencyProfiler)
    rng = np.random.default_rng(0)
    for _ in range(2):  # freezing is the slow part (NNI deep-copies the space)
        sample = profiler.space_labels.random_sample(rng)
        expected = predict_frozen(space.freeze(sample), shape, synthetic_model)
        assert profiler.profile(sample) == pytest.approx(expected, rel=1e-9), sample
        assert profiler.expression.evaluate(sample) == pytest.approx(profiler.profile(sample), rel=1e-9)


@pytest.mark.parametrize("name, module, label", [
    ("nasbench101", "features.0", "cell/final"),
])
def test_the_fallback_serves_spaces_tables_cannot_follow(name, module, label, synthetic_model):
    space, shape = _space(name)
    with pytest.raises(ValueError) as raised:
        LatencyProfiler(space, shape, synthetic_model)
    message = str(raised.value)  # one line naming the module, the label and the fallback
    assert "\n" not in message and f"'{module}'" in message and f"'{label}'" in message
    assert "FrozenLatencyProfiler" in message

    profiler = profiler_for(name, space, shape, synthetic_model)
    assert isinstance(profiler, FrozenLatencyProfiler)
    sample: dict = {}
    space.random(memo=sample, random_state=np.random.RandomState(0))  # NNI's sampler keeps NasBench101 valid
    latency = profiler.profile(sample)
    assert latency == pytest.approx(predict_frozen(space.freeze(sample), shape, synthetic_model), rel=1e-12)
    assert profiler.profile(sample) == latency and len(profiler._memo) == 1  # memoised


def test_nds_stage_of_one_cell_needs_the_fallback(synthetic_model):
    torch.manual_seed(0)
    space = build_space("darts", 16, 10, width=4, num_cells=(3, 6))
    with pytest.raises(ValueError, match=r"'stages.0' \(NDSStage\) holds 1 cell.*num_cells >= 6.*FrozenLatencyProfiler"):
        LatencyProfiler(space, (1, 3, 16, 16), synthetic_model)


def test_the_fallback_is_the_device_models_prediction_of_the_frozen_network(synthetic_model):
    torch.manual_seed(0)
    network = nn.Sequential(ConvBNAct(3, 8, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).eval()
    assert predict_frozen(network, (1, 3, 8, 8), synthetic_model) == synthetic_model.predict_module(network, (1, 3, 8, 8))
