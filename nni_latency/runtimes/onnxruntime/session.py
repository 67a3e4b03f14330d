"""ONNX Runtime sessions configured as deployed, and what ORT itself says about a graph it runs.

A session runs with ORT's full graph optimization (fusions, constant folding, the NCHWc blocked layout on x86),
the protocol's thread count as intra-op threads (above one, on the process's one shared pool, as a deployed
process's one session has one), one inter-op thread and sequential execution, on the CPU
execution provider (CUDA's where the protocol's device is a GPU and ORT has it). What fuses and which layout
changes are inserted is ORT's decision, read back from the graph its optimizer writes (``optimized_model_filepath``)
and from its own profiler: every node ORT ran, with its op type after fusion, its domain and attributes, the shapes
it saw and the time its kernel took (``enable_profiling``).
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail

from ...count.inputs import random_like
from ..protocol import MeasurementProtocol
from .export import input_names

_logger = logging.getLogger(__name__)

__all__ = ["session_options", "new_session", "feeds", "NodeRun", "profile_nodes", "profiler_cost_ms", "settings",
           "session_bytes", "OPTIMIZATION", "WARMUP_RUNS"]

OPTIMIZATION = "all"  # ORT_ENABLE_ALL: basic and extended fusions, and layout optimizations (NCHWc)
_LOG_ERRORS_ONLY = 3
# Runs a new session takes before it runs as it will from then on: the first allocates the arena and packs the
# weights; the second still faults in the memory pattern's pages it planned after the first.
WARMUP_RUNS = 2
_SHARED_POOL: dict[str, Any] = {}  # the size of this process's shared intra-op pool, once this module sized it


def settings(protocol: MeasurementProtocol) -> dict[str, Any]:
    """What a device model records of a session: ORT's version and the settings its sessions run with."""
    return {"runtime": "onnxruntime", "runtime_version": ort.__version__, "graph_optimization": OPTIMIZATION,
            "execution_provider": _providers(protocol)[0], "intra_op_threads": protocol.threads,
            "inter_op_threads": 1, "execution_mode": "sequential"}


def _providers(protocol: MeasurementProtocol) -> list[str]:
    if protocol.device_type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(protocol: MeasurementProtocol, profile_prefix: str | None = None,
                    optimized_path: str | None = None) -> ort.SessionOptions:
    """Options of a session as deployed under ``protocol``; with ``profile_prefix``, ORT's profiler on; with
    ``optimized_path``, the optimized graph written there."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not _share_pool(options, protocol.threads):
        options.intra_op_num_threads = protocol.threads
        options.inter_op_num_threads = 1
    options.log_severity_level = _LOG_ERRORS_ONLY  # not the note that an NCHWc graph is specific to this machine
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if optimized_path is not None:
        options.optimized_model_filepath = optimized_path
    return options


def _share_pool(options: ort.SessionOptions, threads: int) -> bool:
    """Let a session of ``threads`` > 1 run on this process's one shared intra-op pool, as a deployed process's
    one session has one pool. Sessions with pools of their own leave them spinning after each run, taking the
    cores from the next session of a rotation (8 rotated SqueezeNet sessions at 2 threads ran 9x slower than
    one). ORT lets a process size its shared pool once; False (per-session pools) once it was sized otherwise.
    What this leaves in a caller's process: ORT's shared pool exists, sized so; the caller's own sessions keep
    pools of their own unless they opt in, and a later ``set_global_thread_pool_sizes`` there fails."""
    if threads <= 1:
        return False
    if "threads" not in _SHARED_POOL:
        try:
            ort.set_global_thread_pool_sizes(threads, 1)
        except OrtFail:  # sized before, by someone else
            _SHARED_POOL["threads"] = None
        else:
            _SHARED_POOL["threads"] = threads
    if _SHARED_POOL["threads"] != threads:
        if not _SHARED_POOL.get("warned"):
            _SHARED_POOL["warned"] = True
            warnings.warn(f"ONNX Runtime sessions at {threads} threads run on pools of their own in this process "
                          f"(its shared pool was sized for {_SHARED_POOL['threads']}): rotated sessions spin against "
                          "each other and read slow; measure each thread count in a process of its own",
                          RuntimeWarning, stacklevel=3)
        return False
    options.use_per_session_threads = False
    return True


def new_session(model: bytes, protocol: MeasurementProtocol, **options: Any) -> ort.InferenceSession:
    """An ``InferenceSession`` of the serialized ONNX ``model`` under ``protocol``."""
    return ort.InferenceSession(model, session_options(protocol, **options), providers=_providers(protocol))


def session_bytes(model: bytes, inputs: Sequence[Any]) -> int:
    """The memory one session of ``model`` holds: its weights, its inputs and every intermediate tensor (ONNX shape
    inference; an upper bound of its arena and memory pattern, which it keeps to itself). Sessions rotated as
    copies each hold all of it, so the rotate protocol counts it per copy: 32 sessions of a block with 250 MB of
    attention intermediates would fault through gigabytes a run, and time the kernel's page faults, not the block."""
    graph = onnx.shape_inference.infer_shapes(onnx.load_from_string(model)).graph
    intermediates = 0
    for value in list(graph.value_info) + list(graph.output):
        tensor = value.type.tensor_type
        size = helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize if tensor.elem_type else 4
        intermediates += int(np.prod([max(1, d.dim_value) for d in tensor.shape.dim])) * size
    given = sum(int(np.asarray(x.detach().cpu() if hasattr(x, "detach") else x).nbytes) for x in inputs)
    return len(model) + given + intermediates


