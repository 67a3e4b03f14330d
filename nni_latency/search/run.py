"""One search end to end: device model -> data -> search in NNI -> retrain -> measure -> report.

The space is built by name (``nni_latency.spaces.hub``) with its profiler (latency tables, or the frozen
fallback). A one-shot strategy (``strategies``) gets the device model's latency as a differentiable term; a
multi-trial one (``multitrial``) uses the profiler as a budget filter or a second objective. No lookup table
is measured. Supernet training goes through NNI's Lightning evaluator, so the trainer section (accelerator,
devices, strategy="ddp", ...) is Lightning's own; on several processes only rank 0 measures and writes.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInput
from ..files.fileio import atomic_write_json, ensure_writable_dir
from ..measure.drift import check_drift
from ..measure.latency import measure_latency
from ..model.model import LatencyModel
from ..runtimes.protocol import protocol_of
from . import report
from .config import MULTI_TRIAL, LatencyConfig, SearchConfig, SpaceConfig
from .data import DataSplits, load_splits, make_loader
from .preflight import check_search, keep_previous_results, latency_protocol, profile_config
from .strategies import build_strategy
from .training import top1_accuracy

_logger = logging.getLogger(__name__)

__all__ = ["SearchResult", "run_search", "build_space", "load_device_model", "latency_protocol", "build_strategy",
           "measure_architecture", "supernet_accuracy", "exported_path", "top1_accuracy",
           "architecture_probabilities"]


@dataclass
class SearchResult:
    result: dict[str, Any]
    output_dir: Path
    files: list[Path] = field(default_factory=list)
    is_main_process: bool = True

    def summary(self) -> str:
        return report.format_summary(self.result, self.files)


def build_space(config: SpaceConfig, num_classes: int) -> nn.Module:
    """The configured space (``nni_latency.spaces.hub``) for the dataset's number of classes."""
    from ..spaces.hub import build_space as build

    return build(config.name, config.input_size, config.num_classes or num_classes, **config.arguments)


def load_device_model(config: LatencyConfig, output_dir: Path, progress: bool = True) -> tuple[LatencyModel, str]:
    """The device model named in the config, or a fresh one profiled into ``output_dir/profile``."""
    if config.device_model is not None:
        return LatencyModel.load(config.device_model), str(config.device_model)
    from ..profile.run import run_profile

    _logger.info("profiling %s first (latency.device_model is not set)", config.profile)
    result = run_profile(profile_config(config), config.profile, output_dir / "profile", progress=progress)
    return result.model, str(result.output_dir / "device_model.json")


def _arch_layers(supernet: nn.Module):
    """The mixed layers of a differentiable supernet (they hold ``_arch_alpha``), by label."""
    return {module.label: module for module in supernet.modules()
            if isinstance(getattr(module, "_arch_alpha", None), torch.Tensor) and hasattr(module, "names")}


def architecture_probabilities(supernet: nn.Module, label_values: dict[str, list] | None = None
                               ) -> dict[str, dict[str, float]]:
    """Plain softmax of the architecture logits per label: what the search converged to, without Gumbel noise.

    LayerChoices are named by their candidates; with ``label_values`` (a profiler's) other labels too, and a
    DARTS cell's op and input labels get the marginals of their slots' joint distribution.
    """
    from ..nas.strategy import architecture_probs

    result = {label: dict(zip(map(str, layer.names), torch.softmax(layer._arch_alpha.detach().float(), -1).tolist()))
              for label, layer in _arch_layers(supernet).items()}
    if not label_values:
        return result

    def named(label: str, p: torch.Tensor) -> None:
        values = label_values.get(label)
        if values is not None and len(values) == len(p) and label not in result:
            result[label] = {str(list(v) if isinstance(v, tuple) else v): float(x) for v, x in zip(values, p.tolist())}

    with torch.no_grad():
        for key, p in architecture_probs(supernet.modules()).items():
            if isinstance(key, tuple):
                named(key[0], p.sum(dim=1))
                named(key[1], p.sum(dim=0))
            else:
                named(key, p.detach().float())
    return result


