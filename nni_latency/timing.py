"""Measuring the inference latency of one module under a ``MeasurementProtocol``, on ``torch.utils.benchmark``.

``measure_latency`` leaves its caller's world alone: it times a copy of the module (the caller's keeps
its device, dtype and training flag), restores ``torch.backends.cudnn.benchmark`` and the thread count,
and draws its inputs from generators of its own.

Protocols (the weight/input handling):
  * ``hot``: the classic micro-benchmark; the same weights and input every call, so they stay in cache.
  * ``rotate``: cycles through distinct copies of the weights and inputs whose total size exceeds the
    per-core cache, so each call starts cold, as a block does inside a network. Isolated hot blocks
    sum to less than the network they form; rotated ones add up (see docs/BENCHMARKS.md).

Allocator policy ``steady``: glibc returns freed activation memory to the OS and page-faults it back on
the next forward pass, at a cost that depends on the heap's history; the same network measured 18-23 ms
in different processes here. Keeping freed memory (as jemalloc or tcmalloc do in tuned CPU inference)
makes timings stable, and blocks then add up to networks. The policy is process-wide and one-way
(``mallopt``), so the library never sets it: the command line (or a script) calls
``apply_allocator_policy(protocol)`` before measuring, and ``measure_latency`` warns
(``AllocatorWarning``) when a protocol asks for it in a process that has not. ``default`` leaves the
allocator alone, and ``allocator_advice`` words the note the commands print for it.

Spread: one definition everywhere (``relative_spread``, IQR / median), for the runs of one measurement, the
pooled runs of several rounds (``LatencyMeasurement.merge``) and the passes of the drift probe.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import itertools
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils import benchmark

from .features import make_inputs
from .protocol import ALLOCATORS, DTYPES, PROTOCOLS, TORCH_DTYPES, MeasurementProtocol

_logger = logging.getLogger(__name__)

__all__ = ["LatencyMeasurement", "measure_latency", "relative_spread", "resolve_device", "resolve_dtype", "PROTOCOLS",
           "ALLOCATORS", "AllocatorWarning", "apply_allocator_policy", "use_steady_allocator", "steady_allocator_state",
           "allocator_advice"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_steady_allocator_state: bool | None = None  # None: never asked for in this process


class AllocatorWarning(UserWarning):
    """Timing under the ``steady`` allocator policy in a process that has not enabled it."""


def relative_spread(values: Sequence[float]) -> float:
    """IQR / median of ``values``: how far timings of one thing disagree (inf when the median is 0). The one
    spread of the package: a measurement is ``noisy`` above its protocol's ``max_spread`` of it."""
    low, median, high = np.quantile(np.asarray(values, float), [0.25, 0.5, 0.75])
    return float((high - low) / median) if median > 0 else math.inf


