"""Multi-trial search on NNI's own experiment engine (``execution.engine: nni``): ``NasExperiment`` with a training
service runs every trial as a process of its own, ``trial_concurrency`` at a time, here or on other machines.

The ``execution`` section keeps NNI's names; ``nni_experiment_config`` turns it into NNI's ``NasExperimentConfig``
(training-service engine, simplified model format), so what NNI accepts is what a search accepts. Before NNI's
manager starts, the things that would otherwise fail late or cryptically are checked, each a one-line
ValueError naming the fix: the node runtime, the manager's port, and the concurrency against this machine's
cores or GPUs. A crashed trial is logged with the last lines of its stderr and the search goes on. Ctrl-C
stops NNI's manager (which stops its trials) and raises ``SearchInterrupted`` with the line that resumes it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable

from ..errors import InvalidInput
from .config import SearchConfig

_logger = logging.getLogger(__name__)

__all__ = ["nni_experiment_config", "run_experiment", "SearchInterrupted", "check_node_runtime", "check_port",
           "trial_threads", "failed_trial_message"]

# Platforms whose manager also listens on port + 1 (NNI's launcher checks both).
_WEBSOCKET_PLATFORMS = ("hybrid", "remote", "openpai", "kubeflow", "frameworkcontroller", "adl")
_TAIL_LINES = 5
_REPORT_WAIT_S = 30.0  # how long the last trials' reports may lag NNI's "done"


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search on NNI's engine, after its manager and trials were stopped; the message says how to
    resume."""


def _training_service(value: Any):
    """NNI's training-service config from ``execution.training_service`` (a platform name or NNI's mapping)."""
    from nni.experiment.config import utils

    if isinstance(value, str):
        return utils.training_service_config_factory(value)
    if not isinstance(value, dict) or "platform" not in value:
        raise InvalidInput("execution.training_service must be a platform name (local, remote, ...) or NNI's "
                         f"training-service mapping with a platform key, got {value!r}")
    service = utils.load_training_service_config(dict(value))
    if isinstance(service, dict):
        raise InvalidInput(f"execution.training_service.platform {value['platform']!r} is not one of NNI's training "
                         "services; use local, remote, openpai, kubeflow, frameworkcontroller, aml, dlc")
    return service


def nni_experiment_config(config: SearchConfig, max_trials: int | None = None):
    """NNI's ``NasExperimentConfig`` for ``config.execution`` (``max_trials`` defaults to ``multi_trial.trials``),
    validated by NNI; what NNI rejects becomes a one-line ValueError."""
    from nni.nas.experiment import NasExperimentConfig

    execution = config.execution
    directory = execution.experiment_working_directory or str(Path(config.output_dir) / "nni-experiments")
    try:
        nni_config = NasExperimentConfig(
            "ts", "simplified", training_service=_training_service(execution.training_service),
            experiment_name=f"nni-latency {config.space.name} {config.strategy.name}",
            trial_concurrency=execution.trial_concurrency, max_trial_number=max_trials or config.multi_trial.trials,
            trial_gpu_number=execution.trial_gpu_number, max_experiment_duration=execution.max_experiment_duration,
            nni_manager_ip=execution.nni_manager_ip, experiment_working_directory=str(Path(directory).resolve()))
        nni_config.canonical_copy()  # NNI's own validation
    except (ValueError, TypeError, AssertionError) as error:  # how NNI's config classes reject a value
        text = " ".join(str(error).split()) or type(error).__name__
        raise InvalidInput(f"execution: NNI rejects this experiment config ({text}); see the keys of NNI's "
                         "experiment config (https://nni.readthedocs.io/en/stable/reference/experiment_config.html)"
                         ) from None
    return nni_config


def check_node_runtime() -> Path:
    """The node binary NNI's manager runs on (shipped in the ``nni`` wheel as ``nni_node``)."""
    import importlib.util

    spec = importlib.util.find_spec("nni_node")
    folder = Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None
    node = folder / ("node.exe" if os.name == "nt" else "node") if folder else None
    if node is None or not node.is_file() or not (folder / "main.js").is_file() or not os.access(node, os.X_OK):
        raise InvalidInput(f"NNI's node runtime is missing ({node or 'no nni_node package'}), which execution.engine nni "
                         "needs for its manager; reinstall NNI (pip install --force-reinstall nni==3.0) or set "
                         "execution.engine in_process")
    return node


def check_port(port: int, platform: str) -> None:
    """NNI's manager listens on ``port`` (and ``port + 1`` for remote platforms); refuse a port already taken."""
    for taken in (port, port + 1) if platform in _WEBSOCKET_PLATFORMS else (port,):
        with socket.socket() as probe:
            if probe.connect_ex(("localhost", taken)) == 0:
                raise InvalidInput(f"execution.port: port {taken} is already in use (another NNI experiment? "
                                 f"`nnictl stop --port {taken}` stops one); set execution.port to a free port")


def _gpu_count(service) -> int:
    indices = getattr(service, "gpu_indices", None)
    if indices:
        return len(indices)
    import torch

    return torch.cuda.device_count()


