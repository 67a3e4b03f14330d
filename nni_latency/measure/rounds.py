"""The measuring loop shared by profiling and evaluation: many items, interleaved rounds, one row per (item, round)
appended to a ``RowStore`` as it is taken, and resume after an interruption.

Why rounds: on a shared machine the speed drifts over seconds (other tenants, frequency), so timing each
item once, back to back, hands some items a slow moment and others a fast one. With ``protocol.rounds``
passes over all items, each item is timed at several moments spread over the whole run, and its latency
comes from all its passes together (``rows.store.combine_rounds``); a burst then spoils one pass of an item, not
its estimate.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..errors import RowsError
from ..rows.check import check_one_protocol, protocol_mismatch
from ..rows.store import RowStore, combine_rounds
from ..runtimes.measurement import LatencyMeasurement
from ..runtimes.protocol import MeasurementProtocol
from .latency import measure_latency
from .progress import progress_bar

_logger = logging.getLogger(__name__)

__all__ = ["measure_rounds", "measure_modules", "check_resumable"]


def check_resumable(existing: Mapping[str, Sequence[dict]], protocol: MeasurementProtocol, dataset: Path) -> None:
    """Rows already in ``dataset`` must come from one machine and one protocol, the same as this run's."""
    check_one_protocol([row for rows in existing.values() for row in rows], dataset, "use another --output-dir")
    mismatch = protocol_mismatch((row for rows in existing.values() for row in rows), protocol)
    if mismatch:
        key, recorded, wanted = mismatch
        raise RowsError(f"{dataset} was measured with {key}={recorded!r}, this run uses {wanted!r}; use another "
                        "--output-dir or delete the file")


def measure_rounds(keys: Iterable[str], measure: Callable[[str], dict[str, Any]], store: RowStore,
                   protocol: MeasurementProtocol, *, progress: bool = True, description: str = "measuring",
                   unit: str = "block", existing: Mapping[str, Sequence[dict]] | None = None) -> dict[str, dict]:
    """Measure every key in ``protocol.rounds`` interleaved passes; return key -> its combined row.

    ``measure(key)`` times one item once and returns its row (at least ``latency_ms``); the loop adds the
    key, the round and the protocol, appends the row to ``store`` at once, and skips (key, round) pairs
    already there, so an interrupted run resumes where it stopped. ``existing``: the rows already in
    ``store`` by key, read and checked by the caller; otherwise they are read and checked here.
    """
    keys = list(dict.fromkeys(keys))
    if existing is None:
        existing = store.by_key()
        check_resumable(existing, protocol, store.path)
    existing = {key: list(rows) for key, rows in existing.items()}
    done = {(key, row.get("round", 0)) for key, rows in existing.items() for row in rows}
    todo = [(r, key) for r in range(protocol.rounds) for key in keys if (key, r) not in done]
    if existing and todo and len(todo) < protocol.rounds * len(keys):
        _logger.info("resuming: %d of %d measurements already in %s", protocol.rounds * len(keys) - len(todo),
                     protocol.rounds * len(keys), store.path)
    with progress_bar(len(todo), description, progress, unit) as bar:
        for round_index, key in todo:
            if protocol.rounds > 1:
                bar.set_postfix_str(f"round {round_index + 1}/{protocol.rounds}", refresh=False)
            row = {"key": key, **measure(key), "round": round_index, **protocol.to_dict()}
            store.append(row)
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
