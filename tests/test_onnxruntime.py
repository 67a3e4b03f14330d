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

import onnx  # noqa: E402
from onnx import helper  # noqa: E402

from nni_latency.count.features import BlockFeatures  # noqa: E402
from nni_latency.errors import MeasurementError, MissingDependency, RuntimeMismatch  # noqa: E402
from nni_latency.runtimes import get_runtime, get_table  # noqa: E402
from nni_latency.runtimes.measurement import LatencyMeasurement  # noqa: E402
from nni_latency.runtimes.onnxruntime.counting import _scope_module  # noqa: E402
from nni_latency.runtimes.onnxruntime.export import to_onnx  # noqa: E402
from nni_latency.runtimes.onnxruntime.session import (_canonical_order, profile_nodes, profiler_cost_ms,  # noqa: E402
                                                      session_bytes)
from nni_latency.runtimes.protocol import Counting, MeasurementProtocol  # noqa: E402
from nni_latency.runtimes.runs import copy_count  # noqa: E402

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
    assert timed.overhead_ms == profiler_cost_ms(FAST) >= 0.0  # what ORT's profiler adds per node, removed


def _two_branches() -> bytes:
    """A graph whose two middle nodes are independent: ORT may run them in either order."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["a"], name="start"),
                               helper.make_node("Abs", ["a"], ["b"], name="zeta"),
                               helper.make_node("Neg", ["a"], ["c"], name="alpha"),
                               helper.make_node("Add", ["b", "c"], ["y"], name="end")], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def test_nodes_come_in_one_order_whatever_order_a_session_ran_them_in():
    order = _canonical_order(onnx.load_from_string(_two_branches()).graph)
    assert sorted(order, key=order.get) == ["start", "alpha", "zeta", "end"]  # ties broken by name


def test_passes_over_several_copies_keep_every_node(ort):
    # The copies' sessions may run independent nodes (two layout reorders after one convolution) in different
    # orders: the passes are still matched node by node, not dropped.
    module, shape = _conv_bn_relu(16, 32, 3), (1, 16, 16, 16)
    inputs = [torch.randn(shape)]
    for copies in (1, 4):
        nodes = profile_nodes(to_onnx(module, inputs), inputs, FAST, passes=8, copies=copies)
        assert [node.kind for node in nodes] == ["nchwc.ReorderInput", "nchwc.Conv", "nchwc.ReorderOutput"]
        assert all(len(node.ms) == 8 for node in nodes)


def test_a_session_holds_its_intermediates_so_large_ones_rotate_fewer_copies():
    class Wide(nn.Module):  # 64 KB of weights, 4 MB of intermediates
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(128, 128)

        def forward(self, x):
            return self.fc(x.repeat(1, 64, 1)).relu()

    inputs = [torch.randn(1, 64, 128)]
    model = to_onnx(Wide().eval(), inputs)
    held = session_bytes(model, inputs)
    assert held >= 2 * 64 * 64 * 128 * 4 + len(model)  # the repeated input and the linear layer's output
    protocol = FAST.replace(working_set_mb=8)
    assert copy_count(held, protocol, 32) < copy_count(len(model), protocol, 32)


@pytest.mark.parametrize("make,cls", [
    (lambda: nn.PReLU(), "scalar"), (lambda: nn.GELU(), "gelu"), (lambda: nn.SiLU(), "transcendental"),
    (lambda: nn.ELU(), "scalar"), (lambda: nn.Hardswish(), "elementwise"),
], ids=["prelu", "gelu", "silu", "elu", "hardswish"])
def test_activations_are_classed_by_how_ort_computes_them(ort, make, cls):
    class Scaled(nn.Module):  # after a Mul, which nothing fuses with (a Gemm or a Conv would take the activation)
        def __init__(self):
            super().__init__()
            self.act = make()

        def forward(self, x):
            return self.act(x * 2)

    features = ort.count_shape(Scaled().eval(), (4, 8), COUNTING)
    assert cls in [record.cls for record in features.ops], [(r.op, r.cls) for r in features.ops]


def test_a_transpose_that_moves_the_innermost_axis_is_a_class_of_its_own(ort):
    class Permute(nn.Module):
        def __init__(self, *order):
            super().__init__()
            self.order = order

        def forward(self, x):
            return x.permute(*self.order) + 1

    heads = ort.count_shape(Permute(0, 2, 1, 3).eval(), (1, 8, 16, 32), COUNTING)
    channels_last = ort.count_shape(Permute(0, 2, 3, 1).eval(), (1, 8, 16, 32), COUNTING)
    assert "transpose" in [r.cls for r in heads.ops] and "transpose_inner" not in [r.cls for r in heads.ops]
    assert "transpose_inner" in [r.cls for r in channels_last.ops]


class _Stages(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _conv_bn_relu(3, 16, 3)
        self.stages = nn.Sequential(_conv_bn_relu(16, 16, 3), _conv_bn_relu(16, 32, 1))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)).mean((2, 3)))


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_a_network_run_is_shared_out_to_its_modules(runtime):
    network, inputs = _Stages().eval(), [torch.randn(1, 3, 16, 16)]
    modules = [("stem", network.stem), ("stages.0", network.stages[0]), ("stages.1", network.stages[1]),
               ("head", network.head)]
    whole, parts = get_runtime(runtime).count_within(network, inputs, modules, COUNTING)
    assert set(parts) == {name for name, _ in modules}
    convs = [name for name, part in parts.items() if any(r.cls.startswith("conv") for r in part.ops)]
    assert convs == ["stem", "stages.0", "stages.1"]
    assert sum(len(part.ops) for part in parts.values()) <= len(whole.ops)


def test_a_node_name_is_read_back_to_the_module_that_made_it():
    modules = dict(_Stages().named_modules())
    assert _scope_module("/stages/stages.1/stages.1.0/Conv_output_0_nchwc", modules) == "stages.1.0"
    assert _scope_module("/stages/stages.0/stages.0.2/Relu/ReluFusion/", modules) == "stages.0.2"
    assert _scope_module("ReorderOutput_token_12", modules) is None


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


@pytest.fixture(scope="module")
def ort_profile(tmp_path_factory):
    from nni_latency.cli import main

    folder = tmp_path_factory.mktemp("ort")
    config = folder / "tiny.yaml"
    config.write_text(TINY)
    assert main(["profile", "--config", str(config), "--output-dir", str(folder / "ort"), "--no-progress"]) == 0
    return folder / "ort" / "device_model.json"


def test_an_ort_profile_end_to_end_records_the_runtime_and_predicts(ort_profile, capsys):
    from nni_latency.cli import main
    from nni_latency.model import LatencyModel

    model = LatencyModel.load(ort_profile)
    assert model.runtime == "onnxruntime"
    device = json.loads(ort_profile.read_text())["device"]
    assert {device["runtime"], device["graph_optimization"], device["execution_provider"]} == {
        "onnxruntime", "all", "CPUExecutionProvider"}
    assert device["intra_op_threads"] == 1 and device["inter_op_threads"] == 1 and device["runtime_version"]
    assert "runtime" in model.parameters  # op_linear weights price ORT's node classes
    predicted = model.predict_module(_conv_bn_relu(16, 32, 3), (1, 16, 14, 14))
    assert np.isfinite(predicted) and predicted > 0
    capsys.readouterr()
    assert main(["predict", "--model", str(ort_profile), "--family", "mbconv",
                 "--c-in", "16", "--c-out", "16", "--resolution", "14"]) == 0
    assert "ms predicted" in capsys.readouterr().out
    assert model.predict_one(BlockFeatures()) == pytest.approx(model.parameters["intercept"])  # once per run


def test_analyze_with_an_ort_model_gives_each_block_the_nodes_ort_ran_in_it(ort_profile):
    from nni_latency.analysis.report import REST, analyze_network
    from nni_latency.model import LatencyModel

    model = LatencyModel.load(ort_profile)
    network = _Stages().eval()
    report = analyze_network(network, (1, 3, 16, 16), model, depth=1)
    rows = {row.name: row for row in report.blocks}
    assert set(rows) == {"stem", "stages", "head", REST}
    assert report.total_predicted_ms == pytest.approx(model.predict_module(network, (1, 3, 16, 16)))
    # the stem's batch norm and ReLU fold into its convolution, inside the network as alone
    assert rows["stem"].features["overhead.nodes"] == 1 and rows["stages"].features["overhead.nodes"] == 2


def test_analyze_measure_ops_times_ort_nodes_against_their_prices(ort_profile, capsys):
    from nni_latency.cli import main

    script = "import torch.nn as nn\nnetwork = nn.Sequential(nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 1))\n"
    folder = ort_profile.parent
    (folder / "net.py").write_text(script)
    capsys.readouterr()
    assert main(["analyze", f"{folder / 'net.py'}:network", "--input-shape", "1,8,16,16", "--model",
                 str(ort_profile), "--measure", "--ops", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ORT's profiler" in out and "conv_dense" in out and "conv_pointwise" in out


def test_inputs_nested_in_lists_or_left_unused_reach_the_graph_by_name(ort):
    class Pair(nn.Module):  # a DARTS cell's preprocessor takes its predecessors as a list
        def forward(self, states):
            return states[0] + states[1]

    class FirstOnly(nn.Module):  # the exporter leaves the unused second input out of the graph
        def forward(self, a, b):
            return a * 2

    pair, _ = ort.count(Pair().eval(), ([torch.randn(1, 8), torch.randn(1, 8)],), COUNTING)
    first, _ = ort.count(FirstOnly().eval(), (torch.randn(1, 8), torch.randn(1, 8)), COUNTING)
    assert [r.op for r in pair.ops] == ["Add"] and [r.op for r in first.ops] == ["Mul"]


_SHARED_POOL_CHILD = """
import warnings
from nni_latency.runtimes.onnxruntime.session import session_options
from nni_latency.runtimes.protocol import MeasurementProtocol

one, two, three = (session_options(MeasurementProtocol(runtime="onnxruntime", threads=n)) for n in (1, 2, 2))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    other = session_options(MeasurementProtocol(runtime="onnxruntime", threads=3))
print(one.use_per_session_threads, two.use_per_session_threads, three.use_per_session_threads,
      other.use_per_session_threads, other.intra_op_num_threads, len(caught), "process of its own" in str(caught[0].message))
"""


def test_sessions_above_one_thread_share_the_process_pool_and_another_size_is_named():
    """Rotated sessions with pools of their own spin against each other: at 2 threads they share one pool; a third
    size in the same process keeps its own pool, and says so (a child process: the pool is process-wide)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _SHARED_POOL_CHILD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "False", "True", "3", "1", "True"]
