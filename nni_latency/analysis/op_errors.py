"""Where a model's error sits, operator class by operator class: every call of a network timed in place by the
model's runtime (``Runtime.time_ops``: aten calls in eager PyTorch, graph nodes from ORT's profiler) against what
the model charges that call (its cost terms applied to the call's own features), summed per class (the runtime's
``OpTable``), with the classes that cost the most error first.

``nni-latency analyze NET --measure --ops`` prints it for a user's network; the benchmarks sum it over the zoo,
each network normalised to 1.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from torch import nn

from ..count.features import BlockFeatures
from ..errors import InvalidInput
from ..model.model import LatencyModel
from ..runtimes import get_runtime, get_table
from ..runtimes.base import OpTimes
from ..runtimes.protocol import MeasurementProtocol

_logger = logging.getLogger(__name__)

__all__ = ["OpClassRow", "op_class_rows", "class_rows", "time_calls", "format_op_classes", "OVERHEAD_ROW"]

# The row for what no operator accounts for: dispatch of every call, module calls or graph nodes, the model's
# intercept (a run's fixed cost).
OVERHEAD_ROW = "(dispatch and modules)"


@dataclass
class OpClassRow:
    """One operator class of a network: its calls, their in-place time, and what the model charges them."""

    cls: str
    calls: int
    measured_ms: float
    predicted_ms: float

    @property
    def ratio(self) -> float | None:
        """predicted / measured (None when nothing was measured)."""
        return self.predicted_ms / self.measured_ms if self.measured_ms > 0 else None

    @property
    def error_ms(self) -> float:
        return self.predicted_ms - self.measured_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "error_ms": self.error_ms}


def _aligned(counted: Sequence[str], timed: OpTimes) -> OpTimes | None:
    """``timed`` matched with the ``counted`` calls: a counted call that the timed (warm) passes never make
    (a cache a module fills on its first call after ``eval()``, as LeViT's attention biases) gets 0 ms; None
    when the timed calls are not a subsequence of the counted ones."""
    ms, position = [], 0
    for op in counted:
        if position < len(timed.ops) and timed.ops[position] == op:
            ms.append(timed.ms[position])
            position += 1
        else:
            ms.append(0.0)
    if position < len(timed.ops):
        return None
    return OpTimes(tuple(counted), tuple(ms), timed.overhead_ms, timed.passes)


def time_calls(module: nn.Module, input_shape: Sequence[int], model: LatencyModel,
               protocol: MeasurementProtocol) -> tuple[BlockFeatures, OpTimes]:
    """``module``'s calls counted as ``model`` counts them, and their in-place times, matched one by one.

    Raises ``ValueError`` when the timed calls cannot be matched with the counted ones (data-dependent control
    flow), so that no call can be matched with its time.
    """
    features = model.count(module, input_shape)
    timed = get_runtime(model.runtime).time_ops(module, input_shape, protocol)
    matched = _aligned([record.op for record in features.ops], timed) if timed is not None else None
    if matched is None:
        raise InvalidInput(f"{type(module).__name__} runs different calls from one forward pass to the next "
                           "(data-dependent control flow), so its calls cannot be timed one by one")
    return features, matched


def class_rows(features: BlockFeatures, timed: OpTimes, model: LatencyModel,
               whole_ms: float | None = None) -> list[OpClassRow]:
    """Per-class rows from counted calls and their in-place times (``time_calls``), priced by ``model``'s cost
    terms, largest absolute error first; the overhead row (what ``whole_ms``, the network measured whole, leaves
    over its operators' sum) comes last when it is given."""
    terms = model.cost_terms(features.as_dict())
    rows: dict[str, OpClassRow] = {}
    for record, measured in zip(features.ops, timed.ms):
        row = rows.setdefault(record.cls, OpClassRow(record.cls, 0, 0.0, 0.0))
        row.calls += 1
        row.measured_ms += measured
        row.predicted_ms += terms.predict(record.adds, include_intercept=False)
    ranked = sorted(rows.values(), key=lambda row: -abs(row.error_ms))
    if whole_ms is not None:
        predicted_ops = sum(row.predicted_ms for row in ranked)
        calls = sum(features[name] for name in get_table(model.runtime).overheads if name != "overhead.modules")
        ranked.append(OpClassRow(OVERHEAD_ROW, int(calls),
                                 max(whole_ms - timed.total_ms, 0.0), terms.predict(features.as_dict()) - predicted_ops))
    return ranked


def op_class_rows(module: nn.Module, input_shape: Sequence[int], model: LatencyModel,
                  protocol: MeasurementProtocol | None = None, *, whole_ms: float | None = None) -> list[OpClassRow]:
    """Per-class rows for ``module`` on ``input_shape``: its calls counted as ``model`` counts them, timed in
    place under ``protocol`` (the model's by default), priced by ``model`` (``class_rows``)."""
    features, timed = time_calls(module, input_shape, model, protocol or model.protocol or MeasurementProtocol())
    return class_rows(features, timed, model, whole_ms)


def format_op_classes(rows: Sequence[OpClassRow]) -> str:
    """The per-class table as text: calls, measured and predicted ms, their ratio and share of the error."""
    total_error = sum(abs(row.error_ms) for row in rows) or 1.0
    header = f"{'operator class':<24} {'calls':>6} {'measured ms':>12} {'predicted ms':>13} {'pred/meas':>10} {'error share':>12}"
    lines = [header, "-" * len(header)]
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(f"{row.cls:<24} {row.calls:>6} {row.measured_ms:>12.3f} {row.predicted_ms:>13.3f} {ratio:>10} "
                     f"{100 * abs(row.error_ms) / total_error:>11.1f}%")
    return "\n".join(lines)
