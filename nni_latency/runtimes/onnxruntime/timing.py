"""Timing a module in ONNX Runtime: whole (``measure``, on the timing loop every runtime shares) and node by node
from ORT's own profiler (``time_ops``), under the same protocol. The rotate protocol cycles sessions of their own
(each holds its copy of the weights) with inputs of their own, as the eager runtime cycles module copies."""

from __future__ import annotations

import functools
import time
from typing import Sequence

import numpy as np
import torch

from ...count.inputs import make_inputs, random_like
from ...errors import InvalidInput
from ..base import OpTimes
from ..measurement import LatencyMeasurement
from ..protocol import MeasurementProtocol
from ..runs import copy_count, op_passes, timed_runs
from .export import to_onnx
from .session import WARMUP_RUNS, feeds, new_session, profile_nodes, profiler_cost_ms, session_bytes

__all__ = ["measure", "time_ops", "check_protocol"]


def check_protocol(protocol: MeasurementProtocol) -> None:
    """ORT runs fp32 graphs as exported here: another dtype is refused in one line."""
    if protocol.dtype not in ("fp32", "float32"):
        raise InvalidInput(f"the onnxruntime runtime times fp32 graphs, not {protocol.dtype}: profile it with "
                           "--set dtype=fp32, or use the torch runtime for other dtypes")


def measure(module, input_shape: Sequence[int] | Sequence[Sequence[int]], protocol: MeasurementProtocol, *,
            max_copies: int = 32, retries: int = 1) -> LatencyMeasurement:
    """Inference latency of ``module`` exported to ONNX and run in sessions configured as deployed."""
    check_protocol(protocol)
    inputs = make_inputs(input_shape)
    model = to_onnx(module, inputs)
    per_copy = session_bytes(model, inputs)
    generator = torch.Generator().manual_seed(1)
    calls = []
    for index in range(copy_count(per_copy, protocol, max_copies)):
        session = new_session(model, protocol)
        arrays = inputs if index == 0 else [random_like(t, generator) for t in inputs]
        given = feeds(session, arrays)
        for _ in range(WARMUP_RUNS):  # the session's memory arena, packed weights, its memory pattern's pages
            session.run(None, given)
        calls.append(functools.partial(session.run, None, given))
    started = time.perf_counter()
    calls[0]()
    per_call = time.perf_counter() - started
    return timed_runs(calls, protocol, per_call, retries)


def time_ops(module, input_shape, protocol: MeasurementProtocol, passes: int | None = None) -> OpTimes | None:
    """The kernel time of each node ORT runs for ``module`` (a trimmed mean over the profiled passes), in a canonical
    execution order, from ORT's own profiler less what the profiler itself adds per node (``profiler_cost_ms``,
    the ``overhead_ms`` removed); None when the passes ran different nodes."""
    check_protocol(protocol)
    inputs = make_inputs(input_shape)
    model = to_onnx(module, inputs)
    if passes is None:
        session = new_session(model, protocol)
        given = feeds(session, inputs)
        for _ in range(WARMUP_RUNS):
            session.run(None, given)
        started = time.perf_counter()
        session.run(None, given)
        passes = op_passes(time.perf_counter() - started)
    per_copy = session_bytes(model, inputs)
    nodes = profile_nodes(model, inputs, protocol, passes=passes, copies=copy_count(per_copy, protocol, 32))
    if not nodes:
        return None
    cost = profiler_cost_ms(protocol)
    return OpTimes(ops=tuple(node.kind for node in nodes),
                   ms=tuple(max(0.0, _trimmed_mean(node.ms) - cost) for node in nodes), overhead_ms=cost,
                   passes=passes)


def _trimmed_mean(values, share: float = 0.2) -> float:
    """The mean of ``values`` without the lowest and highest ``share``: ORT reports whole microseconds, and a mean
    over passes recovers the fraction a median would round away, without the passes an interrupt stretched."""
    ordered = np.sort(np.asarray(values, dtype=float))
    cut = int(len(ordered) * share)
    return float(ordered[cut:len(ordered) - cut].mean()) if len(ordered) > 2 * cut else float(ordered.mean())
