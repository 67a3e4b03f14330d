"""Rows that belong together: every reader of measured rows (``fit``, a resumed profile, ``evaluate``'s cache)
checks that they were measured on one machine under one protocol before it pools them, and ``first_difference``
is the one way the package names what differs between two records (rows, protocols or configs).

A model fitted on rows of two thread counts or two CPUs predicts neither, yet would be labelled with one of
them. ``check_one_protocol`` refuses such a mixture, naming the first field that differs and how many rows
take each value; ``select_rows`` keeps one part (``fit --only threads=1``). A field a row does not record (rows
written by older versions) is not compared.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from ..errors import RowsError
from ..runtimes.protocol import RESUME_FIELDS, MeasurementProtocol, protocol_of

__all__ = ["ROW_FIELDS", "first_difference", "check_one_protocol", "select_rows", "check_same_machine",
           "protocol_mismatch"]

# What rows pooled into one model must share: the machine, and every field of the protocol that changes a
# latency or a feature (``batch`` is the model's batch: blocks at extra batches record it too).
ROW_FIELDS = ("device_name", "runtime", "device", "threads", "dtype", "batch", "protocol", "allocator",
              "vector_width", "quantile")


def first_difference(recorded: Mapping[str, Any], wanted: Mapping[str, Any], fields: Iterable[str] | None = None,
                     skip: Iterable[str] = (), prefix: str = "") -> tuple[str, Any, Any] | None:
    """The first of ``fields`` (default: ``wanted``'s keys, in order) whose values differ, as ``(dotted name,
    recorded value, wanted value)``; None when all agree. Nested mappings are compared key by key; a field either
    side does not record (None or absent: written by an older version) is not compared, nor are ``skip``."""
    skip = set(skip)
    for key in (wanted if fields is None else fields):
        if (not prefix and key in skip) or recorded.get(key) is None or wanted.get(key) is None:
            continue
        old, new = recorded[key], wanted[key]
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            nested = first_difference(old, new, prefix=f"{prefix}{key}.")
            if nested:
                return nested
        elif old != new:
            return f"{prefix}{key}", old, new
    return None


def check_one_protocol(rows: Sequence[dict], source: str | os.PathLike, fix: str | None = None) -> None:
    """Refuse (one-line ``RowsError``) rows measured on several machines or under several protocols, naming
    the first field that differs and, unless ``fix`` says otherwise, the ``fit --only`` that selects one part."""
    first = {field: next((row[field] for row in rows if row.get(field) is not None), None) for field in ROW_FIELDS}
    found = next((difference for field in ROW_FIELDS for row in rows
                  if (difference := first_difference(first, row, (field,)))), None)
    if found is None:
        return
    field, value, _ = found
    counts = Counter(str(row.get(field)) for row in rows if row.get(field) is not None)
    parts = ", ".join(f"{field}={count_value} ({count} rows)" for count_value, count in counts.most_common(4))
    fix = fix or f"select one part with `nni-latency fit --only {field}={value}`"
    raise RowsError(f"{source} mixes rows measured under different protocols: {parts}; one model fits one "
                    f"protocol: {fix}")


def select_rows(rows: Sequence[dict], selection: str | None, source: str | os.PathLike = "the dataset") -> list[dict]:
    """The rows whose ``FIELD`` equals ``VALUE`` (``selection`` is ``FIELD=VALUE``; None keeps every row)."""
    if selection is None:
        return list(rows)
    field, sep, value = selection.partition("=")
    field, value = field.strip(), value.strip()
    if not sep or field not in ROW_FIELDS:
        raise RowsError(f"--only {selection!r} must be FIELD=VALUE with FIELD one of {', '.join(ROW_FIELDS)}, "
                        "e.g. --only threads=1")
    kept = [row for row in rows if str(row.get(field, protocol_of(row).runtime if field == "runtime" else None))
            == value]
    if not kept:
        seen = sorted({str(row.get(field)) for row in rows})
        raise RowsError(f"--only {selection!r} keeps no row of {source}: its rows have {field} "
                        f"{', '.join(seen[:6])}")
    return kept


def check_same_machine(rows: Sequence[dict], machine: str, source: str | os.PathLike) -> None:
    """A resumed run on the machine called ``machine`` must not append to rows measured on another (their
    ``device_name`` differs)."""
    recorded = next((row["device_name"] for row in rows if row.get("device_name")), None)
    if recorded is not None and recorded != machine:
        raise RowsError(f"{source} was measured on {recorded!r}, this machine is {machine!r}; its rows cannot be "
                        "resumed here: profile into a new --output-dir (or pass --force to keep them aside and "
                        "start afresh)")


def protocol_mismatch(rows: Iterable[dict], protocol: MeasurementProtocol) -> tuple[str, Any, Any] | None:
    """The first protocol field in which a row was measured otherwise than ``protocol`` asks: (field, the
    row's value, this run's value); None when every row agrees."""
    wanted = protocol.to_dict()
    for row in rows:
        found = first_difference(protocol_of(row).to_dict(), wanted, RESUME_FIELDS)
        if found:
            return found
    return None
