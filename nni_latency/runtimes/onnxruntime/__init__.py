"""ONNX Runtime as a runtime: a module exported to ONNX (``export``), run in sessions configured as deployed
(``session``: full graph optimization, intra-op threads from the protocol), counted node by node as ORT's optimizer
and profiler report the graph they ran (``counting``, ``operators``), timed whole and node by node (``timing``).
Needs the ``[onnx]`` extra (onnxruntime, onnx)."""

from __future__ import annotations

from typing import Any, Sequence

from ..base import OpTimes, Runtime
from .counting import count, count_shape, count_within
from .operators import TABLE
from .session import settings
from .timing import measure, time_ops

__all__ = ["OrtRuntime"]


class OrtRuntime(Runtime):
    """ONNX Runtime on the CPU (or CUDA) execution provider, as NNI's searches deploy on."""

    name = "onnxruntime"
    table = TABLE

    def describe(self, protocol) -> dict[str, Any]:
        return settings(protocol)

    def count(self, module, inputs: Sequence[Any], counting):
        return count(module, inputs, counting)

    def count_within(self, network, inputs: Sequence[Any], modules, counting):
        return count_within(network, list(inputs), modules, counting)

    def count_shape(self, module, input_shape, counting):
        return count_shape(module, input_shape, counting)

    def measure(self, module, input_shape, protocol, *, max_copies: int = 32, retries: int = 1):
        return measure(module, input_shape, protocol, max_copies=max_copies, retries=retries)

    def time_ops(self, module, input_shape, protocol, passes: int | None = None) -> OpTimes | None:
        return time_ops(module, input_shape, protocol, passes)
