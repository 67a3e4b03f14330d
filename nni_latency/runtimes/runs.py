"""The timing loop every runtime measures with, so a latency means the same whatever ran the module: runs of about
10 ms of calls on ``torch.utils.benchmark``'s timer, over the rotate protocol's copies in turn, until the budget
and the spread say stop (``adaptive_autorange``'s rule); and how many copies the rotate protocol makes.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any, Callable, Sequence

from torch.utils import benchmark

from .measurement import LatencyMeasurement, relative_spread
from .protocol import MeasurementProtocol

_logger = logging.getLogger(__name__)

__all__ = ["copy_count", "timed_runs", "op_passes"]

# Each timed run repeats the call until it lasts about this long, as torch.utils.benchmark sizes its blocks:
# the timer's own cost vanishes, and a run of a small block spans about as much time as one call of a
# network, so a quantile over runs means the same for both.
_RUN_SECONDS = 0.01
# At least this many runs per measurement, however long a call takes: a quantile of one run is that run, and a
# whole network (one call per run) would otherwise be one call per round, all of its noise kept.
_MIN_RUNS = 3
# Timing every operator of a module in place runs it this many times at least and at most, about this long in all.
_MIN_PASSES, _MAX_PASSES, _PASS_SECONDS = 5, 40, 0.03


def op_passes(per_call: float) -> int:
    """How many forward passes an in-place operator clock times, for a module whose call takes ``per_call`` s:
    about 30 ms in all, at least 5 and at most 40 (each call's median over them is its time)."""
    return int(min(max(round(_PASS_SECONDS / max(per_call, 1e-6)), _MIN_PASSES), _MAX_PASSES))


def copy_count(bytes_per_copy: int, protocol: MeasurementProtocol, max_copies: int) -> int:
    """How many copies of a module's weights and inputs the protocol cycles through: one for ``hot``; for
    ``rotate``, enough that together they exceed ``working_set_mb`` (every call then finds its data out of the
    caches, as a block inside a network does), at least 2, at most ``max_copies``.

    Fewer copies make the caches warmer and the block faster than inside a network: the whole-network error
    depends on this, so the count follows the working set alone, never the time the copies cost.
    """
    if protocol.protocol == "hot":
        return 1
    wanted = math.ceil(protocol.working_set_mb * 2**20 / max(bytes_per_copy, 1))
    return max(2, min(max_copies, wanted))


def timed_runs(calls: Sequence[Callable[[], Any]], protocol: MeasurementProtocol, per_call: float,
               retries: int = 1, copies: int | None = None) -> LatencyMeasurement:
    """A ``LatencyMeasurement`` of ``calls`` (one per copy, each a complete call of the module) timed in turn:
    runs of about 10 ms until ``min_run_time`` has passed and IQR/median is within ``max_spread``, or
    ``max_run_time`` has, and at least three runs; re-run with twice the budget while too noisy, up to
    ``retries`` times. ``per_call`` (seconds, from a warm-up call) sizes the runs."""
    cycle = itertools.cycle(calls)

    def run_once():
        next(cycle)()

    timer = benchmark.Timer(stmt="run_once()", globals={"run_once": run_once}, num_threads=protocol.threads)
    number = max(1, round(_RUN_SECONDS / max(per_call, 1e-9)))
    budget = protocol.max_run_time
    times: list[float] = []
    for attempt in range(retries + 1):
        times, elapsed = [], 0.0
        while elapsed < budget or len(times) < _MIN_RUNS:
            run = timer.timeit(number).raw_times[0]  # one run of ``number`` calls
            times.append(run / number)
            elapsed += run
            enough = elapsed >= protocol.min_run_time and len(times) >= _MIN_RUNS
            if enough and relative_spread(times) <= protocol.max_spread:
                break
        if relative_spread(times) <= protocol.max_spread:
            break
        _logger.debug("spread %.1f%% above %.1f%%, re-measuring (attempt %d)", 100 * relative_spread(times),
                      100 * protocol.max_spread, attempt + 1)
        budget *= 2
    return LatencyMeasurement(times_ms=tuple(t * 1e3 for t in times), number_per_run=number,
                              protocol=protocol.protocol, copies=copies or len(calls),
                              max_spread=protocol.max_spread, quantile=protocol.quantile)
