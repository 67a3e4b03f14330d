"""One FBNet search end to end: device model -> data -> supernet search in NNI -> retrain -> measure -> report.

The strategy is looked up by name (``STRATEGIES`` in ``config.py``) and receives the FBNet latency loss
built on ``nni_latency.nas.LatencyProfiler``, so the latency term is the device model's prediction;
no lookup table is measured. Training goes through NNI's Lightning evaluator, so the trainer section
(accelerator, devices, strategy="ddp", ...) is Lightning's own; on several processes only rank 0
measures and writes.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ProfileConfig, load_config, packaged_config
from ..fileio import atomic_write_json, ensure_writable_dir
from ..model import LatencyModel
from ..protocol import MeasurementProtocol, protocol_of
from ..spaces.fbnet import FBNetSpace
from ..timing import measure_latency
from . import report
from .config import STRATEGIES, LatencyConfig, SearchConfig, SpaceConfig
from .data import DataSplits, load_splits, make_loader

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


def build_space(config: SpaceConfig, num_classes: int) -> FBNetSpace:
    return FBNetSpace(num_classes=config.num_classes or num_classes, input_size=config.input_size,
                      width_mult=config.width_mult, depth_mult=config.depth_mult, head_channels=config.head_channels,
                      projection_skip=config.projection_skip, candidates=tuple(config.candidates))


def _profile_config(config: LatencyConfig) -> ProfileConfig:
    path = Path(config.profile_config)
    return load_config(path if path.exists() else packaged_config(config.profile_config), ProfileConfig,
                       config.profile_set)


def load_device_model(config: LatencyConfig, output_dir: Path, progress: bool = True) -> tuple[LatencyModel, str]:
    """The device model named in the config, or a fresh one profiled into ``output_dir/profile``."""
    if config.device_model is not None:
        return LatencyModel.load(config.device_model), str(config.device_model)
    from ..microbench import run_profile

    _logger.info("profiling %s first (latency.device_model is not set)", config.profile)
    result = run_profile(_profile_config(config), config.profile, output_dir / "profile", progress=progress)
    return result.model, str(result.output_dir / "device_model.json")


def latency_protocol(config: LatencyConfig) -> MeasurementProtocol:
    """The protocol the search measures under: the device model's, or the one its profiling run will use
    (what the command line sets the allocator policy from, before anything is measured)."""
    if config.device_model is not None:
        return protocol_of(LatencyModel.load(config.device_model))
    from ..microbench import profile_protocol

    return profile_protocol(_profile_config(config), config.profile)


def _import(reference: str):
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)


def build_strategy(config: SearchConfig, latency_source) -> tuple[Any, str]:
    """The configured one-shot strategy with its latency term, and a name saying which one ran.

    ``alpha == 0`` runs NNI's GumbelDARTS with no penalty (FBNet's ``CE * alpha * ...`` would be 0);
    ``fbnet`` gets ``FBNetLatencyLoss`` on ``latency_source`` (a ``LatencyProfiler`` or a ``TableLatency``);
    ``gumbel_darts`` gets NNI's own ``ExpectationProfilerPenalty``, which NNI 3.0 feeds floats, so it
    has no gradient: it shows the defect ``nni_latency.nas.FBNet`` fixes.
    """
    latency, options = config.latency, config.strategy
    kwargs = dict(temperature=(options.temperature_init, options.temperature_min),
                  arc_learning_rate=options.arc_learning_rate, warmup_epochs=options.warmup_epochs,
                  gradient_clip_val=options.gradient_clip_val, log_prob_every_n_step=options.log_prob_every_n_step)
    if latency.alpha == 0:
        return _import(STRATEGIES["gumbel_darts"])(**kwargs), "gumbel_darts"
    if options.name == "fbnet":
        penalty = _import("nni_latency.nas:FBNetLatencyLoss")(latency_source, latency.alpha, latency.beta,
                                                             mode=latency.mode, target_ms=latency.target_ms)
        return _import(STRATEGIES["fbnet"])(penalty=penalty, **kwargs), "fbnet"
    from nni.nas.oneshot.pytorch.profiler import ExpectationProfilerPenalty

    baseline = latency.target_ms or latency_source.uniform_expected_latency()
    penalty = ExpectationProfilerPenalty(latency_source, baseline, scale=latency.alpha,
                                         nonlinear="positive" if latency.target_ms else "linear",
                                         aggregate=latency.mode)
    return _import(STRATEGIES[options.name])(penalty=penalty, **kwargs), f"{options.name} (NNI's penalty)"


def _arch_layers(supernet: nn.Module):
    """The mixed layers of a differentiable supernet (they hold ``_arch_alpha``), by label."""
    return {module.label: module for module in supernet.modules()
            if isinstance(getattr(module, "_arch_alpha", None), torch.Tensor) and hasattr(module, "names")}


def architecture_probabilities(supernet: nn.Module) -> dict[str, dict[str, float]]:
    """Plain softmax of each layer's architecture logits: what the search converged to, without Gumbel noise."""
    return {label: dict(zip(map(str, layer.names), torch.softmax(layer._arch_alpha.detach().float(), -1).tolist()))
            for label, layer in _arch_layers(supernet).items()}


