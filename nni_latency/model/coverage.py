"""Which batch sizes and thread count a device model was profiled at, and a ``CoverageWarning`` when it is
asked about others: a prediction there is an extrapolation, and the user should learn how to profile for it
rather than get a silently extrapolated number.

A model records ``device["batches"]`` (the distinct batch sizes of its training rows; ``fit.fit_records``)
and its protocol's ``threads``; a model written before ``batches`` was recorded is taken to cover its
protocol's ``batch`` only. Each model warns once per reason (batch, threads).
"""

from __future__ import annotations

import logging
import warnings
import weakref
from typing import Any, Sequence

from ..runtimes.protocol import protocol_of, records_protocol

_logger = logging.getLogger(__name__)

__all__ = ["CoverageWarning", "profiled_batches", "check_batch", "check_threads", "batch_of"]

# model -> the reasons it has warned about (a weak map: the caller's model carries no extra state)
_warned: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class CoverageWarning(UserWarning):
    """A batch size or thread count the device model was not profiled at: its prediction there extrapolates."""


def profiled_batches(model: Any) -> list[int] | None:
    """The batch sizes ``model`` was profiled at (sorted), or None when the model does not say how it was measured."""
    device = getattr(model, "device", None) or {}
    batches = device.get("batches")
    if isinstance(batches, (list, tuple)) and batches:
        return sorted({int(b) for b in batches})
    return [protocol_of(model).batch] if records_protocol(device) else None


def batch_of(input_shape: Sequence[int] | Sequence[Sequence[int]]) -> int | None:
    """The batch size of an input shape (of the first input when there are several)."""
    first = input_shape[0] if len(input_shape) else None
    if isinstance(first, (list, tuple)):
        first = first[0] if len(first) else None
    return int(first) if first is not None else None


def _warn_once(model: Any, reason: str, message: str, stacklevel: int) -> str:
    try:
        reasons = _warned.setdefault(model, set())
    except TypeError:  # not weak-referenceable: warn every time rather than never
        reasons = set()
    if reason not in reasons:
        reasons.add(reason)
        warnings.warn(message, CoverageWarning, stacklevel=stacklevel + 1)
    return message


def _profile_command(model: Any, option: str) -> str:
    device = protocol_of(model).device_type if records_protocol(getattr(model, "device", {}) or {}) else "cpu"
    return "nni-latency profile" + (" --device cuda" if device == "cuda" else "") + f" {option}"


def check_batch(model: Any, batch: int | None, *, stacklevel: int = 2) -> str | None:
    """Warn (once per model) when ``batch`` lies outside the batch sizes ``model`` was profiled at; the message,
    or None when it is covered (or the model does not say)."""
    batches = profiled_batches(model)
    if batch is None or batches is None or batches[0] <= batch <= batches[-1]:
        return None
    first = protocol_of(model).batch if records_protocol(getattr(model, "device", {}) or {}) else batches[0]
    covering = ",".join(map(str, [first, *sorted({*batches, int(batch)} - {first})]))
    profiled = f"batch {batches[0]}" if len(batches) == 1 else f"batches {', '.join(map(str, batches))}"
    message = (f"the device model was fitted at {profiled}; batch {batch} lies outside, so its prediction "
               f"extrapolates; profile for it with `{_profile_command(model, f'--batches {covering}')}` "
               "(its blocks and chains are spread over those batch sizes)")
    return _warn_once(model, "batch", message, stacklevel)


def check_threads(model: Any, threads: int | None, *, stacklevel: int = 2) -> str | None:
    """Warn (once per model) when ``threads`` differs from the thread count ``model`` was profiled at."""
    if threads is None or not records_protocol(getattr(model, "device", None) or {}):
        return None
    profiled = protocol_of(model).threads
    if threads == profiled:
        return None
    message = (f"the device model was profiled at {profiled} thread(s), this measures at {threads}: its errors "
               f"include that difference; profile for it with `{_profile_command(model, f'--threads {threads}')}`")
    return _warn_once(model, "threads", message, stacklevel)
