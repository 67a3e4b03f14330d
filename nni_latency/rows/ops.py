"""The operators' in-place times that profile rows carry, grouped by operator class for the fit, and how closely
they add up to their blocks."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..runtimes.base import OpClass

__all__ = ["op_rows", "op_sum_ratios", "op_check", "OpRows", "OP_SUM_RANGE"]

# A block whose operators' in-place times plus the model's per-call overheads land outside this share of its
# measured time does not add up (the clock's own cost not removed, calls it cannot see, overheads it misses).
OP_SUM_RANGE = (0.9, 1.1)
# More than this share of such blocks, and the profile says the op-level times do not add up.
OP_SUM_TOLERANCE = 0.05

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


def op_sum_ratios(records: Sequence[dict], model=None) -> np.ndarray:
    """For each block with operator times: (sum of its operators' in-place times, plus the per-call overheads and
    intercept ``model`` charges it when given) / its measured time. Near 1 when the op-level times account for the
    block."""
    ratios = []
    for record in records:
        if not record.get("ops") or not record.get("latency_ms"):
            continue
        timed = sum(float(op[2]) for op in record["ops"])
        if model is not None:
            terms = model.cost_terms(record["features"])
            timed += sum(ms for name, ms in terms.terms(record["features"]).items() if name.startswith("overhead."))
            timed += terms.intercept
        ratios.append(timed / record["latency_ms"])
    return np.array(ratios, float)


def _family(record: dict) -> str:
    spec = record.get("spec") if isinstance(record.get("spec"), dict) else {}
    return str(spec.get("family") or ("chain" if spec.get("blocks") else "?"))


def op_check(records: Sequence[dict], model=None) -> dict:
    """How well the operators' in-place times (plus ``model``'s per-call overheads) add up to their blocks: the
    median ratio, the share of blocks outside ``OP_SUM_RANGE``, and, when too many are, what does not add up: the
    block families most often outside, and the operator classes whose calls those blocks hold more of than the
    others do (recorded in the model, printed by the summary)."""
    timed = [record for record in records if record.get("ops") and record.get("latency_ms")]
    ratios = op_sum_ratios(timed, model)
    if not len(ratios):
        return {"blocks": 0}
    low, high = OP_SUM_RANGE
    outside = (ratios < low) | (ratios > high)
    check = {"blocks": len(ratios), "median_ratio": round(float(np.median(ratios)), 4),
             "outside_share": round(float(np.mean(outside)), 4), "range": list(OP_SUM_RANGE),
             "with_overheads": model is not None, "consistent": float(np.mean(outside)) <= OP_SUM_TOLERANCE}
    if outside.any():
        families: dict[str, list[float]] = {}
        for record, ratio, off in zip(timed, ratios, outside):
            if off:
                families.setdefault(_family(record), []).append(float(ratio))
        check["families"] = {name: {"blocks": len(values), "median_ratio": round(float(np.median(values)), 3)}
                             for name, values in sorted(families.items(), key=lambda item: -len(item[1]))[:5]}
        check["classes"] = _overrepresented(timed, outside)
    return check


def _overrepresented(records: Sequence[dict], outside: np.ndarray) -> list[str]:
    """Operator classes whose share of calls in the blocks that do not add up is at least 1.5 times their share
    in all blocks, most over-represented first."""
    def shares(chosen):
        counts: dict[str, int] = {}
        for record in chosen:
            for op in record["ops"]:
                counts[op[1]] = counts.get(op[1], 0) + 1
        total = sum(counts.values()) or 1
        return {cls: n / total for cls, n in counts.items()}

    everywhere, off = shares(records), shares([r for r, o in zip(records, outside) if o])
    ranked = sorted(((off[cls] / everywhere[cls], cls) for cls in off if off[cls] >= 1.5 * everywhere[cls]),
                    reverse=True)
    return [cls for _, cls in ranked[:4]]
