"""LatencyProfiler: predictions of frozen architectures, NNI penalty/filter compatibility, bad inputs."""

from __future__ import annotations

import itertools
import random
import warnings

import nni
import numpy as np
import pytest
import torch
from nni.nas.nn.pytorch import LayerChoice, ModelSpace, MutableBatchNorm2d, MutableConv2d, Repeat
from nni.nas.oneshot.pytorch.profiler import ExpectationProfilerPenalty, RangeProfilerFilter, SampleProfilerPenalty
from nni.nas.profiler import ExpressionProfiler
from torch import nn

from nni_latency.count.features import BlockFeatures, UncoveredOperatorWarning
from nni_latency.model.model import LatencyModel
from nni_latency.nas import ChoiceRecord, LatencySource, LutRow
from nni_latency.nas.fallback import predict_frozen
from nni_latency.nas.profiler import LatencyProfiler
from nni_latency.runtimes.torch.operators import FEATURE_NAMES
from nni_latency.suite.blocks import ConvBNAct, MBConv, ShuffleUnit, Skip

# -- small spaces --------------------------------------------------------------------------------------

class ChoiceSpace(ModelSpace):
    """A LayerChoice with a skip, a shuffle unit (no NNI shape formula) and an inverted residual."""

    def __init__(self):
        super().__init__()
        self.stem = ConvBNAct(3, 16, 3, 2)
        self.block = LayerChoice({"mb": MBConv(16, 16, 3, 1, 6), "skip": Skip(16, 16), "shuffle": ShuffleUnit(16, 16)},
                                 label="block")
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.block(self.stem(x)).mean((2, 3)))


class RepeatSpace(ModelSpace):
    """A Repeat with a depth choice whose blocks are LayerChoices."""

    def __init__(self):
        super().__init__()
        self.stem = ConvBNAct(3, 16, 3, 2)
        self.body = Repeat(lambda i: LayerChoice({"k3": MBConv(16, 16, 3, 1, 3), "k5": MBConv(16, 16, 5, 1, 3)},
                                                 label=f"body{i}"), (1, 3), label="depth")
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


class _DepthwisePointwise(nn.Module):
    """A user container holding value choices: its layers' widths follow the stem's."""

    def __init__(self, width, kernel):
        super().__init__()
        self.depthwise = MutableConv2d(width, width, kernel, padding=kernel // 2, groups=width)
        self.pointwise = MutableConv2d(width, 16, 1)

    def forward(self, x):
        return torch.relu(self.pointwise(self.depthwise(x)))


class WidthSpace(ModelSpace):
    """A width choice on the stem changes the input shape of the next block and of a nested choice."""

    def __init__(self):
        super().__init__()
        width = nni.choice("width", [8, 16, 24])
        self.stem = nn.Sequential(MutableConv2d(3, width, 3, 2, 1), MutableBatchNorm2d(width))
        self.act = LayerChoice({"relu": nn.ReLU(), "hardswish": nn.Hardswish()}, label="act")
        self.block = LayerChoice({"k3": _DepthwisePointwise(width, 3), "k5": _DepthwisePointwise(width, 5),
                                  "nested": nn.Sequential(MutableConv2d(width, 16, 1), LayerChoice(
                                      {"a": ConvBNAct(16, 16, 3), "b": Skip(16, 16)}, label="inner"))},
                                 label="block")
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.block(self.act(self.stem(x))).mean((2, 3)))


SPACES = [ChoiceSpace, RepeatSpace, WidthSpace]


def _all_samples(profiler):
    labels, values = zip(*profiler.label_values.items())
    return [dict(zip(labels, combo)) for combo in itertools.product(*values)]


@pytest.fixture(scope="module")
def device_model(synthetic_dataset) -> LatencyModel:
    _, rows, latencies = synthetic_dataset
    device = {"name": "synthetic", "type": "cpu", "threads": 1, "dtype": "fp32", "batch": 1}
    return LatencyModel.fit(rows, latencies, kind="relative_linear", device=device)


@pytest.mark.parametrize("space_class", SPACES, ids=lambda c: c.__name__)
def test_profile_matches_the_frozen_network(space_class, device_model):
    # The device model's prediction of the frozen network: its summed features, the intercept paid once.
    torch.manual_seed(0)
    profiler = LatencyProfiler(space_class(), (1, 3, 16, 16), device_model)
    assert profiler.intercept_ms == pytest.approx(device_model.predict_one(BlockFeatures()))
    for sample in _all_samples(profiler):
        whole = device_model.predict_module(profiler.freeze(sample), (1, 3, 16, 16))
        assert profiler.profile(sample) == pytest.approx(whole, rel=1e-9), sample
        assert profiler.expression.evaluate(sample) == pytest.approx(profiler.profile(sample), rel=1e-12)


