"""Timing every aten call of a module in place: inside the module, with its caches as they are there.

A ``TorchDispatchMode`` reads the clock around each call. Its own cost per call is measured once per process, on
calls that do no work (views) in a tight loop, and removed from every call, so an operator's time is what its
kernel and its dispatch inside a network cost, not the clock's. (Views timed inside a network cost several times
more than in a tight loop, as every call there does: that in-network dispatch is part of each operator's cost,
and the profile's blocks and the networks pay it alike, so it is kept.) The module runs under
the protocol: its thread count, and for ``rotate`` a cycle of copies of its weights and inputs, as the block
measurement does, so that an operator starts with the caches a network leaves it.

The profile stores these times beside each block's total (``profile.run``) and fits every operator class on its
own calls (``model.regressors.OperatorCostModel``); ``analysis.op_errors`` compares them with a model's per-class
costs.
"""

from __future__ import annotations

import functools
import logging
import time

import numpy as np
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..base import OpTimes
from ..protocol import MeasurementProtocol
from .operators import FREE_OPS
from .timing import prepared

_logger = logging.getLogger(__name__)

__all__ = ["time_ops", "timing_overhead_ms"]

# Calls that only make a new view of a tensor: their recorded time is the clock's own cost (``empty`` and its
# kin are free of features too, but allocate).
_VIEW_OPS = frozenset({"view", "_unsafe_view", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze",
                       "slice", "select", "detach", "alias", "as_strided", "_reshape_alias"})
# Each op-timing pass runs the module this many times at least, and about this long in all.
_MIN_CALLS, _MAX_CALLS, _PASS_SECONDS = 5, 40, 0.03


class _Clock(TorchDispatchMode):
    """Records (operator, seconds) for every aten call made while it is active."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, float]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        started = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.calls.append((func.overloadpacket.__name__, time.perf_counter() - started))
        return out


@functools.lru_cache(maxsize=None)
def timing_overhead_ms(threads: int = 1) -> float:
    """The clock's cost per call in this process: the median time it records for calls that do no work."""
    x = torch.zeros(8, 8)
    clock = _Clock()
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        with torch.no_grad(), clock:
            for _ in range(200):
                x.t().unsqueeze(0).view(8, 8)
    finally:
        torch.set_num_threads(previous)
    return 1e3 * float(np.median([seconds for name, seconds in clock.calls if name in _VIEW_OPS]))


def time_ops(module: nn.Module, input_shape, protocol: MeasurementProtocol,
             passes: int | None = None) -> OpTimes | None:
    """The in-place time of each aten call of ``module`` on ``input_shape`` under ``protocol``; None when the
    passes do not run the same calls (data-dependent control flow), so no call can be told from another.

    A copy of ``module`` is timed (``timing.prepared``); the thread count is restored afterwards.
    """
    with prepared(module, input_shape, protocol) as (copies, per_call):
        for replica, replica_inputs in copies[1:]:  # a module that caches on its first call (LeViT's
            replica(*replica_inputs)                # attention biases) runs its steady calls from now on
        count = passes or int(np.clip(round(_PASS_SECONDS / max(per_call, 1e-6)), _MIN_CALLS, _MAX_CALLS))
        runs = []
        for index in range(count):
            replica, replica_inputs = copies[index % len(copies)]
            clock = _Clock()
            with clock:
                replica(*replica_inputs)
            runs.append(clock.calls)
    names = [name for name, _ in runs[0]]
    if any([name for name, _ in run] != names for run in runs[1:]):
        _logger.debug("%s runs different aten calls from pass to pass; no in-place op times", type(module).__name__)
        return None
    overhead = timing_overhead_ms(protocol.threads)  # one figure per process: every block is corrected alike
    times = np.array([[seconds for _, seconds in run] for run in runs]) * 1e3
    # The median of each call over the passes: a lower quantile of each of hundreds of calls would sum to less
    # than any pass took (each call's noise is independent; the block's quantile is of runs of many calls).
    per_op = np.median(times, axis=0)
    working = [i for i, name in enumerate(names) if name not in FREE_OPS]
    return OpTimes(ops=tuple(names[i] for i in working),
                   ms=tuple(float(max(per_op[i] - overhead, 0.0)) for i in working),
                   overhead_ms=overhead, passes=count)
