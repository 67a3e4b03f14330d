"""Whether a profiling run may resume in a folder that already holds measurements, so that a rerun with another
config never silently turns a good 100-point model into a 12-point one.

A rerun resumes when it would measure the same thing: the same machine, the same measurement protocol (recorded in
every JSONL row), the same suite config (recorded in the device model beside the rows), and only blocks of its own
suite in the rows (which also catches a first run interrupted before its model was written). Anything else is
refused with the first difference named (``check.first_difference``); ``force`` instead moves the old dataset and
model aside (``microbench.<time>.jsonl``), so no measurement is ever deleted.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import RowsError
from ..runtimes.protocol import MeasurementProtocol
from .check import check_one_protocol, check_same_machine, first_difference, protocol_mismatch
from .store import RowStore

_logger = logging.getLogger(__name__)

__all__ = ["check_resume", "SUITE_IGNORED"]

# Config keys that do not change what is measured: the fitted kind, and the thread count and timing
# budget, which the protocol of every row records as they were actually used (flags included).
SUITE_IGNORED = ("model_kind", "threads", "timing")


def _refuse(dataset: Path, key: str, recorded: Any, wanted: Any) -> RowsError:
    return RowsError(f"{dataset} was profiled with {key}={_short(recorded)}, this run asks for "
                     f"{key}={_short(wanted)}; profile into a new --output-dir, or pass --force to start a fresh "
                     "dataset here (the old files are kept as microbench.<time>.jsonl and device_model.<time>.json)")


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _recorded_config(model_path: Path) -> Mapping[str, Any] | None:
    """The suite config stored in the device model beside the rows, if there is a readable one."""
    try:
        config = json.loads(model_path.read_text(encoding="utf-8")).get("device", {}).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    return config if isinstance(config, Mapping) else None


def check_resume(store: RowStore, model_path: Path, config: Mapping[str, Any], protocol: MeasurementProtocol,
                 keys: Iterable[str], machine: str) -> dict[str, list[dict]]:
    """The rows of ``store`` by item key (read once, for the measuring loop to resume from), after checking that
    this run (``config`` as a dict, ``protocol``, the suite's block ``keys``, on the machine called ``machine``)
    would resume it rather than measure something else."""
    rows = store.read()
    if not rows:
        return {}
    dataset = store.path
    check_one_protocol(rows, dataset, "profile into a new --output-dir")
    check_same_machine(rows, machine, dataset)
    mismatch = protocol_mismatch(rows, protocol)
    if mismatch:
        raise _refuse(dataset, *mismatch)
    recorded_config = _recorded_config(model_path)
    if recorded_config is not None:
        difference = first_difference(recorded_config, config, skip=SUITE_IGNORED)
        if difference:
            raise _refuse(dataset, *difference)
    grouped = store.by_key(rows)
    foreign = sorted(set(grouped) - set(keys))
    if foreign:
        raise RowsError(f"{dataset} holds {len(foreign)} block(s) this config does not sample (e.g. {foreign[0]}): "
                        "it was profiled with another config; profile into a new --output-dir, or pass --force "
                        "to start a fresh dataset here (the old files are kept as microbench.<time>.jsonl)")
    return grouped