def test_width_choice_changes_the_input_of_later_blocks(device_model):
    profiler = LatencyProfiler(WidthSpace(), (1, 3, 16, 16), device_model)
    rows = [r for r in profiler.choices if r.label == "act" and r.candidate == "hardswish"]
    assert sorted(r.input_shape[1] for r in rows) == [8, 16, 24]
    assert all(r.when == {"width": r.input_shape[1]} for r in rows)
    assert len({r.features["mem_elements"] for r in rows}) == 3  # what it moves depends on the width
    latencies = [profiler.profile({"width": w, "act": "relu", "block": "k3", "inner": "a"}) for w in (8, 16, 24)]
    assert latencies == sorted(latencies) and len(set(latencies)) == 3


def test_choices_are_lookup_table_rows(device_model):
    profiler = LatencyProfiler(WidthSpace(), (1, 3, 16, 16), device_model)
    assert ChoiceRecord is LutRow and all(isinstance(r, LutRow) for r in profiler.choices)
    for row in profiler.choices:
        assert row.label == row.layer and row.latency_ms == row.predicted_ms and row.measured_ms is None
        assert set(row.features) == set(FEATURE_NAMES)  # what the prediction was made from


def test_profiler_is_a_latency_source_and_an_nni_profiler(device_model):
    profiler = LatencyProfiler(ChoiceSpace(), (1, 3, 16, 16), device_model)
    assert isinstance(profiler, LatencySource) and isinstance(profiler, ExpressionProfiler)
    assert profiler.uniform_expected_latency() > 0


def test_skip_candidate_costs_nothing(device_model):
    profiler = LatencyProfiler(ChoiceSpace(), (1, 3, 16, 16), device_model)
    skip = [r for r in profiler.choices if r.candidate == "skip"]
    assert len(skip) == 1 and skip[0].latency_ms == 0.0


@pytest.mark.parametrize("probs_seed", [0, 1])
def test_nni_expectation_penalty_matches_brute_force(probs_seed, device_model):
    profiler = LatencyProfiler(RepeatSpace(), (1, 3, 16, 16), device_model)
    rng = np.random.default_rng(probs_seed)
    probs = {}
    for label, values in profiler.label_values.items():
        weights = rng.random(len(values))
        probs[label] = dict(zip(values, weights / weights.sum()))
    brute = sum(profiler.profile(s) * np.prod([probs[label][s[label]] for label in s]) for s in _all_samples(profiler))
    penalty = ExpectationProfilerPenalty(profiler, baseline=1.0)
    assert penalty.profile(probs) == pytest.approx(brute, rel=1e-9)


def test_nni_sample_penalty_and_range_filter(device_model):
    profiler = LatencyProfiler(RepeatSpace(), (1, 3, 16, 16), device_model)
    small = {"depth": 1, "body0": "k3", "body1": "k3", "body2": "k3"}
    large = {"depth": 3, "body0": "k5", "body1": "k5", "body2": "k5"}
    assert SampleProfilerPenalty(profiler, baseline=1.0).profile(large) == profiler.profile(large)
    middle = (profiler.profile(small) + profiler.profile(large)) / 2
    keep = RangeProfilerFilter(profiler, max=middle)
    assert keep(small) and not keep(large)


@pytest.fixture(scope="module")
def proxylessnas():
    from nni.nas.hub.pytorch import ProxylessNAS
    torch.manual_seed(0)
    return ProxylessNAS(num_labels=10, width_mult=0.5)


def _proxyless_blocks(frozen):
    """The frozen ProxylessNAS split into its blocks: stem, every inverted residual, the 1x1 head, classifier."""
    blocks = [frozen.stem, frozen.blocks[0]]
    for stage in list(frozen.blocks)[1:]:
        blocks += list(stage) if type(stage) is nn.Sequential else [stage]  # a frozen Repeat is a Sequential
    return blocks + [frozen.feature_mix_layer]


def test_proxylessnas_equals_the_sum_of_its_frozen_blocks(proxylessnas, device_model):
    # Features add up: the blocks of the frozen network predicted one by one, each without the intercept
    # (paid once), give the whole network's prediction.
    shape = (1, 3, 64, 64)
    profiler = LatencyProfiler(proxylessnas, shape, device_model)
    intercept = profiler.intercept_ms
    rng = random.Random(0)
    for _ in range(2):
        sample = {label: rng.choice(values) for label, values in profiler.label_values.items()}
        frozen = profiler.freeze(sample).eval()
        total, x = intercept, torch.randn(shape)
        with torch.no_grad():
            for block in _proxyless_blocks(frozen) + [frozen.global_avg_pooling]:
                total += device_model.predict_module(block, tuple(x.shape)) - intercept
                x = block(x)
            total += device_model.predict_module(frozen.classifier, (1, x.shape[1])) - intercept
        assert profiler.profile(sample) == pytest.approx(total, rel=1e-9)
        assert predict_frozen(frozen, shape, device_model) == pytest.approx(total, rel=1e-9)


