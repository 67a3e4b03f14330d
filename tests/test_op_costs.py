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


class _Gather(nn.Module):
    """A gather by a precomputed index, then an add: ``embedding(table, ids)``, ``x.index_select(1, ids)`` or
    Swin's ``table[index]`` (advanced indexing)."""

    def __init__(self, how: str, rows: int, ids: list[int]):
        super().__init__()
        self.how, self.table = how, nn.Embedding(rows, 2) if how == "embedding" else None
        self.register_buffer("ids", torch.tensor(ids))
        self.register_buffer("rows", torch.arange(rows * 2.0).view(rows, 2))

    def forward(self, x):
        if self.how == "embedding":
            return self.table(self.ids) + x
        if self.how == "index_select":
            return x.index_select(1, self.ids)
        return self.rows[self.ids] + x


class _Copy(nn.Module):
    """``x (1, 16, 64)`` split into heads of ``dim`` values made contiguous (a head split), or ``x`` transposed and
    concatenated with itself (CoaT's class token before strided tokens)."""

    def __init__(self, dim: int = 0):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        if self.dim:
            return x.view(1, 16, 64 // self.dim, self.dim).transpose(1, 2).contiguous()
        tokens = x.transpose(1, 2)
        return torch.cat((tokens, tokens), dim=2)


# Issue 28: calls beyond CNN classification, each a class of its own (expected features by hand).
CASES |= {
    # oneDNN deconvolution: positions are the input's; vflops = 2 x 64 x 16 x 16 x 16; nothing folded
    "conv_transposed_onednn": (nn.ConvTranspose2d(16, 8, 4, 2, 1), (1, 16, 8, 8), [
        ("conv_transposed", {"calls": 1, "vflops": 2 * 64 * 16 * 16 * 16, "im2col": 0, "elements": 16 * 64 + 8 * 256,
                             "weights": 16 * 8 * 16})]),
    # ATen's transposed path: a GEMM into 49 positions x 16 x 4 columns, folded by col2im
    "conv_transposed_aten": (nn.ConvTranspose2d(32, 16, 2, 2), (1, 32, 7, 7), [
        ("conv_transposed", {"vflops": 2 * 49 * 32 * 16 * 4, "im2col": 49 * 16 * 4, "elements": 32 * 49 + 16 * 196})]),
    # vol2col: 256 positions x 8 channels x 27 taps; FLOPs = 2 x 16 x 256 outputs x 8 x 27
    "conv3d_vol2col": (nn.Conv3d(8, 16, 3, padding=1), (1, 8, 4, 8, 8), [
        ("conv_gemm_3d", {"calls": 1, "flops": 2 * 16 * 256 * 8 * 27, "im2col": 256 * 8 * 27,
                          "elements": 8 * 256 + 16 * 256, "weights": 16 * 8 * 27})]),
    "depthwise_3d": (nn.Conv3d(32, 32, 3, padding=1, groups=32), (1, 32, 4, 8, 8), [
        ("conv_depthwise_3d", {"calls": 1, "vflops": 2 * 256 * 32 * 27, "elements": 2 * 32 * 256})]),
    # padding 8 > 6: oneDNN runs it as a GEMM per channel
    "depthwise_dilated_8": (nn.Conv2d(32, 32, 3, padding=8, dilation=8, groups=32), (1, 32, 20, 20), [
        ("conv_depthwise_gemm", {"calls": 1, "vflops": 2 * 400 * 32 * 9, "elements": 2 * 32 * 400})]),
    "depthwise_1d_kernel_15": (nn.Conv1d(16, 16, 15, padding=7, groups=16), (1, 16, 64), [
        ("conv_depthwise_gemm", {"vflops": 2 * 64 * 16 * 15, "elements": 2 * 16 * 64})]),
    # padding 6 = the dilated reach: oneDNN's depthwise kernel still takes it
    "depthwise_dilated_6": (nn.Conv2d(32, 32, 3, padding=6, dilation=6, groups=32), (1, 32, 20, 20), [
        ("conv_depthwise", {"vflops": 2 * 400 * 32 * 9})]),
    # LSTM, 3 steps of 4 inputs, 8 hidden: FLOPs = 4 gates x (4 + 8) x 8 x 2 x 3; weights read = 32 x 4 + 3 x 32 x 8;
    # then its final states stacked (h, c)
    "lstm_one_layer": (nn.LSTM(4, 8), (3, 1, 4), [
        ("rnn", {"calls": 1, "steps": 3, "flops": 2 * 3 * 32 * 12, "weights": 32 * 4 + 3 * 32 * 8,
                 "elements": 3 * 4 + 3 * 8}), ("move", {"elements": 8 + 8}), ("move", {"elements": 8 + 8})]),
    # batch first, 2 layers: a batch of 2 made time-major (a transposing copy: runs of 4 inputs), 5 steps; the second
    # layer's input is the first one's 8 outputs
    "lstm_two_layers_batch_first": (nn.LSTM(4, 8, 2, batch_first=True), (2, 5, 4), [
        ("transpose_copy", {"elements": 2 * 40}),
        ("rnn", {"steps": 5, "flops": 2 * 5 * 2 * 32 * 12, "weights": 32 * 4 + 5 * 32 * 8, "elements": 40 + 80}),
        ("rnn", {"steps": 5, "flops": 2 * 5 * 2 * 32 * 16, "weights": 32 * 8 + 5 * 32 * 8, "elements": 80 + 80}),
        ("move", {"elements": 2 * 32}), ("move", {"elements": 2 * 32})]),
    # gathered = the rows read by index; elements = the index + the rows read and written (not the table)
    "embedding": (_Gather("embedding", 100, [3, 1, 4, 1, 5]), (5, 2), [
        ("gather", {"calls": 1, "gathered": 10, "elements": 5 + 2 * 10}), ("simple", {"elements": 30})]),
    "index_select": (_Gather("index_select", 6, [0, 2, 4]), (1, 6, 4), [
        ("gather", {"gathered": 12, "elements": 3 + 2 * 12})]),
    "relative_position_bias": (_Gather("index", 9, [8, 0, 4, 4, 2, 6]), (6, 2), [
        ("index", {"calls": 1, "gathered": 12, "elements": 6 + 2 * 12}), ("simple", {"elements": 36})]),
    "upsample_nearest": (nn.Upsample(scale_factor=2), (1, 4, 3, 3), [
        ("upsample_nearest", {"calls": 1, "elements": 36 + 144})]),
    # work = outputs x taps: 4 for bilinear, 16 for bicubic, 2 for linear (1-D)
    "upsample_bilinear": (nn.Upsample(scale_factor=2, mode="bilinear"), (1, 4, 3, 3), [
        ("upsample_linear", {"calls": 1, "work": 144 * 4, "elements": 36 + 144})]),
    "upsample_bicubic": (nn.Upsample(scale_factor=2, mode="bicubic"), (1, 4, 3, 3), [
        ("upsample_linear", {"work": 144 * 16})]),
    "upsample_linear_1d": (nn.Upsample(scale_factor=2, mode="linear"), (1, 2, 5), [
        ("upsample_linear", {"work": 20 * 2, "elements": 10 + 20})]),
    # input 128, weight and bias 8 each; output 128 and a mean and rstd per group
    "group_norm": (nn.GroupNorm(2, 8), (1, 8, 4, 4), [("group_norm", {"calls": 1, "elements": 144 + 132})]),
    # instance norm: its affine parameters tiled per sample, then batch norm computing its statistics
    "instance_norm": (nn.InstanceNorm2d(8, affine=True), (1, 8, 4, 4), [
        ("move", {"elements": 16}), ("move", {"elements": 16}), ("instance_norm", {"calls": 1, "elements": 256})]),
    "pixel_shuffle": (nn.PixelShuffle(2), (1, 8, 3, 3), [("transpose_copy", {"calls": 1, "elements": 144})]),
    "cat_of_transposed_tokens": (_Copy(), (1, 5, 4), [("transpose_copy", {"elements": 20 + 20 + 40})]),
    "head_split_runs_of_8": (_Copy(8), (1, 16, 64), [("transpose_copy", {"elements": 2 * 1024})]),
    "head_split_runs_of_32": (_Copy(32), (1, 16, 64), [("move", {"elements": 2 * 1024})]),
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


@pytest.mark.parametrize("load, fragment", [
    (None, "on a quiet host this is the op-level clock (every aten call timed in place, the clock's own cost "
           "removed), not the load"),
    ({"other_cpu_share": 0.0, "steal_share": 0.0, "window_s": 60.0}, "on a quiet host this is the op-level clock"),
    ({"other_cpu_share": 0.8, "steal_share": 0.0, "window_s": 60.0}, "profile again when the machine is quiet"),
], ids=["unknown_load", "quiet_host", "busy_host"])
def test_a_profile_whose_ops_do_not_add_up_says_what_and_blames_the_host_only_when_it_was_busy(load, fragment):
    from nni_latency.profile.summary import format_profile_summary
    from nni_latency.rows.ops import op_check

    records = _synthetic_blocks(count=20)
    X = features_matrix([r["features"] for r in records], OP_FEATURE_NAMES)
    regressor = OperatorCostModel().fit_ops(op_rows(records, OP_CLASSES), X, [r["latency_ms"] for r in records])
    model = LatencyModel(regressor, device={**MeasurementProtocol().to_dict(), "name": "test"})
    assert op_check(records, model)["consistent"]  # the synthetic calls plus the fitted overheads are the block
    for record in records[:4]:  # a fifth of the blocks: their calls account for a third of their time
        record["ops"] = [[op, cls, ms / 3, f] for op, cls, ms, f in record["ops"]]
    check = op_check(records, model)
    assert not check["consistent"] and check["outside_share"] >= 0.2 and check["families"]
    model.device.update(op_sums=check, **({"host_load": load} if load else {}))
    line = next(line for line in format_profile_summary(model, records).splitlines()
                if line.startswith("operators timed in place"))
    assert fragment in line and "\n" not in line


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


# oneDNN's depthwise kernel, as ONEDNN_VERBOSE shows it on 971 shapes: (kernel, dilation, padding, size) -> turned down
DEPTHWISE_KERNEL = {
    "3x3_same": (3, 1, 1, 28, False),
    "3x3_dilation_6_same": (3, 6, 6, 28, False),
    "3x3_dilation_7_same": (3, 7, 7, 28, True),  # padding 7 > 6
    "padding_beyond_the_reach": (3, 1, 6, 28, True),  # padding 6 > (3 - 1) x 1
    "13_wide_same": (13, 1, 6, 28, False),
    "15_wide_same": (15, 1, 7, 28, True),
    "reach_beyond_the_padded_input": (7, 8, 5, 40, True),  # (7 - 1) x 8 = 48 > 40 + 5
}


@pytest.mark.parametrize("kernel,dilation,padding,size,refused", DEPTHWISE_KERNEL.values(), ids=DEPTHWISE_KERNEL.keys())
def test_the_depthwise_kernel_turns_down_what_onednn_does(kernel, dilation, padding, size, refused):
    from nni_latency.runtimes.torch.operators import depthwise_kernel_refuses

    x, weight = torch.empty(1, 8, size, size), torch.empty(8, 1, kernel, kernel)
    assert depthwise_kernel_refuses(x, weight, [padding], [dilation]) == refused
    conv = nn.Conv2d(8, 8, kernel, padding=padding, dilation=dilation, groups=8)
    (record,) = extract_features(conv, (1, 8, size, size), COUNTING).ops
    assert record.cls == ("conv_depthwise_gemm" if refused else "conv_depthwise")


def test_the_lower_bound_of_uncovered_calls_is_their_elements_at_the_cheapest_memory_cost():
    from nni_latency.count.features import UncoveredUse, uncovered_floor_ms

    uses = {"aten.cummax": UncoveredUse(2, 600.0, ("a",)), "aten.sort": UncoveredUse(1, 400.0, ("b",))}
    weights = {"move.elements": 4e-8, "inplace.elements": 2e-8, "elements_norm": 0.0,  # 0: not a fitted cost
               "conv_dense.vflops": 1e-12, "conv_dense.elements": 1e-9,  # a class with arithmetic: not memory-bound
               "move.calls": 1e-3, "overhead.ops": 1e-3}  # not per element moved
    assert uncovered_floor_ms(uses, weights) == pytest.approx(2e-8 * 1000)
    assert uncovered_floor_ms(uses, {"elements_move": 3e-8, "elements_simple": 5e-8}) == pytest.approx(3e-8 * 1000)
    assert uncovered_floor_ms(uses, {"move.calls": 1e-3}) == 0.0


def test_the_warning_gives_the_share_of_the_predicted_time_when_priced():
    from nni_latency.count.features import UncoveredOperatorWarning, UncoveredUse, warn_uncovered

    uses = {"aten.cummax": UncoveredUse(3, 1200.0, ("net.a (Scan)", "net.b (Scan)"))}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_uncovered(uses, floor_ms=0.5, predicted_ms=10.0)
        warn_uncovered(uses, floor_ms=0.5, predicted_ms=10.0)  # named once in a context
    (message,) = [str(w.message) for w in caught if issubclass(w.category, UncoveredOperatorWarning)]
    assert "aten.cummax (3 calls, 1.2e+03 elements, in module 'net.a (Scan)' and 1 other module(s))" in message
    assert "at least 5% of the predicted 10 ms" in message


def test_a_model_that_counts_a_pass_prices_its_uncovered_calls_in_the_one_warning(fitted_model):
    import re

    from nni_latency.count.features import UncoveredOperatorWarning, pricing_uncovered

    class Scan(nn.Module):
        def forward(self, x):  # cummax: 48 elements in, 48 values and 48 indices out
            return torch.cummax(x, dim=-1)[0].relu()

    weights = fitted_model.regressor.get_state()["weights"]  # the synthetic fit: batch_norm's and inplace's
    cheapest = min(weights["batch_norm.elements"], weights["inplace.elements"])
    with warnings.catch_warnings(record=True) as caught, pricing_uncovered(fitted_model):
        warnings.simplefilter("always")
        features = extract_features(Scan(), (1, 48), fitted_model.counting)
    (message,) = [str(w.message) for w in caught if issubclass(w.category, UncoveredOperatorWarning)]
    predicted = fitted_model.predict_one(features)
    share = float(re.search(r"at least ([0-9.e+-]+)% of the predicted ([0-9.e+-]+) ms", message).group(1))
    assert share == pytest.approx(100 * cheapest * 144 / predicted, rel=0.05)
    assert "aten.cummax (1 call, 144 elements" in message
