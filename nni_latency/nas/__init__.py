"""NNI 3.0 side of nni-latency: a latency profiler for model spaces, FBNet's latency loss and strategy, lookup tables.

    profiler = LatencyProfiler(space, (1, 3, 224, 224), "device_model.json")
    strategy = FBNet(penalty=FBNetLatencyLoss(profiler, alpha=0.2, beta=0.6))
    NasExperiment(space, evaluator, strategy).run()

One concept per module: ``profiler`` (the public class and its input checks), ``structure`` (what a block
is), ``units`` (what runs for real and NNI's shape inference), ``cells`` (NNI's ``Cell``: an op slot per
(op, input)), ``walk`` (the walk over the space), ``label_tables`` (the label-table algebra), ``fallback``
(frozen-network prediction and ``FrozenLatencyProfiler``), ``source`` (the ``LatencySource`` protocol),
``loss``, ``strategy``, ``lut``. Names load on first use, so importing one module
(``nni_latency.nas.loss``) does not import the others. See docs/NAS.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ..errors import require

require(("nni", "pytorch_lightning"), "nas", "nni_latency.nas (NNI's profiler, loss and strategies)")

if TYPE_CHECKING:
    from .fallback import FrozenLatencyProfiler, predict_frozen
    from .label_tables import LatencyTerm
    from .loss import ExpectedLatency, FBNetLatencyLoss
    from .lut import ChoiceRecord, LutRow, predicted_rows, read_lut_txt, write_lut_json, write_lut_txt
    from .profiler import LatencyProfiler
    from .source import LatencySource
    from .strategy import FBNet, FBNetLightningModule, LatencyDARTS, LatencyProxyless

_EXPORTS = {
    "LatencyProfiler": "profiler",
    "LatencyTerm": "label_tables",
    "LatencySource": "source",
    "ChoiceRecord": "lut",
    "ExpectedLatency": "loss",
    "FBNetLatencyLoss": "loss",
    "FBNet": "strategy",
    "FBNetLightningModule": "strategy",
    "LatencyDARTS": "strategy",
    "LatencyProxyless": "strategy",
    "FrozenLatencyProfiler": "fallback",
    "predict_frozen": "fallback",
    "LutRow": "lut",
    "predicted_rows": "lut",
    "write_lut_json": "lut",
    "write_lut_txt": "lut",
    "read_lut_txt": "lut",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
