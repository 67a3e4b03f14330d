"""Eager PyTorch as a runtime: aten calls counted through its operator table (``operators``, whose memory-bound half
is ``memory``; ``counting``; ``meta`` for modules too large to run), modules timed on ``torch.utils.benchmark``
(``timing``), every aten call timed in place (``clock``), and the device it runs on (``device``)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..base import OpTimes, Runtime
from .clock import time_ops
from .counting import count_within, run_counted
from .meta import count_features
from .operators import TABLE
from .timing import measure

__all__ = ["TorchRuntime"]


class TorchRuntime(Runtime):
    """Eager PyTorch: the runtime every profile used before runtimes were a choice."""

    name = "torch"
    table = TABLE

    def describe(self, protocol) -> dict[str, Any]:
        return {"runtime": self.name, "runtime_version": torch.__version__, "intra_op_threads": protocol.threads,
                "inter_op_threads": 1, "execution_provider": protocol.device}

    def count(self, module, inputs: Sequence[Any], counting):
        return run_counted(module, tuple(inputs), counting)

    def count_within(self, network, inputs: Sequence[Any], modules, counting):
        return count_within(network, inputs, modules, counting)

    def count_shape(self, module, input_shape, counting):
        """The features of ``module`` (or of what the builder ``module()`` returns) on ``input_shape``, counted on
        meta tensors when it is too large to run here (``meta.count_features``)."""
        return count_features(module, input_shape, counting)

    def measure(self, module, input_shape, protocol, *, max_copies: int = 32, retries: int = 1):
        return measure(module, input_shape, protocol, max_copies=max_copies, retries=retries)

    def time_ops(self, module, input_shape, protocol, passes: int | None = None) -> OpTimes | None:
        return time_ops(module, input_shape, protocol, passes)
