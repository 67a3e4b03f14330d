"""NNI 3.0 side of nni-latency: a latency profiler for model spaces, FBNet's latency loss and strategy, lookup tables.

    profiler = LatencyProfiler(space, (1, 3, 224, 224), "device_model.json")
    strategy = FBNet(penalty=FBNetLatencyLoss(profiler, alpha=0.2, beta=0.6))
    NasExperiment(space, evaluator, strategy).run()

See docs/NAS.md.
"""

from .loss import ExpectedLatency, FBNetLatencyLoss
from .lut import LutRow, predicted_rows, read_lut_txt, write_lut_json, write_lut_txt
from .profiler import ChoiceRecord, LatencyProfiler, LatencyTerm
from .strategy import FBNet, FBNetLightningModule

__all__ = [
    "LatencyProfiler",
    "LatencyTerm",
    "ChoiceRecord",
    "ExpectedLatency",
    "FBNetLatencyLoss",
    "FBNet",
    "FBNetLightningModule",
    "LutRow",
    "predicted_rows",
    "write_lut_json",
    "write_lut_txt",
    "read_lut_txt",
]
