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

import numpy as np

from .fileio import append_jsonl, read_jsonl
from .progress import progress_bar
from .protocol import MeasurementProtocol, protocol_of

_logger = logging.getLogger(__name__)

__all__ = ["measure_rounds", "read_rounds", "combine_rounds", "check_resumable", "protocol_mismatch",
           "progress_bar"]


def read_rounds(dataset: Path) -> dict[str, list[dict]]:
    """key -> its rows in ``dataset`` (one per measured round; rows without ``round`` are round 0)."""
    rows: dict[str, list[dict]] = {}
    if dataset.exists():
        for row in read_jsonl(dataset):
            if "key" in row:
                rows.setdefault(row["key"], []).append(row)
    return rows


def combine_rounds(rows: Sequence[dict]) -> dict:
    """One row for an item measured in several rounds: the first row, with the latency of all rounds together.

    Rows that keep their timed runs (``times_ms``) are pooled and the protocol's ``quantile`` of the pooled
    runs is the latency; older rows without them combine by the median of their latencies. ``round_ms``
    keeps every round's latency, ``rounds`` how many there were; ``noisy`` is set when a round was flagged
    or the rounds disagree by more than the protocol's ``max_spread``.
    """
    ordered = sorted(rows, key=lambda r: r.get("round", 0))
    if len(ordered) == 1:
        return dict(ordered[0])
    first = ordered[0]
    latencies = [float(r["latency_ms"]) for r in ordered]
    runs = [r.get("times_ms") for r in ordered]
    if all(isinstance(times, list) and times for times in runs):
        pooled = np.concatenate([np.asarray(times, float) for times in runs])
        latency = float(np.quantile(pooled, float(first.get("quantile", 0.5))))
        median = float(np.median(pooled))
    else:
        latency = median = float(np.median(latencies))
    spread = (max(latencies) - min(latencies)) / latency if latency > 0 else float("inf")
    combined = dict(first)
    combined.pop("round", None)
    combined.pop("times_ms", None)
    combined.update(latency_ms=latency, median_ms=median, round_ms=latencies, rounds=len(ordered),
                    iqr_ms=float(np.median([r.get("iqr_ms", 0.0) for r in ordered])),
                    repeats=int(sum(r.get("repeats", 0) for r in ordered)),
                    noisy=any(bool(r.get("noisy")) for r in ordered) or spread > float(first.get("max_spread", 0.1)))
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
    """Rows already in ``dataset`` must have been measured under the same protocol as this run."""
    mismatch = protocol_mismatch((row for rows in existing.values() for row in rows), protocol)
    if mismatch:
        key, recorded, wanted = mismatch
        raise ValueError(f"{dataset} was measured with {key}={recorded!r}, this run uses {wanted!r}; use another "
                         "--output-dir or delete the file")


def measure_rounds(keys: Iterable[str], measure: Callable[[str], dict[str, Any]], dataset: Path,
                   protocol: MeasurementProtocol, *, progress: bool = True, description: str = "measuring",
                   unit: str = "block") -> dict[str, dict]:
    """Measure every key in ``protocol.rounds`` interleaved passes; return key -> its combined row.

    ``measure(key)`` times one item once and returns its row (at least ``latency_ms``); the loop adds the
    key, the round and the protocol, appends the row to ``dataset`` at once, and skips (key, round) pairs
    already there, so an interrupted run resumes where it stopped.
    """
    keys = list(dict.fromkeys(keys))
    existing = read_rounds(dataset)
    check_resumable(existing, protocol, dataset)
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
