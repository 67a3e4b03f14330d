"""Whole-network evaluation: scoring against hand-computed cases, resume, the files, the plot and the command,
all with fake timings (latency from the parameter count), so nothing here is timed."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nni_latency.cli import dispatch as cli
from nni_latency.evaluate import networks as network_evaluation
from nni_latency.evaluate.networks import evaluate_networks, format_networks, score_networks
from nni_latency.files.fileio import read_jsonl
from nni_latency.model.coverage import CoverageWarning
from nni_latency.plots import networks_figure
from nni_latency.runtimes.measurement import LatencyMeasurement

TWO = "squeezenet1_1,mobilenet_v3_small"
SIZE = 32


def _latency(module) -> float:
    return 1.0 + sum(p.numel() for p in module.parameters()) / 1e6


class FakeMeasure:
    """``measure(module, shape)`` with a latency from the parameter count (times ``scale``); counts calls and
    can be told to interrupt after some."""

    def __init__(self, scale: float = 1.0, interrupt_after: int | None = None):
        self.scale, self.interrupt_after, self.calls = scale, interrupt_after, 0

    def __call__(self, module, shape):
        if self.interrupt_after is not None and self.calls >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls += 1
        return LatencyMeasurement((self.scale * _latency(module) * shape[0],), 1, "rotate", 1)


@pytest.fixture
def model_path(synthetic_model, tmp_path):
    path = tmp_path / "device_model.json"
    synthetic_model.save(path)
    return path


# (id, rows as (name, kind, measured, predicted), expected subset of score_networks)
SCORE_CASES = [
    # errors +0.0625, -0.125, 0, +0.25 (binary-exact): MdAPE 0.09375, 1 of 4 within 5%, 2 within 10%,
    # bias (0 + 0.0625) / 2, the ranking kept; worst first by |error|, signed
    ("mixed", [("a", "cnn", 16, 17), ("b", "cnn", 8, 7), ("c", "transformer", 4, 4), ("d", "hub", 2, 2.5)],
     {"count": 4, "mdape": 0.09375, "within_5pct": 0.25, "within_10pct": 0.5, "bias": 0.03125, "kendall_tau": 1.0,
      "worst": [("d", 0.25), ("b", -0.125), ("a", 0.0625), ("c", 0.0)],
      "kinds": {"cnn": {"count": 2, "mdape": 0.09375, "bias": -0.03125}, "transformer": {"count": 1, "mdape": 0.0},
                "hub": {"count": 1, "bias": 0.25}}}),
    # one swapped pair of six -> tau (5 - 1) / 6; errors 0, +1, -0.5, 0: MdAPE 0.25, bias 0, ties keep their order
    ("swap", [("a", "cnn", 1, 1), ("b", "cnn", 2, 4), ("c", "hybrid", 4, 2), ("d", "hybrid", 8, 8)],
     {"count": 4, "mdape": 0.25, "within_5pct": 0.5, "within_10pct": 0.5, "bias": 0.0, "kendall_tau": 4 / 6,
      "worst": [("b", 1.0), ("c", -0.5), ("a", 0.0), ("d", 0.0)],
      "kinds": {"cnn": {"count": 2, "mdape": 0.5, "kendall_tau": 1.0}, "hybrid": {"count": 2, "bias": -0.25}}}),
]


@pytest.mark.parametrize("rows, expected", [c[1:] for c in SCORE_CASES], ids=[c[0] for c in SCORE_CASES])
def test_score_networks_matches_hand_values(rows, expected):
    scores = score_networks([{"name": n, "kind": k, "measured_ms": m, "predicted_ms": p} for n, k, m, p in rows])
    for name in ("count", "mdape", "within_5pct", "within_10pct", "bias", "kendall_tau"):
        assert scores[name] == pytest.approx(expected[name]), name
    assert [(w["name"], w["error"]) for w in scores["worst"]] == expected["worst"]
    kinds = {name: kind for name, kind, _, _ in rows}
    assert all(w["kind"] == kinds[w["name"]] for w in scores["worst"])
    assert list(scores["kinds"]) == list(expected["kinds"])  # in the order of NETWORK_KINDS
    for kind, values in expected["kinds"].items():
        for name, value in values.items():
            assert scores["kinds"][kind][name] == pytest.approx(value), (kind, name)


def test_a_kind_with_one_network_has_no_ranking():
    scores = score_networks([{"name": "a", "kind": "hub", "measured_ms": 2.0, "predicted_ms": 2.5}])
    assert math.isnan(scores["kinds"]["hub"]["kendall_tau"]) and scores["worst"][0]["measured_ms"] == 2.0


def test_score_networks_keeps_only_the_five_worst():
    rows = [{"name": f"n{i}", "kind": "cnn", "measured_ms": 10.0, "predicted_ms": 10.0 + i} for i in range(8)]
    assert [w["name"] for w in score_networks(rows)["worst"]] == ["n7", "n6", "n5", "n4", "n3"]


def test_evaluation_writes_predictions_metrics_and_the_plot(synthetic_model, tmp_path):
    fake = FakeMeasure()
    state = torch.random.get_rng_state()
    result = evaluate_networks(synthetic_model, TWO, tmp_path, image_size=SIZE, rounds=2, measure=fake,
                               progress=False)
    assert torch.equal(state, torch.random.get_rng_state())
    assert fake.calls == 4  # 2 networks x 2 rounds, interleaved
    rounds = list(read_jsonl(tmp_path / "networks.jsonl"))
    assert [(r["name"], r["round"]) for r in rounds] == [("squeezenet1_1", 0), ("mobilenet_v3_small", 0),
                                                         ("squeezenet1_1", 1), ("mobilenet_v3_small", 1)]
    assert rounds[0]["key"] == f"squeezenet1_1_b1_{SIZE}px" and rounds[0]["kind"] == "cnn"
    predictions = list(read_jsonl(tmp_path / "predictions.jsonl"))
    assert [p["name"] for p in predictions] == ["squeezenet1_1", "mobilenet_v3_small"]
    for row in predictions:
        assert set(row) >= {"name", "kind", "measured_ms", "predicted_ms", "error", "rounds"}
        assert row["rounds"] == 2 and row["error"] == pytest.approx(row["predicted_ms"] / row["measured_ms"] - 1)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["count"] == 2 and set(metrics) >= {"mdape", "within_5pct", "within_10pct", "bias", "kendall_tau",
                                                      "worst", "kinds", "model", "networks", "drift"}
    assert metrics["networks"]["rounds"] == 2 and metrics["networks"]["image_size"] == SIZE
    assert metrics["drift"] is None  # the synthetic model has no probe
    assert (tmp_path / "networks_pred_vs_measured.png").stat().st_size > 0
    assert (tmp_path / "networks_pred_vs_measured.svg").exists()
    text = format_networks(result)
    assert "squeezenet1_1" in text and "MdAPE" in text and "within ±5%" in text and "worst:" in text


def test_networks_are_built_afresh_for_every_round(synthetic_model, tmp_path, monkeypatch):
    from nni_latency.evaluate.selection import NetworkSpec

    built = []
    original = NetworkSpec.build
    monkeypatch.setattr(NetworkSpec, "build", lambda self, *a, **k: built.append(self.name) or original(self, *a, **k))
    evaluate_networks(synthetic_model, TWO, tmp_path, image_size=SIZE, rounds=3, measure=FakeMeasure(),
                      progress=False)
    assert built.count("squeezenet1_1") == 3 + 1  # once per round, once to predict


@pytest.mark.parametrize("interrupt_after", [1, 3])
def test_an_interrupted_evaluation_resumes_measuring_only_the_rest(synthetic_model, tmp_path, interrupt_after):
    with pytest.raises(KeyboardInterrupt):
        evaluate_networks(synthetic_model, TWO, tmp_path, image_size=SIZE, rounds=2,
                          measure=FakeMeasure(interrupt_after=interrupt_after), progress=False)
    assert len(list(read_jsonl(tmp_path / "networks.jsonl"))) == interrupt_after
    rest = FakeMeasure()
    result = evaluate_networks(synthetic_model, TWO, tmp_path, image_size=SIZE, rounds=2, measure=rest,
                               progress=False)
    assert rest.calls == 4 - interrupt_after and all(r["rounds"] == 2 for r in result.rows)
    again = FakeMeasure()
    evaluate_networks(synthetic_model, TWO, tmp_path, image_size=SIZE, rounds=2, measure=again, progress=False)
    assert again.calls == 0


def test_another_batch_is_measured_as_other_rows(synthetic_model, tmp_path):
    evaluate_networks(synthetic_model, "squeezenet1_1", tmp_path, image_size=SIZE, rounds=1, measure=FakeMeasure(),
                      progress=False)
    fake = FakeMeasure()
    with pytest.warns(CoverageWarning, match="batch 2 lies outside"):
        result = evaluate_networks(synthetic_model, "squeezenet1_1", tmp_path, batch=2, image_size=SIZE, rounds=1,
                                   measure=fake, progress=False)
    assert fake.calls == 1 and result.rows[0]["batch"] == 2


def test_the_drift_probe_is_timed_before_measuring_when_the_model_has_one(synthetic_model, tmp_path):
    from nni_latency.measure.drift import record_probe

    model = synthetic_model
    model.device["probe"] = record_probe(model.protocol, measure=FakeMeasure())
    result = evaluate_networks(model, "squeezenet1_1", tmp_path, image_size=SIZE, rounds=1,
                               measure=FakeMeasure(scale=1.0), progress=False)
    assert result.drift is not None and not result.drift.drifted
    assert json.loads((tmp_path / "metrics.json").read_text())["drift"]["ratio"] == pytest.approx(1.0)


def _overlaps(labels, renderer) -> bool:
    boxes = [label.get_window_extent(renderer) for label in labels if label.get_visible() and label.get_text()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


@pytest.mark.parametrize("low, high", [(10.2, 12.5), (3.0, 40.0), (0.5, 300.0), (0.05, 2000.0)],
                         ids=["narrow", "decade", "wide", "huge"])
def test_plot_tick_labels_never_overlap(low, high):
    import numpy as np

    values = np.geomspace(low, high, 6)
    rows = [{"name": f"net{i}", "kind": kind, "measured_ms": v, "predicted_ms": v * (1.2 if i % 2 else 0.9)}
            for i, (v, kind) in enumerate(zip(values, ["cnn", "transformer", "hybrid", "hub", "cnn", "cnn"]))]
    figure = networks_figure(rows, "title")
    renderer = figure.canvas.get_renderer()
    figure.canvas.draw()
    axes = figure.axes[0]
    assert len([t for t in axes.get_xticklabels() if t.get_text()]) >= 2
    assert not _overlaps(axes.get_xticklabels(), renderer) and not _overlaps(axes.get_yticklabels(), renderer)
    assert len(axes.texts) == 5  # the five worst are named
    from nni_latency.plots import pyplot

    pyplot().close(figure)


def _run_cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_networks_command_end_to_end(model_path, tmp_path, monkeypatch, capsys):
    fake = FakeMeasure()
    # each network in a fresh process of its own: the builder the child would call, and its timing, faked here
    monkeypatch.setattr(network_evaluation, "measure_fresh", lambda build, shape, protocol: fake(build(), shape))
    out = tmp_path / "out"
    argv = ["evaluate", "--model", str(model_path), "--networks", TWO, "--image-size", str(SIZE), "--rounds", "2",
            "--output-dir", str(out), "--no-progress"]
    code, stdout, _ = _run_cli(argv, capsys)
    assert code == 0 and fake.calls == 4
    assert "squeezenet1_1" in stdout and "mobilenet_v3_small" in stdout and "MdAPE" in stdout
    assert "networks_pred_vs_measured.png" in stdout and (out / "metrics.json").exists()
    code, stdout, _ = _run_cli(argv, capsys)  # everything measured: resumes without timing
    assert code == 0 and fake.calls == 4


@pytest.mark.parametrize("extra, message", [
    (["--networks", "resnet81"], "unknown network 'resnet81' (did you mean 'resnet18'?)"),
    (["--batch", "2"], "--batch applies with --networks only"),
    (["--networks", "resnet18", "--dataset", "x.jsonl"], "--dataset applies to the block test set"),
    (["--networks", "resnet18", "--set", "seed=1"], "--set applies to the block test set"),
    (["--networks", "resnet18", "--rounds", "0"], "--rounds must be at least 1"),
    (["--networks", "resnet18", "--batch", "0"], "--batch must be at least 1"),
    (["--networks", "resnet18", "--device", "tpu"], "unknown device 'tpu'"),
], ids=["unknown_name", "batch_without_networks", "dataset", "set", "rounds", "batch", "device"])
def test_bad_network_inputs_exit_with_one_line_errors(model_path, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.setattr(network_evaluation, "measure_latency", lambda *a, **k: pytest.fail("measured"))
    code, _, stderr = _run_cli(["evaluate", "--model", str(model_path), "--output-dir", str(tmp_path / "o"), *extra],
                               capsys)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error(model_path, tmp_path, capsys):
    code, _, stderr = _run_cli(["evaluate", "--model", str(model_path), "--networks", "resnet18", "--device", "cuda",
                                "--output-dir", str(tmp_path / "o")], capsys)
    assert code == 2 and "no CUDA GPU" in stderr


def test_plain_glibc_gets_the_allocator_advice(synthetic_model, tmp_path, monkeypatch, capsys):
    synthetic_model.device["allocator"] = "default"
    path = tmp_path / "model.json"
    synthetic_model.save(path)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(network_evaluation, "measure_latency", lambda module, shape, protocol: FakeMeasure()(module,
                                                                                                         shape))
    code, stdout, _ = _run_cli(["evaluate", "--model", str(path), "--networks", "squeezenet1_1", "--image-size",
                                str(SIZE), "--rounds", "1", "--output-dir", str(tmp_path / "o"), "--no-progress"],
                               capsys)
    assert code == 0 and "up to ~35%" in stdout and "jemalloc" in stdout and "timing.allocator: steady" in stdout
