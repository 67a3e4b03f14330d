"""nni-latency: learned device latency models for hardware-aware NAS in NNI.

The data flows one way: micro-benchmark blocks -> measurements (JSONL) -> fit -> device model (JSON)
-> predictions -> NNI profiler / loss / analysis. The NNI side lives in ``nni_latency.nas``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nni-latency")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

from .analysis import Report, analyze
from .blocks import BlockSpec, build_block
from .features import FEATURE_NAMES, BlockFeatures, extract_features
from .model import DEFAULT_KIND, MODEL_KINDS, FlopsModel, LatencyModel, RelativeLinearModel, TwoRegimeModel
from .timing import LatencyMeasurement, measure_latency

__all__ = [
    "__version__",
    "BlockSpec",
    "build_block",
    "BlockFeatures",
    "FEATURE_NAMES",
    "extract_features",
    "LatencyMeasurement",
    "measure_latency",
    "LatencyModel",
    "TwoRegimeModel",
    "RelativeLinearModel",
    "FlopsModel",
    "MODEL_KINDS",
    "DEFAULT_KIND",
    "analyze",
    "Report",
]
