"""What NNI 3.0's shape inference needs from the profiler while it runs: its per-op log lines kept quiet (the
profiler reports real failures itself), and the shape formulas it lacks (``torch.stack``, ``torch.sum(x, dim)``,
Repeat subclasses), registered for the duration of one analysis only."""

from __future__ import annotations

import contextlib
import logging

import torch
from nni.nas.nn.pytorch import Repeat
from torch import nn

__all__ = ["quiet_nni_shape_logs", "extra_shape_formulas"]


@contextlib.contextmanager
def quiet_nni_shape_logs():
    # NNI warns for every aten op it has no formula for, even inside modules that answer with their own
    # shapes; the profiler reports real failures itself.
    logger = logging.getLogger("nni.nas.profiler.pytorch.utils.shape")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _stack_formula(fn, tensors, dim: int = 0, **kwargs):
    from nni.nas.profiler.pytorch.utils import MutableShape

    shape = list(tensors[0].real_shape)
    dim = dim if dim >= 0 else dim + len(shape) + 1
    return MutableShape(*shape[:dim], len(tensors), *shape[dim:])


def _sum_dim_formula(fn, tensor, dim, keepdim: bool = False, **kwargs):
    from nni.nas.profiler.pytorch.utils import MutableShape

    shape = list(tensor.real_shape)
    dims = {d if d >= 0 else d + len(shape) for d in ([dim] if isinstance(dim, int) else dim)}
    return MutableShape(*[1 if i in dims else s for i, s in enumerate(shape) if keepdim or i not in dims])


@contextlib.contextmanager
def extra_shape_formulas(space: nn.Module):
    """Shape formulas NNI 3.0 lacks, registered for the duration of the analysis only: ``torch.stack`` and
    ``torch.sum(x, dim)``, which cells use to sum their edges (NasBench201), and NNI's own Repeat formula for
    subclasses of Repeat (NDS stages), which NNI looks up by exact type (without it only the default depth runs)."""
    from nni.nas.profiler.pytorch.utils import shape_formula

    registry = shape_formula._shape_inference_formulas
    extra = {torch.ops.aten.stack.default: _stack_formula, torch.ops.aten.sum.dim_IntList: _sum_dim_formula}
    extra.update({type(m): shape_formula.repeat_formula for m in space.modules()
                  if isinstance(m, Repeat) and not hasattr(type(m), "_shape_forward")})
    added = [op for op in extra if op not in registry]
    registry.update({op: extra[op] for op in added})
    try:
        yield
    finally:
        for op in added:
            registry.pop(op, None)
