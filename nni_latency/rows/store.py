"""THE row store: a JSONL file of measured rows (``microbench.jsonl``, ``testset.jsonl``, ``networks.jsonl``), one row
per item and round, appended as each is taken. Every reader goes through it: profile, fit, evaluate and the
benchmarks.

A row is one item (a block, a chain, a network) measured in one round: its key, its spec, its features, its
measurement, the protocol's fields and, for the profile, ``ops``: each operator call it ran as ``[operator, class,
ms, features]``, timed in place, with ``op_overhead_ms`` the clock's cost that was removed from each call.

``RowStore`` reads, groups by item, appends and sets the file aside; ``combine_rounds`` makes one row of an item's
rounds; ``load_records`` is what a fit reads: rows checked for one machine and one protocol (``check``), selected
with ``--only``, combined, duplicates and rows of another schema named, rows of an older feature set recounted.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import RowsError
from ..files.fileio import append_jsonl, read_jsonl, set_aside
from ..runtimes import get_runtime, get_table
from ..runtimes.measurement import LatencyMeasurement
from ..runtimes.protocol import protocol_of
from ..suite.blocks import spec_from_dict
from .check import check_one_protocol, select_rows

_logger = logging.getLogger(__name__)

__all__ = ["RowStore", "combine_rounds", "combined_rows", "load_records", "has_current_features",
           "recount_features", "ROW_KEYS"]

# What a combined row takes from the merged measurement; the rest (key, spec, protocol, ...) is the first row's.
_MERGED_FIELDS = ("latency_ms", "median_ms", "mean_ms", "iqr_ms", "repeats", "noisy", "round_ms", "rounds")
# Every measured row has these; a line without them is not a row of nni-latency.
ROW_KEYS = ("key", "latency_ms")


class RowStore:
    """The measured rows of one JSONL file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RowStore({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> list[dict]:
        """Every row, in file order ([] when there is no file); a line left torn by an interrupted write is
        skipped with a warning (``files.fileio.read_jsonl``)."""
        return list(read_jsonl(self.path)) if self.path.exists() else []

    def by_key(self, rows: Sequence[dict] | None = None) -> dict[str, list[dict]]:
        """key -> its rows (one per measured round; rows without ``round`` are round 0)."""
        grouped: dict[str, list[dict]] = {}
        for row in self.read() if rows is None else rows:
            if "key" in row:
                grouped.setdefault(row["key"], []).append(row)
        return grouped

    def append(self, row: dict) -> None:
        """Append one row at once (a run interrupted later keeps it)."""
        append_jsonl(self.path, row)

    def set_aside(self) -> Path | None:
        """Rename the file to ``name.<time>.jsonl`` beside it (nothing is ever deleted); the new path."""
        moved = set_aside([self.path])
        return moved[0] if moved else None


def combine_rounds(rows: Sequence[dict]) -> dict:
    """One row for an item measured in several rounds: the first row, with the statistics of the rounds' merged
    measurement (``LatencyMeasurement.merge``: their timed runs pooled, the protocol's ``quantile`` of them the
    latency). ``round_ms`` keeps every round's latency, ``rounds`` how many there were; ``noisy`` is set when the
    pooled runs or the rounds disagree by more than the protocol's ``max_spread``. Rows written before runs were
    kept (no ``times_ms``) count as one run at their latency each.
    """
    ordered = sorted(rows, key=lambda r: r.get("round", 0))
    if len(ordered) == 1:
        return dict(ordered[0])
    merged = LatencyMeasurement.merge([LatencyMeasurement.from_dict(row) for row in ordered]).to_dict()
    combined = {key: value for key, value in ordered[0].items() if key not in ("round", "times_ms")}
    combined.update({key: merged[key] for key in _MERGED_FIELDS if key in merged})
    return combined


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
    """Rows of one item measured in several rounds become one row (``combine_rounds``), their operator times
    merged."""
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


def has_current_features(record: dict) -> bool:
    """Whether a row holds every feature its runtime counts today (else ``recount_features`` recounts them)."""
    features = record.get("features")
    names = get_table(protocol_of(record).runtime).all_feature_names
    return isinstance(features, dict) and all(name in features for name in names)


def recount_features(record: dict) -> dict:
    """A copy of ``record`` whose features are counted again from its block spec, as its runtime and protocol count.

    Rows measured with an older feature set stay usable: a latency does not depend on how features are counted.
    The features of its operator calls are recounted too (their times stay).
    """
    spec = spec_from_dict(record["spec"])
    protocol = protocol_of(record)
    features = get_runtime(protocol.runtime).count_shape(spec.build(seed=0), spec.input_shape, protocol.counting)
    recounted = {**record, "features": features.as_dict()}
    ops = record.get("ops")
    if isinstance(ops, list) and [op[0] for op in ops] == [r.op for r in features.ops]:  # the calls' own features too
        recounted["ops"] = [[r.op, r.cls, op[2], r.features] for op, r in zip(ops, features.ops)]
    return recounted


def _without_duplicates(rows: list[dict], source: str) -> list[dict]:
    """Rows with each (key, round) once: a row written twice (a file concatenated with itself) would weigh twice
    in the fit; the copies are dropped with one warning."""
    seen: set = set()
    kept = []
    for row in rows:
        identity = (row.get("key"), row.get("round", 0))
        if identity in seen:
            continue
        seen.add(identity)
        kept.append(row)
    if len(kept) < len(rows):
        warnings.warn(f"{source}: dropped {len(rows) - len(kept)} duplicate row(s) (the same item and round more "
                      "than once; was the file concatenated with itself?); each measurement is used once",
                      stacklevel=3)
    return kept


def _check_schema(rows: Sequence[dict], source: str) -> None:
    """Refuse a file whose lines are not measured rows (a model, a report, another tool's JSONL), naming the line."""
    for number, row in enumerate(rows, start=1):
        missing = [key for key in ROW_KEYS if key not in row]
        if missing:
            shown = ", ".join(sorted(map(str, row))[:6]) or "none"
            raise RowsError(f"{source}: row {number} is not a measured row of nni-latency (it lacks "
                            f"{' and '.join(missing)}; its keys: {shown}); give a microbench.jsonl written by "
                            "`nni-latency profile`")


def load_records(path: str | Path, only: str | None = None) -> list[dict]:
    """Measured rows of a JSONL dataset, one per item (its rounds combined), ready to fit.

    Rows of another schema are refused, naming the line; duplicates are dropped with a warning; rows with
    NaN/inf/non-positive latency are dropped with a warning; rows from an older feature set are recounted from
    their block spec. Rows measured on several machines or under several protocols are refused, naming the first
    difference; ``only`` (``FIELD=VALUE``, e.g. ``threads=1``) keeps one part (``check``)."""
    store = RowStore(path)
    if not store.exists():
        raise RowsError(f"dataset {str(path)!r} does not exist; create one with `nni-latency profile`")
    rows = store.read()
    _check_schema(rows, str(path))
    rows = _without_duplicates(select_rows(rows, only, path), str(path))
    check_one_protocol(rows, path)
    records, dropped = [], 0
    for record in combined_rows(rows):
        latency = record.get("latency_ms")
        if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not math.isfinite(latency) \
                or latency <= 0:
            dropped += 1
            continue
        if not has_current_features(record):
            if not isinstance(record.get("spec"), dict):
                raise RowsError(f"{path}: row {record.get('key', '?')!r} lacks features and a block spec; "
                                "re-profile to recreate it")
            record = recount_features(record)
        records.append(record)
    if dropped and not records:
        raise RowsError(f"{path}: all {dropped} row(s) have a NaN, inf or non-positive latency, so there is nothing "
                        "to fit; profile again to measure them")
    if dropped:
        warnings.warn(f"{path}: dropped {dropped} row(s) with NaN, inf or non-positive latency", stacklevel=2)
    return records
