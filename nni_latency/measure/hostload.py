"""Did other processes share the CPU while we measured? Timings move by 10% or more when they do (a test run
beside a benchmark on a 2-core VM made every network 10% slower), and nothing in a timing shows it.

``HostLoad`` reads, over a window, the CPU time the whole machine was busy (``/proc/stat``: user, nice,
system, irq, softirq and steal) minus this process's own (``os.times``, waited-for children included), as a
share of one core. The commands that measure wrap ``watch_host`` around their measuring: it warns once
(``BusyHostWarning``) above ``BUSY_SHARE`` and the command records the figure with its results. The
benchmarks wait for a quiet host first (``wait_until_quiet``). Without ``/proc/stat`` (macOS) the share is
unknown (``None``), never an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

_logger = logging.getLogger(__name__)

__all__ = ["BUSY_SHARE", "MIN_WINDOW_S", "QUIET_SAMPLE_S", "QUIET_WAIT_S", "BusyHostWarning", "SystemTimes",
           "HostLoad", "read_proc_stat", "own_cpu_seconds", "watch_host", "wait_until_quiet", "describe_host_load"]

# Other processes may use this share of one core before a measurement is called contended: the noise of the
# accounting itself (clock ticks, a shell, the kernel's own threads) stays well below it on an idle machine.
BUSY_SHARE = 0.10
# Below this window the clock-tick accounting (10 ms a tick) is too coarse to judge: the share is unknown.
MIN_WINDOW_S = 1.0
# ``wait_until_quiet``: how long one look at the host lasts, and how long to wait for it to quieten.
QUIET_SAMPLE_S = 3.0
QUIET_WAIT_S = 300.0

# /proc/stat's "cpu" line: user nice system idle iowait irq softirq steal guest guest_nice (guest time is
# already inside user and nice, so it is not added again; idle and iowait are not busy).
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
_STEAL_FIELD = 7


class BusyHostWarning(UserWarning):
    """Other processes used more than ``BUSY_SHARE`` of a core while this one measured."""


@dataclass(frozen=True)
class SystemTimes:
    """CPU seconds all cores together spent busy since boot (steal included), and the steal alone."""

    busy_s: float
    steal_s: float


def read_proc_stat(path: str = "/proc/stat") -> SystemTimes | None:
    """The machine's busy and steal CPU seconds from ``path``, or None where there is no such file (macOS) or
    it cannot be read: the load is then unknown."""
    try:
        with open(path, encoding="ascii") as file:
            line = next((line for line in file if line.startswith("cpu ")), None)
        if line is None:
            return None
        ticks = [int(field) for field in line.split()[1:]]
        ticks += [0] * (_STEAL_FIELD + 1 - len(ticks))  # old kernels report no steal
        per_second = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    except (OSError, ValueError):
        return None
    return SystemTimes(sum(ticks[i] for i in _BUSY_FIELDS) / per_second, ticks[_STEAL_FIELD] / per_second)


def own_cpu_seconds() -> float:
    """CPU seconds this process used, all its threads and the children it has waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass(frozen=True)
class _Snapshot:
    system: SystemTimes | None
    own_s: float
    wall_s: float


