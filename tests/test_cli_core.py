"""The profile / fit / predict commands end to end, in-process through ``nni_latency.cli.dispatch``.

One tiny CPU profiling run (about 14 blocks, 10-50 ms of timing each) is shared by the module; every
error case fails before anything is measured.
"""

from __future__ import annotations

import contextlib
import io
import json
from types import SimpleNamespace

import pytest
import torch

from nni_latency.cli.dispatch import main
from nni_latency.files.fileio import read_jsonl
from nni_latency.fit import fitting
from nni_latency.model.model import LatencyModel
from nni_latency.profile import run as profiling
from nni_latency.runtimes.torch.counting import extract_features
from nni_latency.runtimes.torch.operators import OP_CLASSES
from nni_latency.suite.blocks import BlockSpec

HAS_GPU = torch.cuda.is_available()


def _run(argv: list[str]) -> SimpleNamespace:
    """Run the CLI in-process, capturing its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


def _assert_one_line_error(result, command: str, *fragments: str) -> str:
    assert result.code == 2, result.out + result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"nni-latency {command}: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture
def no_measuring(monkeypatch):
    """Fail the test if anything is timed: resumes and input errors must not measure."""
    def refuse(*args, **kwargs):
        raise AssertionError("a block was measured")

    monkeypatch.setattr(profiling, "measure_latency", refuse)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory, tiny_profile_yaml):
    root = tmp_path_factory.mktemp("profile")
    config = root / "tiny.yaml"
    config.write_text(tiny_profile_yaml, encoding="utf-8")
    output_dir = root / "run"
    result = _run(["profile", "--device", "cpu", "--config", str(config), "--output-dir", str(output_dir),
                   "--no-progress"])
    return SimpleNamespace(result=result, config=config, dir=output_dir,
                           count=int(next(line for line in tiny_profile_yaml.splitlines()
                                          if line.startswith("count:")).split(":")[1]))


# ---- profile

def test_profile_writes_model_dataset_and_plots(profiled):
    assert profiled.result.code == 0, profiled.result.err
    for name in ("device_model.json", "microbench.jsonl", "fit.png", "fit.svg"):
        assert (profiled.dir / name).stat().st_size > 0, name
    assert sorted(p.name for p in profiled.dir.iterdir() if p.name.startswith(".")) == []  # no temp files


def test_profile_dataset_has_one_row_per_block(profiled):
    keys = [row["key"] for row in read_jsonl(profiled.dir / "microbench.jsonl")]
    assert len(keys) == len(set(keys)) == profiled.count
    rows = list(read_jsonl(profiled.dir / "microbench.jsonl"))
    assert all(row["latency_ms"] > 0 and row["device"] == "cpu" for row in rows)
    # every block also carries the in-place time of each aten call it made, aligned with its counted calls
    for row in rows:
        assert row["ops"] and row["op_overhead_ms"] > 0
        assert all(ms >= 0 and cls in OP_CLASSES for _, cls, ms, _ in row["ops"])
        assert len(row["ops"]) == row["features"]["overhead.ops"]


def test_profile_model_describes_the_device_and_protocol(profiled):
    model = LatencyModel.load(profiled.dir / "device_model.json")
    assert model.kind == "op_linear"
    assert model.device["type"] == "cpu" and model.device["threads"] == 1
    assert model.device["op_sums"]["blocks"] == profiled.count and model.device["op_sums"]["median_ratio"] > 0
    assert model.device["protocol"] == "rotate" and model.device["dtype"] == "fp32"
    assert model.metrics["points"] == profiled.count
    assert set(model.metrics["cv"]) == {"op_linear", "relative_linear", "two_regime", "flops"}


def test_profile_prints_the_summary(profiled):
    out = profiled.result.out
    assert "device model: op_linear on " in out
    assert "operators timed in place, with the fitted per-call overheads, sum to a median" in out
    assert f"profiled {profiled.count} blocks" in out
    assert "parameters:" in out and "cross-validated fit" in out and "-bound" in out
    assert "wrote " in out and "device_model.json" in out and "fit.svg" in out


def test_profile_rerun_resumes_without_measuring(profiled, no_measuring):
    dataset = profiled.dir / "microbench.jsonl"
    before = dataset.read_bytes()
    result = _run(["profile", "--device", "cpu", "--config", str(profiled.config), "--output-dir", str(profiled.dir),
                   "--no-progress"])
    assert result.code == 0, result.err
    assert dataset.read_bytes() == before  # no new rows
    assert f"profiled {profiled.count} blocks" in result.out


# ---- fit

@pytest.mark.parametrize("kind", ["relative_linear", "two_regime", "flops"])
def test_fit_refits_the_dataset_without_measuring(profiled, tmp_path, kind, no_measuring):
    output = tmp_path / "refit.json"
    result = _run(["fit", str(profiled.dir / "microbench.jsonl"), "--kind", kind, "--output", str(output)])
    assert result.code == 0, result.err
    model = LatencyModel.load(output)
    assert model.kind == kind
    assert model.device["protocol"] == "rotate" and model.device["threads"] == 1
    assert model.metrics["points"] == profiled.count
    assert (tmp_path / "fit.png").exists() and (tmp_path / "fit.svg").exists()
    assert f"device model: {kind}" in result.out and str(output) in result.out


def test_fit_no_plot_writes_only_the_model(profiled, tmp_path):
    dataset = tmp_path / "microbench.jsonl"
    dataset.write_bytes((profiled.dir / "microbench.jsonl").read_bytes())
    result = _run(["fit", str(dataset), "--no-plot"])
    assert result.code == 0, result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device_model.json", "microbench.jsonl"]


def test_fit_beside_a_profiled_model_keeps_its_device_description(profiled, tmp_path):
    for name in ("microbench.jsonl", "device_model.json"):
        (tmp_path / name).write_bytes((profiled.dir / name).read_bytes())
    before = LatencyModel.load(tmp_path / "device_model.json").device
    result = _run(["fit", str(tmp_path / "microbench.jsonl"), "--no-plot"])
    assert result.code == 0, result.err
    after = LatencyModel.load(tmp_path / "device_model.json").device
    assert {key: after[key] for key in ("name", "type", "threads", "dtype", "batch", "protocol")} == {
        key: before[key] for key in ("name", "type", "threads", "dtype", "batch", "protocol")}


# ---- predict

@pytest.fixture
def model_file(synthetic_model, tmp_path):
    path = tmp_path / "device_model.json"
    synthetic_model.save(path)
    return path


def _expected_ms(model_path, module, shape) -> float:
    return LatencyModel.load(model_path).predict_module(module, shape)


def test_predict_a_block_from_flags(model_file):
    spec = BlockSpec("mbconv", 16, 24, 14, stride=2, kernel=5, expansion=3)
    result = _run(["predict", "--model", str(model_file), "--family", "mbconv", "--c-in", "16", "--c-out", "24",
                   "--resolution", "14", "--stride", "2", "--kernel", "5", "--expansion", "3"])
    assert result.code == 0, result.err
    expected = _expected_ms(model_file, spec.build(), spec.input_shape)
    assert result.out.startswith(f"{spec.key} on input 1,16,14,14: {expected:.4f} ms predicted")
    assert "relative_linear model of synthetic" in result.out


def test_predict_json(model_file):
    spec = BlockSpec("basic", 16, 16, 14, se=True, batch=2)
    result = _run(["predict", "--model", str(model_file), "--family", "basic", "--c-in", "16", "--c-out", "16",
                   "--resolution", "14", "--se", "--batch", "2", "--json"])
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["block"] == spec.key and data["input_shape"] == [2, 16, 14, 14]
    features = extract_features(spec.build(), spec.input_shape)
    assert data["features"] == features.as_dict()
    assert data["predicted_ms"] == pytest.approx(LatencyModel.load(model_file).predict_one(features), rel=1e-12)


def test_predict_a_module_from_a_python_file(model_file, tmp_path):
    source = tmp_path / "net.py"
    source.write_text("from torch import nn\n\ndef net():\n"
                      "    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())\n")
    result = _run(["predict", "--model", str(model_file), f"{source}:net", "--input-shape", "1,3,16,16", "--json"])
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["input_shape"] == [1, 3, 16, 16]
    assert data["features"]["flops"] == 2.0 * 16 * 16 * 16 * 3 * 9
    assert data["predicted_ms"] > 0


def test_predict_with_the_profiled_model(profiled):
    result = _run(["predict", "--model", str(profiled.dir / "device_model.json"), "--family", "dw_separable",
                   "--c-in", "16", "--c-out", "32", "--resolution", "14", "--json"])
    assert result.code == 0, result.err
    assert json.loads(result.out)["predicted_ms"] > 0


# ---- help

@pytest.mark.parametrize("command", ["profile", "fit", "predict"])
def test_command_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: nni-latency {command}")


def test_top_level_help_lists_the_core_commands(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("profile", "fit", "predict"))


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    assert "usage: nni-latency" in capsys.readouterr().out


# ---- bad input: exit code 2 and one line on stderr, before anything is measured

@pytest.mark.skipif(HAS_GPU, reason="this machine has a CUDA GPU")
def test_profile_cuda_without_gpu(tmp_path, no_measuring):
    result = _run(["profile", "--device", "cuda", "--output-dir", str(tmp_path / "out")])
    _assert_one_line_error(result, "profile", "no CUDA GPU", "--device cpu")
    assert not (tmp_path / "out").exists()


def test_profile_unknown_device(tmp_path, no_measuring):
    _assert_one_line_error(_run(["profile", "--device", "tpu", "--output-dir", str(tmp_path)]), "profile",
                           "unknown device 'tpu'")


def test_profile_unknown_config_key(tmp_path, no_measuring):
    config = tmp_path / "bad.yaml"
    config.write_text("cuont: 10\n")
    result = _run(["profile", "--config", str(config), "--output-dir", str(tmp_path / "out")])
    _assert_one_line_error(result, "profile", "unknown key config.cuont", "did you mean 'count'")


def test_profile_unknown_override_key(tiny_profile_config, tmp_path, no_measuring):
    result = _run(["profile", "--config", str(tiny_profile_config), "--set", "timing.protocl=hot",
                   "--output-dir", str(tmp_path / "out")])
    _assert_one_line_error(result, "profile", "did you mean 'protocol'")


def test_profile_output_dir_under_a_regular_file(tiny_profile_config, tmp_path, no_measuring):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    result = _run(["profile", "--config", str(tiny_profile_config), "--output-dir", str(blocker / "run")])
    _assert_one_line_error(result, "profile", "cannot be written", "--output-dir")


def test_profile_threads_zero(tiny_profile_config, tmp_path, no_measuring):
    result = _run(["profile", "--config", str(tiny_profile_config), "--threads", "0",
                   "--output-dir", str(tmp_path / "out")])
    _assert_one_line_error(result, "profile", "--threads must be at least 1, got 0")


def test_profile_threads_zero_from_the_config(tiny_profile_config, tmp_path, no_measuring):
    result = _run(["profile", "--config", str(tiny_profile_config), "--set", "threads=0",
                   "--output-dir", str(tmp_path / "out"), "--no-progress"])
    _assert_one_line_error(result, "profile", "threads must be at least 1, got 0")


def test_profile_unknown_model_kind_fails_before_measuring(tiny_profile_config, tmp_path, no_measuring):
    result = _run(["profile", "--config", str(tiny_profile_config), "--set", "model_kind=mlp",
                   "--output-dir", str(tmp_path / "out"), "--no-progress"])
    _assert_one_line_error(result, "profile", "unknown model kind 'mlp'")


def test_predict_corrupt_model_file(tmp_path):
    model = tmp_path / "device_model.json"
    model.write_text('{"format": "nni-latency/device-model", "schema_')
    _assert_one_line_error(_run(["predict", "--model", str(model)]), "predict", str(model), "corrupt or truncated")


def test_predict_missing_model_file(tmp_path):
    _assert_one_line_error(_run(["predict", "--model", str(tmp_path / "none.json")]), "predict", "no such file")


@pytest.mark.parametrize("argv,fragment", [
    (["--family", "resnet"], "unknown block family 'resnet'"),
    (["--c-in", "16", "--input-shape", "1,8,14,14"], "C=16"),
    (["--input-shape", "1,x,3"], "input shape"),
], ids=["unknown_family", "shape_mismatch", "malformed_shape"])
def test_predict_bad_block(model_file, argv, fragment):
    _assert_one_line_error(_run(["predict", "--model", str(model_file), *argv]), "predict", fragment)


def test_predict_target_without_input_shape(model_file, tmp_path):
    source = tmp_path / "net.py"
    source.write_text("from torch import nn\n\ndef net():\n    return nn.Conv2d(3, 8, 3)\n")
    _assert_one_line_error(_run(["predict", "--model", str(model_file), f"{source}:net"]), "predict",
                           "--input-shape")


def test_fit_dataset_with_too_few_points(synthetic_dataset, tmp_path):
    specs, rows, latencies = synthetic_dataset
    dataset = tmp_path / "small.jsonl"
    dataset.write_text("".join(json.dumps({"key": spec.key, "spec": spec.to_dict(), "features": row.as_dict(),
                                           "latency_ms": latency}) + "\n"
                               for spec, row, latency in list(zip(specs, rows, latencies))[:3]))
    result = _run(["fit", str(dataset), "--no-plot"])
    _assert_one_line_error(result, "fit", f"only 3 measured point(s); fitting needs at least {fitting.MIN_POINTS}")
    assert not (tmp_path / "device_model.json").exists()


def test_fit_missing_dataset(tmp_path):
    _assert_one_line_error(_run(["fit", str(tmp_path / "absent.jsonl")]), "fit", "does not exist")


def test_profile_batches_cover_every_size_asked_for(tiny_profile_config, tmp_path, monkeypatch):
    timed = []

    def fake_measure(module, shape, protocol, **kwargs):
        from nni_latency.runtimes.measurement import LatencyMeasurement

        timed.append(shape[0])
        return LatencyMeasurement(times_ms=(0.1 * shape[0],), number_per_run=1, protocol="rotate", copies=2)

    monkeypatch.setattr(profiling, "measure_latency", fake_measure)
    result = _run(["profile", "--config", str(tiny_profile_config), "--batches", "1,4", "--output-dir",
                   str(tmp_path / "run"), "--no-progress"])
    assert result.code == 0, result.err
    assert set(timed) == {1, 4}
    from nni_latency.model.model import LatencyModel

    model = LatencyModel.load(tmp_path / "run" / "device_model.json")
    assert model.device["batches"] == [1, 4] and model.device["batch"] == 1


@pytest.mark.parametrize("value", ["0,8", "a,b", ""], ids=["zero", "words", "empty"])
def test_profile_bad_batches_are_one_line(tiny_profile_config, tmp_path, no_measuring, value):
    result = _run(["profile", "--config", str(tiny_profile_config), "--batches", value, "--output-dir",
                   str(tmp_path / "run")])
    _assert_one_line_error(result, "profile", "--batches", "e.g. 1,8")
