"""Multi-trial search with a latency budget: NNI's ``RegularizedEvolution`` or ``Random`` over frozen architectures,
each trained for ``multi_trial.trial_epochs`` by ``trial.run_trial``, in this process or (``execution.engine: nni``)
as trial processes of NNI's experiment engine (``engine``).

The profiler serves either as the budget filter (``latency: filter``: NNI's ``RangeProfilerFilter`` with
``max=latency.target_ms`` in a ``Filter`` middleware, so an architecture over budget is skipped before it
trains) or as a second objective (``latency: objective``: MnasNet's reward ``accuracy * (LAT / T) ** w``,
a soft constraint, T the budget or the space's mean latency). Either way the latency is this process's: the
``TrialRecords`` middleware turns each trial's report into a ``Trial`` with its predicted latency and reward
and hands the strategy the reward, so both engines record the same thing. Any profiler works here, the
fallback ``FrozenLatencyProfiler`` included, since trials only ask ``profile(sample)``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from nni.nas.strategy.middleware import StrategyMiddleware

from ..errors import InvalidInput
from .config import SearchConfig
from .data import DataSplits
from .preflight import TRIALS_FILE, keep_previous_results  # one Trial a line, appended as trials finish

_logger = logging.getLogger(__name__)

__all__ = ["Trial", "run_trials", "mnasnet_reward", "build_trial_strategy", "TrialRecords", "TRIALS_FILE", "sample_key",
           "read_trials"]


@dataclass
class Trial:
    """One trained architecture: its predicted latency, validation accuracy, the reward the strategy saw, and
    the process (and host) that trained it."""

    sample: dict[str, Any]
    latency_ms: float
    accuracy: float
    reward: float
    seconds: float
    pid: int | None = None
    host: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mnasnet_reward(accuracy: float, latency_ms: float, target_ms: float, exponent: float) -> float:
    """MnasNet's soft-constrained objective ``ACC * (LAT / T) ** w`` (Tan et al., 2019; w = -0.07 there)."""
    return accuracy * (latency_ms / target_ms) ** exponent


class TrialRecords(StrategyMiddleware):
    """NNI strategy middleware that turns a trial's report (``trial.run_trial``'s dict) into a ``Trial`` (the
    predicted latency and the reward computed here) and passes the strategy the reward alone.

    Its callbacks are registered on the engine before the strategy's, so the strategy only ever sees the
    reward. Each record is appended to ``path`` (JSON lines) as it arrives; ``on_failure(model)`` is told of
    every trial that ended without a report. It holds every submitted model until its training ends: NNI's
    training-service engine keeps only weak references, and ``Random`` keeps none, so a report could
    otherwise arrive for a model already collected and be dropped.
    """

    def __init__(self, profile: Callable[[dict], float], reward: Callable[[float, float], float],
                 path: Path | None = None, on_failure: Callable[[Any], None] | None = None):
        super().__init__()
        self.profile, self.reward, self.path, self.on_failure = profile, reward, path, on_failure
        self.trials: list[Trial] = read_trials(path) if path is not None else []
        self._running: dict[int, Any] = {}
        self._idle = threading.Condition()

    def _initialize_engine(self, engine) -> None:
        from nni.nas.execution.event import ModelEventType

        engine.register_model_event_callback(ModelEventType.FinalMetric, self._on_report)
        engine.register_model_event_callback(ModelEventType.TrainingEnd, self._on_end)

    def _cleanup(self) -> None:
        """Kept attached: ``Chain`` cleans up when the strategy has submitted its last models, and on NNI's
        engine those are still training; ``detach`` once the experiment is done."""

    def detach(self) -> None:
        from nni.nas.execution.event import ModelEventType

        self.engine.unregister_model_event_callback(ModelEventType.FinalMetric, self._on_report)
        self.engine.unregister_model_event_callback(ModelEventType.TrainingEnd, self._on_end)

    def submit_models(self, *models) -> None:
        with self._idle:
            self._running.update((id(model), model) for model in models)
        self.engine.submit_models(*models)

    def wait_running(self, timeout: float) -> int:
        """Wait until every submitted trial has ended (NNI's engine may report its last trials after it says
        done); returns how many have not."""
        with self._idle:
            self._idle.wait_for(lambda: not self._running, timeout)
            return len(self._running)

    def list_models(self, status=None):
        yield from self.engine.list_models(status)

    def register_model_event_callback(self, event_type, callback) -> None:
        super().register_model_event_callback(event_type, callback)
        self.engine.register_model_event_callback(event_type, callback)

    def unregister_model_event_callback(self, event_type, callback) -> None:
        super().unregister_model_event_callback(event_type, callback)
        self.engine.unregister_model_event_callback(event_type, callback)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass  # the records live in ``path``, read at construction

    def _on_report(self, event) -> None:
        report = event.metric
        if isinstance(report, str):  # NNI's training-service engine hands a dict metric on still JSON-encoded
            report = json.loads(report)
        if not isinstance(report, dict):  # a scalar some other middleware set: not a trial's report
            return
        sample = dict(event.model.sample)
        latency = float(self.profile(sample))
        accuracy = float(report["accuracy"])
        trial = Trial(sample, latency, accuracy, float(self.reward(accuracy, latency)), float(report["seconds"]),
                      report.get("pid"), report.get("host"))
        self.trials.append(trial)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(trial.to_dict()) + "\n")
        _logger.info("trial %d: %.3f ms predicted, val top-1 %.3f, reward %.4f (%.1f s, pid %s)", len(self.trials),
                     latency, accuracy, trial.reward, trial.seconds, trial.pid)
        event.metric = trial.reward

    def _on_end(self, event) -> None:
        from nni.nas.space import ModelStatus

        with self._idle:
            self._running.pop(id(event.model), None)
            self._idle.notify_all()
        if event.status == ModelStatus.Failed and self.on_failure is not None:
            self.on_failure(event.model)