class HostLoad:
    """The CPU share other processes took over a window: ``start()``, ``stop()`` (or ``with HostLoad() as
    load:``), then ``share`` and ``steal_share`` in cores (0.34: a third of one core), None where unknown.

    Read while running, the figures cover the window so far. ``read_system``, ``read_own`` and ``clock`` are
    what tests replace.
    """

    def __init__(self, read_system: Callable[[], SystemTimes | None] = read_proc_stat,
                 read_own: Callable[[], float] = own_cpu_seconds, clock: Callable[[], float] = time.monotonic):
        self._read_system, self._read_own, self._clock = read_system, read_own, clock
        self._start: _Snapshot | None = None
        self._stop: _Snapshot | None = None

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(self._read_system(), self._read_own(), self._clock())

    def start(self) -> "HostLoad":
        self._start, self._stop = self._snapshot(), None
        return self

    def stop(self) -> "HostLoad":
        if self._start is None:
            raise RuntimeError("HostLoad.stop() before start()")
        self._stop = self._snapshot()
        return self

    def __enter__(self) -> "HostLoad":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _figures(self) -> tuple[float, float | None, float | None]:
        """(window seconds, other processes' share of a core, steal's share), from one reading of the end."""
        if self._start is None:
            raise RuntimeError("HostLoad read before start()")
        start, end = self._start, self._stop or self._snapshot()
        window = end.wall_s - start.wall_s
        if start.system is None or end.system is None or window < MIN_WINDOW_S:
            return window, None, None
        others = end.system.busy_s - start.system.busy_s - (end.own_s - start.own_s)
        steal = end.system.steal_s - start.system.steal_s
        return window, max(others, 0.0) / window, max(steal, 0.0) / window  # tick rounding can go below 0

    @property
    def window_s(self) -> float:
        return self._figures()[0]

    @property
    def share(self) -> float | None:
        return self._figures()[1]

    @property
    def steal_share(self) -> float | None:
        return self._figures()[2]

    def record(self) -> dict[str, float | None]:
        """The figures as the model's ``device["host_load"]`` and the metrics files hold them."""
        window, share, steal = self._figures()
        return {"other_cpu_share": _rounded(share), "steal_share": _rounded(steal), "window_s": round(window, 2)}

    def is_busy(self, threshold: float = BUSY_SHARE) -> bool:
        share = self.share
        return share is not None and share > threshold


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def describe_host_load(record: dict[str, Any] | None) -> str:
    """``record`` (``HostLoad.record()``) in words: "other processes used 34% of a core (steal 2%) over 52 s"."""
    if not record or record.get("other_cpu_share") is None:
        return "the load of other processes is unknown (no /proc/stat, or a window under a second)"
    return (f"other processes used {100 * record['other_cpu_share']:.0f}% of a core (steal "
            f"{100 * (record.get('steal_share') or 0.0):.0f}%) over {record['window_s']:.0f} s")


@contextlib.contextmanager
def watch_host(what: str = "measuring", threshold: float = BUSY_SHARE,
               load: Callable[[], HostLoad] = HostLoad) -> Iterator[HostLoad]:
    """Watch the host around a measurement; when the body returns and other processes took more than
    ``threshold`` of a core, warn once (``BusyHostWarning``). A body that raises is not judged."""
    host = load().start()
    yield host
    host.stop()
    if host.is_busy(threshold):
        warnings.warn(f"{describe_host_load(host.record())} while {what}, above the {100 * threshold:.0f}% a quiet "
                      "machine stays under: these timings are likely slower than the device is; stop the other "
                      "work (or wait for it) and measure again", BusyHostWarning, stacklevel=3)


def wait_until_quiet(sample_s: float = QUIET_SAMPLE_S, max_wait_s: float = QUIET_WAIT_S,
                     threshold: float = BUSY_SHARE, *, load: Callable[[], HostLoad] = HostLoad,
                     sleep: Callable[[float], None] = time.sleep) -> dict[str, float | None]:
    """Look at the host for ``sample_s`` at a time until other processes take at most ``threshold`` of a core,
    saying what it waits for; return the last look's ``record()``. A TimeoutError (one line) once
    ``max_wait_s`` has passed; where the load is unknown, a warning in the log and no wait."""
    waited = 0.0
    while True:
        host = load().start()
        sleep(sample_s)
        record = host.stop().record()
        if record["other_cpu_share"] is None:
            _logger.warning("cannot tell whether the host is quiet (%s); measuring anyway",
                            describe_host_load(record))
            return record
        if record["other_cpu_share"] <= threshold:
            return record
        waited += record["window_s"]
        if waited >= max_wait_s:
            raise TimeoutError(f"the host stayed busy for {waited:.0f} s ({describe_host_load(record)}, above "
                               f"{100 * threshold:.0f}%); stop the other work, or run without --require-quiet")
        _logger.info("waiting for a quiet host: %s, above %.0f%% (waited %.0f of %.0f s)",
                     describe_host_load(record), 100 * threshold, waited, max_wait_s)
