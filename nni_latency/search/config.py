"""The ``nni-latency search`` YAML schema: one dataclass per section, validated before anything runs.

Loading goes through ``nni_latency.suite.config`` (unknown keys are rejected by name with a suggestion);
``SearchConfig.validate`` then checks values that a type alone cannot (ranges, choices, files). The
``space`` section names a space of ``nni_latency.spaces.hub``; its other keys are that space's constructor
arguments, checked against its signature.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError, did_you_mean
from ..files.config import apply_overrides, config_from_dict, config_to_dict, packaged_config, read_yaml
from ..nas.loss import LOSS_MODES
from ..spaces.fbnet import CANDIDATE_NAMES
from ..spaces.hub import SPACES, check_arguments

_logger = logging.getLogger(__name__)

__all__ = ["SpaceConfig", "DataConfig", "StrategyConfig", "MultiTrialConfig", "LatencyConfig", "TrainerConfig",
           "RetrainConfig", "ExecutionConfig", "SearchConfig", "load_search_config", "DATASETS", "STRATEGIES", "ONE_SHOT",
           "MULTI_TRIAL", "TRIAL_LATENCY", "LOSS_MODES", "DEFAULT_CONFIG", "SEARCH_DEFAULTS", "ENGINES"]

DATASETS = ("digits", "cifar10", "imagefolder")
# strategy name -> what it is and how the latency enters it (``search.strategies`` builds them).
STRATEGIES = {
    "fbnet": "GumbelDARTS with the differentiable FBNet latency term (nni_latency.nas.FBNet)",
    "darts": "NNI's DARTS with the differentiable latency term",
    "proxyless": "NNI's Proxyless with the differentiable latency term (ProxylessNAS's expected latency)",
    "gumbel_darts": "NNI's GumbelDARTS with NNI's ExpectationProfilerPenalty, which NNI 3.0 feeds floats: no gradient",
    "enas": "NNI's ENAS, the predicted latency in its reward (SampleProfilerPenalty; needs gym and tianshou)",
    "evolution": "multi-trial: NNI's RegularizedEvolution, each trial trained briefly",
    "random": "multi-trial: NNI's Random, each trial trained briefly",
}
ONE_SHOT = ("fbnet", "darts", "proxyless", "gumbel_darts", "enas")
MULTI_TRIAL = ("evolution", "random")
TRIAL_LATENCY = ("filter", "objective")
ENGINES = ("in_process", "nni")
DEFAULT_CONFIG = "fbnet_search.yaml"
# Space arguments a CPU search on digits starts from when the YAML does not give them (small widths and depths).
SEARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "fbnet": {"width_mult": 0.5, "depth_mult": 0.5},
    "proxylessnas": {"width_mult": 0.25},
    "mobilenetv3": {"width_multipliers": (0.25, 0.5), "expand_ratios": (3, 6)},
    "shufflenet": {},
    "autoformer": {"search_embed_dim": (48, 64), "search_mlp_ratio": (2.0, 3.0), "search_num_heads": (2, 4),
                   "search_depth": (2, 3), "patch_size": 4},
    "darts": {"width": 8, "num_cells": 6},
    "pnas": {"width": 8, "num_cells": 6},
    "enas": {"width": 8, "num_cells": 6},
    "nasnet": {"width": 8, "num_cells": 6},
    "amoebanet": {"width": 8, "num_cells": 6},
    "nasbench201": {"stem_out_channels": 8, "num_modules_per_stack": 1},
    "nasbench101": {"stem_out_channels": 16, "num_stacks": 2, "num_modules_per_stack": 1},
}
_SPACE_KEYS = ("name", "input_size", "num_classes", "arguments")


@dataclass
class SpaceConfig:
    """The searched space: ``name`` (``nni_latency.spaces.hub``), input size, classes, and the space's own
    constructor arguments (``arguments``; in YAML simply further keys of ``space``, e.g. ``width: 8``)."""

    name: str = "fbnet"
    input_size: int = 8
    num_classes: int | None = None  # None: the dataset's number of classes
    arguments: dict[str, Any] = field(default_factory=dict)


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
    """The strategy (``STRATEGIES``) and the options of the one-shot ones (DARTS family).

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
class MultiTrialConfig:
    """Multi-trial search (``strategy.name`` evolution or random): every trial trains one frozen architecture.

    ``latency: filter`` skips architectures predicted over ``latency.target_ms`` before they train (NNI's
    ``RangeProfilerFilter`` on the profiler); ``objective`` keeps them all and ranks them by MnasNet's
    ``accuracy * (LAT / T) ** exponent``, with T ``latency.target_ms`` (or the space's mean latency).
    """

    trials: int = 12
    trial_epochs: int = 2
    population_size: int = 6   # evolution
    sample_size: int = 3       # evolution
    mutation_prob: float = 0.2  # evolution
    latency: str = "filter"
    exponent: float = -0.07


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
class ExecutionConfig:
    """Where the trials of a multi-trial search run: ``in_process`` (one after another, in this process) or ``nni``
    (NNI's ``NasExperiment``: trials as processes of a training service, ``trial_concurrency`` at a time).

    The other keys are NNI's experiment-config keys, under NNI's names (``nni_latency.search.engine`` turns
    them into a ``NasExperimentConfig``); ``training_service`` is NNI's training-service section verbatim
    (``local``, or a mapping such as ``{platform: remote, machine_list: [...]}``). ``multi_trial.trials`` is
    NNI's ``max_trial_number``. ``resume: true`` continues an interrupted search in the same ``output_dir`` from the
    trials it recorded (``trials.jsonl``), on either engine.
    """

    engine: str = "in_process"
    training_service: Any = "local"
    trial_concurrency: int = 1
    trial_gpu_number: int = 0
    max_experiment_duration: str | None = None
    experiment_working_directory: str | None = None  # None: <output_dir>/nni-experiments
    nni_manager_ip: str | None = None
    port: int = 8080
    resume: bool = False


