"""Coverage warnings: a batch size outside the profiled ones, or another thread count, warns once per model
and reason, saying how to profile for it; the profiled batch sizes are recorded when fitting."""

from __future__ import annotations

import warnings

import pytest

from nni_latency import CoverageWarning
from nni_latency.fit.fitting import fit_records
from nni_latency.model.coverage import batch_of, check_batch, check_threads, profiled_batches
from nni_latency.model.model import LatencyModel
from nni_latency.suite.blocks import BlockSpec


def _model(synthetic_model, **device) -> LatencyModel:
    return LatencyModel(synthetic_model.regressor, device={**synthetic_model.device, **device},
                        feature_ranges=synthetic_model.feature_ranges)


def _caught(action) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        action()
    return [str(w.message) for w in caught if issubclass(w.category, CoverageWarning)]


# (id, device fields, batch asked for, fragments of the warning or None when covered)
BATCHES = [
    ("inside_range", {"batches": [1, 2, 4]}, 3, None),
    ("edge", {"batches": [1, 2, 4]}, 4, None),
    ("above", {"batches": [1, 2, 4], "config": {"extra_batches": [2, 4]}}, 8,
     ["fitted at batches 1, 2, 4", "batch 8 lies outside", "`nni-latency profile --batches 1,2,4,8`"]),
    ("below", {"batch": 8, "batches": [8, 16]}, 1, ["batch 1 lies outside", "--batches 8,1,16`"]),
    ("older_model_uses_its_batch", {"batch": 1}, 2, ["fitted at batch 1;", "batch 2"]),
    ("cuda", {"type": "cuda", "device": "cuda", "batches": [1, 8]}, 32, ["nni-latency profile --device cuda --batches 1,8,32"]),
]


@pytest.mark.parametrize("device, batch, fragments", [c[1:] for c in BATCHES], ids=[c[0] for c in BATCHES])
def test_batch_coverage(synthetic_model, device, batch, fragments):
    model = _model(synthetic_model, **device)
    messages = _caught(lambda: check_batch(model, batch))
    if fragments is None:
        assert messages == []
    else:
        assert len(messages) == 1 and all(f in messages[0] for f in fragments), messages


def test_predict_module_warns_once_per_model(synthetic_model):
    spec = BlockSpec("conv_bn_relu", 8, 8, 7)
    block = spec.build(seed=0)
    model = _model(synthetic_model, batches=[1])
    messages = _caught(lambda: [model.predict_module(block, (b, 8, 7, 7)) for b in (1, 4, 8, 4)])
    assert len(messages) == 1 and "batch 4 lies outside" in messages[0]
    other = _model(synthetic_model, batches=[1])  # another model warns on its own
    assert len(_caught(lambda: other.predict_module(block, (4, 8, 7, 7)))) == 1


def test_thread_coverage_says_how_to_profile(synthetic_model):
    model = _model(synthetic_model)
    assert _caught(lambda: check_threads(model, 1)) == [] and _caught(lambda: check_threads(model, None)) == []
    messages = _caught(lambda: (check_threads(model, 2), check_threads(model, 4)))
    assert len(messages) == 1 and "profiled at 1 thread(s), this measures at 2" in messages[0]
    assert "`nni-latency profile --threads 2`" in messages[0]


def test_a_model_that_does_not_say_how_it_was_measured_is_not_checked(synthetic_model):
    bare = LatencyModel(synthetic_model.regressor)
    assert profiled_batches(bare) is None
    assert _caught(lambda: (check_batch(bare, 64), check_threads(bare, 8))) == []


def test_fit_records_records_the_profiled_batches(synthetic_dataset):
    specs, rows, latencies = synthetic_dataset
    batches = [1, 2, 4]
    records = [{"key": f"r{i}", "spec": {"batch": batches[i % 3]}, "features": row.as_dict(), "latency_ms": latency}
               for i, (row, latency) in enumerate(zip(rows, latencies))]
    records[0] = {**records[0], "spec": {"family": "chain", "blocks": [{"batch": 8}, {"batch": 8}]}}
    records[1] = {**records[1], "spec": None, "batch": 16}  # no block spec: the protocol's batch
    device = {"name": "synthetic", "batch": 1}
    model = fit_records(records, "relative_linear", device=device)
    assert model.device["batches"] == [1, 2, 4, 8, 16] and profiled_batches(model) == [1, 2, 4, 8, 16]
    assert "batches" not in device  # the caller's dict is left alone


@pytest.mark.parametrize("shape, batch", [((8, 3, 32, 32), 8), ([(2, 16), (2, 16)], 2), ((), None)],
                         ids=["one_input", "several_inputs", "empty"])
def test_batch_of(shape, batch):
    assert batch_of(shape) == batch
