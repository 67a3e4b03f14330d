"""The measuring loop shared by profiling and evaluation: many items, interleaved rounds, one JSONL row per
(item, round) appended as it is taken, and resume after an interruption.

Why rounds: on a shared machine the speed drifts over seconds (other tenants, frequency), so timing each
item once, back to back, hands some items a slow moment and others a fast one. With ``protocol.rounds``
passes over all items, each item is timed at several moments spread over the whole run, and its latency
comes from all its passes together (``combine_rounds``); a burst then spoils one pass of an item, not its estimate.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .fileio import append_jsonl, read_jsonl
from .progress import progress_bar
from .protocol import MeasurementProtocol, protocol_of
from .rowcheck import check_one_protocol
from .timing import LatencyMeasurement, measure_latency

_logger = logging.getLogger(__name__)

__all__ = ["measure_rounds", "measure_modules", "read_rounds", "combine_rounds", "check_resumable", "protocol_mismatch",
           "progress_bar"]

# What a combined row takes from the merged measurement; the rest (key, spec, protocol, ...) is the first row's.
_MERGED_FIELDS = ("latency_ms", "median_ms", "iqr_ms", "repeats", "noisy", "round_ms", "rounds")


def read_rounds(dataset: Path) -> dict[str, list[dict]]:
    """key -> its rows in ``dataset`` (one per measured round; rows without ``round`` are round 0)."""
    rows: dict[str, list[dict]] = {}
    if dataset.exists():
        for row in read_jsonl(dataset):
            if "key" in row:
                rows.setdefault(row["key"], []).append(row)
    return rows


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
    combined.update({key: merged[key] for key in _MERGED_FIELDS})
    return combined


def protocol_mismatch(rows: Iterable[dict], protocol: MeasurementProtocol) -> tuple[str, Any, Any] | None:
    """The first protocol field in which a row was measured otherwise than ``protocol`` asks: (field, the
    row's value, this run's value); None when every row agrees."""
    for row in rows:
        recorded = protocol_of(row)
        mismatch = recorded.differences(protocol)
        if mismatch:
            return mismatch[0], getattr(recorded, mismatch[0]), getattr(protocol, mismatch[0])
    return None


def check_resumable(existing: Mapping[str, Sequence[dict]], protocol: MeasurementProtocol, dataset: Path) -> None:
    """Rows already in ``dataset`` must come from one machine and one protocol, the same as this run's."""
    check_one_protocol([row for rows in existing.values() for row in rows], dataset, "use another --output-dir")
    mismatch = protocol_mismatch((row for rows in existing.values() for row in rows), protocol)
    if mismatch:
        key, recorded, wanted = mismatch
        raise ValueError(f"{dataset} was measured with {key}={recorded!r}, this run uses {wanted!r}; use another "
                         "--output-dir or delete the file")


def measure_rounds(keys: Iterable[str], measure: Callable[[str], dict[str, Any]], dataset: Path,
                   protocol: MeasurementProtocol, *, progress: bool = True, description: str = "measuring",
                   unit: str = "block", existing: Mapping[str, Sequence[dict]] | None = None) -> dict[str, dict]:
    """Measure every key in ``protocol.rounds`` interleaved passes; return key -> its combined row.

    ``measure(key)`` times one item once and returns its row (at least ``latency_ms``); the loop adds the
    key, the round and the protocol, appends the row to ``dataset`` at once, and skips (key, round) pairs
    already there, so an interrupted run resumes where it stopped. ``existing``: the rows already in
    ``dataset`` by key, read and checked by the caller; otherwise they are read and checked here.
    """
    keys = list(dict.fromkeys(keys))
    if existing is None:
        existing = read_rounds(dataset)
        check_resumable(existing, protocol, dataset)
    existing = {key: list(rows) for key, rows in existing.items()}
    done = {(key, row.get("round", 0)) for key, rows in existing.items() for row in rows}
    todo = [(r, key) for r in range(protocol.rounds) for key in keys if (key, r) not in done]
    if existing and todo and len(todo) < protocol.rounds * len(keys):
        _logger.info("resuming: %d of %d measurements already in %s", protocol.rounds * len(keys) - len(todo),
                     protocol.rounds * len(keys), dataset)
    with progress_bar(len(todo), description, progress, unit) as bar:
        for round_index, key in todo:
            if protocol.rounds > 1:
                bar.set_postfix_str(f"round {round_index + 1}/{protocol.rounds}", refresh=False)
            row = {"key": key, **measure(key), "round": round_index, **protocol.to_dict()}
            append_jsonl(dataset, row)
            existing.setdefault(key, []).append(row)
            bar.update()
    return {key: combine_rounds(existing[key]) for key in keys if key in existing}


def measure_modules(jobs: Sequence[tuple[str, Any, Any]], protocol: MeasurementProtocol, progress: bool = False,
                    description: str = "measuring", **options: Any) -> list[LatencyMeasurement]:
    """Measure each ``(label, module, input_shape)`` job under ``protocol`` (``options`` go to
    ``measure_latency``), showing the label of the one being measured."""
    results = []
    with progress_bar(len(jobs), description, progress) as bar:
        for label, module, shape in jobs:
            bar.set_postfix_str(label, refresh=False)
            results.append(measure_latency(module, shape, protocol, **options))
            bar.update()
    return results
