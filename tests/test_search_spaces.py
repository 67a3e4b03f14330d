"""``nni-latency search`` on any space: the space and strategy sections, their one-line errors, a budget below
the fastest architecture, the DARTS cell-space smoke config end to end, and a multi-trial search with the
profiler as the budget filter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nni_latency.cli.dispatch import main
from nni_latency.search.config import SEARCH_DEFAULTS, STRATEGIES, SearchConfig, load_search_config
from nni_latency.search.multitrial import mnasnet_reward
from nni_latency.spaces.hub import SPACES

REPO = Path(__file__).resolve().parents[1]
DARTS_SMOKE = REPO / "examples" / "darts_search" / "smoke.yaml"
pytestmark = pytest.mark.filterwarnings("ignore::nni_latency.model.model.OutOfRangeWarning", "ignore::UserWarning")


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "search.yaml"
    base = "" if text.startswith("latency:") else "latency: {profile: cpu}\n"  # a case may bring its own section
    path.write_text(base + text, encoding="utf-8")
    return path


def _error(path, overrides=()) -> str:
    with pytest.raises(ValueError) as raised:
        load_search_config(path, overrides)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_every_space_has_search_defaults():
    assert set(SEARCH_DEFAULTS) == set(SPACES)


def test_space_arguments_are_further_keys_of_the_space_section(tmp_path):
    config = load_search_config(_write(tmp_path, "space: {name: darts, input_size: 32, width: [8, 16]}\n"))
    assert config.space.name == "darts" and config.space.input_size == 32
    assert config.space.arguments == {"width": [8, 16], "num_cells": 6}  # num_cells from the search defaults
    smoke = load_search_config(DARTS_SMOKE, ["space.num_cells=2"])
    assert smoke.space.arguments["num_cells"] == 2 and smoke.strategy.name == "darts"


CONFIG_ERRORS = {
    "space_name": ("space: {name: dartz}\n", ["space.name 'dartz' is unknown", "did you mean 'darts'", "nasbench201"]),
    "space_argument": ("space: {name: darts, widht: 8}\n", ["darts has no space key 'widht'", "did you mean 'width'"]),
    "space_number": ("space: {name: nasbench201, stem_out_channels: many}\n", ["stem_out_channels='many' must be a number"]),
    "strategy_name": ("strategy: {name: evolutoin}\n", ["strategy.name 'evolutoin'", "did you mean 'evolution'",
                                                      ", ".join(STRATEGIES)]),
    "filter_without_budget": ("strategy: {name: random}\n", ["multi_trial.latency filter needs a budget"]),
    "trial_latency": ("strategy: {name: random}\nmulti_trial: {latency: objectve}\n", ["did you mean 'objective'"]),
    "one_shot_without_tables": ("space: {name: nasbench101}\n", ["space nasbench101 has no latency tables",
                                                                "evolution or random"]),
    "multi_trial_without_retraining": ("latency: {profile: cpu, target_ms: 5}\nstrategy: {name: random}\nretrain: off\n",
                                       ["retrain.epochs must be at least 1 with a multi-trial strategy"]),
}


@pytest.mark.parametrize("text, fragments", CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_bad_space_and_strategy_sections_are_one_line_errors(tmp_path, text, fragments):
    message = _error(_write(tmp_path, text))
    for fragment in fragments:
        assert fragment in message


def test_enas_without_its_extras_says_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "pip install gym tianshou" in _error(_write(tmp_path, "strategy: {name: enas}\n"))


@pytest.fixture(scope="module")
def tiny_darts(synthetic_dataset):
    from nni_latency.model.model import LatencyModel
    from nni_latency.nas import LatencyProfiler
    from nni_latency.spaces.hub import build_space

    _, rows, latencies = synthetic_dataset
    model = LatencyModel.fit(rows, latencies, kind="relative_linear", device={"dtype": "fp32", "batch": 1})
    space = build_space("darts", 8, 10, width=4, num_cells=3)
    return LatencyProfiler(space, (1, 3, 8, 8), model)


@pytest.mark.parametrize("name, strategy_class, penalty_class", [
    ("fbnet", "FBNet", "FBNetLatencyLoss"),
    ("darts", "LatencyDARTS", "FBNetLatencyLoss"),
    ("proxyless", "LatencyProxyless", "FBNetLatencyLoss"),
    ("gumbel_darts", "GumbelDARTS", "ExpectationProfilerPenalty"),
    ("enas", "ENAS", "SampleProfilerPenalty"),
])
def test_each_one_shot_strategy_gets_its_latency_term(name, strategy_class, penalty_class, tiny_darts):
    from nni_latency.search.strategies import build_strategy

    config = SearchConfig()
    config.strategy.name = name
    strategy, _ = build_strategy(config, tiny_darts)
    assert type(strategy).__name__ == strategy_class
    penalty = getattr(strategy, "latency_loss", None) or strategy.penalty
    assert type(penalty).__name__ == penalty_class


def test_mnasnet_objective_rewards_accuracy_and_penalises_latency():
    assert mnasnet_reward(0.9, 2.0, 2.0, -0.07) == pytest.approx(0.9)
    assert mnasnet_reward(0.9, 4.0, 2.0, -0.07) < 0.9 < mnasnet_reward(0.9, 1.0, 2.0, -0.07)


@pytest.fixture
def device_model_path(tmp_path, synthetic_model):
    path = tmp_path / "device_model.json"
    synthetic_model.save(path)
    return path


def _search(tmp_path, device_model_path, config, *overrides) -> tuple[int, Path]:
    output = tmp_path / "run"
    arguments = ["search", "--config", str(config), "--output-dir", str(output), "--no-progress",
                 "--set", f"latency.device_model={device_model_path}"]
    for override in overrides:
        arguments += ["--set", override]
    return main(arguments), output


def test_budget_below_the_fastest_architecture_is_refused_before_training(tmp_path, device_model_path, capsys):
    code, output = _search(tmp_path, device_model_path, DARTS_SMOKE, "latency.target_ms=0.001")
    assert code == 2
    error = capsys.readouterr().err
    assert "latency.target_ms=0.001 ms is unreachable" in error and "fastest architecture" in error
    assert not (output / "result.json").exists()


def test_darts_cell_space_smoke_config_end_to_end(tmp_path, device_model_path):
    code, output = _search(tmp_path, device_model_path, DARTS_SMOKE, "trainer.epochs=1", "data.limit=100")
    assert code == 0
    result = json.loads((output / "result.json").read_text())
    architecture = result["architecture"]
    assert {label.split("/")[0] for label in architecture} == {"normal", "reduce"}
    assert all(isinstance(architecture[f"normal/input_{i}_0"], list) for i in range(2, 6))
    assert result["predicted_latency_ms"] > 0 and result["measured_latency_ms"] > 0
    assert result["strategy"] == "darts" and result["space"]["name"] == "darts"
    for label in ("normal/op_2_0", "normal/input_2_0"):  # slot marginals of the cell's edge logits
        assert abs(sum(result["probabilities"][label].values()) - 1) < 1e-5
    assert (output / "probabilities.md").stat().st_size > 0


def test_multi_trial_search_with_the_profiler_as_budget_filter(tmp_path, device_model_path):
    config = tmp_path / "trials.yaml"
    config.write_text("space: {name: nasbench201, input_size: 8}\n"
                      "data: {limit: 100, batch_size: 32}\n"
                      "strategy: {name: random}\n"
                      "multi_trial: {trials: 2, trial_epochs: 1}\n"
                      "latency: {target_ms: 1000.0}\n"
                      "retrain: {epochs: 1}\n", encoding="utf-8")
    code, output = _search(tmp_path, device_model_path, config)
    assert code == 0
    result = json.loads((output / "result.json").read_text())
    trials = result["trials"]
    assert len(trials) == 2 and all(t["latency_ms"] <= 1000.0 for t in trials)
    best = max(trials, key=lambda t: t["reward"])
    assert result["architecture"] == best["sample"]
    assert result["predicted_latency_ms"] == pytest.approx(best["latency_ms"])
    assert "filter" in result["strategy"]


def test_a_new_multi_trial_search_keeps_the_previous_trials_aside(tmp_path, device_model_path):
    """A new search (not execution.resume) into a folder holding another's trials.jsonl keeps it aside, as it keeps
    result.json, instead of deleting it."""
    config = tmp_path / "trials.yaml"
    config.write_text("space: {name: nasbench201, input_size: 8}\n"
                      "data: {limit: 60, batch_size: 32}\n"
                      "strategy: {name: random}\n"
                      "multi_trial: {trials: 1, trial_epochs: 1}\n"
                      "latency: {target_ms: 1000.0}\n"
                      "retrain: {epochs: 1}\n", encoding="utf-8")
    code, output = _search(tmp_path, device_model_path, config)
    assert code == 0
    first = {name: (output / name).read_text() for name in ("trials.jsonl", "result.json")}
    code, output = _search(tmp_path, device_model_path, config, "trainer.seed=1")
    assert code == 0
    for name, text in first.items():
        stem, suffix = name.rsplit(".", 1)
        kept = list(output.glob(f"{stem}.*.{suffix}"))
        assert len(kept) == 1 and kept[0].read_text() == text, name
    assert len((output / "trials.jsonl").read_text().splitlines()) == 1  # the new search's own trial only