class _OneHotArgmax(nn.Module):
    """Stands in for the (Gumbel) softmax so the supernet computes exactly the exported architecture."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)


@contextlib.contextmanager
def exported_path(supernet: nn.Module):
    """Within this context the supernet computes only the exported (argmax) candidate of every layer."""
    layers = _arch_layers(supernet)
    saved = {label: layer._softmax for label, layer in layers.items()}
    try:
        for layer in layers.values():
            layer._softmax = _OneHotArgmax()
        yield supernet
    finally:
        for label, layer in layers.items():
            layer._softmax = saved[label]


def supernet_accuracy(supernet: nn.Module, loader, device: torch.device | str = "cpu") -> float:
    """Top-1 of the exported architecture with the weights it inherited from the supernet."""
    with exported_path(supernet):
        return top1_accuracy(supernet, loader, device)


def measure_architecture(network: nn.Module, input_size: int, model: LatencyModel) -> dict[str, Any]:
    """Time the exported network end to end under the device model's own protocol (``measure_latency`` times
    a copy, so the trained network stays where it is)."""
    protocol = protocol_of(model)
    drift = check_drift(model, protocol, stacklevel=3)  # did the machine move since the model was profiled?
    measurement = measure_latency(network, (protocol.batch, 3, input_size, input_size), protocol)
    return {"latency_ms": measurement.latency_ms, "iqr_ms": measurement.iqr_ms, "noisy": measurement.noisy,
            "settings": protocol.to_dict(), "drift": drift.to_dict() if drift is not None else None}


def _history_callback(profiler, is_retrain: bool):
    import pytorch_lightning as pl

    class History(pl.Callback):
        """Per-step loss and per-epoch architecture of the search; per-epoch val accuracy of retraining."""

        def __init__(self):
            self.steps: list[dict[str, float]] = []
            self.epochs: list[dict[str, Any]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if is_retrain or not trainer.is_global_zero:
                return
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            record = {"step": len(self.steps), "epoch": trainer.current_epoch, "loss": float(loss)}
            for key, value in trainer.callback_metrics.items():
                if key.startswith("penalty/") or key == "train_acc":
                    record[key] = float(value)
            self.steps.append(record)

        def on_train_epoch_end(self, trainer, pl_module):
            if is_retrain or not trainer.is_global_zero:
                return
            sample = pl_module.export()
            temperature = trainer.callback_metrics.get("gumbel_temperature")
            self.epochs.append({"epoch": trainer.current_epoch, "architecture": sample,
                                "predicted_latency_ms": float(profiler.profile(sample)),
                                "temperature": None if temperature is None else float(temperature)})

        def on_validation_epoch_end(self, trainer, pl_module):
            if is_retrain and trainer.is_global_zero and not trainer.sanity_checking:
                metrics = trainer.callback_metrics
                self.epochs.append({"epoch": trainer.current_epoch, "val_acc": float(metrics.get("val_acc", math.nan)),
                                    "val_loss": float(metrics.get("val_loss", math.nan))})

    return History()


def _evaluator(config: SearchConfig, splits: DataSplits, epochs: int, learning_rate: float, weight_decay: float,
               callback, progress: bool, output_dir: Path, num_classes: int, search: bool):
    from nni.nas.evaluator.pytorch import Classification

    data, trainer = config.data, config.trainer
    strategy = trainer.strategy
    if search and strategy == "ddp":
        # The architecture step runs its own backward inside the training step, so DDP must look for
        # parameters a backward did not reach, or it stops at the first step.
        strategy = "ddp_find_unused_parameters_true"
    optimizer = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[trainer.optimizer]
    drop_last = len(splits.train) > data.batch_size
    return Classification(
        learning_rate=learning_rate, weight_decay=weight_decay, optimizer=optimizer, num_classes=num_classes,
        train_dataloaders=make_loader(splits.train, data.batch_size, True, data.seed, data.num_workers, drop_last),
        val_dataloaders=make_loader(splits.val, data.batch_size, True, data.seed + 1, data.num_workers),
        max_epochs=epochs, accelerator=trainer.accelerator, devices=trainer.devices, strategy=strategy,
        precision=trainer.precision, callbacks=[callback], logger=False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=progress and sys.stdout.isatty(), num_sanity_val_steps=0,
        default_root_dir=str(output_dir), export_onnx=False)


def _search(config: SearchConfig, space: nn.Module, splits: DataSplits, profiler, latency_source,
            progress: bool, output_dir: Path, num_classes: int):
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import RawFormatModelSpace

    history = _history_callback(profiler, is_retrain=False)
    evaluator = _evaluator(config, splits, config.trainer.epochs, config.trainer.learning_rate,
                           config.trainer.weight_decay, history, progress, output_dir, num_classes, search=True)
    strategy, name = build_strategy(config, latency_source)
    _logger.info("searching with %s", name)
    strategy(RawFormatModelSpace.from_model(space, evaluator), SequentialExecutionEngine())
    return strategy, name, history


def _retrain(config: SearchConfig, network: nn.Module, splits: DataSplits, progress: bool, output_dir: Path,
             num_classes: int):
    history = _history_callback(None, is_retrain=True)
    evaluator = _evaluator(config, splits, config.retrain.epochs, config.retrain.learning_rate,
                           config.retrain.weight_decay, history, progress, output_dir, num_classes, search=False)
    evaluator.evaluate(network)
    return evaluator.trainer, history


def _evaluate(config: SearchConfig, space: nn.Module, supernet: nn.Module | None, architecture: dict[str, Any],
              splits: DataSplits, progress: bool, output_dir: Path, num_classes: int):
    """Accuracy of the exported network: retrained from scratch, or with its supernet weights (retrain off).

    Returns (network, test top-1, val top-1, where the figure comes from, retraining history, is rank 0).
    """
    test_loader = make_loader(splits.test, config.data.batch_size, False)
    val_loader = make_loader(splits.val, config.data.batch_size, False)
    network = space.freeze(architecture)
    if config.retrain.epochs == 0:
        device = next(supernet.parameters()).device
        return (network, supernet_accuracy(supernet, test_loader, device),
                supernet_accuracy(supernet, val_loader, device),
                "test split, exported architecture with supernet weights (retrain off)", None, True)
    trainer, history = _retrain(config, network, splits, progress, output_dir, num_classes)
    device = next(network.parameters()).device
    return (network, top1_accuracy(network, test_loader, device), top1_accuracy(network, val_loader, device),
            f"test split, exported network retrained {config.retrain.epochs} epoch(s)", history,
            trainer.is_global_zero)


def _write_outputs(result: dict[str, Any], history: dict[str, Any], output_dir: Path) -> list[Path]:
    files = [report.write_result(result, output_dir)]
    if result.get("probabilities"):
        files += report.write_probabilities(result["probabilities"], result["architecture"], output_dir)
        files.append(report.plot_probabilities(result["probabilities"], output_dir / "probabilities.png"))
    atomic_write_json(output_dir / "history.json", history)
    files.append(output_dir / "history.json")
    files.append(report.plot_curves(history, output_dir / "curves.png"))
    return files


def _check_retrain_off(config: SearchConfig, space: nn.Module) -> None:
    """Without retraining the supernet's own accuracy is reported, which ``exported_path`` computes for spaces
    whose every choice is a LayerChoice."""
    from nni.nas.nn.pytorch import LayerChoice

    layer_labels = {module.label for module in space.modules() if isinstance(module, LayerChoice)}
    others = [label for label in space.simplify() if label not in layer_labels]
    if config.retrain.epochs == 0 and others:
        raise InvalidInput(f"retrain.epochs 0 reports the supernet's own accuracy, which needs a space of LayerChoices "
                         f"only; {config.space.name} also has {others[0]!r}: set retrain.epochs to 1 or more")


def _space_summary(config: SearchConfig, space: nn.Module, profiler, architecture: dict[str, Any]) -> dict[str, Any]:
    summary = {"name": config.space.name, "arguments": dict(config.space.arguments), "labels": len(architecture),
               "profiler": type(profiler).__name__}
    if hasattr(space, "widths"):  # FBNetSpace's own layout
        summary.update(widths=list(space.widths), depths=list(space.depths),
                       strides=[space.stem_stride, *space.stage_strides])
    return summary


def run_search(config: SearchConfig, progress: bool = True) -> SearchResult:
    """Run the whole experiment described by ``config``; returns the result and the files written."""
    import pytorch_lightning as pl

    from ..spaces.hub import profiler_for
    from .multitrial import run_trials

    clock = time.perf_counter
    timings: dict[str, float] = {}
    started = clock()
    output_dir = ensure_writable_dir(config.output_dir)
    check_search(config)  # every check that needs no profile, data or training: before any of them
    pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
    device_model, device_model_path = load_device_model(config.latency, output_dir, progress)
    splits = load_splits(config.data, config.space.input_size)
    num_classes = config.space.num_classes or splits.num_classes
    space = build_space(config.space, splits.num_classes)
    multi_trial = config.strategy.name in MULTI_TRIAL
    if not multi_trial:
        _check_retrain_off(config, space)
    input_shape = (protocol_of(device_model).batch, 3, config.space.input_size, config.space.input_size)
    profiler_started = clock()
    profiler = profiler_for(config.space.name, space, input_shape, device_model)
    latency_source, lut_metadata = profiler, None
    if config.latency.lut is not None:
        from .lut_source import TableLatency, load_lut_rows

        rows, lut_metadata = load_lut_rows(config.latency.lut)  # checked against this search by check_search
        latency_source = TableLatency(profiler, rows)
    timings["profiler"] = clock() - profiler_started
    timings["setup"] = clock() - started

    started = clock()
    supernet, search_history, trials = None, None, []
    if multi_trial:
        from ..nas.loss import check_target

        check_target(latency_source, config.latency.target_ms, "latency.target_ms")
        architecture, strategy_name, trials = run_trials(config, space, splits, profiler, output_dir)
        is_main = True
    else:
        strategy, strategy_name, search_history = _search(config, space, splits, profiler, latency_source, progress,
                                                          output_dir, num_classes)
        supernet = strategy.supernet
        architecture = dict(strategy.oneshot_module.export())
        is_main = strategy.oneshot_module.trainer.is_global_zero
    timings["search"] = clock() - started

    started = clock()
    network, accuracy, val_accuracy, accuracy_source, retrain_history, retrain_main = _evaluate(
        config, space, supernet, architecture, splits, progress, output_dir, num_classes)
    if config.retrain.epochs > 0:
        timings["retrain"] = clock() - started
    if not (is_main and retrain_main):
        return SearchResult({}, output_dir, [], is_main_process=False)

    started = clock()
    measured = measure_architecture(network, config.space.input_size, device_model)
    timings["measure"] = clock() - started

    latency = config.latency
    result = {
        "architecture": architecture,
        "predicted_latency_ms": float(profiler.profile(architecture)),
        "predicted_network_ms": device_model.predict_module(copy.deepcopy(network).cpu().eval(), input_shape),
        "measured_latency_ms": measured["latency_ms"],
        "measured_iqr_ms": measured["iqr_ms"],
        "measured_noisy": measured["noisy"],
        "measured_drift": measured.get("drift"),
        "accuracy": accuracy,
        "accuracy_source": accuracy_source,
        "val_accuracy": val_accuracy,
        "strategy": strategy_name,
        "latency": {"enabled": multi_trial or latency.alpha > 0,
                    "source": "lookup table" if latency.lut else "device model",
                    "alpha": latency.alpha, "beta": latency.beta, "mode": latency.mode,
                    "target_ms": latency.target_ms, "device_model": device_model_path,
                    "model_kind": device_model.kind, "profile_seconds": device_model.metrics.get("profile_seconds"),
                    "device": measured["settings"]["device"], "measurement": measured["settings"]},
        "data": {"dataset": splits.name, "num_classes": num_classes, **splits.sizes()},
        "space": _space_summary(config, space, profiler, architecture),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "probabilities": architecture_probabilities(supernet, latency_source.label_values) if supernet else {},
        "config": config.to_dict(),
    }
    if trials:
        result["trials"] = [trial.to_dict() for trial in trials]
    if lut_metadata is not None:
        result["lut"] = {"path": latency.lut, "table_latency_ms": float(latency_source.profile(architecture)),
                         "measured_seconds": lut_metadata.get("measured_seconds"),
                         "predicted_seconds": lut_metadata.get("predicted_seconds")}
    history = {"steps": search_history.steps if search_history else [],
               "epochs": search_history.epochs if search_history else [],
               "trials": [trial.to_dict() for trial in trials],
               "retrain": retrain_history.epochs if retrain_history is not None else []}
    keep_previous_results(config)  # an earlier search's files, kept aside just before they are replaced
    return SearchResult(result, output_dir, _write_outputs(result, history, output_dir))
