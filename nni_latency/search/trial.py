"""One trial of a multi-trial search: train a frozen architecture briefly, score it on the val split, report.

``run_trial`` is NNI's trial function (``FunctionalEvaluator(run_trial, **trial_arguments(config))``) for both
engines. In process it runs in the search's own process; on NNI's engine it runs in a trial process the
training service started, on this machine or another, so its arguments are plain data (they travel as JSON)
and it loads the dataset itself, once per process. It reports only what training measures; the predicted
latency and the reward are the search process's (``multitrial.TrialRecords``), so a remote machine needs
neither the device model nor the profiler.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from .config import DataConfig, SearchConfig

_logger = logging.getLogger(__name__)

__all__ = ["run_trial", "trial_arguments", "remember_splits"]

_SPLITS: dict[tuple, Any] = {}  # (data config, input size) -> DataSplits, loaded once per process


def _key(data: dict[str, Any], input_size: int) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in data.items())) + (input_size,)


def remember_splits(data: dict[str, Any], input_size: int, splits) -> None:
    """Let trials in this process reuse splits already loaded (the in-process engine: no second load)."""
    _SPLITS[_key(data, input_size)] = splits


def trial_arguments(config: SearchConfig, threads: int | None = None) -> dict[str, Any]:
    """What a trial needs, as JSON-able data; ``threads`` sets a trial process's torch threads (None: leave them)."""
    trainer = config.trainer
    return {"data": config.to_dict()["data"], "input_size": config.space.input_size,
            "epochs": config.multi_trial.trial_epochs, "learning_rate": trainer.learning_rate,
            "weight_decay": trainer.weight_decay, "optimizer": trainer.optimizer, "seed": trainer.seed,
            "threads": threads}


def run_trial(network, data: dict[str, Any], input_size: int, epochs: int, learning_rate: float, weight_decay: float,
              optimizer: str, seed: int, threads: int | None = None) -> None:
    """Train ``network`` for ``epochs`` and report ``{"default": val top-1, accuracy, seconds, pid, host}``."""
    import nni
    import torch

    from .data import load_splits, make_loader
    from .training import top1_accuracy, train_briefly

    started = time.perf_counter()
    if threads is not None:  # a trial process of its own: its thread count is this trial's to set
        torch.set_num_threads(threads)
    key = _key(data, input_size)
    if key not in _SPLITS:
        _SPLITS[key] = load_splits(DataConfig(**data), input_size)
    splits, options = _SPLITS[key], DataConfig(**data)
    torch.manual_seed(seed)
    train_briefly(network, make_loader(splits.train, options.batch_size, True, options.seed, options.num_workers),
                  epochs, learning_rate, weight_decay, optimizer)
    accuracy = top1_accuracy(network, make_loader(splits.val, options.batch_size, False))
    nni.report_final_result({"default": accuracy, "accuracy": accuracy,
                             "seconds": round(time.perf_counter() - started, 2),
                             "pid": os.getpid(), "host": socket.gethostname()})