class _OneHotArgmax(nn.Module):
    """Stands in for the (Gumbel) softmax so the supernet computes exactly the exported architecture."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)


@torch.no_grad()
def top1_accuracy(model: nn.Module, loader, device: torch.device | str = "cpu") -> float:
    was_training = model.training
    model.eval()
    correct = total = 0
    for images, labels in loader:
        predicted = model(images.to(device)).argmax(-1).cpu()
        correct += int((predicted == labels).sum())
        total += len(labels)
    model.train(was_training)
    return correct / max(total, 1)


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
    measurement = measure_latency(network, (protocol.batch, 3, input_size, input_size), protocol)
    return {"median_ms": measurement.median_ms, "iqr_ms": measurement.iqr_ms, "noisy": measurement.noisy,
            "settings": protocol.to_dict()}


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
        enable_model_summary=False, enable_progress_bar=progress, num_sanity_val_steps=0,
        default_root_dir=str(output_dir), export_onnx=False)


def _search(config: SearchConfig, space: FBNetSpace, splits: DataSplits, profiler, latency_source,
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


def _evaluate(config: SearchConfig, space: FBNetSpace, supernet: nn.Module, architecture: dict[str, str],
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
    files += report.write_probabilities(result["probabilities"], result["architecture"], output_dir)
    files.append(report.plot_probabilities(result["probabilities"], output_dir / "probabilities.png"))
    atomic_write_json(output_dir / "history.json", history)
    files.append(output_dir / "history.json")
    files.append(report.plot_curves(history, output_dir / "curves.png"))
    return files


def run_search(config: SearchConfig, progress: bool = True) -> SearchResult:
    """Run the whole experiment described by ``config``; returns the result and the files written."""
    import pytorch_lightning as pl

    from ..nas import LatencyProfiler

    clock = time.perf_counter
    timings: dict[str, float] = {}
    started = clock()
    pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
    output_dir = ensure_writable_dir(config.output_dir)
    device_model, device_model_path = load_device_model(config.latency, output_dir, progress)
    splits = load_splits(config.data, config.space.input_size)
    num_classes = config.space.num_classes or splits.num_classes
    space = build_space(config.space, splits.num_classes)
    input_shape = (protocol_of(device_model).batch, 3, config.space.input_size, config.space.input_size)
    profiler_started = clock()
    profiler = LatencyProfiler(space, input_shape, device_model)
    latency_source, lut_metadata = profiler, None
    if config.latency.lut is not None:
        from .table import TableLatency, load_lut_rows

        rows, lut_metadata = load_lut_rows(config.latency.lut)
        latency_source = TableLatency(profiler, rows)
    timings["profiler"] = clock() - profiler_started
    timings["setup"] = clock() - started

    started = clock()
    strategy, strategy_name, search_history = _search(config, space, splits, profiler, latency_source, progress,
                                                      output_dir, num_classes)
    supernet = strategy.supernet
    architecture = {label: str(choice) for label, choice in strategy.oneshot_module.export().items()}
    timings["search"] = clock() - started

    started = clock()
    network, accuracy, val_accuracy, accuracy_source, retrain_history, is_main = _evaluate(
        config, space, supernet, architecture, splits, progress, output_dir, num_classes)
    if config.retrain.epochs > 0:
        timings["retrain"] = clock() - started
    if not (is_main and strategy.oneshot_module.trainer.is_global_zero):
        return SearchResult({}, output_dir, [], is_main_process=False)

    started = clock()
    measured = measure_architecture(network, config.space.input_size, device_model)
    timings["measure"] = clock() - started

    latency = config.latency
    result = {
        "architecture": architecture,
        "predicted_latency_ms": float(profiler.profile(architecture)),
        "predicted_network_ms": device_model.predict_module(copy.deepcopy(network).cpu().eval(), input_shape),
        "measured_latency_ms": measured["median_ms"],
        "measured_iqr_ms": measured["iqr_ms"],
        "measured_noisy": measured["noisy"],
        "accuracy": accuracy,
        "accuracy_source": accuracy_source,
        "val_accuracy": val_accuracy,
        "strategy": strategy_name,
        "latency": {"enabled": latency.alpha > 0, "source": "lookup table" if latency.lut else "device model",
                    "alpha": latency.alpha, "beta": latency.beta, "mode": latency.mode,
                    "target_ms": latency.target_ms, "device_model": device_model_path,
                    "model_kind": device_model.kind, "profile_seconds": device_model.metrics.get("profile_seconds"),
                    "device": measured["settings"]["device"], "measurement": measured["settings"]},
        "data": {"dataset": splits.name, "num_classes": num_classes, **splits.sizes()},
        "space": {"labels": len(architecture), "widths": list(space.widths), "depths": list(space.depths),
                  "strides": [space.stem_stride, *space.stage_strides]},
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "probabilities": architecture_probabilities(supernet),
        "config": config.to_dict(),
    }
    if lut_metadata is not None:
        result["lut"] = {"path": latency.lut, "table_latency_ms": float(latency_source.profile(architecture)),
                         "measured_seconds": lut_metadata.get("measured_seconds"),
                         "predicted_seconds": lut_metadata.get("predicted_seconds")}
    history = {"steps": search_history.steps, "epochs": search_history.epochs,
               "retrain": retrain_history.epochs if retrain_history is not None else []}
    return SearchResult(result, output_dir, _write_outputs(result, history, output_dir))
