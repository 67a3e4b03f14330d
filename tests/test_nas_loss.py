"""FBNetLatencyLoss and FBNet: the latency term has a gradient and steers the search; NNI's own penalty does not."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from nni.nas.evaluator.pytorch import Classification, DataLoader
from nni.nas.experiment import NasExperiment
from nni.nas.nn.pytorch import LayerChoice, ModelSpace, Repeat
from nni.nas.oneshot.pytorch.profiler import ExpectationProfilerPenalty
from nni.nas.strategy import GumbelDARTS
from torch import nn

from nni_latency.model.model import LatencyModel
from nni_latency.nas.label_tables import fastest_latency
from nni_latency.nas.loss import ExpectedLatency, FBNetLatencyLoss
from nni_latency.nas.profiler import LatencyProfiler
from nni_latency.nas.strategy import FBNet, architecture_logits
from nni_latency.suite.blocks import ConvBNAct, MBConv, Skip


class TinySpace(ModelSpace):
    """Three layers of {slow, cheapest, medium}; the order keeps "cheapest" away from index 0 and the end."""

    def __init__(self, layers: int = 3):
        super().__init__()
        self.stem = ConvBNAct(3, 8, 3)
        self.layers = nn.Sequential(*[
            LayerChoice({"wide": MBConv(8, 8, 5, 1, 6), "cheap": ConvBNAct(8, 8, 1), "mid": MBConv(8, 8, 3, 1, 3)},
                        label=f"layer{i}") for i in range(layers)])
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.layers(self.stem(x)).mean((2, 3)))


class DepthSpace(ModelSpace):
    """A Repeat depth choice: its latency tables span two labels."""

    def __init__(self):
        super().__init__()
        self.stem = ConvBNAct(3, 8, 3)
        self.body = Repeat(lambda i: LayerChoice({"k3": MBConv(8, 8, 3, 1, 3), "skip": Skip(8, 8)}, label=f"b{i}"),
                           (1, 3), label="depth")
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.body(self.stem(x)).mean((2, 3)))


@pytest.fixture(scope="module")
def device_model(synthetic_dataset) -> LatencyModel:
    _, rows, latencies = synthetic_dataset
    return LatencyModel.fit(rows, latencies, kind="relative_linear", device={"dtype": "fp32", "batch": 1})


@pytest.fixture(scope="module")
def tiny_profiler(device_model):
    torch.manual_seed(0)
    space = TinySpace()
    return space, LatencyProfiler(space, (1, 3, 8, 8), device_model)


def _candidate_latency(profiler, label):
    (table,) = [t.table for t in profiler.terms if t.labels == (label,)]
    return table


def test_latency_gradient_has_the_expected_sign(tiny_profiler):
    _, profiler = tiny_profiler
    torch.manual_seed(0)
    logits = {label: torch.randn(len(values), requires_grad=True) for label, values in profiler.label_values.items()}
    expected = ExpectedLatency(profiler)
    latency = expected({label: torch.softmax(alpha, -1) for label, alpha in logits.items()})
    latency.backward()
    for label, alpha in logits.items():
        probs = torch.softmax(alpha, -1).detach().numpy()
        costs = _candidate_latency(profiler, label)
        # d E[LAT] / d alpha_i = p_i (LAT_i - E_layer[LAT]): raising a slower-than-average logit costs time.
        want = probs * (costs - probs @ costs)
        assert np.all(alpha.grad.numpy() != 0)
        assert np.allclose(alpha.grad.numpy(), want, rtol=1e-4, atol=1e-7)
        slowest, cheapest = int(np.argmax(costs)), int(np.argmin(costs))
        assert alpha.grad[slowest] > 0 > alpha.grad[cheapest]


def test_nni_penalty_gets_no_gradient_from_exported_floats(tiny_profiler):
    # What NNI 3.0's DartsLightningModule does: penalty(loss, self.export_probs()) with Python floats.
    _, profiler = tiny_profiler
    alpha = torch.zeros(3, requires_grad=True)
    floats = {label: dict(zip(values, torch.softmax(alpha, -1).tolist()))
              for label, values in profiler.label_values.items()}
    loss, _ = ExpectationProfilerPenalty(profiler, baseline=1.0, scale=10.0)(torch.tensor(1.0, requires_grad=True),
                                                                             floats)
    loss.backward()
    assert alpha.grad is None


@pytest.mark.parametrize("space_class", [TinySpace, DepthSpace], ids=["layerchoice", "repeat"])
def test_expected_latency_matches_nni_expectation(space_class, device_model):
    torch.manual_seed(0)
    profiler = LatencyProfiler(space_class(), (1, 3, 8, 8), device_model)
    rng = np.random.default_rng(0)
    probs = {}
    for label, values in profiler.label_values.items():
        weights = rng.random(len(values))
        probs[label] = dict(zip(values, weights / weights.sum()))
    ours = ExpectedLatency(profiler)(probs)
    assert float(ours) == pytest.approx(ExpectationProfilerPenalty(profiler, 1.0).profile(probs), rel=1e-5)


@pytest.mark.parametrize("mode, target, formula", [
    ("mul", None, lambda ce, lat, ref, tgt: ce * 0.5 * math.log1p(lat / ref) ** 0.6),
    ("add", None, lambda ce, lat, ref, tgt: ce + 0.5 * (lat / ref) ** 0.6),
    ("mul", "reachable", lambda ce, lat, ref, tgt: ce * (1 + 0.5 * (lat / tgt - 1) ** 0.6)),
    ("add", "reachable", lambda ce, lat, ref, tgt: ce + 0.5 * (lat / tgt - 1) ** 0.6),
    ("add", 1e6, lambda ce, lat, ref, tgt: ce),  # within budget: no penalty
], ids=["mul", "add", "mul-target", "add-target", "within-budget"])
def test_loss_formulas(mode, target, formula, tiny_profiler):
    _, profiler = tiny_profiler
    if target == "reachable":  # between the fastest architecture and the uniform expectation
        target = (fastest_latency([(t.labels, t.table) for t in profiler.terms])[0]
                  + profiler.uniform_expected_latency()) / 2
    loss_fn = FBNetLatencyLoss(profiler, alpha=0.5, beta=0.6, mode=mode, target_ms=target)
    uniform = {label: torch.full((len(values),), 1 / len(values), requires_grad=True)
               for label, values in profiler.label_values.items()}
    ce = torch.tensor(2.0, requires_grad=True)
    loss, details = loss_fn(ce, uniform)
    latency = float(details["latency_ms"])
    assert latency == pytest.approx(loss_fn.reference_ms, rel=1e-5)  # the default reference is the uniform LAT
    assert loss.item() == pytest.approx(formula(2.0, latency, loss_fn.reference_ms, target), rel=1e-5)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in uniform.values())


@pytest.mark.parametrize("reference_ms", [1e-4, 1.0, 1e4], ids=["tiny-latency", "unit", "huge-latency"])
def test_mul_mode_is_positive_and_increasing_for_any_latency(reference_ms, tiny_profiler):
    # FBNet's log(LAT) is negative below 1 ms; log(1 + LAT / reference) is positive for every latency.
    _, profiler = tiny_profiler
    loss_fn = FBNetLatencyLoss(profiler, alpha=0.2, beta=0.6, mode="mul", reference_ms=reference_ms)
    values = [float(loss_fn.latency_term(torch.tensor(latency))) for latency in (1e-3, 0.5, 2.0, 50.0)]
    assert all(v > 0 and math.isfinite(v) for v in values)
    assert values == sorted(values)


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "max"}, "unknown mode 'max'"),
    ({"beta": 0.0}, "beta must be > 0"),
    ({"alpha": -1.0}, "alpha must be >= 0"),
    ({"target_ms": -5.0}, "target_ms must be a positive"),
    ({"reference_ms": 0.0}, "reference latency 0.0 ms is not positive"),
], ids=["mode", "beta", "alpha", "target", "reference"])
def test_bad_loss_parameters(kwargs, match, tiny_profiler):
    with pytest.raises(ValueError, match=match):
        FBNetLatencyLoss(tiny_profiler[1], **kwargs)


def test_missing_label_probabilities(tiny_profiler):
    loss_fn = FBNetLatencyLoss(tiny_profiler[1])
    with pytest.raises(ValueError, match="probabilities lack label"):
        loss_fn(torch.tensor(1.0), {"layer0": torch.ones(3) / 3})
    with pytest.raises(ValueError, match=r"have shape \(2,\), expected \(3,\)"):
        loss_fn(torch.tensor(1.0), {f"layer{i}": torch.ones(2) / 2 for i in range(3)})


def test_fbnet_refuses_nni_penalties(tiny_profiler):
    with pytest.raises(ValueError, match="needs penalty=FBNetLatencyLoss"):
        FBNet(penalty=ExpectationProfilerPenalty(tiny_profiler[1], baseline=1.0))


# -- searches ---------------------------------------------------------------------------------------

def _search(space, strategy):
    """A few dozen architecture steps of a NasExperiment on random labels (nothing to learn but latency)."""
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "nni"):
        logging.getLogger(name).setLevel(logging.ERROR)
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(32, 3, 8, 8, generator=generator), torch.randint(0, 10, (32,), generator=generator)
    data = torch.utils.data.TensorDataset(images, labels)
    evaluator = Classification(train_dataloaders=DataLoader(data, batch_size=8),
                               val_dataloaders=DataLoader(data, batch_size=8), max_epochs=8, num_classes=10,
                               learning_rate=0.01, accelerator="cpu", enable_progress_bar=False, logger=False,
                               enable_checkpointing=False, enable_model_summary=False)
    NasExperiment(space, evaluator, strategy).run()
    logits = architecture_logits(strategy.oneshot_module.supernet_modules())
    return strategy.oneshot_module.export(), {k: torch.softmax(v, -1).detach() for k, v in logits.items()}


def _cheapest(profiler):
    return {label: values[int(np.argmin(_candidate_latency(profiler, label)))]
            for label, values in profiler.label_values.items()}


def test_fbnet_latency_search_ends_on_the_cheapest_candidates(device_model):
    torch.manual_seed(0)
    space = TinySpace()
    profiler = LatencyProfiler(space, (1, 3, 8, 8), device_model)
    strategy = FBNet(penalty=FBNetLatencyLoss(profiler, alpha=5.0, beta=0.6, mode="add"), arc_learning_rate=0.05)
    exported, probs = _search(space, strategy)
    assert exported == _cheapest(profiler)
    assert all(float(p.max()) > 0.6 for p in probs.values())


@pytest.mark.parametrize("scale", [5.0, 50.0])
def test_nni_expectation_penalty_does_not_steer_the_search(scale, device_model):
    # Same space, seed, data and architecture learning rate, NNI's own latency penalty: the exported
    # architecture ignores latency, and a 10x stronger penalty changes nothing (it has no gradient).
    torch.manual_seed(0)
    space = TinySpace()
    profiler = LatencyProfiler(space, (1, 3, 8, 8), device_model)
    penalty = ExpectationProfilerPenalty(profiler, baseline=profiler.uniform_expected_latency(), scale=scale)
    exported, _ = _search(space, GumbelDARTS(penalty=penalty, arc_learning_rate=0.05))
    assert exported != _cheapest(profiler)
    assert profiler.profile(exported) > profiler.profile(_cheapest(profiler))
