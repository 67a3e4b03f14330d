"""Costing each operator from its own measurements: the operator table's per-call features against hand formulas,
the per-class fit against synthetic data with known coefficients, in-place op timing, and the one prediction path."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from nni_latency.model.model import LatencyModel, features_matrix
from nni_latency.model.regressors import MIN_OP_ROWS, OperatorCostModel
from nni_latency.rows.ops import op_rows, op_sum_ratios
from nni_latency.rows.store import combined_rows
from nni_latency.runtimes.protocol import Counting, MeasurementProtocol
from nni_latency.runtimes.torch.clock import time_ops
from nni_latency.runtimes.torch.counting import extract_features
from nni_latency.runtimes.torch.operators import FEATURE_NAMES, OP_CLASSES, OP_FEATURE_NAMES, OVERHEAD_FEATURES

COUNTING = Counting(vector_width=16, threads=1, l2_kb=1024, llc_kb=32768)


class _Transposed(nn.Module):
    """Tokens (B, N, C) made an NCHW map by a transposing copy, as PVTv2 does before its depthwise conv."""

    def forward(self, x):
        return x.transpose(1, 2).contiguous()


class _Attention(nn.Module):
    """Attention written out: Q K^T, softmax over the keys, then the weighted sum of V."""

    def forward(self, q):
        scores = torch.bmm(q, q.transpose(1, 2))
        return torch.bmm(scores.softmax(-1), q)


# module, input shape -> [(class, {feature: expected})] for each aten call that does work, in order
CASES = {
    "depthwise_3x3": (nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), (1, 32, 8, 8), [
        ("conv_depthwise", {"calls": 1, "vflops": 2 * 64 * 32 * 9, "elements": 2 * 32 * 64, "stream": 0,
                            "copied": 0})]),
    "depthwise_24ch_padded_to_32": (nn.Conv2d(24, 24, 3, padding=1, groups=24, bias=False), (1, 24, 4, 4), [
        ("conv_depthwise", {"vflops": 2 * 16 * 32 * 9, "elements": 2 * 24 * 16})]),
    "grouped_4_per_group": (nn.Conv2d(32, 32, 3, padding=1, groups=8, bias=False), (1, 32, 8, 8), [
        ("conv_grouped", {"calls": 1, "vflops": 2 * 64 * 8 * 4 * 16 * 9})]),
    "linear_streams_weights_beyond_the_llc": (nn.Linear(4096, 4096), (1, 4096), [
        ("addmm", {"calls": 1, "vflops": 2 * 4096 * 4096, "stream": 4096 * 4096 - 32768 * 256,
                   "elements": 4096 + 4096, "weights": 4096 * 4096})]),
    "bias_free_linear_is_mm": (nn.Linear(64, 32, bias=False), (4, 64), [
        ("mm", {"calls": 1, "vflops": 2 * 4 * 64 * 32, "stream": 0})]),
    "relu_inplace": (nn.ReLU(inplace=True), (1, 8, 4, 4), [("inplace", {"calls": 1, "elements": 2 * 128})]),
    "relu_out_of_place": (nn.ReLU(), (1, 8, 4, 4), [("simple", {"calls": 1, "elements": 2 * 128})]),
    "batch_norm": (nn.BatchNorm2d(8).eval(), (1, 8, 4, 4), [("batch_norm", {"calls": 1, "elements": 2 * 128})]),
    "maxpool_3x3_s2": (nn.MaxPool2d(3, 2, 1), (1, 4, 8, 8), [
        ("maxpool", {"calls": 1, "work": 4 * 4 * 4 * 9, "elements": 4 * 64 + 4 * 16})]),
    "transposing_copy": (_Transposed(), (1, 16, 8), [("transpose_copy", {"calls": 1, "elements": 2 * 128})]),
    "attention_written_out": (_Attention(), (2, 16, 8), [
        ("bmm", {"calls": 1, "vflops": 2 * 2 * 16 * 16 * 16}), ("softmax", {"calls": 1, "elements": 2 * 2 * 256}),
        ("bmm", {"calls": 1, "vflops": 2 * 2 * 16 * 16 * 16})]),
}


@pytest.mark.parametrize("module,shape,expected", CASES.values(), ids=CASES.keys())
def test_each_call_gets_its_class_and_features_by_hand(module, shape, expected):
    torch.manual_seed(0)
    features = extract_features(module, shape, COUNTING)
    assert [record.cls for record in features.ops] == [cls for cls, _ in expected]
    for record, (cls, values) in zip(features.ops, expected):
        assert set(record.features) == set(OP_CLASSES[cls].features)
        for name, value in values.items():
            assert record.features[name] == pytest.approx(value), (cls, name)
    # The block's op-class features are the sums of its calls'.
    for cls in {cls for cls, _ in expected}:
        for name in OP_CLASSES[cls].features:
            total = sum(r.features[name] for r in features.ops if r.cls == cls)
            assert features[f"{cls}.{name}"] == pytest.approx(total)
    assert features["overhead.ops"] == len(expected)


def test_every_feature_a_call_adds_is_one_the_table_documents():
    """A handler that adds a feature the table does not declare (a typo, a class without its row) would be priced
    by no model: every feature any of these calls adds must have a doc, and a role its name implies."""
    from nni_latency.runtimes.torch.operators import FEATURE_DOCS, FEATURE_ROLES

    for module, shape, _ in CASES.values():
        for record in extract_features(module, shape, COUNTING).ops:
            assert set(record.adds) <= set(FEATURE_DOCS), set(record.adds) - set(FEATURE_DOCS)
            for name in record.adds:
                expected = ("compute" if name.endswith(("flops", "vflops")) else
                            "overhead" if name.startswith("overhead.") or name.endswith((".calls", "_ops", "convs")) else
                            None)
                assert expected is None or FEATURE_ROLES[name] == expected, name


def test_modules_and_free_calls_are_counted():
    block = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    features = extract_features(block, (1, 4, 2, 2), COUNTING)
    assert features["overhead.modules"] == 3  # the Sequential, Flatten and Linear
    assert features["overhead.free_ops"] >= 2  # flatten's view and the weight's transpose


# --- the per-class fit, on synthetic calls with known costs ---------------------------------------------------

TRUE = {
    "conv_depthwise": {"calls": 0.004, "vflops": 3e-9, "elements": 2e-7},
    "conv_pointwise": {"calls": 0.006, "vflops": 1e-9, "elements": 1e-7},
    "batch_norm": {"calls": 0.002, "elements": 4e-7, "beyond_l2": 1e-7},
    "inplace": {"calls": 0.001, "elements": 1e-7},
}
OVERHEAD = {"overhead.ops": 0.003, "overhead.free_ops": 0.0005, "overhead.modules": 0.002}


def _synthetic_blocks(count=40, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for index in range(count):
        ops, totals = [], dict.fromkeys(OP_FEATURE_NAMES, 0.0)
        for cls, weights in TRUE.items():
            for _ in range(rng.integers(1, 3)):
                values = {name: 1.0 if name == "calls" else float(rng.uniform(1e4, 1e7))
                          for name in OP_CLASSES[cls].features}
                values = {name: values[name] if name in weights else 0.0 for name in values} | {"calls": 1.0}
                ms = sum(weights[name] * values[name] for name in weights)
                ops.append(["op", cls, ms, values])
                for name, value in values.items():
                    totals[f"{cls}.{name}"] += value
        totals["overhead.ops"] = float(len(ops))
        totals["overhead.free_ops"] = float(rng.integers(0, 6))
        totals["overhead.modules"] = float(rng.integers(1, 8))
        latency = sum(op[2] for op in ops) + sum(OVERHEAD[name] * totals[name] for name in OVERHEAD)
        records.append({"key": f"b{index}", "features": totals, "latency_ms": latency, "ops": ops})
    return records


def test_each_class_recovers_its_own_costs_and_the_overheads_come_from_the_block_totals():
    records = _synthetic_blocks()
    X = features_matrix([r["features"] for r in records], OP_FEATURE_NAMES)
    y = np.array([r["latency_ms"] for r in records])
    model = OperatorCostModel().fit_ops(op_rows(records, OP_CLASSES), X, y)
    weights = model.get_state()["weights"]
    for cls, truth in TRUE.items():
        for name in OP_CLASSES[cls].features:
            assert weights[f"{cls}.{name}"] == pytest.approx(truth.get(name, 0.0), rel=1e-6, abs=1e-12), (cls, name)
    for name, value in OVERHEAD.items():
        assert weights[name] == pytest.approx(value, rel=1e-6)
    np.testing.assert_allclose(model.predict(X), y, rtol=1e-6)
    assert model.sources_["conv_depthwise"].endswith("calls")


def test_a_class_without_calls_borrows_its_fallbacks_weights():
    records = _synthetic_blocks()
    X = features_matrix([r["features"] for r in records], OP_FEATURE_NAMES)
    model = OperatorCostModel().fit_ops(op_rows(records, OP_CLASSES), X, [r["latency_ms"] for r in records])
    weights = model.get_state()["weights"]
    assert model.sources_["simple"] == "as inplace"
    assert model.sources_["conv_grouped"] == "as conv_pointwise"  # conv_dense has no calls either: next in line
    assert model.sources_["conv_dense"] == "as conv_pointwise"
    assert weights["conv_dense.vflops"] == weights["conv_pointwise.vflops"]
    assert model.sources_["conv_gemm"] == "as conv_pointwise"
    assert weights["conv_gemm.flops"] == weights["conv_pointwise.vflops"]  # FLOPs read as padded FLOPs
    assert model.sources_["transcendental"] == "as inplace"  # simple has no calls either: next in line
    assert model.sources_["maxpool"] == "as inplace"  # avgpool, reduce and simple have none: next in line


def test_too_few_calls_of_a_class_do_not_get_weights_of_their_own():
    records = _synthetic_blocks(count=2)
    X = features_matrix([r["features"] for r in records], OP_FEATURE_NAMES)
    rows = {cls: (f[:MIN_OP_ROWS - 1], t[:MIN_OP_ROWS - 1]) for cls, (f, t) in op_rows(records, OP_CLASSES).items()}
    model = OperatorCostModel()
    model.min_points = 1
    model.fit_ops(rows, X, [r["latency_ms"] for r in records])
    assert not any(source.endswith("calls") for source in model.sources_.values())


def test_the_op_model_round_trips_through_json(tmp_path):
    records = _synthetic_blocks()
    X = features_matrix([r["features"] for r in records], OP_FEATURE_NAMES)
    regressor = OperatorCostModel().fit_ops(op_rows(records, OP_CLASSES), X, [r["latency_ms"] for r in records])
    model = LatencyModel(regressor, device=MeasurementProtocol().to_dict())
    model.save(tmp_path / "m.json")
    loaded = LatencyModel.load(tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text())["kind"] == "op_linear"
    np.testing.assert_allclose(loaded.predict([r["features"] for r in records]),
                               model.predict([r["features"] for r in records]))
    assert loaded.regressor.sources_ == regressor.sources_


def test_rounds_merge_their_op_times_by_the_median():
    row = {"key": "b", "latency_ms": 1.0, "times_ms": [1.0], "number_per_run": 1, "features": {}, "quantile": 0.5,
           "protocol": "rotate", "copies": 1}
    rounds = [{**row, "round": r, "ops": [["convolution", "conv_dense", ms, {"calls": 1}]]}
              for r, ms in enumerate((0.5, 0.7, 0.6))]
    (combined,) = combined_rows(rounds)
    assert combined["ops"][0][2] == pytest.approx(0.6)
    assert op_sum_ratios([combined]) == pytest.approx([0.6])


# --- timing in place -------------------------------------------------------------------------------------------

def test_in_place_times_follow_the_counted_calls_and_leave_the_module_alone():
    block = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU6(inplace=True),
                          nn.Conv2d(16, 16, 3, padding=1, groups=16)).train()
    before = {name: t.clone() for name, t in block.state_dict().items()}
    threads = torch.get_num_threads()
    protocol = MeasurementProtocol(allocator="default", protocol="hot")
    timed = time_ops(block, (1, 8, 8, 8), protocol, passes=5)
    counted = extract_features(block, (1, 8, 8, 8), protocol.counting)
    assert list(timed.ops) == [record.op for record in counted.ops]
    assert all(ms >= 0 for ms in timed.ms) and timed.overhead_ms > 0 and timed.passes == 5
    assert block.training and torch.get_num_threads() == threads
    assert all(torch.equal(before[name], t) for name, t in block.state_dict().items())


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x.relu() if self.calls % 2 else x.sigmoid() * 2


def test_calls_that_change_from_pass_to_pass_give_no_op_times():
    assert time_ops(_Branchy(), (1, 4), MeasurementProtocol(allocator="default", protocol="hot"), passes=4) is None


# --- one prediction path ---------------------------------------------------------------------------------------

def test_predict_module_counts_as_the_model_does(fitted_model):
    block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    counted = fitted_model.count(block, (1, 8, 16, 16))
    assert counted == extract_features(block, (1, 8, 16, 16), fitted_model.counting)
    assert fitted_model.predict_module(block, (1, 8, 16, 16)) == fitted_model.predict_one(counted)


@pytest.fixture
def fitted_model():
    records = _synthetic_blocks()
    X = features_matrix([r["features"] for r in records], OP_FEATURE_NAMES)
    regressor = OperatorCostModel().fit_ops(op_rows(records, OP_CLASSES), X, [r["latency_ms"] for r in records])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LatencyModel(regressor, device={**MeasurementProtocol().to_dict(), "name": "test", "batches": [1]})


def test_the_predict_command_and_predict_module_agree_in_number_and_warnings(fitted_model, tmp_path):
    import contextlib
    import io
    import re

    from nni_latency.cli.dispatch import main
    from nni_latency.model.coverage import CoverageWarning

    path = tmp_path / "model.json"
    fitted_model.save(path)
    network = tmp_path / "net.py"
    network.write_text("from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())\n")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["predict", f"{network}:build", "--input-shape", "4,3,16,16", "--model", str(path)]) == 0
    printed = float(re.search(r"([0-9.]+) ms predicted", out.getvalue()).group(1))
    assert "fitted at batch 1; batch 4 lies outside" in err.getvalue()
    model = LatencyModel.load(path)
    with pytest.warns(CoverageWarning, match="batch 4 lies outside"):
        direct = model.predict_module(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), (4, 3, 16, 16))
    assert printed == pytest.approx(direct, abs=5e-5)


def test_a_profile_whose_ops_do_not_add_up_says_so():
    from nni_latency.profile.run import op_check
    from nni_latency.profile.summary import format_profile_summary

    records = _synthetic_blocks(count=20)
    assert op_check(records)["consistent"]  # synthetic ops add up to their block but for the overheads
    for record in records[:4]:  # a fifth of the blocks: their calls account for a third of their time
        record["ops"] = [[op, cls, ms / 3, f] for op, cls, ms, f in record["ops"]]
    check = op_check(records)
    assert not check["consistent"] and check["outside_share"] >= 0.2
    X = features_matrix([r["features"] for r in records], OP_FEATURE_NAMES)
    regressor = OperatorCostModel().fit_ops(op_rows(records, OP_CLASSES), X, [r["latency_ms"] for r in records])
    model = LatencyModel(regressor, device={**MeasurementProtocol().to_dict(), "name": "test", "op_sums": check})
    summary = format_profile_summary(model, records)
    line = next(line for line in summary.splitlines() if line.startswith("operators timed in place"))
    assert "do not add up" in line and "quiet machine" in line


def test_an_unknown_operator_is_data_movement_with_one_warning():
    from nni_latency.count.features import UncoveredOperatorWarning

    class Odd(nn.Module):
        def forward(self, x):
            return torch.special.bessel_j0(x)

    with pytest.warns(UncoveredOperatorWarning, match=r"aten\.special_bessel_j0.*Odd"):
        features = extract_features(Odd(), (1, 4, 4), COUNTING)
    assert [record.cls for record in features.ops] == ["move"]


POOL_CASES = {
    "stem_3x3_s2": (nn.MaxPool2d(3, 2, 1), (1, 4, 8, 8), 4 * 4 * 4 * 9),
    "kernel_larger_than_the_map": (nn.AvgPool2d(1280, ceil_mode=True), (1, 8, 7, 7), 8 * 1 * 1 * 49),
    "padded_map": (nn.AvgPool2d(16, padding=1, ceil_mode=True), (1, 2, 5, 5), 2 * 1 * 1 * 49),
}


@pytest.mark.parametrize("module,shape,work", POOL_CASES.values(), ids=POOL_CASES.keys())
def test_a_pooling_window_reads_no_more_than_its_padded_input(module, shape, work):
    features = extract_features(module, shape, COUNTING)
    (record,) = features.ops
    assert record.features["work"] == work
    assert features["maxpool_work"] + features["avgpool_work"] == work