def test_hub_space_with_width_choices(device_model):
    from nni.nas.hub.pytorch import ShuffleNetSpace
    torch.manual_seed(0)
    space = ShuffleNetSpace(num_labels=10, channel_search=True)
    profiler = LatencyProfiler(space, (1, 3, 32, 32), device_model)
    assert any(len(term.labels) > 1 for term in profiler.terms)  # a block's cost depends on two choices
    rng = random.Random(0)
    sample = {label: rng.choice(values) for label, values in profiler.label_values.items()}
    expected = predict_frozen(profiler.freeze(sample), (1, 3, 32, 32), device_model)
    assert profiler.profile(sample) == pytest.approx(expected, rel=1e-9)


# -- bad input ------------------------------------------------------------------------------------

class FixedSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.conv = ConvBNAct(3, 8, 3)

    def forward(self, x):
        return self.conv(x)


class _CummaxBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return torch.cummax(self.conv(x), 1)[0]  # an operator no feature formula covers


class UncoveredSpace(ModelSpace):
    def __init__(self):
        super().__init__()
        self.a = LayerChoice({"x": _CummaxBlock(3), "y": nn.Conv2d(3, 3, 1)}, label="a")
        self.b = LayerChoice({"x": _CummaxBlock(3), "y": nn.Conv2d(3, 3, 3, padding=1)}, label="b")

    def forward(self, x):
        return self.b(self.a(x))


@pytest.mark.parametrize("space_class, example, match", [
    (FixedSpace, (1, 3, 16, 16), "has no choices"),
    (ChoiceSpace, (1, 4, 16, 16), r"module 'stem' \(ConvBNAct\) fails on input \(1, 4, 16, 16\)"),
    (ChoiceSpace, "1,3,16,16", "example_input must be a tensor or a shape"),
    (ChoiceSpace, (1, 3, 1.5, 16), "example_input must be a tensor or a shape"),
], ids=["no-choices", "wrong-channels", "string-shape", "float-shape"])
def test_bad_input_is_one_clear_error(space_class, example, match, device_model):
    with pytest.raises(ValueError, match=match):
        LatencyProfiler(space_class(), example, device_model)


def test_too_many_combinations_is_refused(device_model):
    with pytest.raises(ValueError, match="over max_combinations=2"):
        LatencyProfiler(WidthSpace(), (1, 3, 16, 16), device_model, max_combinations=2)


def test_bad_device_model_argument(tmp_path):
    with pytest.raises(ValueError, match="must be a LatencyModel"):
        LatencyProfiler(ChoiceSpace(), (1, 3, 16, 16), 42)
    with pytest.raises(ValueError, match="no such file"):
        LatencyProfiler(ChoiceSpace(), (1, 3, 16, 16), tmp_path / "missing.json")


@pytest.mark.parametrize("device, example, names", [
    ({"dtype": "fp32", "batch": 8}, (1, 3, 16, 16), ["batch 8", "batch 1"]),
    ({"dtype": "fp16", "batch": 1}, torch.zeros(1, 3, 16, 16), ["fp16", "fp32"]),
], ids=["batch", "dtype"])
def test_device_model_mismatch_warns_naming_both(device, example, names, device_model):
    other = LatencyModel(device_model.regressor, device=device, feature_ranges=device_model.feature_ranges)
    with pytest.warns(UserWarning) as record:
        LatencyProfiler(ChoiceSpace(), example, other)
    messages = [str(w.message) for w in record if "device model was fitted" in str(w.message)]
    assert len(messages) == 1 and all(name in messages[0] for name in names)


def test_uncovered_operator_is_reported_once(device_model):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        LatencyProfiler(UncoveredSpace(), (1, 3, 8, 8), device_model)
    uncovered = [str(w.message) for w in record if issubclass(w.category, UncoveredOperatorWarning)]
    assert len(uncovered) == 1
    assert "aten.cummax" in uncovered[0] and "'a.x'" in uncovered[0] and "1 other" in uncovered[0]


@pytest.mark.parametrize("sample, match", [
    ({"block": "mb"}, "sample lacks label"),
    ({"block": "k3", "width": 8, "act": "relu", "inner": "zzz"}, "'zzz' for label 'inner' is not one of"),
], ids=["missing-label", "unknown-value"])
def test_bad_sample(sample, match, device_model):
    profiler = LatencyProfiler(WidthSpace(), (1, 3, 16, 16), device_model)
    with pytest.raises(ValueError, match=match):
        profiler.profile(sample)
