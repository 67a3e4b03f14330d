"""``nni-latency search``: the YAML schema and its errors, the datasets and their errors, the report files,
the supernet helpers, and the smoke config end to end with a synthetic device model (no profiling)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nni_latency.cli.dispatch import main
from nni_latency.files.formats import MODEL_FORMAT
from nni_latency.search.config import DataConfig, SearchConfig, load_search_config
from nni_latency.search.data import load_splits
from nni_latency.search.report import plot_curves, plot_probabilities, write_probabilities, write_result
from nni_latency.spaces import CANDIDATE_NAMES

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "examples" / "fbnet_search" / "smoke.yaml"
# the synthetic device model has no matmul rows, so the classifier is out of its range; expected here
pytestmark = pytest.mark.filterwarnings("ignore::nni_latency.model.model.OutOfRangeWarning")


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _error(*args, **kwargs) -> str:
    with pytest.raises(ValueError) as raised:
        load_search_config(*args, **kwargs)
    message = str(raised.value)
    assert "\n" not in message
    return message


# --- config -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [None, "fbnet_search.yaml", SMOKE], ids=["default", "packaged_name", "smoke"])
def test_shipped_configs_load_and_validate(path):
    config = load_search_config(path)
    assert isinstance(config, SearchConfig)
    assert set(config.space.arguments.get("candidates", CANDIDATE_NAMES)) <= set(CANDIDATE_NAMES)
    assert config.latency.device_model is not None or config.latency.profile is not None


def test_output_dir_flag_and_yaml_scalar_overrides(tmp_path):
    config = load_search_config(SMOKE, ["latency.alpha=0", "trainer.devices=[0, 1]", "latency.target_ms=2.5",
                                        "data.limit=null"], output_dir=str(tmp_path / "out"))
    assert config.latency.alpha == 0.0 and isinstance(config.latency.alpha, float)
    assert config.trainer.devices == [0, 1]
    assert config.latency.target_ms == 2.5 and config.data.limit is None
    assert config.output_dir == str(tmp_path / "out")


def test_retrain_off_means_zero_epochs(tmp_path):
    assert load_search_config(_write(tmp_path, "latency: {profile: cpu}\nretrain: off\n")).retrain.epochs == 0


CONFIG_ERRORS = {
    "unknown_section": ("latncy: {alpha: 1}\n", [], ["unknown key config.latncy", "did you mean 'latency'"]),
    "unknown_nested_key": ("latency: {profile: cpu, alpah: 1}\n", [], ["config.latency.alpah", "did you mean 'alpha'"]),
    "wrong_type": ("trainer: {epochs: many}\n", [], ["config.trainer.epochs must be int"]),
    "bad_set_key": ("", ["latency.alpah=0"], ["config.latency.alpah", "did you mean 'alpha'"]),
    "bad_set_section": ("", ["trainr.epochs=1"], ["config.trainr", "did you mean 'trainer'"]),
    "bad_set_syntax": ("", ["latency.alpha"], ["must look like dotted.key=value"]),
    "bad_set_value": ("", ["trainer.epochs=1.5"], ["config.trainer.epochs must be int"]),
    "unknown_dataset": ("data: {dataset: cifar100, path: x}\n", [], ["data.dataset 'cifar100'", "cifar10"]),
    "dataset_without_path": ("data: {dataset: cifar10}\n", [], ["needs data.path"]),
    "fractions": ("data: {val_fraction: 0.6, test_fraction: 0.5}\n", [], ["val_fraction"]),
    "no_latency_source": ("latency: {profile: null}\n", [], ["latency.device_model", "latency.profile"]),
    "loss_mode": ("latency: {profile: cpu, mode: pow}\n", [], ["latency.mode must be one of mul, add"]),
    "strategy_name": ("strategy: {name: fbnett}\n", [], ["strategy.name 'fbnett'", "did you mean 'fbnet'"]),
    "candidate_name": ("space: {candidates: [k3_e6, k7_e6]}\n", [], ["space.candidates", "k7_e6"]),
    "warmup_too_long": ("trainer: {epochs: 2}\nstrategy: {warmup_epochs: 2}\n", [], ["never trained"]),
}


@pytest.mark.parametrize("text,overrides,fragments", CONFIG_ERRORS.values(), ids=CONFIG_ERRORS.keys())
def test_config_errors_are_one_line_and_name_the_key(tmp_path, text, overrides, fragments):
    base = "" if "latency:" in text else "latency: {profile: cpu}\n"
    message = _error(_write(tmp_path, base + text), overrides)
    for fragment in fragments:
        assert fragment in message


def test_missing_config_file_is_an_error(tmp_path):
    assert "cannot be read" in _error(tmp_path / "absent.yaml")


def test_cli_reports_config_errors_with_the_command_name(tmp_path, capsys):
    code = main(["search", "--config", str(_write(tmp_path, "trainer: {epohcs: 1}\n"))])
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("nni-latency search: error:") and "did you mean 'epochs'" in error


# --- data ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("limit,input_size", [(None, 8), (200, 16)])
def test_digits_splits_are_stratified_and_resized(limit, input_size):
    splits = load_splits(DataConfig(limit=limit, val_fraction=0.2, test_fraction=0.2), input_size)
    sizes = splits.sizes()
    total = sum(sizes.values())
    assert total == (limit or 1797) and splits.num_classes == 10
    assert sizes["test"] == pytest.approx(0.2 * total, abs=1) and sizes["val"] == pytest.approx(0.2 * total, abs=2)
    image, label = splits.train[0]
    assert image.shape == (3, input_size, input_size) and image.dtype == torch.float32 and 0 <= label < 10
    labels = [splits.val[i][1] for i in range(len(splits.val))]
    assert len(set(labels)) == 10  # every class in the val split


def test_splits_are_deterministic():
    first, second = (load_splits(DataConfig(limit=100, seed=3), 8) for _ in range(2))
    assert torch.equal(first.test[0][0], second.test[0][0])


def _write_cifar(folder: Path, images_per_batch: int = 20) -> None:
    """A miniature CIFAR-10 in its own python-pickle format (the only place a test writes a pickle)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (images_per_batch, 3072), dtype=np.uint8),
                 b"labels": [i % 10 for i in range(images_per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


def test_cifar10_from_a_local_folder(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-py")
    splits = load_splits(DataConfig(dataset="cifar10", path=str(tmp_path), val_fraction=0.2), 16)
    assert splits.sizes() == {"train": 80, "val": 20, "test": 20} and splits.num_classes == 10
    assert splits.train[0][0].shape == (3, 16, 16)


class _Exploit:
    def __reduce__(self):
        return (Path("/tmp/should-not-exist-nni-latency").touch, ())


DATA_ERRORS = {
    "missing_path": (None, "does not exist"),
    "missing_batches": ("missing", "lacks CIFAR-10 file(s) data_batch_5"),
    "garbage_batch": ("garbage", "is not a CIFAR-10 python batch"),
    "foreign_pickle": ("exploit", "is not allowed in a CIFAR-10 batch"),
    "wrong_keys": ("keys", "is not a CIFAR-10 python batch"),
}


@pytest.mark.parametrize("damage,fragment", DATA_ERRORS.values(), ids=DATA_ERRORS.keys())
def test_cifar10_errors_are_one_line(tmp_path, damage, fragment):
    folder = tmp_path / "cifar"
    if damage is not None:
        _write_cifar(folder)
    if damage == "missing":
        (folder / "data_batch_5").unlink()
    elif damage == "garbage":
        (folder / "data_batch_2").write_bytes(b"not a pickle at all")
    elif damage == "exploit":
        (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit()}))
    elif damage == "keys":
        (folder / "data_batch_1").write_bytes(pickle.dumps({b"images": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(ValueError) as raised:
        load_splits(DataConfig(dataset="cifar10", path=str(folder)), 8)
    assert fragment in str(raised.value) and "\n" not in str(raised.value)
    assert not Path("/tmp/should-not-exist-nni-latency").exists()


def _write_image_folder(root: Path, classes=("cat", "dog"), per_class: int = 6) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_image_folder(tmp_path):
    _write_image_folder(tmp_path)
    splits = load_splits(DataConfig(dataset="imagefolder", path=str(tmp_path), val_fraction=0.25,
                                    test_fraction=0.25), 8)
    assert splits.num_classes == 2 and sum(splits.sizes().values()) == 12
    assert splits.test[0][0].shape == (3, 8, 8)


@pytest.mark.parametrize("layout,fragment", [
    ("one_class", "is not an image folder"), ("no_images", "is not an image folder"),
    ("corrupt_image", "cannot be read"),
])
def test_image_folder_errors(tmp_path, layout, fragment):
    if layout == "one_class":
        _write_image_folder(tmp_path, classes=("cat",))
    elif layout == "no_images":
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "notes.txt").write_text("x")
    else:
        _write_image_folder(tmp_path, per_class=4)
        for path in tmp_path.rglob("*.png"):
            path.write_bytes(b"broken")
    with pytest.raises(ValueError, match=fragment):
        splits = load_splits(DataConfig(dataset="imagefolder", path=str(tmp_path), val_fraction=0.25,
                                        test_fraction=0.25), 8)
        splits.train[0]


# --- report -------------------------------------------------------------------------------------------

PROBABILITIES = {"stage1.0": {"k3_e1": 0.7, "skip": 0.3}, "stage2.0": {"k3_e1": 0.1, "k5_e6": 0.9}}
ARCHITECTURE = {"stage1.0": "k3_e1", "stage2.0": "k5_e6"}


def test_probability_table_and_heat_map(tmp_path):
    csv, markdown = write_probabilities(PROBABILITIES, ARCHITECTURE, tmp_path)
    assert csv.read_text().splitlines() == ["layer,k3_e1,skip,k5_e6,chosen", "stage1.0,0.7000,0.3000,,k3_e1",
                                            "stage2.0,0.1000,,0.9000,k5_e6"]
    assert "**0.90**" in markdown.read_text()
    png = plot_probabilities(PROBABILITIES, tmp_path / "probabilities.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


CURVES = {"steps": [{"step": i, "loss": 2.0 - 0.1 * i} for i in range(5)],
          "epochs": [{"epoch": i, "predicted_latency_ms": 1.0 - 0.1 * i, "temperature": 5.0 - i} for i in range(3)],
          "retrain": [{"epoch": 0, "val_acc": 0.5}, {"epoch": 1, "val_acc": 0.7}]}
# y label -> (x label, x, y) of the one line it shows; epochs are counted from 1
CURVE_PANELS = {
    "loss": ("step", [0, 1, 2, 3, 4], [2.0, 1.9, 1.8, 1.7, 1.6]),
    "predicted latency (ms)": ("epoch", [1, 2, 3], [1.0, 0.9, 0.8]),
    "gumbel temperature": ("", [1, 2, 3], [5.0, 4.0, 3.0]),  # a second y axis on the latency panel's x axis
    "val top-1": ("epoch", [1, 2], [0.5, 0.7]),
}


@pytest.mark.parametrize("retrain", [False, True], ids=["search_only", "with_retraining"])
def test_curves_plot_with_and_without_retraining(retrain, tmp_path, monkeypatch):
    import nni_latency.search.report as report

    figures = []
    save_figure = report.save_figure
    monkeypatch.setattr(report, "save_figure",
                        lambda figure, *args: figures.append(figure) or save_figure(figure, *args))
    history = CURVES if retrain else {key: CURVES[key] for key in ("steps", "epochs")}
    assert plot_curves(history, tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    (figure,) = figures
    panels = {axes.get_ylabel(): axes for axes in figure.axes}
    assert set(panels) == set(CURVE_PANELS) - ({"val top-1"} if not retrain else set())
    for ylabel, axes in panels.items():
        xlabel, x, y = CURVE_PANELS[ylabel]
        (line,) = axes.get_lines()
        assert axes.get_xlabel() == xlabel, ylabel
        np.testing.assert_allclose(line.get_xdata(), x, err_msg=ylabel)
        np.testing.assert_allclose(line.get_ydata(), y, err_msg=ylabel)


def test_result_needs_its_keys(tmp_path):
    with pytest.raises(ValueError, match="measured_latency_ms"):
        write_result({"architecture": {}, "predicted_latency_ms": 1.0, "accuracy": 0.5, "config": {}}, tmp_path)


# --- supernet helpers ---------------------------------------------------------------------------------

def test_supernet_computes_the_exported_architecture_while_switched():
    from nni.nas.strategy import GumbelDARTS

    from nni_latency.search.run import (_arch_layers, architecture_probabilities, exported_path, supernet_accuracy,
                                        top1_accuracy)
    from nni_latency.spaces import FBNetSpace

    torch.manual_seed(0)
    space = FBNetSpace(num_classes=4, input_size=8, width_mult=0.25, depth_mult=0.25)
    supernet = GumbelDARTS().mutate_model(space)
    layers = _arch_layers(supernet)
    assert len(layers) == 7
    chosen = {label: CANDIDATE_NAMES[i] for i, label in enumerate(layers)}
    with torch.no_grad():
        for label, layer in layers.items():
            layer._arch_alpha.zero_()
            layer._arch_alpha[layer.names.index(chosen[label])] = 3.0
    probabilities = architecture_probabilities(supernet)
    assert all(abs(sum(p.values()) - 1) < 1e-6 for p in probabilities.values())
    assert {label: max(p, key=p.get) for label, p in probabilities.items()} == chosen

    # the frozen network with the chosen candidates' supernet weights must compute the same logits
    frozen = space.freeze(chosen)
    labels_in_order, state = list(layers), {}
    for key, value in supernet.state_dict().items():
        parts = key.split(".")
        if "_arch_alpha" in key:
            continue
        if parts[0] == "layers":
            if parts[2] != chosen[labels_in_order[int(parts[1])]]:
                continue
            key = ".".join(parts[:2] + parts[3:])
        state[key] = value
    frozen.load_state_dict(state)
    supernet.eval()
    frozen.eval()
    images, labels = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    softmax_before = [layer._softmax for layer in layers.values()]
    with torch.no_grad(), exported_path(supernet):
        torch.testing.assert_close(supernet(images), frozen(images))
    assert [layer._softmax for layer in layers.values()] == softmax_before
    loader = [(images[:8], labels[:8]), (images[8:], labels[8:])]
    assert supernet_accuracy(supernet, loader) == top1_accuracy(frozen, loader)


# --- strategy and lookup table -------------------------------------------------------------------------

@pytest.fixture
def tiny_space_and_profiler(synthetic_model):
    from nni_latency.nas import LatencyProfiler
    from nni_latency.spaces import FBNetSpace

    torch.manual_seed(0)
    space = FBNetSpace(num_classes=10, input_size=8, width_mult=0.25, depth_mult=0.25)
    return space, LatencyProfiler(space, (1, 3, 8, 8), synthetic_model)


@pytest.mark.parametrize("overrides,strategy_class,penalty_class,name", [
    (["latency.alpha=0"], "GumbelDARTS", type(None), "gumbel_darts"),
    ([], "FBNet", "FBNetLatencyLoss", "fbnet"),
    (["strategy.name=gumbel_darts"], "GumbelDARTS", "ExpectationProfilerPenalty", "gumbel_darts (NNI's penalty)"),
    (["latency.target_ms=50", "latency.mode=add"], "FBNet", "FBNetLatencyLoss", "fbnet"),
])
def test_strategy_is_chosen_by_config(tiny_space_and_profiler, overrides, strategy_class, penalty_class, name):
    from nni_latency.search.run import build_strategy

    config = load_search_config(SMOKE, overrides)
    strategy, label = build_strategy(config, tiny_space_and_profiler[1])
    assert type(strategy).__name__ == strategy_class and label == name
    penalty = getattr(strategy, "latency_loss", None) or strategy.penalty
    assert type(penalty).__name__ == (penalty_class if isinstance(penalty_class, str) else penalty_class.__name__)
    assert strategy.arc_learning_rate == config.strategy.arc_learning_rate
    assert strategy.temperature == (config.strategy.temperature_init, config.strategy.temperature_min)


def _lut_file(tmp_path, profiler, scale: float | None = 2.0, measured_for: dict | None = None) -> Path:
    """A lookup table of ``profiler``'s space, 'measured' as ``scale`` x the prediction, for ``measured_for``."""
    from nni_latency.nas import predicted_rows, write_lut_json

    rows = predicted_rows(profiler)
    if scale is not None:
        from dataclasses import replace

        rows = [replace(row, measured_ms=scale * row.predicted_ms + 0.01) for row in rows]
    path = tmp_path / "lut.json"
    write_lut_json(path, rows, metadata={"measured_seconds": 1.5}, measured_for=measured_for)
    return path


def _smoke_context(device_model_path, *overrides: str) -> dict:
    """What a table must have been measured for to serve the smoke search (with ``overrides``)."""
    from nni_latency.search.preflight import lut_context

    return lut_context(load_search_config(SMOKE, [f"latency.device_model={device_model_path}", *overrides]))


def test_table_latency_reads_the_measured_column(tmp_path, tiny_space_and_profiler):
    from nni_latency.nas import FBNetLatencyLoss, LatencySource
    from nni_latency.search.lut_source import TableLatency, load_lut_rows

    space, profiler = tiny_space_and_profiler
    rows, metadata = load_lut_rows(_lut_file(tmp_path, profiler))
    assert metadata["measured_seconds"] == 1.5
    table = TableLatency(profiler, rows)
    assert isinstance(table, LatencySource) and isinstance(profiler, LatencySource)
    by_layer = {(r["layer"], r["candidate"]): r["measured_ms"] for r in rows}
    sample = {label: values[i % len(values)] for i, (label, values) in enumerate(profiler.label_values.items())}
    assert table.profile(sample) == pytest.approx(table.constant_ms + sum(by_layer[(k, v)] for k, v in sample.items()))
    assert table.uniform_expected_latency() > table.constant_ms
    # the FBNet loss contracts the table with the probabilities, with a gradient
    logits = {label: torch.zeros(len(values), requires_grad=True) for label, values in table.label_values.items()}
    loss, details = FBNetLatencyLoss(table, 1.0, 0.6, mode="add")(torch.tensor(1.0),
                                                                   {k: torch.softmax(v, -1) for k, v in logits.items()})
    loss.backward()
    assert details["latency_ms"] == pytest.approx(table.uniform_expected_latency(), rel=1e-5)
    assert all(v.grad.abs().sum() > 0 for v in logits.values())


@pytest.mark.parametrize("damage,fragment", [
    ("missing", "does not exist"), ("not_json", "cannot be read as JSON"), ("not_lut", "not an nni-latency lookup"),
    ("unmeasured", "has no measured_ms"), ("other_space", "lacks layer"),
])
def test_lookup_table_errors(tmp_path, tiny_space_and_profiler, damage, fragment):
    from nni_latency.search.lut_source import TableLatency, load_lut_rows

    _, profiler = tiny_space_and_profiler
    path = _lut_file(tmp_path, profiler, scale=None if damage == "unmeasured" else 2.0)
    if damage == "missing":
        path = tmp_path / "absent.json"
    elif damage == "not_json":
        path.write_text("{not json")
    elif damage == "not_lut":
        path.write_text(json.dumps({"rows": []}))
    elif damage == "other_space":
        data = json.loads(path.read_text())
        data["rows"] = [r for r in data["rows"] if r["layer"] != "stage3.0"]
        path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=fragment):
        TableLatency(profiler, load_lut_rows(path)[0])


# --- end to end ---------------------------------------------------------------------------------------

def load_and_build_space():
    """The space the smoke config searches (what a lookup table for it must cover)."""
    from nni_latency.search.run import build_space

    return build_space(load_search_config(SMOKE).space, num_classes=10)


@pytest.fixture
def device_model_path(tmp_path, synthetic_model):
    path = tmp_path / "device_model.json"
    synthetic_model.save(path)
    return path


E2E_CASES = {
    "predicted_latency": ([], "fbnet", 1),
    "no_latency_term_no_retraining": (["latency.alpha=0", "retrain.epochs=0"], "gumbel_darts", 0),
    "measured_lookup_table": (["latency.lut=LUT"], "fbnet", 1),
}


@pytest.mark.parametrize("overrides,strategy,retrain_epochs", E2E_CASES.values(), ids=E2E_CASES.keys())
def test_smoke_config_end_to_end(tmp_path, device_model_path, synthetic_model, capsys, overrides, strategy,
                                 retrain_epochs):
    output = tmp_path / "run"
    if any("LUT" in o for o in overrides):
        from nni_latency.nas import LatencyProfiler

        profiler = LatencyProfiler(load_and_build_space(), (1, 3, 8, 8), synthetic_model)
        table = _lut_file(tmp_path, profiler, measured_for=_smoke_context(device_model_path))
        overrides = [o.replace("LUT", str(table)) for o in overrides]
    arguments = ["search", "--config", str(SMOKE), "--output-dir", str(output), "--no-progress",
                 "--set", f"latency.device_model={device_model_path}", "--set", "trainer.epochs=2",
                 "--set", "data.limit=200", "--set", "retrain.epochs=1"]
    for override in overrides:
        arguments += ["--set", override]
    code = main(arguments)
    assert code == 0
    result = json.loads((output / "result.json").read_text())
    assert set(result["architecture"]) == {f"stage{s}.0" for s in range(1, 8)}
    assert set(result["architecture"].values()) <= set(CANDIDATE_NAMES)
    assert result["predicted_latency_ms"] > 0 and result["measured_latency_ms"] > 0
    assert 0.0 <= result["accuracy"] <= 1.0
    assert result["config"]["latency"]["device_model"] == str(device_model_path)
    assert result["latency"]["enabled"] == (strategy == "fbnet")
    assert result["latency"]["measurement"]["protocol"] == "rotate"
    for label, distribution in result["probabilities"].items():
        assert abs(sum(distribution.values()) - 1) < 1e-6
        assert result["architecture"][label] == max(distribution, key=distribution.get)
    for name in ("probabilities.csv", "probabilities.md", "probabilities.png", "curves.png", "history.json"):
        assert (output / name).stat().st_size > 0
    history = json.loads((output / "history.json").read_text())
    assert len(history["epochs"]) == 2 and len(history["retrain"]) == retrain_epochs
    assert result["strategy"] == strategy
    assert ("supernet weights" in result["accuracy_source"]) == (retrain_epochs == 0)
    assert ("lut" in result) == any("lut" in o for o in overrides)
    summary = capsys.readouterr().out
    assert "predicted latency" in summary and "measured" in summary and "accuracy" in summary


def test_curves_plot_legend_names_both_y_axes(tmp_path, monkeypatch):
    """The architecture panel has two y axes (latency, temperature): its one legend names both lines."""
    import nni_latency.search.report as report

    saved = []
    monkeypatch.setattr(report, "save_figure", lambda figure, path, suffixes: saved.append(figure))
    history = {"epochs": [{"epoch": i, "predicted_latency_ms": 1.0 - 0.1 * i, "temperature": 5.0 - i}
                          for i in range(3)]}
    plot_curves(history, tmp_path / "c.png")
    legend = saved[0].axes[1].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["argmax architecture", "temperature"]


def test_the_summary_shows_every_choice_of_a_long_stage():
    from nni_latency.search.report import _compact_architecture

    architecture = {f"normal/op_{i}_{j}": f"sep_conv_{3 + 2 * (j % 2)}x{3 + 2 * (j % 2)}" for i in range(2, 7)
                    for j in range(2)}
    lines = _compact_architecture(architecture, width=60)
    assert len(lines) > 1 and all(len(line) <= 60 for line in lines)
    assert lines[0].startswith("  normal: ") and all(line.startswith("    ") for line in lines[1:])
    assert " ".join(lines).split()[1:] == list(architecture.values())  # every choice, in order, none cut


# --- nothing replaced without a copy; every check before the work --------------------------------------------

def _smoke_arguments(output, device_model_path, *overrides: str) -> list[str]:
    arguments = ["search", "--config", str(SMOKE), "--output-dir", str(output), "--no-progress",
                 "--set", f"latency.device_model={device_model_path}", "--set", "trainer.epochs=2",
                 "--set", "data.limit=200", "--set", "retrain.epochs=1"]
    for override in overrides:
        arguments += ["--set", override]
    return arguments


SEARCH_FILES = ("result.json", "probabilities.csv", "probabilities.md", "probabilities.png", "history.json",
                "curves.png")


def test_a_second_search_into_the_same_folder_keeps_the_first_ones_files(tmp_path, device_model_path, caplog):
    import logging

    output = tmp_path / "run"
    assert main(_smoke_arguments(output, device_model_path)) == 0
    first = {name: (output / name).read_bytes() for name in SEARCH_FILES}
    caplog.set_level(logging.INFO)
    assert main(_smoke_arguments(output, device_model_path, "latency.alpha=0")) == 0
    for name in SEARCH_FILES:
        stem, suffix = name.rsplit(".", 1)
        kept = sorted(output.glob(f"{stem}.*.{suffix}"))
        assert len(kept) == 1, (name, sorted(p.name for p in output.iterdir()))
        assert kept[0].read_bytes() == first[name], name  # the first search's file, whole
        assert (output / name).stat().st_size > 0  # and the second search's beside it
    assert json.loads((output / "result.json").read_text())["latency"]["alpha"] == 0
    assert any(record.getMessage().startswith("kept the previous result.json as ") for record in caplog.records)


def _file_in_the_way(output: Path, name: str, what: str) -> None:
    output.mkdir(parents=True, exist_ok=True)
    if what == "folder":
        (output / name).mkdir()
    else:
        (output / name).write_text(json.dumps({"format": MODEL_FORMAT, "schema_version": 1}))


@pytest.mark.parametrize("name, what, fragment", [
    ("result.json", "model", "result.json in the output folder"),
    ("curves.png", "model", "holds a device model, and this command would replace it by a plot"),
    ("history.json", "folder", "is a directory, not a file"),
], ids=["model_over_result", "report_over_plot", "folder_in_the_way"])
def test_search_destinations_are_checked_before_any_work(tmp_path, device_model_path, monkeypatch, capsys, name,
                                                          what, fragment):
    import nni_latency.search.run as search_run

    def refuse(*args, **kwargs):
        raise AssertionError("the search started working")

    monkeypatch.setattr(search_run, "run_search", refuse)
    output = tmp_path / "run"
    _file_in_the_way(output, name, what)
    assert main(_smoke_arguments(output, device_model_path)) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("nni-latency search: error: ") and fragment in error


# --- a lookup table carries what it was measured for --------------------------------------------------------

LUT_MISMATCHES = {
    "input_size": ({"input_size": 16}, "input_size 16"),
    "space_argument": ({"space_args": {"width_mult": 0.5}}, "space_args.width_mult 0.5"),
    "space": ({"space": "proxylessnas"}, "space 'proxylessnas'"),
    "batch": ({"batch": 8}, "batch 8"),
    "device": ({"device": "Another CPU"}, "device 'Another CPU'"),
    "threads": ({"threads": 2}, "threads 2"),
    "dtype": ({"dtype": "bf16"}, "dtype 'bf16'"),
    "runtime": ({"runtime": "onnxruntime"}, "runtime 'onnxruntime'"),
}


@pytest.mark.parametrize("change, fragment", LUT_MISMATCHES.values(), ids=LUT_MISMATCHES.keys())
def test_a_lookup_table_measured_for_another_search_is_refused(tmp_path, device_model_path,
                                                               tiny_space_and_profiler, change, fragment):
    from nni_latency.search.lut_source import load_lut_rows

    expected = _smoke_context(device_model_path)
    recorded = {**expected, **change}
    if "space_args" in change:
        recorded["space_args"] = {**expected["space_args"], **change["space_args"]}
    path = _lut_file(tmp_path, tiny_space_and_profiler[1], measured_for=recorded)
    with pytest.raises(ValueError) as refused:
        load_lut_rows(path, expected, {"width_mult": 0.25, "depth_mult": 0.25})
    message = str(refused.value)
    assert "\n" not in message
    assert f"was measured for {fragment}" in message and "this search has" in message
    assert "nni-latency lut --model MODEL --space fbnet --space-arg width_mult=0.25" in message  # the fix
    load_lut_rows(_lut_file(tmp_path, tiny_space_and_profiler[1], measured_for=expected), expected)  # the match


def test_a_lookup_table_that_does_not_say_what_it_was_measured_for_is_refused(tmp_path, device_model_path,
                                                                             tiny_space_and_profiler):
    from nni_latency.search.lut_source import load_lut_rows

    path = _lut_file(tmp_path, tiny_space_and_profiler[1])  # as tables were written before: no measured_for
    with pytest.raises(ValueError, match="does not record the space it was measured for"):
        load_lut_rows(path, _smoke_context(device_model_path))


def test_a_table_measured_at_8_px_is_refused_by_a_search_at_16_px_before_any_work(tmp_path, device_model_path,
                                                                                  monkeypatch, capsys):
    """The campaign's case end to end: `nni-latency lut --measure` at 8 px, then a search at 16 px with it."""
    from types import SimpleNamespace

    import nni_latency.measure.latency as latency
    import nni_latency.search.run as search_run

    monkeypatch.setattr(latency, "measure_latency", lambda module, shape, *a, **k: SimpleNamespace(latency_ms=0.5))
    table = tmp_path / "lut"
    assert main(["lut", "--model", str(device_model_path), "--space", "fbnet", "--space-arg", "width_mult=0.25",
                 "--space-arg", "depth_mult=0.25", "--input-size", "8", "--measure", "--output-dir", str(table)]) == 0
    measured_for = json.loads((table / "lut.json").read_text())["measured_for"]
    assert measured_for == _smoke_context(device_model_path)  # the smoke search (8 px) is what it was measured for
    capsys.readouterr()

    def refuse(*args, **kwargs):
        raise AssertionError("the search started working")

    monkeypatch.setattr(search_run, "run_search", refuse)
    code = main(_smoke_arguments(tmp_path / "run", device_model_path, f"latency.lut={table / 'lut.json'}",
                                 "space.input_size=16"))
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1, error
    assert "was measured for input_size 8, and this search has input_size 16" in error
    assert "--input-size 16" in error  # the command that measures the right table
