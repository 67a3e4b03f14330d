"""Test-set generation, scoring and the ``evaluate`` command (the smoke set measures in a few seconds)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from nni_latency.cli import dispatch as cli
from nni_latency.evaluate import testset
from nni_latency.evaluate.blocks import score_predictions
from nni_latency.evaluate.testset import (BlockGroupConfig, FBNetLayersConfig, TestSetConfig, generate_testset,
                                          profiling_keys)
from nni_latency.files.config import config_from_dict, config_to_dict, load_config, packaged_config
from nni_latency.files.fileio import read_jsonl
from nni_latency.fit.metrics import regression_metrics
from nni_latency.suite.config import ProfileConfig
from nni_latency.suite.sampling import sample_specs

SMOKE = packaged_config("testset_smoke.yaml")


@pytest.fixture(scope="module")
def smoke_config() -> TestSetConfig:
    return load_config(SMOKE, TestSetConfig)


@pytest.fixture
def model_path(synthetic_model, tmp_path):
    path = tmp_path / "device_model.json"
    synthetic_model.save(path)
    return path


def test_generation_is_deterministic_and_seeded(smoke_config):
    first, second = generate_testset(smoke_config), generate_testset(smoke_config)
    assert [b.spec for b in first] == [b.spec for b in second]
    other = generate_testset(config_from_dict(TestSetConfig, {**config_to_dict(smoke_config), "seed": 8}))
    assert [b.spec for b in other] != [b.spec for b in first]


def test_smoke_set_has_layers_families_and_distinct_blocks(smoke_config):
    blocks = generate_testset(smoke_config)
    assert 8 <= len(blocks) <= 12
    assert len({b.spec.key for b in blocks}) == len(blocks)
    assert Counter(b.family for b in blocks) == {"fbnet_candidate": 4, "shuffle": 2, "mbconv_se": 2, "conv": 2}
    layer = [b for b in blocks if b.layer]
    assert len({b.layer for b in layer}) == 1
    assert len({(b.spec.input_shape, b.spec.c_out, b.spec.stride) for b in layer}) == 1  # one context
    assert {b.spec.family for b in layer} == {"mbconv", "skip"}
    assert all(b.spec.se for b in blocks if b.family == "mbconv_se")
    assert all(b.spec.batch in (1, 2) for b in blocks)


def test_identity_skip_is_left_out_of_fbnet_layers():
    config = TestSetConfig(resolutions=[7, 14], channels=[8, 16], batches=[1], max_mflops=5,
                           fbnet_layers=FBNetLayersConfig(count=4, strides=[1]))
    blocks = generate_testset(config)
    for block in blocks:
        if block.spec.family == "skip":
            assert block.spec.c_in != block.spec.c_out  # a projection, never an identity
    sizes = Counter(b.layer for b in blocks)
    assert set(sizes.values()) <= {8, 9}


def test_excluded_keys_are_never_drawn(smoke_config):
    blocks = generate_testset(smoke_config)
    excluded = {blocks[-1].spec.key, blocks[-2].spec.key}
    redrawn = generate_testset(smoke_config, exclude_keys=sorted(excluded))
    assert not excluded & {b.spec.key for b in redrawn}
    assert len(redrawn) == len(blocks)


def test_profiling_keys_come_from_the_config_stored_in_the_model(synthetic_model):
    assert profiling_keys(synthetic_model) == set()
    config = ProfileConfig(count=14, channels=[8, 32], resolutions=[7, 14])
    synthetic_model.device["config"] = config_to_dict(config)
    assert profiling_keys(synthetic_model) == {s.key for s in sample_specs(config)}


def test_model_batch_is_used_when_the_config_names_none():
    config = TestSetConfig(resolutions=[7], channels=[8, 16], batches=None, max_mflops=5,
                           groups=[BlockGroupConfig(name="conv", family="conv_bn_relu", count=3)])
    assert {b.spec.batch for b in generate_testset(config, default_batch=4)} == {4}


@pytest.mark.parametrize("change, message", [
    ({"groups": [{"name": "x", "family": "resnet", "count": 2}]}, "unknown family 'resnet'"),
    ({"groups": [{"name": "x", "family": "conv_bn_relu", "count": 2, "activations": ["swish2"]}]},
     "unknown activation 'swish2'"),
    ({"fbnet_layers": {"count": 1, "candidates": ["k9_e9"]}}, "unknown FBNet candidate 'k9_e9'"),
    ({"groups": [{"name": "x", "family": "conv_bn_relu", "count": 2, "width_ratios": [2.0, 1.0]}]},
     "width_ratios must be"),
    ({"max_mflops": 1e-6}, "fit the ranges and size caps"),
    ({"fbnet_layers": {"count": 0}, "groups": []}, "draws no blocks"),
], ids=["family", "activation", "candidate", "ratios", "caps", "empty"])
def test_bad_configs_raise_value_errors(smoke_config, change, message):
    config = config_from_dict(TestSetConfig, {**config_to_dict(smoke_config), **change})
    with pytest.raises(ValueError, match=message):
        generate_testset(config)


def test_unknown_config_key_is_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 1\ngroups:\n  - name: a\n    family: shuffle\n    count: 2\n    kernal: [3]\n")
    with pytest.raises(ValueError, match=r"unknown key config\.groups\[0\]\.kernal \(did you mean 'kernels'\?\)"):
        load_config(path, TestSetConfig)


def test_packaged_cpu_config_loads_and_is_large_enough():
    config = load_config(packaged_config("testset_cpu.yaml"), TestSetConfig)
    candidates_per_layer = 9
    total = sum(g.count for g in config.groups) + config.fbnet_layers.count * (candidates_per_layer - 1)
    assert total >= 1000  # identity skips may drop one candidate per layer
    assert {"shuffle", "resnext", "mbconv_se"} <= {g.name for g in config.groups}


def _rows(measured, families, layers):
    return [{"key": str(i), "latency_ms": m, "family": f, "layer": layer, "noisy": i == 0}
            for i, (m, f, layer) in enumerate(zip(measured, families, layers))]


def test_score_predictions_reports_layers_and_families():
    measured = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 4.0]
    predicted = [1.0, 2.0, 3.0, 10.0, 30.0, 20.0, 5.0]
    rows = _rows(measured, ["fb"] * 6 + ["conv"], ["L1"] * 3 + ["L2"] * 3 + [None])
    scores = score_predictions(rows, predicted, threshold_ms=2.0)
    assert scores["within_layer_kendall"]["groups"] == 2
    assert scores["within_layer_kendall"]["mean"] == pytest.approx((1 + 1 / 3) / 2)
    assert scores["families"]["conv"] == {"count": 1, "mdape": 0.25, "within_10pct": 0.0}
    assert scores["families"]["fb"]["count"] == 6
    assert scores["noisy_points"] == 1
    assert scores["mdape"] == regression_metrics(measured, predicted)["mdape"]


def test_evaluate_smoke_end_to_end_then_resume(model_path, tmp_path, monkeypatch, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(model_path), "--config", str(SMOKE), "--output-dir", str(out),
            "--no-progress"]
    assert cli.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("mdape", "mdape_low", "mdape_high", "within_10pct", "pearson_r", "r2", "kendall_tau",
                "within_layer_kendall", "families", "count", "model", "testset"):
        assert key in metrics, key
    rows = list(read_jsonl(out / "testset.jsonl"))
    blocks = generate_testset(load_config(SMOKE, TestSetConfig))
    assert {r["key"] for r in rows} == {b.spec.key for b in blocks}
    assert metrics["count"] == len(blocks)
    assert metrics["model"]["kind"] == "relative_linear"
    assert metrics["within_layer_kendall"]["groups"] == 1
    assert set(metrics["families"]) == {"fbnet_candidate", "shuffle", "mbconv_se", "conv"}
    assert (out / "pred_vs_measured.png").stat().st_size > 0 and (out / "pred_vs_measured.svg").exists()
    # metrics.json agrees with the per-block predictions written beside it
    predictions = list(read_jsonl(out / "predictions.jsonl"))
    errors = [abs(p["predicted_ms"] - p["measured_ms"]) / p["measured_ms"] for p in predictions]
    assert metrics["mdape"] == pytest.approx(float(np.median(errors)))
    assert "MdAPE" in capsys.readouterr().out

    def no_measuring(*args, **kwargs):
        raise AssertionError("a resumed run must not measure again")

    monkeypatch.setattr(testset, "measure_latency", no_measuring)
    assert cli.main(argv) == 0
    assert len(list(read_jsonl(out / "testset.jsonl"))) == len(blocks)


def test_evaluate_on_an_existing_dataset_does_not_measure(model_path, tmp_path, monkeypatch):
    source = tmp_path / "first"
    assert cli.main(["evaluate", "--model", str(model_path), "--config", str(SMOKE), "--output-dir", str(source),
                     "--no-progress"]) == 0
    monkeypatch.setattr(testset, "measure_latency", lambda *a, **k: pytest.fail("measured"))
    again = tmp_path / "second"
    assert cli.main(["evaluate", "--model", str(model_path), "--config", str(SMOKE), "--output-dir", str(again),
                     "--dataset", str(source / "testset.jsonl")]) == 0
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (source, again))
    assert second["mdape"] == first["mdape"] and second["families"] == first["families"]
    assert not (again / "testset.jsonl").exists()


def test_rows_from_an_older_feature_set_are_recounted():
    from nni_latency.runtimes.torch.counting import extract_features
    from nni_latency.suite.blocks import BlockSpec

    spec = BlockSpec("conv_bn_relu", 8, 16, 7)
    stale = {"key": spec.key, "spec": spec.to_dict(), "latency_ms": 0.1, "features": {"flops": 1.0}}
    current = {"key": "other", "spec": spec.to_dict(), "latency_ms": 0.2,
               "features": extract_features(spec.build(), spec.input_shape).as_dict()}
    refreshed = testset.refresh_features([stale, current])
    assert refreshed[0]["features"] == current["features"]
    assert refreshed[0]["latency_ms"] == 0.1 and refreshed[1] is current
    assert stale["features"] == {"flops": 1.0}  # the input rows are left as they were


@pytest.mark.parametrize("field, value", [("threads", 2), ("dtype", "bf16"), ("protocol", "hot")])
def test_resume_refuses_rows_measured_with_other_settings(model_path, tmp_path, capsys, field, value):
    out = tmp_path / "eval"
    out.mkdir()
    row = {"key": "x", "latency_ms": 1.0, "device": "cpu", "threads": 1, "dtype": "fp32", "protocol": "rotate",
           "allocator": "steady", field: value}
    written = (json.dumps(row) + "\n").encode()
    (out / "testset.jsonl").write_bytes(written)
    code = cli.main(["evaluate", "--model", str(model_path), "--config", str(SMOKE), "--output-dir", str(out),
                     "--no-progress"])
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"{field}={value!r}" in error  # names the field and the rows' value
    assert "--output-dir" in error  # and the way out
    assert (out / "testset.jsonl").read_bytes() == written  # the refused rows are untouched


@pytest.mark.parametrize("argv_extra, message", [
    (["--model", "missing.json"], "no such file"),
    (["--model", "{model}", "--config", "{bad_config}"], "unknown key config.sed"),
    (["--model", "{model}", "--threads", "0"], "--threads must be at least 1"),
    (["--model", "{model}", "--dataset", "missing.jsonl"], "does not exist"),
], ids=["missing_model", "unknown_key", "threads", "missing_dataset"])
def test_bad_inputs_exit_with_one_line_errors(model_path, tmp_path, capsys, argv_extra, message):
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("sed: 3\n")
    argv = ["evaluate", "--config", str(SMOKE), "--output-dir", str(tmp_path / "out"), "--no-progress"]
    argv += [a.format(model=model_path, bad_config=bad_config) for a in argv_extra]  # a later --config wins
    assert cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("nni-latency evaluate: error:") and message in error
    assert len(error.splitlines()) == 1


def test_a_test_set_is_measured_with_the_statistic_the_model_was_fitted_to(synthetic_model):
    """The profile's rounds and quantile are part of what its latencies mean: a test set's timing budget that
    does not name them keeps the model's, and one that does wins."""
    from nni_latency.suite.config import TimingConfig

    synthetic_model.device.update(rounds=2, quantile=0.25, min_run_time=0.04)
    protocol = synthetic_model.measuring_protocol(timing=TimingConfig(min_run_time=0.2))
    assert (protocol.rounds, protocol.quantile, protocol.min_run_time) == (2, 0.25, 0.2)
    protocol = synthetic_model.measuring_protocol(threads=2, timing=TimingConfig(quantile=0.5, rounds=1))
    assert (protocol.rounds, protocol.quantile, protocol.threads) == (1, 0.5, 2)
