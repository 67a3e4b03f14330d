"""How a space is cut for counting, and what its parts cost.

Features add up over aten operators, so a network's features are the sum of its parts' (each module counted
alone on the input it gets, plus the functional code of the containers between them). The device model is
affine in its features, so the network's prediction ``predict(sum f)`` is its intercept, paid once, plus each
part's marginal cost ``predict(f) - predict(0)``: that is how the profiler sums a frozen architecture, and why
``profile(sample)`` equals ``predict_module(model_space.freeze(sample))`` (a skip costs nothing).

The analysis looks *into* containers of choices (NNI's ``LayerChoice``, ``Repeat``, lists of modules, and
NNI's cells: ``Cell``, ``NasBench201Cell``) and runs everything else whole.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch
from nni.nas.nn.pytorch import Cell, LayerChoice, Repeat
from torch import nn
from torch.utils._pytree import tree_flatten

from ..count.features import BlockFeatures, UncoveredOperatorWarning
from ..count.signature import module_signature

_logger = logging.getLogger(__name__)

__all__ = ["SpaceError", "FALLBACK_HINT", "is_container", "called_parts", "marginal_latency", "module_signature",
           "shapes_of", "count_with_parts", "feature_row", "Counter"]

# ``LatencyModel.counter()``: counts ``module(*inputs)`` as the model's runtime runs it -> (features, output).
Counter = Callable[[nn.Module, tuple], tuple[BlockFeatures, Any]]

FALLBACK_HINT = ("nni_latency.nas.FrozenLatencyProfiler(space, example_input, device_model), which predicts each "
                 "architecture frozen (memoised per sample)")


class SpaceError(ValueError):
    """A problem found while analysing a space; raised to the user unchanged."""


def _cell_types() -> tuple[type, ...]:
    from nni.nas.hub.pytorch.modules import NasBench201Cell

    return (Cell, NasBench201Cell)


_CONTAINERS = (nn.ModuleList, nn.ModuleDict, LayerChoice, Repeat) + _cell_types()


def is_container(module: nn.Module) -> bool:
    """A container of choices or of modules that the analysis looks into rather than runs whole."""
    return isinstance(module, _CONTAINERS)


def called_parts(container: nn.Module) -> list[nn.Module]:
    """The children a container calls, looking through lists and dicts of modules (the container calls their items)."""
    parts = []
    for child in container.children():
        parts.extend(called_parts(child) if isinstance(child, (nn.ModuleList, nn.ModuleDict)) else [child])
    return parts


def marginal_latency(model, features: np.ndarray) -> np.ndarray:
    """Predicted cost (ms) of feature rows (``(..., len(model.feature_names))``) as parts of a network:
    ``predict(f) - predict(0)``, the intercept being paid once per network, and without what a part pays only when
    it runs alone (``LatencyModel.part_of_network``)."""
    flat = model.part_of_network(features.reshape(-1, len(model.feature_names)))
    predicted = model.predict(flat) if len(flat) else np.zeros(0)
    return (predicted - model.predict_one(BlockFeatures())).reshape(features.shape[:-1])


def shapes_of(args: Any) -> tuple:
    """The shapes of the tensors in a (nested) argument structure, with the structure: a cache key."""
    flat, spec = tree_flatten(args)
    return tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else repr(a) for a in flat), repr(spec)


def feature_row(features: BlockFeatures, names: Sequence[str]) -> np.ndarray:
    """``features`` as an array over ``names`` (a model's ``feature_names``)."""
    return np.array([features[name] for name in names], float)


def count_with_parts(module: nn.Module, args: tuple, parts: Sequence[nn.Module], counter: Counter,
                     cache: dict | None = None) -> tuple[BlockFeatures, list[tuple[nn.Module, tuple, BlockFeatures]], Any]:
    """Count ``module(*args)`` once, and each call of one of ``parts`` inside it alone (on the arguments it got).

    Returns the total, ``(part, arguments, features)`` per call in call order, and the output. ``cache`` maps
    (part signature, argument shapes) to features, so identical parts are run once.
    """
    recorded: list[tuple[nn.Module, tuple]] = []
    handles = [part.register_forward_pre_hook(lambda m, a: recorded.append((m, a))) for part in parts]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncoveredOperatorWarning)  # reported by the caller, once per op
            total, output = counter(module, args)
    finally:
        for handle in handles:
            handle.remove()
    cache = {} if cache is None else cache
    calls = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncoveredOperatorWarning)
        for part, part_args in recorded:
            key = (module_signature(part), shapes_of(part_args))
            if key not in cache:
                cache[key] = counter(part, tuple(part_args))[0]
            calls.append((part, part_args, cache[key]))
    return total, calls, output
