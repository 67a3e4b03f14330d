"""The ``nni-latency search`` YAML schema: one dataclass per section, validated before anything runs.

Loading goes through ``nni_latency.config`` (unknown keys are rejected by name with a suggestion);
``SearchConfig.validate`` then checks values that a type alone cannot (ranges, choices, files).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


from ..config import apply_overrides, config_from_dict, config_to_dict, packaged_config, read_yaml
from ..nas.loss import LOSS_MODES
from ..spaces.fbnet import CANDIDATE_NAMES

__all__ = ["SpaceConfig", "DataConfig", "StrategyConfig", "LatencyConfig", "TrainerConfig", "RetrainConfig",
           "SearchConfig", "load_search_config", "DATASETS", "STRATEGIES", "LOSS_MODES", "DEFAULT_CONFIG"]

DATASETS = ("digits", "cifar10", "imagefolder")
# strategy name -> "module:attribute"; the strategy is imported by name only when a search runs.
STRATEGIES = {
    "fbnet": "nni_latency.nas:FBNet",
    "gumbel_darts": "nni.nas.strategy:GumbelDARTS",  # NNI's own; its penalty gets no gradient in NNI 3.0
}
DEFAULT_CONFIG = "fbnet_search.yaml"


@dataclass
class SpaceConfig:
    """How ``FBNetSpace`` is scaled; see ``nni_latency.spaces.fbnet``."""

    input_size: int = 8
    num_classes: int | None = None  # None: the dataset's number of classes
    width_mult: float = 0.5
    depth_mult: float = 0.5
    head_channels: int = 1984
    projection_skip: bool = True
    candidates: list[str] = field(default_factory=lambda: list(CANDIDATE_NAMES))


@dataclass
class DataConfig:
    """The dataset and its train / val / test split (val drives the architecture, test is held out)."""

    dataset: str = "digits"
    path: str | None = None
    batch_size: int = 64
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    limit: int | None = None  # use at most this many samples (quick runs)
    seed: int = 0
    num_workers: int = 0


@dataclass
class StrategyConfig:
    """The one-shot strategy and its GumbelDARTS options.

    FBNet trains the architecture with Adam at 1e-2 for 90 ImageNet epochs; a search of a few hundred
    steps needs larger steps for the distribution to move away from uniform.
    """

    name: str = "fbnet"
    temperature_init: float = 5.0
    temperature_min: float = 0.5
    arc_learning_rate: float = 0.05
    warmup_epochs: int = 2
    gradient_clip_val: float | None = None
    log_prob_every_n_step: int = 10


@dataclass
class LatencyConfig:
    """Where the latency comes from, and how strongly it weighs; see ``nni_latency.nas.FBNetLatencyLoss``.

    In ``add`` mode ``alpha`` weighs latency against cross-entropy. In ``mul`` mode (FBNet's
    ``CE * alpha * log(...)^beta``) ``alpha`` scales the whole architecture loss, which NNI's Adam
    architecture optimizer largely normalises away, and the latency gradient is proportional to CE, so
    it fades once an easy dataset is fitted; ``add`` is the default for that reason.
    """

    device_model: str | None = None
    profile: str | None = "cpu"  # profile this device first (cpu, cuda, cuda:N) when device_model is null
    profile_config: str = "profile_cpu.yaml"  # packaged name or path of the profiling config
    profile_set: list[str] = field(default_factory=list)  # dotted.key=value overrides of that config
    lut: str | None = None  # a measured lut.json (`nni-latency lut --measure`) to use instead of the prediction
    alpha: float = 0.3
    beta: float = 0.6
    mode: str = "add"
    target_ms: float | None = None


@dataclass
class TrainerConfig:
    """Supernet training; accelerator/devices/strategy/precision go to Lightning's Trainer unchanged."""

    epochs: int = 8
    learning_rate: float = 0.005
    weight_decay: float = 5e-4
    optimizer: str = "adam"
    accelerator: str = "cpu"
    devices: Any = 1
    strategy: str = "auto"
    precision: Any = "32-true"
    seed: int = 0
    progress: bool = True


@dataclass
class RetrainConfig:
    """Training the exported network from scratch before its accuracy is reported; epochs 0 turns it off."""

    epochs: int = 8
    learning_rate: float = 0.005
    weight_decay: float = 5e-4


