"""Counting a module as ONNX Runtime runs it: exported (``export``), optimized by ORT's own graph optimizer, run
once under ORT's profiler (``session.profile_nodes``), every node ORT ran classified by the node table
(``operators``). Which nodes fuse, and where the blocked NCHWc layout is entered and left, are ORT's decisions,
read from the graph it ran, never guessed."""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any, Sequence

import torch
from torch import nn

from ...count.features import BlockFeatures, OpRecord, warn_uncovered
from ...count.inputs import failure_details, make_inputs
from ...count.signature import module_signature
from ...errors import ShapeError
from ..protocol import Counting, MeasurementProtocol
from .export import to_onnx
from .operators import FEATURE_NAMES, classify_node
from .session import profile_nodes

__all__ = ["count", "count_shape"]

_CACHE_SIZE = 256
_cache: OrderedDict[tuple, tuple[dict, dict, tuple, tuple]] = OrderedDict()


def _counted(module: nn.Module, inputs: Sequence[torch.Tensor], counting: Counting) -> BlockFeatures:
    key = (module_signature(module), tuple((tuple(t.shape), str(t.dtype)) for t in inputs), counting)
    if key not in _cache:
        protocol = MeasurementProtocol(threads=counting.threads, vector_width=counting.vector_width,
                                       l2_kb=counting.l2_kb, llc_kb=counting.llc_kb, runtime="onnxruntime")
        totals: Counter[str] = Counter()
        records, uncovered, op_counts = [], {}, Counter()
        for node in profile_nodes(to_onnx(module, inputs), inputs, protocol):
            cls, features, adds, covered = classify_node(node, counting)
            if not covered:
                uncovered.setdefault(f"onnx.{node.kind}", node.name)
            delta = Counter({f"{cls}.{name}": value for name, value in features.items()})
            delta["overhead.nodes"] += 1
            delta.update(adds)
            totals.update(delta)
            op_counts[node.kind] += 1
            records.append(OpRecord(node.kind, cls, features, dict(delta)))
        _cache[key] = (dict(totals), dict(op_counts), tuple(records), tuple(sorted(uncovered.items())))
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    _cache.move_to_end(key)
    totals, op_counts, records, uncovered = _cache[key]
    for op, where in uncovered:
        warn_uncovered(op, [where], stacklevel=4)
    return BlockFeatures(totals, op_counts=op_counts, uncovered=tuple(op for op, _ in uncovered), ops=records,
                         names=FEATURE_NAMES)


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
