"""ONNX Runtime as a second runtime: what ORT runs is read from ORT (fusions, blocked layouts, its profiler's node
times), priced by its own node table, and a model of one runtime never answers for another. No timing is asserted.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")

from nni_latency.count.features import BlockFeatures  # noqa: E402
from nni_latency.errors import MeasurementError, MissingDependency, RuntimeMismatch  # noqa: E402
from nni_latency.runtimes import get_runtime, get_table  # noqa: E402
from nni_latency.runtimes.measurement import LatencyMeasurement  # noqa: E402
from nni_latency.runtimes.protocol import Counting, MeasurementProtocol  # noqa: E402

COUNTING = Counting(16, 1, 1024, 32768)
FAST = MeasurementProtocol(runtime="onnxruntime", min_run_time=0.005, max_run_time=0.02, working_set_mb=1)


@pytest.fixture(scope="module")
def ort():
    return get_runtime("onnxruntime")


def _conv_bn_relu(c_in: int, c_out: int, kernel: int, groups: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU()).eval()


def test_batch_norm_and_activation_fuse_into_the_convolution_as_ort_decides(ort):
    features = ort.count_shape(_conv_bn_relu(32, 64, 3), (1, 32, 14, 14), COUNTING)
    classes = [record.cls for record in features.ops]
    assert classes.count("conv_dense") == 1 and "norm" not in classes and "elementwise" not in classes, classes
    assert classes[0] == "reorder_edge" and classes[-1] == "reorder_edge"  # into and out of the NCHWc layout


CONVS = {
    # module, input, class, FLOPs by hand from the shapes the blocked kernel sees (channels padded to 16)
    "pointwise": (_conv_bn_relu(32, 64, 1), (1, 32, 14, 14), "conv_pointwise", 2.0 * 64 * 14 * 14 * 32),
    "dense": (_conv_bn_relu(32, 64, 3), (1, 32, 14, 14), "conv_dense", 2.0 * 64 * 14 * 14 * 32 * 9),
    "depthwise": (_conv_bn_relu(32, 32, 3, groups=32), (1, 32, 14, 14), "conv_depthwise", 2.0 * 32 * 14 * 14 * 9),
    "padded": (_conv_bn_relu(24, 40, 1), (1, 24, 14, 14), "conv_pointwise", 2.0 * 48 * 14 * 14 * 32),
}


@pytest.mark.parametrize("module,shape,cls,flops", CONVS.values(), ids=CONVS.keys())
def test_a_blocked_convolution_is_priced_on_the_channels_its_kernel_runs(ort, module, shape, cls, flops):
    features = ort.count_shape(module, shape, COUNTING)
    convs = [record for record in features.ops if record.cls.startswith("conv")]
    assert [record.cls for record in convs] == [cls]
    if get_table("onnxruntime").classes[cls].features[1] == "vflops" and flops:
        assert convs[0].features["vflops"] == pytest.approx(flops)


def test_a_linear_layer_is_a_gemm_with_its_weights_and_attention_matmuls_are_not(ort):
    class Attention(nn.Module):
        def forward(self, x):
            return torch.softmax(x @ x.transpose(-1, -2), dim=-1) @ x

    linear = ort.count_shape(nn.Linear(64, 32).eval(), (8, 64), COUNTING)
    (gemm,) = [r for r in linear.ops if r.cls == "gemm"]
    assert gemm.features["weights"] == 64 * 32 and gemm.features["flops"] == pytest.approx(2.0 * 8 * 64 * 32)
    attention = ort.count_shape(Attention(), (1, 16, 8), COUNTING)
    assert [r.cls for r in attention.ops if r.cls in ("matmul", "softmax")] == ["matmul", "softmax", "matmul"]
    assert attention["matmul.flops"] == pytest.approx(2 * (2.0 * 16 * 16 * 8))


def test_features_of_the_runtime_are_its_tables_and_every_call_adds_documented_ones(ort):
    features = ort.count_shape(_conv_bn_relu(16, 16, 3), (1, 16, 8, 8), COUNTING)
    assert set(features.as_dict()) == set(ort.feature_names)
    docs = get_table("onnxruntime").feature_docs
    for record in features.ops:
        assert set(record.adds) <= set(docs), set(record.adds) - set(docs)
    assert features["overhead.nodes"] == len(features.ops)


def test_a_part_of_a_network_is_priced_without_the_layout_changes_at_its_edges(ort):
    table = get_table("onnxruntime")
    features = ort.count_shape(_conv_bn_relu(16, 16, 3), (1, 16, 8, 8), COUNTING).as_dict()
    part = table.part_of_network(features)
    assert part["reorder_edge.calls"] == 0 and features["reorder_edge.calls"] == 2
    assert part["overhead.nodes"] == features["overhead.nodes"] - 2


def test_measuring_and_timing_nodes_agree_with_counting(ort):
    module, shape = _conv_bn_relu(16, 32, 3), (1, 16, 16, 16)
    measurement = ort.measure(module, shape, FAST)
    assert isinstance(measurement, LatencyMeasurement) and measurement.latency_ms > 0 and measurement.copies >= 2
    timed = ort.time_ops(module, shape, FAST)
    counted = ort.count_shape(module, shape, COUNTING)
    assert list(timed.ops) == [record.op for record in counted.ops] and all(ms >= 0 for ms in timed.ms)
    assert timed.overhead_ms == 0.0  # ORT's own profiler: no clock of ours to remove


def test_a_module_the_exporter_cannot_take_is_refused_in_one_line(ort):
    class Dict(nn.Module):
        def forward(self, x):
            return {"a": x, "b": {1, 2}}

    with pytest.raises(MeasurementError, match="cannot be exported to ONNX") as caught:
        ort.count_shape(Dict(), (1, 4), COUNTING)
    assert "\n" not in str(caught.value)


def test_another_dtype_is_refused_before_any_export(ort):
    with pytest.raises(ValueError, match="fp32 graphs, not bf16"):
        ort.measure(nn.ReLU(), (1, 4), FAST.replace(dtype="bf16"))


def test_a_model_of_one_runtime_refuses_another(synthetic_model):
    with pytest.raises(RuntimeMismatch, match="describes the torch runtime, and predict_module asks about onnxruntime"):
        synthetic_model.predict_module(nn.ReLU(), (1, 4), runtime="onnxruntime")
    with pytest.raises(RuntimeMismatch, match="profile --runtime onnxruntime"):
        synthetic_model.measuring_protocol(runtime="onnxruntime")


def test_without_onnxruntime_the_runtime_is_one_line_naming_the_extra(monkeypatch):
    import importlib.util

    from nni_latency import runtimes

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    monkeypatch.setattr(runtimes, "_loaded", {})
    with pytest.raises(MissingDependency, match=r"pip install 'nni-latency\[onnx\]'"):
        runtimes.get_runtime("onnxruntime")


TINY = """\
seed: 0
count: 14
channels: [8, 32]
resolutions: [7, 14]
runtime: onnxruntime
families: {mbconv: 0.4, conv_bn_relu: 0.3, linear: 0.1, attention: 0.2}
tokens: {widths: [32, 64], sides: [7]}
timing: {min_run_time: 0.005, max_run_time: 0.02, working_set_mb: 1, rounds: 1}
"""


def test_an_ort_profile_end_to_end_records_the_runtime_and_predicts(tmp_path, capsys):
    from nni_latency.cli import main
    from nni_latency.model import LatencyModel

    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    assert main(["profile", "--config", str(config), "--output-dir", str(tmp_path / "ort"), "--no-progress"]) == 0
    model = LatencyModel.load(tmp_path / "ort" / "device_model.json")
    assert model.runtime == "onnxruntime"
    device = json.loads((tmp_path / "ort" / "device_model.json").read_text())["device"]
    assert {device["runtime"], device["graph_optimization"], device["execution_provider"]} == {
        "onnxruntime", "all", "CPUExecutionProvider"}
    assert device["intra_op_threads"] == 1 and device["inter_op_threads"] == 1 and device["runtime_version"]
    assert "runtime" in model.parameters  # op_linear weights price ORT's node classes
    predicted = model.predict_module(_conv_bn_relu(16, 32, 3), (1, 16, 14, 14))
    assert np.isfinite(predicted) and predicted > 0
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "ort" / "device_model.json"), "--family", "mbconv",
                 "--c-in", "16", "--c-out", "16", "--resolution", "14"]) == 0
    assert "ms predicted" in capsys.readouterr().out
    assert model.predict_one(BlockFeatures()) == pytest.approx(model.parameters["intercept"])  # once per run
