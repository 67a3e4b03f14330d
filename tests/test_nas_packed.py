"""The packed loss step (``ExpectedLatency.from_logits``: one softmax over every plain label) gives the expected latency
and gradients of the per-label path (``forward`` on per-label softmaxes), on plain labels, DARTS cells and loose ends."""

from __future__ import annotations

import copy

import pytest
import torch

from nni_latency.nas import FBNetLatencyLoss, LatencyDARTS, LatencyProfiler
from nni_latency.nas.loss import ExpectedLatency
from nni_latency.nas.strategy import architecture_joints, architecture_logits, architecture_probs
from nni_latency.spaces import FBNetSpace
from nni_latency.spaces.hub import build_space

pytestmark = pytest.mark.filterwarnings("ignore::nni_latency.model.model.OutOfRangeWarning", "ignore::UserWarning")


def _random_logits(expected: ExpectedLatency, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {label: torch.randn(len(expected._candidates(label)), generator=generator, dtype=torch.float64,
                               requires_grad=True) for label in expected.required}


def _gradients(value: torch.Tensor, tensors) -> list[torch.Tensor]:
    return list(torch.autograd.grad(value, list(tensors)))


def test_packed_equals_per_label_on_plain_labels(synthetic_model):
    torch.manual_seed(0)
    space = FBNetSpace(num_classes=10, input_size=32, width_mult=0.25, depth_mult=0.25)
    expected = ExpectedLatency(LatencyProfiler(space, (1, 3, 32, 32), synthetic_model))
    logits = _random_logits(expected, 0)
    packed = expected.from_logits(logits)
    reference = expected({label: torch.softmax(logit, 0) for label, logit in logits.items()})
    assert float(packed) == pytest.approx(float(reference), rel=1e-12)
    for a, b in zip(_gradients(packed, logits.values()), _gradients(reference, logits.values())):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["darts", "nasnet"])
def test_packed_equals_per_label_on_darts_cells(name, synthetic_model):
    torch.manual_seed(0)
    space = build_space(name, 8, 10, width=4, num_cells=3)
    profiler = LatencyProfiler(space, (1, 3, 8, 8), synthetic_model)
    loss = FBNetLatencyLoss(profiler, alpha=1.0, mode="add")
    supernet = LatencyDARTS(penalty=loss).mutate_model(copy.deepcopy(space))
    for parameter in architecture_logits(supernet.modules()).values():
        torch.nn.init.normal_(parameter)
    modules = list(supernet.modules())
    logits = architecture_logits(modules)
    packed = loss.expected_latency.from_logits(logits, architecture_joints(modules))
    reference = loss.expected_latency(architecture_probs(modules))
    assert float(packed) == pytest.approx(float(reference), rel=1e-6)
    for a, b in zip(_gradients(packed, logits.values()), _gradients(reference, logits.values())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_packed_refuses_missing_and_misshapen_logits(synthetic_model):
    torch.manual_seed(0)
    space = FBNetSpace(num_classes=10, input_size=32, width_mult=0.25, depth_mult=0.25)
    expected = ExpectedLatency(LatencyProfiler(space, (1, 3, 32, 32), synthetic_model))
    logits = _random_logits(expected, 0)
    first = next(iter(logits))
    with pytest.raises(ValueError, match=f"logits lack label\\(s\\) {first}"):
        expected.from_logits({label: v for label, v in logits.items() if label != first})
    with pytest.raises(ValueError, match=f"logits for '{first}' have shape \\(2,\\)"):
        expected.from_logits({**logits, first: torch.zeros(2)})
