"""The CUDA-only plumbing, checked on CPU: the CUDA profiling config, the GPU check script's arguments, the GPU
section rendered from sample results, and the whole-network section of the benchmark (no timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nni_latency.files.config import load_config, packaged_config
from nni_latency.suite.config import ProfileConfig
from nni_latency.suite.sampling import sample_specs

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_section  # noqa: E402
import op_classes  # noqa: E402
import whole_networks  # noqa: E402


def test_the_cuda_suite_covers_the_batches_gpu_users_search_at():
    config = load_config(packaged_config("profile_cuda.yaml"), ProfileConfig)
    batches = {spec.batch for spec in sample_specs(config)}
    assert batches == {1, 8, 32, 128} and config.batch == 1


def test_the_reduced_gpu_test_set_loads_and_stays_small():
    from nni_latency.evaluate.testset import TestSetConfig, generate_testset

    blocks = generate_testset(load_config(REPO / "benchmarks" / "gpu_testset.yaml", TestSetConfig))
    assert 100 <= len(blocks) <= 160 and {b.spec.batch for b in blocks} == {1, 8, 32}


def _script(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_the_gpu_script_is_valid_bash_and_explains_its_options():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    shown = _script("--help")
    assert shown.returncode == 0 and "--device" in shown.stdout and "under 8 minutes" in shown.stdout
    wrong = _script("--bogus")
    assert wrong.returncode == 2 and "unknown option '--bogus'" in wrong.stderr


def test_the_gpu_script_says_how_to_install_when_the_package_is_missing(tmp_path):
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    result = _script(env={"PYTHON": str(fake)})
    assert result.returncode == 1 and "pip install -e" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_the_gpu_script_stops_with_a_clear_message_without_a_gpu(tmp_path):
    result = _script("--output-dir", str(tmp_path))
    assert result.returncode == 1 and "sees no CUDA GPU" in result.stderr and "--device cpu --quick" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing ran


def _sample_run(run: Path) -> None:
    """What gpu_check.sh leaves behind, reduced to the fields the section reads."""
    (run / "profile").mkdir(parents=True)
    (run / "profile" / "device_model.json").write_text(json.dumps({
        "kind": "relative_linear",
        "device": {"name": "NVIDIA H200", "torch": "2.13.0+cu126", "date": "2026-12-01", "dtype": "fp32",
                   "batches": [1, 8, 32, 128], "probe": {"total_ms": 0.21}},
        "metrics": {"points": 100, "profile_seconds": 61.5,
                    "cv": {"relative_linear": {"mdape": 0.081, "within_10pct": 0.6, "kendall_tau": 0.93}}}}))
    (run / "blocks").mkdir()
    (run / "blocks" / "metrics.json").write_text(json.dumps({
        "count": 128, "mdape": 0.12, "within_10pct": 0.45, "kendall_tau": 0.9,
        "within_layer_kendall": {"mean": 0.8}, "drift": None}))
    for batch, drift in ((1, None), (32, {"ratio": 1.08, "noise": 0.05, "drifted": True})):
        directory = run / f"networks_b{batch}"
        directory.mkdir()
        (directory / "metrics.json").write_text(json.dumps({
            "count": 2, "mdape": 0.1, "within_5pct": 0.5, "within_10pct": 0.5, "bias": -0.05, "kendall_tau": 1.0,
            "worst": [{"name": "resnet50", "error": -0.2}], "drift": drift,
            "networks": {"batch": batch, "selection": "resnet50,mobilenet_v2"}}))
        rows = [{"name": "resnet50", "round_ms": [10.0, 11.0, 10.0]}, {"name": "mobilenet_v2", "round_ms": [4, 4, 4]}]
        (directory / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "search").mkdir()
    (run / "search" / "result.json").write_text(json.dumps({
        "predicted_latency_ms": 0.4, "measured_latency_ms": 0.5, "accuracy": 0.9, "measured_drift": None}))


def test_gpu_results_are_collected_and_rendered(tmp_path):
    _sample_run(tmp_path / "run")
    result = gpu_section.collect(tmp_path / "run", seconds=420)
    assert result["device"] == "NVIDIA H200" and [n["batch"] for n in result["networks"]] == [1, 32]
    # resnet50: the odd pass 11 against the even passes' 10 -> 10% off; mobilenet_v2 0 -> MdAPE (0 + 0.1) / 2
    assert result["networks"][0]["floor"]["mdape"] == pytest.approx(0.05)
    results = tmp_path / "results"
    gpu_section.main(["collect", str(tmp_path / "run"), "--output", str(results), "--seconds", "420"])
    assert (results / "nvidia-h200.json").exists()
    text = gpu_section.render(results)
    assert text.startswith("## GPU") and "### NVIDIA H200" in text and "whole networks, batch 32" in text
    assert "held-out blocks (reduced test set) | 128 | 12.0%" in text and "the whole check took 420 s" in text
    assert "+8.0% (noise ±5.0%); drifted" in text and "`resnet50,mobilenet_v2`" in text


def test_without_results_the_section_says_how_to_fill_it(tmp_path):
    assert "No GPU results yet: run `bash benchmarks/gpu_check.sh`" in gpu_section.render(tmp_path / "none")


def test_the_section_is_replaced_in_place_or_added_before_the_data(tmp_path):
    document = tmp_path / "BENCHMARKS.md"
    document.write_text("# Benchmarks\n\n## Whole networks\n\ntext\n\n## Data\n\ncache\n")
    gpu_section.update(document, tmp_path / "none")
    first = document.read_text()
    assert first.index("## Whole networks") < first.index("## GPU") < first.index("## Data")
    _sample_run(tmp_path / "run")
    gpu_section.main(["collect", str(tmp_path / "run"), "--output", str(tmp_path / "results")])
    gpu_section.update(document, tmp_path / "results")
    second = document.read_text()
    assert second.count("## GPU") == 1 and "### NVIDIA H200" in second and "No GPU results yet" not in second
    assert second.endswith("## Data\n\ncache\n") and "## Whole networks\n\ntext\n" in second
    gpu_section.update(document, tmp_path / "results")
    assert document.read_text() == second  # idempotent


def test_the_checked_in_document_has_its_gpu_section():
    text = (REPO / "docs" / "BENCHMARKS.md").read_text()
    assert text.count("\n## GPU\n") == 1


def test_the_repeat_floor_pairs_even_and_odd_passes():
    rows = [{"round_ms": [10.0, 12.0, 10.0, 12.0]}, {"round_ms": [5.0, 5.0]}, {"round_ms": [7.0]}]
    floor = whole_networks.repeat_floor(rows)
    # first: the odd passes' 12 against the even passes' 10 -> +20%; second: 0; the single-pass one is left out
    assert floor["count"] == 2 and floor["mdape"] == pytest.approx(0.1) and floor["within_5pct"] == 0.5
    assert floor["bias"] == pytest.approx(0.1)
    assert whole_networks.repeat_floor([{"round_ms": [3.0]}]) is None


def test_the_whole_network_section_renders_every_regime(tmp_path):
    scores = {"count": 2, "mdape": 0.1, "within_5pct": 0.5, "within_10pct": 1.0, "bias": 0.02, "kendall_tau": 1.0}
    default = {**scores, "worst": [{"name": "resnet18", "error": 0.12}], "kinds": {"cnn": {**scores}}}
    eager = {"resnet18": 30.0, "proxylessnas#100": 12.0, "deit_tiny": 20.0}
    onnx = {"resnet18": 20.0, "proxylessnas#100": 5.0, "deit_tiny": 21.0}  # deit and resnet change order

    def rows(measured):
        return [{"name": name, "kind": "cnn", "measured_ms": ms, "predicted_ms": 1.1 * ms} for name, ms in
                measured.items()]

    summaries = [{"regime": {"name": regime.name, "slug": regime.slug, "threads": regime.threads,
                             "batch": regime.batch, "profile_slug": regime.profile_slug},
                  "networks": 3, "rounds": 4, "model_batches": [1, 2, 4], "measured_ms": [12.0, 30.0],
                  "drift": {"ratio": 1.02, "noise": 0.05}, "profile_seconds": 70.0, "profile_cv_mdape": 0.1,
                  "rows": rows(onnx if regime.runtime == "onnxruntime" else eager),
                  "scores": {whole_networks.FLOOR: scores, "default model": default, "FLOPs": default}}
                 for regime in whole_networks.REGIMES]
    text = whole_networks.render(summaries, tmp_path)
    assert text.count("### ") == len(whole_networks.REGIMES) + 2 and "repeat floor" in text
    assert "| ONNX Runtime, 1 thread, batch 1 | cnn | 3 | MdAPE | ≤ 5% | 10.0% | missed by 5.0 points |" in text
    assert "Eager PyTorch against ONNX Runtime" in text and "1 of 3 pairs of networks change order" in text
    assert "Eager latency over ORT latency: 0.95-2.40 (median 1.50)" in text
    assert "batch 8 lies outside the profiled batches [1, 2, 4]" in text and "profiled at 2 threads" in text
    assert "drift probe before measuring: +2.0%" in text and (tmp_path / "zoo_networks.png").exists()


def test_networks_a_runtime_cannot_run_are_left_out_with_their_reason():
    """One network ORT cannot export must not stop the per-class section: it is named with its reason."""
    from nni_latency.errors import MeasurementError
    from nni_latency.evaluate.selection import select_networks
    from nni_latency.runtimes.protocol import MeasurementProtocol

    class Refusing:
        def count(self, module, shape):
            raise MeasurementError("Net cannot be exported to ONNX (operator X is not supported); use torch")

    specs = select_networks("squeezenet1_1", seed=0, spaces={})
    results, left_out = op_classes.network_rows(specs, {"default model": Refusing()}, MeasurementProtocol())
    assert results == [] and "operator X is not supported" in left_out["squeezenet1_1"]
    text = op_classes.render({"models": ["default model"], "runtime": "torch",
                              "sets": {"zoo": {"networks": 0, "rows": [], "left_out": left_out}}})
    assert "Left out: squeezenet1_1: Net cannot be exported" in text
