"""InputChoices and cells: the latency of a node that chooses several inputs, and the differentiable FBNet term on
InputChoices, DARTS cells (NNI's edge logits) and AutoFormer; the gradient reaches every architecture parameter."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from nas_search import latency_only_search
from nni.nas.nn.pytorch import InputChoice, LayerChoice, ModelSpace
from torch import nn

from nni_latency.errors import InvalidInput
from nni_latency.nas import (FBNet, FBNetLatencyLoss, FrozenLatencyProfiler, LatencyDARTS, LatencyProfiler,
                             predict_frozen)
from nni_latency.nas.loss import ExpectedLatency
from nni_latency.nas.strategy import architecture_logits, architecture_probs
from nni_latency.spaces.hub import build_space
from nni_latency.suite.blocks import ConvBNAct, MBConv

pytestmark = pytest.mark.filterwarnings("ignore::nni_latency.model.model.OutOfRangeWarning", "ignore::UserWarning")


class _AnyWidthConv(nn.Module):
    """A 1x1 convolution to 8 channels from however many channels come in (its FLOPs follow the input width)."""

    def __init__(self, most: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, most, 1, 1))

    def forward(self, x):
        return nn.functional.conv2d(x, self.weight[:, :x.shape[1]])


class InputSpace(ModelSpace):
    """A node that sums, averages or concatenates 2 of 3 branches, then a choice of activation.

    Concatenated branches of different widths make the node's width, and the next convolution's cost, depend
    on the inputs chosen."""

    def __init__(self, reduction: str, widths=(8, 8, 8)):
        super().__init__()
        self.stem = ConvBNAct(3, 8, 3)
        self.branches = nn.ModuleList([ConvBNAct(8, widths[0], 1), MBConv(8, widths[1], 3, 1, 3),
                                       ConvBNAct(8, widths[2], 3)])
        self.choose = InputChoice(3, n_chosen=2, reduction=reduction, label="inputs")
        self.mix = _AnyWidthConv(sum(widths))
        self.after = LayerChoice({"relu": nn.ReLU(), "none": nn.Identity()}, label="after")
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        x = self.after(self.mix(self.choose([branch(x) for branch in self.branches])))
        return self.head(x.mean((2, 3)))


@pytest.mark.parametrize("reduction, widths", [("sum", (8, 8, 8)), ("mean", (8, 8, 8)), ("concat", (4, 8, 16))])
def test_a_node_costs_the_reduction_of_the_inputs_it_chooses(reduction, widths, synthetic_model):
    torch.manual_seed(0)
    space = InputSpace(reduction, widths)
    profiler = LatencyProfiler(space, (1, 3, 8, 8), synthetic_model)
    assert profiler.label_values["inputs"] == [(0, 1), (0, 2), (1, 2)]
    for chosen, after in itertools.product(([0, 1], [0, 2], [2, 1]), ("relu", "none")):
        sample = {"inputs": chosen, "after": after}
        assert profiler.profile(sample) == pytest.approx(
            predict_frozen(space.freeze(sample), (1, 3, 8, 8), synthetic_model), rel=1e-9)
        assert profiler.expression.evaluate(sample) == pytest.approx(profiler.profile(sample), rel=1e-9)


def test_expected_latency_of_an_input_choice(synthetic_model):
    # NNI's DARTS gives each input a softmax weight and exports the n_chosen largest; a subset S has
    # probability prod_{j in S} p_j, normalised over the subsets of n_chosen inputs.
    torch.manual_seed(0)
    profiler = LatencyProfiler(InputSpace("concat", (4, 8, 16)), (1, 3, 8, 8), synthetic_model)
    assert any("inputs" in term.labels for term in profiler.terms)
    logits = torch.tensor([0.3, -1.0, 0.8], requires_grad=True)
    after = torch.tensor([0.6, 0.4])
    weights = torch.softmax(logits, -1)
    latency = ExpectedLatency(profiler)({"inputs": weights, "after": after})
    subsets = profiler.label_values["inputs"]
    prior = np.array([np.prod([weights[j].item() for j in s]) for s in subsets])
    brute = sum(prior[i] / prior.sum() * after[a].item() * profiler.profile({"inputs": list(s), "after": name})
                for i, s in enumerate(subsets) for a, name in enumerate(("relu", "none")))
    assert float(latency) == pytest.approx(brute, rel=1e-5)
    latency.backward()
    assert torch.all(logits.grad != 0)


@pytest.fixture(scope="module")
def darts(synthetic_dataset):
    from nni_latency.model.model import LatencyModel

    _, rows, latencies = synthetic_dataset
    model = LatencyModel.fit(rows, latencies, kind="relative_linear", device={"dtype": "fp32", "batch": 1})
    torch.manual_seed(0)
    space = build_space("darts", 8, 10, width=4, num_cells=3)
    return space, LatencyProfiler(space, (1, 3, 8, 8), model)


def test_calibrating_a_cell_space_is_refused_before_any_measurement(darts):
    """A cell's tables are priced by the whole model, not by role: scaling roles would count them three times
    (DARTS predicted 3.0x with every scale at 1), so calibration refuses cell spaces in one line."""
    space, profiler = darts
    with pytest.raises(InvalidInput, match="calibrate cannot scale a space of NNI cells"):
        LatencyProfiler(space, (1, 3, 8, 8), profiler.device_model, calibrate=4)


def _random_latencies(profiler, count=32):
    rng = np.random.default_rng(0)
    return [profiler.profile(profiler.space_labels.random_sample(rng)) for _ in range(count)]


def test_latency_gradient_reaches_every_architecture_parameter_of_a_darts_space(darts):
    space, profiler = darts
    loss = FBNetLatencyLoss(profiler, alpha=1.0, mode="add")
    supernet = LatencyDARTS(penalty=loss).mutate_model(copy.deepcopy(space))  # NNI's DARTS supernet
    logits = architecture_logits(supernet.modules())
    edges = [label for label in logits if "_" in label.split("/")[-1] and "op_" not in label]
    assert len(edges) == 2 * (2 + 3 + 4 + 5)  # one logit vector per edge of the normal and the reduction cell
    total, _ = loss(torch.tensor(1.0), architecture_probs(supernet.modules()))
    total.backward()
    for label, alpha in logits.items():
        assert alpha.grad is not None and torch.any(alpha.grad != 0), label


def test_latency_only_darts_search_ends_cheaper_than_random_architectures(darts):
    # NNI's DARTS parametrisation (edge logits, export of the best (op, input) pairs), trained on latency alone.
    space, profiler = darts
    memo = latency_only_search(space, profiler, steps=40)
    found = profiler.profile(memo)
    assert found < min(_random_latencies(profiler))


def test_fbnet_on_a_fallback_profiler_names_the_alternative(synthetic_model):
    space = build_space("enas", 8, 10, width=4, num_cells=3)
    with pytest.raises(ValueError, match="no latency tables.*multi-trial.*RangeProfilerFilter"):
        FBNetLatencyLoss(FrozenLatencyProfiler(space, (1, 3, 8, 8), synthetic_model))


def test_unreachable_budget_is_refused_before_training(darts):
    _, profiler = darts
    fastest = min(_random_latencies(profiler))
    with pytest.raises(ValueError, match=r"target_ms=0.001 ms is unreachable: the fastest architecture .* predicted at"):
        FBNetLatencyLoss(profiler, target_ms=1e-3)
    FBNetLatencyLoss(profiler, target_ms=fastest)  # an architecture meets it


@pytest.fixture
def every_feature_costs():
    """A device model in which every feature costs something (the synthetic one never saw a linear layer)."""
    from nni_latency.model.model import LatencyModel
    from nni_latency.model.regressors import RelativeLinearModel
    from nni_latency.runtimes.torch.operators import FEATURE_ROLES

    names = RelativeLinearModel.DEFAULT_FEATURES
    weight = {"compute": 1e-6, "memory": 1e-8, "overhead": 0.01}
    regressor = RelativeLinearModel.from_state({"features": list(names), "intercept": 0.02,
                                                "weights": {n: weight[FEATURE_ROLES[n]] for n in names}})
    return LatencyModel(regressor, device={"dtype": "fp32", "batch": 1})


def test_latency_gradient_reaches_autoformer_embedding_heads_mlp_and_depth(every_feature_costs):
    torch.manual_seed(0)
    space = build_space("autoformer", 32, 10, search_embed_dim=(32, 48), search_mlp_ratio=(2.0, 3.0),
                        search_num_heads=(2, 4), search_depth=(1, 2), patch_size=8)
    profiler = LatencyProfiler(space, (1, 3, 32, 32), every_feature_costs)
    loss = FBNetLatencyLoss(profiler, alpha=1.0, mode="add")
    supernet = FBNet(penalty=loss).mutate_model(copy.deepcopy(space))
    logits = architecture_logits(supernet.modules())
    assert set(logits) == set(profiler.label_values)  # embed_dim, depth, num_head_i, mlp_ratio_i
    rng = np.random.default_rng(0)
    probs = {label: torch.tensor(rng.dirichlet(np.ones(len(values))), dtype=torch.float32)
             for label, values in profiler.label_values.items()}
    brute = sum(profiler.profile(dict(zip(probs, combo))) * np.prod(
        [probs[label][profiler.label_values[label].index(value)].item() for label, value in zip(probs, combo)])
        for combo in itertools.product(*profiler.label_values.values()))
    assert float(ExpectedLatency(profiler)(probs)) == pytest.approx(brute, rel=1e-5)
    loss(torch.tensor(1.0), architecture_probs(supernet.modules()))[0].backward()
    assert all(torch.any(alpha.grad != 0) for alpha in logits.values())
