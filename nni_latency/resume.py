"""Whether a profiling run may resume in a folder that already holds measurements, so that a rerun with
another config never silently turns a good 100-point model into a 12-point one.

A rerun resumes when it would measure the same thing: the same measurement protocol (recorded in every
JSONL row), the same suite config (recorded in the device model beside the rows), and only blocks of its
own suite in the rows (which also catches a first run interrupted before its model was written). Anything
else is refused with the first difference named; ``force`` instead moves the old dataset and model aside
(``microbench.<time>.jsonl``), so no measurement is ever deleted.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from .fileio import read_jsonl
from .rounds import protocol_mismatch
from .protocol import MeasurementProtocol
from .rowcheck import check_one_protocol, check_same_machine

_logger = logging.getLogger(__name__)

__all__ = ["check_resume", "set_aside", "SUITE_IGNORED"]

# Config keys that do not change what is measured: the fitted kind, and the thread count and timing
# budget, which the protocol of every row records as they were actually used (flags included).
SUITE_IGNORED = ("model_kind", "threads", "timing")


def _refuse(dataset: Path, key: str, recorded: Any, wanted: Any) -> ValueError:
    return ValueError(f"{dataset} was profiled with {key}={_short(recorded)}, this run asks for "
                      f"{key}={_short(wanted)}; profile into a new --output-dir, or pass --force to start a fresh "
                      "dataset here (the old files are kept as microbench.<time>.jsonl and device_model.<time>.json)")


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_difference(recorded: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = "") -> tuple | None:
    # In the config's own order; a key the recorded config lacks (written by an older version) is not compared.
    for key in wanted:
        if (prefix == "" and key in SUITE_IGNORED) or key not in recorded:
            continue
        old, new = recorded.get(key), wanted.get(key)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            nested = _first_difference(old, new, f"{prefix}{key}.")
            if nested:
                return nested
        elif old != new:
            return f"{prefix}{key}", old, new
    return None


def _recorded_config(model_path: Path) -> Mapping[str, Any] | None:
    """The suite config stored in the device model beside the rows, if there is a readable one."""
    try:
        config = json.loads(model_path.read_text(encoding="utf-8")).get("device", {}).get("config")
    except (OSError, ValueError, AttributeError):
        return None
    return config if isinstance(config, Mapping) else None


def check_resume(dataset: Path, model_path: Path, config: Mapping[str, Any], protocol: MeasurementProtocol,
                 keys: Iterable[str]) -> dict[str, list[dict]]:
    """The rows of ``dataset`` by block key (read once, for the measuring loop to resume from), after checking
    that this run (``config`` as a dict, ``protocol``, the suite's block ``keys``) would resume it rather than
    measure something else."""
    if not dataset.exists():
        return {}
    rows = list(read_jsonl(dataset))
    check_one_protocol(rows, dataset, "profile into a new --output-dir")
    check_same_machine(rows, protocol.device, dataset)
    mismatch = protocol_mismatch(rows, protocol)
    if mismatch:
        raise _refuse(dataset, *mismatch)
    recorded_config = _recorded_config(model_path)
    if recorded_config is not None:
        difference = _first_difference(recorded_config, config)
        if difference:
            raise _refuse(dataset, *difference)
    wanted = set(keys)
    measured = {row["key"] for row in rows if "key" in row}
    foreign = sorted(measured - wanted)
    if foreign:
        raise ValueError(f"{dataset} holds {len(foreign)} block(s) this config does not sample (e.g. {foreign[0]}): "
                         "it was profiled with another config; profile into a new --output-dir, or pass --force "
                         "to start a fresh dataset here (the old files are kept as microbench.<time>.jsonl)")
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        if "key" in row:
            grouped.setdefault(row["key"], []).append(row)
    return grouped


def set_aside(paths: Iterable[Path]) -> list[Path]:
    """Rename each existing file ``name.ext`` to ``name.<time>.ext`` beside it; return the new paths."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for path in paths:
        if not path.exists():
            continue
        target, extra = path.with_name(f"{path.stem}.{stamp}{path.suffix}"), 1
        while target.exists():
            target, extra = path.with_name(f"{path.stem}.{stamp}-{extra}{path.suffix}"), extra + 1
        path.rename(target)
        _logger.info("kept the previous %s as %s", path.name, target)
        moved.append(target)
    return moved
