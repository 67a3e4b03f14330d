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
import functools
import itertools
import logging
import time
from typing import Iterator, Sequence

import torch
from torch import nn

from ...count.inputs import make_inputs, random_like
from ..measurement import LatencyMeasurement
from ..protocol import MeasurementProtocol
from ..runs import copy_count, timed_runs
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


def replicas(module: nn.Module, inputs: tuple[torch.Tensor, ...], protocol: MeasurementProtocol,
             max_copies: int) -> list[tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """``module`` and its inputs, plus the copies the protocol cycles through (``runs.copy_count``)."""
    per_copy = sum(t.numel() * t.element_size() for t in itertools.chain(module.parameters(), module.buffers(), inputs))
    count = copy_count(per_copy, protocol, max_copies)
    generator = torch.Generator().manual_seed(1)  # the inputs of the copies; the caller's random state stays
    copies = [(module, inputs)]
    for _ in range(count - 1):
        copies.append((clone_module(module), tuple(random_like(t, generator) for t in inputs)))
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
            copies = replicas(module, inputs, protocol, max_copies)
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
        calls = [functools.partial(replica, *replica_inputs) for replica, replica_inputs in copies]
        return timed_runs(calls, protocol, per_call, retries)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
