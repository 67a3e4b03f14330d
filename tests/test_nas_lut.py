"""Lookup tables: the predicted table of the FBNet space, written as JSON and as NNI 2.x lut.txt, read back."""

from __future__ import annotations

import ast
import json
from types import SimpleNamespace

import pytest
import torch

from nni_latency.cli.dispatch import main
from nni_latency.model.model import LatencyModel
from nni_latency.nas.lut import (LutRow, measure_rows, op_data_shape, predicted_rows, read_lut_txt, write_lut_json,
                                 write_lut_txt)
from nni_latency.nas.profiler import LatencyProfiler
from nni_latency.spaces.fbnet import CANDIDATE_NAMES, FBNetSpace

SPACE_ARGS = {"num_classes": 10, "input_size": 32, "width_mult": 0.25, "depth_mult": 0.25}


@pytest.fixture(scope="module")
def device_model(synthetic_dataset) -> LatencyModel:
    _, rows, latencies = synthetic_dataset
    device = {"name": "synthetic", "type": "cpu", "threads": 1, "dtype": "fp32", "batch": 1, "protocol": "rotate"}
    return LatencyModel.fit(rows, latencies, kind="relative_linear", device=device)


@pytest.fixture(scope="module")
def fbnet_profiler(device_model):
    torch.manual_seed(0)
    return LatencyProfiler(FBNetSpace(**SPACE_ARGS), (1, 3, 32, 32), device_model)


@pytest.mark.parametrize("input_shape, output_shape, expected", [
    ((1, 16, 112, 112), (1, 24, 56, 56), (112, 112, 16, 24, 2)),
    ((1, 32, 28, 28), (1, 32, 28, 28), (28, 28, 32, 32, 1)),
    ((1, 64, 7, 9), (1, 10, 7, 9), (9, 7, 64, 10, 1)),
    ((1, 64), (1, 10), None),
], ids=["stride2", "same", "non-square", "linear"])
def test_op_data_shape(input_shape, output_shape, expected):
    assert op_data_shape(input_shape, output_shape) == expected


def test_fbnet_table_has_every_layer_and_candidate(fbnet_profiler):
    rows = predicted_rows(fbnet_profiler)
    layers = sorted({row.layer for row in rows})
    assert len(layers) == len(fbnet_profiler.model_space.layers) == 7
    for layer in layers:
        assert [row.candidate for row in rows if row.layer == layer] == list(CANDIDATE_NAMES)
    skip_same_shape = [row for row in rows if row.candidate == "skip" and row.input_shape == row.output_shape]
    assert skip_same_shape and all(row.predicted_ms == 0.0 for row in skip_same_shape)
    assert all(row.predicted_ms > 0 for row in rows if row.candidate != "skip")


def test_lut_txt_round_trip_in_nni2_format(fbnet_profiler, tmp_path):
    rows = predicted_rows(fbnet_profiler)
    path = tmp_path / "lut.txt"
    written = write_lut_txt(path, rows)
    lines = path.read_text().splitlines()
    assert written == len(lines) == len({(row.candidate, row.op_data_shape) for row in rows})
    for line in lines:  # NNI 2.x's LookUpTable parses each line with ast.literal_eval
        record = ast.literal_eval(line)
        assert list(record) == ["op_name", "op_data_shape", "op_dtype", "op_latency"]
        assert isinstance(record["op_data_shape"], tuple) and len(record["op_data_shape"]) == 5
        assert record["op_dtype"] == "float"
    table = read_lut_txt(path)
    for row in rows:  # NNI 2.x: ops_lut[op_name][op_data_shape][op_dtype], latency in microseconds
        assert table[row.candidate][row.op_data_shape]["float"] == pytest.approx(row.predicted_ms * 1e3, abs=1e-6)


def test_lut_json_lists_shapes_and_latencies(fbnet_profiler, tmp_path):
    rows = predicted_rows(fbnet_profiler)
    path = tmp_path / "lut.json"
    write_lut_json(path, rows, metadata={"space": "fbnet"})
    data = json.loads(path.read_text())
    assert data["unit"] == "ms" and data["space"] == "fbnet" and len(data["rows"]) == len(rows)
    first = data["rows"][0]
    assert first["layer"] == "stage1.0" and first["input_shape"] == [1, 8, 32, 32]  # stride 1 stem at 32 px
    assert first["op_data_shape"] == [32, 32, 8, 8, 1]


def test_measured_table_measures_each_distinct_candidate_once(fbnet_profiler, tmp_path):
    rows = predicted_rows(fbnet_profiler)
    calls = []

    def fake_measure(module, input_shape, **kwargs):
        calls.append((type(module).__name__, input_shape))
        return SimpleNamespace(latency_ms=0.001 * len(calls))

    measured = measure_rows(fbnet_profiler, rows, measure=fake_measure, threads=1)
    assert len(calls) == len({(r.candidate, r.input_shape, r.output_shape) for r in rows})
    assert all(row.measured_ms is not None for row in measured)
    write_lut_txt(tmp_path / "lut_measured.txt", measured, measured=True)
    table = read_lut_txt(tmp_path / "lut_measured.txt")
    assert table[measured[0].candidate][measured[0].op_data_shape]["float"] == pytest.approx(1.0)


@pytest.mark.parametrize("line", ["{'op_name': 'k3_e1'}", "not a dict", "{'op_name': 'x', 'op_data_shape': 5, "
                                  "'op_dtype': 'float', 'op_latency': 1.0}"], ids=["missing-keys", "text", "shape"])
def test_read_lut_txt_rejects_malformed_lines(line, tmp_path):
    path = tmp_path / "lut.txt"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match="line 1 is not an NNI 2.x lut record"):
        read_lut_txt(path)


def test_lut_command_writes_both_formats(device_model, tmp_path, capsys):
    model_path = tmp_path / "device_model.json"
    device_model.save(model_path)
    code = main(["lut", "--model", str(model_path), "--space", "fbnet", "--space-arg", "width_mult=0.25",
                 "--space-arg", "depth_mult=0.25", "--space-arg", "num_classes=10", "--input-size", "32",
                 "--output-dir", str(tmp_path / "out")])
    assert code == 0
    assert "predicted 63 candidates of 7 layers" in capsys.readouterr().out
    assert len(read_lut_txt(tmp_path / "out" / "lut.txt")) == len(CANDIDATE_NAMES)
    assert json.loads((tmp_path / "out" / "lut.json").read_text())["input_shape"] == [1, 3, 32, 32]


@pytest.mark.parametrize("extra, message", [
    (["--space-arg", "widthmult=0.5"], "fbnet has no --space-arg 'widthmult'"),
    (["--space-arg", "0.5"], "is not KEY=VALUE"),
    (["--input-size", "0"], "--input-size must be a positive"),
], ids=["unknown-arg", "not-key-value", "input-size"])
def test_lut_command_errors(extra, message, device_model, tmp_path, capsys):
    model_path = tmp_path / "device_model.json"
    device_model.save(model_path)
    code = main(["lut", "--model", str(model_path), "--space", "fbnet", "--output-dir", str(tmp_path), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_lut_row_without_nchw_shape_is_left_out_of_lut_txt(tmp_path):
    rows = [LutRow("fc", "linear", "fc", (1, 64), (1, 10), 0.5),
            LutRow("l0", "k3", "l0.k3", (1, 8, 8, 8), (1, 8, 8, 8), 0.25)]
    assert write_lut_txt(tmp_path / "lut.txt", rows) == 1
    assert read_lut_txt(tmp_path / "lut.txt") == {"k3": {(8, 8, 8, 8, 1): {"float": 250.0}}}
