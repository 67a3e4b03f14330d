"""Measuring the inference latency of one module on one device, on top of ``torch.utils.benchmark``.

Protocols (the first two are the weight/input handling; both run under the allocator policy below):
  * ``hot``: the classic micro-benchmark; the same weights and input every call, so they stay in cache.
  * ``rotate``: cycles through distinct copies of the weights and inputs whose total size exceeds the
    per-core cache, so each call starts cold, as a block does inside a network. Isolated hot blocks
    sum to less than the network they form; rotated ones add up (see docs/BENCHMARKS.md).

Allocator policy ``steady`` (default on Linux/glibc): glibc returns freed activation memory to the OS
and page-faults it back on the next forward pass, at a cost that depends on the heap's history; the
same network measured 18-23 ms in different processes here. Keeping freed memory (as jemalloc or
tcmalloc do in tuned CPU inference) makes timings stable, and blocks then add up to networks.
``default`` leaves the allocator alone.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import itertools
import logging
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import nn
from torch.utils import benchmark

from .features import make_inputs

_logger = logging.getLogger(__name__)

__all__ = ["LatencyMeasurement", "measure_latency", "resolve_device", "resolve_dtype", "PROTOCOLS", "ALLOCATORS",
           "use_steady_allocator"]

PROTOCOLS = ("rotate", "hot")
ALLOCATORS = ("steady", "default")
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_steady_allocator_state: bool | None = None
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
           "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class LatencyMeasurement:
    """Robust statistics of repeated timings, in milliseconds."""

    median_ms: float
    iqr_ms: float
    repeats: int
    noisy: bool
    protocol: str
    copies: int

    @property
    def relative_spread(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else math.inf

    def to_dict(self) -> dict:
        return asdict(self)


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
    elif dtype in _DTYPES:
        resolved = _DTYPES[dtype]
    else:
        raise ValueError(f"unknown dtype {dtype!r}: use one of fp32, fp16, bf16")
    if resolved == torch.float16 and device.type == "cpu":
        raise ValueError("dtype fp16 is not supported on cpu: use fp32 (or bf16), or profile a cuda device")
    return resolved


def use_steady_allocator() -> bool:
    """Make glibc keep freed memory (no trimming, mmap only above 32 MiB) for this process.

    This is process-wide and one-way, as mallopt is; returns False where glibc is not the allocator.
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


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _replicas(module: nn.Module, inputs: tuple[torch.Tensor, ...], protocol: str, working_set_bytes: int,
              max_copies: int) -> list[tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    if protocol == "hot":
        return [(module, inputs)]
    per_copy = _tensor_bytes(itertools.chain(module.parameters(), module.buffers(), inputs))
    count = max(2, min(max_copies, math.ceil(working_set_bytes / max(per_copy, 1))))
    copies = [(module, inputs)]
    for _ in range(count - 1):
        copies.append((copy.deepcopy(module), tuple(torch.randn_like(t) for t in inputs)))
    return copies


def measure_latency(
    module: nn.Module,
    input_shape: Sequence[int] | Sequence[Sequence[int]],
    device: str | torch.device = "cpu",
    *,
    threads: int = 1,
    dtype: str | torch.dtype = "fp32",
    protocol: str = "rotate",
    allocator: str = "steady",
    working_set_mb: float = 64.0,
    max_copies: int = 32,
    min_run_time: float = 0.15,
    max_run_time: float = 1.0,
    max_spread: float = 0.10,
    retries: int = 1,
) -> LatencyMeasurement:
    """Median inference latency (ms) of ``module`` on ``input_shape``, eval mode, no grad.

    Stops once IQR/median is below ``max_spread`` (``adaptive_autorange``); a measurement still
    noisier than that is repeated up to ``retries`` times with a longer budget, then flagged ``noisy``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if allocator not in ALLOCATORS:
        raise ValueError(f"unknown allocator policy {allocator!r}: use one of {', '.join(ALLOCATORS)}")
    if allocator == "steady":
        use_steady_allocator()
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    module = module.to(device=torch_device, dtype=torch_dtype).eval()
    inputs = make_inputs(input_shape, device=torch_device, dtype=torch_dtype)
    if torch_device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # autotune per shape; the warm-up below pays for it

    with torch.no_grad():
        replicas = _replicas(module, inputs, protocol, int(working_set_mb * 2**20), max_copies)
        for replica, replica_inputs in replicas:  # warm-up: allocator, cudnn autotuning, lazy init
            for _ in range(2):
                replica(*replica_inputs)
        cycle = itertools.cycle(replicas)

        def run_once():
            replica, replica_inputs = next(cycle)
            replica(*replica_inputs)

        timer = benchmark.Timer(stmt="run_once()", globals={"run_once": run_once}, num_threads=threads)
        budget = max_run_time
        for attempt in range(retries + 1):
            with torch.no_grad():
                measurement = timer.adaptive_autorange(threshold=max_spread, min_run_time=min_run_time,
                                                       max_run_time=budget)
            spread = measurement.iqr / measurement.median if measurement.median > 0 else math.inf
            if spread <= max_spread:
                break
            _logger.debug("spread %.1f%% above %.1f%%, re-measuring (attempt %d)", 100 * spread,
                          100 * max_spread, attempt + 1)
            budget *= 2
    return LatencyMeasurement(
        median_ms=measurement.median * 1e3,
        iqr_ms=measurement.iqr * 1e3,
        repeats=len(measurement.times) * measurement.number_per_run,
        noisy=spread > max_spread,
        protocol=protocol,
        copies=len(replicas),
    )
