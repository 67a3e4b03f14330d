"""Rows that belong together: every reader of measured rows (``fit``, a resumed profile, ``evaluate``'s cache)
checks that they were measured on one machine under one protocol before it pools them.

A model fitted on rows of two thread counts or two CPUs predicts neither, yet would be labelled with one of
them. ``check_one_protocol`` refuses such a mixture, naming the first field that differs and how many rows
take each value; ``select_rows`` keeps one part (``fit --only threads=1``). A field a row does not record (rows
written by older versions) is not compared.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any, Sequence

__all__ = ["ROW_FIELDS", "check_one_protocol", "select_rows", "check_same_machine"]

# What rows pooled into one model must share: the machine, and every field of the protocol that changes a
# latency or a feature (``batch`` is the model's batch: blocks at extra batches record it too).
ROW_FIELDS = ("device_name", "device", "threads", "dtype", "batch", "protocol", "allocator", "vector_width",
              "quantile")


def _first_difference(rows: Sequence[dict]) -> tuple[str, Any, Any, int] | None:
    for field in ROW_FIELDS:
        values = [row[field] for row in rows if row.get(field) is not None]
        for index, value in enumerate(values):
            if value != values[0]:
                return field, values[0], value, index
    return None


def check_one_protocol(rows: Sequence[dict], source: str | os.PathLike, fix: str | None = None) -> None:
    """Refuse (one-line ``ValueError``) rows measured on several machines or under several protocols, naming
    the first field that differs and, unless ``fix`` says otherwise, the ``fit --only`` that selects one part."""
    found = _first_difference(rows)
    if found is None:
        return
    field, first, other, _ = found
    counts = Counter(str(row.get(field)) for row in rows if row.get(field) is not None)
    parts = ", ".join(f"{field}={value} ({count} rows)" for value, count in counts.most_common(4))
    fix = fix or f"select one part with `nni-latency fit --only {field}={first}`"
    raise ValueError(f"{source} mixes rows measured under different protocols: {parts}; one model fits one "
                     f"protocol: {fix}")


def select_rows(rows: Sequence[dict], selection: str | None, source: str | os.PathLike = "the dataset") -> list[dict]:
    """The rows whose ``FIELD`` equals ``VALUE`` (``selection`` is ``FIELD=VALUE``; None keeps every row)."""
    if selection is None:
        return list(rows)
    field, sep, value = selection.partition("=")
    field, value = field.strip(), value.strip()
    if not sep or field not in ROW_FIELDS:
        raise ValueError(f"--only {selection!r} must be FIELD=VALUE with FIELD one of {', '.join(ROW_FIELDS)}, "
                         "e.g. --only threads=1")
    kept = [row for row in rows if str(row.get(field)) == value]
    if not kept:
        seen = sorted({str(row.get(field)) for row in rows})
        raise ValueError(f"--only {selection!r} keeps no row of {source}: its rows have {field} "
                         f"{', '.join(seen[:6])}")
    return kept


def check_same_machine(rows: Sequence[dict], device: str, source: str | os.PathLike) -> None:
    """A resumed run on ``device`` (``cpu``, ``cuda:N``) must not append to rows measured on another machine
    (their ``device_name`` differs from this machine's)."""
    recorded = next((row["device_name"] for row in rows if row.get("device_name")), None)
    if recorded is None:
        return
    import torch

    from .profiling import device_description  # the one namer of a machine; lazily, as it imports torch

    name = device_description(torch.device(device))
    if recorded != name:
        raise ValueError(f"{source} was measured on {recorded!r}, this machine is {name!r}; its rows cannot be "
                         "resumed here: profile into a new --output-dir (or pass --force to keep them aside and "
                         "start afresh)")
