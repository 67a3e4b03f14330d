"""nni-latency: learned device latency models for hardware-aware NAS in NNI.

The data flows one way: micro-benchmark blocks (``blocks``) -> timing under a protocol (``protocol``,
``timing``) -> measurements in JSONL (``microbench``) -> fit (``fit``) -> device model in JSON (``model``,
``schema``) -> predictions -> NNI profiler / loss (``nas``) and bottleneck reports (``analysis``).

Every name below loads its module on first use, so ``import nni_latency`` (and the command line's
``--help``) does not import torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from .deprecation import deprecated_names

try:
    __version__ = version("nni-latency")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

if TYPE_CHECKING:
    from .analysis import LatencyReport, analyze_network
    from .blocks import BlockSpec, build_block
    from .config import ProfileConfig, TimingConfig
    from .coverage import CoverageWarning
    from .drift import DriftCheck, DriftWarning, check_drift
    from .features import FEATURE_NAMES, BlockFeatures, UncoveredOperatorWarning, extract_features
    from .fit import cross_validated_predictions, fit_records
    from .profiling import ProfileResult, run_profile
    from .model import (DEFAULT_KIND, MODEL_KINDS, CostTerms, FlopsModel, LatencyModel, OutOfRangeWarning,
                        RelativeLinearModel, TwoRegimeModel)
    from .network_evaluation import NetworkEvaluation, evaluate_networks
    from .network_selection import NetworkSpec, select_networks
    from .protocol import MeasurementProtocol, protocol_of
    from .timing import AllocatorWarning, LatencyMeasurement, apply_allocator_policy, measure_latency

# public name -> the module that defines it
_EXPORTS = {
    "BlockSpec": "blocks",
    "build_block": "blocks",
    "BlockFeatures": "features",
    "FEATURE_NAMES": "features",
    "extract_features": "features",
    "MeasurementProtocol": "protocol",
    "protocol_of": "protocol",
    "LatencyMeasurement": "timing",
    "measure_latency": "timing",
    "apply_allocator_policy": "timing",
    "ProfileConfig": "config",
    "TimingConfig": "config",
    "run_profile": "profiling",
    "ProfileResult": "profiling",
    "fit_records": "fit",
    "cross_validated_predictions": "fit",
    "LatencyModel": "model",
    "CostTerms": "model",
    "TwoRegimeModel": "model",
    "RelativeLinearModel": "model",
    "FlopsModel": "model",
    "MODEL_KINDS": "model",
    "DEFAULT_KIND": "model",
    "analyze_network": "analysis",
    "LatencyReport": "analysis",
    "UncoveredOperatorWarning": "features",
    "OutOfRangeWarning": "model",
    "AllocatorWarning": "timing",
    "CoverageWarning": "coverage",
    "DriftWarning": "drift",
    "DriftCheck": "drift",
    "check_drift": "drift",
    "evaluate_networks": "network_evaluation",
    "NetworkEvaluation": "network_evaluation",
    "select_networks": "network_selection",
    "NetworkSpec": "network_selection",
}
# former names, still importable with a DeprecationWarning
_deprecated = deprecated_names(__name__, {"analyze": "nni_latency:analyze_network",
                                          "Report": "nni_latency:LatencyReport"})

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    return _deprecated(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
