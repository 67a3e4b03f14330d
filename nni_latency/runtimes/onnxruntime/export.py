"""A PyTorch module as the ONNX graph ONNX Runtime runs: ``torch.onnx.export`` (the TorchScript-based exporter,
``dynamo=False``, which needs no package beyond ``onnx``) of a copy of the module in eval mode, cached by what
determines the graph (``count.signature.module_signature`` and the input shapes), so a block counted, timed and
timed node by node is exported once."""

from __future__ import annotations

import io
import logging
import warnings
from collections import OrderedDict
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from ...count.signature import module_signature
from ...errors import MeasurementError, first_line
from ..torch.timing import clone_module

_logger = logging.getLogger(__name__)

__all__ = ["to_onnx", "flat_inputs", "input_names", "OPSET"]

OPSET = 17  # LayerNormalization and the ops ORT fuses into attention are native from 17 on
_CACHE_SIZE = 64
_cache: OrderedDict[tuple, bytes] = OrderedDict()


def flat_inputs(inputs: Sequence[Any]) -> list[torch.Tensor]:
    """The tensors of a forward's positional arguments, nested lists and tuples flattened in order (a DARTS cell's
    preprocessor takes a list): the graph's inputs, ``input0``, ``input1``, ..."""
    return [leaf for leaf in tree_flatten(list(inputs))[0] if isinstance(leaf, torch.Tensor)]


def input_names(count: int) -> list[str]:
    """The names of a graph's first ``count`` inputs: what ``session.feeds`` matches arrays to."""
    return [f"input{i}" for i in range(count)]


def _key(module: nn.Module, inputs: Sequence[Any]) -> tuple:
    structure = str(tree_flatten(list(inputs))[1])
    return module_signature(module), structure, tuple((tuple(t.shape), str(t.dtype)) for t in flat_inputs(inputs))


def to_onnx(module: nn.Module, inputs: Sequence[Any]) -> bytes:
    """The serialized ONNX model of ``module(*inputs)`` (its tensors, nested ones flattened, named ``input0``,
    ``input1``, ...; an input the graph does not use is left out of it). The caller's module is not touched (a
    copy is exported, in eval mode); an export failure is a one-line ``MeasurementError`` naming the module and
    why."""
    key = _key(module, inputs)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    copy = _without_hooks(clone_module(module).eval())
    buffer = io.BytesIO()
    names = input_names(len(flat_inputs(inputs)))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and exporter notes a user cannot act on
            torch.onnx.export(copy, tuple(inputs), buffer, dynamo=False, opset_version=OPSET, input_names=names,
                              do_constant_folding=True)
    except Exception as error:  # noqa: BLE001 -- the exporter raises many types for one meaning: not exportable
        raise MeasurementError(f"{type(module).__name__} cannot be exported to ONNX ({first_line(error)}); ONNX "
                               "Runtime runs only what torch.onnx.export can export: make the forward traceable "
                               "(no data-dependent Python control flow, tensor inputs and outputs) or use the "
                               "torch runtime") from None
    data = buffer.getvalue()
    _cache[key] = data
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return data


def _without_hooks(module: nn.Module) -> nn.Module:
    """``module`` (a copy) with no forward hooks of its own: tracing runs its forward, which must not call the
    hooks its original holds (a NAS profiler records the calls of parts with them)."""
    for sub in module.modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
                      "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called"):
            if hasattr(sub, hooks):
                setattr(sub, hooks, OrderedDict())
    return module
