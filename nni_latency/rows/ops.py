"""The operators' in-place times that profile rows carry, grouped by operator class for the fit, and how closely
they add up to their blocks."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..runtimes.base import OpClass

__all__ = ["op_rows", "op_sum_ratios", "OpRows"]

OpRows = dict  # class name -> (features (n, len(class features)), ms (n,))


def op_rows(records: Sequence[dict], classes: Mapping[str, OpClass]) -> OpRows:
    """The in-place operator times of ``records``, by class: ``{class: (features, ms)}`` with each class's own
    feature columns (``classes``: the runtime's ``OpTable.classes``); a call of a class it does not know is
    skipped."""
    grouped: dict[str, tuple[list, list]] = {}
    for record in records:
        for _, cls, ms, features in record.get("ops") or ():
            if cls not in classes or not isinstance(features, dict):
                continue
            columns, times = grouped.setdefault(cls, ([], []))
            columns.append([float(features.get(name, 0.0)) for name in classes[cls].features])
            times.append(float(ms))
    return {cls: (np.array(columns, float), np.array(times, float)) for cls, (columns, times) in grouped.items()}


def op_sum_ratios(records: Sequence[dict]) -> np.ndarray:
    """For each block with operator times: (sum of its operators' in-place times) / its measured time. Near 1
    when the op-level times account for the block; the rest is per-call overhead the fit assigns."""
    ratios = [sum(float(op[2]) for op in record["ops"]) / record["latency_ms"]
              for record in records if record.get("ops") and record.get("latency_ms")]
    return np.array(ratios, float)
