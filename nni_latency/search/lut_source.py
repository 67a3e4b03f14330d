"""FBNet's original latency source, a measured lookup table, in the shape the FBNet loss reads.

``nni-latency lut --measure`` times every candidate of every searched layer (``lut.json``). ``TableLatency``
turns those measurements into the per-label tables ``FBNetLatencyLoss`` contracts with the architecture
probabilities, so a search can use the measured table instead of the device model's prediction and the
two can be compared. The architecture-independent part (stem, head, classifier) is the same for every
architecture and only shifts the total; it is taken from the profiler's prediction.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InvalidInput
from ..files.formats import LUT_FORMAT
from ..nas.label_tables import LatencyTerm
from ..nas.profiler import LatencyProfiler
from ..nas.source import LatencySource

_logger = logging.getLogger(__name__)

__all__ = ["TableLatency", "load_lut_rows"]


def load_lut_rows(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows and metadata of a ``lut.json`` written by ``nni-latency lut``; one-line errors otherwise."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(f"latency.lut {str(path)!r} does not exist; write it with "
                         "`nni-latency lut --measure`") from None
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidInput(f"latency.lut {str(path)!r} cannot be read as JSON ({error})") from None
    is_table = isinstance(data, Mapping) and data.get("format") == LUT_FORMAT
    if not (is_table and isinstance(data.get("rows"), list)):
        raise InvalidInput(f"latency.lut {str(path)!r} is not an nni-latency lookup table "
                         "(lut.json from `nni-latency lut`)")
    metadata = {k: v for k, v in data.items() if k != "rows"}
    return data["rows"], metadata


class TableLatency(LatencySource):
    """Latency (ms) of an architecture from a lookup table: per-layer candidate times plus a fixed part.

    A ``LatencySource``, as a ``LatencyProfiler`` is, so ``FBNetLatencyLoss`` and the search report take either.
    """

    def __init__(self, profiler: LatencyProfiler, rows: list[Mapping[str, Any]], column: str = "measured_ms"):
        self.label_values = profiler.label_values
        times: dict[str, dict[str, float]] = {}
        for row in rows:
            if row.get(column) is None:
                raise InvalidInput(f"lookup-table row {row.get('layer')}/{row.get('candidate')} has no {column}; "
                                 "write the table with `nni-latency lut --measure`")
            times.setdefault(str(row["layer"]), {})[str(row["candidate"])] = float(row[column])
        constant = float(sum(float(term.table) for term in profiler.terms if not term.labels))
        terms = [LatencyTerm((), np.asarray(constant), ("fixed part (predicted)",))]
        for label, values in self.label_values.items():
            layer = times.get(label)
            missing = [v for v in values if layer is None or str(v) not in layer]
            if missing:
                raise InvalidInput(f"the lookup table lacks layer {label!r} candidate(s) {missing}; it was written for "
                                 "another space: rerun `nni-latency lut` with the search's space arguments")
            terms.append(LatencyTerm((label,), np.array([layer[str(v)] for v in values], float), (column,)))
        self.terms = terms
        self.constant_ms = constant

    def profile(self, sample: Mapping[str, Any]) -> float:
        total = self.constant_ms
        for term in self.terms[1:]:
            label = term.labels[0]
            total += float(term.table[self.label_values[label].index(sample[label])])
        return total

    def uniform_expected_latency(self) -> float:
        return self.constant_ms + sum(float(term.table.mean()) for term in self.terms[1:])
