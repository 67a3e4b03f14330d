"""Every check a search can make before it profiles, loads data or trains, so that a bad setting is refused in one
line at once instead of after minutes of work: its destinations (``check_outputs``: not an input, not a file of
another kind, writable), the measured lookup table against the search (``latency.lut``), and NNI's experiment
engine (node runtime, port, cores or GPU slots). ``keep_previous_results`` keeps an earlier search's files aside,
just before they are replaced.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..files.config import load_config, packaged_config
from ..files.outputs import Output, check_outputs, keep_previous
from ..model.model import LatencyModel
from ..runtimes.protocol import MeasurementProtocol, protocol_of
from ..suite.config import ProfileConfig
from .config import LatencyConfig, SearchConfig

_logger = logging.getLogger(__name__)

__all__ = ["SEARCH_FILES", "TRIALS_FILE", "search_outputs", "check_search", "keep_previous_results",
           "lut_context", "latency_protocol", "profile_config"]

TRIALS_FILE = "trials.jsonl"
# What a search writes in its output_dir, and the kind of each (``files.outputs.KINDS``).
SEARCH_FILES = {"result.json": "report", "probabilities.csv": "text", "probabilities.md": "text",
                "probabilities.png": "plot", "history.json": "report", "curves.png": "plot", TRIALS_FILE: "rows"}


def profile_config(config: LatencyConfig) -> ProfileConfig:
    """The profiling config of ``latency.profile`` (``profile_config``, with ``profile_set`` applied)."""
    path = Path(config.profile_config)
    return load_config(path if path.exists() else packaged_config(config.profile_config), ProfileConfig,
                       config.profile_set)


def latency_protocol(config: LatencyConfig) -> MeasurementProtocol:
    """The protocol the search measures under: the device model's, or the one its profiling run will use
    (what the command line sets the allocator policy from, before anything is measured)."""
    if config.device_model is not None:
        return protocol_of(LatencyModel.load(config.device_model))
    from ..profile.run import profile_protocol

    return profile_protocol(profile_config(config), config.profile)


def search_outputs(config: SearchConfig) -> list[Output]:
    """The files a search writes in ``config.output_dir``."""
    folder = Path(config.output_dir)
    return [Output(folder / name, kind, f"{name} in the output folder") for name, kind in SEARCH_FILES.items()]


def lut_context(config: SearchConfig) -> dict[str, Any]:
    """What a lookup table must have been measured for to serve this search (``lut_source.table_context``): its
    space, arguments and input size, under the protocol the search measures with, on this machine."""
    from .lut_source import table_context

    return table_context(config.space.name, config.space.arguments, config.space.input_size,
                         latency_protocol(config.latency))


def _check_engine(config: SearchConfig) -> None:
    """NNI's engine: its config, its node runtime, the manager's port, and the concurrency this machine holds."""
    from .engine import check_node_runtime, check_port, nni_experiment_config, trial_threads

    nni_config = nni_experiment_config(config)
    check_node_runtime()
    check_port(config.execution.port, getattr(nni_config.training_service, "platform", ""))
    trial_threads(nni_config.canonical_copy())


def check_search(config: SearchConfig, config_path: str | Path | None = None) -> None:
    """Refuse, in one line, whatever would make ``config``'s search fail or lose a file after it started working."""
    latency = config.latency
    check_outputs(search_outputs(config), {"--config": config_path, "latency.device_model": latency.device_model,
                                           "latency.lut": latency.lut})
    if latency.lut is not None:
        from .lut_source import check_measured, load_lut_rows

        check_measured(load_lut_rows(latency.lut, lut_context(config), config.space.arguments)[0])
    if config.execution.engine == "nni":
        _check_engine(config)


def keep_previous_results(config: SearchConfig, names: tuple[str, ...] | None = None) -> list[Path]:
    """Keep an earlier search's files in the output folder aside (``name.<time>.ext``), plots included: they come
    from a training run that cannot be repeated. ``names`` (default: every file but the trial records, which a
    multi-trial search keeps aside itself when it starts a new one)."""
    names = names if names is not None else tuple(name for name in SEARCH_FILES if name != TRIALS_FILE)
    return keep_previous([output for output in search_outputs(config) if output.path.name in names], plots=True)