def read_trials(path: Path) -> list[Trial]:
    """The trials recorded in ``path`` (none when it does not exist yet)."""
    if not path.exists():
        return []
    return [Trial(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sample_key(sample: dict[str, Any]) -> str:
    """One string per architecture, the same before and after a JSON round trip (tuples become lists)."""
    return json.dumps(sample, sort_keys=True, default=str)


def build_trial_strategy(config: SearchConfig, profiler, records: TrialRecords):
    """The configured strategy chained with the budget filter (``latency: filter``) and ``records``; and its name.

    When ``records`` already holds trials (a resumed search), architectures it holds are filtered out before
    they train, and an evolution starts from them as its population."""
    from nni.nas.oneshot.pytorch.profiler import RangeProfilerFilter
    from nni.nas.strategy import Random, RegularizedEvolution
    from nni.nas.strategy.evolution import Individual
    from nni.nas.strategy.middleware import Chain, Filter

    trials = config.multi_trial
    if config.strategy.name == "evolution":
        strategy = RegularizedEvolution(population_size=trials.population_size, sample_size=trials.sample_size,
                                        mutation_prob=trials.mutation_prob, seed=config.trainer.seed)
        finished = [t for t in records.trials if math.isfinite(t.reward)]
        if finished:
            state = strategy.state_dict()
            state.update(population=[Individual(t.sample, t.reward) for t in finished[-trials.population_size:]],
                         individual_counter=len(records.trials))
            strategy.load_state_dict(state)
    else:
        strategy = Random(seed=config.trainer.seed)
    middlewares = []
    if records.trials:
        done = {sample_key(t.sample) for t in records.trials}
        middlewares.append(Filter(lambda model: sample_key(dict(model.sample)) not in done))
    name = f"{config.strategy.name} (latency as a second objective)"
    if trials.latency == "filter":
        budget = RangeProfilerFilter(profiler, max=config.latency.target_ms)
        middlewares.append(Filter(lambda model: budget(model.sample)))
        name = f"{config.strategy.name} (latency budget {config.latency.target_ms:g} ms as a filter)"
    return Chain(strategy, *middlewares, records), name


def _reward(config: SearchConfig, profiler) -> Callable[[float, float], float]:
    options = config.multi_trial
    target = config.latency.target_ms or getattr(profiler, "uniform_expected_latency", lambda: None)()
    if options.latency == "objective" and target is None:
        raise InvalidInput(f"multi_trial.latency objective on {config.space.name} needs latency.target_ms: its profiler "
                         "(FrozenLatencyProfiler) has no tables to take the space's mean latency from")
    if options.latency == "filter" or not target:
        return lambda accuracy, latency: accuracy
    return lambda accuracy, latency: mnasnet_reward(accuracy, latency, target, options.exponent)


def run_trials(config: SearchConfig, space, splits: DataSplits, profiler,
               output_dir: Path | None = None) -> tuple[dict[str, Any], str, list[Trial]]:
    """Search ``space`` on the configured engine; returns (the best architecture, the strategy's name, every trial).

    With ``output_dir`` every trial is also appended to ``output_dir/trials.jsonl`` as it finishes."""
    from nni.nas.evaluator import FunctionalEvaluator

    from .trial import remember_splits, run_trial, trial_arguments

    reward = _reward(config, profiler)
    path = None if output_dir is None else output_dir / TRIALS_FILE
    if path is not None and path.exists() and not config.execution.resume:
        keep_previous_results(config, (TRIALS_FILE,))  # a new search: earlier records are not its own; kept aside
    if config.execution.resume and (path is None or not path.exists()):
        raise InvalidInput(f"execution.resume: {path} does not exist, so there is no interrupted search to resume in "
                         "this output_dir; unset execution.resume to start a new one")
    records = TrialRecords(profiler.profile, reward, path)
    remaining = config.multi_trial.trials - len(records.trials)
    if records.trials:
        _logger.info("resuming: %d trial(s) recorded in %s, %d to go", len(records.trials), path, max(remaining, 0))
    strategy, name = build_trial_strategy(config, profiler, records)
    if remaining > 0 and config.execution.engine == "nni":
        from .engine import run_experiment

        run_experiment(config, space, strategy, records, remaining)
    elif remaining > 0:
        from nni.nas.execution import SequentialExecutionEngine
        from nni.nas.space import RawFormatModelSpace

        arguments = trial_arguments(config)
        remember_splits(arguments["data"], arguments["input_size"], splits)
        try:
            strategy(RawFormatModelSpace.from_model(space, FunctionalEvaluator(run_trial, **arguments)),
                     SequentialExecutionEngine(max_model_count=remaining))
        except KeyboardInterrupt:
            from .engine import SearchInterrupted

            raise SearchInterrupted(f"interrupted with {len(records.trials)} trial(s) done; resume with the same "
                                    "command and --set execution.resume=true") from None
        records.detach()
    trials = records.trials
    finished = [t for t in trials if math.isfinite(t.reward)]
    if not finished:
        raise InvalidInput(f"no architecture within latency.target_ms={config.latency.target_ms} ms was found; raise "
                         "the budget or use multi_trial.latency objective")
    best = max(finished, key=lambda t: t.reward)
    return best.sample, name, trials