def trial_threads(nni_config) -> int | None:
    """Torch threads per trial on the local platform (its cores shared by the concurrent trials); None elsewhere.

    Refuses a concurrency the local machine cannot hold: more trials than cores, or than GPU slots."""
    service = nni_config.training_service
    if getattr(service, "platform", None) != "local":
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    concurrency, per_trial = nni_config.trial_concurrency, nni_config.trial_gpu_number or 0
    if per_trial > 0:
        gpus = _gpu_count(service)
        slots = gpus * service.max_trial_number_per_gpu // per_trial
        if concurrency > slots:
            raise InvalidInput(f"execution.trial_concurrency {concurrency} with trial_gpu_number {per_trial} needs "
                             f"{concurrency * per_trial} GPU(s), this machine has {gpus}; lower "
                             f"execution.trial_concurrency to {max(slots, 1)} or execution.trial_gpu_number")
    elif concurrency > cores:
        raise InvalidInput(f"execution.trial_concurrency {concurrency} exceeds the {cores} CPU core(s) of this machine; "
                         f"lower execution.trial_concurrency to {cores} (or give trials GPUs with trial_gpu_number)")
    return max(1, cores // concurrency)


def _log_folder(job) -> Path | None:
    """The local folder of a trial (``logPath`` is ``file://localhost:/path`` on the local platform)."""
    where = str(getattr(job, "logPath", "") or "")
    if where.startswith("file://"):
        where = where.split(":", 2)[-1] if where.count(":") >= 2 else where[len("file://"):]
        return Path(where)
    return None


def failed_trial_message(job) -> str:
    """One line for a crashed trial: its id, the last lines of its stderr (when they are on this machine), the log."""
    folder = _log_folder(job)
    stderr = folder / "stderr" if folder is not None else None
    tail = ""
    if stderr is not None and stderr.is_file():
        lines = [line.strip() for line in stderr.read_text(errors="replace").splitlines() if line.strip()]
        tail = " | ".join(lines[-_TAIL_LINES:])
    where = stderr if stderr is not None else getattr(job, "logPath", "?")
    return (f"trial {job.trialJobId} crashed ({tail or 'no stderr on this machine'}); the search goes on; its log: "
            f"{where}")


def _failure_reporter(experiment) -> Callable[[Any], None]:
    """``on_failure`` for ``TrialRecords``: warn once per failed trial job, with its stderr tail."""
    reported: set[str] = set()
    lock = threading.Lock()

    def report(model) -> None:
        try:
            jobs = experiment.list_trial_jobs()
        except Exception as error:  # noqa: BLE001 -- the manager may be stopping; the failure is logged anyway
            _logger.warning("a trial crashed (%s); the search goes on", error)
            return
        with lock:
            for job in jobs:
                if job.status in ("FAILED", "SYS_CANCELED") and job.trialJobId not in reported:
                    reported.add(job.trialJobId)
                    _logger.warning("%s", failed_trial_message(job))

    return report


def run_experiment(config: SearchConfig, space, strategy, records, max_trials: int) -> None:
    """Run ``strategy`` (chained with ``records``, a ``multitrial.TrialRecords``) for ``max_trials`` trials as an NNI
    experiment on the configured training service; the trials land in ``records``.

    NNI 3.0's own resume cannot run here (its checkpoint load trips torch's ``weights_only`` default, and its
    Python channel does not know the manager's ImportData command), so an interrupted search resumes as a new
    experiment that starts from the recorded trials (``execution.resume``)."""
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment

    from .trial import run_trial, trial_arguments

    execution = config.execution
    nni_config = nni_experiment_config(config, max_trials=max_trials)
    platform = getattr(nni_config.training_service, "platform", "")
    check_node_runtime()
    check_port(execution.port, platform)
    threads = trial_threads(nni_config.canonical_copy())
    evaluator = FunctionalEvaluator(run_trial, **trial_arguments(config, threads))
    experiment = NasExperiment(space, evaluator, strategy, nni_config)
    records.on_failure = _failure_reporter(experiment)
    _logger.info("NNI experiment %s: %d trial(s), %d at a time on %s; its files in %s", experiment.id, max_trials,
                 execution.trial_concurrency, platform, nni_config.experiment_working_directory)
    try:
        finished = experiment.run(execution.port)
        if finished is not None:
            if records.wait_running(_REPORT_WAIT_S):
                _logger.warning("NNI's engine finished before every trial's report reached this process; "
                                "result.json lists the trials that did")
            records.detach()
    except RuntimeError as error:
        if "not idle" in str(error):  # NNI's own port check, when another process took the port meanwhile
            raise InvalidInput(f"execution.port: port {execution.port} is already in use; set execution.port to a "
                             "free port") from None
        raise
    finally:
        if experiment.port is not None:  # NNI stops itself on Ctrl-C only; a finished or failed run is ours to stop
            experiment.stop()
    if finished is None:  # NNI's run() caught Ctrl-C and stopped its manager, which stops its trials
        raise SearchInterrupted(f"interrupted: NNI experiment {experiment.id} stopped with {len(records.trials)} "
                                "trial(s) done; resume with the same command and --set execution.resume=true")
