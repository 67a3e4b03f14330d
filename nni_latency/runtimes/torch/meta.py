"""Counting the features of a module that may be too large to run here, for ``nni-latency predict``.

Features come from one forward pass (``features.extract_features``), which allocates every activation and
does all the arithmetic: a 2048-channel 7x7 convolution at 112 px runs for minutes, and a large enough input
cannot be allocated at all. Features depend on shapes only, so such a module is counted on ``meta`` tensors
instead (no memory, no arithmetic) and a warning says so. Everything of ordinary size is still counted on
real tensors, because a few things count differently on meta (batch norm's saved statistics, the math form
of ``scaled_dot_product_attention``, and the convolution kernel ATen would pick: on meta every convolution
counts as oneDNN's, which is ATen's choice for large ones), and predictions must agree with the features
the model was fitted on.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import warnings
from typing import Callable, Sequence

import torch
from torch import nn

from ...count.features import BlockFeatures
from ...count.forward_checks import branch_note
from ...count.inputs import make_inputs, module_device_dtype
from ...errors import ShapeError, first_line
from ..protocol import Counting
from .counting import as_counting, extract_features, run_counted

_logger = logging.getLogger(__name__)

__all__ = ["count_features", "BranchWarning", "LARGE_FLOPS", "LARGE_BYTES"]


class BranchWarning(UserWarning):
    """Two forward passes on different random inputs ran different operators: the prediction covers one branch."""

# Beyond these, a real pass takes many seconds of arithmetic or gigabytes of memory: count on meta.
LARGE_FLOPS = 5e10
LARGE_BYTES = 2 << 30
# A bound on a pass's work from sizes alone (parameters x input positions, input elements): below it the
# module is counted for real without the meta pass, whose first call costs seconds of kernel set-up.
_SMALL_WORK = 1e10
_SMALL_ELEMENTS = 1 << 24


def _shapes(input_shape: Sequence[int] | Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    nested = len(input_shape) > 0 and all(isinstance(d, (list, tuple, torch.Size)) for d in input_shape)
    return [tuple(int(d) for d in shape) for shape in input_shape] if nested else [tuple(int(d) for d in input_shape)]


def _surely_small(module: nn.Module, shapes: list[tuple[int, ...]]) -> bool:
    parameters = sum(p.numel() for p in module.parameters())
    positions = max(math.prod(shape[:1] + shape[2:]) for shape in shapes)
    return max(math.prod(s) for s in shapes) < _SMALL_ELEMENTS and parameters * positions < _SMALL_WORK


def _on_meta(module: nn.Module | Callable[[], nn.Module]) -> nn.Module | None:
    """A meta copy of ``module`` (a builder is called with meta as the default device, so no weight is ever
    allocated); None when it cannot be made."""
    try:
        if isinstance(module, nn.Module):
            return copy.deepcopy(module).to("meta")
        with torch.device("meta"):
            built = module()
        tensors = itertools.chain(built.parameters(), built.buffers())
        return built if all(t.is_meta for t in tensors) else copy.deepcopy(built).to("meta")
    except Exception as error:  # noqa: BLE001 -- any failure here means "count it for real"
        _logger.debug("no meta copy (%s); counting on real tensors", error)
        return None


def _meta_features(meta: nn.Module, shapes: list[tuple[int, ...]], counting: Counting) -> BlockFeatures | None:
    """Features from a pass on meta tensors; None when the module cannot run there (data-dependent code, or
    a shape that does not fit, which the real pass then reports) unless the input alone is too large to
    allocate, which is reported at once."""
    try:
        inputs = tuple(torch.empty(shape, device="meta") for shape in shapes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the real pass, if any, warns about what it finds
            features, _ = run_counted(meta, inputs, counting)
    except Exception as error:  # noqa: BLE001 -- any failure here means "count it for real"
        input_bytes = 4 * sum(math.prod(shape) for shape in shapes)
        if input_bytes > LARGE_BYTES:
            raise ShapeError(f"input shape {_text(shapes)} is too large to run here ({input_bytes / 2**30:.3g} GiB "
                             f"for the input alone) and {type(meta).__name__} cannot be counted without running it "
                             f"({first_line(error)}); give a smaller shape") from None
        _logger.debug("meta counting failed (%s); counting on real tensors", error)
        return None
    return features


def _text(shapes: list[tuple[int, ...]]) -> str:
    return " and ".join(",".join(map(str, shape)) for shape in shapes)


def _traffic_bytes(features: BlockFeatures, shapes: list[tuple[int, ...]]) -> float:
    """Bytes a real pass touches at fp32: its inputs (allocated even when no operator reads them) and every
    operator's inputs and outputs."""
    inputs = sum(math.prod(shape) for shape in shapes)
    return 4.0 * (inputs + features.inp + features.acts + features.mem_elements)


def count_features(module: nn.Module | Callable[[], nn.Module], input_shape: Sequence[int] | Sequence[Sequence[int]],
                   counting: Counting | int | None = None, threads: int | None = None) -> BlockFeatures:
    """Features of ``module`` (or of what the builder ``module()`` returns) on ``input_shape``; a module too
    large to run here is counted on meta tensors, with a warning. A builder lets a block be sized on meta
    before its weights are ever allocated.

    Raises ``ValueError`` (one line) when the shape does not fit the module, as ``extract_features`` does;
    a module too large to run that also cannot run on meta raises the allocation error of the real pass.
    """
    counting = as_counting(counting, threads)
    shapes = _shapes(input_shape)
    built = isinstance(module, nn.Module)
    meta = None if built else _on_meta(module)
    sized = module if built else meta
    if sized is None or not _surely_small(sized, shapes):
        meta = meta if meta is not None else _on_meta(module)
        features = _meta_features(meta, shapes, counting) if meta is not None else None
        traffic = _traffic_bytes(features, shapes) if features is not None else 0.0
        if features is not None and (features.flops > LARGE_FLOPS or traffic > LARGE_BYTES):
            warnings.warn(f"this module is too large to run here ({features.flops / 1e9:.0f} GFLOPs, "
                          f"{traffic / 2**30:.1f} GiB of tensors on {_text(shapes)}): its features were counted "
                          "on meta tensors, without running it", stacklevel=2)
            return features
    module = module if built else module()
    features = extract_features(module, input_shape, counting)
    _check_branches(module, shapes, features, counting)
    return features


def _check_branches(module: nn.Module, shapes: list[tuple[int, ...]], features: BlockFeatures,
                    counting: Counting) -> None:
    """A second pass on other random inputs: when it runs other operators (control flow that depends on the
    data), say in one line that the prediction covers the branch the first input took."""
    if not _surely_small(module, shapes):
        return  # a second pass of a large module costs seconds; its ops do not depend on its values in practice
    device, dtype = module_device_dtype(module)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the first pass warned about what it found
            again, _ = run_counted(module, make_inputs([list(s) for s in shapes], device, dtype, seed=1), counting)
    except Exception as error:  # noqa: BLE001 -- another input failing is itself data-dependent behaviour
        _logger.debug("second counted pass failed (%s)", error)
        return
    note = branch_note([record.op for record in features.ops], [record.op for record in again.ops])
    if note:
        warnings.warn(f"{type(module).__name__}: {note}", BranchWarning, stacklevel=3)
