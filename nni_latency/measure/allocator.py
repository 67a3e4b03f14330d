"""The allocator policy of a measuring process.

Allocator policy ``steady``: glibc returns freed activation memory to the OS and page-faults it back on the next
forward pass, at a cost that depends on the heap's history; the same network measured 18-23 ms in different
processes here. Keeping freed memory (as jemalloc or tcmalloc do in tuned CPU inference) makes timings stable, and
blocks then add up to networks. The policy is process-wide and one-way (``mallopt``), so the library never sets
it: the command line (or a script) calls ``apply_allocator_policy(protocol)`` before measuring, and a measurement
warns (``AllocatorWarning``) when a protocol asks for it in a process that has not. ``default`` leaves the
allocator alone, and ``allocator_advice`` words the note the commands print for it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import warnings

from ..runtimes.protocol import MeasurementProtocol

_logger = logging.getLogger(__name__)

__all__ = ["AllocatorWarning", "apply_allocator_policy", "use_steady_allocator", "steady_allocator_state",
           "allocator_advice", "warn_if_unset"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_steady_allocator_state: bool | None = None  # None: never asked for in this process


class AllocatorWarning(UserWarning):
    """Timing under the ``steady`` allocator policy in a process that has not enabled it."""


def use_steady_allocator() -> bool:
    """Make glibc keep freed memory (no trimming, mmap only above 32 MiB) for this process.

    This is process-wide and one-way, as mallopt is; returns False where glibc is not the allocator.
    Library code never calls it: commands and scripts do, through ``apply_allocator_policy``.
    """
    global _steady_allocator_state
    if _steady_allocator_state is None:
        _steady_allocator_state = False
        library = ctypes.util.find_library("c")
        try:
            mallopt = ctypes.CDLL(library).mallopt if library else None
        except (OSError, AttributeError):
            mallopt = None
        if mallopt is not None:
            _steady_allocator_state = bool(mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)
                                           and mallopt(_M_TRIM_THRESHOLD, 2**30)
                                           and mallopt(_M_TOP_PAD, 64 * 2**20))
        _logger.debug("steady allocator %s", "enabled" if _steady_allocator_state else "unavailable")
    return _steady_allocator_state


def steady_allocator_state() -> bool | None:
    """Whether this process enabled the steady policy: True, False (asked, unavailable) or None (never asked)."""
    return _steady_allocator_state


def apply_allocator_policy(protocol: MeasurementProtocol) -> bool | None:
    """Set the allocator policy ``protocol`` asks for, for the whole process (command line and scripts only).

    Returns the steady policy's state (see ``steady_allocator_state``).
    """
    if protocol.allocator == "steady":
        use_steady_allocator()
    return _steady_allocator_state


def allocator_advice(protocol: MeasurementProtocol) -> str | None:
    """One line for users timing on a CPU under plain glibc malloc (None otherwise): how far timings can wander
    between processes, and how to make them stable."""
    preload = os.environ.get("LD_PRELOAD", "")
    if protocol.allocator != "default" or protocol.device_type != "cpu" or "jemalloc" in preload \
            or "tcmalloc" in preload:
        return None
    return ("note: timed under plain glibc malloc (allocator: default), where the same network can time up to ~35% "
            "apart between processes, depending on what each allocated before; for stable deployment latency "
            "preload jemalloc or tcmalloc (LD_PRELOAD=libjemalloc.so.2) or profile with `timing.allocator: steady` "
            "(README: Stable deployment latency)")


def warn_if_unset(protocol: MeasurementProtocol, stacklevel: int = 2) -> None:
    """Warn (``AllocatorWarning``) when ``protocol`` asks for the steady allocator in a process that has not
    enabled it: its timings may then differ between processes."""
    if protocol.allocator == "steady" and _steady_allocator_state is None:
        warnings.warn("the protocol asks for the steady allocator, which this process has not enabled, so timings "
                      "may differ between processes; call nni_latency.apply_allocator_policy(protocol) once "
                      "before measuring (the nni-latency commands do), or measure with allocator='default'",
                      AllocatorWarning, stacklevel=stacklevel + 1)