def feeds(session: ort.InferenceSession, inputs: Sequence[Any]) -> dict[str, np.ndarray]:
    """The session's inputs by name, from the exported forward's flattened tensors (or arrays) in order
    (``export.input_names``); one the graph does not use is left out, as the exporter left it out."""
    wanted = {spec.name for spec in session.get_inputs()}
    return {name: np.ascontiguousarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
            for name, x in zip(input_names(len(inputs)), inputs) if name in wanted}


@dataclass(frozen=True)
class NodeRun:
    """One node ORT ran: its name, op type after fusion and domain (``com.microsoft.nchwc`` for blocked-layout
    kernels), attributes, the shapes of its inputs and outputs as the kernel saw them (NCHWc channels padded),
    which inputs are constant (weights), where its inputs come from and its outputs go (graph input / output), and
    its kernel's time in each profiled pass (ms)."""

    name: str
    op: str
    domain: str
    attributes: dict[str, Any]
    inputs: tuple[tuple[int, ...], ...]
    outputs: tuple[tuple[int, ...], ...]
    constant: tuple[bool, ...]
    from_graph_input: bool
    to_graph_output: bool
    ms: tuple[float, ...] = field(default=())

    @property
    def kind(self) -> str:
        """The op type qualified by a non-default domain (``nchwc.Conv``, ``FusedMatMul``)."""
        return f"nchwc.{self.op}" if self.domain.endswith("nchwc") else self.op


def _shapes(described: Any) -> tuple[tuple[int, ...], ...]:
    # ORT's profiler writes [{"float": [1, 32, 28, 28]}, ...] per node
    shapes = []
    for item in described or ():
        dims = next(iter(item.values()), []) if isinstance(item, dict) else []
        shapes.append(tuple(int(d) for d in dims))
    return tuple(shapes)


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    values = {}
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