@dataclass
class SearchConfig:
    space: SpaceConfig = field(default_factory=SpaceConfig)
    data: DataConfig = field(default_factory=DataConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    multi_trial: MultiTrialConfig = field(default_factory=MultiTrialConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    output_dir: str = "runs/fbnet_search"

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def validate(self) -> SearchConfig:
        """Check values a type cannot; each problem is a one-line ValueError naming the key and the fix."""
        space, data, strategy, latency = self.space, self.data, self.strategy, self.latency
        _check(space.name in SPACES, f"space.name {space.name!r} is unknown{_did_you_mean([space.name], SPACES)}; "
               f"use one of {', '.join(SPACES)}")
        _check(space.input_size >= 8, f"space.input_size must be at least 8, got {space.input_size}")
        try:
            check_arguments(space.name, space.arguments, where="space key")
        except ValueError as error:
            raise ConfigError(f"space: {error}") from None
        if space.name == "fbnet":
            candidates = space.arguments.get("candidates", CANDIDATE_NAMES)
            unknown = [c for c in candidates if c not in CANDIDATE_NAMES]
            _check(not unknown and bool(candidates),
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
        self._validate_strategy()
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

    def _validate_strategy(self) -> None:
        """Which strategy can search which space, and how the latency enters it."""
        strategy, latency, trials = self.strategy, self.latency, self.multi_trial
        entry = SPACES[self.space.name]
        if strategy.name in ONE_SHOT:
            _check(entry.tables or latency.alpha == 0,
                   f"space {self.space.name} has no latency tables ({entry.why}), so one-shot strategy "
                   f"{strategy.name!r} has no latency term for it; use strategy.name evolution or random (multi-trial, "
                   "the profiler as a budget filter)")
        if strategy.name == "gumbel_darts" and latency.alpha > 0:
            _logger.warning("strategy gumbel_darts uses NNI's ExpectationProfilerPenalty, which NNI 3.0 feeds floats: "
                            "it adds no gradient and latency does not steer the search (use fbnet, darts or proxyless)")
        if strategy.name == "enas":
            import importlib.util

            missing = [m for m in ("gym", "tianshou") if importlib.util.find_spec(m) is None]
            _check(not missing, f"strategy enas needs NNI's reinforcement-learning extras: pip install {' '.join(missing)}")
        if strategy.name in MULTI_TRIAL:
            _check(trials.latency in TRIAL_LATENCY,
                   f"multi_trial.latency {trials.latency!r} is unknown{_did_you_mean([trials.latency], TRIAL_LATENCY)}; "
                   f"use one of {', '.join(TRIAL_LATENCY)}")
            _check(trials.latency != "filter" or latency.target_ms is not None,
                   "multi_trial.latency filter needs a budget: set latency.target_ms")
            _check(trials.trials >= 1 and trials.trial_epochs >= 1,
                   "multi_trial.trials and multi_trial.trial_epochs must be at least 1")
            _check(trials.population_size >= 2 and 1 <= trials.sample_size <= trials.population_size,
                   "multi_trial.population_size must be at least 2 and sample_size in [1, population_size]")
            _check(self.retrain.epochs >= 1, "retrain.epochs must be at least 1 with a multi-trial strategy (each "
                   "trial trains its network only multi_trial.trial_epochs)")
        execution = self.execution
        _check(execution.engine in ENGINES,
               f"execution.engine {execution.engine!r} is unknown{_did_you_mean([execution.engine], ENGINES)}; "
               f"use one of {', '.join(ENGINES)}")
        _check(execution.engine == "in_process" or strategy.name in MULTI_TRIAL,
               f"execution.engine nni runs multi-trial strategies (evolution, random), not {strategy.name!r}; "
               "set execution.engine in_process or strategy.name evolution or random")
        _check(execution.trial_concurrency >= 1 and execution.trial_gpu_number >= 0,
               "execution.trial_concurrency must be at least 1 and execution.trial_gpu_number at least 0")
        _check(execution.engine == "nni" or execution.trial_concurrency == 1,
               "execution.trial_concurrency above 1 needs execution.engine nni (in_process runs one trial at a time)")
        _check(1 <= execution.port <= 65534, f"execution.port must be in 1..65534, got {execution.port}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _did_you_mean(values: Sequence[str], known: Sequence[str]) -> str:
    return next((hint for value in values if (hint := did_you_mean(value, known))), "")


def _space_section(section: Any) -> Any:
    """The ``space`` section with the space's own arguments (keys other than ``_SPACE_KEYS``) under ``arguments``,
    over the search defaults of that space."""
    if not isinstance(section, dict):
        return section
    name = section.get("name", SpaceConfig.name)
    own = {key: value for key, value in section.items() if key not in _SPACE_KEYS}
    arguments = {**SEARCH_DEFAULTS.get(name, {}), **(section.get("arguments") or {}), **own}
    return {**{key: section[key] for key in _SPACE_KEYS if key in section}, "arguments": arguments}


def _switched_space(yaml_space: dict, section: Any, overrides: Sequence[str]) -> Any:
    """``section`` after the overrides; when ``--set space.name`` picked another space than the YAML's, the YAML's
    arguments of its own space (``width_mult`` of fbnet) are dropped: only those given with ``--set`` apply."""
    name = yaml_space.get("name", SpaceConfig.name)
    if not isinstance(section, dict) or section.get("name", SpaceConfig.name) == name:
        return section
    typed = {o.partition("=")[0].strip().split(".")[1] for o in overrides if o.strip().startswith("space.")}
    return {key: value for key, value in section.items() if key in _SPACE_KEYS[:3] or key in typed}


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
        yaml_space = dict(data.get("space") or {}) if isinstance(data.get("space"), dict) else {}
        apply_overrides(data, overrides)
        data["space"] = _space_section(_switched_space(yaml_space, data.get("space") or {}, overrides))
        config = config_from_dict(SearchConfig, data)
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None
    if output_dir is not None:
        config.output_dir = str(output_dir)
    return config.validate()