@dataclass(frozen=True)
class LatencyMeasurement:
    """Repeated timings of one module, in milliseconds, with the statistics computed from them on demand.

    ``times_ms`` holds one entry per run of ``number_per_run`` calls: that run's time per call (what
    ``torch.utils.benchmark.Measurement.times`` holds, in ms). ``noisy`` applies the test behind
    ``Measurement.meets_confidence`` at the protocol's ``max_spread``. A measurement ``merge`` made of several
    rounds keeps each round's latency in ``round_ms`` and the calls of all of them in ``calls``.
    """

    times_ms: tuple[float, ...]
    number_per_run: int
    protocol: str
    copies: int
    max_spread: float = 0.10
    quantile: float = 0.5
    round_ms: tuple[float, ...] = ()
    calls: int | None = None  # None: len(times_ms) * number_per_run

    @classmethod
    def merge(cls, rounds: Sequence[LatencyMeasurement]) -> LatencyMeasurement:
        """One measurement of an item timed in several rounds: the runs of all rounds pooled, so its latency
        and spread are the first round's statistics over every run (a burst spoils some runs, not the estimate)."""
        if not rounds:
            raise ValueError("merging measurements needs at least one round")
        first = rounds[0]
        return cls(times_ms=tuple(t for m in rounds for t in m.times_ms), number_per_run=first.number_per_run,
                   protocol=first.protocol, copies=first.copies, max_spread=first.max_spread,
                   quantile=first.quantile, round_ms=tuple(m.latency_ms for m in rounds),
                   calls=sum(m.repeats for m in rounds))

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> LatencyMeasurement:
        """The measurement a row on disk holds (``to_dict`` plus the protocol's fields). A row written before runs
        were kept (no ``times_ms``) stands for one run at its ``latency_ms``."""
        times = row.get("times_ms")
        times = tuple(float(t) for t in times) if isinstance(times, list) and times else (float(row["latency_ms"]),)
        repeats = int(row.get("repeats") or len(times))
        return cls(times_ms=times, number_per_run=max(1, repeats // len(times)), protocol=str(row.get("protocol", "")),
                   copies=int(row.get("copies", 1)), max_spread=float(row.get("max_spread", 0.10)),
                   quantile=float(row.get("quantile", 0.5)), calls=repeats)

    @property
    def latency_ms(self) -> float:
        """The latency under the protocol: the ``quantile`` of the runs (the median unless it says otherwise)."""
        return float(np.quantile(self.times_ms, self.quantile))

    @property
    def median_ms(self) -> float:
        return float(np.quantile(self.times_ms, 0.5))

    @property
    def iqr_ms(self) -> float:
        low, high = np.quantile(self.times_ms, [0.25, 0.75])
        return float(high - low)

    @property
    def repeats(self) -> int:
        """Calls timed in all."""
        return self.calls if self.calls is not None else len(self.times_ms) * self.number_per_run

    @property
    def relative_spread(self) -> float:
        """IQR / median of the runs (``relative_spread``)."""
        return relative_spread(self.times_ms)

    @property
    def noisy(self) -> bool:
        """The runs, or the rounds of a merged measurement, disagree by more than ``max_spread``."""
        return self.relative_spread > self.max_spread or (
            len(self.round_ms) > 1 and relative_spread(self.round_ms) > self.max_spread)

    def to_dict(self) -> dict[str, Any]:
        """The summary written with every measured row (a merged one adds ``round_ms`` and ``rounds``)."""
        summary = {"latency_ms": self.latency_ms, "median_ms": self.median_ms, "iqr_ms": self.iqr_ms,
                   "repeats": self.repeats, "noisy": self.noisy, "protocol": self.protocol, "copies": self.copies,
                   "times_ms": [float(f"{t:.6g}") for t in self.times_ms]}
        if self.round_ms:
            summary.update(round_ms=list(self.round_ms), rounds=len(self.round_ms))
        return summary


def resolve_device(device: str | torch.device) -> torch.device:
    """Parse ``cpu`` / ``cuda`` / ``cuda:N``; a one-line ``ValueError`` says what to do when it is absent."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from error
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but no CUDA GPU is available to torch "
                             f"{torch.__version__}; use --device cpu or install a CUDA build of torch")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: this machine has "
                             f"{torch.cuda.device_count()} GPU(s), cuda:0..cuda:{torch.cuda.device_count() - 1}")
    elif resolved.type != "cpu":
        raise ValueError(f"device type {resolved.type!r} is not supported: use cpu or cuda[:N]")
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """Map ``fp32``/``fp16``/``bf16`` to a torch dtype; fp16 is refused on CPU, where it is emulated."""
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    elif dtype in DTYPES:
        resolved = getattr(torch, TORCH_DTYPES.get(dtype, dtype))
    else:
        raise ValueError(f"unknown dtype {dtype!r}: use one of fp32, fp16, bf16")
    if resolved == torch.float16 and device.type == "cpu":
        raise ValueError("dtype fp16 is not supported on cpu: use fp32 (or bf16), or profile a cuda device")
    return resolved


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


def _protocol_with(protocol: Any, overrides: dict[str, Any]) -> MeasurementProtocol:
    """The protocol to measure under: ``protocol`` (or the defaults) with ``overrides`` applied.

    A device given in place of the protocol (the positional argument of earlier versions) is an override.
    """
    if protocol is not None and not isinstance(protocol, MeasurementProtocol):
        if "device" in overrides:
            raise TypeError("measure_latency() got the device twice (positionally and as device=)")
        overrides = {"device": protocol, **overrides}
        protocol = None
    return (protocol or MeasurementProtocol()).replace(**overrides)


def clone_module(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with tensors of its own: the structure ``copy.deepcopy`` gives, at a tenth of its
    cost (the rotate protocol makes up to ``max_copies`` of every block it times)."""
    clones: dict[int, nn.Module] = {}

    def clone(original: nn.Module) -> nn.Module:
        if id(original) not in clones:
            new = copy.copy(original)
            clones[id(original)] = new
            new._parameters = {name: None if p is None else nn.Parameter(p.detach().clone(), p.requires_grad)
                               for name, p in original._parameters.items()}
            new._buffers = {name: None if b is None else b.clone() for name, b in original._buffers.items()}
            new._modules = {name: None if m is None else clone(m) for name, m in original._modules.items()}
        return clones[id(original)]

    return clone(module)


def replicas(module: nn.Module, inputs: tuple[torch.Tensor, ...], protocol: str, working_set_bytes: int,
              max_copies: int) -> list[tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """``module`` and its inputs, plus copies whose weights and inputs together exceed ``working_set_bytes``
    (the rotate protocol: every call then finds its data out of the caches, as a block inside a network does).

    Fewer copies make the caches warmer and the block faster than inside a network: the whole-network error
    depends on this, so the count follows the working set alone, never the time the copies cost.
    """
    if protocol == "hot":
        return [(module, inputs)]
    per_copy = sum(t.numel() * t.element_size() for t in itertools.chain(module.parameters(), module.buffers(), inputs))
    count = min(max_copies, math.ceil(working_set_bytes / max(per_copy, 1)))
    generator = torch.Generator().manual_seed(1)  # the inputs of the copies; the caller's random state stays
    copies = [(module, inputs)]
    for _ in range(max(2, count) - 1):
        copies.append((clone_module(module), tuple(torch.randn(t.shape, generator=generator).to(t) for t in inputs)))
    return copies


def measure_latency(module: nn.Module, input_shape: Sequence[int] | Sequence[Sequence[int]],
                    protocol: MeasurementProtocol | str | torch.device | None = None, /, *, max_copies: int = 32,
                    retries: int = 1, **overrides: Any) -> LatencyMeasurement:
    """Inference latency (ms) of ``module`` on ``input_shape`` under ``protocol`` (its ``quantile`` of the timed
    runs), eval mode, no grad.

    ``overrides`` replace fields of the protocol (``threads=1``, ``protocol="hot"``, ``min_run_time=0.01``,
    ...); without a protocol they apply to ``MeasurementProtocol()``'s defaults, and a device string in
    its place is read as ``device=``. A copy of ``module`` is timed. Timing stops once IQR/median is below
    ``max_spread`` (``adaptive_autorange``); a measurement still noisier than that is repeated up to
    ``retries`` times with a longer budget, then flagged ``noisy``.
    """
    protocol = _protocol_with(protocol, overrides)
    torch_device = resolve_device(protocol.device)
    torch_dtype = resolve_dtype(protocol.dtype, torch_device)
    if protocol.allocator == "steady" and _steady_allocator_state is None:
        warnings.warn("the protocol asks for the steady allocator, which this process has not enabled, so timings "
                      "may differ between processes; call nni_latency.timing.apply_allocator_policy(protocol) once "
                      "before measuring (the nni-latency commands do), or measure with allocator='default'",
                      AllocatorWarning, stacklevel=2)
    cudnn_benchmark = torch.backends.cudnn.benchmark
    try:
        if torch_device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # autotune per shape; the warm-up below pays for it
        module = clone_module(module).to(device=torch_device, dtype=torch_dtype).eval()
        inputs = make_inputs(input_shape, device=torch_device, dtype=torch_dtype)
        with torch.no_grad():
            module(*inputs)  # warm-up: allocator, cudnn autotuning, lazy init
            started = time.perf_counter()
            module(*inputs)
            _synchronize(torch_device)
            per_call = time.perf_counter() - started
            # The copies need no warm-up of their own: they share the first one's shapes, so its calls already
            # sized the allocator and built the kernels; their tensors were written (and paged in) when made.
            copies = replicas(module, inputs, protocol.protocol, int(protocol.working_set_mb * 2**20), max_copies)
            measurement = _timed(copies, protocol, retries, per_call)
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
    return LatencyMeasurement(times_ms=tuple(t * 1e3 for t in measurement.times),
                              number_per_run=measurement.number_per_run, protocol=protocol.protocol,
                              copies=len(copies), max_spread=protocol.max_spread, quantile=protocol.quantile)


# Each timed run repeats the call until it lasts about this long, as torch.utils.benchmark sizes its blocks:
# the timer's own cost vanishes, and a run of a small block spans about as much time as one call of a
# network, so a quantile over runs means the same for both.
_RUN_SECONDS = 0.01
# At least this many runs per measurement, however long a call takes: a quantile of one run is that run, and a
# whole network (one call per run) would otherwise be one call per round, all of its noise kept.
_MIN_RUNS = 3


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(replicas, protocol: MeasurementProtocol, retries: int, per_call: float) -> benchmark.Measurement:
    """Timed runs over the replicas in turn until ``min_run_time`` has passed and IQR/median is within
    ``max_spread``, or ``max_run_time`` has (``adaptive_autorange``'s rule, with the run length set from the
    warm-up's ``per_call`` seconds instead of its search), and at least ``_MIN_RUNS`` runs; re-run with twice
    the budget while too noisy."""
    cycle = itertools.cycle(replicas)

    def run_once():
        replica, replica_inputs = next(cycle)
        replica(*replica_inputs)

    timer = benchmark.Timer(stmt="run_once()", globals={"run_once": run_once}, num_threads=protocol.threads)
    number = max(1, round(_RUN_SECONDS / max(per_call, 1e-9)))
    task_spec = None
    budget = protocol.max_run_time
    times: list[float] = []
    for attempt in range(retries + 1):
        times, elapsed = [], 0.0
        with torch.no_grad():
            while elapsed < budget or len(times) < _MIN_RUNS:
                measured = timer.timeit(number)  # one run of ``number`` calls
                task_spec, run = measured.task_spec, measured.raw_times[0]
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
    return benchmark.Measurement(number_per_run=number, raw_times=[t * number for t in times],
                                 task_spec=task_spec)