def _input_shapes(node: onnx.NodeProto | None, reported: tuple[tuple[int, ...], ...],
                  constants: dict[str, tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    """The shape of each of ``node``'s inputs. ORT's profiler leaves out constant inputs a kernel packed into its own
    layout at load (a Gemm's weights): those take the initializer's dims, the others the reported shapes in order."""
    if node is None:
        return reported
    names = [name for name in node.input if name]
    omitted = len(names) - len(reported)
    shapes, position = [], 0
    for name in names:
        if name in constants and omitted > 0 and (position >= len(reported)
                                                   or reported[position] != constants[name]):
            shapes.append(constants[name])
            omitted -= 1
        elif position < len(reported):
            shapes.append(reported[position])
            position += 1
        else:
            shapes.append(constants.get(name, ()))
    return tuple(shapes)


def profile_nodes(model: bytes, inputs: Sequence[Any], protocol: MeasurementProtocol, passes: int = 1,
                  warmup: int = WARMUP_RUNS, copies: int = 1) -> list[NodeRun]:
    """The nodes ORT runs for ``model`` on ``inputs``, in execution order, each with its kernel time in each of
    ``passes`` profiled passes, after ``warmup`` passes per session that allocate its memory and are not kept.
    ``copies`` sessions (each with its own copy of the weights, the first on ``inputs``, the others on inputs of
    their own) take the passes in turn, so a node starts with the caches the previous copy left it, as the rotate
    protocol has it; [] when the passes did not run the same nodes."""
    folder = tempfile.mkdtemp(prefix="nni-latency-ort-")
    try:
        optimized = os.path.join(folder, "optimized.onnx")
        generator = torch.Generator().manual_seed(1)
        sessions = []
        for index in range(max(1, copies)):
            session = new_session(model, protocol, profile_prefix=os.path.join(folder, f"profile{index}"),
                                  optimized_path=optimized if index == 0 else None)
            arrays = inputs if index == 0 else [random_like(x, generator) for x in inputs]
            sessions.append((session, feeds(session, arrays)))
        for session, given in sessions:
            for _ in range(warmup):
                session.run(None, given)
        counts = [0] * len(sessions)
        for index in range(passes):
            session, given = sessions[index % len(sessions)]
            session.run(None, given)
            counts[index % len(sessions)] += 1
        per_session = []
        for (session, _), taken in zip(sessions, counts):
            with open(session.end_profiling(), encoding="utf-8") as handle:
                per_session.append((_kernel_events(json.load(handle)), taken))
        graph = onnx.load(optimized, load_external_data=False).graph
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    position = _canonical_order(graph)
    timed = []  # per pass: its kernel events, in the graph's canonical order
    for kernels, taken in per_session:
        runs = warmup + taken
        if not kernels or len(kernels) % runs:
            return []
        size = len(kernels) // runs
        for i in range(warmup, runs):
            run = kernels[i * size:(i + 1) * size]
            timed.append(sorted(run, key=lambda e: (position.get(_node_name(e), len(position)), _node_name(e))))
    if not timed or any([e["name"] for e in run] != [e["name"] for e in timed[0]] for run in timed):
        return []
    return _node_runs(graph, timed)


def _node_name(event: dict) -> str:
    return str(event["name"])[: -len("_kernel_time")]


def _canonical_order(graph: onnx.GraphProto) -> dict[str, int]:
    """Each node's place in one topological order of ``graph`` that breaks ties by node name. ORT's sessions may
    run independent nodes (two layout reorders after one Conv) in either order, from one session to the next: every
    pass, and every count of the same graph, lists its nodes in this order instead."""
    producers = {output: node.name for node in graph.node for output in node.output if output}
    waiting = {node.name: {producers[i] for i in node.input if i in producers} - {node.name} for node in graph.node}
    consumers: dict[str, list[str]] = {name: [] for name in waiting}
    for name, inputs in waiting.items():
        for producer in inputs:
            consumers[producer].append(name)
    ready = [name for name, inputs in waiting.items() if not inputs]
    heapq.heapify(ready)
    order: dict[str, int] = {}
    while ready:
        name = heapq.heappop(ready)
        order[name] = len(order)
        for consumer in consumers[name]:
            waiting[consumer].discard(name)
            if not waiting[consumer] and consumer not in order:
                heapq.heappush(ready, consumer)
    return order


def _kernel_events(events: Sequence[dict]) -> list[dict]:
    return [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]


def _node_runs(graph: onnx.GraphProto, timed: Sequence[Sequence[dict]]) -> list[NodeRun]:
    """One ``NodeRun`` per node of the first pass, with its kernel time in every pass of ``timed``."""
    constants = {tensor.name: tuple(int(d) for d in tensor.dims) for tensor in graph.initializer}
    graph_inputs, graph_outputs = {i.name for i in graph.input}, {o.name for o in graph.output}
    nodes = {node.name: node for node in graph.node}
    runs = []
    for index, event in enumerate(timed[0]):
        name = _node_name(event)
        node = nodes.get(name)
        args = event.get("args", {})
        runs.append(NodeRun(
            name=name, op=str(args.get("op_name") or (node.op_type if node else "?")),
            domain=node.domain if node is not None else "", attributes=_attributes(node) if node is not None else {},
            inputs=_input_shapes(node, _shapes(args.get("input_type_shape")), constants),
            outputs=_shapes(args.get("output_type_shape")),
            constant=tuple(i in constants for i in node.input) if node is not None else (),
            from_graph_input=node is not None and any(i in graph_inputs for i in node.input),
            to_graph_output=node is not None and any(o in graph_outputs for o in node.output),
            ms=tuple(float(run[index]["dur"]) / 1e3 for run in timed)))
    return runs


_PROBE_NODES, _PROBE_ELEMENTS, _PROBE_RUNS = 64, 1024, 200
_profiler_costs: dict[tuple[int, str], float] = {}


def _probe_chain(nodes: int) -> bytes:
    """A chain of ``nodes`` element-wise ``Abs`` nodes on a small vector: kernels of a fraction of a microsecond,
    so what ORT's profiler reports for them is mostly its own cost."""
    tensors = [f"t{i}" for i in range(nodes + 1)]
    graph = helper.make_graph(
        [helper.make_node("Abs", [tensors[i]], [tensors[i + 1]], name=f"abs{i}") for i in range(nodes)], "probe",
        [helper.make_tensor_value_info(tensors[0], onnx.TensorProto.FLOAT, [_PROBE_ELEMENTS])],
        [helper.make_tensor_value_info(tensors[-1], onnx.TensorProto.FLOAT, [_PROBE_ELEMENTS])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _run_ms(session: ort.InferenceSession, given: dict, runs: int) -> float:
    for _ in range(runs // 4):
        session.run(None, given)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, given)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1e3


def profiler_cost_ms(protocol: MeasurementProtocol) -> float:
    """What ORT's profiler adds to each node's reported kernel time, in this process (ms): its clock reads and
    event records, and the microsecond it rounds to. A chain of tiny nodes is run without the profiler (once with
    one node, once with many: the difference is the nodes' own time) and with it; the excess per node is the cost,
    measured once per thread count and execution provider."""
    key = (protocol.threads, _providers(protocol)[0])
    if key not in _profiler_costs:
        given = {"t0": np.linspace(-1.0, 1.0, _PROBE_ELEMENTS, dtype=np.float32)}
        one = _run_ms(new_session(_probe_chain(1), protocol), given, _PROBE_RUNS)
        chain = _probe_chain(_PROBE_NODES)
        many = _run_ms(new_session(chain, protocol), given, _PROBE_RUNS)
        own = max(0.0, many - one) / (_PROBE_NODES - 1)
        folder = tempfile.mkdtemp(prefix="nni-latency-ort-")
        try:
            session = new_session(chain, protocol, profile_prefix=os.path.join(folder, "probe"))
            for _ in range(_PROBE_RUNS // 4):
                session.run(None, given)
            with open(session.end_profiling(), encoding="utf-8") as handle:
                reported = [float(e["dur"]) / 1e3 for e in _kernel_events(json.load(handle))]
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        _profiler_costs[key] = max(0.0, float(np.mean(reported)) - own)
    return _profiler_costs[key]
