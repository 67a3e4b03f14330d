"""A measurement of one module: its timed runs in milliseconds and the statistics computed from them on demand,
whatever runtime took it. One spread everywhere (``relative_spread``, IQR / median): for the runs of one measurement,
the pooled runs of several rounds (``LatencyMeasurement.merge``) and the passes of the drift probe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InvalidInput

__all__ = ["LatencyMeasurement", "relative_spread"]


def relative_spread(values: Sequence[float]) -> float:
    """IQR / median of ``values``: how far timings of one thing disagree (inf when the median is 0). The one
    spread of the package: a measurement is ``noisy`` above its protocol's ``max_spread`` of it."""
    low, median, high = np.quantile(np.asarray(values, float), [0.25, 0.5, 0.75])
    return float((high - low) / median) if median > 0 else math.inf


@dataclass(frozen=True)
class LatencyMeasurement:
    """Repeated timings of one module, in milliseconds, with the statistics computed from them on demand.

    ``times_ms`` holds one entry per run of ``number_per_run`` calls: that run's time per call (what
    ``torch.utils.benchmark.Measurement.times`` holds, in ms). ``noisy`` applies the test behind
    ``Measurement.meets_confidence`` at the protocol's ``max_spread``. A measurement ``merge`` made of several
    rounds keeps each round's latency in ``round_ms`` and the calls of all of them in ``calls``.
    """

    times_ms: tuple[float, ...]
    number_per_run: int
    protocol: str
    copies: int
    max_spread: float = 0.10
    quantile: float = 0.5
    round_ms: tuple[float, ...] = ()
    calls: int | None = None  # None: len(times_ms) * number_per_run

    @classmethod
    def merge(cls, rounds: Sequence[LatencyMeasurement]) -> LatencyMeasurement:
        """One measurement of an item timed in several rounds: the runs of all rounds pooled, so its latency
        and spread are the first round's statistics over every run (a burst spoils some runs, not the estimate)."""
        if not rounds:
            raise InvalidInput("merging measurements needs at least one round")
        first = rounds[0]
        return cls(times_ms=tuple(t for m in rounds for t in m.times_ms), number_per_run=first.number_per_run,
                   protocol=first.protocol, copies=first.copies, max_spread=first.max_spread,
                   quantile=first.quantile, round_ms=tuple(m.latency_ms for m in rounds),
                   calls=sum(m.repeats for m in rounds))

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> LatencyMeasurement:
        """The measurement a row on disk holds (``to_dict`` plus the protocol's fields). A row written before runs
        were kept (no ``times_ms``) stands for one run at its ``latency_ms``."""
        times = row.get("times_ms")
        times = tuple(float(t) for t in times) if isinstance(times, list) and times else (float(row["latency_ms"]),)
        repeats = int(row.get("repeats") or len(times))
        return cls(times_ms=times, number_per_run=max(1, repeats // len(times)), protocol=str(row.get("protocol", "")),
                   copies=int(row.get("copies", 1)), max_spread=float(row.get("max_spread", 0.10)),
                   quantile=float(row.get("quantile", 0.5)), calls=repeats)

    @property
    def latency_ms(self) -> float:
        """The latency under the protocol: the ``quantile`` of the runs (the median unless it says otherwise)."""
        return float(np.quantile(self.times_ms, self.quantile))

    @property
    def median_ms(self) -> float:
        """The median of the runs: what a user's own timing loop (``torch.utils.benchmark``'s ``median``) shows."""
        return float(np.quantile(self.times_ms, 0.5))

    @property
    def mean_ms(self) -> float:
        """The mean of the runs (``torch.utils.benchmark``'s ``mean``): above the median when some runs are slow."""
        return float(np.mean(self.times_ms))

    @property
    def iqr_ms(self) -> float:
        low, high = np.quantile(self.times_ms, [0.25, 0.75])
        return float(high - low)

    @property
    def repeats(self) -> int:
        """Calls timed in all."""
        return self.calls if self.calls is not None else len(self.times_ms) * self.number_per_run

    @property
    def relative_spread(self) -> float:
        """IQR / median of the runs (``relative_spread``)."""
        return relative_spread(self.times_ms)

    @property
    def noisy(self) -> bool:
        """The runs, or the rounds of a merged measurement, disagree by more than ``max_spread``."""
        return self.relative_spread > self.max_spread or (
            len(self.round_ms) > 1 and relative_spread(self.round_ms) > self.max_spread)

    def to_dict(self) -> dict[str, Any]:
        """The summary written with every measured row (a merged one adds ``round_ms`` and ``rounds``)."""
        summary = {"latency_ms": self.latency_ms, "median_ms": self.median_ms, "mean_ms": self.mean_ms,
                   "iqr_ms": self.iqr_ms,
                   "repeats": self.repeats, "noisy": self.noisy, "protocol": self.protocol, "copies": self.copies,
                   "times_ms": [float(f"{t:.6g}") for t in self.times_ms]}
        if self.round_ms:
            summary.update(round_ms=list(self.round_ms), rounds=len(self.round_ms))
        return summary
