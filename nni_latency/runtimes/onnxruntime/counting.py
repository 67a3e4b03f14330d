"""Counting a module as ONNX Runtime runs it: exported (``export``), optimized by ORT's own graph optimizer, run
once under ORT's profiler (``session.profile_nodes``), every node ORT ran classified by the node table
(``operators``). Which nodes fuse, and where the blocked NCHWc layout is entered and left, are ORT's decisions,
read from the graph it ran, never guessed."""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from ...count.features import BlockFeatures, OpRecord, warn_uncovered
from ...count.inputs import failure_details, make_inputs
from ...count.signature import module_signature
from ...errors import ShapeError
from ..protocol import Counting, MeasurementProtocol
from .export import flat_inputs, to_onnx
from .operators import FEATURE_NAMES, classify_node
from .session import profile_nodes

__all__ = ["count", "count_shape", "count_within"]

_CACHE_SIZE = 256
_cache: OrderedDict[tuple, tuple[tuple[str, ...], tuple[OpRecord, ...], tuple]] = OrderedDict()


def _classified(module: nn.Module, inputs: Sequence[torch.Tensor], counting: Counting
                ) -> tuple[tuple[str, ...], tuple[OpRecord, ...], tuple[tuple[str, str], ...]]:
    """Every node ORT runs for ``module(*inputs)``: its name, its record (kind, class, features, what it adds), and
    the node kinds no formula covers (with a node of each); cached by what determines the graph."""
    flat = flat_inputs(inputs)
    key = (module_signature(module), str(tree_flatten(list(inputs))[1]),
           tuple((tuple(t.shape), str(t.dtype)) for t in flat), counting)
    if key not in _cache:
        protocol = MeasurementProtocol(threads=counting.threads, vector_width=counting.vector_width,
                                       l2_kb=counting.l2_kb, llc_kb=counting.llc_kb, runtime="onnxruntime")
        names, records, uncovered = [], [], {}
        for node in profile_nodes(to_onnx(module, inputs), flat, protocol):
            cls, features, adds, covered = classify_node(node, counting)
            if not covered:
                uncovered.setdefault(f"onnx.{node.kind}", node.name)
            delta = Counter({f"{cls}.{name}": value for name, value in features.items()})
            delta["overhead.nodes"] += 1
            delta.update(adds)
            names.append(node.name)
            records.append(OpRecord(node.kind, cls, features, dict(delta)))
        _cache[key] = (tuple(names), tuple(records), tuple(sorted(uncovered.items())))
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    _cache.move_to_end(key)
    return _cache[key]


def _features(records: Sequence[OpRecord], uncovered: Sequence[str] = ()) -> BlockFeatures:
    totals: Counter[str] = Counter()
    for record in records:
        totals.update(record.adds)
    return BlockFeatures(dict(totals), op_counts=dict(Counter(record.op for record in records)),
                         uncovered=tuple(uncovered), ops=tuple(records), names=FEATURE_NAMES)


def _counted(module: nn.Module, inputs: Sequence[torch.Tensor], counting: Counting) -> BlockFeatures:
    _, records, uncovered = _classified(module, inputs, counting)
    for op, where in uncovered:
        warn_uncovered(op, [where], stacklevel=4)
    return _features(records, [op for op, _ in uncovered])


def _scope_module(node_name: str, modules: dict[str, nn.Module]) -> str | None:
    """The deepest module whose scope holds a node, from the node's name: the TorchScript exporter names a node by
    its module path, one segment a level, each ending in that level's own name (``/features/features.4/block/
    block.1/Mul`` is in ``features.4.block.1``); ORT keeps the name in the nodes it fuses or blocks (``.../Mul/
    QuickGeluFusion/``, ``.../Conv_output_0_nchwc``). A node ORT inserted on its own (a layout reorder) has none."""
    found, path = None, ""
    for segment in node_name.split("/")[1:-1]:
        path = f"{path}.{segment.rpartition('.')[2]}" if path else segment.rpartition(".")[2]
        if path not in modules:
            break
        found = path
    return found


def count_within(network: nn.Module, inputs: Sequence[Any], modules: Sequence[tuple[str, nn.Module]],
                 counting: Counting) -> tuple[BlockFeatures, dict[str, BlockFeatures]]:
    """The features of ``network(*inputs)`` as ORT runs it, and each of ``modules``' share of them: the nodes ORT
    ran inside its scope (``_scope_module``). Nodes ORT inserted outside any module (layout reorders between
    blocks, reshapes around a Gemm) belong to no module; a module none of whose nodes ran is left out."""
    names, records, uncovered = _classified(network, list(inputs), counting)
    for op, where in uncovered:
        warn_uncovered(op, [where], stacklevel=3)
    everything = dict(network.named_modules())
    wanted = [name for name, _ in modules]
    owned: dict[str, list[OpRecord]] = {}
    for name, record in zip(names, records):
        scope = _scope_module(name, everything)
        owner = next((block for block in wanted if scope is not None and (scope == block or
                                                                          scope.startswith(block + "."))), None)
        if owner is not None:
            owned.setdefault(owner, []).append(record)
    return _features(records, [op for op, _ in uncovered]), {name: _features(owned[name]) for name in wanted
                                                               if name in owned}


def count(module: nn.Module, inputs: Sequence[Any], counting: Counting) -> tuple[BlockFeatures, Any]:
    """The features of ``module(*inputs)`` as ORT runs it, and the module's output (from eager PyTorch: what a
    caller needs of it is its shape). The module's training flag is restored."""
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            output = module(*inputs)
    finally:
        module.train(was_training)
    return _counted(module, list(inputs), counting), output


def count_shape(module, input_shape, counting: Counting) -> BlockFeatures:
    """The features of ``module`` (or of what the builder ``module()`` returns) on random inputs of
    ``input_shape``; a shape the module does not take is a one-line ``ShapeError``."""
    module = module if isinstance(module, nn.Module) else module()
    inputs = make_inputs(input_shape)
    was_training = module.training
    try:  # the shape first, in eager PyTorch, so a shape that does not fit is named as such
        module.eval()
        with torch.no_grad():
            module(*inputs)
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        shape_text = " and ".join(",".join(map(str, t.shape)) for t in inputs)
        raise ShapeError(f"input shape {shape_text} does not fit {type(module).__name__} "
                         f"({failure_details(module, error)})") from error
    finally:
        module.train(was_training)
    return _counted(module, inputs, counting)
