"""The measured rows of a profile (``microbench.jsonl``): reading them back, recounting rows of an older feature
set, and the in-place operator times they carry, grouped by operator class for the fit.

A row is one block (or chain) measured in one round: its spec, its features, its measurement, the protocol's
fields and, since op-level profiling, ``ops``: each aten call it ran as ``[operator, class, ms, features]``,
timed in place (``op_timing``), with ``op_overhead_ms`` the clock's cost that was removed from each call.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .blocks import spec_from_dict
from .features import FEATURE_NAMES, extract_features
from .fileio import read_jsonl
from .rounds import combine_rounds
from .operators import OP_CLASSES
from .protocol import protocol_of
from .rowcheck import check_one_protocol, select_rows

_logger = logging.getLogger(__name__)

__all__ = ["load_records", "recount_features", "has_current_features", "combined_rows", "op_rows", "op_sum_ratios",
           "OpRows"]

OpRows = dict  # class name -> (features (n, len(class features)), ms (n,))


def has_current_features(record: dict) -> bool:
    """Whether a row holds every feature of this version (else ``recount_features`` recounts them)."""
    features = record.get("features")
    return isinstance(features, dict) and all(name in features for name in FEATURE_NAMES)


def recount_features(record: dict) -> dict:
    """A copy of ``record`` whose features are counted again from its block spec, as its protocol counts.

    Rows measured with an older feature set stay usable: a latency does not depend on how features are counted.
    The features of its operator calls are recounted too (their times stay).
    """
    spec = spec_from_dict(record["spec"])
    features = extract_features(spec.build(seed=0), spec.input_shape, protocol_of(record).counting)
    recounted = {**record, "features": features.as_dict()}
    ops = record.get("ops")
    if isinstance(ops, list) and [op[0] for op in ops] == [r.op for r in features.ops]:  # the calls' own features too
        recounted["ops"] = [[r.op, r.cls, op[2], r.features] for op, r in zip(ops, features.ops)]
    return recounted


def _merged_ops(rows: Sequence[dict]) -> list | None:
    """One op list for a block measured in several rounds: each call's median time over the rounds that timed
    the same calls."""
    lists = [row["ops"] for row in rows if isinstance(row.get("ops"), list) and row["ops"]]
    if not lists:
        return None
    first = lists[0]
    same = [ops for ops in lists if [op[:2] for op in ops] == [op[:2] for op in first]]
    times = np.median(np.array([[float(op[2]) for op in ops] for ops in same]), axis=0)
    return [[op[0], op[1], float(ms), op[3]] for op, ms in zip(first, times)]


def combined_rows(rows: Iterable[dict]) -> list[dict]:
    """Rows of one block measured in several rounds become one row (``rounds.combine_rounds``), their
    operator times merged."""
    by_key: dict[str, list[dict]] = {}
    for index, row in enumerate(rows):
        by_key.setdefault(row.get("key", f"<row {index}>"), []).append(row)
    combined = []
    for group in by_key.values():
        row = combine_rounds(group) if len(group) > 1 else dict(group[0])
        ops = _merged_ops(group)
        if ops is not None:
            row["ops"] = ops
        combined.append(row)
    return combined


def load_records(path: str | Path, only: str | None = None) -> list[dict]:
    """Measured rows of a JSONL dataset, one per block; rows with NaN/inf/non-positive latency are dropped with
    a warning, rows from an older feature set are recounted from their block spec.

    Rows measured on several machines or under several protocols are refused, naming the first difference;
    ``only`` (``FIELD=VALUE``, e.g. ``threads=1``) keeps one part (``rowcheck``)."""
    if not Path(path).exists():
        raise ValueError(f"dataset {str(path)!r} does not exist; create one with `nni-latency profile`")
    rows = select_rows(list(read_jsonl(path)), only, path)
    check_one_protocol(rows, path)
    records, dropped = [], 0
    for record in combined_rows(rows):
        latency = record.get("latency_ms")
        if not isinstance(latency, (int, float)) or not math.isfinite(latency) or latency <= 0:
            dropped += 1
            continue
        if not has_current_features(record):
            if not isinstance(record.get("spec"), dict):
                raise ValueError(f"{path}: row {record.get('key', '?')!r} lacks features and a block spec; "
                                 "re-profile to recreate it")
            record = recount_features(record)
        records.append(record)
    if dropped and not records:
        raise ValueError(f"{path}: all {dropped} row(s) have a NaN, inf or non-positive latency, so there is nothing "
                         "to fit; profile again to measure them")
    if dropped:
        warnings.warn(f"{path}: dropped {dropped} row(s) with NaN, inf or non-positive latency", stacklevel=2)
    return records


def op_rows(records: Sequence[dict]) -> OpRows:
    """The in-place operator times of ``records``, by class: ``{class: (features, ms)}`` with each class's own
    feature columns (``operators.OP_CLASSES``); a call of a class this version does not know is skipped."""
    grouped: dict[str, tuple[list, list]] = {}
    for record in records:
        for _, cls, ms, features in record.get("ops") or ():
            if cls not in OP_CLASSES or not isinstance(features, dict):
                continue
            columns, times = grouped.setdefault(cls, ([], []))
            columns.append([float(features.get(name, 0.0)) for name in OP_CLASSES[cls].features])
            times.append(float(ms))
    return {cls: (np.array(columns, float), np.array(times, float)) for cls, (columns, times) in grouped.items()}


def op_sum_ratios(records: Sequence[dict]) -> np.ndarray:
    """For each block with operator times: (sum of its operators' in-place times) / its measured time. Near 1
    when the op-level times account for the block; the rest is per-call overhead the fit assigns."""
    ratios = [sum(float(op[2]) for op in record["ops"]) / record["latency_ms"]
              for record in records if record.get("ops") and record.get("latency_ms")]
    return np.array(ratios, float)
