"""Timing one module in eager PyTorch under a ``MeasurementProtocol``, on ``torch.utils.benchmark``, and the one
timing set-up that the whole-module timer and the in-place operator clock (``clock``) share.

A measurement leaves its caller's world alone: it times a copy of the module (the caller's keeps its device, dtype
and training flag), restores ``torch.backends.cudnn.benchmark`` and the thread count, and draws its inputs from
generators of its own.

Protocols (the weight/input handling):
  * ``hot``: the classic micro-benchmark; the same weights and input every call, so they stay in cache.
  * ``rotate``: cycles through distinct copies of the weights and inputs whose total size exceeds the
    per-core cache, so each call starts cold, as a block does inside a network. Isolated hot blocks
    sum to less than the network they form; rotated ones add up (see docs/BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import time
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.utils import benchmark

from ...count.inputs import make_inputs
from ..measurement import LatencyMeasurement, relative_spread
from ..protocol import MeasurementProtocol
from .device import resolve_device, resolve_dtype

_logger = logging.getLogger(__name__)

__all__ = ["clone_module", "replicas", "prepared", "measure"]


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


@contextlib.contextmanager
def prepared(module: nn.Module, input_shape: Sequence[int] | Sequence[Sequence[int]], protocol: MeasurementProtocol,
             max_copies: int = 32) -> Iterator[tuple[list[tuple[nn.Module, tuple[torch.Tensor, ...]]], float]]:
    """A copy of ``module`` and its inputs on the protocol's device and dtype, warmed up, with the rotate
    protocol's copies: ``(copies, seconds per call)``. Inside, the thread count is the protocol's, gradients are
    off and cuDNN autotunes; all three are restored on leaving."""
    device = resolve_device(protocol.device)
    dtype = resolve_dtype(protocol.dtype, device)
    cudnn_benchmark, threads = torch.backends.cudnn.benchmark, torch.get_num_threads()
    try:
        torch.set_num_threads(protocol.threads)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # autotune per shape; the warm-up below pays for it
        module = clone_module(module).to(device=device, dtype=dtype).eval()
        inputs = make_inputs(input_shape, device=device, dtype=dtype)
        with torch.no_grad():
            module(*inputs)  # warm-up: allocator, cudnn autotuning, lazy init
            started = time.perf_counter()
            module(*inputs)
            _synchronize(device)
            per_call = time.perf_counter() - started
            # The copies need no warm-up of their own: they share the first one's shapes, so its calls already
            # sized the allocator and built the kernels; their tensors were written (and paged in) when made.
            copies = replicas(module, inputs, protocol.protocol, int(protocol.working_set_mb * 2**20), max_copies)
            yield copies, per_call
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.set_num_threads(threads)


def measure(module: nn.Module, input_shape: Sequence[int] | Sequence[Sequence[int]], protocol: MeasurementProtocol,
            *, max_copies: int = 32, retries: int = 1) -> LatencyMeasurement:
    """Inference latency of a copy of ``module`` on ``input_shape`` under ``protocol``, eval mode, no grad.

    Timing stops once IQR/median is below ``max_spread`` (``adaptive_autorange``'s rule); a measurement still
    noisier than that is repeated up to ``retries`` times with a longer budget, then flagged ``noisy``.
    """
    with prepared(module, input_shape, protocol, max_copies) as (copies, per_call):
        measurement = _timed(copies, protocol, retries, per_call)
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