@dataclass
class SearchConfig:
    space: SpaceConfig = field(default_factory=SpaceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    output_dir: str = "runs/fbnet_search"

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def validate(self) -> SearchConfig:
        """Check values a type cannot; each problem is a one-line ValueError naming the key and the fix."""
        space, data, strategy, latency = self.space, self.data, self.strategy, self.latency
        _check(space.input_size >= 8, f"space.input_size must be at least 8, got {space.input_size}")
        _check(space.width_mult > 0 and space.depth_mult > 0, "space.width_mult and space.depth_mult must be > 0")
        unknown = [c for c in space.candidates if c not in CANDIDATE_NAMES]
        _check(not unknown and bool(space.candidates),
               f"space.candidates has unknown name(s) {unknown}{_did_you_mean(unknown, CANDIDATE_NAMES)}; "
               f"use some of {', '.join(CANDIDATE_NAMES)}")
        _check(data.dataset in DATASETS,
               f"data.dataset {data.dataset!r} is not supported{_did_you_mean([data.dataset], DATASETS)}; "
               f"use one of {', '.join(DATASETS)}")
        _check(data.dataset == "digits" or data.path is not None,
               f"data.dataset {data.dataset!r} needs data.path (the folder holding it)")
        _check(0 < data.val_fraction < 1 and 0 <= data.test_fraction < 1
               and data.val_fraction + data.test_fraction < 1,
               "data.val_fraction must be in (0, 1), data.test_fraction in [0, 1), and their sum below 1")
        _check(data.batch_size >= 1, f"data.batch_size must be at least 1, got {data.batch_size}")
        _check(data.limit is None or data.limit >= 10, f"data.limit must be at least 10 samples, got {data.limit}")
        _check(strategy.name in STRATEGIES,
               f"strategy.name {strategy.name!r} is unknown{_did_you_mean([strategy.name], STRATEGIES)}; "
               f"use one of {', '.join(STRATEGIES)}")
        _check(0 < strategy.temperature_min <= strategy.temperature_init,
               "strategy.temperature_min must be positive and at most strategy.temperature_init")
        _check(strategy.arc_learning_rate > 0, "strategy.arc_learning_rate must be positive")
        _check(0 <= strategy.warmup_epochs, "strategy.warmup_epochs must be >= 0")
        _check(latency.device_model is not None or latency.profile is not None,
               "latency needs a device model: set latency.device_model to a device_model.json "
               "(from `nni-latency profile`) or latency.profile to a device (cpu, cuda) to profile first")
        _check(latency.mode in LOSS_MODES, f"latency.mode must be one of {', '.join(LOSS_MODES)}, got {latency.mode!r}")
        _check(latency.alpha >= 0, f"latency.alpha must be >= 0 (0 turns the latency term off), got {latency.alpha}")
        _check(latency.beta > 0, f"latency.beta must be positive, got {latency.beta}")
        _check(latency.target_ms is None or latency.target_ms > 0, "latency.target_ms must be positive when set")
        _check(latency.lut is None or strategy.name == "fbnet",
               f"latency.lut works with strategy.name fbnet only, not {strategy.name!r}")
        _check(self.trainer.epochs >= 1, f"trainer.epochs must be at least 1, got {self.trainer.epochs}")
        _check(self.trainer.epochs > strategy.warmup_epochs,
               f"trainer.epochs ({self.trainer.epochs}) must exceed strategy.warmup_epochs "
               f"({strategy.warmup_epochs}), or the architecture is never trained")
        _check(self.trainer.optimizer in ("adam", "sgd"),
               f"trainer.optimizer must be adam or sgd, got {self.trainer.optimizer!r}")
        _check(self.retrain.epochs >= 0, "retrain.epochs must be >= 0 (0 turns retraining off)")
        return self


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _did_you_mean(values: Sequence[str], known: Sequence[str]) -> str:
    for value in values:
        close = difflib.get_close_matches(str(value), list(known), n=1)
        if close:
            return f" (did you mean {close[0]!r}?)"
    return ""


def resolve_config_path(path: str | os.PathLike | None) -> Path:
    """A file path as given, else a config shipped in ``nni_latency/configs``; None is the default config."""
    if path is None:
        return packaged_config(DEFAULT_CONFIG)
    candidate = Path(path)
    if candidate.exists() or candidate.suffix not in (".yaml", ".yml") or candidate.parent != Path("."):
        return candidate
    try:
        return packaged_config(str(candidate))
    except ValueError:
        return candidate


def load_search_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = (),
                       output_dir: str | None = None) -> SearchConfig:
    """Read a search YAML, apply ``--set`` overrides and ``--output-dir``, and validate it."""
    source = resolve_config_path(path)
    data = read_yaml(source)
    if data.get("retrain") is False:  # `retrain: off` in YAML
        data["retrain"] = {"epochs": 0}
    try:
        apply_overrides(data, overrides)
        config = config_from_dict(SearchConfig, data)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    if output_dir is not None:
        config.output_dir = str(output_dir)
    return config.validate()

