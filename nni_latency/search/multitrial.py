"""Multi-trial search with a latency budget: NNI's ``RegularizedEvolution`` or ``Random`` over frozen architectures,
each trained for ``multi_trial.trial_epochs`` in this process.

The profiler serves either as the budget filter (``latency: filter``: NNI's ``RangeProfilerFilter`` with
``max=latency.target_ms`` in a ``Filter`` middleware, so an architecture over budget is skipped before it
trains) or as a second objective (``latency: objective``: MnasNet's reward ``accuracy * (LAT / T) ** w``,
a soft constraint, T the budget or the space's mean latency). Any profiler works here, the fallback
``FrozenLatencyProfiler`` included, since trials only ask ``profile(sample)``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from .config import SearchConfig
from .data import DataSplits, make_loader
from .training import top1_accuracy, train_briefly

_logger = logging.getLogger(__name__)

__all__ = ["Trial", "run_trials", "mnasnet_reward"]


@dataclass
class Trial:
    """One trained architecture: its predicted latency, validation accuracy and the reward the strategy saw."""

    sample: dict[str, Any]
    latency_ms: float
    accuracy: float
    reward: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mnasnet_reward(accuracy: float, latency_ms: float, target_ms: float, exponent: float) -> float:
    """MnasNet's soft-constrained objective ``ACC * (LAT / T) ** w`` (Tan et al., 2019; w = -0.07 there)."""
    return accuracy * (latency_ms / target_ms) ** exponent


def _strategy(config: SearchConfig, profiler):
    from nni.nas.oneshot.pytorch.profiler import RangeProfilerFilter
    from nni.nas.strategy import Random, RegularizedEvolution
    from nni.nas.strategy.middleware import Chain, Filter

    trials = config.multi_trial
    if config.strategy.name == "evolution":
        strategy = RegularizedEvolution(population_size=trials.population_size, sample_size=trials.sample_size,
                                        mutation_prob=trials.mutation_prob, seed=config.trainer.seed)
    else:
        strategy = Random(seed=config.trainer.seed)
    if trials.latency != "filter":
        return strategy, f"{config.strategy.name} (latency as a second objective)"
    budget = RangeProfilerFilter(profiler, max=config.latency.target_ms)
    return (Chain(strategy, Filter(lambda model: budget(model.sample))),
            f"{config.strategy.name} (latency budget {config.latency.target_ms:g} ms as a filter)")


def run_trials(config: SearchConfig, space, splits: DataSplits, profiler) -> tuple[dict[str, Any], str, list[Trial]]:
    """Search ``space`` trial by trial; returns (the best architecture, the strategy's name, every trial)."""
    import nni
    import torch
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import RawFormatModelSpace

    options, data = config.multi_trial, config.data
    target = config.latency.target_ms or getattr(profiler, "uniform_expected_latency", lambda: None)()
    if options.latency == "objective" and target is None:
        raise ValueError(f"multi_trial.latency objective on {config.space.name} needs latency.target_ms: its profiler "
                         "(FrozenLatencyProfiler) has no tables to take the space's mean latency from")
    train_loader = make_loader(splits.train, data.batch_size, True, data.seed, data.num_workers)
    val_loader = make_loader(splits.val, data.batch_size, False)
    trials: list[Trial] = []

    def evaluate(network):
        started = time.perf_counter()
        sample = dict(nni.get_current_parameter().sample)
        latency = float(profiler.profile(sample))
        torch.manual_seed(config.trainer.seed)
        train_briefly(network, train_loader, options.trial_epochs, config.trainer.learning_rate,
                      config.trainer.weight_decay, config.trainer.optimizer)
        accuracy = top1_accuracy(network, val_loader)
        reward = accuracy if options.latency == "filter" or not target else \
            mnasnet_reward(accuracy, latency, target, options.exponent)
        trials.append(Trial(sample, latency, accuracy, reward, round(time.perf_counter() - started, 2)))
        _logger.info("trial %d: %.3f ms predicted, val top-1 %.3f, reward %.4f", len(trials), latency, accuracy, reward)
        nni.report_final_result(reward)

    strategy, name = _strategy(config, profiler)
    strategy(RawFormatModelSpace.from_model(space, FunctionalEvaluator(evaluate)),
             SequentialExecutionEngine(max_model_count=options.trials))
    finished = [t for t in trials if math.isfinite(t.reward)]
    if not finished:
        raise ValueError(f"no architecture within latency.target_ms={config.latency.target_ms} ms was found; raise "
                         "the budget or use multi_trial.latency objective")
    best = max(finished, key=lambda t: t.reward)
    return best.sample, name, trials
