"""nni-latency: learned device latency models for hardware-aware NAS in NNI.

The data flows one way, one subpackage a step:

    suite (the blocks to measure) -> runtimes (eager PyTorch or ONNX Runtime runs and times them, every operator in
    place) -> measure (the protocol, the timing loop) -> rows (the measured rows, checked) -> fit (a cost per
    operator class) -> model (the device model, JSON; the one prediction path) -> analysis / evaluate / nas /
    search / cli

Every name below loads its module on first use, so ``import nni_latency`` (and the command line's ``--help``) does
not import torch. Modules moved by the layout of version 0.2 still import from their former paths, with a
``DeprecationWarning`` naming the new one (``deprecation``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from .deprecation import deprecated_names, install_moved_modules

try:
    __version__ = version("nni-latency")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

if TYPE_CHECKING:
    from .analysis.report import LatencyReport, analyze_network
    from .count.features import BlockFeatures, UncoveredOperatorWarning
    from .errors import NniLatencyError
    from .evaluate.networks import NetworkEvaluation, evaluate_networks
    from .evaluate.selection import NetworkSpec, select_networks
    from .fit.fitting import cross_validated_predictions, fit_records
    from .measure.allocator import AllocatorWarning, apply_allocator_policy
    from .measure.drift import DriftCheck, DriftWarning, check_drift
    from .measure.latency import measure_latency
    from .model import (DEFAULT_KIND, MODEL_KINDS, CostTerms, FlopsModel, LatencyModel, OutOfRangeWarning,
                        RelativeLinearModel, TwoRegimeModel)
    from .model.coverage import CoverageWarning
    from .profile.run import ProfileResult, run_profile
    from .runtimes import get_runtime
    from .runtimes.measurement import LatencyMeasurement
    from .runtimes.protocol import MeasurementProtocol, protocol_of
    from .runtimes.torch.counting import extract_features
    from .runtimes.torch.operators import FEATURE_NAMES
    from .suite.blocks import BlockSpec, build_block
    from .suite.config import ProfileConfig, TimingConfig

# public name -> the module that defines it
_EXPORTS = {
    "BlockSpec": "suite.blocks",
    "build_block": "suite.blocks",
    "ProfileConfig": "suite.config",
    "TimingConfig": "suite.config",
    "get_runtime": "runtimes",
    "BlockFeatures": "count.features",
    "UncoveredOperatorWarning": "count.features",
    "FEATURE_NAMES": "runtimes.torch.operators",
    "extract_features": "runtimes.torch.counting",
    "MeasurementProtocol": "runtimes.protocol",
    "protocol_of": "runtimes.protocol",
    "LatencyMeasurement": "runtimes.measurement",
    "measure_latency": "measure.latency",
    "apply_allocator_policy": "measure.allocator",
    "AllocatorWarning": "measure.allocator",
    "DriftWarning": "measure.drift",
    "DriftCheck": "measure.drift",
    "check_drift": "measure.drift",
    "run_profile": "profile.run",
    "ProfileResult": "profile.run",
    "fit_records": "fit.fitting",
    "cross_validated_predictions": "fit.fitting",
    "LatencyModel": "model",
    "CostTerms": "model",
    "TwoRegimeModel": "model",
    "RelativeLinearModel": "model",
    "FlopsModel": "model",
    "MODEL_KINDS": "model",
    "DEFAULT_KIND": "model",
    "OutOfRangeWarning": "model",
    "CoverageWarning": "model.coverage",
    "analyze_network": "analysis.report",
    "LatencyReport": "analysis.report",
    "evaluate_networks": "evaluate.networks",
    "NetworkEvaluation": "evaluate.networks",
    "select_networks": "evaluate.selection",
    "NetworkSpec": "evaluate.selection",
    "NniLatencyError": "errors",
}
# former names, still importable with a DeprecationWarning
_deprecated = deprecated_names(__name__, {"analyze": "nni_latency:analyze_network",
                                          "Report": "nni_latency:LatencyReport"})
install_moved_modules()

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    return _deprecated(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
